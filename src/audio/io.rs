//! Decoding audio files and writing WAV.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{Decoder, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::{resample, Audio, ChannelLayout};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::panic_guard::guarded;

/// Sample format of written WAV files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WavFormat {
    /// 16-bit signed integer PCM (samples are clipped to `[-1, 1]`).
    #[default]
    Pcm16,
    /// 32-bit IEEE float.
    Float32,
}

impl WavFormat {
    /// 32-bit float when `float`, else 16-bit PCM (a `--float` switch).
    pub fn float_if(float: bool) -> Self {
        if float {
            WavFormat::Float32
        } else {
            WavFormat::Pcm16
        }
    }
}

/// Reads an audio file (WAV, AIFF, FLAC, MP3, OGG Vorbis, AAC or ALAC in
/// M4A / MP4, CAF or MKV) into planar `f32`
/// samples at the file's own rate and channel count.
///
/// Errors name the file: unreadable, not audio, truncated, empty, or holding
/// NaN / infinite samples.
pub fn read_audio(path: &Path) -> Result<Audio> {
    decode_audio(fsutil::read_bytes(path)?, path)
}

/// [`read_audio`] on a file's bytes already in memory (an upload, say);
/// `path` names them in errors and its extension hints at the format.
pub fn decode_audio(bytes: Vec<u8>, path: &Path) -> Result<Audio> {
    guarded(|| decode_unguarded(bytes, path), decoder_failed(path))
}

/// The error for a decoder that panicked on `path`'s bytes.
pub(crate) fn decoder_failed(path: &Path) -> impl FnOnce(String) -> Error + '_ {
    move |message| Error::AudioDecode {
        path: path.to_path_buf(),
        reason: format!("corrupt file: the decoder failed ({message})"),
    }
}

fn decode_unguarded(bytes: Vec<u8>, path: &Path) -> Result<Audio> {
    let decode_err = |reason: String| Error::AudioDecode {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(decode_err("the file is empty (0 bytes)".into()));
    }
    let is_riff = bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE";
    let (channels, rate) = if is_riff {
        let whole_frames;
        let mut wav: &[u8] = &bytes;
        if let Some((patched, stray)) = without_partial_frame(&bytes) {
            tracing::warn!(
                "{}: the data chunk ends in {stray} bytes short of a whole frame; they are dropped",
                path.display()
            );
            whole_frames = patched;
            wav = &whole_frames;
        }
        match decode_wav(wav) {
            Ok(v) => v,
            // hound reads PCM and float WAV; other codecs go to symphonia.
            Err(WavError::Header(hound::Error::Unsupported)) => decode_symphonia(bytes, path)?,
            Err(WavError::Header(e)) => return Err(decode_err(format!("malformed WAV header: {e}"))),
            Err(WavError::Data { read, declared }) => {
                return Err(decode_err(format!(
                    "truncated WAV: the data chunk declares {declared} samples but the file ends after {read}"
                )))
            }
            Err(WavError::Sample(e)) => return Err(decode_err(format!("corrupt WAV data: {e}"))),
            Err(WavError::Rate(why)) => return Err(decode_err(why)),
        }
    } else {
        decode_symphonia(bytes, path)?
    };
    Audio::new(channels, rate, &path.display().to_string())
}

/// Reads an audio file and converts it to `sample_rate_hz` and `layout`.
pub fn read_audio_as(path: &Path, sample_rate_hz: u32, layout: ChannelLayout) -> Result<Audio> {
    let audio = read_audio(path)?.with_layout(layout);
    resample(&audio, sample_rate_hz).map_err(|e| match e {
        Error::Resample(reason) => Error::AudioDecode {
            path: path.to_path_buf(),
            reason,
        },
        other => other,
    })
}

type Planar = (Vec<Vec<f32>>, u32);

/// A WAV whose data chunk is not a whole number of frames (as some DAW
/// exports leave it, after JUNK / bext / LGWV chunks), with the chunk's
/// length rounded down to whole frames; and how many bytes were dropped.
/// `None` when the chunks are whole or cannot be walked.
fn without_partial_frame(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let u16_at = |i: usize| Some(u16::from_le_bytes(bytes.get(i..i + 2)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?));
    let (mut pos, mut block_align) = (12usize, None);
    while pos + 8 <= bytes.len() {
        let size = u32_at(pos + 4)? as usize;
        match &bytes[pos..pos + 4] {
            b"fmt " => block_align = Some(u16_at(pos + 20)? as usize).filter(|&b| b > 0),
            b"data" => {
                let stray = size % block_align?;
                if stray == 0 {
                    return None;
                }
                let mut patched = bytes.to_vec();
                patched[pos + 4..pos + 8].copy_from_slice(&((size - stray) as u32).to_le_bytes());
                return Some((patched, stray));
            }
            _ => {}
        }
        pos = pos.checked_add(8 + size + size % 2)?;
    }
    None
}

/// Why hound could not read a WAV file.
enum WavError {
    /// The header is malformed or uses a codec hound does not read.
    Header(hound::Error),
    /// The data chunk is shorter than it declares.
    Data { read: usize, declared: usize },
    /// A sample could not be read for another reason.
    Sample(hound::Error),
    /// The header's sample rate is outside [`crate::limits::SAMPLE_RATE_HZ`].
    Rate(String),
}

fn decode_wav(bytes: &[u8]) -> std::result::Result<Planar, WavError> {
    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(WavError::Header)?;
    let spec = reader.spec();
    let n_ch = spec.channels as usize;
    if n_ch == 0 {
        return Err(WavError::Header(hound::Error::FormatError("zero channels")));
    }
    if let Some(why) = crate::limits::sample_rate_problem(spec.sample_rate) {
        return Err(WavError::Rate(why));
    }
    let declared = reader.len() as usize;
    // A header may declare more samples than the file holds: reserve no
    // more than the bytes could carry.
    let mut interleaved: Vec<f32> = Vec::with_capacity(declared.min(bytes.len()));
    let mut push =
        |r: std::result::Result<f32, hound::Error>| -> std::result::Result<(), WavError> {
            match r {
                Ok(v) => {
                    interleaved.push(v);
                    Ok(())
                }
                Err(hound::Error::IoError(_)) | Err(hound::Error::FormatError(_)) => {
                    Err(WavError::Data {
                        read: interleaved.len(),
                        declared,
                    })
                }
                Err(e) => Err(WavError::Sample(e)),
            }
        };
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for s in reader.samples::<f32>() {
                push(s)?;
            }
        }
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            for s in reader.samples::<i32>() {
                push(s.map(|v| v as f32 * scale))?;
            }
        }
    }
    Ok((deinterleave(&interleaved, n_ch), spec.sample_rate))
}

fn deinterleave(interleaved: &[f32], n_ch: usize) -> Vec<Vec<f32>> {
    let frames = interleaved.len() / n_ch;
    (0..n_ch)
        .map(|c| (0..frames).map(|i| interleaved[i * n_ch + c]).collect())
        .collect()
}

/// The packets of a file's default audio track, decoded by symphonia.
pub(crate) struct SymphoniaReader {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track: u32,
    path: PathBuf,
    /// Sample rate from the container, if it states one.
    pub sample_rate_hz: Option<u32>,
    /// Channel count from the container, if it states one.
    pub channels: Option<usize>,
}

impl SymphoniaReader {
    /// Probes `source` (named `path` in errors; its extension is a hint).
    pub(crate) fn open(source: Box<dyn MediaSource>, path: &Path) -> Result<Self> {
        guarded(|| Self::open_unguarded(source, path), decoder_failed(path))
    }

    fn open_unguarded(source: Box<dyn MediaSource>, path: &Path) -> Result<Self> {
        let decode_err = |reason: String| Error::AudioDecode {
            path: path.to_path_buf(),
            reason,
        };
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let mss = MediaSourceStream::new(source, Default::default());
        let probed = symphonia::default::get_probe()
            .format(
                &hint,
                mss,
                &FormatOptions::default(),
                &MetadataOptions::default(),
            )
            .map_err(|e| decode_err(format!("not a recognised audio format ({e})")))?;
        let format = probed.format;
        let track = format
            .default_track()
            .ok_or_else(|| decode_err("no audio track".into()))?;
        let params = track.codec_params.clone();
        if let Some(why) = params
            .sample_rate
            .and_then(crate::limits::sample_rate_problem)
        {
            return Err(decode_err(why));
        }
        let decoder = super::opus::codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| decode_err(format!("unsupported codec ({e})")))?;
        Ok(SymphoniaReader {
            track: track.id,
            format,
            decoder,
            path: path.to_path_buf(),
            sample_rate_hz: params.sample_rate,
            channels: params.channels.map(|c| c.count()),
        })
    }

    /// The next decoded packet as interleaved samples with its channel
    /// count and rate, or `None` at the end. Corrupt packets are skipped,
    /// as players do.
    pub(crate) fn next_interleaved(&mut self) -> Result<Option<(Vec<f32>, usize, u32)>> {
        let path = self.path.clone();
        guarded(|| self.next_unguarded(), decoder_failed(&path))
    }

    fn next_unguarded(&mut self) -> Result<Option<(Vec<f32>, usize, u32)>> {
        let decode_err = |reason: String| Error::AudioDecode {
            path: self.path.clone(),
            reason,
        };
        loop {
            let packet = match self.format.next_packet() {
                Ok(p) => p,
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(None)
                }
                Err(SymError::ResetRequired) => return Ok(None),
                Err(e) => return Err(decode_err(format!("reading packets: {e}"))),
            };
            if packet.track_id() != self.track {
                continue;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(d) => d,
                Err(SymError::DecodeError(_)) => continue,
                Err(e) => return Err(decode_err(format!("decoding: {e}"))),
            };
            let spec = *decoded.spec();
            let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
            buf.copy_interleaved_ref(decoded);
            return Ok(Some((
                buf.samples().to_vec(),
                spec.channels.count().max(1),
                spec.rate,
            )));
        }
    }
}

fn decode_symphonia(bytes: Vec<u8>, path: &Path) -> Result<Planar> {
    let mut reader = SymphoniaReader::open(Box::new(Cursor::new(bytes)), path)?;
    let mut rate = reader.sample_rate_hz.unwrap_or(0);
    let mut channels: Vec<Vec<f32>> = Vec::new();
    while let Some((samples, n_ch, packet_rate)) = reader.next_interleaved()? {
        rate = packet_rate;
        if let Some(why) = crate::limits::sample_rate_problem(rate) {
            return Err(Error::AudioDecode {
                path: path.to_path_buf(),
                reason: why,
            });
        }
        if channels.is_empty() {
            channels = vec![Vec::new(); n_ch];
        } else if channels.len() != n_ch {
            return Err(Error::AudioDecode {
                path: path.to_path_buf(),
                reason: "channel count changes mid-stream".into(),
            });
        }
        for frame in samples.chunks_exact(n_ch) {
            for (chan, v) in channels.iter_mut().zip(frame) {
                chan.push(*v);
            }
        }
    }
    if channels.is_empty() || channels[0].is_empty() {
        return Err(Error::AudioDecode {
            path: path.to_path_buf(),
            reason: "zero-length audio: no samples decoded".into(),
        });
    }
    Ok((channels, rate))
}

/// Most data bytes a WAV file can declare: the RIFF size field (32 bits)
/// also counts the 36 header bytes before the data.
const MAX_WAV_DATA_BYTES: u64 = u32::MAX as u64 - 36;

/// Refuses `frames` x `channels` samples of `bits_per_sample` at
/// `rate_hz` when they would overflow a WAV's 32-bit sizes.
fn check_wav_size(
    path: &Path,
    frames: u64,
    channels: u64,
    bits_per_sample: u16,
    rate_hz: u32,
) -> Result<()> {
    let data_bytes = frames * channels * u64::from(bits_per_sample / 8);
    if data_bytes <= MAX_WAV_DATA_BYTES {
        return Ok(());
    }
    Err(Error::AudioDecode {
        path: path.to_path_buf(),
        reason: format!(
            "{:.0} s of {channels}-channel audio is {data_bytes} bytes, more than a WAV's \
             32-bit size fields hold ({MAX_WAV_DATA_BYTES}); write shorter pieces",
            frames as f64 / f64::from(rate_hz.max(1)),
        ),
    })
}

/// Writes `audio` as a WAV file in `format`, atomically (temporary name,
/// then rename). Audio too long for the format's 32-bit sizes (over 4 GiB
/// of samples) is refused before anything is written, never wrapped.
pub fn write_wav(path: &Path, audio: &Audio, format: WavFormat) -> Result<()> {
    let spec = hound::WavSpec {
        channels: audio.num_channels() as u16,
        sample_rate: audio.sample_rate_hz,
        bits_per_sample: match format {
            WavFormat::Pcm16 => 16,
            WavFormat::Float32 => 32,
        },
        sample_format: match format {
            WavFormat::Pcm16 => hound::SampleFormat::Int,
            WavFormat::Float32 => hound::SampleFormat::Float,
        },
    };
    let wav_err = |e: hound::Error| Error::AudioDecode {
        path: path.to_path_buf(),
        reason: format!("writing WAV: {e}"),
    };
    check_wav_size(
        path,
        audio.len_samples() as u64,
        audio.num_channels() as u64,
        spec.bits_per_sample,
        audio.sample_rate_hz,
    )?;
    fsutil::write_atomic(path, |w| {
        let mut writer = hound::WavWriter::new(w, spec).map_err(wav_err)?;
        for i in 0..audio.len_samples() {
            for c in &audio.channels {
                match format {
                    WavFormat::Pcm16 => {
                        let v = (c[i].clamp(-1.0, 1.0) * 32767.0).round() as i16;
                        writer.write_sample(v).map_err(wav_err)?;
                    }
                    WavFormat::Float32 => writer.write_sample(c[i]).map_err(wav_err)?,
                }
            }
        }
        writer.finalize().map_err(wav_err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, rate: u32) -> Vec<f32> {
        (0..n)
            .map(|i| 0.5 * (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin())
            .collect()
    }

    #[test]
    fn wav_round_trip_pcm16_and_float() {
        let dir = tempfile::tempdir().unwrap();
        let a = Audio::new(vec![tone(1000, 8000), tone(1000, 8000)], 8000, "t").unwrap();
        for (fmt, tol) in [(WavFormat::Pcm16, 1.0 / 30000.0), (WavFormat::Float32, 0.0)] {
            let p = dir.path().join(format!("{fmt:?}.wav"));
            write_wav(&p, &a, fmt).unwrap();
            let b = read_audio(&p).unwrap();
            assert_eq!(b.sample_rate_hz, 8000);
            assert_eq!(b.num_channels(), 2);
            for (x, y) in a.channels[1].iter().zip(&b.channels[1]) {
                assert!((x - y).abs() <= tol, "{x} vs {y}");
            }
        }
    }

    #[test]
    fn absurd_sample_rates_are_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        for hz in [1u32, i32::MAX as u32] {
            let path = dir.path().join(format!("r{hz}.wav"));
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: hz,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w = hound::WavWriter::create(&path, spec).unwrap();
            for _ in 0..16 {
                w.write_sample(0i16).unwrap();
            }
            w.finalize().unwrap();
            for e in [
                read_audio(&path).unwrap_err(),
                super::super::stream::AudioStream::open(&path)
                    .err()
                    .unwrap(),
            ] {
                let msg = e.to_string();
                assert!(msg.contains(&format!("r{hz}.wav")), "{msg}");
                assert!(msg.contains(&format!("sample rate {hz} Hz")), "{msg}");
            }
        }
    }

    #[test]
    fn wavs_over_four_gib_are_refused_not_wrapped() {
        let p = Path::new("long.wav");
        // 3 hours of stereo 16-bit at 44.1 kHz: 1.9 GB, written
        check_wav_size(p, 3 * 3600 * 44_100, 2, 16, 44_100).unwrap();
        // 27.8 hours (sample-clips --duration-ms 100000000): 8.8 GB
        let e = check_wav_size(p, 100_000 * 44_100, 1, 16, 44_100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("long.wav") && e.contains("32-bit"), "{e}");
        // the exact edge
        let frames = MAX_WAV_DATA_BYTES / 4;
        check_wav_size(p, frames, 1, 32, 44_100).unwrap();
        assert!(check_wav_size(p, frames + 1, 1, 32, 44_100).is_err());
    }

    #[test]
    fn a_decoder_panic_is_an_error_naming_the_file() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/fuzz/zero-rate-riff-in.flac"
        );
        let bytes = std::fs::read(path).unwrap();
        let e = decode_audio(bytes, Path::new("found.flac"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("found.flac") && e.contains("decoder failed"),
            "{e}"
        );
    }

    #[test]
    fn truncated_wav_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.wav");
        let a = Audio::new(vec![tone(1000, 8000)], 8000, "t").unwrap();
        write_wav(&p, &a, WavFormat::Pcm16).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = read_audio(&p).unwrap_err().to_string();
        assert!(e.contains("t.wav") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn text_file_is_not_audio() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.wav");
        std::fs::write(&p, "this is not audio\n").unwrap();
        let e = read_audio(&p).unwrap_err().to_string();
        assert!(e.contains("notes.wav"), "{e}");
    }
}
