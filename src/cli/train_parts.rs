//! `train-vae` and `train-latent-classifier`: the two models a fine-tuning
//! run can lean on besides the UNet (an autoencoder fitted to the
//! spectrograms, and the latent raga classifier of the auxiliary loss).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ragafusion::overlay::from_fields;
use ragafusion::train::latent_job::{train_latent_classifier as train_latent_job, LatentJob};
use ragafusion::train::vae_job::{train_vae as train_vae_job, VaeJob};
use serde::Serialize;

use super::progress_bar::Bar;

/// Arguments of `train-vae`: the fields of a [`VaeJob`].
#[derive(Debug, Args, Serialize)]
pub struct TrainVaeArgs {
    /// Training folder: images + metadata.jsonl (as for `train`).
    #[arg(long)]
    data: PathBuf,
    /// Run folder: state.safetensors (for --resume), metrics.jsonl,
    /// loss.png, summary.json, final/ (the base pipeline with the new VAE).
    #[arg(long)]
    out: PathBuf,
    /// Base pipeline (diffusers folder): its VAE is fine-tuned (or, with
    /// --config, replaced); its other components are copied to OUT/final.
    #[arg(long)]
    model: PathBuf,
    /// Train a fresh VAE of a named config instead: tiny.
    #[arg(long)]
    config: Option<String>,
    /// Optimiser steps in all.
    #[arg(long, default_value_t = 2000)]
    max_steps: usize,
    /// Image crops per step.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Learning rate (default 1e-3 for a fresh VAE, 1e-5 for fine-tuning).
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 0)]
    lr_warmup_steps: u64,
    /// Weight of the KL term (per image sums, as in latent-diffusion configs).
    #[arg(long, default_value_t = 1e-6)]
    kl_weight: f64,
    /// Crop width in pixels (random time crops; a multiple of the VAE's
    /// down-scale factor).
    #[arg(long, default_value_t = 256)]
    crop_px: usize,
    /// Clip the global gradient norm (0: off).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Save the run state every N steps (and at the end).
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// Continue from OUT/state.safetensors.
    #[arg(long)]
    resume: bool,
    /// Seed of initialisation, crops and posterior noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs `train-vae`.
pub fn train_vae(a: TrainVaeArgs) -> anyhow::Result<ExitCode> {
    let job: VaeJob = from_fields(&a, "train-vae")?;
    println!("{}", train_vae_job(&job, &Bar::new())?.display());
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `train-latent-classifier`: the fields of a [`LatentJob`].
#[derive(Debug, Args, Serialize)]
pub struct TrainLatentClassifierArgs {
    /// Training folder: images + metadata.jsonl with a `raga` per image.
    #[arg(long)]
    data: PathBuf,
    /// The pipeline whose VAE makes the latents (the one `train` will use).
    #[arg(long)]
    model: PathBuf,
    /// Output folder: config.json (kind `latent-raga-cnn`),
    /// model.safetensors, training.json, cache/ (the latents).
    #[arg(long)]
    out: PathBuf,
    /// Optimiser steps.
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Peak learning rate (cosine decay to 5%).
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-2)]
    weight_decay: f64,
    /// Training crop width in pixels (a multiple of the VAE's down-scale).
    #[arg(long, default_value_t = 256)]
    crop_px: usize,
    /// Largest standard deviation of Gaussian noise added to the scaled
    /// latents (the judge later sees noisy predicted latents); 0: none.
    #[arg(long, default_value_t = 0.3)]
    noise_augment: f64,
    /// Hold out every n-th image to measure accuracy (0: none).
    #[arg(long, default_value_t = 5)]
    holdout_every: usize,
    /// Seed of initialisation, order, crops and noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs `train-latent-classifier`.
pub fn train_latent_classifier(a: TrainLatentClassifierArgs) -> anyhow::Result<ExitCode> {
    let job: LatentJob = from_fields(&a, "train-latent-classifier")?;
    println!("{}", train_latent_job(&job, &Bar::new())?.display());
    Ok(ExitCode::SUCCESS)
}
