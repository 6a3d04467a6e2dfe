//! `train-classifier`, `classify` and `evaluate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ragafusion::overlay::from_fields;
use ragafusion::raga::classifier::Classifier;
use ragafusion::raga::jobs::{evaluate_folder, train_classifier as train_job, EvaluateOptions};
use ragafusion::raga::jobs::{ClassifierJob, ClassifierKind};
use serde::Serialize;

use super::choice::choice;
use super::progress_bar::Bar;

/// Arguments of `train-classifier`: the fields of a [`ClassifierJob`].
#[derive(Debug, Args, Serialize)]
pub struct TrainClassifierArgs {
    /// Folder of labelled clips (WAV + JSON label, as `synth` writes).
    #[arg(long)]
    data: PathBuf,
    /// Output folder for `config.json` + `model.safetensors` (+ `training.json`).
    #[arg(long)]
    out: PathBuf,
    /// Classifier kind.
    #[arg(long, value_parser = choice::<ClassifierKind>(), default_value_t = ClassifierKind::Cnn)]
    kind: ClassifierKind,
    /// kNN: neighbours that vote.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// kNN: training clips kept per raga.
    #[arg(long, default_value_t = 50)]
    max_per_raga: usize,
    /// CNN: passes over the training clips.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// CNN: clips per optimisation step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// CNN: peak learning rate (cosine decay to 5% of it).
    #[arg(long, default_value_t = 2e-3)]
    learning_rate: f64,
    /// CNN: views of each clip, each with the tonic moved by a random
    /// offset within +-`--tonic-jitter-cents`.
    #[arg(long, default_value_t = 2)]
    views: usize,
    /// CNN: largest tonic offset of a view, cents.
    #[arg(long, default_value_t = 20.0)]
    tonic_jitter_cents: f64,
    /// CNN: seed for initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `train-classifier`.
pub fn train_classifier(a: TrainClassifierArgs) -> anyhow::Result<ExitCode> {
    let job: ClassifierJob = from_fields(&a, "train-classifier")?;
    eprintln!("{}", train_job(&job, &Bar::new())?);
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `classify`.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Audio file, or a spectrogram PNG.
    input: PathBuf,
    /// Classifier folder (its `config.json` names the kind); the built-in
    /// raga ear when absent.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Tonic in Hz (estimated when absent).
    #[arg(long)]
    tonic: Option<f64>,
    /// Classify only this many seconds from the start (default: all).
    #[arg(long)]
    max_seconds: Option<f64>,
    /// How many ragas to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

/// Runs `classify`.
pub fn classify(a: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let model = Classifier::load_or_builtin(a.model.as_deref())?;
    let c = model
        .classify_file(&a.input, a.tonic, a.max_seconds)
        .with_context(|| format!("classifying {}", a.input.display()))?;
    let out = c.report(&a.input, model.kind(), a.top);
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Classifier folder; the built-in raga ear when absent.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Folder of labelled clips (WAV + JSON label) to evaluate on.
    #[arg(long)]
    data: PathBuf,
    /// Folder for `metrics.json`, `confusion.csv` and `confusion.png`.
    #[arg(long)]
    out: PathBuf,
    /// Use the labels' tonics instead of estimating them.
    #[arg(long)]
    label_tonic: bool,
    /// List clips whose label names a raga the classifier does not know
    /// in metrics.json (`skipped`) instead of failing.
    #[arg(long)]
    skip_unknown: bool,
}

/// Runs `evaluate`: top-1 / top-3 accuracy and the confusion matrix (CSV
/// and PNG, over the ragas that occur).
pub fn evaluate(a: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let opts = EvaluateOptions {
        label_tonic: a.label_tonic,
        skip_unknown: a.skip_unknown,
    };
    let metrics = evaluate_folder(a.model.as_deref(), &a.data, opts, &a.out, &Bar::new())?;
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    Ok(ExitCode::SUCCESS)
}
