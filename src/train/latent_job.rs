//! The `train-latent-classifier` job: the raga CNN on VAE latents that the
//! auxiliary loss of `train` uses as its judge.

use std::path::PathBuf;

use serde_json::json;

use super::data::read_entries;
use super::latent_classifier::LatentClassifierConfig;
use super::latent_fit::{fit_latent_classifier, LatentFitSettings};
use super::setup::cached_latents;
use super::vae_job::load_f32;
use crate::error::{terr, Error, Result};
use crate::fsutil::write_json_atomic;
use crate::nn::weights::write_safetensors;
use crate::progress::Progress;

/// What `train-latent-classifier` is asked to do.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatentJob {
    /// Training folder: images + metadata.jsonl with a `raga` per image.
    pub data: PathBuf,
    /// The pipeline whose VAE makes the latents.
    pub model: PathBuf,
    /// Output folder: config.json, model.safetensors, training.json,
    /// cache/.
    pub out: PathBuf,
    /// Optimiser steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate (cosine decay to 5%).
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Training crop width in pixels (a multiple of the VAE's down-scale).
    pub crop_px: usize,
    /// Largest standard deviation of noise added to the scaled latents.
    pub noise_augment: f64,
    /// Hold out every n-th image to measure accuracy (0: none).
    pub holdout_every: usize,
    /// Seed of initialisation, order, crops and noise.
    pub seed: u64,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
}

/// Runs the job; returns the output folder.
pub fn train_latent_classifier(a: &LatentJob, progress: &dyn Progress) -> Result<PathBuf> {
    let (sd, device) = load_f32(&a.model, &a.device)?;
    let scale = sd.vae_scale();
    if a.crop_px == 0 || a.crop_px % scale != 0 {
        return Err(Error::param(
            "crop-px",
            format!(
                "{} is not a positive multiple of the VAE scale {scale}",
                a.crop_px
            ),
        ));
    }
    let entries = read_entries(&a.data)?;
    let mut ragas: Vec<String> = entries.iter().filter_map(|e| e.raga.clone()).collect();
    ragas.sort();
    ragas.dedup();
    if ragas.len() < 2 {
        return Err(Error::invalid_data(
            &a.data.join("metadata.jsonl"),
            format!(
                "names {} raga(s); a classifier needs images of at least two",
                ragas.len()
            ),
        ));
    }
    let latents = cached_latents(
        &a.data,
        &entries,
        &sd.vae,
        &a.out.join("cache").join("latents.safetensors"),
        progress,
    )?;
    let vae = sd.vae.config();
    let width = latents[0].mean.dim(1).map_err(terr("latents"))?;
    let config = LatentClassifierConfig::new(ragas, vae.latent_channels, width);
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
    let fit = fit_latent_classifier(&config, &entries, &latents, &settings, &device, progress)?;
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
    progress.message(&format!(
        "training accuracy {:.3}; held-out accuracy {} ({} images)",
        fit.train_accuracy,
        fit.holdout_accuracy
            .map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "n/a".into()),
        fit.holdout_count
    ));
    Ok(a.out.clone())
}
