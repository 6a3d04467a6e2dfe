//! Training the latent raga classifier (the auxiliary loss's judge) on the
//! cached VAE latents of a captioned dataset.
//!
//! Each step draws a batch in the same step-seeded order as UNet training
//! (posterior samples, random time crops), optionally adds Gaussian noise
//! of a random level per sample (the predicted clean latents the judge
//! sees during fine-tuning are noisy), and takes an AdamW step on the
//! cross-entropy. Examples whose index is a multiple of `holdout_every`
//! are held out and scored on their full-width mean latents.

use candle_core::{DType, Device, Tensor};
use rand::Rng;
use serde::Serialize;

use super::data::{make_batch, step_rng, BatchSettings, CachedLatent, DataEntry, SampleOrder};
use super::latent_classifier::{cross_entropy, LatentClassifier, LatentClassifierConfig};
use super::optim::{AdamW, AdamWConfig, GradAccumulator};
use crate::diffusion::SeededNoise;
use crate::error::terr;
use crate::error::{Error, Result};
use crate::nn::params::ParamSet;
use crate::progress::Progress;

/// Settings of a latent-classifier run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatentFitSettings {
    /// Optimiser steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate (cosine decay to 5% of it).
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Latent columns per training crop.
    pub crop_w: usize,
    /// The VAE's latent scaling factor (latents are judged as the UNet sees them).
    pub scaling_factor: f64,
    /// Largest standard deviation of the added noise (0: none).
    pub noise_augment: f64,
    /// Every n-th example is held out (0: none).
    pub holdout_every: usize,
    /// Seed of the initialisation, order, crops and noise.
    pub seed: u64,
}

/// Loss of one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatentFitStep {
    /// Step number, from 1.
    pub step: usize,
    /// Mean cross-entropy of the batch.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// A trained classifier and how it did.
#[derive(Debug)]
pub struct LatentFit {
    /// The parameters (save with [`ParamSet::names`] + [`ParamSet::snapshot`]).
    pub params: ParamSet,
    /// The model built on `params`.
    pub model: LatentClassifier,
    /// Per-step losses.
    pub steps: Vec<LatentFitStep>,
    /// Held-out examples scored.
    pub holdout_count: usize,
    /// Fraction of held-out examples whose top raga was right (None
    /// without a hold-out set).
    pub holdout_accuracy: Option<f64>,
    /// Fraction of training examples (full width, mean latent) right.
    pub train_accuracy: f64,
}

/// The raga index of every entry under `config`, or an error naming the
/// image without a raga.
pub fn labels(entries: &[DataEntry], config: &LatentClassifierConfig) -> Result<Vec<usize>> {
    entries
        .iter()
        .map(|e| {
            let raga = e.raga.as_deref().ok_or_else(|| {
                Error::param(
                    "raga",
                    format!(
                        "{} has no `raga` in metadata.jsonl; the latent classifier needs one per image",
                        e.file_name
                    ),
                )
            })?;
            config
                .ragas
                .iter()
                .position(|r| r == raga)
                .ok_or_else(|| Error::param("raga", format!("{raga} is not in the config")))
        })
        .collect()
}

/// Trains a fresh classifier of `config` on `latents` labelled by
/// `entries`' ragas. `progress` counts steps and may cancel.
pub fn fit_latent_classifier(
    config: &LatentClassifierConfig,
    entries: &[DataEntry],
    latents: &[CachedLatent],
    settings: &LatentFitSettings,
    device: &Device,
    progress: &dyn Progress,
) -> Result<LatentFit> {
    if settings.steps == 0 || settings.batch_size == 0 || settings.crop_w == 0 {
        return Err(Error::param(
            "steps/batch_size/crop",
            "must all be positive",
        ));
    }
    let labels = labels(entries, config)?;
    let held = |i: usize| settings.holdout_every > 0 && i % settings.holdout_every == 0;
    let train: Vec<usize> = (0..entries.len()).filter(|&i| !held(i)).collect();
    let holdout: Vec<usize> = (0..entries.len()).filter(|&i| held(i)).collect();
    if train.is_empty() {
        return Err(Error::param(
            "data",
            "no training examples left after the hold-out",
        ));
    }
    let params = ParamSet::fresh("latent classifier", settings.seed, device, |vb| {
        LatentClassifier::new(vb, config).map(|_| ())
    })?;
    let model = LatentClassifier::new(&params.var_builder(DType::F32, device), config)
        .map_err(terr("latent classifier"))?;
    params.check_all_used()?;
    let mut opt = AdamW::new(
        params.vars(),
        AdamWConfig {
            weight_decay: settings.weight_decay,
            ..Default::default()
        },
    )?;
    let batch_settings = BatchSettings {
        crop_w: settings.crop_w,
        caption_dropout: 0.0,
        scaling_factor: settings.scaling_factor,
    };
    let mut order = SampleOrder::new(settings.seed, train.len());
    let mut reports = Vec::with_capacity(settings.steps);
    progress.start(settings.steps as u64, "steps");
    for step in 1..=settings.steps {
        let k0 = ((step - 1) * settings.batch_size) as u64;
        let idx: Vec<usize> = (0..settings.batch_size as u64)
            .map(|k| train[order.at(k0 + k)])
            .collect();
        let mut rng = step_rng(settings.seed, step as u64, 11);
        let batch = make_batch(latents, entries, &idx, batch_settings, &mut rng, device)?;
        let x = augment(&batch.latents, settings.noise_augment, &mut rng)?;
        let y: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
        let loss = cross_entropy(&model.logits(&x).map_err(terr("latent classifier"))?, &y)?;
        let value = loss.to_scalar::<f32>().map_err(terr("loss"))? as f64;
        if !value.is_finite() {
            return Err(Error::param(
                "loss",
                format!("cross-entropy is {value} at step {step}"),
            ));
        }
        let store = loss.backward().map_err(terr("backward"))?;
        let mut acc = GradAccumulator::new(params.vars().len());
        acc.add(params.vars(), &store)?;
        let progress_frac = (step - 1) as f64 / settings.steps.max(2).saturating_sub(1) as f64;
        let lr = settings.learning_rate
            * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress_frac).cos()));
        opt.step(params.vars(), &acc.take(), lr)?;
        reports.push(LatentFitStep {
            step,
            loss: value,
            lr,
        });
        progress.status(&format!("loss {value:.3}"));
        if !progress.advance(1) {
            return Err(Error::Cancelled);
        }
    }
    progress.finish();
    let accuracy = |set: &[usize]| -> Result<Option<f64>> {
        if set.is_empty() {
            return Ok(None);
        }
        let mut right = 0usize;
        for &i in set {
            let z = latents[i]
                .mean
                .unsqueeze(0)
                .and_then(|t| t.to_device(device))
                .and_then(|t| t * settings.scaling_factor)
                .map_err(terr("latent"))?;
            let p = model.probabilities(&z)?;
            let best = argmax(&p[0]);
            right += (best == labels[i]) as usize;
        }
        Ok(Some(right as f64 / set.len() as f64))
    };
    let holdout_accuracy = accuracy(&holdout)?;
    let train_accuracy = accuracy(&train)?.unwrap_or(0.0);
    Ok(LatentFit {
        params,
        model,
        steps: reports,
        holdout_count: holdout.len(),
        holdout_accuracy,
        train_accuracy,
    })
}

/// Index of the largest value.
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// `x + sigma_b * noise` with `sigma_b ~ U[0, max_sigma]` per sample.
fn augment(x: &Tensor, max_sigma: f64, rng: &mut rand_chacha::ChaCha8Rng) -> Result<Tensor> {
    if max_sigma <= 0.0 {
        return Ok(x.clone());
    }
    let dims = x.dims().to_vec();
    let n = dims[0];
    let sigmas: Vec<f32> = (0..n)
        .map(|_| (rng.random::<f64>() * max_sigma) as f32)
        .collect();
    let mut noise = SeededNoise::new(rng.random());
    let f = || -> candle_core::Result<Tensor> {
        let eps = Tensor::from_vec(noise.values(x.elem_count()), dims.as_slice(), x.device())?;
        let s = Tensor::from_vec(sigmas, (n, 1, 1, 1), x.device())?;
        x + eps.broadcast_mul(&s)?
    };
    f().map_err(terr("noise augmentation"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    /// Two "ragas" that differ in which latent row is bright: the fit must
    /// separate held-out examples.
    #[test]
    fn separates_two_classes_and_scores_the_holdout() {
        let dev = Device::Cpu;
        let mut entries = Vec::new();
        let mut latents = Vec::new();
        for i in 0..12 {
            let class = i % 2;
            let mut v = vec![0f32; 4 * 8 * 16];
            for c in 0..4 {
                for x in 0..16 {
                    let row = if class == 0 { 2 } else { 5 };
                    v[(c * 8 + row) * 16 + x] = 2.0 + 0.1 * (i as f32);
                }
            }
            let mean = Tensor::from_vec(v, (4, 8, 16), &dev).unwrap();
            latents.push(CachedLatent {
                std: (mean.ones_like().unwrap() * 0.05).unwrap(),
                mean,
                file_hash: 0,
            });
            entries.push(DataEntry {
                file_name: format!("{i}.png"),
                text: String::new(),
                raga: Some(["Todi", "Kalyani"][class].into()),
            });
        }
        let config = LatentClassifierConfig::new(vec!["Kalyani".into(), "Todi".into()], 4, 8);
        let settings = LatentFitSettings {
            steps: 30,
            batch_size: 4,
            learning_rate: 2e-3,
            weight_decay: 0.0,
            crop_w: 8,
            scaling_factor: 1.0,
            noise_augment: 0.2,
            holdout_every: 3,
            seed: 4,
        };
        let fit = fit_latent_classifier(&config, &entries, &latents, &settings, &dev, &NoProgress)
            .unwrap();
        assert_eq!(fit.holdout_count, 4);
        assert_eq!(fit.holdout_accuracy, Some(1.0));
        assert_eq!(fit.train_accuracy, 1.0);
        let first = fit.steps[0].loss;
        let last = fit.steps.last().unwrap().loss;
        assert!(last < first * 0.5, "{first} -> {last}");

        entries[1].raga = None;
        let e = fit_latent_classifier(&config, &entries, &latents, &settings, &dev, &NoProgress)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1.png") && e.contains("raga"), "{e}");
        entries[1].raga = Some("Bhairavi".into());
        let e = labels(&entries, &config).unwrap_err().to_string();
        assert!(e.contains("Bhairavi"), "{e}");
    }
}
