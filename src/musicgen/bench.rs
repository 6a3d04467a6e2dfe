//! A generation benchmark with random weights at the published sizes: the
//! text encoder, the decoding loop (classifier-free guidance, sampling) and
//! the EnCodec decode, timed, with peak memory.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::config::{DecoderConfig, EncodecConfig, T5Config};
use super::decoder::Decoder;
use super::encodec::Encodec;
use super::generate::{generate_codes, GenerateSettings};
use super::model::Memory;
use super::sampling::Sampling;
use super::t5::T5Encoder;
use crate::error::terr;
use crate::error::{Error, Result};
use crate::memory::peak_rss_mib;
use crate::nn::random::RandomWeights;
use crate::progress::Progress;

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct MusicgenBenchConfig {
    /// The decoder's size.
    pub decoder: DecoderConfig,
    /// The text encoder (T5-base).
    pub text: T5Config,
    /// The codec (32 kHz).
    pub codec: EncodecConfig,
    /// Seconds of audio: 50 S + 3 decoder steps.
    pub seconds: f64,
    /// Text tokens of the prompt.
    pub text_tokens: usize,
    /// Guidance and sampling.
    pub settings: GenerateSettings,
    /// Decoder precision (the text encoder and codec run in f32).
    pub dtype: DType,
    /// Where to run.
    pub device: Device,
}

/// The measurements.
#[derive(Debug, Clone, Serialize)]
pub struct MusicgenBenchReport {
    /// Decoder parameters.
    pub decoder_parameters: usize,
    /// Building the random models.
    pub build_s: f64,
    /// The text encoder and projection, once.
    pub text_s: f64,
    /// Decoder steps (tokens per codebook, as transformers counts them).
    pub decoder_steps: usize,
    /// The decoding loop.
    pub decode_s: f64,
    /// Decoder steps per second.
    pub tokens_per_s: f64,
    /// Milliseconds per decoder step.
    pub ms_per_step: f64,
    /// EnCodec decode of the frames.
    pub codec_s: f64,
    /// Seconds of audio made.
    pub audio_s: f64,
    /// Wall time over audio time (below 1: faster than real time).
    pub real_time_factor: f64,
    /// Peak resident memory of the process (Linux VmHWM), MiB.
    pub peak_rss_mib: Option<f64>,
}

/// Builds random-weight models and times one generation.
pub fn run_musicgen_benchmark(
    cfg: &MusicgenBenchConfig,
    progress: &dyn Progress,
) -> Result<MusicgenBenchReport> {
    if !(cfg.seconds > 0.0 && cfg.seconds.is_finite()) {
        return Err(Error::param(
            "seconds",
            format!("must be positive, got {}", cfg.seconds),
        ));
    }
    let t0 = Instant::now();
    let w = RandomWeights { seed: 0 };
    let vb = w.var_builder(cfg.dtype, &cfg.device);
    let vb32 = w.var_builder(DType::F32, &cfg.device);
    let h = cfg.decoder.hidden_size;
    let decoder = Decoder::new(&vb.pp("decoder"), &cfg.decoder, h).map_err(terr("musicgen"))?;
    let text = T5Encoder::new(&vb32.pp("text_encoder"), &cfg.text).map_err(terr("musicgen"))?;
    let proj = crate::nn::layers::linear(&vb32, "enc_to_dec_proj", cfg.text.d_model, h)
        .map_err(terr("musicgen"))?;
    let codec = Encodec::new(&vb32.pp("audio_encoder"), &cfg.codec).map_err(terr("musicgen"))?;
    let decoder_parameters = count_decoder_parameters(&cfg.decoder);
    let build_s = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let n = cfg.text_tokens.max(1);
    let ids: Vec<u32> = (0..n as u32)
        .map(|i| (i * 7919 + 3) % cfg.text.vocab_size as u32)
        .collect();
    let ids = Tensor::from_vec(ids, (1, n), &cfg.device).map_err(terr("musicgen"))?;
    let mask = Tensor::ones((1, n), DType::U32, &cfg.device).map_err(terr("musicgen"))?;
    let hidden = text
        .forward(&ids, &mask)
        .and_then(|x| candle_core::Module::forward(&proj, &x))
        .map_err(terr("musicgen"))?;
    let memory = Memory {
        hidden,
        mask: mask.to_dtype(DType::F32).map_err(terr("musicgen"))?,
    };
    memory
        .hidden
        .sum_all()
        .and_then(|s| s.to_scalar::<f32>())
        .map_err(terr("musicgen"))?;
    let text_s = t0.elapsed().as_secs_f64();

    let frame_rate = cfg.codec.frame_rate();
    let frames = ((cfg.seconds * frame_rate as f64).round() as usize).max(1);
    let steps = frames + cfg.decoder.codebooks_per_channel() - 1;
    let empty = vec![Vec::new(); cfg.decoder.num_codebooks];
    let t0 = Instant::now();
    let codes = generate_codes(&decoder, &memory, &empty, steps, &cfg.settings, progress)?;
    let decode_s = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let per_channel = cfg.decoder.codebooks_per_channel();
    let flat: Vec<u32> = codes.iter().take(per_channel).flatten().copied().collect();
    let t =
        Tensor::from_vec(flat, (1, per_channel, frames), &cfg.device).map_err(terr("musicgen"))?;
    let audio = codec.decode(&t).map_err(terr("musicgen"))?;
    let samples = audio.dim(2).map_err(terr("musicgen"))?;
    audio
        .sum_all()
        .and_then(|s| s.to_scalar::<f32>())
        .map_err(terr("musicgen"))?;
    let codec_s = t0.elapsed().as_secs_f64();
    let audio_s = samples as f64 / cfg.codec.sampling_rate as f64;
    Ok(MusicgenBenchReport {
        decoder_parameters,
        build_s,
        text_s,
        decoder_steps: steps,
        decode_s,
        tokens_per_s: steps as f64 / decode_s.max(1e-12),
        ms_per_step: 1000.0 * decode_s / steps as f64,
        codec_s,
        audio_s,
        real_time_factor: (text_s + decode_s + codec_s) / audio_s,
        peak_rss_mib: peak_rss_mib(),
    })
}

/// Parameters of a decoder: embeddings, layers (self- and cross-attention
/// at the decoder's width, MLP, three layer norms), final norm, heads.
pub fn count_decoder_parameters(c: &DecoderConfig) -> usize {
    let (h, f, v) = (c.hidden_size, c.ffn_dim, c.vocab_size);
    let per_layer = 8 * h * h + 2 * h * f + 6 * h;
    c.num_codebooks * (v + 1) * h
        + c.num_hidden_layers * per_layer
        + 2 * h
        + c.num_codebooks * v * h
}
/// What `bench-musicgen` times: a MusicGen decoder size with random
/// weights, T5-base and the 32 kHz codec.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MusicgenBench {
    /// Decoder size: small, medium or large.
    pub size: String,
    /// Seconds of audio (50 per second plus 3 decoder steps).
    pub seconds: f64,
    /// Guidance scale; above 1 the decoder runs on a batch of two.
    pub guidance: f64,
    /// Argmax decoding instead of top-k 250 sampling.
    pub greedy: bool,
    /// Text tokens of the (random) prompt.
    pub text_tokens: usize,
    /// `cpu`, or `cuda` / `cuda:N`.
    pub device: String,
    /// Decoder precision: f32, f16 or bf16.
    pub dtype: String,
}

/// The `bench-musicgen` run. Returns the JSON record and a one-line
/// summary.
pub fn bench_musicgen_size(
    job: &MusicgenBench,
    progress: &dyn Progress,
) -> Result<(serde_json::Value, String)> {
    let settings = GenerateSettings {
        guidance: job.guidance,
        sampling: Sampling {
            greedy: job.greedy,
            ..Sampling::default()
        },
        seed: 0,
    };
    let (size, seconds, text_tokens) = (job.size.as_str(), job.seconds, job.text_tokens);
    let (device, dtype) = (&job.device, &job.dtype);
    let (dev, dt) = crate::engine::device_and_dtype(device, dtype)?;
    let cfg = MusicgenBenchConfig {
        decoder: DecoderConfig::preset(size)?,
        text: T5Config::base(),
        codec: EncodecConfig::musicgen_32khz(),
        seconds,
        text_tokens,
        settings,
        dtype: dt,
        device: dev,
    };
    let report = run_musicgen_benchmark(&cfg, progress)?;
    let summary = format!(
        "{} decoder steps in {:.1} s ({:.1} tokens/s, {:.1} ms/step), codec {:.2} s, RTF {:.2}, peak RSS {:.0} MiB",
        report.decoder_steps,
        report.decode_s,
        report.tokens_per_s,
        report.ms_per_step,
        report.codec_s,
        report.real_time_factor,
        report.peak_rss_mib.unwrap_or(f64::NAN)
    );
    let record = serde_json::json!({
        "model": format!("MusicGen {size} architecture (T5-base, 32 kHz EnCodec), random weights"),
        "seconds": seconds,
        "guidance": settings.guidance,
        "greedy": settings.sampling.greedy,
        "device": device,
        "dtype": dtype,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "version": env!("CARGO_PKG_VERSION"),
        "report": report,
    });
    Ok((record, summary))
}
