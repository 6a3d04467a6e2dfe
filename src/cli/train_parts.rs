//! `train-vae` and `train-latent-classifier`: the two models a fine-tuning
//! run can lean on besides the UNet (an autoencoder fitted to the
//! spectrograms, and the latent raga classifier of the auxiliary loss).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use ragafusion::diffusion::pipeline::rgb_to_images;
use ragafusion::diffusion::vae::Vae;
use ragafusion::diffusion::{LoadOptions, StableDiffusion};
use ragafusion::fsutil::{write_bytes_atomic, write_json_atomic};
use ragafusion::nn::weights::{write_safetensors, WeightStore};
use ragafusion::plot::charts::line_chart;
use ragafusion::spectrogram::{read_png, SpectrogramParams};
use ragafusion::train::data::read_entries;
use ragafusion::train::export::{assemble_pipeline, SPECTROGRAM_FILE};
use ragafusion::train::latent_classifier::LatentClassifierConfig;
use ragafusion::train::latent_fit::{fit_latent_classifier, LatentFitSettings};
use ragafusion::train::setup::cached_latents;
use ragafusion::train::vae_fit::{named_vae_config, vae_config_json, VaeFitSettings, VaeTrainer};
use ragafusion::train::{LrSchedule, LrScheduleKind, ParamSet};
use ragafusion::Progress;
use serde_json::json;

use super::progress_bar::Bar;

/// Arguments of `train-vae`.
#[derive(Debug, Args)]
pub struct TrainVaeArgs {
    /// Training folder: images + metadata.jsonl (as for `train`).
    #[arg(long)]
    data: PathBuf,
    /// Run folder: state.safetensors (for --resume), metrics.jsonl,
    /// loss.png, summary.json, final/ (the base pipeline with the new VAE).
    #[arg(long)]
    out: PathBuf,
    /// Base pipeline (diffusers folder): its VAE is fine-tuned (or, with
    /// --config, replaced); its other components are copied to OUT/final.
    #[arg(long)]
    model: PathBuf,
    /// Train a fresh VAE of a named config instead: tiny.
    #[arg(long)]
    config: Option<String>,
    /// Optimiser steps in all.
    #[arg(long, default_value_t = 2000)]
    max_steps: usize,
    /// Image crops per step.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Learning rate (default 1e-3 for a fresh VAE, 1e-5 for fine-tuning).
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 0)]
    lr_warmup_steps: u64,
    /// Weight of the KL term (per image sums, as in latent-diffusion configs).
    #[arg(long, default_value_t = 1e-6)]
    kl_weight: f64,
    /// Crop width in pixels (random time crops; a multiple of the VAE's
    /// down-scale factor).
    #[arg(long, default_value_t = 256)]
    crop_px: usize,
    /// Clip the global gradient norm (0: off).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Save the run state every N steps (and at the end).
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// Continue from OUT/state.safetensors.
    #[arg(long)]
    resume: bool,
    /// Seed of initialisation, crops and posterior noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Reads every image of a training folder as `[3, H, W]` in [-1, 1], with
/// the first image's spectrogram parameters.
fn load_images(data: &std::path::Path) -> anyhow::Result<(Vec<Tensor>, SpectrogramParams)> {
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
            Some(h0) if h0 != h => bail!(
                "{}: height {h} differs from the first image's {h0}; all images need one height",
                path.display()
            ),
            _ => {}
        }
        let t = rgb_to_images(&[&loaded.image], &candle_core::Device::Cpu)?;
        images.push(t.squeeze(0)?);
        params.get_or_insert(loaded.params);
    }
    Ok((images, params.unwrap_or_default()))
}

/// `--device` and `--dtype` together: bf16 is refused on the CPU.
pub(super) fn parse_device_dtype(device: &str, dtype: &str) -> anyhow::Result<(Device, DType)> {
    ragafusion::engine::device_and_dtype(device, dtype)
        .with_context(|| format!("--device {device} --dtype {dtype}"))
}

/// Loads the pipeline at `model` in f32 on the device named by `device`.
fn load_f32(model: &std::path::Path, device: &str) -> anyhow::Result<(StableDiffusion, Device)> {
    let (device, _) = parse_device_dtype(device, "f32")?;
    let load = LoadOptions {
        dtype: DType::F32,
        vae_dtype: DType::F32,
        device: device.clone(),
        variant: None,
    };
    let sd = StableDiffusion::load(model, &load)
        .with_context(|| format!("loading the pipeline {}", model.display()))?;
    Ok((sd, device))
}

/// Runs `train-vae`.
pub fn train_vae(a: TrainVaeArgs) -> anyhow::Result<ExitCode> {
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
            let file = sd
                .weight_files
                .iter()
                .find(|f| {
                    f.parent()
                        .and_then(|p| p.file_name())
                        .is_some_and(|n| n == "vae")
                })
                .context("the base pipeline has no VAE weights file")?;
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
    let h = images[0].dim(1)?;
    if h % config.downscale() != 0 {
        bail!(
            "image height {h} is not a multiple of the VAE's down-scale factor {}",
            config.downscale()
        );
    }
    let mut trainer = VaeTrainer::new(config, params, settings, &device)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let state = a.out.join("state.safetensors");
    let metrics_path = a.out.join("metrics.jsonl");
    if a.resume && state.is_file() {
        trainer.load_state(&state)?;
        eprintln!("resumed from step {}", trainer.step);
        ragafusion::train::run::truncate_jsonl(&metrics_path, trainer.step as u64)?;
    } else if metrics_path.exists() {
        std::fs::remove_file(&metrics_path)?;
    }
    // Whole-image figures on up to 16 images spread over the set.
    let probe: Vec<Tensor> = (0..images.len().min(16))
        .map(|i| images[i * images.len() / images.len().min(16)].clone())
        .collect();
    let l1_before = trainer.reconstruction_l1(&probe)?;
    eprintln!(
        "training a VAE of {} parameters on {} images; reconstruction L1 {l1_before:.4}",
        trainer.params.trainable_count(),
        images.len()
    );
    let bar = Bar::new();
    bar.start(a.max_steps as u64, "steps");
    bar.advance(trainer.step as u64);
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("opening {}", metrics_path.display()))?;
    while trainer.step < a.max_steps {
        let s = trainer.train_step(&images)?;
        writeln!(metrics, "{}", serde_json::to_string(&s)?)?;
        bar.status(&format!("L1 {:.4}", s.l1));
        bar.advance(1);
        if (a.checkpoint_every > 0 && trainer.step % a.checkpoint_every == 0)
            || trainer.step == a.max_steps
        {
            metrics.flush()?;
            trainer.save_state(&state)?;
        }
    }
    bar.finish();
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
    let text = std::fs::read_to_string(&metrics_path)?;
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
    eprintln!(
        "reconstruction L1 {l1_before:.4} -> {l1_after:.4}; latent scaling factor {:.4}",
        config.scaling_factor
    );
    println!("{}", final_dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `train-latent-classifier`.
#[derive(Debug, Args)]
pub struct TrainLatentClassifierArgs {
    /// Training folder: images + metadata.jsonl with a `raga` per image.
    #[arg(long)]
    data: PathBuf,
    /// The pipeline whose VAE makes the latents (the one `train` will use).
    #[arg(long)]
    model: PathBuf,
    /// Output folder: config.json (kind `latent-raga-cnn`),
    /// model.safetensors, training.json, cache/ (the latents).
    #[arg(long)]
    out: PathBuf,
    /// Optimiser steps.
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Peak learning rate (cosine decay to 5%).
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-2)]
    weight_decay: f64,
    /// Training crop width in pixels (a multiple of the VAE's down-scale).
    #[arg(long, default_value_t = 256)]
    crop_px: usize,
    /// Largest standard deviation of Gaussian noise added to the scaled
    /// latents (the judge later sees noisy predicted latents); 0: none.
    #[arg(long, default_value_t = 0.3)]
    noise_augment: f64,
    /// Hold out every n-th image to measure accuracy (0: none).
    #[arg(long, default_value_t = 5)]
    holdout_every: usize,
    /// Seed of initialisation, order, crops and noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs `train-latent-classifier`.
pub fn train_latent_classifier(a: TrainLatentClassifierArgs) -> anyhow::Result<ExitCode> {
    let (sd, device) = load_f32(&a.model, &a.device)?;
    let scale = sd.vae_scale();
    if a.crop_px == 0 || a.crop_px % scale != 0 {
        bail!(
            "--crop-px {} is not a positive multiple of the VAE scale {scale}",
            a.crop_px
        );
    }
    let entries = read_entries(&a.data)?;
    let mut ragas: Vec<String> = entries.iter().filter_map(|e| e.raga.clone()).collect();
    ragas.sort();
    ragas.dedup();
    if ragas.len() < 2 {
        bail!(
            "{}: metadata.jsonl names {} raga(s); a classifier needs images of at least two",
            a.data.display(),
            ragas.len()
        );
    }
    let bar = Bar::new();
    let latents = cached_latents(
        &a.data,
        &entries,
        &sd.vae,
        &a.out.join("cache").join("latents.safetensors"),
        &bar,
    )?;
    let vae = sd.vae.config();
    let config = LatentClassifierConfig::new(ragas, vae.latent_channels, latents[0].mean.dim(1)?);
    let settings = LatentFitSettings {
        steps: a.steps,
        batch_size: a.batch_size,
        learning_rate: a.learning_rate,
        weight_decay: a.weight_decay,
        crop_w: a.crop_px / scale,
        scaling_factor: vae.scaling_factor,
        noise_augment: a.noise_augment,
        holdout_every: a.holdout_every,
        seed: a.seed,
    };
    let fit = fit_latent_classifier(&config, &entries, &latents, &settings, &device, &bar)?;
    let tensors = fit.params.named_snapshot()?;
    write_safetensors(&a.out.join("model.safetensors"), &tensors)?;
    write_json_atomic(&a.out.join("config.json"), &config)?;
    let n = fit.steps.len();
    let tail = &fit.steps[n - n.min(50)..];
    let summary = json!({
        "ragas": config.ragas,
        "examples": entries.len(),
        "holdout_examples": fit.holdout_count,
        "holdout_accuracy": fit.holdout_accuracy,
        "train_accuracy": fit.train_accuracy,
        "final_loss_mean_last_50": tail.iter().map(|s| s.loss).sum::<f64>() / tail.len() as f64,
        "settings": settings,
        "vae": a.model.display().to_string(),
    });
    write_json_atomic(&a.out.join("training.json"), &summary)?;
    eprintln!(
        "training accuracy {:.3}; held-out accuracy {} ({} images)",
        fit.train_accuracy,
        fit.holdout_accuracy
            .map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "n/a".into()),
        fit.holdout_count
    );
    println!("{}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
