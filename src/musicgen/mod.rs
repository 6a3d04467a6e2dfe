//! MusicGen (transformers' `MusicgenForConditionalGeneration`) on candle,
//! the comparison backend beside the diffusion model: a T5 text encoder, an
//! autoregressive decoder over EnCodec codebooks with a KV cache, and the
//! EnCodec codec.
//!
//! ```text
//! bench.rs     random-weight generation benchmark
//! config.rs    config.json: text_encoder / audio_encoder / decoder
//! t5.rs        the T5 encoder
//! decoder.rs   the decoder: embeddings, positions, layers, heads, KV cache
//! encodec.rs   EnCodec: SEANet encoder / decoder, residual quantizer
//! gemv.rs      weight-streaming linear layers for decoder steps
//! delay.rs     the codebook delay pattern (pure)
//! sampling.rs  argmax, temperature, top-k, top-p (pure)
//! step_attention.rs  one query over the KV cache (CPU)
//! model.rs     the checkpoint folder -> MusicGen; text memory
//! generate.rs  the decoding loop, guidance, continuation, long windows
//! ```

pub mod bench;
pub mod config;
pub mod decoder;
pub mod delay;
pub mod encodec;
pub mod gemv;
pub mod generate;
pub mod model;
pub mod sampling;
pub mod step_attention;
pub mod t5;

pub use config::MusicgenConfig;
pub use generate::{
    audio_to_codes, codes_to_audio, generate_codes, generate_long, Codes, GenerateSettings,
    LongOutput, Windowing,
};
pub use model::{Memory, MusicGen};
pub use sampling::Sampling;

/// The largest absolute difference of two f32 tensors (for tests).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("same shapes, f32")
}
