//! Training the VAE (autoencoder) on spectrogram images: fine-tuning a
//! checkpoint's VAE or training a fresh one of a named config, so that a
//! small model trained from scratch has latents that carry pitch.
//!
//! Objective, per the latent-diffusion autoencoders (without their
//! perceptual and adversarial terms): the L1 reconstruction error of a
//! posterior sample's decode plus `kl_weight` times the KL divergence of
//! the posterior from N(0, I), both summed per image and divided by the
//! image's pixel count (so `kl_weight` means what it means in those
//! configs, 1e-6 by default, while the loss reads as a mean pixel error).
//! Random time crops, never flips. After training, the latent scaling
//! factor is set to 1 / std of the posterior means over the data, as
//! diffusers does for new autoencoders.
//!
//! The run state (weights, AdamW moments, step) lives in one safetensors
//! file written atomically, so `--resume` continues exactly: crops and
//! noise are functions of (seed, step).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use rand::Rng;
use serde::Serialize;

use super::data::step_rng;
use super::optim::{clip_grad_norm, AdamW, AdamWConfig, GradAccumulator, LrSchedule};
use crate::diffusion::config::VaeConfig;
use crate::diffusion::vae::Vae;
use crate::diffusion::SeededNoise;
use crate::error::terr;
use crate::error::{Error, Result};
use crate::nn::params::ParamSet;
use crate::nn::weights::{write_safetensors, WeightStore};

/// Named VAE configs for training from scratch.
pub const NAMED_VAE_CONFIGS: [&str; 1] = ["tiny"];

/// A named VAE config: `tiny` has 8x down-scaling like SD's VAE with
/// channels 16-32-64-64 (about 1 M parameters).
pub fn named_vae_config(name: &str) -> Result<VaeConfig> {
    match name {
        "tiny" => Ok(VaeConfig {
            block_out_channels: vec![16, 32, 64, 64],
            layers_per_block: 1,
            norm_num_groups: 8,
            ..VaeConfig::sd15()
        }),
        other => Err(Error::UnknownName {
            kind: "VAE config",
            name: other.to_string(),
            suggestions: NAMED_VAE_CONFIGS.iter().map(|s| s.to_string()).collect(),
        }),
    }
}

/// `vae/config.json` for `config` in diffusers' `AutoencoderKL` layout.
pub fn vae_config_json(config: &VaeConfig) -> Result<Vec<u8>> {
    let n = config.block_out_channels.len();
    let v = serde_json::json!({
        "_class_name": "AutoencoderKL",
        "act_fn": "silu",
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "block_out_channels": config.block_out_channels,
        "down_block_types": vec!["DownEncoderBlock2D"; n],
        "up_block_types": vec!["UpDecoderBlock2D"; n],
        "layers_per_block": config.layers_per_block,
        "latent_channels": config.latent_channels,
        "norm_num_groups": config.norm_num_groups,
        "scaling_factor": config.scaling_factor,
        "use_quant_conv": config.use_quant_conv,
        "use_post_quant_conv": config.use_post_quant_conv,
        "mid_block_add_attention": config.mid_block_add_attention,
        "sample_size": 512,
    });
    serde_json::to_vec_pretty(&v).map_err(|e| Error::param("vae config", e.to_string()))
}

/// Settings of a VAE run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VaeFitSettings {
    /// Stop after this many optimiser steps in all.
    pub max_steps: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Learning rate (constant after a linear warm-up).
    pub lr: LrSchedule,
    /// Weight of the KL term (see the module docs).
    pub kl_weight: f64,
    /// Crop width in pixels (a multiple of the down-scale factor).
    pub crop_px: usize,
    /// Global gradient-norm clip (0: none).
    pub max_grad_norm: f64,
    /// Seed of the crops and posterior noise.
    pub seed: u64,
}

/// Figures of one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct VaeStep {
    /// Step number, from 1.
    pub step: usize,
    /// Total loss.
    pub loss: f64,
    /// Mean absolute pixel error (images in [-1, 1]).
    pub l1: f64,
    /// KL divergence per pixel.
    pub kl: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// A VAE being trained: its config, parameters, optimiser and step.
#[derive(Debug)]
pub struct VaeTrainer {
    /// Architecture.
    pub config: VaeConfig,
    /// Trainable weights by diffusers name.
    pub params: ParamSet,
    /// Optimiser state.
    pub opt: AdamW,
    /// Steps completed.
    pub step: usize,
    settings: VaeFitSettings,
    device: Device,
}

impl VaeTrainer {
    /// A trainer over `params` (see [`ParamSet::fresh`] /
    /// [`ParamSet::from_tensors`]) for a VAE of `config`.
    pub fn new(
        config: VaeConfig,
        params: ParamSet,
        settings: VaeFitSettings,
        device: &Device,
    ) -> Result<Self> {
        if settings.batch_size == 0 || settings.max_steps == 0 {
            return Err(Error::param("batch size / steps", "must be positive"));
        }
        let scale = config.downscale();
        if settings.crop_px == 0 || settings.crop_px % scale != 0 {
            return Err(Error::param(
                "crop",
                format!(
                    "{} px is not a positive multiple of the VAE's down-scale {scale}",
                    settings.crop_px
                ),
            ));
        }
        Vae::new(&params.var_builder(DType::F32, device), &config).map_err(terr("VAE"))?;
        params.check_all_used()?;
        let opt = AdamW::new(
            params.vars(),
            AdamWConfig {
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        Ok(Self {
            config,
            params,
            opt,
            step: 0,
            settings,
            device: device.clone(),
        })
    }

    /// The VAE on the current weights.
    pub fn vae(&self) -> Result<Vae> {
        Vae::new(
            &self.params.var_builder(DType::F32, &self.device),
            &self.config,
        )
        .map_err(terr("VAE"))
    }

    /// One optimisation step on random crops of `images` (each `[3, H, W]`
    /// in [-1, 1], the same height).
    pub fn train_step(&mut self, images: &[Tensor]) -> Result<VaeStep> {
        let s = self.settings;
        let step = self.step + 1;
        let mut rng = step_rng(s.seed, step as u64, 21);
        let mut crops = Vec::with_capacity(s.batch_size);
        for _ in 0..s.batch_size {
            let img = &images[rng.random_range(0..images.len())];
            let w = img.dim(2).map_err(terr("image"))?;
            if w < s.crop_px {
                return Err(Error::param(
                    "crop",
                    format!(
                        "an image is {w} px wide, narrower than the crop of {} px",
                        s.crop_px
                    ),
                ));
            }
            let x0 = rng.random_range(0..=w - s.crop_px);
            crops.push(img.narrow(2, x0, s.crop_px).map_err(terr("crop"))?);
        }
        let x = Tensor::stack(&crops, 0)
            .and_then(|t| t.to_device(&self.device))
            .map_err(terr("batch"))?;
        let vae = self.vae()?;
        let (loss, l1, kl) = vae_loss(&vae, &x, s.kl_weight, &mut SeededNoise::new(rng.random()))
            .map_err(terr("VAE loss"))?;
        let value = loss.to_scalar::<f32>().map_err(terr("loss"))? as f64;
        if !value.is_finite() {
            return Err(Error::param(
                "loss",
                format!("the VAE loss is {value} at step {step}"),
            ));
        }
        let store = loss.backward().map_err(terr("backward"))?;
        let mut acc = GradAccumulator::new(self.params.vars().len());
        acc.add(self.params.vars(), &store)?;
        let mut grads = acc.take();
        if s.max_grad_norm > 0.0 {
            clip_grad_norm(&mut grads, s.max_grad_norm)?;
        }
        let lr = s.lr.lr(self.step as u64);
        self.opt.step(self.params.vars(), &grads, lr)?;
        self.step = step;
        Ok(VaeStep {
            step,
            loss: value,
            l1,
            kl,
            lr,
        })
    }

    /// `img` `[3, H, W]` as a batch of one on the training device, cut to
    /// the largest width the VAE maps back to the same size.
    fn whole(&self, img: &Tensor) -> Result<Tensor> {
        let scale = self.config.downscale();
        let w = img.dim(2).map_err(terr("image"))?;
        img.narrow(2, 0, w - w % scale)
            .and_then(|t| t.unsqueeze(0))
            .and_then(|t| t.to_device(&self.device))
            .map_err(terr("image"))
    }

    /// 1 / std of the posterior means of `images` (whole images, one at a
    /// time), the scaling factor that gives the UNet unit-variance latents.
    pub fn scaling_factor(&self, images: &[Tensor]) -> Result<f64> {
        let vae = self.vae()?;
        let (mut sum, mut sum2, mut n) = (0f64, 0f64, 0f64);
        for img in images {
            let x = self.whole(img)?;
            let mean = vae.encode(&x).map_err(terr("VAE encode"))?.mean;
            let v = mean
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(terr("latent"))?;
            for x in v {
                sum += x as f64;
                sum2 += (x as f64) * (x as f64);
                n += 1.0;
            }
        }
        let var = sum2 / n - (sum / n).powi(2);
        if !(var.is_finite() && var > 0.0) {
            return Err(Error::param(
                "scaling factor",
                format!("the latent variance is {var}"),
            ));
        }
        Ok(1.0 / var.sqrt())
    }

    /// Mean absolute reconstruction error of the posterior means' decodes
    /// of whole images.
    pub fn reconstruction_l1(&self, images: &[Tensor]) -> Result<f64> {
        let vae = self.vae()?;
        let mut total = 0.0;
        for img in images {
            let x = self.whole(img)?;
            let f = || -> candle_core::Result<f64> {
                let y = vae.decode(&vae.encode(&x)?.mean)?;
                Ok((y - &x)?.abs()?.mean_all()?.to_scalar::<f32>()? as f64)
            };
            total += f().map_err(terr("reconstruction"))?;
        }
        Ok(total / images.len().max(1) as f64)
    }

    /// Writes the run state to `file` (atomically).
    pub fn save_state(&self, file: &Path) -> Result<()> {
        let mut tensors = Vec::new();
        for (i, name) in self.params.names().iter().enumerate() {
            tensors.push((
                format!("w.{name}"),
                self.params.vars()[i].as_tensor().clone(),
            ));
            tensors.push((format!("m.{name}"), self.opt.m[i].clone()));
            tensors.push((format!("v.{name}"), self.opt.v[i].clone()));
        }
        let counters = Tensor::new(&[self.step as i64, self.opt.steps as i64], &Device::Cpu)
            .map_err(terr("state"))?;
        tensors.push(("state.step_adam".into(), counters));
        write_safetensors(file, &tensors)
    }

    /// Restores the run state written by [`Self::save_state`].
    pub fn load_state(&mut self, file: &Path) -> Result<()> {
        let all = WeightStore::open(file, &self.device)?.to_map();
        let get = |key: String| -> Result<Tensor> {
            all.get(&key).cloned().ok_or_else(|| Error::Checkpoint {
                file: file.to_path_buf(),
                reason: format!("tensor `{key}` is missing"),
            })
        };
        let names = self.params.names().to_vec();
        let mut weights = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            weights.insert(name.clone(), get(format!("w.{name}"))?);
            let (m, v) = (get(format!("m.{name}"))?, get(format!("v.{name}"))?);
            if m.dims() != self.params.vars()[i].dims() || v.dims() != m.dims() {
                return Err(Error::Checkpoint {
                    file: file.to_path_buf(),
                    reason: format!("moments of `{name}` have the wrong shape"),
                });
            }
            self.opt.m[i] = m;
            self.opt.v[i] = v;
        }
        self.params.load_trainable(file, &weights)?;
        let counters = get("state.step_adam".into())?
            .to_dtype(DType::F64)
            .and_then(|t| t.to_vec1::<f64>())
            .map_err(terr("state"))?;
        if counters.len() != 2 {
            return Err(Error::Checkpoint {
                file: file.to_path_buf(),
                reason: "`state.step_adam` must hold two counters".into(),
            });
        }
        self.step = counters[0] as usize;
        self.opt.steps = counters[1] as u64;
        Ok(())
    }
}

/// (loss, mean L1, KL per pixel) of reconstructing `x` `[b, c, h, w]`
/// from a posterior sample.
pub fn vae_loss(
    vae: &Vae,
    x: &Tensor,
    kl_weight: f64,
    noise: &mut SeededNoise,
) -> candle_core::Result<(Tensor, f64, f64)> {
    let dist = vae.encode(x)?;
    let eps = Tensor::from_vec(
        noise.values(dist.mean.elem_count()),
        dist.mean.dims(),
        x.device(),
    )?;
    let z = dist.sample_with(&eps)?;
    let y = vae.decode(&z)?;
    let pixels = (x.elem_count() / x.dim(0)?) as f64;
    let l1 = (y - x)?.abs()?.mean_all()?;
    // KL(N(mu, s^2) || N(0, 1)) = 0.5 (mu^2 + s^2 - 1 - ln s^2), summed
    // over latent cells, averaged over images, per pixel.
    let var = dist.std.sqr()?;
    let kl_cells = ((dist.mean.sqr()? + &var)? - 1.0)?.sub(&var.log()?)?;
    let kl = ((kl_cells.flatten_from(1)?.sum(D::Minus1)?.mean_all()? * 0.5)? / pixels)?;
    let loss = (&l1 + (&kl * kl_weight)?)?;
    let l1_v = l1.to_scalar::<f32>()? as f64;
    let kl_v = kl.to_scalar::<f32>()? as f64;
    Ok((loss, l1_v, kl_v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::optim::LrScheduleKind;

    fn stripes(n: usize, dev: &Device) -> Vec<Tensor> {
        (0..n)
            .map(|i| {
                let mut v = vec![1f32; 3 * 16 * 32];
                for c in 0..3 {
                    for x in 0..32 {
                        let row = 3 + (i + x / 8) % 10;
                        v[(c * 16 + row) * 32 + x] = -1.0;
                    }
                }
                Tensor::from_vec(v, (3, 16, 32), dev).unwrap()
            })
            .collect()
    }

    fn settings(max_steps: usize) -> VaeFitSettings {
        VaeFitSettings {
            max_steps,
            batch_size: 2,
            lr: LrSchedule {
                kind: LrScheduleKind::Constant,
                base_lr: 2e-3,
                warmup_steps: 0,
                total_steps: max_steps as u64,
                cycles: 1.0,
            },
            kl_weight: 1e-6,
            crop_px: 16,
            max_grad_norm: 1.0,
            seed: 3,
        }
    }

    fn small() -> VaeConfig {
        VaeConfig {
            block_out_channels: vec![8, 16],
            layers_per_block: 1,
            norm_num_groups: 4,
            ..VaeConfig::sd15()
        }
    }

    #[test]
    fn learns_to_reconstruct_and_resumes_exactly() {
        let dev = Device::Cpu;
        let images = stripes(6, &dev);
        let fresh = || {
            let p =
                ParamSet::fresh("vae", 1, &dev, |vb| Vae::new(vb, &small()).map(|_| ())).unwrap();
            VaeTrainer::new(small(), p, settings(40), &dev).unwrap()
        };
        let mut a = fresh();
        let before = a.reconstruction_l1(&images).unwrap();
        for _ in 0..40 {
            a.train_step(&images).unwrap();
        }
        let after = a.reconstruction_l1(&images).unwrap();
        assert!(after < 0.5 * before, "L1 {before} -> {after}");
        let k = a.scaling_factor(&images).unwrap();
        assert!(k.is_finite() && k > 0.0);

        // 3 + save / load + 3 == 6 straight
        let dir = tempfile::tempdir().unwrap();
        let mut b = fresh();
        let mut c = fresh();
        for _ in 0..6 {
            b.train_step(&images).unwrap();
        }
        for _ in 0..3 {
            c.train_step(&images).unwrap();
        }
        let file = dir.path().join("state.safetensors");
        c.save_state(&file).unwrap();
        let mut d = fresh();
        d.load_state(&file).unwrap();
        assert_eq!(d.step, 3);
        for _ in 0..3 {
            d.train_step(&images).unwrap();
        }
        for (x, y) in b
            .params
            .snapshot()
            .unwrap()
            .iter()
            .zip(d.params.snapshot().unwrap())
        {
            let diff = (x - y).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
        }
    }

    #[test]
    fn refuses_bad_crops_and_names_configs() {
        let dev = Device::Cpu;
        let p = ParamSet::fresh("vae", 1, &dev, |vb| Vae::new(vb, &small()).map(|_| ())).unwrap();
        let bad = VaeFitSettings {
            crop_px: 15,
            ..settings(2)
        };
        let e = VaeTrainer::new(small(), p, bad, &dev)
            .unwrap_err()
            .to_string();
        assert!(e.contains("15 px"), "{e}");
        assert_eq!(named_vae_config("tiny").unwrap().downscale(), 8);
        assert!(named_vae_config("huge").is_err());
        let json: serde_json::Value =
            serde_json::from_slice(&vae_config_json(&small()).unwrap()).unwrap();
        assert_eq!(json["down_block_types"].as_array().unwrap().len(), 2);
    }
}
