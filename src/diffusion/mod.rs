//! Stable Diffusion (SD 1.x / 2.x architecture) on candle: checkpoint
//! loading in the diffusers layout, the models, the samplers and the
//! sampling pipeline.
//!
//! The layers, tensor stores and segmented forwards they are built from
//! live in [`crate::nn`].
//!
//! ```text
//! config.rs       unet / vae / text_encoder configs, validated
//! transformer.rs  the UNet's spatial transformer
//! unet.rs         UNet2DConditionModel
//! vae.rs          AutoencoderKL
//! clip.rs         CLIPTextModel
//! tokenizer.rs    the CLIP BPE tokenizer
//! schedulers/     DDIM, PNDM, Euler ancestral, DPM-Solver++ (2M), noise
//! defaults.rs     ragafusion.json (canonical tonic, sampler), the default model
//! pipeline/       StableDiffusion: load.rs (the diffusers folder), mod.rs
//!                 (txt2img, img2img, masks, interpolation), longform.rs
//!                 (wide spectrograms: long form, audio-to-audio)
//! ```

pub mod bench;
pub mod bpe;
pub mod clip;
pub mod config;
pub mod defaults;
pub mod pipeline;
pub mod schedulers;
pub mod tokenizer;
pub mod transformer;
pub mod unet;
pub mod vae;

pub use pipeline::{Conditioning, Inpaint, Repaint, SampleSettings, SamplingRun};
pub use pipeline::{LoadOptions, StableDiffusion};
pub use schedulers::{NoiseSource, RecordedNoise, SamplerKind, SchedulerConfig, SeededNoise};
