//! Sampling with a loaded [`StableDiffusion`]: text to latents, image to
//! image with a strength, masked repainting, and the interpolation of two
//! prompts and seeds; latents to spectrogram images and back.
//!
//! Latents are kept in f32 between steps whatever the model dtype; the UNet
//! sees its own dtype. Classifier-free guidance runs the unconditional and
//! the conditional branch as one batch, as diffusers does.

pub mod checkpoint;
pub mod load;
pub mod longform;

use candle_core::{DType, Device, Tensor};

use crate::diffusion::schedulers::{NoiseSource, Sampler, SamplerKind};
use crate::diffusion::unet::Unet;
use crate::error::terr;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::spectrogram::SpectrogramImage;
pub use checkpoint::{Checkpoints, Resume, Saved};
pub use load::{find_weights, px_of_ms, LoadOptions, StableDiffusion, SPECTROGRAM_FILE};

/// Text conditioning of a batch: the prompt's embeddings and, for guidance,
/// the negative (or empty) prompt's.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// `[batch, tokens, dim]`.
    pub cond: Tensor,
    /// `[batch, tokens, dim]`; `None` runs without guidance.
    pub uncond: Option<Tensor>,
}

impl Conditioning {
    /// Linear interpolation between two conditionings (riffusion's
    /// interpolation of text embeddings).
    pub fn lerp(&self, other: &Conditioning, alpha: f64) -> Result<Conditioning> {
        let mix = |a: &Tensor, b: &Tensor| -> Result<Tensor> {
            ((a * (1.0 - alpha)).and_then(|x| x + (b * alpha)?)).map_err(terr("interpolating text"))
        };
        Ok(Conditioning {
            cond: mix(&self.cond, &other.cond)?,
            uncond: match (&self.uncond, &other.uncond) {
                (Some(a), Some(b)) => Some(mix(a, b)?),
                _ => None,
            },
        })
    }

    /// The same conditioning repeated for `batch` samples.
    pub fn repeat(&self, batch: usize) -> Result<Conditioning> {
        let rep = |t: &Tensor| t.repeat((batch, 1, 1)).map_err(terr("batching text"));
        Ok(Conditioning {
            cond: rep(&self.cond)?,
            uncond: self.uncond.as_ref().map(rep).transpose()?,
        })
    }
}

/// What to keep while repainting: latents outside the mask follow the
/// original (noised to the current level each step, exact at the end).
#[derive(Debug, Clone)]
pub struct Inpaint {
    /// Clean (scaled) latents of the original, `[batch, 4, h, w]`.
    pub original: Tensor,
    /// 1 where the original is kept, 0 where it is repainted, `[batch, 1,
    /// h, w]` (or broadcastable).
    pub keep: Tensor,
    /// The noise used to bring the original to each step's level.
    pub noise: Tensor,
}

/// Sampler settings of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleSettings {
    /// Which sampler.
    pub sampler: SamplerKind,
    /// Inference steps.
    pub steps: usize,
    /// Classifier-free guidance scale; 1 or less disables guidance.
    pub guidance: f64,
}

/// How one sampling run samples and what it draws from: the sampler
/// settings, the noise source (initial noise, ancestral noise, VAE
/// posterior samples, in that order of use) and the progress sink.
pub struct SamplingRun<'a> {
    /// Sampler, steps and guidance.
    pub settings: &'a SampleSettings,
    /// Where every random draw comes from.
    pub noise: &'a mut dyn NoiseSource,
    /// Receives the denoising steps; returning `false` cancels.
    pub progress: &'a dyn Progress,
    /// Where the denoising loop saves its state and picks it up again
    /// (`None`: nothing is saved).
    pub resume: Option<Resume<'a>>,
}

impl<'a> SamplingRun<'a> {
    /// A run that saves nothing.
    pub fn new(
        settings: &'a SampleSettings,
        noise: &'a mut dyn NoiseSource,
        progress: &'a dyn Progress,
    ) -> Self {
        Self {
            settings,
            noise,
            progress,
            resume: None,
        }
    }
}

/// How much of an image img2img re-generates, and what it keeps.
#[derive(Debug, Clone, Copy)]
pub struct Repaint<'a> {
    /// Share of the schedule re-run: 0 keeps the image, 1 ignores it.
    pub strength: f64,
    /// 1 where the original is kept, 0 where it is repainted (latent size
    /// for img2img, pixels for audio-to-audio); `None` repaints all.
    pub keep: Option<&'a Tensor>,
}

impl StableDiffusion {
    /// Embeds one prompt as `[1, tokens, dim]`; reports truncation through
    /// `progress`.
    pub fn embed_prompt(&self, prompt: &str, progress: &dyn Progress) -> Result<Tensor> {
        let tokens = self.tokenizer.encode(prompt)?;
        if tokens.truncated > 0 {
            progress.message(&format!(
                "warning: prompt longer than {} tokens; the last {} were dropped",
                self.tokenizer.max_len(),
                tokens.truncated
            ));
        }
        let ids = Tensor::new(tokens.ids.as_slice(), self.text_encoder.device())
            .and_then(|t| t.unsqueeze(0))
            .map_err(terr("token ids"))?;
        self.text_encoder
            .forward(&ids)
            .map_err(terr("text encoder"))
    }

    /// The conditioning for `prompt` against `negative` (the empty prompt
    /// when none), or without an unconditional branch when `guidance <= 1`.
    pub fn conditioning(
        &self,
        prompt: &str,
        negative: Option<&str>,
        guidance: f64,
        progress: &dyn Progress,
    ) -> Result<Conditioning> {
        let cond = self.embed_prompt(prompt, progress)?;
        let uncond = if guidance > 1.0 {
            Some(self.embed_prompt(negative.unwrap_or(""), progress)?)
        } else {
            None
        };
        Ok(Conditioning { cond, uncond })
    }

    /// Latent cells per image pixel side.
    pub fn vae_scale(&self) -> usize {
        self.vae.config().downscale()
    }

    /// The latent shape of a `batch` of `width_px x height_px` images.
    pub fn latent_shape(
        &self,
        batch: usize,
        width_px: usize,
        height_px: usize,
    ) -> Result<[usize; 4]> {
        let s = self.vae_scale();
        if width_px == 0 || height_px == 0 || width_px % s != 0 || height_px % s != 0 {
            return Err(Error::param(
                "width",
                format!(
                    "image sides must be positive multiples of {s}, got {width_px}x{height_px}"
                ),
            ));
        }
        Ok([
            batch,
            self.vae.config().latent_channels,
            height_px / s,
            width_px / s,
        ])
    }

    /// Runs `sampler` from position `start` of its timesteps. `latents`
    /// must already be at that position's noise level.
    pub fn denoise(
        &self,
        sampler: &mut dyn Sampler,
        latents: Tensor,
        start: usize,
        text: &Conditioning,
        inpaint: Option<&Inpaint>,
        run: &mut SamplingRun,
    ) -> Result<Tensor> {
        denoise_with(&self.unet, sampler, latents, start, text, inpaint, run)
    }

    /// Text to latents: from `init` (unit-variance noise, e.g. from
    /// `--init-latents`) or from `noise`, over the sampler's full schedule.
    pub fn txt2img(
        &self,
        run: &mut SamplingRun,
        text: &Conditioning,
        shape: [usize; 4],
        init: Option<Tensor>,
    ) -> Result<Tensor> {
        let settings = run.settings;
        let mut sampler = settings.sampler.build(&self.scheduler, settings.steps)?;
        let device = self.unet.device().clone();
        let init = match init {
            Some(t) => {
                if t.dims() != shape {
                    return Err(Error::param(
                        "init-latents",
                        format!(
                            "tensor `latents` has shape {:?}, expected {:?}",
                            t.dims(),
                            shape
                        ),
                    ));
                }
                t.to_device(&device).map_err(terr("init latents"))?
            }
            None => run.noise.noise(&shape, &device)?,
        };
        let latents = (init
            .to_dtype(DType::F32)
            .and_then(|x| x * sampler.init_noise_sigma()))
        .map_err(terr("init latents"))?;
        let text = text.repeat_to(shape[0])?;
        run.progress
            .start(sampler.timesteps().len() as u64, "denoising");
        let out = self.denoise(sampler.as_mut(), latents, 0, &text, None, run);
        run.progress.finish();
        out
    }

    /// Image to latents: the image (`[batch, 3, H, W]` in [-1, 1]) is
    /// encoded, noised to `strength` of the schedule and denoised; with
    /// `keep` (`[batch, 1, h, w]` at latent size, 1 = keep) the kept part
    /// follows the original. Noise is drawn in diffusers' order: the VAE
    /// posterior sample, then the initial noise.
    pub fn img2img(
        &self,
        run: &mut SamplingRun,
        text: &Conditioning,
        image: &Tensor,
        repaint: Repaint,
    ) -> Result<Tensor> {
        let original = self.encode_image(image, run.noise)?;
        let steps = self.img2img_steps(run.settings, repaint.strength)?;
        run.progress.start(steps as u64, "denoising");
        let out = self.img2img_latents(run, text, &original, repaint);
        run.progress.finish();
        out
    }

    /// How many UNet steps an img2img run at `strength` takes.
    pub fn img2img_steps(&self, settings: &SampleSettings, strength: f64) -> Result<usize> {
        let n = settings
            .sampler
            .build(&self.scheduler, settings.steps)?
            .timesteps()
            .len();
        let init_steps =
            ((settings.steps as f64 * strength.clamp(0.0, 1.0)) as usize).min(settings.steps);
        Ok(n.saturating_sub(settings.steps - init_steps))
    }

    /// [`Self::img2img`] from already encoded, scaled latents; counts steps
    /// on `progress` without starting or finishing it.
    pub fn img2img_latents(
        &self,
        run: &mut SamplingRun,
        text: &Conditioning,
        original: &Tensor,
        repaint: Repaint,
    ) -> Result<Tensor> {
        let (settings, strength, keep) = (run.settings, repaint.strength, repaint.keep);
        if !(0.0..=1.0).contains(&strength) || strength.is_nan() {
            return Err(Error::param(
                "strength",
                format!("must be in [0, 1], got {strength}"),
            ));
        }
        let mut sampler = settings.sampler.build(&self.scheduler, settings.steps)?;
        let init_steps = ((settings.steps as f64 * strength) as usize).min(settings.steps);
        let start = settings.steps - init_steps;
        let n = sampler.timesteps().len();
        let shape = original.dims().to_vec();
        let fresh = run.noise.noise(&shape, original.device())?;
        let text = text.repeat_to(shape[0])?;
        if start >= n {
            return Ok(original.clone());
        }
        let latents = sampler
            .add_noise(original, &fresh, start)
            .map_err(terr("img2img noise"))?;
        let inpaint = keep.map(|k| Inpaint {
            original: original.clone(),
            keep: k.clone(),
            noise: fresh.clone(),
        });
        self.denoise(
            sampler.as_mut(),
            latents,
            start,
            &text,
            inpaint.as_ref(),
            run,
        )
    }

    /// Encodes images in [-1, 1] to scaled latents, sampling the posterior
    /// with noise from `noise`.
    pub fn encode_image(&self, image: &Tensor, noise: &mut dyn NoiseSource) -> Result<Tensor> {
        let image = image.to_device(self.vae.device()).map_err(terr("image"))?;
        let dist = self.vae.encode(&image).map_err(terr("VAE encode"))?;
        let eps = noise.noise(dist.mean.dims(), dist.mean.device())?;
        dist.sample_with(&eps)
            .and_then(|z| z.to_dtype(DType::F32))
            .and_then(|z| z * self.vae.config().scaling_factor)
            .map_err(terr("VAE encode"))
    }

    /// Decodes scaled latents to images in [-1, 1], `[batch, 3, H, W]`.
    pub fn decode_latents(&self, latents: &Tensor) -> Result<Tensor> {
        let z = (latents / self.vae.config().scaling_factor).map_err(terr("VAE decode"))?;
        self.vae
            .decode(&z)
            .and_then(|x| x.to_dtype(DType::F32))
            .map_err(terr("VAE decode"))
    }
}

impl Conditioning {
    fn repeat_to(&self, batch: usize) -> Result<Conditioning> {
        let b = self.cond.dim(0).map_err(terr("text"))?;
        if b == batch {
            Ok(self.clone())
        } else if b == 1 {
            self.repeat(batch)
        } else {
            Err(Error::param(
                "batch",
                format!("text conditioning for {b} samples, latents for {batch}"),
            ))
        }
    }
}

/// The sampling loop with classifier-free guidance and optional
/// inpainting: runs `sampler` from position `start` of its timesteps;
/// `latents` must already be at that position's noise level. Guidance is
/// the run's.
pub fn denoise_with(
    unet: &Unet,
    sampler: &mut dyn Sampler,
    latents: Tensor,
    start: usize,
    text: &Conditioning,
    inpaint: Option<&Inpaint>,
    run: &mut SamplingRun,
) -> Result<Tensor> {
    let mut latents = latents.to_dtype(DType::F32).map_err(terr("latents"))?;
    let model = GuidedUnet::new(unet, text, run.settings.guidance);
    let n = sampler.timesteps().len();
    let mut start = start;
    if let Some(resume) = run.resume {
        let shape = latents.dims().to_vec();
        let device = latents.device().clone();
        if let Some(r) = resume.restore_step(sampler, run.noise, &shape, &device)? {
            run.progress.message(&format!(
                "resuming at denoising step {} of {n}",
                r.next_step + 1
            ));
            run.progress
                .advance(r.next_step.saturating_sub(start) as u64);
            (start, latents) = (r.next_step.max(start), r.latents);
        }
    }
    for i in start..n {
        let input = sampler
            .scale_model_input(&latents, i)
            .map_err(terr("UNet input"))?;
        let eps = model.eps(&input, sampler.timesteps()[i])?;
        latents = sampler.step(&eps, i, &latents, run.noise)?;
        if let Some(p) = inpaint {
            let original = if i + 1 < n {
                sampler
                    .add_noise(&p.original, &p.noise, i + 1)
                    .map_err(terr("mask"))?
            } else {
                p.original.clone()
            };
            latents = blend(&original, &latents, &p.keep).map_err(terr("mask"))?;
        }
        check_finite(&latents, i)?;
        let cancelled = !run.progress.advance(1);
        if let Some(resume) = run.resume.filter(|r| cancelled || r.store.step_due()) {
            resume.save_step(i + 1, &latents, sampler, run.noise)?;
        }
        if cancelled {
            return Err(Error::Cancelled);
        }
    }
    Ok(latents)
}

/// The UNet with classifier-free guidance: the noise prediction for
/// latents already scaled for the sampler's current step.
pub(crate) struct GuidedUnet<'a> {
    unet: &'a Unet,
    text: &'a Conditioning,
    guidance: f64,
}

impl<'a> GuidedUnet<'a> {
    /// Guidance applies when `text` has an unconditional embedding and
    /// `guidance` is above 1. `text` holds one embedding or one per sample.
    pub(crate) fn new(unet: &'a Unet, text: &'a Conditioning, guidance: f64) -> Self {
        Self {
            unet,
            text,
            guidance,
        }
    }

    /// The guided noise prediction (f32) for `input` at timestep `t`.
    pub(crate) fn eps(&self, input: &Tensor, t: f64) -> Result<Tensor> {
        let b = input.dim(0).map_err(terr("latents"))?;
        let text = self.text.repeat_to(b)?;
        let (x, context, guided) = match &text.uncond {
            Some(u) if self.guidance > 1.0 => (
                Tensor::cat(&[input, input], 0).map_err(terr("UNet input"))?,
                Tensor::cat(&[u, &text.cond], 0).map_err(terr("text"))?,
                true,
            ),
            _ => (input.clone(), text.cond.clone(), false),
        };
        let dtype = self.unet.dtype();
        let (x, context) = x
            .to_dtype(dtype)
            .and_then(|x| Ok((x, context.to_dtype(dtype)?)))
            .map_err(terr("UNet input"))?;
        let ts = Tensor::new(&[t as f32], input.device()).map_err(terr("timestep"))?;
        let out = self
            .unet
            .forward(&x, &ts, &context)
            .and_then(|o| o.to_dtype(DType::F32))
            .map_err(terr("UNet"))?;
        if !guided {
            return Ok(out);
        }
        let u = out.narrow(0, 0, b).map_err(terr("guidance"))?;
        let c = out.narrow(0, b, b).map_err(terr("guidance"))?;
        ((&c - &u).and_then(|d| d * self.guidance))
            .and_then(|d| u + d)
            .map_err(terr("guidance"))
    }
}

fn blend(original: &Tensor, generated: &Tensor, keep: &Tensor) -> candle_core::Result<Tensor> {
    let keep = keep.to_dtype(DType::F32)?;
    let inv = (1.0 - &keep)?;
    original.broadcast_mul(&keep)? + generated.broadcast_mul(&inv)?
}

pub(crate) fn check_finite(latents: &Tensor, step: usize) -> Result<()> {
    let s = latents
        .abs()
        .and_then(|a| a.max_all())
        .and_then(|m| m.to_scalar::<f32>())
        .map_err(terr("latents"))?;
    if s.is_finite() {
        Ok(())
    } else {
        Err(Error::Numeric {
            context: format!("denoising step {}", step + 1),
            reason: "latents became NaN or infinite (try f32 or bf16 instead of f16)".into(),
        })
    }
}

/// Spherical interpolation of two noise tensors (riffusion's slerp, in
/// f64, falling back to linear when they are nearly parallel).
pub fn slerp(alpha: f64, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let run = || -> candle_core::Result<Tensor> {
        let va: Vec<f64> = a.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let vb: Vec<f64> = b.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let na = va.iter().map(|x| x * x).sum::<f64>().sqrt();
        let nb = vb.iter().map(|x| x * x).sum::<f64>().sqrt();
        let dot: f64 = va.iter().zip(&vb).map(|(x, y)| x * y / (na * nb)).sum();
        let out: Vec<f32> = if dot.abs() > 0.9995 {
            va.iter()
                .zip(&vb)
                .map(|(x, y)| ((1.0 - alpha) * x + alpha * y) as f32)
                .collect()
        } else {
            let theta0 = dot.acos();
            let theta = theta0 * alpha;
            let s0 = (theta0 - theta).sin() / theta0.sin();
            let s1 = theta.sin() / theta0.sin();
            va.iter()
                .zip(&vb)
                .map(|(x, y)| (s0 * x + s1 * y) as f32)
                .collect()
        };
        Tensor::from_vec(out, a.shape(), a.device())
    };
    run().map_err(terr("slerp"))
}

/// Decoded images (`[batch, 3, H, W]`, [-1, 1]) to 8-bit RGB, as diffusers'
/// `numpy_to_pil` rounds them.
pub fn images_to_rgb(images: &Tensor) -> Result<Vec<SpectrogramImage>> {
    let (b, c, h, w) = images.dims4().map_err(terr("images"))?;
    if c != 3 {
        return Err(Error::Numeric {
            context: "images".into(),
            reason: format!("expected 3 channels, got {c}"),
        });
    }
    let x = ((images / 2.0).and_then(|x| x + 0.5))
        .and_then(|x| x.clamp(0f32, 1f32))
        .and_then(|x| x.permute((0, 2, 3, 1)))
        .and_then(|x| x.flatten_all())
        .and_then(|x| x.to_vec1::<f32>())
        .map_err(terr("images"))?;
    Ok((0..b)
        .map(|i| SpectrogramImage {
            width: w,
            height: h,
            rgb: x[i * h * w * 3..(i + 1) * h * w * 3]
                .iter()
                .map(|&v| crate::diffusion::schedulers::round_even((v * 255.0) as f64) as u8)
                .collect(),
        })
        .collect())
}

/// 8-bit RGB images to a `[batch, 3, H, W]` tensor in [-1, 1].
pub fn rgb_to_images(images: &[&SpectrogramImage], device: &Device) -> Result<Tensor> {
    let Some(first) = images.first() else {
        return Err(Error::param("image", "no image given"));
    };
    let (h, w) = (first.height, first.width);
    let mut data = Vec::with_capacity(images.len() * h * w * 3);
    for im in images {
        if im.height != h || im.width != w {
            return Err(Error::param(
                "image",
                format!(
                    "images of different sizes: {}x{} and {}x{}",
                    w, h, im.width, im.height
                ),
            ));
        }
        data.extend(im.rgb.iter().map(|&v| v as f32 / 127.5 - 1.0));
    }
    Tensor::from_vec(data, (images.len(), h, w, 3), device)
        .and_then(|t| t.permute((0, 3, 1, 2)))
        .and_then(|t| t.contiguous())
        .map_err(terr("images"))
}
