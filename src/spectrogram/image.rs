//! Mel amplitudes <-> spectrogram image pixels, and PNG files carrying
//! riffusion's EXIF parameter tags.
//!
//! Forward mapping (riffusion `image_from_spectrogram`): divide by the
//! maximum over all channels, raise to `power`, scale to 255, invert
//! (`255 - x`, loud is dark), truncate to `u8`; mono goes to R, G and B,
//! stereo puts channel 0 in G and channel 1 in B (R is 0); the image is
//! flipped so low frequencies are at the bottom.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::exif::{self, tags, ExifValue};
use super::{MelSpectrogram, SpectrogramParams};
use crate::error::{Error, Result};
use crate::fsutil;

/// The `max_value` riffusion assumes when inverting an image (its
/// `audio_from_spectrogram_image` default).
pub const DEFAULT_MAX_VALUE: f32 = 30e6;

/// An 8-bit RGB spectrogram image, row 0 at the top (highest mel bin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpectrogramImage {
    /// Columns (STFT frames).
    pub width: usize,
    /// Rows (mel bins).
    pub height: usize,
    /// `height * width * 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
}

impl SpectrogramImage {
    /// The first `width` columns (all of them when the image is narrower).
    pub fn first_columns(&self, width: usize) -> SpectrogramImage {
        let width = width.min(self.width);
        let rgb = (0..self.height)
            .flat_map(|y| {
                let row = y * self.width * 3;
                self.rgb[row..row + width * 3].iter().copied()
            })
            .collect();
        SpectrogramImage {
            width,
            height: self.height,
            rgb,
        }
    }
}

/// A spectrogram image file's pixels with the parameters it carries.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The pixels.
    pub image: SpectrogramImage,
    /// Parameters from EXIF, or the defaults when the image has none.
    pub params: SpectrogramParams,
    /// The mel maximum recorded in EXIF tag 11080, if any.
    pub max_value: Option<f32>,
    /// Whether the parameters came from EXIF (false: defaults were used).
    pub has_exif: bool,
    /// All numeric EXIF tags found, by id.
    pub exif: BTreeMap<u16, ExifValue>,
}

impl LoadedImage {
    /// Keeps the columns that cover the first `max_seconds`; returns the
    /// image's whole length in seconds when it was longer.
    pub fn keep_seconds(&mut self, max_seconds: f64) -> Option<f64> {
        let step_s = self.params.step_ms as f64 / 1000.0;
        let keep_px = (max_seconds / step_s).ceil().min(usize::MAX as f64) as usize;
        let keep_px = keep_px.saturating_add(1);
        if self.image.width <= keep_px {
            return None;
        }
        let whole_s = self.image.width as f64 * step_s;
        self.image = self.image.first_columns(keep_px);
        Some(whole_s)
    }
}

impl LoadedImage {
    /// What `print-params --json` shows of an image read from `file`: its
    /// size, length, EXIF parameters and the STFT sizes they imply.
    pub fn describe_json(&self, file: &std::path::Path) -> serde_json::Value {
        let p = &self.params;
        serde_json::json!({
            "file": file,
            "has_exif": self.has_exif,
            "width_px": self.image.width,
            "height_px": self.image.height,
            "duration_s": p.num_samples(self.image.width) as f64 / p.sample_rate_hz as f64,
            "max_value": self.max_value,
            "params": p,
            "n_fft": p.n_fft(),
            "hop_length": p.hop_length(),
            "win_length": p.win_length(),
        })
    }

    /// The same as aligned text: every riffusion EXIF tag (or `(absent)`),
    /// the size and the STFT sizes.
    pub fn describe_text(&self) -> String {
        let mut lines = Vec::new();
        for (tag, name) in super::exif::tags::NAMES {
            match self.exif.get(&tag) {
                Some(v) => lines.push(format!("{name:<20} = {v:>15}")),
                None => lines.push(format!("{name:<20} = {:>15}", "(absent)")),
            }
        }
        let p = &self.params;
        let size = format!("{}x{}", self.image.width, self.image.height);
        for (name, value) in [
            ("size (px)", size),
            ("n_fft", p.n_fft().to_string()),
            ("hop_length", p.hop_length().to_string()),
            ("win_length", p.win_length().to_string()),
        ] {
            lines.push(format!("{name:<20} = {value:>15}"));
        }
        lines.join("\n")
    }
}

/// Maps mel amplitudes to pixels; returns the image and the maximum
/// amplitude used for normalising (EXIF tag 11080).
pub fn image_from_mel(mel: &MelSpectrogram, power: f64) -> (SpectrogramImage, f32) {
    let max_value = mel
        .channels
        .iter()
        .flat_map(|c| c.iter())
        .fold(0.0f32, |m, &v| m.max(v));
    let (w, h) = (mel.num_frames, mel.num_mels);
    let power = power as f32;
    let to_pixel = |v: f32| -> u8 {
        let x = if max_value > 0.0 { v / max_value } else { 0.0 };
        (255.0 - x.powf(power) * 255.0) as u8
    };
    let mut rgb = vec![0u8; w * h * 3];
    for row in 0..h {
        let m = h - 1 - row;
        for t in 0..w {
            let px = &mut rgb[(row * w + t) * 3..(row * w + t) * 3 + 3];
            match mel.channels.len() {
                1 => px.fill(to_pixel(mel.channels[0][m * w + t])),
                _ => {
                    px[0] = 0;
                    px[1] = to_pixel(mel.channels[0][m * w + t]);
                    px[2] = to_pixel(mel.channels[1][m * w + t]);
                }
            }
        }
    }
    (
        SpectrogramImage {
            width: w,
            height: h,
            rgb,
        },
        max_value,
    )
}

/// Maps pixels back to mel amplitudes (R for mono, G and B for stereo),
/// scaled so that a black pixel is `max_value`.
pub fn mel_from_image(
    image: &SpectrogramImage,
    power: f64,
    stereo: bool,
    max_value: f32,
) -> MelSpectrogram {
    let (w, h) = (image.width, image.height);
    let inv_power = (1.0 / power) as f32;
    let lut: Vec<f32> = (0..256)
        .map(|p| ((255.0 - p as f32) / 255.0).powf(inv_power) * max_value)
        .collect();
    let planes: &[usize] = if stereo { &[1, 2] } else { &[0] };
    let channels = planes
        .iter()
        .map(|&plane| {
            let mut c = vec![0.0f32; w * h];
            for m in 0..h {
                let row = h - 1 - m;
                for t in 0..w {
                    c[m * w + t] = lut[image.rgb[(row * w + t) * 3 + plane] as usize];
                }
            }
            c
        })
        .collect();
    MelSpectrogram {
        num_mels: h,
        num_frames: w,
        channels,
    }
}

/// The EXIF tags riffusion writes for `params` and `max_value`.
pub fn exif_for(params: &SpectrogramParams, max_value: f32) -> BTreeMap<u16, ExifValue> {
    let i = |v: u32| ExifValue::Int(v as i64);
    BTreeMap::from([
        (tags::SAMPLE_RATE, i(params.sample_rate_hz)),
        (tags::STEREO, ExifValue::Int(params.stereo as i64)),
        (tags::STEP_SIZE_MS, i(params.step_ms)),
        (tags::WINDOW_DURATION_MS, i(params.window_ms)),
        (tags::PADDED_DURATION_MS, i(params.padded_ms)),
        (tags::NUM_FREQUENCIES, i(params.num_mel_bins)),
        (tags::MIN_FREQUENCY, i(params.min_hz)),
        (tags::MAX_FREQUENCY, i(params.max_hz)),
        (
            tags::POWER_FOR_IMAGE,
            ExifValue::Float(params.power_for_image),
        ),
        (tags::MAX_VALUE, ExifValue::Float(max_value as f64)),
    ])
}

/// Encodes an image as PNG bytes with riffusion's EXIF tags.
pub fn encode_png(image: &SpectrogramImage, exif: &BTreeMap<u16, ExifValue>) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    write_png_to(&mut bytes, image, exif).map_err(|e| Error::InvalidImage {
        path: "<memory>".into(),
        reason: e.to_string(),
    })?;
    Ok(bytes)
}

fn write_png_to(
    w: impl Write,
    image: &SpectrogramImage,
    exif: &BTreeMap<u16, ExifValue>,
) -> std::result::Result<(), png::EncodingError> {
    let mut enc = png::Encoder::new(w, image.width as u32, image.height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header()?;
    writer.write_chunk(png::chunk::eXIf, &exif::encode(exif))?;
    writer.write_image_data(&image.rgb)?;
    writer.finish()
}

/// Writes a spectrogram PNG with its parameters in EXIF, atomically.
pub fn write_png(
    path: &Path,
    image: &SpectrogramImage,
    params: &SpectrogramParams,
    max_value: f32,
) -> Result<()> {
    let exif = exif_for(params, max_value);
    fsutil::write_atomic(path, |w| {
        write_png_to(w, image, &exif).map_err(|e| Error::InvalidImage {
            path: path.to_path_buf(),
            reason: format!("writing PNG: {e}"),
        })
    })
}

/// Reads a spectrogram PNG: 8-bit RGB, RGBA, grayscale or palette images
/// are accepted (grayscale and palette are expanded to RGB as riffusion
/// does); 16-bit images are refused. Parameters come from EXIF, falling back
/// to [`SpectrogramParams::default`] with `has_exif = false`. The height must
/// equal the parameters' mel bin count.
pub fn read_png(path: &Path) -> Result<LoadedImage> {
    let bytes = fsutil::read_bytes(path)?;
    decode_png(&bytes, path)
}

/// [`read_png`] on bytes already in memory; `path` names them in errors.
pub fn decode_png(bytes: &[u8], path: &Path) -> Result<LoadedImage> {
    let bad = |reason: String| Error::InvalidImage {
        path: path.to_path_buf(),
        reason,
    };
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(format!("not a readable PNG ({e})")))?;
    let info = reader.info();
    let (width, height) = (info.width as usize, info.height as usize);
    let (max_w, max_h) = (
        crate::limits::MAX_IMAGE_WIDTH_PX,
        crate::limits::MAX_IMAGE_HEIGHT_PX,
    );
    if width > max_w || height > max_h {
        return Err(bad(format!(
            "the header declares {width} x {height} px; spectrogram images are at most \
             {max_w} px wide (an hour) and {max_h} px high"
        )));
    }
    if info.bit_depth == png::BitDepth::Sixteen {
        return Err(bad(
            "16-bit PNG; spectrogram images have 8 bits per channel".into(),
        ));
    }
    let exif_bytes = info.exif_metadata.as_ref().map(|c| c.to_vec());
    let mut buf = vec![
        0u8;
        reader
            .output_buffer_size()
            .ok_or_else(|| bad("image too large".into()))?
    ];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(format!("corrupt PNG data ({e})")))?;
    let samples = frame.color_type.samples();
    let line = frame.line_size;
    let mut rgb = Vec::with_capacity(width * height * 3);
    for row in 0..height {
        let line_bytes = &buf[row * line..row * line + width * samples];
        for px in line_bytes.chunks_exact(samples) {
            match samples {
                1 | 2 => rgb.extend_from_slice(&[px[0], px[0], px[0]]),
                _ => rgb.extend_from_slice(&px[..3]),
            }
        }
    }
    let context = path.display().to_string();
    let exif = match exif_bytes {
        Some(b) => exif::decode(&b, &context)?,
        None => BTreeMap::new(),
    };
    let (params, has_exif) = params_from_exif(&exif, &context)?;
    if height != params.num_mel_bins as usize {
        return Err(bad(format!(
            "image is {height} px high but its parameters ask for {} mel bins (field NUM_FREQUENCIES)",
            params.num_mel_bins
        )));
    }
    if width < 2 {
        return Err(bad(format!(
            "image is {width} px wide; at least 2 columns are needed"
        )));
    }
    let max_value = exif
        .get(&tags::MAX_VALUE)
        .map(|v| v.as_f64() as f32)
        .filter(|v| v.is_finite() && *v > 0.0);
    Ok(LoadedImage {
        image: SpectrogramImage { width, height, rgb },
        params,
        max_value,
        has_exif,
        exif,
    })
}

/// Builds parameters from riffusion's EXIF tags. With none of the tags
/// present, returns the defaults and `false`; with some present, missing
/// ones take default values. Out-of-range values are an error naming the tag.
pub fn params_from_exif(
    exif: &BTreeMap<u16, ExifValue>,
    context: &str,
) -> Result<(SpectrogramParams, bool)> {
    let d = SpectrogramParams::default();
    let known = tags::NAMES
        .iter()
        .any(|(t, _)| *t != tags::MAX_VALUE && exif.contains_key(t));
    if !known {
        return Ok((d, false));
    }
    let bad = |tag: u16, reason: String| {
        let name = tags::NAMES
            .iter()
            .find(|(t, _)| *t == tag)
            .map_or("?", |(_, n)| n);
        Error::InvalidExif {
            context: context.to_string(),
            reason: format!("tag {tag} ({name}): {reason}"),
        }
    };
    let int = |tag: u16, default: u32| -> Result<u32> {
        match exif.get(&tag) {
            None => Ok(default),
            Some(ExifValue::Int(v)) if (0..=u32::MAX as i64).contains(v) => Ok(*v as u32),
            Some(ExifValue::Float(v)) if v.fract() == 0.0 && *v >= 0.0 && *v <= u32::MAX as f64 => {
                Ok(*v as u32)
            }
            Some(v) => Err(bad(tag, format!("{v} is not a non-negative integer"))),
        }
    };
    let params = SpectrogramParams {
        stereo: int(tags::STEREO, 0)? != 0,
        sample_rate_hz: int(tags::SAMPLE_RATE, d.sample_rate_hz)?,
        step_ms: int(tags::STEP_SIZE_MS, d.step_ms)?,
        window_ms: int(tags::WINDOW_DURATION_MS, d.window_ms)?,
        padded_ms: int(tags::PADDED_DURATION_MS, d.padded_ms)?,
        num_mel_bins: int(tags::NUM_FREQUENCIES, d.num_mel_bins)?,
        min_hz: int(tags::MIN_FREQUENCY, d.min_hz)?,
        max_hz: int(tags::MAX_FREQUENCY, d.max_hz)?,
        power_for_image: exif
            .get(&tags::POWER_FOR_IMAGE)
            .map_or(d.power_for_image, |v| v.as_f64()),
        griffin_lim_iters: d.griffin_lim_iters,
    };
    params.validate().map_err(|e| Error::InvalidExif {
        context: context.to_string(),
        reason: e.to_string(),
    })?;
    Ok((params, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cropping_keeps_the_first_columns_of_every_row() {
        let image = SpectrogramImage {
            width: 3,
            height: 2,
            rgb: (0..18).collect(),
        };
        let c = image.first_columns(2);
        assert_eq!((c.width, c.height), (2, 2));
        assert_eq!(c.rgb, vec![0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14]);
        assert_eq!(image.first_columns(9), image);
    }

    fn mel(channels: usize) -> MelSpectrogram {
        let (m, t) = (4, 3);
        MelSpectrogram {
            num_mels: m,
            num_frames: t,
            channels: (0..channels)
                .map(|c| (0..m * t).map(|i| (i + c) as f32).collect())
                .collect(),
        }
    }

    #[test]
    fn mapping_inverts_truncates_and_flips() {
        let (img, max) = image_from_mel(&mel(1), 0.25);
        assert_eq!(max, 11.0);
        // Max amplitude (mel 3, frame 2) is black, in the top row.
        assert_eq!(&img.rgb[2 * 3..3 * 3], &[0, 0, 0]);
        // Zero (mel 0, frame 0) is white, bottom-left.
        let bl = (3 * 3) * 3;
        assert_eq!(img.rgb[bl], 255);
        // 255 - (5/11)^0.25 * 255 = 45.6 -> 45 (mel 1, frame 2).
        let px = ((2 * 3) + 2) * 3;
        assert_eq!(img.rgb[px], 45);
    }

    #[test]
    fn stereo_uses_green_and_blue() {
        let (img, _) = image_from_mel(&mel(2), 0.25);
        assert!(img.rgb.chunks(3).all(|p| p[0] == 0));
        let back = mel_from_image(&img, 0.25, true, 12.0);
        assert_eq!(back.channels.len(), 2);
        assert!((back.channels[1][11] - 12.0).abs() < 1e-3);
    }

    #[test]
    fn pixel_round_trip_is_close() {
        let src = mel(1);
        let (img, max) = image_from_mel(&src, 0.25);
        let back = mel_from_image(&img, 0.25, false, max);
        for (a, b) in src.channels[0].iter().zip(&back.channels[0]) {
            assert!((a - b).abs() <= 0.2 * max, "{a} vs {b}");
        }
    }

    #[test]
    fn png_round_trip_with_exif() {
        let p = SpectrogramParams {
            num_mel_bins: 4,
            ..Default::default()
        };
        let (img, max) = image_from_mel(&mel(1), 0.25);
        let bytes = encode_png(&img, &exif_for(&p, max)).unwrap();
        let loaded = decode_png(&bytes, Path::new("x.png")).unwrap();
        assert!(loaded.has_exif);
        assert_eq!(loaded.params, p);
        assert_eq!(loaded.max_value, Some(max));
        assert_eq!(loaded.image, img);
    }

    #[test]
    fn wrong_height_names_file_and_field() {
        let (img, max) = image_from_mel(&mel(1), 0.25);
        let bytes = encode_png(&img, &exif_for(&SpectrogramParams::default(), max)).unwrap();
        let e = decode_png(&bytes, Path::new("short.png"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("short.png") && e.contains("NUM_FREQUENCIES"),
            "{e}"
        );
    }

    #[test]
    fn absurd_dimensions_are_refused_from_the_header() {
        for (w, h) in [(360_001u32, 1u32), (1, 4097)] {
            let mut bytes = Vec::new();
            let mut enc = png::Encoder::new(&mut bytes, w, h);
            enc.set_color(png::ColorType::Grayscale);
            let mut wr = enc.write_header().unwrap();
            wr.write_image_data(&vec![0u8; (w * h) as usize]).unwrap();
            wr.finish().unwrap();
            let e = decode_png(&bytes, Path::new("huge.png"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("huge.png") && e.contains(&format!("{w} x {h} px")),
                "{e}"
            );
        }
    }
}
