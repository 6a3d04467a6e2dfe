//! Labelled audio for classifier training and evaluation: a folder of
//! clips with JSON labels as `ragafusion synth` writes them (`NAME.wav` +
//! `NAME.json` with at least `raga` and, optionally, `tonic_hz`).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::knn::{clip_features, ClipFeatures};
use crate::audio::{read_audio_as, ChannelLayout};
use crate::captions::Vocabulary;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// One labelled clip.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledClip {
    /// The audio file.
    pub path: PathBuf,
    /// Raga (vocabulary name).
    pub raga: String,
    /// Labelled tonic, if the label has one.
    pub tonic_hz: Option<f64>,
}

/// Lists the labelled clips in `dir` (WAV files with a JSON label beside
/// them), sorted by name. Labels naming an unknown raga are an error that
/// names the file.
pub fn list_labelled(dir: &Path, vocab: &Vocabulary) -> Result<Vec<LabelledClip>> {
    let mut out = Vec::new();
    for wav in crate::batch::list_files(dir, &["wav", "flac", "mp3", "ogg"])? {
        let json = wav.with_extension("json");
        if !json.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&json).map_err(|e| Error::io(&json, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::InvalidData {
            file: json.display().to_string(),
            reason: e.to_string(),
        })?;
        let raga = v["raga"].as_str().ok_or_else(|| Error::InvalidData {
            file: json.display().to_string(),
            reason: "field `raga` missing or not a string".into(),
        })?;
        let raga = vocab.raga(raga).map_err(|e| Error::InvalidData {
            file: json.display().to_string(),
            reason: e.to_string(),
        })?;
        out.push(LabelledClip {
            path: wav,
            raga: raga.name.clone(),
            tonic_hz: v["tonic_hz"].as_f64(),
        });
    }
    if out.is_empty() {
        return Err(Error::InvalidData {
            file: dir.display().to_string(),
            reason: "no labelled clips (WAV + JSON label pairs) in this folder".into(),
        });
    }
    Ok(out)
}

/// Features of every clip (in parallel), using labelled tonics when
/// `use_label_tonic` and estimating them otherwise.
pub fn features_of(
    clips: &[LabelledClip],
    use_label_tonic: bool,
    progress: &dyn Progress,
) -> Result<Vec<ClipFeatures>> {
    progress.start(clips.len() as u64, "clips");
    let out = clips
        .par_iter()
        .map(|c| {
            let audio = read_audio_as(&c.path, 44100, ChannelLayout::Mono)?;
            let tonic = if use_label_tonic { c.tonic_hz } else { None };
            let f = clip_features(&audio.channels[0], 44100, tonic, (100.0, 260.0));
            progress.advance(1);
            f.map_err(|e| match e {
                Error::InvalidAudio { reason, .. } => Error::InvalidAudio {
                    context: c.path.display().to_string(),
                    reason,
                },
                other => other,
            })
        })
        .collect();
    progress.finish();
    out
}
