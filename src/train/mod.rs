//! Fine-tuning Stable Diffusion on captioned spectrograms, with an optional
//! raga-classifier auxiliary loss.
//!
//! ```text
//! checkpoint.rs run checkpoints: save, prune, resume
//! data.rs       metadata.jsonl, latent cache, sample order, batches
//! objective.rs  noising, epsilon / v targets, min-SNR weights, x0-hat
//! optim.rs      AdamW, LR schedules, accumulation, clipping, EMA
//! options.rs    the run options (TOML / flags), saved with the run
//! export.rs     the trained model as a diffusers folder (+ LoRA file)
//! latent_classifier.rs  the raga CNN on latents (auxiliary-loss judge)
//! latent_fit.rs training that CNN on cached latents
//! latent_job.rs the `train-latent-classifier` job
//! run.rs        the run loop: metrics JSONL, checkpoints, validation, loss PNG
//! setup.rs      UNet parameters (checkpoint / named config), latent cache file
//! text_fit.rs   a fresh CLIP text encoder with label heads
//! text_job.rs   the `train-text-encoder` job: tokenizer, encoder, pipeline
//! trainer.rs    one optimisation step (micro-batches, aux loss, EMA)
//! unet_job.rs   the `train` job: load, cache latents, run, validate, export
//! vae_fit.rs    training the autoencoder on spectrograms
//! vae_job.rs    the `train-vae` job: load, fit, resume, export
//! ```
//!
//! The trainable parameters ([`ParamSet`]) and LoRA adapters live in
//! [`crate::nn`], beside the frozen weight store.

pub mod checkpoint;
pub mod data;
pub mod export;
pub mod latent_classifier;
pub mod latent_fit;
pub mod latent_job;
pub mod objective;
pub mod optim;
pub mod options;
pub mod run;
pub mod setup;
pub mod text_fit;
pub mod text_job;
pub mod trainer;
pub mod unet_job;
pub mod vae_fit;
pub mod vae_job;

pub use crate::nn::lora::LoraConfig;
pub use crate::nn::params::ParamSet;
pub use objective::{weighted_mse, NoiseSchedule, Prediction};
pub use optim::{AdamW, AdamWConfig, Ema, GradAccumulator, LrSchedule, LrScheduleKind};
