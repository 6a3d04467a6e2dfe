//! The minimal EXIF (TIFF IFD) codec for riffusion's parameter tags.
//!
//! Riffusion stores its parameters as private EXIF tags 11000-11080 in a
//! PNG `eXIf` chunk, written by Pillow: integers as SHORT (LONG when they do
//! not fit 16 bits), floats as DOUBLE, little-endian. This module writes the
//! same layout and reads any IFD0 of numeric tags in either byte order.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Riffusion's EXIF tag ids.
pub mod tags {
    /// Sample rate in Hz (integer).
    pub const SAMPLE_RATE: u16 = 11000;
    /// Stereo flag, 0 or 1.
    pub const STEREO: u16 = 11005;
    /// Hop in milliseconds.
    pub const STEP_SIZE_MS: u16 = 11010;
    /// Window length in milliseconds.
    pub const WINDOW_DURATION_MS: u16 = 11020;
    /// FFT length in milliseconds.
    pub const PADDED_DURATION_MS: u16 = 11030;
    /// Number of mel bins.
    pub const NUM_FREQUENCIES: u16 = 11040;
    /// Lowest mel frequency in Hz.
    pub const MIN_FREQUENCY: u16 = 11050;
    /// Highest mel frequency in Hz.
    pub const MAX_FREQUENCY: u16 = 11060;
    /// Power applied before quantising (double).
    pub const POWER_FOR_IMAGE: u16 = 11070;
    /// Largest mel amplitude before normalising (double).
    pub const MAX_VALUE: u16 = 11080;

    /// Tag id and riffusion's name for each tag, in id order.
    pub const NAMES: [(u16, &str); 10] = [
        (SAMPLE_RATE, "SAMPLE_RATE"),
        (STEREO, "STEREO"),
        (STEP_SIZE_MS, "STEP_SIZE_MS"),
        (WINDOW_DURATION_MS, "WINDOW_DURATION_MS"),
        (PADDED_DURATION_MS, "PADDED_DURATION_MS"),
        (NUM_FREQUENCIES, "NUM_FREQUENCIES"),
        (MIN_FREQUENCY, "MIN_FREQUENCY"),
        (MAX_FREQUENCY, "MAX_FREQUENCY"),
        (POWER_FOR_IMAGE, "POWER_FOR_IMAGE"),
        (MAX_VALUE, "MAX_VALUE"),
    ];
}

/// A numeric EXIF value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExifValue {
    /// An integer tag (BYTE, SHORT, LONG and their signed forms).
    Int(i64),
    /// A real tag (FLOAT, DOUBLE, RATIONAL).
    Float(f64),
}

impl ExifValue {
    /// The value as a float.
    pub fn as_f64(self) -> f64 {
        match self {
            ExifValue::Int(v) => v as f64,
            ExifValue::Float(v) => v,
        }
    }
}

impl std::fmt::Display for ExifValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExifValue::Int(v) => write!(f, "{v}"),
            ExifValue::Float(v) => write!(f, "{v}"),
        }
    }
}

const SHORT: u16 = 3;
const LONG: u16 = 4;
const SLONG: u16 = 9;
const DOUBLE: u16 = 12;

/// Encodes tags as a little-endian TIFF header plus one IFD, the bytes that
/// go into a PNG `eXIf` chunk.
pub fn encode(entries: &BTreeMap<u16, ExifValue>) -> Vec<u8> {
    let n = entries.len();
    let ifd_len = 2 + 12 * n + 4;
    let mut out = Vec::with_capacity(8 + ifd_len + 8 * n);
    out.extend_from_slice(b"II\x2a\x00");
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&(n as u16).to_le_bytes());
    let mut extra: Vec<u8> = Vec::new();
    let extra_base = 8 + ifd_len;
    for (&tag, &value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        match value {
            ExifValue::Int(v) if (0..65536).contains(&v) => {
                out.extend_from_slice(&SHORT.to_le_bytes());
                out.extend_from_slice(&1u32.to_le_bytes());
                out.extend_from_slice(&(v as u16).to_le_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            ExifValue::Int(v) => {
                let (ty, bytes) = if v >= 0 {
                    (LONG, (v.min(u32::MAX as i64) as u32).to_le_bytes())
                } else {
                    (SLONG, (v.max(i32::MIN as i64) as i32).to_le_bytes())
                };
                out.extend_from_slice(&ty.to_le_bytes());
                out.extend_from_slice(&1u32.to_le_bytes());
                out.extend_from_slice(&bytes);
            }
            ExifValue::Float(v) => {
                out.extend_from_slice(&DOUBLE.to_le_bytes());
                out.extend_from_slice(&1u32.to_le_bytes());
                out.extend_from_slice(&((extra_base + extra.len()) as u32).to_le_bytes());
                extra.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&extra);
    out
}

/// Decodes the numeric tags of IFD0. Accepts an optional `Exif\0\0`
/// prefix and either byte order; non-numeric tags are skipped.
pub fn decode(bytes: &[u8], context: &str) -> Result<BTreeMap<u16, ExifValue>> {
    let bad = |reason: &str| Error::InvalidExif {
        context: context.to_string(),
        reason: reason.to_string(),
    };
    let b = bytes.strip_prefix(b"Exif\0\0").unwrap_or(bytes);
    if b.len() < 8 {
        return Err(bad("shorter than a TIFF header"));
    }
    let le = match &b[0..4] {
        b"II\x2a\x00" => true,
        b"MM\x00\x2a" => false,
        _ => return Err(bad("no TIFF header (II*/MM*)")),
    };
    let u16_at = |o: usize| -> Option<u16> {
        let s: [u8; 2] = b.get(o..o + 2)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        })
    };
    let u32_at = |o: usize| -> Option<u32> {
        let s: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    };
    let u64_at = |o: usize| -> Option<u64> {
        let s: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
        Some(if le {
            u64::from_le_bytes(s)
        } else {
            u64::from_be_bytes(s)
        })
    };
    let ifd = u32_at(4).ok_or_else(|| bad("truncated header"))? as usize;
    let count = u16_at(ifd).ok_or_else(|| bad("IFD offset points past the end"))? as usize;
    let mut out = BTreeMap::new();
    for i in 0..count {
        let e = ifd + 2 + 12 * i;
        let (Some(tag), Some(ty), Some(n)) = (u16_at(e), u16_at(e + 2), u32_at(e + 4)) else {
            return Err(bad("IFD entries run past the end"));
        };
        if n != 1 {
            continue;
        }
        let v = e + 8;
        let indirect = || u32_at(v).map(|o| o as usize);
        let value = match ty {
            1 => b.get(v).map(|&x| ExifValue::Int(x as i64)),
            6 => b.get(v).map(|&x| ExifValue::Int(x as i8 as i64)),
            3 => u16_at(v).map(|x| ExifValue::Int(x as i64)),
            8 => u16_at(v).map(|x| ExifValue::Int(x as i16 as i64)),
            4 => u32_at(v).map(|x| ExifValue::Int(x as i64)),
            9 => u32_at(v).map(|x| ExifValue::Int(x as i32 as i64)),
            11 => u32_at(v).map(|x| ExifValue::Float(f32::from_bits(x) as f64)),
            12 => indirect()
                .and_then(u64_at)
                .map(|x| ExifValue::Float(f64::from_bits(x))),
            5 | 10 => indirect().and_then(|o| {
                let (num, den) = (u32_at(o)?, u32_at(o + 4)?);
                let (num, den) = if ty == 10 {
                    (num as i32 as f64, den as i32 as f64)
                } else {
                    (num as f64, den as f64)
                };
                (den != 0.0).then(|| ExifValue::Float(num / den))
            }),
            _ => continue,
        };
        match value {
            Some(v) => {
                out.insert(tag, v);
            }
            None => return Err(bad(&format!("value of tag {tag} runs past the end"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_pillow_types() {
        let mut m = BTreeMap::new();
        m.insert(tags::SAMPLE_RATE, ExifValue::Int(44100));
        m.insert(tags::STEREO, ExifValue::Int(0));
        m.insert(tags::POWER_FOR_IMAGE, ExifValue::Float(0.25));
        m.insert(tags::MAX_VALUE, ExifValue::Int(96000));
        let bytes = encode(&m);
        assert_eq!(&bytes[0..8], b"II\x2a\x00\x08\x00\x00\x00");
        // 44100 fits in a SHORT, as Pillow writes it.
        assert_eq!(u16::from_le_bytes([bytes[12], bytes[13]]), SHORT);
        assert_eq!(decode(&bytes, "t").unwrap(), m);
        let mut prefixed = b"Exif\0\0".to_vec();
        prefixed.extend_from_slice(&bytes);
        assert_eq!(decode(&prefixed, "t").unwrap(), m);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"", "x").is_err());
        assert!(decode(b"II\x2a\x00\xff\xff\x00\x00", "x").is_err());
        let mut m = BTreeMap::new();
        m.insert(11070, ExifValue::Float(0.5));
        let bytes = encode(&m);
        assert!(decode(&bytes[..bytes.len() - 4], "x").is_err());
    }

    #[test]
    fn reads_big_endian() {
        // MM header, one SHORT entry 11000 = 22050.
        let mut b = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01".to_vec();
        b.extend_from_slice(&11000u16.to_be_bytes());
        b.extend_from_slice(&3u16.to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&22050u16.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        assert_eq!(decode(&b, "t").unwrap()[&11000], ExifValue::Int(22050));
    }
}
