//! Decoding every supported container / codec as real tools write them
//! (fixtures from tools/make_format_fixtures.py: 0.5 s, 48 kHz stereo,
//! 440 Hz left and 660 Hz right, by libsndfile, ffmpeg and sox, and a
//! DAW-style WAV), and conversion to the spectrogram rate and layout.

use std::path::{Path, PathBuf};

use ragafusion::audio::{read_audio, read_audio_as, ChannelLayout};
use ragafusion::spectrogram::stft::Stft;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/formats")
        .join(name)
}

/// Frequency (Hz) of the loudest bin averaged over frames.
fn dominant_hz(samples: &[f32], rate: u32) -> f64 {
    let n_fft = rate as usize / 10; // 10 Hz bins
    let stft = Stft::new(n_fft, n_fft / 4, n_fft).unwrap();
    let spec = stft.forward(samples, stft.num_bins());
    let mut sum = vec![0.0f32; spec.bins];
    for frame in spec.data.chunks(spec.bins) {
        for (s, c) in sum.iter_mut().zip(frame) {
            *s += c.norm();
        }
    }
    let k = (0..sum.len())
        .max_by(|a, b| sum[*a].total_cmp(&sum[*b]))
        .unwrap();
    k as f64 * rate as f64 / n_fft as f64
}

#[test]
fn every_format_decodes_to_the_same_tones() {
    let formats = [
        "wav", "f32.wav", "u8.wav", "daw.wav", "flac", "mp3", "ogg", "aiff", "sox.aif", "m4a",
        "alac.m4a", "opus",
    ];
    for ext in formats {
        let path = fixture(&format!("tone_48k_stereo.{ext}"));
        let audio = read_audio(&path).unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!(audio.sample_rate_hz, 48000, "{ext}");
        assert_eq!(audio.num_channels(), 2, "{ext}");
        // Lossy codecs add encoder delay and padding: allow one frame-ish.
        let len = audio.len_samples() as i64;
        assert!((len - 24000).abs() <= 2400, "{ext}: {len} samples");
        assert!(
            (dominant_hz(&audio.channels[0], 48000) - 440.0).abs() <= 10.0,
            "{ext} left"
        );
        assert!(
            (dominant_hz(&audio.channels[1], 48000) - 660.0).abs() <= 10.0,
            "{ext} right"
        );
        // the steady middle: lossy encoders overshoot at the tone's onset
        let middle = &audio.channels[0][6000..18000];
        let peak = middle.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(peak > 0.4 && peak < 0.6, "{ext}: peak {peak}");
    }
}

#[test]
fn a_daw_export_with_a_ragged_data_chunk_loses_only_the_partial_frame() {
    let daw = read_audio(&fixture("tone_48k_stereo.daw.wav")).unwrap();
    let plain = read_audio(&fixture("tone_48k_stereo.wav")).unwrap();
    assert_eq!(daw.channels, plain.channels);
}

#[test]
fn opus_decodes_as_libopus_does() {
    // libopus's own decode of the fixture's first 0.25 s (16-bit), written
    // by tools/make_format_fixtures.py; both drop the encoder's pre-skip.
    let ours = read_audio(&fixture("tone_48k_stereo.opus")).unwrap();
    let reference = read_audio(&fixture("tone_48k_stereo.opus.libopus.wav")).unwrap();
    assert_eq!(reference.len_samples(), 12000);
    for ch in 0..2 {
        let r = &reference.channels[ch];
        let o = &ours.channels[ch][..r.len()];
        let noise: f64 = r.iter().zip(o).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        let signal: f64 = r.iter().map(|a| (*a as f64).powi(2)).sum();
        let snr_db = 10.0 * (signal / noise.max(1e-20)).log10();
        assert!(
            snr_db > 60.0,
            "channel {ch}: {snr_db:.1} dB against libopus"
        );
    }
}

#[test]
fn cut_off_or_scrambled_opus_is_named_never_a_panic() {
    let whole = std::fs::read(fixture("tone_48k_stereo.opus")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Half a file: refused, naming it (the reader looks for the last page
    // to learn the stream's length).
    let half = dir.path().join("half.opus");
    std::fs::write(&half, &whole[..whole.len() / 2]).unwrap();
    let e = read_audio(&half).unwrap_err().to_string();
    assert!(e.contains("half.opus"), "{e}");
    // Pages after the first two with their bytes scrambled: the checksums
    // fail, the pages are dropped or the file is refused, never a panic.
    let mut bad = whole.clone();
    for (i, b) in bad.iter_mut().enumerate().skip(200) {
        *b ^= (i % 251) as u8;
    }
    let scrambled = dir.path().join("scrambled.opus");
    std::fs::write(&scrambled, &bad).unwrap();
    match read_audio(&scrambled) {
        Ok(a) => assert!(a.len_samples() < 24000),
        Err(e) => assert!(e.to_string().contains("scrambled.opus"), "{e}"),
    }
}

#[test]
fn a_truncated_download_is_named() {
    // ffmpeg writes the index (moov) after the audio: half a file has none
    let path = fixture("truncated.m4a");
    let e = read_audio(&path).unwrap_err().to_string();
    assert!(
        e.contains("truncated.m4a") && e.contains("not a recognised audio format"),
        "{e}"
    );
}
#[test]
fn converted_to_mono_44k() {
    let audio =
        read_audio_as(&fixture("tone_48k_stereo.flac"), 44100, ChannelLayout::Mono).unwrap();
    assert_eq!(audio.sample_rate_hz, 44100);
    assert_eq!(audio.num_channels(), 1);
    assert_eq!(audio.len_samples(), 22050);
    let stereo = read_audio_as(
        &fixture("tone_48k_stereo.wav"),
        22050,
        ChannelLayout::Stereo,
    )
    .unwrap();
    assert_eq!(stereo.num_channels(), 2);
    assert!((dominant_hz(&stereo.channels[1], 22050) - 660.0).abs() <= 10.0);
}
