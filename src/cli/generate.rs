//! `generate`, `audio-to-audio`, `interpolate`: Stable Diffusion sampling
//! to WAV + spectrogram PNG (the decoded image, with riffusion's EXIF) +
//! JSON sidecar.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use ragafusion::audio::{read_audio_as, ChannelLayout};
use ragafusion::diffusion::defaults::{plan_tonic, TonicPlan};
use ragafusion::diffusion::longform::{join_clips, Tiling};
use ragafusion::diffusion::pipeline::{rgb_to_images, slerp};
use ragafusion::diffusion::weights::WeightStore;
use ragafusion::diffusion::{NoiseSource, SamplerKind, SeededNoise};
use ragafusion::spectrogram::{read_png, SpectrogramConverter};
use serde_json::json;

use super::musicgen::{self, MusicgenArgs};
use super::progress_bar::Bar;
use super::sd_args::{
    model_record, parse_scheduler, px_of_ms, slug, spectrogram_of, write_outputs, ModelArgs,
    OutputArgs, SamplingArgs, TonicArgs, RIFFUSION_SETTINGS,
};

/// The model family `generate` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// A Stable Diffusion checkpoint in the diffusers layout (riffusion).
    Diffusion,
    /// A MusicGen checkpoint in the transformers layout.
    Musicgen,
}

/// Arguments of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Text prompt (Stable Diffusion truncates prompts over 77 tokens with
    /// a warning; MusicGen generates unconditionally from an empty one).
    prompt: String,
    /// Model family: `diffusion` (spectrogram diffusion; WAV + PNG + JSON)
    /// or `musicgen` (WAV + JSON).
    #[arg(long, value_enum, default_value_t = Backend::Diffusion)]
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
    /// Samples generated at once (each gets its own files).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Length in seconds (default one 5.12 s clip). Diffusion: longer than
    /// one clip denoises one wide latent in overlapping clip-wide windows
    /// that agree on their shared columns at every step, joined into one
    /// file. MusicGen: new audio after any
    /// `--continue` prompt, 50 S + 3 decoder steps at 50 Hz, window by
    /// window past `--window-s`.
    #[arg(long)]
    seconds: Option<f64>,
    /// Columns shared by consecutive long-form clips, in milliseconds.
    #[arg(long, default_value_t = 1280)]
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
    #[arg(long, default_value_t = 0.75)]
    strength: f64,
    /// Grayscale PNG the size of the input's spectrogram: white is
    /// repainted, black kept.
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Columns shared by consecutive clips, in milliseconds.
    #[arg(long, default_value_t = 1280)]
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
    /// Number of clips from start to end (alpha 0 .. 1).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Denoising steps per clip (default: the model's ragafusion.json,
    /// else 50).
    #[arg(long)]
    inference_steps: Option<usize>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    tonic: TonicArgs,
    /// Sampler: ddim, pndm, euler-a or dpmpp-2m (default: the model's,
    /// else pndm).
    #[arg(long, value_parser = parse_scheduler)]
    scheduler: Option<SamplerKind>,
    /// Classifier-free guidance scale (default: the model's, else 7).
    #[arg(long)]
    guidance: Option<f64>,
    /// Negative prompt for every clip.
    #[arg(long)]
    negative: Option<String>,
    /// Columns shared by consecutive clips in the joined file, in ms.
    #[arg(long, default_value_t = 1280)]
    overlap_ms: u32,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `generate`.
pub fn generate(a: GenerateArgs) -> anyhow::Result<ExitCode> {
    if a.backend == Backend::Musicgen {
        return generate_musicgen(&a);
    }
    let start = Instant::now();
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (sd, load_s) = a.model.load()?;
    let params = sd.spectrogram_params()?;
    let h = sd.height_px(&params)?;
    let scale = sd.vae_scale();
    let clip_px = sd.clip_px(&params);
    let total_px = match a.seconds {
        Some(s) if !(s > 0.0 && s.is_finite()) => bail!("--seconds must be positive, got {s}"),
        Some(s) => px_of_ms(&params, s * 1000.0).div_ceil(scale) * scale,
        None => clip_px,
    };
    let settings = a.sampling.resolve(&sd, a.steps);
    let plan = a.tonic.plan(&sd, &a.prompt)?;
    let bar = Bar::new();
    let t0 = Instant::now();
    let text = sd.conditioning(
        &plan.prompt,
        a.sampling.negative.as_deref(),
        settings.guidance,
        &bar,
    )?;
    let text_s = t0.elapsed().as_secs_f64();
    let mut noise = SeededNoise::new(a.sampling.seed);
    let t0 = Instant::now();
    let (images, long_form) = if total_px > clip_px {
        if a.init_latents.is_some() || a.batch > 1 {
            bail!("--init-latents and --batch apply to single clips, not to --seconds longer than one clip");
        }
        let tiling = Tiling {
            clip_px,
            overlap_px: (px_of_ms(&params, a.overlap_ms as f64) / scale) * scale,
        };
        let image = sd.generate_long(&settings, &text, h, total_px, tiling, &mut noise, &bar)?;
        (vec![image], true)
    } else {
        let shape = sd.latent_shape(a.batch, clip_px, h)?;
        let init = match &a.init_latents {
            Some(p) => Some(read_init_latents(p)?),
            None => None,
        };
        let latents = sd.txt2img(&settings, &text, shape, init, &mut noise, &bar)?;
        let mut out = Vec::new();
        for i in 0..a.batch {
            let image = sd.decode_latents(&latents.narrow(0, i, 1)?)?;
            out.push(image.narrow(3, 0, total_px)?);
        }
        (out, false)
    };
    let denoise_s = t0.elapsed().as_secs_f64();
    let base = a
        .output
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-s{}", slug(&a.prompt), a.sampling.seed));
    let model = model_record(&a.model, &sd)?;
    for (i, image) in images.iter().enumerate() {
        let name = if images.len() > 1 {
            format!("{base}-{i}")
        } else {
            base.clone()
        };
        let sidecar = json!({
            "kind": if long_form { "long-form" } else { "text-to-audio" },
            "prompt": a.prompt,
            "model_prompt": plan.prompt,
            "tonic_hz": plan.tonic_hz,
            "transpose_ratio": plan.ratio,
            "negative_prompt": a.sampling.negative,
            "seed": a.sampling.seed,
            "batch_index": i,
            "steps": settings.steps,
            "scheduler": settings.sampler.name(),
            "guidance": settings.guidance,
            "width_px": image.dim(3)?,
            "height_px": h,
            "overlap_ms": if long_form { Some(a.overlap_ms) } else { None },
            "init_latents": a.init_latents.as_ref().map(|p| p.display().to_string()),
            "model": model,
            "version": env!("CARGO_PKG_VERSION"),
            "timings_s": {"load": load_s, "text": text_s, "denoise_and_decode": denoise_s,
                          "total_before_audio": start.elapsed().as_secs_f64()},
        });
        write_outputs(
            &a.output,
            &name,
            &spectrogram_of(image, &params, &plan)?,
            &params,
            a.sampling.seed,
            sidecar,
            &bar,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn generate_musicgen(a: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let diffusion_only = [
        (a.sampling.negative.is_some(), "--negative"),
        (a.init_latents.is_some(), "--init-latents"),
        (a.batch != 1, "--batch"),
        (a.model.variant.is_some(), "--variant"),
        (a.tonic.tonic.is_some(), "--tonic"),
        (a.steps.is_some(), "--steps"),
        (a.sampling.scheduler.is_some(), "--scheduler"),
    ];
    if let Some((_, flag)) = diffusion_only.iter().find(|(given, _)| *given) {
        bail!("{flag} applies to --backend diffusion only");
    }
    let Some(model) = &a.model.model else {
        bail!("--backend musicgen needs --model (a MusicGen checkpoint folder)");
    };
    musicgen::generate(musicgen::Request {
        prompt: &a.prompt,
        model,
        device: &a.model.device,
        dtype: &a.model.dtype,
        guidance: a.sampling.guidance,
        seed: a.sampling.seed,
        seconds: a.seconds.unwrap_or(5.12),
        out: &a.output.out,
        name: a.output.name.as_deref(),
        args: &a.musicgen,
    })
}

fn read_init_latents(path: &Path) -> anyhow::Result<Tensor> {
    let store = WeightStore::open(path, &Device::Cpu)
        .with_context(|| format!("reading --init-latents {}", path.display()))?;
    let Some(t) = store.tensor("latents") else {
        bail!(
            "{}: no tensor named `latents` (found: {})",
            path.display(),
            store.names().join(", ")
        );
    };
    let t = t.to_dtype(DType::F32)?;
    let max = t.abs()?.max_all()?.to_scalar::<f32>()?;
    if !max.is_finite() {
        bail!(
            "{}: tensor `latents` contains NaN or infinite values",
            path.display()
        );
    }
    Ok(t)
}

/// Runs `audio-to-audio`.
pub fn audio_to_audio(a: AudioToAudioArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    if !(0.0..=1.0).contains(&a.strength) {
        bail!("--strength must be in [0, 1], got {}", a.strength);
    }
    let (sd, load_s) = a.model.load()?;
    let params = sd.spectrogram_params()?;
    let h = sd.height_px(&params)?;
    let scale = sd.vae_scale();
    let clip_px = sd.clip_px(&params);
    let audio = read_audio_as(&a.input, params.sample_rate_hz, ChannelLayout::Mono)
        .with_context(|| format!("reading {}", a.input.display()))?;
    let plan = a.tonic.plan(&sd, &a.prompt)?;
    let converter = SpectrogramConverter::new(params.clone())?;
    let (spec, _max) = converter.image_from_audio(&audio)?;
    // to the model's tonic; the result goes back by `plan`
    let spec = TonicPlan {
        ratio: 1.0 / plan.ratio,
        ..plan.clone()
    }
    .apply(spec, &params)?;
    let width = spec.width;
    // pad to whole latent cells and at least one clip, with silence (white)
    let padded_w = width.max(clip_px).div_ceil(scale) * scale;
    let mut padded = ragafusion::spectrogram::SpectrogramImage {
        width: padded_w,
        height: spec.height,
        rgb: vec![255; spec.height * padded_w * 3],
    };
    for y in 0..spec.height {
        let src = &spec.rgb[y * width * 3..(y + 1) * width * 3];
        padded.rgb[y * padded_w * 3..y * padded_w * 3 + width * 3].copy_from_slice(src);
    }
    let device = sd.unet.device().clone();
    let image = rgb_to_images(&[&padded], &device)?;
    let keep = match &a.mask {
        Some(p) => Some(read_mask(p, spec.height, width, padded_w, &device)?),
        None => None,
    };
    let settings = a.sampling.resolve(&sd, a.steps);
    let tiling = Tiling {
        clip_px,
        overlap_px: (px_of_ms(&params, a.overlap_ms as f64) / scale) * scale,
    };
    let bar = Bar::new();
    let text = sd.conditioning(
        &plan.prompt,
        a.sampling.negative.as_deref(),
        settings.guidance,
        &bar,
    )?;
    let mut noise = SeededNoise::new(a.sampling.seed);
    let t0 = Instant::now();
    let out = sd.audio_to_audio(
        &settings,
        &text,
        &image,
        a.strength,
        keep.as_ref(),
        tiling,
        &mut noise,
        &bar,
    )?;
    let out = out.narrow(3, 0, width)?;
    let denoise_s = t0.elapsed().as_secs_f64();
    let stem = a
        .input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = a
        .output
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}-s{}", slug(&stem), slug(&a.prompt), a.sampling.seed));
    let sidecar = json!({
        "kind": "audio-to-audio",
        "input": a.input.display().to_string(),
        "mask": a.mask.as_ref().map(|p| p.display().to_string()),
        "prompt": a.prompt,
        "model_prompt": plan.prompt,
        "tonic_hz": plan.tonic_hz,
        "transpose_ratio": plan.ratio,
        "negative_prompt": a.sampling.negative,
        "seed": a.sampling.seed,
        "strength": a.strength,
        "steps": settings.steps,
        "scheduler": settings.sampler.name(),
        "guidance": settings.guidance,
        "width_px": width,
        "height_px": h,
        "overlap_ms": a.overlap_ms,
        "model": model_record(&a.model, &sd)?,
        "version": env!("CARGO_PKG_VERSION"),
        "timings_s": {"load": load_s, "denoise_and_decode": denoise_s,
                      "total_before_audio": start.elapsed().as_secs_f64()},
    });
    write_outputs(
        &a.output,
        &name,
        &spectrogram_of(&out, &params, &plan)?,
        &params,
        a.sampling.seed,
        sidecar,
        &bar,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A riffusion mask PNG (white repainted, black kept) as a keep tensor
/// `[1, 1, H, padded_w]` (1 = keep); padding columns are repainted.
fn read_mask(
    path: &Path,
    h: usize,
    w: usize,
    padded_w: usize,
    device: &Device,
) -> anyhow::Result<Tensor> {
    let loaded = read_png(path).with_context(|| format!("reading --mask {}", path.display()))?;
    let m = &loaded.image;
    if m.height != h || m.width != w {
        bail!(
            "{}: mask is {}x{} px, the input's spectrogram is {}x{} px",
            path.display(),
            m.width,
            m.height,
            w,
            h
        );
    }
    let mut keep = vec![0f32; h * padded_w];
    for y in 0..h {
        for x in 0..w {
            keep[y * padded_w + x] = 1.0 - m.rgb[(y * w + x) * 3] as f32 / 255.0;
        }
    }
    Ok(Tensor::from_vec(keep, (1, 1, h, padded_w), device)?)
}

fn parse_point(s: &str, flag: &str) -> anyhow::Result<(String, u64)> {
    let Some((prompt, seed)) = s.rsplit_once(':') else {
        bail!("--{flag} {s:?}: expected PROMPT:SEED");
    };
    let seed: u64 = seed.trim().parse().with_context(|| {
        format!("--{flag} {s:?}: the seed after the last ':' must be a whole number")
    })?;
    Ok((prompt.to_string(), seed))
}

/// Runs `interpolate`.
pub fn interpolate(a: InterpolateArgs) -> anyhow::Result<ExitCode> {
    let (p0, s0) = parse_point(&a.from, "from")?;
    let (p1, s1) = parse_point(&a.to, "to")?;
    if a.steps < 2 {
        bail!("--steps must be at least 2 (the two end points)");
    }
    let (sd, load_s) = a.model.load()?;
    let params = sd.spectrogram_params()?;
    let h = sd.height_px(&params)?;
    let scale = sd.vae_scale();
    let clip_px = sd.clip_px(&params);
    let shape = sd.latent_shape(1, clip_px, h)?;
    let device = sd.unet.device().clone();
    let bar = Bar::new();
    let settings = sd.defaults.settings(
        a.scheduler,
        a.inference_steps,
        a.guidance,
        RIFFUSION_SETTINGS,
    );
    // both ends at one tonic: the flag's, else the start prompt's shruti
    let plan_a = a.tonic.plan(&sd, &p0)?;
    let plan_b = plan_tonic(&sd.defaults, &p1, plan_a.tonic_hz)?;
    let plan = plan_a.clone();
    let t_a = sd.conditioning(
        &plan_a.prompt,
        a.negative.as_deref(),
        settings.guidance,
        &bar,
    )?;
    let t_b = sd.conditioning(
        &plan_b.prompt,
        a.negative.as_deref(),
        settings.guidance,
        &bar,
    )?;
    let n_a = SeededNoise::new(s0).noise(&shape, &device)?;
    let n_b = SeededNoise::new(s1).noise(&shape, &device)?;
    let base = a
        .output
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-to-{}", slug(&p0), slug(&p1)));
    let model = model_record(&a.model, &sd)?;
    let mut clips = Vec::with_capacity(a.steps);
    for k in 0..a.steps {
        let alpha = k as f64 / (a.steps - 1) as f64;
        let text = t_a.lerp(&t_b, alpha)?;
        let init = slerp(alpha, &n_a, &n_b)?;
        let mut ancestral = SeededNoise::new(s0 ^ s1.rotate_left(17) ^ k as u64);
        let t0 = Instant::now();
        let latents = sd.txt2img(&settings, &text, shape, Some(init), &mut ancestral, &bar)?;
        let image = sd.decode_latents(&latents)?;
        let sidecar = json!({
            "kind": "interpolation",
            "from": {"prompt": p0, "seed": s0},
            "to": {"prompt": p1, "seed": s1},
            "alpha": alpha,
            "index": k,
            "tonic_hz": plan.tonic_hz,
            "transpose_ratio": plan.ratio,
            "negative_prompt": a.negative,
            "steps": settings.steps,
            "scheduler": settings.sampler.name(),
            "guidance": settings.guidance,
            "width_px": clip_px,
            "height_px": h,
            "model": model,
            "version": env!("CARGO_PKG_VERSION"),
            "timings_s": {"load": load_s, "denoise_and_decode": t0.elapsed().as_secs_f64()},
        });
        write_outputs(
            &a.output,
            &format!("{base}-{k:02}"),
            &spectrogram_of(&image, &params, &plan)?,
            &params,
            s0,
            sidecar,
            &bar,
        )?;
        clips.push(image);
    }
    let overlap = (px_of_ms(&params, a.overlap_ms as f64) / scale) * scale;
    if overlap * 2 > clip_px {
        bail!("--overlap-ms {} is more than half a clip", a.overlap_ms);
    }
    let starts: Vec<usize> = (0..clips.len()).map(|k| k * (clip_px - overlap)).collect();
    let total = starts.last().copied().unwrap_or(0) + clip_px;
    let joined = join_clips(&clips, &starts, total)?;
    let sidecar = json!({
        "kind": "interpolation-joined",
        "from": {"prompt": p0, "seed": s0},
        "to": {"prompt": p1, "seed": s1},
        "clips": a.steps,
        "overlap_ms": a.overlap_ms,
        "tonic_hz": plan.tonic_hz,
        "transpose_ratio": plan.ratio,
        "steps": settings.steps,
        "scheduler": settings.sampler.name(),
        "guidance": settings.guidance,
        "width_px": total,
        "height_px": h,
        "model": model,
        "version": env!("CARGO_PKG_VERSION"),
        "timings_s": {"load": load_s},
    });
    write_outputs(
        &a.output,
        &format!("{base}-joined"),
        &spectrogram_of(&joined, &params, &plan)?,
        &params,
        s0,
        sidecar,
        &bar,
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_points() {
        assert_eq!(slug("Kalyani raga, Adi tala!"), "kalyani-raga-adi-tala");
        assert_eq!(slug(""), "unconditional");
        assert_eq!(
            parse_point("raga: kalyani:7", "from").unwrap(),
            ("raga: kalyani".into(), 7)
        );
        assert!(parse_point("kalyani", "from").is_err());
        assert!(parse_point("kalyani:x", "from").is_err());
    }
}
