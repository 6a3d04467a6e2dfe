//! `train-classifier`, `classify` and `evaluate`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use ragafusion::audio::{read_audio_as, ChannelLayout};
use ragafusion::captions::Vocabulary;
use ragafusion::fsutil::{write_bytes_atomic, write_json_atomic};
use ragafusion::raga::dataset::{features_of, list_labelled};
use ragafusion::raga::evaluate::evaluate as score;
use ragafusion::raga::knn::{clip_features, KnnModel};
use ragafusion::spectrogram::{read_png, InversionSettings, SpectrogramConverter};
use ragafusion::NoProgress;

use super::progress_bar::Bar;

/// Arguments of `train-classifier`.
#[derive(Debug, Args)]
pub struct TrainClassifierArgs {
    /// Folder of labelled clips (WAV + JSON label, as `synth` writes).
    #[arg(long)]
    data: PathBuf,
    /// Output folder for `config.json` + `model.safetensors`.
    #[arg(long)]
    out: PathBuf,
    /// Classifier kind (only `knn` so far).
    #[arg(long, default_value = "knn")]
    kind: String,
    /// Neighbours that vote.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Training clips kept per raga.
    #[arg(long, default_value_t = 50)]
    max_per_raga: usize,
}

/// Runs `train-classifier`.
pub fn train_classifier(a: TrainClassifierArgs) -> anyhow::Result<ExitCode> {
    if a.kind != "knn" {
        bail!("--kind {}: only `knn` is available", a.kind);
    }
    let vocab = Vocabulary::builtin();
    let clips = list_labelled(&a.data, vocab)?;
    let mut ragas: Vec<String> = clips.iter().map(|c| c.raga.clone()).collect();
    ragas.sort();
    ragas.dedup();
    let bar = Bar::new();
    let feats = features_of(&clips, true, &bar)?;
    let examples: Vec<_> = feats
        .into_iter()
        .zip(&clips)
        .map(|(f, c)| (f, ragas.binary_search(&c.raga).expect("listed above")))
        .collect();
    let model = KnnModel::fit(ragas, &examples, a.k, a.max_per_raga)?;
    model.save(&a.out)?;
    eprintln!(
        "trained a kNN classifier on {} clips of {} ragas -> {}",
        model.len(),
        model.config.ragas.len(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `classify`.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Audio file, or a spectrogram PNG (reconstructed to audio first).
    input: PathBuf,
    /// Classifier folder (`config.json` + `model.safetensors`).
    #[arg(long)]
    model: PathBuf,
    /// Tonic in Hz (estimated when absent).
    #[arg(long)]
    tonic: Option<f64>,
    /// How many ragas to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

/// Runs `classify`: prints JSON with the top ragas and scores.
pub fn classify(a: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let model = KnnModel::load(&a.model)
        .with_context(|| format!("loading the classifier in {}", a.model.display()))?;
    let is_png = a
        .input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let audio = if is_png {
        let loaded = read_png(&a.input)?;
        let conv = SpectrogramConverter::new(loaded.params.clone())?;
        let opts = InversionSettings::default().options(&loaded.params);
        let audio = conv.audio_from_image(&loaded, &opts, &NoProgress)?;
        ragafusion::audio::resample(&audio.with_layout(ChannelLayout::Mono), 44100)?
    } else {
        read_audio_as(&a.input, 44100, ChannelLayout::Mono)?
    };
    let f = clip_features(
        &audio.channels[0],
        44100,
        a.tonic,
        model.config.tonic_range_hz,
    )
    .with_context(|| format!("analysing {}", a.input.display()))?;
    let top: Vec<serde_json::Value> = model
        .predict(&f)
        .into_iter()
        .take(a.top)
        .map(|(raga, score)| serde_json::json!({"raga": raga, "score": score}))
        .collect();
    let out = serde_json::json!({
        "file": a.input,
        "tonic_hz": f.tonic_hz,
        "tonic_given": a.tonic.is_some(),
        "voiced_frames": f.voiced_frames,
        "top": top,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Classifier folder.
    #[arg(long)]
    model: PathBuf,
    /// Folder of labelled clips (WAV + JSON label) to evaluate on.
    #[arg(long)]
    data: PathBuf,
    /// Folder for `metrics.json` and `confusion.csv`.
    #[arg(long)]
    out: PathBuf,
    /// Use the labels' tonics instead of estimating them.
    #[arg(long)]
    label_tonic: bool,
}

/// Runs `evaluate`: top-1 / top-3 accuracy and the confusion matrix.
pub fn evaluate(a: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let model = KnnModel::load(&a.model)
        .with_context(|| format!("loading the classifier in {}", a.model.display()))?;
    let vocab = Vocabulary::builtin();
    let clips = list_labelled(&a.data, vocab)?;
    let bar = Bar::new();
    let feats = features_of(&clips, a.label_tonic, &bar)?;
    let truth: Vec<String> = clips.iter().map(|c| c.raga.clone()).collect();
    let predictions: Vec<Vec<String>> = feats
        .iter()
        .map(|f| model.predict(f).into_iter().map(|(r, _)| r).collect())
        .collect();
    let e = score(&model.config.ragas, &truth, &predictions);
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let metrics = serde_json::json!({
        "model": a.model,
        "data": a.data,
        "tonic": if a.label_tonic { "labelled" } else { "estimated" },
        "clips": e.clips,
        "top1": e.top1,
        "top3": e.top3,
        "ragas": e.ragas,
    });
    write_json_atomic(&a.out.join("metrics.json"), &metrics)?;
    write_bytes_atomic(&a.out.join("confusion.csv"), e.confusion_csv().as_bytes())?;
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    Ok(ExitCode::SUCCESS)
}
