//! Spectrogram parameters: riffusion's defaults and presets, validation and
//! the derived FFT sizes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Everything needed to turn audio into a spectrogram image and back.
///
/// Field meanings and defaults follow riffusion's `SpectrogramParams`; every
/// image stores them in its EXIF tags (see `docs/spectrogram-format.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpectrogramParams {
    /// Two channels (left in the image's green plane, right in blue) or one.
    pub stereo: bool,
    /// Audio sample rate in Hz.
    pub sample_rate_hz: u32,
    /// Hop between STFT frames in milliseconds (one image column).
    pub step_ms: u32,
    /// Hann window length in milliseconds.
    pub window_ms: u32,
    /// FFT length in milliseconds (the window zero-padded to this).
    pub padded_ms: u32,
    /// Number of mel bins (image height).
    pub num_mel_bins: u32,
    /// Lowest frequency of the mel filterbank in Hz.
    pub min_hz: u32,
    /// Highest frequency of the mel filterbank in Hz.
    pub max_hz: u32,
    /// Exponent applied to normalised amplitudes before quantising to pixels.
    pub power_for_image: f64,
    /// Griffin-Lim iterations used by the default inversion.
    pub griffin_lim_iters: u32,
}

impl Default for SpectrogramParams {
    /// Riffusion's defaults: 44.1 kHz mono, 10 ms hop, 100 ms window padded
    /// to 400 ms, 512 HTK mel bins over 0-10 kHz, power 0.25, 32 Griffin-Lim
    /// iterations.
    fn default() -> Self {
        SpectrogramParams {
            stereo: false,
            sample_rate_hz: 44100,
            step_ms: 10,
            window_ms: 100,
            padded_ms: 400,
            num_mel_bins: 512,
            min_hz: 0,
            max_hz: 10000,
            power_for_image: 0.25,
            griffin_lim_iters: 32,
        }
    }
}

/// Named parameter presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// Riffusion's defaults (riffusion-model-v1's training images).
    #[default]
    Riffusion,
    /// Riffusion's "20 kHz" set: stereo, 10 Hz - 20 kHz.
    Hz20k,
}

crate::choices!(Preset, "preset", [
    Riffusion => "riffusion": "riffusion's defaults",
    Hz20k => "20khz": "riffusion's stereo 10 Hz - 20 kHz set",
]);

impl SpectrogramParams {
    /// The parameters of a named preset.
    pub fn preset(preset: Preset) -> Self {
        match preset {
            Preset::Riffusion => Self::default(),
            Preset::Hz20k => Self::hz20k(),
        }
    }

    /// Riffusion's "20 kHz" stereo preset: 10 Hz to 20 kHz, stereo.
    pub fn hz20k() -> Self {
        SpectrogramParams {
            stereo: true,
            min_hz: 10,
            max_hz: 20000,
            ..Self::default()
        }
    }

    /// FFT length in samples: `int(padded_ms / 1000 * sample_rate)`.
    pub fn n_fft(&self) -> usize {
        ms_to_samples(self.padded_ms, self.sample_rate_hz)
    }

    /// Window length in samples.
    pub fn win_length(&self) -> usize {
        ms_to_samples(self.window_ms, self.sample_rate_hz)
    }

    /// Hop length in samples.
    pub fn hop_length(&self) -> usize {
        ms_to_samples(self.step_ms, self.sample_rate_hz)
    }

    /// Number of one-sided STFT bins, `n_fft / 2 + 1`.
    pub fn num_stft_bins(&self) -> usize {
        self.n_fft() / 2 + 1
    }

    /// Number of audio channels the image encodes.
    pub fn num_channels(&self) -> usize {
        if self.stereo {
            2
        } else {
            1
        }
    }

    /// Image width (STFT frames) for `len` samples: `1 + len / hop`.
    pub fn num_frames(&self, len_samples: usize) -> usize {
        1 + len_samples / self.hop_length()
    }

    /// Audio length in samples for an image `width` columns wide.
    pub fn num_samples(&self, width: usize) -> usize {
        self.hop_length() * width.saturating_sub(1)
    }

    /// Checks every field and the relations between them.
    pub fn validate(&self) -> Result<()> {
        if self.sample_rate_hz < 1000 {
            return Err(Error::param(
                "sample_rate_hz",
                format!("{} Hz is below 1000 Hz", self.sample_rate_hz),
            ));
        }
        if self.step_ms == 0 || self.hop_length() == 0 {
            return Err(Error::param("step_ms", "hop must be at least one sample"));
        }
        if self.window_ms == 0 || self.win_length() < 2 {
            return Err(Error::param(
                "window_ms",
                "window must be at least two samples",
            ));
        }
        if self.padded_ms < self.window_ms {
            return Err(Error::param(
                "padded_ms",
                format!(
                    "{} ms is shorter than the {} ms window",
                    self.padded_ms, self.window_ms
                ),
            ));
        }
        if self.padded_ms > 10_000 {
            return Err(Error::param("padded_ms", "FFT longer than 10 s"));
        }
        if self.num_mel_bins == 0 || self.num_mel_bins > 4096 {
            return Err(Error::param("num_mel_bins", "must be between 1 and 4096"));
        }
        let nyquist = self.sample_rate_hz / 2;
        if self.max_hz > nyquist {
            return Err(Error::param(
                "max_hz",
                format!(
                    "{} Hz is above the Nyquist frequency {nyquist} Hz",
                    self.max_hz
                ),
            ));
        }
        if self.min_hz >= self.max_hz {
            return Err(Error::param(
                "min_hz",
                format!("{} Hz is not below max_hz {} Hz", self.min_hz, self.max_hz),
            ));
        }
        if !(self.power_for_image.is_finite() && self.power_for_image > 0.0) {
            return Err(Error::param(
                "power_for_image",
                format!("{} is not a positive number", self.power_for_image),
            ));
        }
        if self.griffin_lim_iters > 10_000 {
            return Err(Error::param(
                "griffin_lim_iters",
                "more than 10000 iterations",
            ));
        }
        Ok(())
    }
}

/// `int(ms / 1000 * rate)`, computed in floating point as riffusion does.
fn ms_to_samples(ms: u32, rate_hz: u32) -> usize {
    (ms as f64 / 1000.0 * rate_hz as f64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn riffusion_derived_sizes() {
        let p = SpectrogramParams::default();
        p.validate().unwrap();
        assert_eq!(p.n_fft(), 17640);
        assert_eq!(p.win_length(), 4410);
        assert_eq!(p.hop_length(), 441);
        assert_eq!(p.num_stft_bins(), 8821);
        assert_eq!(p.num_frames(225_792), 513);
        assert_eq!(p.num_samples(513), 225_792);
        SpectrogramParams::hz20k().validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let cases: Vec<(SpectrogramParams, &str)> = vec![
            (
                SpectrogramParams {
                    max_hz: 30000,
                    ..Default::default()
                },
                "max_hz",
            ),
            (
                SpectrogramParams {
                    min_hz: 10000,
                    ..Default::default()
                },
                "min_hz",
            ),
            (
                SpectrogramParams {
                    step_ms: 0,
                    ..Default::default()
                },
                "step_ms",
            ),
            (
                SpectrogramParams {
                    padded_ms: 50,
                    ..Default::default()
                },
                "padded_ms",
            ),
            (
                SpectrogramParams {
                    num_mel_bins: 0,
                    ..Default::default()
                },
                "num_mel_bins",
            ),
            (
                SpectrogramParams {
                    power_for_image: f64::NAN,
                    ..Default::default()
                },
                "power_for_image",
            ),
        ];
        for (p, field) in cases {
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let p = SpectrogramParams::hz20k();
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<SpectrogramParams>(&s).unwrap(), p);
    }
}
