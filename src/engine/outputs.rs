//! What a job hands back, and writing it: `NAME.wav`, the spectrogram
//! `NAME.png` (spectrogram models, with riffusion's EXIF) and the
//! `NAME.json` sidecar with every setting that shaped the result.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::audio::{write_wav, Audio, WavFormat};
use crate::error::Result;
use crate::fsutil::{refuse_overwriting, write_json_atomic};
use crate::progress::Progress;
use crate::spectrogram::image::DEFAULT_MAX_VALUE;
use crate::spectrogram::{
    write_png, InversionSettings, LoadedImage, Quality, SpectrogramConverter, SpectrogramImage,
    SpectrogramParams,
};

/// One finished output of a job.
#[derive(Debug, Clone)]
pub struct Generated {
    /// File stem of its outputs (`kalyani-raga-s42`, `a-to-b-03`).
    pub name: String,
    /// The audio.
    pub audio: Audio,
    /// The spectrogram the model made and its parameters (spectrogram
    /// models only).
    pub image: Option<(SpectrogramImage, SpectrogramParams)>,
    /// The sidecar: kind, prompt, seed, settings, model, timings.
    pub sidecar: serde_json::Value,
    /// The request's input files, which [`write_outputs`] never replaces.
    pub inputs: Vec<PathBuf>,
}

/// The output of a spectrogram model: `rgb` (made with `params`) and its
/// audio, reconstructed at `quality` with `seed`; the sidecar gains
/// `timings_s.audio`.
pub fn spectrogram_output(
    name: String,
    rgb: SpectrogramImage,
    params: &SpectrogramParams,
    quality: Quality,
    seed: u64,
    mut sidecar: serde_json::Value,
    progress: &dyn Progress,
) -> Result<Generated> {
    let t0 = std::time::Instant::now();
    let loaded = LoadedImage {
        image: rgb,
        params: params.clone(),
        max_value: Some(DEFAULT_MAX_VALUE),
        has_exif: true,
        exif: Default::default(),
    };
    let inversion = InversionSettings {
        quality,
        seed,
        ..InversionSettings::default()
    };
    let audio = SpectrogramConverter::new(params.clone())?.audio_from_image(
        &loaded,
        &inversion.options(params),
        progress,
    )?;
    sidecar["timings_s"]["audio"] = json!(t0.elapsed().as_secs_f64());
    Ok(Generated {
        name,
        audio,
        image: Some((loaded.image, params.clone())),
        sidecar,
        inputs: Vec::new(),
    })
}

/// A file-name-safe slug of a prompt (at most 40 characters;
/// `unconditional` for an empty one). Indian scripts are read as Latin
/// letters first, so a Tamil or Devanagari prompt gets a name too.
pub fn slug(text: &str) -> String {
    let mut s = String::new();
    let latin = crate::captions::indic::to_latin(text);
    for c in latin.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
        if s.len() >= 40 {
            break;
        }
    }
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "unconditional".into()
    } else {
        s
    }
}

/// Writes `name`.png (spectrogram models), `name`.wav (16-bit PCM) and
/// `name`.json into `dir` (created if needed), each atomically; returns
/// the WAV's path. The sidecar gains `duration_s` and `files`. A file
/// that would replace one of the request's inputs is refused before any
/// is written.
pub fn write_outputs(dir: &Path, made: &Generated) -> Result<PathBuf> {
    let name = &made.name;
    crate::limits::file_name("name", name)?;
    let inputs: Vec<&Path> = made.inputs.iter().map(PathBuf::as_path).collect();
    for ext in ["png", "wav", "json"] {
        refuse_overwriting(&dir.join(format!("{name}.{ext}")), &inputs)?;
    }
    crate::fsutil::create_dir(dir)?;
    let mut sidecar = made.sidecar.clone();
    let mut files = json!({"wav": format!("{name}.wav")});
    if let Some((image, params)) = &made.image {
        write_png(
            &dir.join(format!("{name}.png")),
            image,
            params,
            DEFAULT_MAX_VALUE,
        )?;
        files["png"] = json!(format!("{name}.png"));
    }
    let wav = dir.join(format!("{name}.wav"));
    write_wav(&wav, &made.audio, WavFormat::Pcm16)?;
    sidecar["duration_s"] = json!(made.audio.duration_s());
    sidecar["files"] = files;
    write_json_atomic(&dir.join(format!("{name}.json")), &sidecar)?;
    Ok(wav)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("Kalyani raga, Adi tala!"), "kalyani-raga-adi-tala");
        assert_eq!(slug(""), "unconditional");
        assert_eq!(slug("கல்யாணி ராகம்"), "kalyaani-raakam");
        assert_eq!(slug("राग तोडी"), "raaga-todii");
    }
}
