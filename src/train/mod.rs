//! Fine-tuning Stable Diffusion on captioned spectrograms, with an optional
//! raga-classifier auxiliary loss.
//!
//! ```text
//! checkpoint.rs run checkpoints: save, prune, resume
//! data.rs       metadata.jsonl, latent cache, sample order, batches
//! objective.rs  noising, epsilon / v targets, min-SNR weights, x0-hat
//! optim.rs      AdamW, LR schedules, accumulation, clipping, EMA
//! options.rs    the run options (TOML / flags), saved with the run
//! params.rs     trainable parameters and the model-building backend
//! export.rs     the trained model as a diffusers folder (+ LoRA file)
//! latent_classifier.rs  the raga CNN on latents (auxiliary-loss judge)
//! latent_fit.rs training that CNN on cached latents
//! lora.rs       low-rank adapters on attention projections
//! run.rs        the run loop: metrics JSONL, checkpoints, validation, loss PNG
//! setup.rs      UNet parameters (checkpoint / named config), latent cache file
//! trainer.rs    one optimisation step (micro-batches, aux loss, EMA)
//! vae_fit.rs    training the autoencoder on spectrograms
//! ```

pub mod checkpoint;
pub mod data;
pub mod export;
pub mod latent_classifier;
pub mod latent_fit;
pub mod lora;
pub mod objective;
pub mod optim;
pub mod options;
pub mod params;
pub mod run;
pub mod setup;
pub mod text_fit;
pub mod trainer;
pub mod vae_fit;

pub use lora::LoraConfig;
pub use objective::{weighted_mse, NoiseSchedule, Prediction};
pub use optim::{AdamW, AdamWConfig, Ema, GradAccumulator, LrSchedule, LrScheduleKind};
pub use params::ParamSet;
