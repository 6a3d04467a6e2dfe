//! Audio buffers, decoding, resampling and WAV output.
//!
//! [`Audio`] holds planar `f32` samples nominally in `[-1, 1]`. Files are
//! read with [`read_audio`] (WAV through hound, MP3 / FLAC / OGG Vorbis and
//! other WAV codecs through symphonia) and written with [`write_wav`].

mod io;
mod loudness;
pub mod mix;
mod opus;
pub mod r128;
mod resample;
pub mod stream;

pub use io::{decode_audio, read_audio, read_audio_as, write_wav, WavFormat};
pub use loudness::{normalize_loudness, Loudness};
pub use resample::resample;

use crate::error::{Error, Result};

/// The linear gain of `db` decibels (amplitude: 20 dB is ten times).
pub fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// A block of audio: one sample vector per channel, all of equal length.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Samples per channel (planar), nominally in `[-1, 1]`.
    pub channels: Vec<Vec<f32>>,
    /// Samples per second.
    pub sample_rate_hz: u32,
}

/// How to arrange channels when loading audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelLayout {
    /// Average all channels into one.
    Mono,
    /// Two channels: mono is duplicated, more than two are mixed down to the
    /// first two by averaging odd channels into left and even into right.
    Stereo,
    /// Keep the channels as they are.
    Keep,
}

impl Audio {
    /// Builds audio from planar channels, checking that they are non-empty,
    /// of equal length and finite. `context` names the source in errors.
    pub fn new(channels: Vec<Vec<f32>>, sample_rate_hz: u32, context: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidAudio {
            context: context.to_string(),
            reason,
        };
        if sample_rate_hz == 0 {
            return Err(invalid("sample rate is 0 Hz".into()));
        }
        let Some(first) = channels.first() else {
            return Err(invalid("no channels".into()));
        };
        let len = first.len();
        if len == 0 {
            return Err(invalid("zero-length audio (no samples)".into()));
        }
        if let Some((i, c)) = channels.iter().enumerate().find(|(_, c)| c.len() != len) {
            return Err(invalid(format!(
                "channel {i} has {} samples, channel 0 has {len}",
                c.len()
            )));
        }
        for (ci, c) in channels.iter().enumerate() {
            if let Some(si) = c.iter().position(|s| !s.is_finite()) {
                return Err(invalid(format!(
                    "sample {si} of channel {ci} is {} (NaN or infinite samples are not audio)",
                    c[si]
                )));
            }
        }
        Ok(Audio {
            channels,
            sample_rate_hz,
        })
    }

    /// Number of samples in each channel.
    pub fn len_samples(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.len_samples() as f64 / self.sample_rate_hz as f64
    }

    /// Number of channels.
    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// Returns the audio rearranged to `layout`.
    pub fn with_layout(self, layout: ChannelLayout) -> Audio {
        let n = self.channels.len();
        let channels = match layout {
            ChannelLayout::Keep => self.channels,
            ChannelLayout::Mono if n == 1 => self.channels,
            ChannelLayout::Mono => vec![mix(&self.channels.iter().collect::<Vec<_>>())],
            ChannelLayout::Stereo if n == 2 => self.channels,
            ChannelLayout::Stereo if n == 1 => {
                vec![self.channels[0].clone(), self.channels[0].clone()]
            }
            ChannelLayout::Stereo => {
                let left: Vec<_> = self.channels.iter().step_by(2).collect();
                let right: Vec<_> = self.channels.iter().skip(1).step_by(2).collect();
                vec![mix(&left), mix(&right)]
            }
        };
        Audio {
            channels,
            sample_rate_hz: self.sample_rate_hz,
        }
    }

    /// Returns samples `[start, start + len)` of every channel, zero-padded
    /// past the end.
    pub fn slice_padded(&self, start: usize, len: usize) -> Audio {
        let channels = self
            .channels
            .iter()
            .map(|c| {
                let mut out = vec![0.0; len];
                if start < c.len() {
                    let end = (start + len).min(c.len());
                    out[..end - start].copy_from_slice(&c[start..end]);
                }
                out
            })
            .collect();
        Audio {
            channels,
            sample_rate_hz: self.sample_rate_hz,
        }
    }

    /// Largest absolute sample value over all channels.
    pub fn peak(&self) -> f32 {
        self.channels
            .iter()
            .flat_map(|c| c.iter())
            .fold(0.0f32, |m, s| m.max(s.abs()))
    }
}

/// Averages equal-length channels sample by sample.
fn mix(channels: &[&Vec<f32>]) -> Vec<f32> {
    let len = channels[0].len();
    let scale = 1.0 / channels.len() as f32;
    (0..len)
        .map(|i| channels.iter().map(|c| c[i]).sum::<f32>() * scale)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_nan_and_ragged() {
        assert!(Audio::new(vec![], 44100, "t").is_err());
        assert!(Audio::new(vec![vec![]], 44100, "t").is_err());
        let e = Audio::new(vec![vec![0.0, f32::NAN]], 44100, "x.wav").unwrap_err();
        assert!(e.to_string().contains("x.wav") && e.to_string().contains("sample 1"));
        assert!(Audio::new(vec![vec![0.0, f32::INFINITY]], 44100, "t").is_err());
        assert!(Audio::new(vec![vec![0.0; 3], vec![0.0; 2]], 44100, "t").is_err());
        assert!(Audio::new(vec![vec![0.0; 3]], 0, "t").is_err());
    }

    #[test]
    fn layouts_mix_and_duplicate() {
        let a = Audio::new(vec![vec![1.0, 0.0], vec![0.0, 1.0]], 8000, "t").unwrap();
        let m = a.clone().with_layout(ChannelLayout::Mono);
        assert_eq!(m.channels, vec![vec![0.5, 0.5]]);
        let s = m.with_layout(ChannelLayout::Stereo);
        assert_eq!(s.channels, vec![vec![0.5, 0.5], vec![0.5, 0.5]]);
        let quad = Audio::new(vec![vec![1.0], vec![2.0], vec![3.0], vec![4.0]], 8000, "t").unwrap();
        let st = quad.with_layout(ChannelLayout::Stereo);
        assert_eq!(st.channels, vec![vec![2.0], vec![3.0]]);
    }

    #[test]
    fn slice_pads_with_zeros() {
        let a = Audio::new(vec![vec![1.0, 2.0, 3.0]], 8000, "t").unwrap();
        assert_eq!(a.slice_padded(1, 4).channels[0], vec![2.0, 3.0, 0.0, 0.0]);
        assert_eq!(a.slice_padded(5, 2).channels[0], vec![0.0, 0.0]);
    }
}
