//! Round-trip quality of image -> audio on the CC BY clips, against
//! riffusion's own reconstructions (tests/data/riffusion): the figures in
//! docs/benchmarks.md.
//!
//! Run: `cargo run --release --example codec_report`
//!
//! Spectral convergence (SC) compares the reconstruction with the original
//! clip after a least-squares gain: "mel" on the 512 mel bands the image
//! encodes, "linear" on STFT magnitudes below 10 kHz.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ragafusion::audio::{read_audio, Audio, Loudness};
use ragafusion::spectrogram::image::read_png;
use ragafusion::spectrogram::metrics::spectral_convergence;
use ragafusion::spectrogram::{
    InversionSettings, Quality, SpectrogramConverter, SpectrogramParams,
};
use ragafusion::NoProgress;

const CLIPS: [&str; 5] = ["vignesh", "carnatic", "mridangam", "violin-B3", "flute-A4"];

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn main() -> ragafusion::Result<()> {
    let conv = SpectrogramConverter::new(SpectrogramParams::default())?;
    let bins = conv.filterbank().active_bins();
    let sc = |orig: &Audio, est: &Audio| -> (f64, f64) {
        let mel_o = conv.mel_from_audio(orig).unwrap();
        let mel_e = conv.mel_from_audio(est).unwrap();
        let lin_o = conv.stft().forward(&orig.channels[0], bins).magnitudes();
        let lin_e = conv.stft().forward(&est.channels[0], bins).magnitudes();
        (
            spectral_convergence(&mel_o.channels[0], &mel_e.channels[0]),
            spectral_convergence(&lin_o, &lin_e),
        )
    };
    let variants = [
        ("fast", Quality::Fast, Loudness::Riffusion),
        ("high", Quality::High, Loudness::Riffusion),
        ("riffusion-quality", Quality::Riffusion, Loudness::Riffusion),
        (
            "fast, riffusion-clip",
            Quality::Fast,
            Loudness::RiffusionClip,
        ),
    ];
    println!(
        "| clip | riffusion (torchaudio) | {} |",
        variants.map(|v| v.0).join(" | ")
    );
    println!("|---|---|{}", "---|".repeat(variants.len()));
    for name in CLIPS {
        let orig = read_audio(&data(&format!("clips/{name}_5120ms.wav")))?;
        let theirs = read_audio(&data(&format!(
            "riffusion/{name}_5120ms_reconstructed.flac"
        )))?;
        let image = read_png(&data(&format!("riffusion/{name}_5120ms.png")))?;
        let (m, l) = sc(&orig, &theirs);
        let mut row = format!("| {name} | {m:.4} / {l:.3} |");
        for (_, quality, loudness) in variants {
            let settings = InversionSettings {
                quality,
                loudness,
                ..Default::default()
            };
            let t0 = Instant::now();
            let ours =
                conv.audio_from_image(&image, &settings.options(&image.params), &NoProgress)?;
            let secs = t0.elapsed().as_secs_f64();
            let (m, l) = sc(&orig, &ours);
            row += &format!(" {m:.4} / {l:.3} ({secs:.2} s) |");
        }
        println!("{row}");
    }
    Ok(())
}
