//! Decoding audio files and writing WAV.

use std::io::Cursor;
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::{resample, Audio, ChannelLayout};
use crate::error::{Error, Result};
use crate::fsutil;

/// Sample format of written WAV files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WavFormat {
    /// 16-bit signed integer PCM (samples are clipped to `[-1, 1]`).
    #[default]
    Pcm16,
    /// 32-bit IEEE float.
    Float32,
}

/// Reads an audio file (WAV, MP3, FLAC, OGG Vorbis) into planar `f32`
/// samples at the file's own rate and channel count.
///
/// Errors name the file: unreadable, not audio, truncated, empty, or holding
/// NaN / infinite samples.
pub fn read_audio(path: &Path) -> Result<Audio> {
    let bytes = fsutil::read_bytes(path)?;
    let decode_err = |reason: String| Error::AudioDecode {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(decode_err("the file is empty (0 bytes)".into()));
    }
    let is_riff = bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE";
    let (channels, rate) = if is_riff {
        match decode_wav(&bytes) {
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
        }
    } else {
        decode_symphonia(bytes, path)?
    };
    Audio::new(channels, rate, &path.display().to_string())
}

/// Reads an audio file and converts it to `sample_rate_hz` and `layout`.
pub fn read_audio_as(path: &Path, sample_rate_hz: u32, layout: ChannelLayout) -> Result<Audio> {
    let audio = read_audio(path)?.with_layout(layout);
    resample(&audio, sample_rate_hz)
}

type Planar = (Vec<Vec<f32>>, u32);

/// Why hound could not read a WAV file.
enum WavError {
    /// The header is malformed or uses a codec hound does not read.
    Header(hound::Error),
    /// The data chunk is shorter than it declares.
    Data { read: usize, declared: usize },
    /// A sample could not be read for another reason.
    Sample(hound::Error),
}

fn decode_wav(bytes: &[u8]) -> std::result::Result<Planar, WavError> {
    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(WavError::Header)?;
    let spec = reader.spec();
    let n_ch = spec.channels as usize;
    if n_ch == 0 {
        return Err(WavError::Header(hound::Error::FormatError("zero channels")));
    }
    let declared = reader.len() as usize;
    let mut interleaved: Vec<f32> = Vec::with_capacity(declared);
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

fn decode_symphonia(bytes: Vec<u8>, path: &Path) -> Result<Planar> {
    let decode_err = |reason: String| Error::AudioDecode {
        path: path.to_path_buf(),
        reason,
    };
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| decode_err(format!("not a recognised audio format ({e})")))?;
    let mut format = probed.format;
    let track = format
        .default_track()
        .ok_or_else(|| decode_err("no audio track".into()))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| decode_err(format!("unsupported codec ({e})")))?;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut channels: Vec<Vec<f32>> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(decode_err(format!("reading packets: {e}"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A corrupt frame is skipped, as players do.
            Err(SymError::DecodeError(_)) => continue,
            Err(e) => return Err(decode_err(format!("decoding: {e}"))),
        };
        let spec = *decoded.spec();
        rate = spec.rate;
        let n_ch = spec.channels.count();
        if channels.is_empty() {
            channels = vec![Vec::new(); n_ch];
        } else if channels.len() != n_ch {
            return Err(decode_err("channel count changes mid-stream".into()));
        }
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_planar_ref(decoded);
        let frames = buf.samples().len() / n_ch.max(1);
        for (c, chan) in channels.iter_mut().enumerate() {
            chan.extend_from_slice(&buf.samples()[c * frames..(c + 1) * frames]);
        }
    }
    if channels.is_empty() || channels[0].is_empty() {
        return Err(decode_err("zero-length audio: no samples decoded".into()));
    }
    Ok((channels, rate))
}

/// Writes `audio` as a WAV file in `format`, atomically (temporary name,
/// then rename).
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
