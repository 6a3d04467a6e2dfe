//! What the Stable Diffusion verbs share: model loading flags, sampler
//! flags, output flags, and writing WAV + PNG + JSON sidecar.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use ragafusion::audio::{write_wav, WavFormat};
use ragafusion::diffusion::defaults::{default_model_dir, plan_tonic, TonicPlan};
use ragafusion::diffusion::pipeline::images_to_rgb;
use ragafusion::diffusion::{LoadOptions, SampleSettings, SamplerKind, StableDiffusion};
use ragafusion::fsutil::write_json_atomic;
use ragafusion::spectrogram::image::DEFAULT_MAX_VALUE;
use ragafusion::spectrogram::{
    write_png, InversionSettings, LoadedImage, Quality, SpectrogramConverter, SpectrogramImage,
    SpectrogramParams,
};
use serde_json::json;

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
    #[arg(long, default_value = "cpu")]
    pub(super) device: String,
    /// Compute precision of the UNet and text encoder: f32, f16 or bf16
    /// (bf16 on CUDA only); the VAE stays f32.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
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
    /// The folder named, else the default model's.
    pub(super) fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.model {
            Some(m) => Ok(m.clone()),
            None => Ok(default_model_dir()?),
        }
    }

    pub(super) fn load(&self) -> anyhow::Result<(StableDiffusion, f64)> {
        let dir = self.dir()?;
        let (device, dtype) = parse_device_dtype(&self.device, &self.dtype)?;
        let t0 = Instant::now();
        let opts = LoadOptions {
            dtype,
            vae_dtype: DType::F32,
            device,
            variant: self.variant.clone(),
        };
        let mut sd = StableDiffusion::load(&dir, &opts)
            .with_context(|| format!("loading the checkpoint {}", dir.display()))?;
        if self.attention_slice.is_some() {
            sd.unet.set_attention_slice(self.attention_slice);
        }
        Ok((sd, t0.elapsed().as_secs_f64()))
    }
}

/// `--device` and `--dtype` together: bf16 is refused on the CPU.
pub(super) fn parse_device_dtype(device: &str, dtype: &str) -> anyhow::Result<(Device, DType)> {
    ragafusion::backend::device_and_dtype(device, dtype)
        .with_context(|| format!("--device {device} --dtype {dtype}"))
}

pub(super) fn parse_scheduler(s: &str) -> Result<SamplerKind, String> {
    SamplerKind::parse(s).map_err(|e| e.to_string())
}

/// Sampler settings shared by the verbs.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Sampler: ddim, pndm, euler-a or dpmpp-2m (default: the model's
    /// ragafusion.json, else pndm, riffusion's).
    #[arg(long, value_parser = parse_scheduler)]
    pub(super) scheduler: Option<SamplerKind>,
    /// Classifier-free guidance scale, 1 disables guidance (default: the
    /// model's, else 7; 3 with `--backend musicgen`).
    #[arg(long)]
    pub(super) guidance: Option<f64>,
    /// Negative prompt (what to steer away from); default the empty prompt.
    #[arg(long)]
    pub(super) negative: Option<String>,
    /// Seed of the initial noise (and of Euler ancestral's noise).
    #[arg(long, default_value_t = 42)]
    pub(super) seed: u64,
}

/// Riffusion's sampler settings, for models without their own.
pub(super) const RIFFUSION_SETTINGS: SampleSettings = SampleSettings {
    sampler: SamplerKind::Pndm,
    steps: 50,
    guidance: 7.0,
};

impl SamplingArgs {
    /// The settings of a run: flags, else the model's, else riffusion's.
    pub(super) fn resolve(&self, sd: &StableDiffusion, steps: Option<usize>) -> SampleSettings {
        sd.defaults
            .settings(self.scheduler, steps, self.guidance, RIFFUSION_SETTINGS)
    }
}

/// The tonic a run is asked for.
#[derive(Debug, Args)]
pub struct TonicArgs {
    /// Tonic (shruti): a note in C3-B3 (`D`, `C#`), Hz (`146.8`) or kattai
    /// (`2 kattai`). Default: a "shruti ..." phrase in the caption, else
    /// the model's canonical tonic. Needs a model with one
    /// (`canonical_tonic_hz` in ragafusion.json), which plays it by
    /// transposing its spectrogram.
    #[arg(long, value_parser = parse_tonic_flag)]
    pub(super) tonic: Option<f64>,
}

fn parse_tonic_flag(s: &str) -> Result<f64, String> {
    ragafusion::captions::shruti::parse_tonic(s).map_err(|e| e.to_string())
}

impl TonicArgs {
    /// The caption for the model and the transposition for `prompt`.
    pub(super) fn plan(&self, sd: &StableDiffusion, prompt: &str) -> anyhow::Result<TonicPlan> {
        Ok(plan_tonic(&sd.defaults, prompt, self.tonic)?)
    }
}

/// The first image of a decoded batch as a spectrogram, at the tonic
/// asked for.
pub(super) fn spectrogram_of(
    image: &Tensor,
    params: &SpectrogramParams,
    plan: &TonicPlan,
) -> anyhow::Result<SpectrogramImage> {
    let rgb = images_to_rgb(image)?.remove(0);
    Ok(plan.apply(rgb, params)?)
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
    #[arg(long, value_enum, default_value_t = Quality::Fast)]
    pub(super) quality: Quality,
}

/// A file-name-safe slug of a prompt.
pub(super) fn slug(text: &str) -> String {
    let mut s = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
        if s.len() >= 40 {
            break;
        }
    }
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "unconditional".into()
    } else {
        s
    }
}

pub(super) use ragafusion::diffusion::checkpoint::px_of_ms;

/// Writes `name`.png (the spectrogram + EXIF), `name`.wav and `name`.json.
pub(super) fn write_outputs(
    output: &OutputArgs,
    name: &str,
    rgb: &SpectrogramImage,
    params: &SpectrogramParams,
    seed: u64,
    mut sidecar: serde_json::Value,
    bar: &Bar,
) -> anyhow::Result<PathBuf> {
    let (out, quality) = (output.out.as_path(), output.quality);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let png = out.join(format!("{name}.png"));
    write_png(&png, rgb, params, DEFAULT_MAX_VALUE)?;
    let t0 = Instant::now();
    let converter = SpectrogramConverter::new(params.clone())?;
    let settings = InversionSettings {
        quality,
        seed,
        ..InversionSettings::default()
    };
    let loaded = LoadedImage {
        image: rgb.clone(),
        params: params.clone(),
        max_value: Some(DEFAULT_MAX_VALUE),
        has_exif: true,
        exif: Default::default(),
    };
    let audio = converter.audio_from_image(&loaded, &settings.options(params), bar)?;
    let wav = out.join(format!("{name}.wav"));
    write_wav(&wav, &audio, WavFormat::Pcm16)?;
    sidecar["timings_s"]["audio"] = json!(t0.elapsed().as_secs_f64());
    sidecar["duration_s"] = json!(audio.duration_s());
    sidecar["files"] = json!({"wav": format!("{name}.wav"), "png": format!("{name}.png")});
    let json_path = out.join(format!("{name}.json"));
    write_json_atomic(&json_path, &sidecar)?;
    println!("{}", wav.display());
    Ok(wav)
}

pub(super) fn model_record(
    args: &ModelArgs,
    sd: &StableDiffusion,
) -> anyhow::Result<serde_json::Value> {
    Ok(json!({
        "path": sd.dir.display().to_string(),
        "content_hash": sd.content_hash()?,
        "device": args.device,
        "dtype": args.dtype,
    }))
}
