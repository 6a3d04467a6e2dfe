//! The raga CNN's input: a spectrogram image resampled onto a pitch axis
//! relative to the tonic.
//!
//! A riffusion image's rows are HTK mel bins; its pixel intensity
//! `(255 - p) / 255` is the normalised mel amplitude to the power 0.25.
//! For each image column, the intensity is read at log-spaced frequencies
//! from `octaves_below` octaves under the tonic to `octaves_above` over it
//! (`bins_per_octave` per octave; each bin takes the largest of four
//! sub-samples across its width, linearly interpolated between mel rows, so
//! a narrow partial between two sample points is not missed). Columns are
//! averaged in groups of `frames_per_step`, and the result is standardised
//! (zero mean, unit variance) so that loudness does not matter. Shifting
//! the tonic shifts the axis, so a raga looks the same at any tonic.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spectrogram::mel::hz_to_mel;
use crate::spectrogram::{SpectrogramImage, SpectrogramParams};

/// Sub-samples per pitch bin.
const SUBSAMPLES: usize = 4;

/// Shape of the pitch axis and time pooling.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PitchAxis {
    /// Pitch bins per octave (36: 33.3 cents each).
    pub bins_per_octave: usize,
    /// Octaves below the tonic (the tanpura's low Sa is one below).
    pub octaves_below: usize,
    /// Octaves above the tonic.
    pub octaves_above: usize,
    /// Image columns (10 ms each) averaged into one time step.
    pub frames_per_step: usize,
}

impl Default for PitchAxis {
    /// 36 bins per octave over three octaves (one below the tonic, two
    /// above), 40 ms steps.
    fn default() -> Self {
        PitchAxis {
            bins_per_octave: 36,
            octaves_below: 1,
            octaves_above: 2,
            frames_per_step: 4,
        }
    }
}

impl PitchAxis {
    /// Number of pitch bins.
    pub fn num_bins(&self) -> usize {
        self.bins_per_octave * (self.octaves_below + self.octaves_above)
    }

    /// Checks the settings are usable.
    pub fn validate(&self) -> Result<()> {
        if self.bins_per_octave < 12 || self.bins_per_octave > 240 {
            return Err(Error::param(
                "bins_per_octave",
                format!("{} is outside 12-240", self.bins_per_octave),
            ));
        }
        if self.octaves_below + self.octaves_above == 0
            || self.octaves_below + self.octaves_above > 6
        {
            return Err(Error::param(
                "octaves_below/octaves_above",
                "the pitch axis must span 1-6 octaves",
            ));
        }
        if self.frames_per_step == 0 || self.frames_per_step > 64 {
            return Err(Error::param(
                "frames_per_step",
                format!("{} is outside 1-64", self.frames_per_step),
            ));
        }
        Ok(())
    }
}

/// A pitch-time image: `bins` rows (lowest pitch first), `steps` columns.
#[derive(Debug, Clone, PartialEq)]
pub struct PitchImage {
    /// Pitch bins.
    pub bins: usize,
    /// Time steps.
    pub steps: usize,
    /// `bins * steps` values, row-major `[bin * steps + step]`.
    pub data: Vec<f32>,
}

/// Resamples `image` (made with `params`) onto `axis` around `tonic_hz`.
/// Frequencies outside the image's mel range read as silence.
pub fn pitch_image(
    image: &SpectrogramImage,
    params: &SpectrogramParams,
    tonic_hz: f64,
    axis: &PitchAxis,
) -> Result<PitchImage> {
    axis.validate()?;
    if !(tonic_hz.is_finite() && tonic_hz > 0.0) {
        return Err(Error::param(
            "tonic_hz",
            format!("{tonic_hz} is not a frequency"),
        ));
    }
    let (w, h) = (image.width, image.height);
    if h != params.num_mel_bins as usize || w == 0 || image.rgb.len() != w * h * 3 {
        return Err(Error::param(
            "image",
            format!(
                "{w}x{h} image does not match {} mel bins",
                params.num_mel_bins
            ),
        ));
    }
    let bins = axis.num_bins();
    let bin_cents = 1200.0 / axis.bins_per_octave as f64;
    let low_cents = -1200.0 * axis.octaves_below as f64;
    // Per (bin, sub-sample): the mel row below and the weight of the one above.
    let taps: Vec<Option<(usize, f32)>> = (0..bins * SUBSAMPLES)
        .map(|i| {
            let (b, s) = (i / SUBSAMPLES, i % SUBSAMPLES);
            let cents =
                low_cents + (b as f64 + (s as f64 + 0.5) / SUBSAMPLES as f64 - 0.5) * bin_cents;
            let pos = mel_row(params, tonic_hz * (cents / 1200.0).exp2());
            (pos >= 0.0 && pos <= (h - 1) as f64).then(|| {
                let lo = (pos.floor() as usize).min(h - 2);
                (lo, (pos - lo as f64) as f32)
            })
        })
        .collect();
    let plane = usize::from(params.stereo);
    let level = |m: usize, t: usize| level(image, plane, m, t);
    let steps = w.div_ceil(axis.frames_per_step);
    let mut data = vec![0.0f32; bins * steps];
    let mut counts = vec![0u32; steps];
    for t in 0..w {
        counts[t / axis.frames_per_step] += 1;
    }
    for t in 0..w {
        let step = t / axis.frames_per_step;
        for b in 0..bins {
            let mut best = 0.0f32;
            for tap in &taps[b * SUBSAMPLES..(b + 1) * SUBSAMPLES] {
                if let Some((lo, frac)) = *tap {
                    let v = level(lo, t) * (1.0 - frac) + level(lo + 1, t) * frac;
                    best = best.max(v);
                }
            }
            data[b * steps + step] += best;
        }
    }
    for b in 0..bins {
        for (s, c) in counts.iter().enumerate() {
            data[b * steps + s] /= *c as f32;
        }
    }
    standardise(&mut data);
    Ok(PitchImage { bins, steps, data })
}

/// Fractional mel row (0 = the lowest filter) centred on `hz` in an image
/// made with `params`: filter k is centred on mel point k + 1 of
/// `num_mel_bins + 2` between `min_hz` and `max_hz`.
pub fn mel_row(params: &SpectrogramParams, hz: f64) -> f64 {
    let (m_min, m_max) = (
        hz_to_mel(params.min_hz as f64),
        hz_to_mel(params.max_hz as f64),
    );
    (hz_to_mel(hz) - m_min) / (m_max - m_min) * (params.num_mel_bins + 1) as f64 - 1.0
}

/// Intensity (0-1) of mel row `m` (0 = lowest; the image's top row is the
/// highest) at column `t`, in colour plane `plane` (0 mono; stereo images
/// keep the left channel in green, plane 1).
pub fn level(image: &SpectrogramImage, plane: usize, m: usize, t: usize) -> f32 {
    let i = ((image.height - 1 - m) * image.width + t) * 3 + plane;
    (255 - image.rgb[i]) as f32 / 255.0
}

/// Zero mean, unit variance (a constant image becomes all zeros).
fn standardise(x: &mut [f32]) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|v| *v as f64).sum::<f64>() / n;
    let var = x.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n;
    let scale = if var > 1e-12 { 1.0 / var.sqrt() } else { 0.0 };
    x.iter_mut()
        .for_each(|v| *v = ((*v as f64 - mean) * scale) as f32);
}

impl PitchImage {
    /// The columns `start..start + len`, repeating the last column when the
    /// image is shorter (a fixed-width window for batching).
    pub fn window(&self, start: usize, len: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.bins * len);
        for b in 0..self.bins {
            let row = &self.data[b * self.steps..(b + 1) * self.steps];
            out.extend((start..start + len).map(|s| row[s.min(self.steps - 1)]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::Audio;
    use crate::spectrogram::SpectrogramConverter;

    fn tone_image(freqs_hz: &[f64]) -> (SpectrogramImage, SpectrogramParams) {
        let params = SpectrogramParams::default();
        let n = 44100 * 2;
        let samples: Vec<f32> = (0..n)
            .map(|i| {
                freqs_hz
                    .iter()
                    .map(|f| (2.0 * std::f64::consts::PI * f * i as f64 / 44100.0).sin() as f32)
                    .sum::<f32>()
                    * 0.2
            })
            .collect();
        let conv = SpectrogramConverter::new(params.clone()).unwrap();
        let audio = Audio::new(vec![samples], 44100, "test").unwrap();
        (conv.image_from_audio(&audio).unwrap().0, params)
    }

    fn peak_bin(p: &PitchImage) -> usize {
        (0..p.bins)
            .max_by(|a, b| {
                let s = |k: usize| p.data[k * p.steps..(k + 1) * p.steps].iter().sum::<f32>();
                s(*a).total_cmp(&s(*b))
            })
            .unwrap()
    }

    #[test]
    fn a_tone_lands_on_its_interval_above_the_tonic() {
        let axis = PitchAxis::default();
        // Pa (a fifth, 702 cents) above a 150 Hz tonic.
        let (img, params) = tone_image(&[150.0 * 1.5]);
        let p = pitch_image(&img, &params, 150.0, &axis).unwrap();
        assert_eq!(p.bins, 108);
        assert_eq!(p.steps, img.width.div_ceil(4));
        // Tonic sits at bin 36; a fifth is 21 bins (of 33.3 cents) higher.
        // The 100 ms window's main lobe is ~8 bins wide at this pitch and
        // mel filters widen upwards, so allow one bin.
        assert!(peak_bin(&p).abs_diff(36 + 21) <= 1, "{}", peak_bin(&p));
        let (img, _) = tone_image(&[150.0 * 2.0]);
        let p = pitch_image(&img, &params, 150.0, &axis).unwrap();
        assert!(peak_bin(&p).abs_diff(72) <= 1, "{}", peak_bin(&p));
        let mean: f32 = p.data.iter().sum::<f32>() / p.data.len() as f32;
        assert!(mean.abs() < 1e-4);
    }

    #[test]
    fn transposing_audio_and_tonic_together_keeps_the_image() {
        let axis = PitchAxis::default();
        let (a, params) = tone_image(&[200.0, 300.0, 250.0]);
        let (b, _) = tone_image(&[200.0 * 1.25, 300.0 * 1.25, 250.0 * 1.25]);
        let pa = pitch_image(&a, &params, 200.0, &axis).unwrap();
        let pb = pitch_image(&b, &params, 250.0, &axis).unwrap();
        assert_eq!(peak_bin(&pa), peak_bin(&pb));
        // Rows above the lowest octave agree closely (mel resolution differs
        // a little between the two registers).
        let rows = |p: &PitchImage| -> Vec<f32> {
            (36..p.bins)
                .map(|k| {
                    p.data[k * p.steps..(k + 1) * p.steps].iter().sum::<f32>() / p.steps as f32
                })
                .collect()
        };
        let (ra, rb) = (rows(&pa), rows(&pb));
        let num: f32 = ra.iter().zip(&rb).map(|(x, y)| x * y).sum();
        let den =
            (ra.iter().map(|x| x * x).sum::<f32>() * rb.iter().map(|x| x * x).sum::<f32>()).sqrt();
        assert!(num / den > 0.9, "correlation {}", num / den);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let (img, params) = tone_image(&[200.0]);
        let axis = PitchAxis::default();
        assert!(pitch_image(&img, &params, f64::NAN, &axis).is_err());
        assert!(pitch_image(&img, &params, -3.0, &axis).is_err());
        let mut small = params.clone();
        small.num_mel_bins = 256;
        assert!(pitch_image(&img, &small, 200.0, &axis).is_err());
        let bad = PitchAxis {
            frames_per_step: 0,
            ..axis
        };
        assert!(pitch_image(&img, &params, 200.0, &bad).is_err());
    }

    #[test]
    fn windows_pad_with_the_last_column() {
        let p = PitchImage {
            bins: 2,
            steps: 3,
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        };
        assert_eq!(p.window(1, 4), vec![2.0, 3.0, 3.0, 3.0, 5.0, 6.0, 6.0, 6.0]);
    }
}
