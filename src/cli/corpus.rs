//! `synth` (labelled synthetic clips) and `prepare` (datasets from
//! recordings).

use super::choice::choice;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ragafusion::captions::Vocabulary;
use ragafusion::corpus::prepare::{prepare as run_prepare, PrepareOptions};
use ragafusion::corpus::synth::stroke_kit::StrokeKit;
use ragafusion::corpus::synth::{SynthSegment, Timbre, RENDER_RATE_HZ};
use ragafusion::corpus::synth_set::{render_set, SynthOverrides, SynthSet};
use ragafusion::spectrogram::{Preset, SpectrogramParams};

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
    #[arg(long, value_parser = choice::<Timbre>())]
    timbre: Option<Timbre>,
    /// Use only this segment type (default: drawn per clip).
    #[arg(long, value_parser = choice::<SynthSegment>())]
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
    /// Play recorded strokes from this folder instead of the synthetic
    /// ones: one sub-folder of audio files per stroke name (thom, tham,
    /// bheem, dheem / nam, num, dhin / ta, tha, thi, cha, ki), e.g. the
    /// CompMusic Mridangam Stroke dataset's train/ folder.
    #[arg(long, value_name = "DIR")]
    stroke_kit: Option<PathBuf>,
}

/// Runs `synth`.
pub fn synth(a: SynthArgs) -> anyhow::Result<ExitCode> {
    let set = SynthSet {
        ragas: a.ragas,
        count: a.count,
        seed: a.seed,
        duration_s: a.duration_s,
        overrides: SynthOverrides {
            timbre: a.timbre,
            segment: a.segment,
            tala: a.tala,
            tonic_hz: a.tonic_hz,
            tempo_bpm: a.tempo_bpm,
            percussion: (a.percussion || a.no_percussion).then_some(a.percussion),
            no_drone: a.no_drone,
            stroke_kit: (a.stroke_kit.as_deref())
                .map(|dir| StrokeKit::load(dir, RENDER_RATE_HZ).map(Arc::new))
                .transpose()
                .with_context(|| "--stroke-kit".to_string())?,
        },
    };
    let report = render_set(Vocabulary::builtin(), &a.output_dir, &set, &Bar::new())?;
    eprintln!(
        "rendered {} clips, skipped {} already present, in {}",
        report.rendered,
        report.skipped,
        a.output_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Folder of recordings (WAV, MP3, FLAC, OGG); metadata `file` values
    /// are relative to it.
    #[arg(long)]
    audio_dir: PathBuf,
    /// Metadata: .csv (with a header) or .jsonl; columns file, raga, tala,
    /// composer, artist, segment, instrument, start_s, end_s.
    #[arg(long)]
    metadata: PathBuf,
    /// Output folder (diffusers image-folder layout: train/, validation/,
    /// test/, each with metadata.jsonl).
    #[arg(long)]
    out: PathBuf,
    /// Clip length in seconds.
    #[arg(long, default_value_t = 5.12)]
    clip_s: f64,
    /// Seconds between clip starts (less than --clip-s for overlapping clips).
    #[arg(long, default_value_t = 5.12)]
    hop_s: f64,
    /// Shares of recordings for train, validation and test, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [0.8, 0.1, 0.1])]
    split: Vec<f64>,
    /// Seed of the split assignment.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep percussion-solo segments (tani avartanam), skipped by default.
    #[arg(long)]
    keep_percussion_solo: bool,
    /// Clips quieter than this RMS level (dBFS) are skipped as silence.
    #[arg(long, default_value_t = -50.0)]
    silence_dbfs: f64,
    /// Spectrogram parameter preset (mono presets only).
    #[arg(long, value_parser = choice::<Preset>(), default_value_t = Preset::Riffusion)]
    preset: Preset,
    /// Read metadata `file` values that are absolute paths or climb out of
    /// --audio-dir with `..` (refused by default).
    #[arg(long)]
    allow_outside: bool,
}

/// Runs `prepare`.
pub fn prepare(a: PrepareArgs) -> anyhow::Result<ExitCode> {
    let split = <[f64; 3]>::try_from(a.split.as_slice()).map_err(|_| {
        anyhow::anyhow!(
            "--split takes three shares (train,validation,test), got {}",
            a.split.len()
        )
    })?;
    let opts = PrepareOptions {
        clip_s: a.clip_s,
        hop_s: a.hop_s,
        split,
        seed: a.seed,
        skip_percussion_solo: !a.keep_percussion_solo,
        silence_dbfs: a.silence_dbfs,
        params: SpectrogramParams::preset(a.preset),
        allow_outside: a.allow_outside,
    };
    let vocab = Vocabulary::builtin();
    let s = run_prepare(vocab, &a.audio_dir, &a.metadata, &a.out, &opts, &Bar::new())
        .with_context(|| format!("preparing a dataset from {}", a.metadata.display()))?;
    eprintln!("{s}");
    eprintln!("summary: {}", a.out.join("summary.json").display());
    Ok(ExitCode::SUCCESS)
}
