//! The spectrogram diffusion loop: text to clips or one long piece,
//! audio-to-audio, interpolation; spectrograms to audio.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde_json::json;

use super::outputs::{slug, spectrogram_output, Generated};
use super::request::{GenerateRequest, Task};
use super::{defaults, Engine};
use crate::audio::{read_audio_as, ChannelLayout};
use crate::choice::Choice;
use crate::diffusion::defaults::{plan_tonic, TonicPlan};
use crate::diffusion::pipeline::load::px_of_ms;
use crate::diffusion::pipeline::longform::{join_clips, Tiling};
use crate::diffusion::pipeline::{
    images_to_rgb, rgb_to_images, slerp, Checkpoints, Repaint, Resume, SamplingRun,
};
use crate::diffusion::{NoiseSource, SampleSettings, SeededNoise, StableDiffusion};
use crate::error::{terr, Error, Result};
use crate::nn::weights::WeightStore;
use crate::progress::Progress;
use crate::spectrogram::{read_png, SpectrogramConverter, SpectrogramImage, SpectrogramParams};

/// The sampler settings of a request: its fields, else the model's, else
/// [`defaults::SAMPLING`].
fn sampling(sd: &StableDiffusion, r: &GenerateRequest) -> SampleSettings {
    sd.defaults
        .settings(r.sampler, r.steps, r.guidance, defaults::SAMPLING)
}

pub(super) fn effective_settings(
    sd: &StableDiffusion,
    r: &GenerateRequest,
) -> Result<serde_json::Value> {
    let s = sampling(sd, r);
    Ok(json!({
        "scheduler": s.sampler.name(),
        "steps": s.steps,
        "guidance": s.guidance,
        "negative_prompt": r.negative,
        "quality": r.quality.to_string(),
        "num_mel_bins": sd.spectrogram_params()?.num_mel_bins,
    }))
}

/// What every diffusion task needs: the model's geometry and settings.
struct Run<'a> {
    engine: &'a Engine,
    sd: &'a StableDiffusion,
    request: &'a GenerateRequest,
    params: SpectrogramParams,
    height_px: usize,
    clip_px: usize,
    scale: usize,
    settings: SampleSettings,
    started: Instant,
    store: Option<&'a dyn Checkpoints>,
}

impl<'a> Run<'a> {
    /// A sampling run that saves its state under `key` when the request
    /// has somewhere to keep it.
    fn sampling<'r>(
        &'r self,
        key: &'r str,
        noise: &'r mut dyn NoiseSource,
        progress: &'r dyn Progress,
    ) -> SamplingRun<'r> {
        SamplingRun {
            resume: self.store.map(|store| Resume { store, key }),
            ..SamplingRun::new(&self.settings, noise, progress)
        }
    }

    /// Overlap columns in whole latent cells.
    fn overlap_px(&self) -> usize {
        (px_of_ms(&self.params, self.request.overlap_ms as f64) / self.scale) * self.scale
    }

    fn tiling(&self) -> Tiling {
        Tiling {
            clip_px: self.clip_px,
            overlap_px: self.overlap_px(),
        }
    }

    /// A decoded image (`[1, 3, H, W]`) as a spectrogram of its first
    /// `width_px` columns at the tonic asked for, and its audio (seeded by
    /// the request's seed).
    fn finish(
        &self,
        image: &Tensor,
        width_px: usize,
        plan: &TonicPlan,
        progress: &dyn Progress,
        name: String,
        sidecar: serde_json::Value,
    ) -> Result<Generated> {
        let mut rgb = images_to_rgb(image)?.remove(0);
        if rgb.width > width_px {
            rgb = rgb.first_columns(width_px);
        }
        let rgb = plan.apply(rgb, &self.params)?;
        spectrogram_output(
            name,
            rgb,
            &self.params,
            self.request.quality,
            self.request.seed,
            sidecar,
            progress,
        )
    }

    /// The sidecar fields every diffusion output shares.
    fn common(&self, plan: &TonicPlan) -> Result<serde_json::Value> {
        Ok(json!({
            "tonic_hz": plan.tonic_hz,
            "transpose_ratio": plan.ratio,
            "negative_prompt": self.request.negative,
            "steps": self.settings.steps,
            "scheduler": self.settings.sampler.name(),
            "guidance": self.settings.guidance,
            "height_px": self.height_px,
            "quality": self.request.quality.to_string(),
            "model": self.engine.model_record()?,
            "version": env!("CARGO_PKG_VERSION"),
        }))
    }
}

/// Adds `extra`'s fields to `base`.
fn merged(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(b), serde_json::Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

pub(super) fn generate(
    engine: &Engine,
    sd: &StableDiffusion,
    request: &GenerateRequest,
    store: Option<&dyn Checkpoints>,
    progress: &dyn Progress,
    emit: &mut dyn FnMut(Generated) -> Result<()>,
) -> Result<()> {
    let params = sd.spectrogram_params()?;
    let run = Run {
        engine,
        sd,
        request,
        height_px: sd.height_px(&params)?,
        clip_px: sd.clip_px(&params),
        scale: sd.vae_scale(),
        settings: sampling(sd, request),
        params,
        started: Instant::now(),
        store,
    };
    match &request.task {
        Task::Text => text(&run, progress, emit),
        Task::AudioToAudio {
            input,
            strength,
            mask,
        } => audio_to_audio(&run, input, *strength, mask.as_deref(), progress, emit),
        Task::Interpolate {
            to_prompt,
            to_seed,
            clips,
        } => interpolate(&run, to_prompt, *to_seed, *clips, progress, emit),
    }
}

/// Text to one clip per batch item, or to one long piece.
fn text(
    run: &Run,
    progress: &dyn Progress,
    emit: &mut dyn FnMut(Generated) -> Result<()>,
) -> Result<()> {
    let (sd, r) = (run.sd, run.request);
    let want_px = match r.seconds {
        Some(s) => px_of_ms(&run.params, s * 1000.0).max(1),
        None => run.clip_px,
    };
    let total_px = want_px.div_ceil(run.scale) * run.scale;
    let plan = plan_tonic(&sd.defaults, &r.prompt, r.tonic_hz)?;
    let t0 = Instant::now();
    let text = sd.conditioning(
        &plan.prompt,
        r.negative.as_deref(),
        run.settings.guidance,
        progress,
    )?;
    let text_s = t0.elapsed().as_secs_f64();
    let mut noise = SeededNoise::new(r.seed);
    let t0 = Instant::now();
    let long_form = total_px > run.clip_px;
    let images = if long_form {
        if r.init_latents.is_some() || r.batch > 1 {
            return Err(Error::param(
                "seconds",
                "--init-latents and --batch apply to single clips, not to --seconds longer than one clip",
            ));
        }
        let mut sr = run.sampling("steps", &mut noise, progress);
        let image = sd.generate_long(&mut sr, &text, run.height_px, total_px, run.tiling())?;
        vec![image]
    } else {
        let shape = sd.latent_shape(r.batch, run.clip_px, run.height_px)?;
        let init = match &r.init_latents {
            Some(p) => Some(read_init_latents(p)?),
            None => None,
        };
        let mut sr = run.sampling("steps", &mut noise, progress);
        let latents = sd.txt2img(&mut sr, &text, shape, init)?;
        (0..r.batch)
            .map(|i| {
                let one = latents.narrow(0, i, 1).map_err(terr("batch item"))?;
                sd.decode_latents(&one)
            })
            .collect::<Result<Vec<_>>>()?
    };
    let denoise_s = t0.elapsed().as_secs_f64();
    let base = r
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-s{}", slug(&r.prompt), r.seed));
    let common = run.common(&plan)?;
    let n = images.len();
    for (i, image) in images.iter().enumerate() {
        let name = if n > 1 {
            format!("{base}-{i}")
        } else {
            base.clone()
        };
        let sidecar = merged(
            common.clone(),
            json!({
                "kind": if long_form { "long-form" } else { "text-to-audio" },
                "prompt": r.prompt,
                "model_prompt": plan.prompt,
                "seed": r.seed,
                "batch_index": i,
                "width_px": want_px,
                "overlap_ms": if long_form { Some(r.overlap_ms) } else { None },
                "init_latents": r.init_latents.as_ref().map(|p| p.display().to_string()),
                "timings_s": {"load": run.engine.load_s(), "text": text_s,
                              "denoise_and_decode": denoise_s,
                              "total_before_audio": run.engine.load_s()
                                  + run.started.elapsed().as_secs_f64()},
            }),
        );
        emit(run.finish(image, want_px, &plan, progress, name, sidecar)?)?;
    }
    Ok(())
}

/// The tensor `latents` of a safetensors file, checked for NaN.
fn read_init_latents(path: &Path) -> Result<Tensor> {
    let store = WeightStore::open(path, &Device::Cpu)?;
    let Some(t) = store.tensor("latents") else {
        return Err(Error::param(
            "init-latents",
            format!(
                "{}: no tensor named `latents` (found: {})",
                path.display(),
                store.names().join(", ")
            ),
        ));
    };
    let t = t.to_dtype(DType::F32).map_err(terr("init-latents"))?;
    let max = t
        .abs()
        .and_then(|a| a.max_all())
        .and_then(|m| m.to_scalar::<f32>())
        .map_err(terr("init-latents"))?;
    if !max.is_finite() {
        return Err(Error::param(
            "init-latents",
            format!(
                "{}: tensor `latents` contains NaN or infinite values",
                path.display()
            ),
        ));
    }
    Ok(t)
}

/// A new version of a recording, clip by clip.
fn audio_to_audio(
    run: &Run,
    input: &Path,
    strength: f64,
    mask: Option<&Path>,
    progress: &dyn Progress,
    emit: &mut dyn FnMut(Generated) -> Result<()>,
) -> Result<()> {
    let (sd, r, params) = (run.sd, run.request, &run.params);
    let audio = read_audio_as(input, params.sample_rate_hz, ChannelLayout::Mono)?;
    let plan = plan_tonic(&sd.defaults, &r.prompt, r.tonic_hz)?;
    let converter = SpectrogramConverter::new(params.clone())?;
    let (spec, _max) = converter.image_from_audio(&audio)?;
    // to the model's tonic; the result goes back by `plan`
    let spec = TonicPlan {
        ratio: 1.0 / plan.ratio,
        ..plan.clone()
    }
    .apply(spec, params)?;
    let width = spec.width;
    // pad to whole latent cells and at least one clip, with silence (white)
    let padded_w = width.max(run.clip_px).div_ceil(run.scale) * run.scale;
    let mut padded = SpectrogramImage {
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
    let keep = match mask {
        Some(p) => Some(read_mask(p, spec.height, width, padded_w, &device)?),
        None => None,
    };
    let text = sd.conditioning(
        &plan.prompt,
        r.negative.as_deref(),
        run.settings.guidance,
        progress,
    )?;
    let mut noise = SeededNoise::new(r.seed);
    let t0 = Instant::now();
    let mut sr = run.sampling("audio-to-audio", &mut noise, progress);
    let repaint = Repaint {
        strength,
        keep: keep.as_ref(),
    };
    let out = sd.audio_to_audio(&mut sr, &text, &image, repaint, run.tiling())?;
    let denoise_s = t0.elapsed().as_secs_f64();
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = r
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}-s{}", slug(&stem), slug(&r.prompt), r.seed));
    let sidecar = merged(
        run.common(&plan)?,
        json!({
            "kind": "audio-to-audio",
            "input": input.display().to_string(),
            "mask": mask.map(|p| p.display().to_string()),
            "prompt": r.prompt,
            "model_prompt": plan.prompt,
            "seed": r.seed,
            "strength": strength,
            "width_px": width,
            "overlap_ms": r.overlap_ms,
            "timings_s": {"load": run.engine.load_s(), "denoise_and_decode": denoise_s,
                          "total_before_audio": run.engine.load_s()
                              + run.started.elapsed().as_secs_f64()},
        }),
    );
    emit(run.finish(&out, width, &plan, progress, name, sidecar)?)
}

/// A riffusion mask PNG (white repainted, black kept) as a keep tensor
/// `[1, 1, H, padded_w]` (1 = keep); padding columns are repainted.
fn read_mask(path: &Path, h: usize, w: usize, padded_w: usize, device: &Device) -> Result<Tensor> {
    let loaded = read_png(path)?;
    let m = &loaded.image;
    if m.height != h || m.width != w {
        return Err(Error::InvalidImage {
            path: path.to_path_buf(),
            reason: format!(
                "mask is {}x{} px, the input's spectrogram is {w}x{h} px",
                m.width, m.height
            ),
        });
    }
    let mut keep = vec![0f32; h * padded_w];
    for y in 0..h {
        for x in 0..w {
            keep[y * padded_w + x] = 1.0 - m.rgb[(y * w + x) * 3] as f32 / 255.0;
        }
    }
    Tensor::from_vec(keep, (1, 1, h, padded_w), device).map_err(terr("mask"))
}

/// Clips from (prompt, seed) to (`to_prompt`, `to_seed`): text embeddings
/// interpolated linearly, initial noise spherically; then the clips
/// cross-faded into one file.
fn interpolate(
    run: &Run,
    to_prompt: &str,
    to_seed: u64,
    clips: usize,
    progress: &dyn Progress,
    emit: &mut dyn FnMut(Generated) -> Result<()>,
) -> Result<()> {
    let (sd, r) = (run.sd, run.request);
    let (p0, s0, p1, s1) = (r.prompt.as_str(), r.seed, to_prompt, to_seed);
    let overlap = run.overlap_px();
    if overlap * 2 > run.clip_px {
        return Err(Error::param(
            "overlap-ms",
            format!("{} is more than half a clip", r.overlap_ms),
        ));
    }
    let shape = sd.latent_shape(1, run.clip_px, run.height_px)?;
    let device = sd.unet.device().clone();
    // both ends at one tonic: the request's, else the start prompt's shruti
    let plan = plan_tonic(&sd.defaults, p0, r.tonic_hz)?;
    let plan_b = plan_tonic(&sd.defaults, p1, plan.tonic_hz)?;
    let guidance = run.settings.guidance;
    let t_a = sd.conditioning(&plan.prompt, r.negative.as_deref(), guidance, progress)?;
    let t_b = sd.conditioning(&plan_b.prompt, r.negative.as_deref(), guidance, progress)?;
    let n_a = SeededNoise::new(s0).noise(&shape, &device)?;
    let n_b = SeededNoise::new(s1).noise(&shape, &device)?;
    let base = r
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-to-{}", slug(p0), slug(p1)));
    let common = merged(
        run.common(&plan)?,
        json!({"from": {"prompt": p0, "seed": s0}, "to": {"prompt": p1, "seed": s1}}),
    );
    let mut images = Vec::with_capacity(clips);
    for k in 0..clips {
        let alpha = k as f64 / (clips - 1) as f64;
        let mut ancestral = SeededNoise::new(s0 ^ s1.rotate_left(17) ^ k as u64);
        let t0 = Instant::now();
        let (clip_key, steps_key) = (format!("clip-{k}"), format!("clip-{k}-steps"));
        let saved = match run.store {
            Some(store) => Resume {
                store,
                key: &clip_key,
            }
            .restore_clip(&mut ancestral, &device)?,
            None => None,
        };
        let latents = match saved {
            Some(latents) => latents,
            None => {
                let text = t_a.lerp(&t_b, alpha)?;
                let init = slerp(alpha, &n_a, &n_b)?;
                let mut sr = run.sampling(&steps_key, &mut ancestral, progress);
                let latents = sd.txt2img(&mut sr, &text, shape, Some(init))?;
                if let Some(store) = run.store {
                    Resume {
                        store,
                        key: &clip_key,
                    }
                    .save_clip(&latents, &ancestral)?;
                }
                latents
            }
        };
        let image = sd.decode_latents(&latents)?;
        let sidecar = merged(
            common.clone(),
            json!({
                "kind": "interpolation",
                "alpha": alpha,
                "index": k,
                "width_px": run.clip_px,
                "timings_s": {"load": run.engine.load_s(),
                              "denoise_and_decode": t0.elapsed().as_secs_f64()},
            }),
        );
        let name = format!("{base}-{k:02}");
        emit(run.finish(&image, run.clip_px, &plan, progress, name, sidecar)?)?;
        images.push(image);
    }
    let starts: Vec<usize> = (0..clips).map(|k| k * (run.clip_px - overlap)).collect();
    let total = starts.last().copied().unwrap_or(0) + run.clip_px;
    let joined = join_clips(&images, &starts, total)?;
    let sidecar = merged(
        common,
        json!({
            "kind": "interpolation-joined",
            "clips": clips,
            "overlap_ms": r.overlap_ms,
            "width_px": total,
            "timings_s": {"load": run.engine.load_s()},
        }),
    );
    emit(run.finish(
        &joined,
        total,
        &plan,
        progress,
        format!("{base}-joined"),
        sidecar,
    )?)
}
