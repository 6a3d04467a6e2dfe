//! What `compare` (and any other caller that wants "audio for this prompt
//! and seed") needs from a generator, whatever its family: a loaded
//! Stable Diffusion pipeline (spectrogram diffusion, audio by Griffin-Lim)
//! or a MusicGen checkpoint (tokens, audio by EnCodec).

use candle_core::{DType, Device};
use serde_json::json;

use crate::audio::Audio;
use crate::diffusion::checkpoint::px_of_ms;
use crate::diffusion::defaults::plan_tonic;
use crate::diffusion::longform::Tiling;
use crate::diffusion::pipeline::images_to_rgb;
use crate::diffusion::{SampleSettings, SeededNoise, StableDiffusion};
use crate::error::{Error, Result};
use crate::musicgen::{codes_to_audio, generate_long, GenerateSettings, MusicGen, Windowing};
use crate::progress::Progress;
use crate::spectrogram::image::DEFAULT_MAX_VALUE;
use crate::spectrogram::{
    InversionSettings, LoadedImage, SpectrogramConverter, SpectrogramImage, SpectrogramParams,
};

/// One clip to make.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The caption (MusicGen: empty generates unconditionally).
    pub prompt: &'a str,
    /// Seed of every random draw.
    pub seed: u64,
    /// Length, seconds.
    pub seconds: f64,
    /// The tonic asked for, Hz. A diffusion model with a canonical tonic
    /// (`ragafusion.json`) transposes its spectrogram to it (a shruti
    /// phrase in the caption is used when this is `None`); other models
    /// get the tonic through the caption only.
    pub tonic_hz: Option<f64>,
}

/// A generated clip.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The audio.
    pub audio: Audio,
    /// The spectrogram the model made, for spectrogram models.
    pub image: Option<(SpectrogramImage, SpectrogramParams)>,
}

/// A text-to-audio generator.
pub trait Generator {
    /// The model family, e.g. `diffusion`.
    fn family(&self) -> &'static str;
    /// The settings that shape its output, for reports.
    fn settings(&self) -> serde_json::Value;
    /// Makes one clip.
    fn generate(&self, request: &Request, progress: &dyn Progress) -> Result<Generated>;
}

/// A device name (`cpu`, `cuda`, `cuda:N`) and a dtype name (`f32`,
/// `f16`, `bf16`); bf16 is refused on the CPU, which has no bf16 matrix
/// product in candle.
pub fn device_and_dtype(device: &str, dtype: &str) -> Result<(Device, DType)> {
    let device = match device {
        "cpu" => Device::Cpu,
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map_err(|_| Error::param("device", format!("`{s}`: expected cuda:N")))?,
                None => 0,
            };
            Device::new_cuda(ordinal).map_err(|e| {
                Error::param(
                    "device",
                    format!("`{s}`: {e} (is this a build with --features cuda?)"),
                )
            })?
        }
        other => {
            return Err(Error::param(
                "device",
                format!("`{other}`: expected cpu, cuda or cuda:N"),
            ))
        }
    };
    let dtype = match dtype {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => {
            return Err(Error::param(
                "dtype",
                format!("`{other}`: expected f32, f16 or bf16"),
            ))
        }
    };
    if dtype == DType::BF16 && device.is_cpu() {
        return Err(Error::param(
            "dtype",
            "bf16 needs a CUDA device (candle has no bf16 matrix product on the CPU); use f32 or f16",
        ));
    }
    Ok((device, dtype))
}

fn check_seconds(seconds: f64) -> Result<()> {
    if seconds > 0.0 && seconds.is_finite() {
        Ok(())
    } else {
        Err(Error::param(
            "seconds",
            format!("{seconds} is not a positive length"),
        ))
    }
}

/// Spectrogram diffusion: sample an image, invert it to audio.
#[derive(Debug)]
pub struct DiffusionGenerator {
    /// The pipeline.
    pub model: StableDiffusion,
    /// Spectrogram parameters of its images.
    pub params: SpectrogramParams,
    /// Sampler, steps and guidance.
    pub sampling: SampleSettings,
    /// Negative prompt (default: the empty prompt).
    pub negative: Option<String>,
    /// Image-to-audio settings (the seed is the request's).
    pub inversion: InversionSettings,
    /// Columns shared by consecutive clips past 5.12 s, milliseconds.
    pub overlap_ms: f64,
}

impl DiffusionGenerator {
    /// Wraps a loaded pipeline with its trained spectrogram parameters.
    pub fn new(model: StableDiffusion, sampling: SampleSettings) -> Result<Self> {
        let params = model.spectrogram_params()?;
        model.height_px(&params)?;
        Ok(Self {
            model,
            params,
            sampling,
            negative: None,
            inversion: InversionSettings::default(),
            overlap_ms: 1280.0,
        })
    }
}

impl Generator for DiffusionGenerator {
    fn family(&self) -> &'static str {
        "diffusion"
    }

    fn settings(&self) -> serde_json::Value {
        json!({
            "scheduler": self.sampling.sampler.name(),
            "steps": self.sampling.steps,
            "guidance": self.sampling.guidance,
            "negative_prompt": self.negative,
            "quality": format!("{:?}", self.inversion.quality).to_lowercase(),
            "num_mel_bins": self.params.num_mel_bins,
        })
    }

    fn generate(&self, request: &Request, progress: &dyn Progress) -> Result<Generated> {
        check_seconds(request.seconds)?;
        let sd = &self.model;
        let scale = sd.vae_scale();
        let h = sd.height_px(&self.params)?;
        let clip_px = sd.clip_px(&self.params);
        let want_px = px_of_ms(&self.params, request.seconds * 1000.0).max(1);
        let tonic = request
            .tonic_hz
            .filter(|_| sd.defaults.canonical_tonic_hz.is_some());
        let plan = plan_tonic(&sd.defaults, request.prompt, tonic)?;
        let text = sd.conditioning(
            &plan.prompt,
            self.negative.as_deref(),
            self.sampling.guidance,
            progress,
        )?;
        let mut noise = SeededNoise::new(request.seed);
        let image = if want_px > clip_px {
            let tiling = Tiling {
                clip_px,
                overlap_px: (px_of_ms(&self.params, self.overlap_ms) / scale) * scale,
            };
            let total = want_px.div_ceil(scale) * scale;
            sd.generate_long(
                &self.sampling,
                &text,
                h,
                total,
                tiling,
                &mut noise,
                progress,
            )?
        } else {
            let shape = sd.latent_shape(1, clip_px, h)?;
            let latents = sd.txt2img(&self.sampling, &text, shape, None, &mut noise, progress)?;
            sd.decode_latents(&latents)?
        };
        let mut rgb = images_to_rgb(&image)?.remove(0);
        if rgb.width > want_px {
            rgb = crop_columns(&rgb, want_px);
        }
        let rgb = plan.apply(rgb, &self.params)?;
        let loaded = LoadedImage {
            image: rgb.clone(),
            params: self.params.clone(),
            max_value: Some(DEFAULT_MAX_VALUE),
            has_exif: true,
            exif: Default::default(),
        };
        let inversion = InversionSettings {
            seed: request.seed,
            ..self.inversion
        };
        let audio = SpectrogramConverter::new(self.params.clone())?.audio_from_image(
            &loaded,
            &inversion.options(&self.params),
            progress,
        )?;
        Ok(Generated {
            audio,
            image: Some((rgb, self.params.clone())),
        })
    }
}

/// The first `width` columns of an image.
fn crop_columns(image: &SpectrogramImage, width: usize) -> SpectrogramImage {
    let rgb = (0..image.height)
        .flat_map(|y| {
            let row = y * image.width * 3;
            image.rgb[row..row + width * 3].iter().copied()
        })
        .collect();
    SpectrogramImage {
        width,
        height: image.height,
        rgb,
    }
}

/// MusicGen: text to codec tokens, tokens to audio.
#[derive(Debug)]
pub struct MusicgenGenerator {
    /// The checkpoint.
    pub model: MusicGen,
    /// Guidance and token sampling (the seed is the request's).
    pub settings: GenerateSettings,
    /// Window and stride for clips past the model's context.
    pub windowing: Windowing,
}

impl MusicgenGenerator {
    /// Wraps a loaded checkpoint with audiocraft's windowing.
    pub fn new(model: MusicGen, settings: GenerateSettings) -> Self {
        let windowing = Windowing::at_frame_rate(model.frame_rate());
        Self {
            model,
            settings,
            windowing,
        }
    }
}

impl Generator for MusicgenGenerator {
    fn family(&self) -> &'static str {
        "musicgen"
    }

    fn settings(&self) -> serde_json::Value {
        let s = &self.settings.sampling;
        json!({
            "guidance": self.settings.guidance,
            "greedy": s.greedy,
            "top_k": s.top_k,
            "top_p": s.top_p,
            "temperature": s.temperature,
        })
    }

    fn generate(&self, request: &Request, progress: &dyn Progress) -> Result<Generated> {
        check_seconds(request.seconds)?;
        let m = &self.model;
        let frames = ((request.seconds * m.frame_rate() as f64).round() as usize).max(1);
        let unconditional = request.prompt.trim().is_empty();
        let memory = if unconditional {
            m.unconditional_memory(1)?
        } else {
            m.text_memory(&[request.prompt])?
        };
        let settings = GenerateSettings {
            seed: request.seed,
            guidance: if unconditional {
                1.0
            } else {
                self.settings.guidance
            },
            ..self.settings
        };
        let prompt = vec![Vec::new(); m.config.decoder.num_codebooks];
        let out = generate_long(
            &m.decoder,
            &memory,
            &prompt,
            frames,
            self.windowing,
            &settings,
            progress,
        )?;
        Ok(Generated {
            audio: codes_to_audio(m, &out.codes)?,
            image: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cropping_keeps_the_first_columns_of_every_row() {
        let image = SpectrogramImage {
            width: 3,
            height: 2,
            rgb: (0..18).collect(),
        };
        let c = crop_columns(&image, 2);
        assert_eq!((c.width, c.height), (2, 2));
        assert_eq!(c.rgb, vec![0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14]);
    }

    #[test]
    fn lengths_must_be_positive() {
        assert!(check_seconds(5.12).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(check_seconds(bad).is_err());
        }
    }
}
