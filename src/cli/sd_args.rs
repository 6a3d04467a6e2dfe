//! What the generation verbs share: model flags, sampler flags, tonic and
//! output flags, each turned into the engine's [`ModelSpec`] and
//! [`GenerateRequest`] fields; and writing a job's outputs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ragafusion::captions::shruti::parse_tonic;
use ragafusion::diffusion::SamplerKind;
use ragafusion::engine::{defaults, Backend, Engine, GenerateRequest, ModelSpec};
use ragafusion::spectrogram::Quality;

use super::choice::choice;
use super::progress_bar::Bar;

/// Where the model comes from and how it runs.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Checkpoint folder: diffusers layout (model_index.json, unet/, vae/,
    /// text_encoder/, tokenizer/, scheduler/), or with `--backend musicgen`
    /// transformers' MusicGen layout (config.json, model.safetensors,
    /// tokenizer.json). Default: $RAGAFUSION_MODEL, else the shipped
    /// checkpoints/ragafusion-carnatic-v1.
    #[arg(long)]
    pub(super) model: Option<PathBuf>,
    /// `cpu`, or `cuda` / `cuda:N` (a build with `--features cuda`).
    #[arg(long, default_value = defaults::DEVICE)]
    pub(super) device: String,
    /// Compute precision of the UNet and text encoder: f32, f16 or bf16
    /// (bf16 on CUDA only); the VAE stays f32.
    #[arg(long, default_value = defaults::DTYPE, value_parser = ["f32", "f16", "bf16"])]
    pub(super) dtype: String,
    /// Weights variant to prefer, e.g. `fp16` for
    /// diffusion_pytorch_model.fp16.safetensors.
    #[arg(long)]
    pub(super) variant: Option<String>,
    /// Attention computed for this many batch x head slices at a time
    /// (less memory); default: automatic.
    #[arg(long)]
    attention_slice: Option<usize>,
}

impl ModelArgs {
    /// Loads the model these flags name, for `backend`.
    pub(super) fn load(&self, backend: Backend) -> anyhow::Result<Engine> {
        let spec = ModelSpec {
            backend,
            dir: self.model.clone(),
            device: self.device.clone(),
            dtype: self.dtype.clone(),
            variant: self.variant.clone(),
            attention_slice: self.attention_slice,
        };
        Engine::load(&spec)
            .map_err(flag_error)
            .with_context(|| match &spec.dir {
                Some(d) => format!("loading the checkpoint {}", d.display()),
                None => "loading the default model".into(),
            })
    }
}

/// Sampler and guidance flags.
#[derive(Debug, Args)]
pub struct GuidanceArgs {
    /// Sampler (default: the model's ragafusion.json, else pndm, riffusion's).
    #[arg(long, value_parser = choice::<SamplerKind>())]
    pub(super) scheduler: Option<SamplerKind>,
    /// Classifier-free guidance scale, 0-50, 1 or less disables it (default: the
    /// model's, else 7; 3 with `--backend musicgen`).
    #[arg(long)]
    pub(super) guidance: Option<f64>,
    /// Negative prompt (what to steer away from); default the empty prompt.
    #[arg(long)]
    pub(super) negative: Option<String>,
}

/// Sampler settings shared by the verbs.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    #[command(flatten)]
    pub(super) guide: GuidanceArgs,
    /// Seed of the initial noise (and of Euler ancestral's noise).
    #[arg(long, default_value_t = defaults::SEED)]
    pub(super) seed: u64,
}

/// The tonic a run is asked for.
#[derive(Debug, Args)]
pub struct TonicArgs {
    /// Tonic (shruti): a note in C3-B3 (`D`, `C#`), Hz (`146.8`) or kattai
    /// (`2 kattai`). Default: a "shruti ..." phrase in the caption, else
    /// the model's canonical tonic. Needs a model with one
    /// (`canonical_tonic_hz` in ragafusion.json), which plays it by
    /// transposing its spectrogram.
    #[arg(long, value_parser = |s: &str| parse_tonic(s).map_err(|e| e.to_string()))]
    pub(super) tonic: Option<f64>,
}

/// Output settings shared by the verbs.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output folder (created if needed).
    #[arg(long, default_value = "out")]
    pub(super) out: PathBuf,
    /// Base name of the output files; default from the prompt and seed.
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Spectrogram to audio trade-off.
    #[arg(long, value_parser = choice::<Quality>(), default_value_t = defaults::QUALITY)]
    pub(super) quality: Quality,
}

/// A request from the shared flags, for `prompt` and `seed`.
pub(super) fn request(
    prompt_seed: (&str, u64),
    guide: &GuidanceArgs,
    tonic: &TonicArgs,
    output: &OutputArgs,
) -> GenerateRequest {
    GenerateRequest {
        quality: output.quality,
        name: output.name.clone(),
        ..sampling_request(prompt_seed, guide, tonic)
    }
}

/// A request from the sampler and tonic flags, for `prompt` and `seed`.
pub(super) fn sampling_request(
    (prompt, seed): (&str, u64),
    guide: &GuidanceArgs,
    tonic: &TonicArgs,
) -> GenerateRequest {
    GenerateRequest {
        negative: guide.negative.clone(),
        tonic_hz: tonic.tonic,
        sampler: guide.scheduler,
        guidance: guide.guidance,
        ..GenerateRequest::new(prompt, seed)
    }
}

/// A refused parameter named as its flag (`--top-k: ...`).
pub(super) fn flag_error(e: ragafusion::Error) -> anyhow::Error {
    match e {
        ragafusion::Error::InvalidParameter { field, reason } => {
            anyhow::anyhow!("--{}: {reason}", field.replace('_', "-"))
        }
        other => other.into(),
    }
}

/// Runs a request: checks it before the model loads (a refused field is
/// named as its flag), loads the model, and writes each output into `out`
/// as soon as it exists, printing its WAV's path. Its work is saved as
/// it goes: Ctrl-C stops it, and the same command again continues.
pub(super) fn run_request(
    model: &ModelArgs,
    backend: Backend,
    request: &GenerateRequest,
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    request.check(backend).map_err(flag_error)?;
    let bar = Bar::interruptible();
    let engine = model.load(backend)?;
    engine.generate_into(
        request,
        out,
        defaults::CHECKPOINT_EVERY_S,
        &bar,
        &mut |wav| println!("{}", wav.display()),
    )?;
    Ok(ExitCode::SUCCESS)
}
