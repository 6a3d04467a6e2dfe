//! `analyze`: a labelled figure and the facts behind it for one clip.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ragafusion::captions::Vocabulary;
use ragafusion::fsutil::{refuse_overwriting, write_bytes_atomic};
use ragafusion::raga::classifier::Classifier;
use ragafusion::raga::inspect::{figure_path, inspect_file, summary_text, InspectOptions};

/// Arguments of `analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Audio file, or a spectrogram PNG (reconstructed for the pitch track).
    input: PathBuf,
    /// Tonic in Hz (estimated when absent; the estimate and the drift
    /// from this value are reported too).
    #[arg(long)]
    tonic: Option<f64>,
    /// Print the analysis as JSON on stdout instead of a summary.
    #[arg(long)]
    json: bool,
    /// Measure adherence to this raga, and label the swara grid with its
    /// swaras.
    #[arg(long)]
    raga: Option<String>,
    /// Classifier folder; the built-in raga ear when absent.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where to write the figure (default: INPUT's name with
    /// `.analysis.png`, beside it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Analyse at most this many seconds from the start.
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
    /// How many ragas to list.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

/// Runs `analyze`.
pub fn analyze(a: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let out = a.out.clone().unwrap_or_else(|| figure_path(&a.input));
    refuse_overwriting(&out, &[&a.input])?;
    let classifier = Classifier::load_or_builtin(a.model.as_deref())?;
    let opts = InspectOptions {
        tonic_hz: a.tonic,
        raga: a.raga.clone(),
        max_seconds: a.max_seconds,
        top: a.top,
    };
    let found = inspect_file(&a.input, &classifier, Vocabulary::builtin(), &opts)
        .with_context(|| format!("analysing {}", a.input.display()))?;
    if let Some(s) = found.cut_from_s {
        let (name, m) = (a.input.display(), a.max_seconds);
        eprintln!("note: {name} is {s:.1} s long; analysing the first {m} s (--max-seconds)");
    }
    write_bytes_atomic(&out, &found.figure_png)?;
    if a.json {
        let v = found.json(&a.input, &out)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", summary_text(&a.input, &found.analysis));
        println!("figure: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
