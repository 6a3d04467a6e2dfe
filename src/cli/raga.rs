//! `train-classifier`, `classify` and `evaluate`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use ragafusion::audio::{read_audio_as, ChannelLayout};
use ragafusion::captions::Vocabulary;
use ragafusion::fsutil::{write_bytes_atomic, write_json_atomic};
use ragafusion::plot::charts::confusion_matrix;
use ragafusion::raga::classifier::{Classification, Classifier, ANALYSIS_RATE_HZ};
use ragafusion::raga::cnn::CnnConfig;
use ragafusion::raga::cnn_train::{train_cnn, Example, TrainOptions};
use ragafusion::raga::dataset::{
    features_of, list_labelled, pitch_images_of, InputSettings, LabelledClip,
};
use ragafusion::raga::evaluate::evaluate as score;
use ragafusion::raga::knn::KnnModel;
use ragafusion::spectrogram::read_png;

use super::progress_bar::Bar;

/// Which classifier `train-classifier` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// PCD/TDMS features + k nearest neighbours.
    Knn,
    /// CNN on tonic-relative spectrogram images.
    Cnn,
}

/// Arguments of `train-classifier`.
#[derive(Debug, Args)]
pub struct TrainClassifierArgs {
    /// Folder of labelled clips (WAV + JSON label, as `synth` writes).
    #[arg(long)]
    data: PathBuf,
    /// Output folder for `config.json` + `model.safetensors` (+ `training.json`).
    #[arg(long)]
    out: PathBuf,
    /// Classifier kind.
    #[arg(long, value_enum, default_value_t = Kind::Cnn)]
    kind: Kind,
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
    let vocab = Vocabulary::builtin();
    let clips = list_labelled(&a.data, vocab)?;
    let mut ragas: Vec<String> = clips.iter().map(|c| c.raga.clone()).collect();
    ragas.sort();
    ragas.dedup();
    if ragas.len() < 2 {
        bail!(
            "{}: a classifier needs clips of at least two ragas",
            a.data.display()
        );
    }
    let label = |c: &LabelledClip| ragas.binary_search(&c.raga).expect("listed above");
    let bar = Bar::new();
    match a.kind {
        Kind::Knn => {
            let feats = features_of(&clips, true, &bar)?;
            let examples: Vec<_> = feats
                .into_iter()
                .zip(&clips)
                .map(|(f, c)| (f, label(c)))
                .collect();
            let model = KnnModel::fit(ragas.clone(), &examples, a.k, a.max_per_raga)?;
            model.save(&a.out)?;
            eprintln!(
                "trained a kNN classifier on {} clips of {} ragas -> {}",
                model.len(),
                ragas.len(),
                a.out.display()
            );
        }
        Kind::Cnn => {
            let config = CnnConfig::new(ragas.clone());
            let settings = InputSettings {
                axis: config.axis,
                use_label_tonic: true,
                tonic_range_hz: config.tonic_range_hz,
                views: a.views,
                jitter_cents: a.tonic_jitter_cents,
                seed: a.seed,
            };
            let images = pitch_images_of(&clips, &settings, &bar)?;
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
            let (model, reports) = train_cnn(config, &examples, &opts, &bar)?;
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
            eprintln!(
                "trained a CNN ({} parameters) on {} clips of {} ragas -> {}",
                model.num_parameters(),
                clips.len(),
                ragas.len(),
                a.out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `classify`.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Audio file, or a spectrogram PNG.
    input: PathBuf,
    /// Classifier folder (`config.json` + `model.safetensors`); the
    /// built-in default CNN when absent.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Tonic in Hz (estimated when absent).
    #[arg(long)]
    tonic: Option<f64>,
    /// How many ragas to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

/// Loads the classifier in `model`, or the built-in one.
pub(super) fn load_classifier(model: Option<&PathBuf>) -> anyhow::Result<Classifier> {
    Classifier::load_or_builtin(model.map(|p| p.as_path())).with_context(|| match model {
        Some(p) => format!("loading the classifier in {}", p.display()),
        None => "loading the built-in classifier".to_string(),
    })
}

/// Classifies one file (audio, or a spectrogram PNG).
pub(crate) fn classify_file(
    model: &Classifier,
    input: &Path,
    tonic: Option<f64>,
) -> anyhow::Result<Classification> {
    let is_png = input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let result = if is_png {
        model.classify_image(&read_png(input)?, tonic)
    } else {
        let audio = read_audio_as(input, ANALYSIS_RATE_HZ, ChannelLayout::Mono)?;
        model.classify_audio(&audio.channels[0], tonic)
    };
    result.with_context(|| format!("classifying {}", input.display()))
}

/// Runs `classify`: prints JSON with the top ragas and scores.
pub fn classify(a: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let model = load_classifier(a.model.as_ref())?;
    let c = classify_file(&model, &a.input, a.tonic)?;
    let top: Vec<serde_json::Value> = c
        .ranked
        .iter()
        .take(a.top)
        .map(|(raga, score)| serde_json::json!({"raga": raga, "score": score}))
        .collect();
    let out = serde_json::json!({
        "file": a.input,
        "classifier": model.kind(),
        "tonic_hz": c.tonic_hz,
        "tonic_given": c.tonic_given,
        "top": top,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Classifier folder; the built-in default CNN when absent.
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
}

/// Runs `evaluate`: top-1 / top-3 accuracy and the confusion matrix (CSV
/// and PNG, over the ragas that occur).
pub fn evaluate(a: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let model = load_classifier(a.model.as_ref())?;
    let vocab = Vocabulary::builtin();
    let clips = list_labelled(&a.data, vocab)?;
    for c in &clips {
        if !model.ragas().contains(&c.raga) {
            bail!(
                "{}: raga `{}` is not one the classifier knows ({} ragas)",
                c.path.display(),
                c.raga,
                model.ragas().len()
            );
        }
    }
    let bar = Bar::new();
    let predictions: Vec<Vec<String>> = match &model {
        Classifier::Knn(m) => features_of(&clips, a.label_tonic, &bar)?
            .iter()
            .map(|f| m.predict(f).into_iter().map(|(r, _)| r).collect())
            .collect(),
        Classifier::Cnn(m) => {
            let settings = InputSettings {
                axis: m.config.axis,
                use_label_tonic: a.label_tonic,
                tonic_range_hz: m.config.tonic_range_hz,
                views: 1,
                jitter_cents: 0.0,
                seed: 0,
            };
            let images = pitch_images_of(&clips, &settings, &bar)?;
            images
                .iter()
                .map(|v| {
                    Ok(m.predict_pitch_image(&v[0])?
                        .into_iter()
                        .map(|(r, _)| r)
                        .collect())
                })
                .collect::<ragafusion::Result<_>>()?
        }
    };
    let truth: Vec<String> = clips.iter().map(|c| c.raga.clone()).collect();
    let e = score(model.ragas(), &truth, &predictions).occurring();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let metrics = serde_json::json!({
        "model": a.model.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in".into()),
        "classifier": model.kind(),
        "data": a.data,
        "tonic": if a.label_tonic { "labelled" } else { "estimated" },
        "clips": e.clips,
        "top1": e.top1,
        "top3": e.top3,
        "ragas": e.ragas,
    });
    write_json_atomic(&a.out.join("metrics.json"), &metrics)?;
    write_bytes_atomic(&a.out.join("confusion.csv"), e.confusion_csv().as_bytes())?;
    let title = format!(
        "{} on {} clips: top-1 {:.1}%, top-3 {:.1}%",
        model.kind(),
        e.clips,
        e.top1 * 100.0,
        e.top3 * 100.0
    );
    let png = confusion_matrix(&title, &e.ragas, &e.confusion).encode_png()?;
    write_bytes_atomic(&a.out.join("confusion.png"), &png)?;
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    Ok(ExitCode::SUCCESS)
}
