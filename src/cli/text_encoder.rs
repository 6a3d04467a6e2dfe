//! `train-text-encoder`: the text side of a pipeline trained from nothing,
//! a BPE tokenizer learned from the caption vocabulary and a CLIP text
//! encoder taught to read captions' fields.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ragafusion::overlay::from_fields;
use ragafusion::train::text_job::{train_text_encoder as train_text_job, TextJob};
use serde::Serialize;

use super::progress_bar::Bar;

/// Arguments of `train-text-encoder`: the fields of a [`TextJob`].
#[derive(Debug, Args, Serialize)]
pub struct TrainTextEncoderArgs {
    /// Run folder: tokenizer/, text_encoder/, training.json, and final/
    /// (the base pipeline with the new tokenizer and text encoder).
    #[arg(long)]
    out: PathBuf,
    /// Base pipeline (diffusers folder) whose scheduler, VAE, spectrogram
    /// parameters and (when its width fits) UNet go into OUT/final.
    #[arg(long)]
    model: PathBuf,
    /// A fresh UNet of this named config (tiny, compact, small, sd15) in
    /// OUT/final instead of the base's; needed when the base UNet's
    /// cross-attention width differs from --hidden.
    #[arg(long)]
    unet_config: Option<String>,
    /// Width of the encoder (and of the UNet's cross-attention).
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Transformer layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Context length in tokens (CLIP's is 77; captions are short, and
    /// attention costs grow with the square of it). Longer captions are
    /// cut with a warning at generation time.
    #[arg(long, default_value_t = 32)]
    context: usize,
    /// Largest tokenizer vocabulary (the 256 byte characters twice and the
    /// two special tokens included).
    #[arg(long, default_value_t = 4096)]
    max_tokens: usize,
    /// Captions drawn to learn the tokenizer's merges.
    #[arg(long, default_value_t = 30000)]
    corpus_captions: usize,
    /// Optimiser steps.
    #[arg(long, default_value_t = 800)]
    steps: usize,
    /// Captions per step.
    #[arg(long, default_value_t = 48)]
    batch_size: usize,
    /// Peak learning rate (cosine decay).
    #[arg(long, default_value_t = 2e-3)]
    learning_rate: f64,
    /// Seed of the captions, the initialisation and the fresh UNet.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `train-text-encoder`.
pub fn train_text_encoder(a: TrainTextEncoderArgs) -> anyhow::Result<ExitCode> {
    let job: TextJob = from_fields(&a, "train-text-encoder")?;
    let dir = train_text_job(&job, &Bar::new())?;
    eprintln!("wrote {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
