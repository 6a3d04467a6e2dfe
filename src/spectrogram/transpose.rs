//! Transposing a spectrogram image in pitch: every frequency scaled by one
//! ratio, done on the mel rows.
//!
//! Output row `i` (mel bin centre `f_i`) takes the source at `f_i / ratio`,
//! read between the two nearest source bins by linear interpolation of
//! the pixel's loudness; sources outside the band are silence. A ratio of
//! `2^(s/12)` moves the music `s` semitones, drone and timbre with it, as
//! a tape played faster would but without changing its duration.

use super::image::SpectrogramImage;
use super::mel::{hz_to_mel, mel_to_hz};
use super::params::SpectrogramParams;
use crate::error::{Error, Result};

/// The pixel value of silence (riffusion images are inverted: loud is black).
const SILENT: u8 = 255;

/// Mel bin centres in Hz, lowest first.
fn centres_hz(params: &SpectrogramParams) -> Vec<f64> {
    let n = params.num_mel_bins as usize;
    let (lo, hi) = (
        hz_to_mel(params.min_hz as f64),
        hz_to_mel(params.max_hz as f64),
    );
    let step = (hi - lo) / (n + 1) as f64;
    (1..=n).map(|i| mel_to_hz(lo + step * i as f64)).collect()
}

/// `image` (made with `params`) with every frequency multiplied by `ratio`
/// (0.25 to 4).
pub fn transpose_image(
    image: &SpectrogramImage,
    params: &SpectrogramParams,
    ratio: f64,
) -> Result<SpectrogramImage> {
    if !(ratio.is_finite() && (0.25..=4.0).contains(&ratio)) {
        return Err(Error::param(
            "transpose ratio",
            format!("{ratio} is outside 0.25-4 (two octaves either way)"),
        ));
    }
    let n = params.num_mel_bins as usize;
    if image.height != n {
        return Err(Error::param(
            "num_mel_bins",
            format!("the image has {} rows, the parameters {n}", image.height),
        ));
    }
    if (ratio - 1.0).abs() < 1e-12 {
        return Ok(image.clone());
    }
    let (lo, hi) = (
        hz_to_mel(params.min_hz as f64),
        hz_to_mel(params.max_hz as f64),
    );
    let step = (hi - lo) / (n + 1) as f64;
    let w = image.width;
    let mut out = vec![SILENT; image.rgb.len()];
    for (bin, f) in centres_hz(params).into_iter().enumerate() {
        // fractional source bin (0 = lowest)
        let j = (hz_to_mel(f / ratio) - lo) / step - 1.0;
        if !(0.0..=(n - 1) as f64).contains(&j) {
            continue;
        }
        let j0 = j.floor() as usize;
        let j1 = (j0 + 1).min(n - 1);
        let t = (j - j0 as f64) as f32;
        // rows are top-down: bin b is row n - 1 - b
        let (r0, r1, ro) = (n - 1 - j0, n - 1 - j1, n - 1 - bin);
        for x in 0..w {
            for c in 0..3 {
                let a = (SILENT - image.rgb[(r0 * w + x) * 3 + c]) as f32;
                let b = (SILENT - image.rgb[(r1 * w + x) * 3 + c]) as f32;
                let v = a + (b - a) * t;
                out[(ro * w + x) * 3 + c] = SILENT - v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Ok(SpectrogramImage {
        width: w,
        height: n,
        rgb: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::Audio;
    use crate::spectrogram::converter::SpectrogramConverter;

    fn params() -> SpectrogramParams {
        SpectrogramParams {
            sample_rate_hz: 22050,
            num_mel_bins: 128,
            min_hz: 40,
            max_hz: 4000,
            ..Default::default()
        }
    }

    /// The loudest bin of a sine's image, in Hz, in the middle column.
    fn loudest_hz(image: &SpectrogramImage, p: &SpectrogramParams) -> f64 {
        let x = image.width / 2;
        let n = image.height;
        let row = (0..n)
            .min_by_key(|&r| image.rgb[(r * image.width + x) * 3])
            .unwrap();
        centres_hz(p)[n - 1 - row]
    }

    #[test]
    fn a_sine_moves_by_the_ratio() {
        let p = params();
        let conv = SpectrogramConverter::new(p.clone()).unwrap();
        let sr = p.sample_rate_hz as f64;
        let tone: Vec<f32> = (0..22050)
            .map(|i| (0.5 * (2.0 * std::f64::consts::PI * 220.0 * i as f64 / sr).sin()) as f32)
            .collect();
        let audio = Audio::new(vec![tone], p.sample_rate_hz, "sine").unwrap();
        let (image, _) = conv.image_from_audio(&audio).unwrap();
        let before = loudest_hz(&image, &p);
        assert!((before / 220.0 - 1.0).abs() < 0.05, "{before}");
        let up = transpose_image(&image, &p, 2f64.powf(7.0 / 12.0)).unwrap();
        let after = loudest_hz(&up, &p);
        assert!((after / 329.6 - 1.0).abs() < 0.05, "{after}");
        let down = transpose_image(&image, &p, 0.5).unwrap();
        assert!((loudest_hz(&down, &p) / 110.0 - 1.0).abs() < 0.06);
        // identity, and refusals
        assert_eq!(transpose_image(&image, &p, 1.0).unwrap(), image);
        assert!(transpose_image(&image, &p, 9.0).is_err());
        assert!(transpose_image(&image, &p, f64::NAN).is_err());
        let mut q = p.clone();
        q.num_mel_bins = 64;
        assert!(transpose_image(&image, &q, 1.2)
            .unwrap_err()
            .to_string()
            .contains("rows"));
    }
}
