//! `train`: fine-tune (or train from a named config) the UNet on a
//! captioned spectrogram folder, with checkpoints, resume, validation and
//! the optional raga-classifier auxiliary loss; export to OUT/final.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ragafusion::train::options::TrainOptions;
use ragafusion::train::unet_job::train_unet;
use ragafusion::train::LrScheduleKind;
use serde::Serialize;

use super::choice::choice;
use super::progress_bar::Bar;

/// Arguments of `train`. Every option can also come from `--options
/// FILE.toml` (same names with underscores); flags override the file.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Run folder: checkpoints/, metrics.jsonl, loss.png, validation/,
    /// train_config.toml, final/ (the exported pipeline).
    #[arg(long)]
    out: PathBuf,
    /// Options file (TOML); saved with the run as train_config.toml.
    #[arg(long = "options")]
    options_file: Option<PathBuf>,
    /// Continue from the newest checkpoint in --out (its saved options are
    /// used; --max-steps may extend the run).
    #[arg(long)]
    resume: bool,
    /// `cpu`, or `cuda` / `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    options: TrainFlags,
}

/// The options of a run given as flags (named as in the options file;
/// LoRA's as `lora`, `lora_rank` and `lora_alpha`).
#[derive(Debug, Args, Serialize)]
pub struct TrainFlags {
    /// Training folder: images + metadata.jsonl (`file_name`, `text`,
    /// optional `raga`), e.g. `prepare`'s OUT/train.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Base checkpoint (diffusers folder). With --config it supplies the
    /// VAE, text encoder, tokenizer and scheduler only.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Train the UNet from scratch with a named config: tiny, compact, small, sd15.
    #[arg(long)]
    config: Option<String>,
    /// Optimiser steps in all (default 1000).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Samples per micro-batch (default 1).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per optimiser step (default 1).
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Peak learning rate (default 1e-5 full, 1e-4 LoRA or from scratch).
    #[arg(long)]
    learning_rate: Option<f64>,
    /// constant, constant_with_warmup, linear, cosine, cosine_with_restarts,
    /// polynomial (default constant).
    #[arg(long, value_parser = choice::<LrScheduleKind>())]
    lr_scheduler: Option<LrScheduleKind>,
    /// Warm-up steps (default 500; ignored by constant).
    #[arg(long)]
    lr_warmup_steps: Option<u64>,
    /// Clip the gradient norm to this (default 1).
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// min-SNR weighting gamma (5 recommended; default off).
    #[arg(long)]
    snr_gamma: Option<f64>,
    /// Noise offset scale (default 0).
    #[arg(long)]
    noise_offset: Option<f64>,
    /// Input perturbation (default 0; 0.1 recommended).
    #[arg(long)]
    input_perturbation: Option<f64>,
    /// Probability of the empty caption (default 0.1).
    #[arg(long)]
    caption_dropout: Option<f64>,
    /// epsilon or v_prediction (default: the scheduler's).
    #[arg(long, value_parser = ["epsilon", "v_prediction"])]
    prediction: Option<String>,
    /// Keep an EMA of the weights with this decay bound (e.g. 0.9999).
    #[arg(long)]
    ema_decay: Option<f64>,
    /// Train LoRA adapters (attention to_q, to_k, to_v, to_out.0).
    #[arg(long)]
    lora: bool,
    /// LoRA rank (default 4).
    #[arg(long)]
    lora_rank: Option<usize>,
    /// LoRA alpha (default: the rank).
    #[arg(long)]
    lora_alpha: Option<f64>,
    /// `no` or `bf16` (CUDA: bf16 compute with f32 master weights).
    #[arg(long)]
    mixed_precision: Option<String>,
    /// Gradient checkpointing: keep only the UNet's block boundaries and
    /// recompute each block in the backward (less memory, slower steps).
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Seed (default 0).
    #[arg(long)]
    seed: Option<u64>,
    /// Random time-crop width in pixels (default 512).
    #[arg(long)]
    crop_px: Option<usize>,
    /// Checkpoint every N steps (default 500).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Checkpoints kept (default 3).
    #[arg(long)]
    keep_checkpoints: Option<usize>,
    /// Validate every N steps (default never).
    #[arg(long)]
    validate_every: Option<u64>,
    /// A validation prompt (repeat the flag for several).
    #[arg(long = "validation-prompt")]
    validation_prompts: Vec<String>,
    /// Sampling steps at validation (default 20).
    #[arg(long)]
    validation_steps: Option<usize>,
    /// Latent raga classifier (from train-latent-classifier) for the
    /// auxiliary loss.
    #[arg(long)]
    aux_classifier: Option<PathBuf>,
    /// Auxiliary loss weight (default 0.05).
    #[arg(long)]
    aux_lambda: Option<f64>,
    /// Auxiliary loss only for timesteps up to this (default 200).
    #[arg(long)]
    aux_t_max: Option<usize>,
    /// Share of samples with timesteps drawn from 0..=t_max (default 0).
    #[arg(long)]
    aux_low_t_share: Option<f64>,
}

/// Runs `train`.
pub fn train(a: TrainArgs) -> anyhow::Result<ExitCode> {
    let fields = serde_json::to_value(&a.options)?;
    let o = TrainOptions::for_run(&a.out, a.options_file.as_deref(), a.resume, &fields)?;
    let final_dir = train_unet(&o, &a.out, &a.device, a.resume, &Bar::new())?;
    println!("{}", final_dir.display());
    Ok(ExitCode::SUCCESS)
}
