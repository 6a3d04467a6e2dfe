//! Streaming decode: audio files read block by block as mono at a target
//! rate, so hours-long recordings never sit in memory whole.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use rubato::{FftFixedIn, Resampler};

use super::io::{decoder_failed, SymphoniaReader};
use crate::error::{Error, Result};
use crate::panic_guard::guarded;

/// Frames per block handed to the caller (before resampling).
const BLOCK_FRAMES: usize = 1 << 16;

enum Source {
    Wav {
        reader: hound::WavReader<BufReader<File>>,
        int_scale: Option<f32>,
    },
    Other(SymphoniaReader),
}

/// A file being decoded block by block.
pub struct AudioStream {
    source: Source,
    path: PathBuf,
    /// Sample rate of the file, Hz.
    pub sample_rate_hz: u32,
    /// Channels in the file.
    pub channels: usize,
}

impl AudioStream {
    /// Opens `path` (WAV through hound; other formats and WAV codecs hound
    /// does not read, through symphonia).
    pub fn open(path: &Path) -> Result<AudioStream> {
        guarded(|| Self::open_unguarded(path), decoder_failed(path))
    }

    fn open_unguarded(path: &Path) -> Result<AudioStream> {
        let bad = |reason: String| Error::AudioDecode {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            return Err(bad("the file is empty (0 bytes)".into()));
        }
        if let Ok(reader) = hound::WavReader::new(BufReader::new(file)) {
            let spec = reader.spec();
            if let Some(why) = crate::limits::sample_rate_problem(spec.sample_rate) {
                return Err(bad(why));
            }
            if spec.channels > 0 {
                let int_scale = (spec.sample_format == hound::SampleFormat::Int)
                    .then(|| 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32);
                return Ok(AudioStream {
                    source: Source::Wav { reader, int_scale },
                    path: path.to_path_buf(),
                    sample_rate_hz: spec.sample_rate,
                    channels: spec.channels as usize,
                });
            }
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = SymphoniaReader::open(Box::new(file), path)?;
        Ok(AudioStream {
            sample_rate_hz: reader
                .sample_rate_hz
                .ok_or_else(|| bad("unknown sample rate".into()))?,
            channels: reader.channels.unwrap_or(1).max(1),
            source: Source::Other(reader),
            path: path.to_path_buf(),
        })
    }

    /// The next block of samples mixed to mono, or `None` at the end.
    pub fn next_mono(&mut self) -> Result<Option<Vec<f32>>> {
        let path = self.path.clone();
        guarded(|| self.next_unguarded(), decoder_failed(&path))
    }

    fn next_unguarded(&mut self) -> Result<Option<Vec<f32>>> {
        let path = &self.path;
        let bad = |reason: String| Error::AudioDecode {
            path: path.clone(),
            reason,
        };
        match &mut self.source {
            Source::Wav { reader, int_scale } => {
                let n_ch = self.channels;
                let mut out = Vec::with_capacity(BLOCK_FRAMES);
                let mut acc = 0.0f32;
                let mut k = 0;
                let mut push = |v: f32, out: &mut Vec<f32>| -> Result<()> {
                    if !v.is_finite() {
                        return Err(bad(format!("sample {} is {v} (not audio)", out.len())));
                    }
                    acc += v;
                    k += 1;
                    if k == n_ch {
                        out.push(acc / n_ch as f32);
                        acc = 0.0;
                        k = 0;
                    }
                    Ok(())
                };
                let truncated =
                    |e: hound::Error| bad(format!("truncated or corrupt WAV data ({e})"));
                match int_scale {
                    Some(scale) => {
                        let scale = *scale;
                        for s in reader.samples::<i32>().take(BLOCK_FRAMES * n_ch) {
                            push(s.map_err(truncated)? as f32 * scale, &mut out)?;
                        }
                    }
                    None => {
                        for s in reader.samples::<f32>().take(BLOCK_FRAMES * n_ch) {
                            push(s.map_err(truncated)?, &mut out)?;
                        }
                    }
                }
                Ok((!out.is_empty()).then_some(out))
            }
            Source::Other(reader) => loop {
                let Some((samples, n_ch, _)) = reader.next_interleaved()? else {
                    return Ok(None);
                };
                let mono: Vec<f32> = samples
                    .chunks_exact(n_ch)
                    .map(|f| f.iter().sum::<f32>() / n_ch as f32)
                    .collect();
                if let Some(i) = mono.iter().position(|v| !v.is_finite()) {
                    return Err(bad(format!("sample {i} of a packet is not finite")));
                }
                if !mono.is_empty() {
                    return Ok(Some(mono));
                }
            },
        }
    }
}

/// Streaming mono resampler with the same delay handling as
/// [`crate::audio::resample`]: output sample `n` is input time `n / rate_out`.
pub struct StreamResampler {
    inner: Option<FftFixedIn<f32>>,
    pending: Vec<f32>,
    to_skip: usize,
    consumed: usize,
    produced: usize,
    ratio: f64,
}

impl StreamResampler {
    /// A resampler from `from_hz` to `to_hz` (a pass-through when equal).
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self> {
        for hz in [from_hz, to_hz] {
            if let Some(why) = crate::limits::sample_rate_problem(hz) {
                return Err(Error::param("sample_rate_hz", why));
            }
        }
        let inner = if from_hz == to_hz {
            None
        } else {
            Some(
                FftFixedIn::<f32>::new(from_hz as usize, to_hz as usize, 4096, 2, 1)
                    .map_err(|e| Error::Resample(e.to_string()))?,
            )
        };
        Ok(StreamResampler {
            to_skip: inner.as_ref().map_or(0, |r| r.output_delay()),
            inner,
            pending: Vec::new(),
            consumed: 0,
            produced: 0,
            ratio: to_hz as f64 / from_hz as f64,
        })
    }

    fn emit(&mut self, block: &[f32], out: &mut Vec<f32>) {
        let skip = self.to_skip.min(block.len());
        self.to_skip -= skip;
        out.extend_from_slice(&block[skip..]);
        self.produced += block.len() - skip;
    }

    /// Feeds input; appends whatever output is ready to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<()> {
        self.consumed += input.len();
        let Some(rs) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            self.produced += input.len();
            return Ok(());
        };
        self.pending.extend_from_slice(input);
        let mut blocks = Vec::new();
        while self.pending.len() >= rs.input_frames_next() {
            let need = rs.input_frames_next();
            let res = rs
                .process(&[&self.pending[..need]], None)
                .map_err(|e| Error::Resample(e.to_string()))?;
            self.pending.drain(..need);
            blocks.push(res.into_iter().next().unwrap_or_default());
        }
        for b in blocks {
            self.emit(&b, out);
        }
        Ok(())
    }

    /// Flushes the tail; the total output is `round(input * ratio)` samples.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        let want = (self.consumed as f64 * self.ratio).round() as usize;
        if self.inner.is_none() {
            return Ok(());
        }
        let mut first = true;
        while self.produced < want {
            let rs = self.inner.as_mut().expect("checked above");
            let res = if first && !self.pending.is_empty() {
                rs.process_partial(Some(&[&self.pending[..]]), None)
            } else {
                rs.process_partial(None::<&[&[f32]]>, None)
            }
            .map_err(|e| Error::Resample(e.to_string()))?;
            first = false;
            self.pending.clear();
            let block = res.into_iter().next().unwrap_or_default();
            let room = want - self.produced;
            let skip = self.to_skip.min(block.len());
            let take = (block.len() - skip).min(room);
            self.to_skip -= skip;
            out.extend_from_slice(&block[skip..skip + take]);
            self.produced += take;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{read_audio, resample, write_wav, Audio, ChannelLayout, WavFormat};

    #[test]
    fn streaming_equals_whole_file_decode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.wav");
        let n = 150_000;
        let l: Vec<f32> = (0..n).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
        let r: Vec<f32> = (0..n).map(|i| (i as f32 * 0.017).sin() * 0.3).collect();
        write_wav(
            &p,
            &Audio::new(vec![l, r], 48000, "t").unwrap(),
            WavFormat::Float32,
        )
        .unwrap();
        let whole = resample(
            &read_audio(&p).unwrap().with_layout(ChannelLayout::Mono),
            44100,
        )
        .unwrap();
        let mut s = AudioStream::open(&p).unwrap();
        let mut rs = StreamResampler::new(s.sample_rate_hz, 44100).unwrap();
        let mut out = Vec::new();
        while let Some(block) = s.next_mono().unwrap() {
            rs.push(&block, &mut out).unwrap();
        }
        rs.finish(&mut out).unwrap();
        assert_eq!(out.len(), whole.len_samples());
        let err = out
            .iter()
            .zip(&whole.channels[0])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-4, "{err}");
    }

    #[test]
    fn streams_compressed_formats_and_refuses_garbage() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/formats");
        for name in ["ogg", "m4a", "alac.m4a", "aiff", "daw.wav"] {
            let mut s = AudioStream::open(&root.join(format!("tone_48k_stereo.{name}"))).unwrap();
            let mut total = 0;
            while let Some(b) = s.next_mono().unwrap() {
                total += b.len();
            }
            assert!((total as i64 - 24000).abs() < 2400, "{name}: {total}");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.mp3");
        std::fs::write(&p, "not audio at all").unwrap();
        assert!(AudioStream::open(&p).is_err());
    }
}
