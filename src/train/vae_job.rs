//! The `train-vae` job: an autoencoder fine-tuned (or trained fresh from a
//! named config) on a spectrogram folder, resumable, exported as the base
//! pipeline with the new VAE in `OUT/final`.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::json;

use super::data::read_entries;
use super::export::{assemble_pipeline, SPECTROGRAM_FILE};
use super::run::truncate_jsonl;
use super::vae_fit::{named_vae_config, vae_config_json, VaeFitSettings, VaeTrainer};
use super::{LrSchedule, LrScheduleKind, ParamSet};
use crate::diffusion::pipeline::rgb_to_images;
use crate::diffusion::vae::Vae;
use crate::diffusion::{LoadOptions, StableDiffusion};
use crate::engine::device_and_dtype;
use crate::error::{terr, Error, Result};
use crate::fsutil::{write_bytes_atomic, write_json_atomic};
use crate::nn::weights::{write_safetensors, WeightStore};
use crate::plot::charts::line_chart;
use crate::progress::Progress;
use crate::spectrogram::{read_png, SpectrogramParams};

/// What `train-vae` is asked to do.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeJob {
    /// Training folder: images + metadata.jsonl.
    pub data: PathBuf,
    /// Run folder: state.safetensors, metrics.jsonl, loss.png,
    /// summary.json, final/.
    pub out: PathBuf,
    /// Base pipeline: its VAE is fine-tuned (or, with `config`, replaced).
    pub model: PathBuf,
    /// A named config (`tiny`) for a fresh VAE.
    pub config: Option<String>,
    /// Optimiser steps in all.
    pub max_steps: usize,
    /// Image crops per step.
    pub batch_size: usize,
    /// Learning rate (default 1e-3 for a fresh VAE, 1e-5 for fine-tuning).
    pub learning_rate: Option<f64>,
    /// Linear warm-up steps.
    pub lr_warmup_steps: u64,
    /// Weight of the KL term.
    pub kl_weight: f64,
    /// Crop width in pixels (a multiple of the VAE's down-scale factor).
    pub crop_px: usize,
    /// Clip the global gradient norm (0: off).
    pub max_grad_norm: f64,
    /// Save the run state every N steps (and at the end).
    pub checkpoint_every: usize,
    /// Continue from OUT/state.safetensors.
    pub resume: bool,
    /// Seed of initialisation, crops and posterior noise.
    pub seed: u64,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
}

/// Reads every image of a training folder as `[3, H, W]` in [-1, 1], with
/// the first image's spectrogram parameters.
fn load_images(data: &Path) -> Result<(Vec<Tensor>, SpectrogramParams)> {
    let entries = read_entries(data)?;
    let mut images = Vec::with_capacity(entries.len());
    let mut height = None;
    let mut params = None;
    for e in &entries {
        let path = data.join(&e.file_name);
        let loaded = read_png(&path)?;
        let h = loaded.image.height;
        match height {
            None => height = Some(h),
            Some(h0) if h0 != h => {
                return Err(Error::InvalidImage {
                    path,
                    reason: format!(
                        "height {h} differs from the first image's {h0}; all images need one height"
                    ),
                })
            }
            _ => {}
        }
        let t = rgb_to_images(&[&loaded.image], &Device::Cpu)?;
        images.push(t.squeeze(0).map_err(terr("training image"))?);
        params.get_or_insert(loaded.params);
    }
    Ok((images, params.unwrap_or_default()))
}

/// Loads the pipeline at `model` in f32 on the device named `device`.
pub(crate) fn load_f32(model: &Path, device: &str) -> Result<(StableDiffusion, Device)> {
    let (device, _) = device_and_dtype(device, "f32")?;
    let load = LoadOptions {
        dtype: DType::F32,
        vae_dtype: DType::F32,
        device: device.clone(),
        variant: None,
    };
    Ok((StableDiffusion::load(model, &load)?, device))
}

/// Runs the job; returns the exported pipeline's folder.
pub fn train_vae(a: &VaeJob, progress: &dyn Progress) -> Result<PathBuf> {
    let (sd, device) = load_f32(&a.model, &a.device)?;
    let (config, params) = match &a.config {
        Some(name) => {
            let config = named_vae_config(name)?;
            let params = ParamSet::fresh(name, a.seed, &device, |vb| {
                Vae::new(vb, &config).map(|_| ())
            })?;
            (config, params)
        }
        None => {
            let file = sd.component_weights("vae")?;
            let store = WeightStore::open(file, &device)?;
            let params =
                ParamSet::from_tensors(file, store.to_map(), None, DType::F32, a.seed, &device)?;
            (sd.vae.config().clone(), params)
        }
    };
    let lr = a
        .learning_rate
        .unwrap_or(if a.config.is_some() { 1e-3 } else { 1e-5 });
    let settings = VaeFitSettings {
        max_steps: a.max_steps,
        batch_size: a.batch_size,
        lr: LrSchedule {
            kind: LrScheduleKind::ConstantWithWarmup,
            base_lr: lr,
            warmup_steps: a.lr_warmup_steps,
            total_steps: a.max_steps as u64,
            cycles: 1.0,
        },
        kl_weight: a.kl_weight,
        crop_px: a.crop_px,
        max_grad_norm: a.max_grad_norm,
        seed: a.seed,
    };
    let (images, spectrogram) = load_images(&a.data)?;
    let h = images[0].dim(1).map_err(terr("training image"))?;
    if h % config.downscale() != 0 {
        return Err(Error::param(
            "data",
            format!(
                "image height {h} is not a multiple of the VAE's down-scale factor {}",
                config.downscale()
            ),
        ));
    }
    let mut trainer = VaeTrainer::new(config, params, settings, &device)?;
    crate::fsutil::create_dir(&a.out)?;
    let state = a.out.join("state.safetensors");
    let metrics_path = a.out.join("metrics.jsonl");
    if a.resume && state.is_file() {
        trainer.load_state(&state)?;
        progress.message(&format!("resumed from step {}", trainer.step));
        truncate_jsonl(&metrics_path, trainer.step as u64)?;
    } else if metrics_path.exists() {
        std::fs::remove_file(&metrics_path).map_err(|e| Error::io(&metrics_path, e))?;
    }
    // Whole-image figures on up to 16 images spread over the set.
    let probe: Vec<Tensor> = (0..images.len().min(16))
        .map(|i| images[i * images.len() / images.len().min(16)].clone())
        .collect();
    let l1_before = trainer.reconstruction_l1(&probe)?;
    progress.message(&format!(
        "training a VAE of {} parameters on {} images; reconstruction L1 {l1_before:.4}",
        trainer.params.trainable_count(),
        images.len()
    ));
    progress.start(a.max_steps as u64, "steps");
    progress.advance(trainer.step as u64);
    let io = |e| Error::io(&metrics_path, e);
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(io)?;
    while trainer.step < a.max_steps {
        let s = trainer.train_step(&images)?;
        let line = serde_json::to_string(&s)
            .map_err(|e| Error::invalid_data(&metrics_path, e.to_string()))?;
        writeln!(metrics, "{line}").map_err(io)?;
        progress.status(&format!("L1 {:.4}", s.l1));
        if !progress.advance(1) {
            metrics.flush().map_err(io)?;
            trainer.save_state(&state)?;
            return Err(Error::Cancelled);
        }
        if (a.checkpoint_every > 0 && trainer.step % a.checkpoint_every == 0)
            || trainer.step == a.max_steps
        {
            metrics.flush().map_err(io)?;
            trainer.save_state(&state)?;
        }
    }
    progress.finish();
    let l1_after = trainer.reconstruction_l1(&probe)?;
    let mut config = trainer.config.clone();
    config.scaling_factor = trainer.scaling_factor(&probe)?;
    let tensors = trainer.params.named_snapshot()?;
    let final_dir = a.out.join("final");
    assemble_pipeline(&sd.dir, &sd.weight_files, &final_dir, "vae", |tmp| {
        write_json_atomic(&tmp.join(SPECTROGRAM_FILE), &spectrogram)?;
        write_bytes_atomic(&tmp.join("vae/config.json"), &vae_config_json(&config)?)?;
        write_safetensors(
            &tmp.join("vae/diffusion_pytorch_model.safetensors"),
            &tensors,
        )
    })?;
    let text = std::fs::read_to_string(&metrics_path).map_err(io)?;
    let l1: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_f64()?, v["l1"].as_f64()?)))
        .collect();
    let chart = line_chart("VAE reconstruction L1", "step", &[("L1".into(), l1)]);
    write_bytes_atomic(&a.out.join("loss.png"), &chart.encode_png()?)?;
    let summary = json!({
        "steps": trainer.step,
        "reconstruction_l1_before": l1_before,
        "reconstruction_l1_after": l1_after,
        "scaling_factor": config.scaling_factor,
        "images": images.len(),
        "probe_images": probe.len(),
        "settings": settings,
    });
    write_json_atomic(&a.out.join("summary.json"), &summary)?;
    progress.message(&format!(
        "reconstruction L1 {l1_before:.4} -> {l1_after:.4}; latent scaling factor {:.4}",
        config.scaling_factor
    ));
    Ok(final_dir)
}
