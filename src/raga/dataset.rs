//! Labelled audio for classifier training and evaluation: a folder of
//! clips with JSON labels as `ragafusion synth` writes them (`NAME.wav` +
//! `NAME.json` with at least `raga` and, optionally, `tonic_hz`).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::knn::{clip_features, ClipFeatures};
use super::pitch_image::{pitch_image, PitchAxis, PitchImage};
use super::tonic::resolve_tonic;
use crate::audio::{read_audio_as, ChannelLayout};
use crate::captions::Vocabulary;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::spectrogram::{SpectrogramConverter, SpectrogramParams};

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

/// A label whose raga the vocabulary does not know.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UnknownLabel {
    /// The audio file.
    pub file: PathBuf,
    /// The raga as the label spells it.
    pub raga: String,
    /// Why it was not matched (with the nearest known names).
    pub reason: String,
}

/// Lists the labelled clips in `dir` (audio files with a JSON label beside
/// them), sorted by name. Labels naming an unknown raga are an error that
/// names the file.
pub fn list_labelled(dir: &Path, vocab: &Vocabulary) -> Result<Vec<LabelledClip>> {
    let (clips, unknown) = list_labelled_known(dir, vocab)?;
    match unknown.into_iter().next() {
        Some(u) => Err(Error::InvalidData {
            file: u.file.with_extension("json").display().to_string(),
            reason: u.reason,
        }),
        None => Ok(clips),
    }
}

/// Like [`list_labelled`], but labels naming a raga the vocabulary does
/// not know are returned beside the clips instead of failing (real
/// recordings' labels often do). At least one clip must be known.
pub fn list_labelled_known(
    dir: &Path,
    vocab: &Vocabulary,
) -> Result<(Vec<LabelledClip>, Vec<UnknownLabel>)> {
    let (mut out, mut unknown) = (Vec::new(), Vec::new());
    for audio in crate::batch::list_files(dir, &crate::batch::AUDIO_EXTENSIONS)? {
        let json = audio.with_extension("json");
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
        match vocab.raga(raga) {
            Ok(r) => out.push(LabelledClip {
                path: audio,
                raga: r.name.clone(),
                tonic_hz: v["tonic_hz"].as_f64(),
            }),
            Err(e) => unknown.push(UnknownLabel {
                file: audio,
                raga: raga.to_string(),
                reason: format!("field `raga`: {e}"),
            }),
        }
    }
    if out.is_empty() && unknown.is_empty() {
        return Err(Error::InvalidData {
            file: dir.display().to_string(),
            reason: "no labelled clips (audio + JSON label pairs) in this folder".into(),
        });
    }
    if out.is_empty() {
        return Err(Error::InvalidData {
            file: dir.display().to_string(),
            reason: format!(
                "none of the {} labelled clips names a raga of the vocabulary",
                unknown.len()
            ),
        });
    }
    Ok((out, unknown))
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
            f.map_err(|e| rename_context(e, &c.path.display().to_string()))
        })
        .collect();
    progress.finish();
    out
}

/// How [`pitch_images_of`] makes the CNN's inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputSettings {
    /// The pitch axis.
    pub axis: PitchAxis,
    /// Use the labels' tonics (estimate when false or missing).
    pub use_label_tonic: bool,
    /// Tonic search range for estimates, Hz.
    pub tonic_range_hz: (f64, f64),
    /// Inputs per clip.
    pub views: usize,
    /// With `views > 1`, each view moves the tonic by a random offset
    /// within +- this many cents.
    pub jitter_cents: f64,
    /// Seed of the offsets (combined with the clip's position).
    pub seed: u64,
}

/// The CNN's inputs for every clip (in parallel): its riffusion
/// spectrogram image resampled onto the pitch axis around the tonic
/// (labelled or estimated), `views` times with tonic offsets so that
/// training sees the small errors of estimated tonics.
pub fn pitch_images_of(
    clips: &[LabelledClip],
    s: &InputSettings,
    progress: &dyn Progress,
) -> Result<Vec<Vec<PitchImage>>> {
    let params = SpectrogramParams::default();
    let conv = SpectrogramConverter::new(params.clone())?;
    progress.start(clips.len() as u64, "clips");
    let out = clips
        .par_iter()
        .enumerate()
        .map(|(i, c)| {
            let name = c.path.display().to_string();
            let audio = read_audio_as(&c.path, params.sample_rate_hz, ChannelLayout::Mono)?;
            let given = if s.use_label_tonic { c.tonic_hz } else { None };
            let tonic = resolve_tonic(
                &audio.channels[0],
                params.sample_rate_hz,
                given,
                s.tonic_range_hz,
            )
            .map_err(|e| rename_context(e, &name))?;
            let (image, _) = conv.image_from_audio(&audio)?;
            let mut rng = ChaCha8Rng::seed_from_u64(s.seed.wrapping_add(i as u64 * 0x9e37_79b9));
            let images = (0..s.views.max(1))
                .map(|_| {
                    let cents = if s.views > 1 && s.jitter_cents > 0.0 {
                        rng.random_range(-s.jitter_cents..=s.jitter_cents)
                    } else {
                        0.0
                    };
                    pitch_image(&image, &params, tonic * (cents / 1200.0).exp2(), &s.axis)
                })
                .collect::<Result<Vec<_>>>();
            progress.advance(1);
            images
        })
        .collect();
    progress.finish();
    out
}

/// Puts the clip's file name on audio errors raised deeper down.
fn rename_context(e: Error, name: &str) -> Error {
    match e {
        Error::InvalidAudio { reason, .. } => Error::InvalidAudio {
            context: name.to_string(),
            reason,
        },
        other => other,
    }
}
