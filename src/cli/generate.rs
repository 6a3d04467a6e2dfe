//! `generate`, `audio-to-audio`, `interpolate`: flags to an engine
//! request; the engine writes WAV + spectrogram PNG (with riffusion's
//! EXIF) + JSON sidecar for each output.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ragafusion::engine::request::parse_point;
use ragafusion::engine::{defaults, Backend, GenerateRequest, Task};

use super::choice::choice;
use super::musicgen::MusicgenArgs;
use super::sd_args::{
    flag_error, request, run_request, GuidanceArgs, ModelArgs, OutputArgs, SamplingArgs, TonicArgs,
};

/// Arguments of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Text prompt (Stable Diffusion truncates prompts over 77 tokens with
    /// a warning; MusicGen generates unconditionally from an empty one).
    prompt: String,
    /// Model family: `diffusion` (spectrogram diffusion; WAV + PNG + JSON)
    /// or `musicgen` (WAV + JSON).
    #[arg(long, value_parser = choice::<Backend>(), default_value_t = Backend::Diffusion)]
    backend: Backend,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    tonic: TonicArgs,
    /// Denoising steps (default: the model's ragafusion.json, else 50).
    #[arg(long)]
    steps: Option<usize>,
    /// Samples generated at once, at most 16 (each gets its own files).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Length in seconds, at most 3600 (default one 5.12 s clip). Diffusion: longer than
    /// one clip denoises one wide latent in overlapping clip-wide windows
    /// that agree on their shared columns at every step, joined into one
    /// file. MusicGen: new audio after any
    /// `--continue` prompt, 50 S + 3 decoder steps at 50 Hz, window by
    /// window past `--window-s`.
    #[arg(long)]
    seconds: Option<f64>,
    /// Columns shared by consecutive long-form clips, in milliseconds.
    #[arg(long, default_value_t = defaults::OVERLAP_MS)]
    overlap_ms: u32,
    /// Start from these latents instead of the seed's noise: a safetensors
    /// file with one tensor `latents` of shape [batch, 4, H/8, W/8]
    /// (unit variance; scaled by the scheduler as diffusers does).
    #[arg(long)]
    init_latents: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    musicgen: MusicgenArgs,
}

/// Arguments of `audio-to-audio`.
#[derive(Debug, Args)]
pub struct AudioToAudioArgs {
    /// Input audio (any length; long inputs go clip by clip).
    input: PathBuf,
    /// Text prompt for the new version.
    prompt: String,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The input's tonic, when the model has a canonical one: the input is
    /// transposed to the model's tonic, and the result back to this one.
    #[command(flatten)]
    tonic: TonicArgs,
    /// Denoising steps of a full-strength run (default: the model's
    /// ragafusion.json, else 50).
    #[arg(long)]
    steps: Option<usize>,
    /// How much is re-generated: 0 keeps the input, 1 ignores it
    /// (riffusion: 0.4 light, 0.55 heavy, 0.75 default).
    #[arg(long, default_value_t = defaults::STRENGTH)]
    strength: f64,
    /// Grayscale PNG the size of the input's spectrogram: white is
    /// repainted, black kept.
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Columns shared by consecutive clips, in milliseconds.
    #[arg(long, default_value_t = defaults::OVERLAP_MS)]
    overlap_ms: u32,
    #[command(flatten)]
    output: OutputArgs,
}

/// Arguments of `interpolate`.
#[derive(Debug, Args)]
pub struct InterpolateArgs {
    /// Start point, `PROMPT:SEED`.
    #[arg(long)]
    from: String,
    /// End point, `PROMPT:SEED`.
    #[arg(long)]
    to: String,
    /// Number of clips from start to end (alpha 0 .. 1), 2-256.
    #[arg(long, default_value_t = defaults::INTERPOLATION_CLIPS)]
    steps: usize,
    /// Denoising steps per clip (default: the model's ragafusion.json,
    /// else 50).
    #[arg(long)]
    inference_steps: Option<usize>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    tonic: TonicArgs,
    #[command(flatten)]
    guide: GuidanceArgs,
    /// Columns shared by consecutive clips in the joined file, in ms.
    #[arg(long, default_value_t = defaults::OVERLAP_MS)]
    overlap_ms: u32,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `generate`.
pub fn generate(a: GenerateArgs) -> anyhow::Result<ExitCode> {
    let s = &a.sampling;
    let r = GenerateRequest {
        steps: a.steps,
        batch: a.batch,
        seconds: a.seconds,
        overlap_ms: a.overlap_ms,
        init_latents: a.init_latents.clone(),
        musicgen: a.musicgen.options()?,
        ..request((&a.prompt, s.seed), &s.guide, &a.tonic, &a.output)
    };
    run_request(&a.model, a.backend, &r, &a.output.out)
}

/// Runs `audio-to-audio`.
pub fn audio_to_audio(a: AudioToAudioArgs) -> anyhow::Result<ExitCode> {
    let s = &a.sampling;
    let r = GenerateRequest {
        task: Task::AudioToAudio {
            input: a.input.clone(),
            strength: a.strength,
            mask: a.mask.clone(),
        },
        steps: a.steps,
        overlap_ms: a.overlap_ms,
        ..request((&a.prompt, s.seed), &s.guide, &a.tonic, &a.output)
    };
    run_request(&a.model, Backend::Diffusion, &r, &a.output.out)
        .with_context(|| format!("audio-to-audio of {}", a.input.display()))
}

/// Runs `interpolate`.
pub fn interpolate(a: InterpolateArgs) -> anyhow::Result<ExitCode> {
    let (p0, s0) = parse_point(&a.from, "from").map_err(flag_error)?;
    let (p1, s1) = parse_point(&a.to, "to").map_err(flag_error)?;
    let r = GenerateRequest {
        task: Task::Interpolate {
            to_prompt: p1,
            to_seed: s1,
            clips: a.steps,
        },
        steps: a.inference_steps,
        overlap_ms: a.overlap_ms,
        ..request((&p0, s0), &a.guide, &a.tonic, &a.output)
    };
    run_request(&a.model, Backend::Diffusion, &r, &a.output.out)
}
