//! `synth`: labelled synthetic clips.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ragafusion::captions::Vocabulary;
use ragafusion::corpus::synth::{SynthSegment, Timbre};
use ragafusion::corpus::synth_set::{render_set, SynthOverrides};

use super::progress_bar::Bar;

/// Arguments of `synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Folder for the clips (`RAGA_INDEX.wav` + `RAGA_INDEX.json`).
    output_dir: PathBuf,
    /// Ragas to render (any known spelling; repeatable). Default: every raga
    /// in the vocabulary.
    #[arg(long = "raga", value_name = "RAGA")]
    ragas: Vec<String>,
    /// Clips per raga.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Seed of the set: each clip's choices follow from it, the raga and the index.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Clip length in seconds.
    #[arg(long, default_value_t = 5.12)]
    duration_s: f64,
    /// Use only this timbre (default: drawn per clip).
    #[arg(long, value_enum)]
    timbre: Option<Timbre>,
    /// Use only this segment type (default: drawn per clip).
    #[arg(long, value_enum)]
    segment: Option<SynthSegment>,
    /// Use only this tala for metred segments (default: drawn per clip).
    #[arg(long)]
    tala: Option<String>,
    /// Fixed tonic in Hz (default: drawn from 100-260 Hz per clip).
    #[arg(long)]
    tonic_hz: Option<f64>,
    /// Fixed tempo in beats per minute (default: drawn from the tala's range).
    #[arg(long)]
    tempo_bpm: Option<f64>,
    /// Percussion on every metred clip.
    #[arg(long, conflicts_with = "no_percussion")]
    percussion: bool,
    /// No percussion.
    #[arg(long)]
    no_percussion: bool,
    /// No tanpura drone.
    #[arg(long)]
    no_drone: bool,
}

/// Runs `synth`.
pub fn synth(a: SynthArgs) -> anyhow::Result<ExitCode> {
    let vocab = Vocabulary::builtin();
    let ragas: Vec<String> = if a.ragas.is_empty() {
        vocab.ragas.iter().map(|r| r.name.clone()).collect()
    } else {
        a.ragas
    };
    let overrides = SynthOverrides {
        timbre: a.timbre,
        segment: a.segment,
        tala: a.tala,
        tonic_hz: a.tonic_hz,
        tempo_bpm: a.tempo_bpm,
        percussion: if a.percussion {
            Some(true)
        } else if a.no_percussion {
            Some(false)
        } else {
            None
        },
        no_drone: a.no_drone,
    };
    let bar = Bar::new();
    let report = render_set(
        vocab,
        &a.output_dir,
        &ragas,
        a.count,
        a.seed,
        a.duration_s,
        &overrides,
        &bar,
    )?;
    eprintln!(
        "rendered {} clips, skipped {} already present, in {}",
        report.rendered,
        report.skipped,
        a.output_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
