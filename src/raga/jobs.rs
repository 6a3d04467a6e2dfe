//! The classifier jobs on folders of labelled clips: `train-classifier`
//! (a kNN or CNN raga classifier fitted on them) and `evaluate` (a
//! classifier measured on them).

use std::path::{Path, PathBuf};

use super::classifier::Classifier;
use super::cnn::CnnConfig;
use super::cnn_train::{train_cnn, Example, TrainOptions};
use super::dataset::{
    features_of, list_labelled, list_labelled_known, pitch_images_of, InputSettings, LabelledClip,
    UnknownLabel,
};
use super::evaluate::evaluate;
use super::knn::KnnModel;
use crate::captions::Vocabulary;
use crate::error::{Error, Result};
use crate::fsutil::{write_bytes_atomic, write_json_atomic};
use crate::plot::charts::confusion_matrix;
use crate::progress::Progress;

/// Which classifier to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassifierKind {
    /// PCD/TDMS features + k nearest neighbours.
    Knn,
    /// CNN on tonic-relative spectrogram images.
    #[default]
    Cnn,
}

crate::choices!(ClassifierKind, "kind", [
    Knn => "knn": "PCD/TDMS features + k nearest neighbours",
    Cnn => "cnn": "CNN on tonic-relative spectrogram images",
]);

/// What `train-classifier` is asked to do.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierJob {
    /// Folder of labelled clips (WAV + JSON label).
    pub data: PathBuf,
    /// Output folder for `config.json` + `model.safetensors` (+
    /// `training.json`).
    pub out: PathBuf,
    /// Classifier kind.
    pub kind: ClassifierKind,
    /// kNN: neighbours that vote.
    pub k: usize,
    /// kNN: training clips kept per raga.
    pub max_per_raga: usize,
    /// CNN: passes over the training clips.
    pub epochs: usize,
    /// CNN: clips per optimisation step.
    pub batch_size: usize,
    /// CNN: peak learning rate (cosine decay to 5% of it).
    pub learning_rate: f64,
    /// CNN: views of each clip, each with a jittered tonic.
    pub views: usize,
    /// CNN: largest tonic offset of a view, cents.
    pub tonic_jitter_cents: f64,
    /// CNN: seed for initialisation, shuffling and augmentation.
    pub seed: u64,
}

/// Runs the job; returns a one-line summary.
pub fn train_classifier(a: &ClassifierJob, progress: &dyn Progress) -> Result<String> {
    let vocab = Vocabulary::builtin();
    let clips = list_labelled(&a.data, vocab)?;
    let mut ragas: Vec<String> = clips.iter().map(|c| c.raga.clone()).collect();
    ragas.sort();
    ragas.dedup();
    if ragas.len() < 2 {
        return Err(Error::invalid_data(
            &a.data,
            "a classifier needs clips of at least two ragas",
        ));
    }
    let label = |c: &LabelledClip| ragas.binary_search(&c.raga).unwrap_or(0);
    match a.kind {
        ClassifierKind::Knn => {
            let feats = features_of(&clips, true, progress)?;
            let examples: Vec<_> = feats
                .into_iter()
                .zip(&clips)
                .map(|(f, c)| (f, label(c)))
                .collect();
            let model = KnnModel::fit(ragas.clone(), &examples, a.k, a.max_per_raga)?;
            model.save(&a.out)?;
            Ok(format!(
                "trained a kNN classifier on {} clips of {} ragas -> {}",
                model.len(),
                ragas.len(),
                a.out.display()
            ))
        }
        ClassifierKind::Cnn => {
            let config = CnnConfig::new(ragas.clone());
            let settings = InputSettings {
                axis: config.axis,
                use_label_tonic: true,
                tonic_range_hz: config.tonic_range_hz,
                views: a.views,
                jitter_cents: a.tonic_jitter_cents,
                seed: a.seed,
            };
            let images = pitch_images_of(&clips, &settings, progress)?;
            let examples: Vec<Example> = images
                .into_iter()
                .zip(&clips)
                .flat_map(|(views, c)| {
                    let l = label(c);
                    views
                        .into_iter()
                        .map(move |input| Example { input, label: l })
                })
                .collect();
            let opts = TrainOptions {
                epochs: a.epochs,
                batch_size: a.batch_size,
                learning_rate: a.learning_rate,
                seed: a.seed,
                ..Default::default()
            };
            let started = std::time::Instant::now();
            let (model, reports) = train_cnn(config, &examples, &opts, progress)?;
            model.save(&a.out)?;
            let log = serde_json::json!({
                "data": a.data,
                "clips": clips.len(),
                "examples": examples.len(),
                "views": a.views,
                "tonic_jitter_cents": a.tonic_jitter_cents,
                "options": opts,
                "parameters": model.num_parameters(),
                "seconds": started.elapsed().as_secs_f64(),
                "epochs": reports,
            });
            write_json_atomic(&a.out.join("training.json"), &log)?;
            Ok(format!(
                "trained a CNN ({} parameters) on {} clips of {} ragas -> {}",
                model.num_parameters(),
                clips.len(),
                ragas.len(),
                a.out.display()
            ))
        }
    }
}

/// How `evaluate` reads its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EvaluateOptions {
    /// Use the labels' tonics instead of estimating them.
    pub label_tonic: bool,
    /// List clips whose label names a raga outside the vocabulary or the
    /// classifier in `metrics.json` (`skipped`) instead of failing.
    pub skip_unknown: bool,
}

/// Measures the classifier in `model_dir` (the built-in one when None) on
/// the labelled clips in `data` and writes `metrics.json` (with every
/// clip's top three), `confusion.csv` and `confusion.png` into `out`;
/// returns the metrics.
pub fn evaluate_folder(
    model_dir: Option<&Path>,
    data: &Path,
    opts: EvaluateOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<serde_json::Value> {
    let model = &Classifier::load_or_builtin(model_dir)?;
    let model_name = model_dir.map_or_else(|| "built-in".into(), |p| p.display().to_string());
    let vocab = Vocabulary::builtin();
    let (mut clips, mut skipped) = if opts.skip_unknown {
        list_labelled_known(data, vocab)?
    } else {
        (list_labelled(data, vocab)?, Vec::new())
    };
    clips.retain(|c| {
        let known = model.ragas().contains(&c.raga);
        if !known {
            skipped.push(UnknownLabel {
                file: c.path.clone(),
                raga: c.raga.clone(),
                reason: format!(
                    "raga `{}` is not one the classifier knows ({} ragas)",
                    c.raga,
                    model.ragas().len()
                ),
            });
        }
        known
    });
    if let Some(u) = skipped.first().filter(|_| !opts.skip_unknown) {
        return Err(Error::invalid_data(&u.file, &u.reason));
    }
    if clips.is_empty() {
        return Err(Error::invalid_data(
            data,
            "no clip names a raga the classifier knows",
        ));
    }
    let label_tonic = opts.label_tonic;
    let predictions: Vec<Vec<String>> = match model {
        Classifier::Knn(m) => features_of(&clips, label_tonic, progress)?
            .iter()
            .map(|f| m.predict(f).into_iter().map(|(r, _)| r).collect())
            .collect(),
        Classifier::Cnn(m) => {
            let settings = InputSettings {
                axis: m.config.axis,
                use_label_tonic: label_tonic,
                tonic_range_hz: m.config.tonic_range_hz,
                views: 1,
                jitter_cents: 0.0,
                seed: 0,
            };
            let images = pitch_images_of(&clips, &settings, progress)?;
            images
                .iter()
                .map(|v| {
                    Ok(m.predict_pitch_image(&v[0])?
                        .into_iter()
                        .map(|(r, _)| r)
                        .collect())
                })
                .collect::<Result<_>>()?
        }
        _ => rankings_of(model, &clips, label_tonic, progress)?,
    };
    let truth: Vec<String> = clips.iter().map(|c| c.raga.clone()).collect();
    let e = evaluate(model.ragas(), &truth, &predictions).occurring();
    crate::fsutil::create_dir(out)?;
    let per_clip: Vec<serde_json::Value> = clips
        .iter()
        .zip(&predictions)
        .map(|(c, p)| serde_json::json!({"file": c.path, "raga": c.raga, "top3": &p[..p.len().min(3)]}))
        .collect();
    let metrics = serde_json::json!({
        "model": model_name,
        "classifier": model.kind(),
        "data": data,
        "tonic": if label_tonic { "labelled" } else { "estimated" },
        "clips": e.clips,
        "top1": e.top1,
        "top3": e.top3,
        "ragas": e.ragas,
        "per_clip": per_clip,
        "skipped": skipped,
    });
    write_json_atomic(&out.join("metrics.json"), &metrics)?;
    write_bytes_atomic(&out.join("confusion.csv"), e.confusion_csv().as_bytes())?;
    let title = format!(
        "{} on {} clips: top-1 {:.1}%, top-3 {:.1}%",
        model.kind(),
        e.clips,
        e.top1 * 100.0,
        e.top3 * 100.0
    );
    let png = confusion_matrix(&title, &e.ragas, &e.confusion).encode_png()?;
    write_bytes_atomic(&out.join("confusion.png"), &png)?;
    Ok(metrics)
}

/// Every clip's ranking through the classifier's own `classify_file`
/// (in parallel), for kinds without a batched path.
fn rankings_of(
    model: &Classifier,
    clips: &[LabelledClip],
    label_tonic: bool,
    progress: &dyn Progress,
) -> Result<Vec<Vec<String>>> {
    use rayon::prelude::*;
    progress.start(clips.len() as u64, "clips");
    let out = clips
        .par_iter()
        .map(|c| {
            let tonic = c.tonic_hz.filter(|_| label_tonic);
            let ranked = model.classify_file(&c.path, tonic, None)?.ranked;
            progress.advance(1);
            Ok(ranked.into_iter().map(|(r, _)| r).collect())
        })
        .collect();
    progress.finish();
    out
}
