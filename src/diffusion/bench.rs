//! A sampling benchmark with random weights of any size (SD 1.5 by
//! default): the UNet loop and the VAE decode of a text-to-image run,
//! timed, with peak memory.
//!
//! Weights come from a seeded generator keyed by tensor name, so the run
//! needs no checkpoint and allocates only what the model holds.

use std::time::Instant;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde::Serialize;

use super::config::{UnetConfig, VaeConfig};
use super::pipeline::{Conditioning, SampleSettings};
use super::schedulers::{NoiseSource, SamplerKind, SeededNoise};
use super::unet::Unet;
use super::vae::Vae;
use crate::choice::Choice;
use crate::error::terr;
use crate::error::{Error, Result};
use crate::memory::peak_rss_mib;
use crate::nn::random::RandomWeights;
use crate::progress::Progress;

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The UNet architecture.
    pub unet: UnetConfig,
    /// The VAE architecture.
    pub vae: VaeConfig,
    /// Sampler, steps and guidance (guidance > 1 runs a batch of two).
    pub settings: SampleSettings,
    /// Image width in pixels.
    pub width_px: usize,
    /// Image height in pixels.
    pub height_px: usize,
    /// UNet dtype (the VAE runs in f32).
    pub dtype: DType,
    /// Where to run.
    pub device: Device,
    /// Attention slice size (`None`: automatic).
    pub attention_slice: Option<usize>,
}

/// Timings and memory of one benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// UNet parameters.
    pub unet_parameters: usize,
    /// Seconds to build the models with random weights.
    pub build_s: f64,
    /// Seconds of the whole denoising loop.
    pub denoise_s: f64,
    /// Denoising loop seconds per step.
    pub s_per_step: f64,
    /// Steps per second.
    pub steps_per_s: f64,
    /// Seconds of the VAE decode.
    pub decode_s: f64,
    /// Denoising plus decode.
    pub total_s: f64,
    /// Peak resident memory of the process (Linux VmHWM), MiB.
    pub peak_rss_mib: Option<f64>,
}

/// Builds random-weight models and times a text-to-image run (random text
/// embeddings stand in for the text encoder, which runs once per prompt).
pub fn run_benchmark(cfg: &BenchConfig, progress: &dyn Progress) -> Result<BenchReport> {
    let t0 = Instant::now();
    let weights = RandomWeights { seed: 0 };
    let mut unet = Unet::new(&weights.var_builder(cfg.dtype, &cfg.device), &cfg.unet)
        .map_err(terr("building the UNet"))?;
    unet.set_attention_slice(cfg.attention_slice)?;
    let vae = Vae::new(&weights.var_builder(DType::F32, &cfg.device), &cfg.vae)
        .map_err(terr("building the VAE"))?;
    let unet_parameters = count_unet_parameters(&cfg.unet)?;
    let build_s = t0.elapsed().as_secs_f64();

    let scale = cfg.vae.downscale();
    if cfg.width_px % scale != 0 || cfg.height_px % scale != 0 {
        return Err(Error::param(
            "width",
            format!("image sides must be multiples of {scale}"),
        ));
    }
    let shape = [
        1,
        cfg.unet.in_channels,
        cfg.height_px / scale,
        cfg.width_px / scale,
    ];
    let mut noise = SeededNoise::new(1);
    let ctx = noise.noise(&[1, 77, cfg.unet.cross_attention_dim], &cfg.device)?;
    let text = Conditioning {
        cond: ctx.clone(),
        uncond: (cfg.settings.guidance > 1.0).then(|| ctx.clone()),
    };
    let mut sampler = cfg.settings.sampler.build(
        &super::schedulers::SchedulerConfig::sd15(),
        cfg.settings.steps,
    )?;
    let latents = noise.noise(&shape, &cfg.device)?;
    let steps = sampler.timesteps().len();
    progress.start(steps as u64, "denoising");
    let t0 = Instant::now();
    let mut run = super::pipeline::SamplingRun::new(&cfg.settings, &mut noise, progress);
    let latents =
        super::pipeline::denoise_with(&unet, sampler.as_mut(), latents, 0, &text, None, &mut run)?;
    sync(&latents)?;
    let denoise_s = t0.elapsed().as_secs_f64();
    progress.finish();
    let t0 = Instant::now();
    let image = vae
        .decode(&(latents / cfg.vae.scaling_factor).map_err(terr("decode"))?)
        .map_err(terr("VAE decode"))?;
    sync(&image)?;
    let decode_s = t0.elapsed().as_secs_f64();
    Ok(BenchReport {
        unet_parameters,
        build_s,
        denoise_s,
        s_per_step: denoise_s / steps as f64,
        steps_per_s: steps as f64 / denoise_s,
        decode_s,
        total_s: denoise_s + decode_s,
        peak_rss_mib: peak_rss_mib(),
    })
}

/// Waits for queued device work by reading one value back.
fn sync(t: &Tensor) -> Result<()> {
    t.flatten_all()
        .and_then(|f| f.narrow(0, 0, 1))
        .and_then(|f| f.to_dtype(DType::F32))
        .and_then(|f| f.to_vec1::<f32>())
        .map(|_| ())
        .map_err(terr("sync"))
}

/// Parameter count of a UNet config (no memory is allocated for weights).
pub fn count_unet_parameters(config: &UnetConfig) -> Result<usize> {
    count_parameters(|vb| Unet::new(vb, config).map(|_| ()))
}

/// Parameter count of whatever `build` constructs from a `VarBuilder`: the
/// counting backend hands out one-element tensors broadcast to the asked
/// shapes.
pub fn count_parameters(
    build: impl FnOnce(&VarBuilder) -> candle_core::Result<()>,
) -> Result<usize> {
    let counter = Counter::default();
    let vb = VarBuilder::from_backend(Box::new(counter.clone()), DType::F32, Device::Cpu);
    build(&vb).map_err(terr("counting parameters"))?;
    Ok(counter.total())
}

#[derive(Debug, Clone, Default)]
struct Counter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Counter {
    fn total(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl SimpleBackend for Counter {
    fn get(
        &self,
        shape: Shape,
        _name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
            .fetch_add(shape.elem_count(), std::sync::atomic::Ordering::Relaxed);
        Tensor::zeros(1, dtype, dev)?.broadcast_as(shape)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::Msg(format!("no tensor `{name}`")))
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        false
    }
}

/// What `bench-sd` times: SD 1.5's architecture with random weights.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdBench {
    /// Denoising steps.
    pub steps: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Sampler.
    pub scheduler: SamplerKind,
    /// Guidance scale; above 1 the UNet runs on a batch of two.
    pub guidance: f64,
    /// `cpu`, or `cuda` / `cuda:N`.
    pub device: String,
    /// UNet precision: f32, f16 or bf16.
    pub dtype: String,
    /// Attention slice size (batch x heads at a time); none: automatic.
    pub attention_slice: Option<usize>,
}

/// The `bench-sd` run. Returns the JSON record (settings, machine,
/// report) and a one-line summary.
pub fn bench_sd15(job: &SdBench, progress: &dyn Progress) -> Result<(serde_json::Value, String)> {
    let settings = SampleSettings {
        sampler: job.scheduler,
        steps: job.steps,
        guidance: job.guidance,
    };
    let (width_px, height_px, device, dtype) = (job.width, job.height, &job.device, &job.dtype);
    let (dev, dt) = crate::engine::device_and_dtype(device, dtype)?;
    let cfg = BenchConfig {
        unet: UnetConfig::sd15(),
        vae: VaeConfig::sd15(),
        settings,
        width_px,
        height_px,
        dtype: dt,
        device: dev,
        attention_slice: job.attention_slice,
    };
    let report = run_benchmark(&cfg, progress)?;
    let summary = format!(
        "{} steps in {:.1} s ({:.2} s/step), VAE decode {:.1} s, peak RSS {:.0} MiB",
        settings.steps,
        report.denoise_s,
        report.s_per_step,
        report.decode_s,
        report.peak_rss_mib.unwrap_or(f64::NAN)
    );
    let record = serde_json::json!({
        "model": "SD 1.5 architecture, random weights",
        "width_px": width_px,
        "height_px": height_px,
        "steps": settings.steps,
        "scheduler": settings.sampler.name(),
        "guidance": settings.guidance,
        "device": device,
        "dtype": dtype,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "version": env!("CARGO_PKG_VERSION"),
        "report": report,
    });
    Ok((record, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;

    #[test]
    fn sd15_parameter_counts_match_the_published_models() {
        let n = count_unet_parameters(&UnetConfig::sd15()).unwrap();
        // 859,520,964 for runwayml/stable-diffusion-v1-5's UNet
        assert_eq!(n, 859_520_964);
        // 83,653,863 for its VAE, 123,060,480 for its CLIP text encoder
        let vae = count_parameters(|vb| Vae::new(vb, &VaeConfig::sd15()).map(|_| ())).unwrap();
        assert_eq!(vae, 83_653_863);
        let clip = count_parameters(|vb| {
            super::super::clip::ClipTextModel::new(
                vb,
                &super::super::config::ClipTextConfig::sd15(),
            )
            .map(|_| ())
        })
        .unwrap();
        assert_eq!(clip, 123_060_480);
    }

    #[test]
    fn a_small_benchmark_runs_and_reports() {
        let mut unet = UnetConfig::sd15();
        unet.block_out_channels = vec![32, 64];
        unet.down_block_types = vec!["CrossAttnDownBlock2D".into(), "DownBlock2D".into()];
        unet.up_block_types = vec!["UpBlock2D".into(), "CrossAttnUpBlock2D".into()];
        unet.cross_attention_dim = 32;
        unet.attention_head_dim = super::super::config::PerBlock::One(4);
        unet.norm_num_groups = 8;
        let mut vae = VaeConfig::sd15();
        vae.block_out_channels = vec![8, 8];
        vae.norm_num_groups = 4;
        vae.layers_per_block = 1;
        let cfg = BenchConfig {
            unet,
            vae,
            settings: SampleSettings {
                sampler: SamplerKind::Pndm,
                steps: 2,
                guidance: 7.0,
            },
            width_px: 32,
            height_px: 32,
            dtype: DType::F32,
            device: Device::Cpu,
            attention_slice: None,
        };
        let r = run_benchmark(&cfg, &NoProgress).unwrap();
        assert!(r.denoise_s > 0.0 && r.decode_s > 0.0);
        // PNDM repeats one timestep: 3 UNet calls for 2 steps
        assert!((r.s_per_step * 3.0 - r.denoise_s).abs() < 1e-9);
        assert!(r.unet_parameters > 10_000);
    }
}
