//! Stable Diffusion (SD 1.x / 2.x architecture) on candle: checkpoint
//! loading in the diffusers layout, the models, the samplers and the
//! sampling pipeline.
//!
//! ```text
//! weights.rs      strict tensor stores (safetensors, PyTorch .bin)
//! config.rs       unet / vae / text_encoder configs, validated
//! layers.rs       shared differentiable building blocks
//! transformer.rs  the UNet's spatial transformer
//! segments.rs     segmented forwards, gradient checkpointing
//! unet.rs         UNet2DConditionModel
//! vae.rs          AutoencoderKL
//! clip.rs         CLIPTextModel
//! tokenizer.rs    the CLIP BPE tokenizer
//! schedulers/     DDIM, PNDM, Euler ancestral, DPM-Solver++ (2M), noise
//! checkpoint.rs   the diffusers folder -> StableDiffusion
//! defaults.rs     ragafusion.json (canonical tonic, sampler), the default model
//! pipeline.rs     txt2img, img2img, masks, interpolation
//! longform.rs     wide spectrograms: long-form generation, audio-to-audio
//! ```

pub mod bench;
pub mod bpe;
pub mod channel_ops;
pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod conv_cpu;
pub mod defaults;
pub mod layers;
pub mod longform;
pub mod pipeline;
pub mod schedulers;
pub mod segments;
pub mod tokenizer;
pub mod transformer;
pub mod unet;
pub mod vae;
pub mod weights;

pub use checkpoint::{LoadOptions, StableDiffusion};
pub use pipeline::{Conditioning, Inpaint, SampleSettings};
pub use schedulers::{NoiseSource, RecordedNoise, SamplerKind, SchedulerConfig, SeededNoise};

/// Wraps a candle error as [`crate::Error::Tensor`] with what was being
/// computed.
pub(crate) fn terr(context: &'static str) -> impl Fn(candle_core::Error) -> crate::Error {
    move |e| crate::Error::Tensor {
        context: context.into(),
        reason: e.to_string(),
    }
}
