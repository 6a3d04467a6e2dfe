#![no_main]
//! Spectrogram PNGs as ragafusion reads them: the PNG decoder with its
//! size checks, riffusion's EXIF tags and the parameters built from them,
//! the pixel-to-amplitude mapping that `image-to-audio` and the raga CNN
//! start from, and the EXIF block parser on its own.

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ragafusion::spectrogram::exif;
use ragafusion::spectrogram::image::{decode_png, mel_from_image, DEFAULT_MAX_VALUE};

fuzz_target!(|data: &[u8]| {
    let file = Path::new("input.png");
    if let Ok(loaded) = decode_png(data, file) {
        let _ = loaded.describe_json(file);
        let p = &loaded.params;
        let max = loaded.max_value.unwrap_or(DEFAULT_MAX_VALUE);
        let _ = mel_from_image(&loaded.image, p.power_for_image, p.stereo, max);
    }
    let _ = exif::decode(data, "input EXIF");
});
