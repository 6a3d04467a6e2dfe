//! `export-checkpoint`: a pipeline folder from a training run's checkpoint,
//! optionally in f16 and with the model's usage settings (ragafusion.json).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ragafusion::diffusion::defaults::ModelDefaults;
use ragafusion::diffusion::SamplerKind;
use ragafusion::train::export::{export_checkpoint, StorageDtype};

use super::choice::choice;

/// Arguments of `export-checkpoint`.
#[derive(Debug, Args)]
pub struct ExportCheckpointArgs {
    /// Run folder of `train` (full UNet training): train_config.toml and
    /// checkpoints/.
    #[arg(long)]
    run: PathBuf,
    /// Checkpoint step to export (default the newest).
    #[arg(long)]
    step: Option<u64>,
    /// Pipeline folder to write (replaced if it exists; the run's base
    /// pipeline with the checkpoint's UNet).
    #[arg(long)]
    out: PathBuf,
    /// Export the raw weights, not the EMA average.
    #[arg(long)]
    no_ema: bool,
    /// Storage type of the UNet weights: f32 or f16 (half the size; the
    /// CPU computes in f32 either way).
    #[arg(long, value_parser = choice::<StorageDtype>(), default_value_t = StorageDtype::F32)]
    dtype: StorageDtype,
    /// Record the tonic of the training audio, Hz, in ragafusion.json:
    /// `generate --tonic` and "shruti ..." in captions then transpose.
    #[arg(long)]
    canonical_tonic_hz: Option<f64>,
    /// Record a recommended sampler in ragafusion.json.
    #[arg(long, value_parser = choice::<SamplerKind>())]
    scheduler: Option<SamplerKind>,
    /// Record recommended denoising steps in ragafusion.json.
    #[arg(long)]
    steps: Option<usize>,
    /// Record a recommended guidance scale in ragafusion.json.
    #[arg(long)]
    guidance: Option<f64>,
}

/// Runs `export-checkpoint`.
pub fn export_checkpoint_cmd(a: ExportCheckpointArgs) -> anyhow::Result<ExitCode> {
    let step = export_checkpoint(&a.run, a.step, &a.out, !a.no_ema, a.dtype)
        .with_context(|| format!("exporting a checkpoint of {}", a.run.display()))?;
    // over the base pipeline's settings (copied with it)
    let (tonic, sampler) = (a.canonical_tonic_hz, a.scheduler);
    ModelDefaults::update(&a.out, tonic, sampler, a.steps, a.guidance)?;
    eprintln!("exported step {step}");
    println!("{}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
