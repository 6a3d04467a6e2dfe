//! One optimisation step of the UNet: a micro-batch at a time, gradients
//! accumulated, clipped, AdamW, EMA; with the optional auxiliary loss of a
//! frozen latent judge (the raga classifier) on the predicted clean latent.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;

use super::data::{make_batch, step_rng, BatchSettings, CachedLatent, DataEntry, SampleOrder};
use super::objective::{weighted_mse, NoiseSchedule, Prediction};
use super::optim::{
    clip_grad_norm, grad_norm, AdamW, AdamWConfig, Ema, GradAccumulator, LrSchedule,
};
use crate::diffusion::config::UnetConfig;
use crate::diffusion::unet::Unet;
use crate::diffusion::{SeededNoise, StableDiffusion};
use crate::error::terr;
use crate::error::{Error, Result};
use crate::nn::params::ParamSet;
use crate::nn::segments::{self, Tape};
use crate::nn::weights::WeightStore;
use crate::progress::NoProgress;

/// A frozen, differentiable judge of (predicted) clean latents.
pub trait LatentJudge {
    /// Mean cross-entropy of the judge on scaled latents `[n, c, h, w]`
    /// against class `labels`; differentiable in the latents.
    fn loss(&self, latents: &Tensor, labels: &[usize]) -> Result<Tensor>;
    /// The class index of a raga label, if the judge knows it.
    fn class_of(&self, raga: &str) -> Option<usize>;
}

/// How the auxiliary loss is applied.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuxSettings {
    /// Weight of the auxiliary loss.
    pub lambda: f64,
    /// Only samples with timestep `t <= t_max` get it.
    pub t_max: usize,
    /// Share of each batch whose timesteps are drawn from `0..=t_max`
    /// instead of the full range.
    pub low_t_share: f64,
}

/// The numbers of one settings group the step needs.
#[derive(Debug, Clone)]
pub struct StepSettings {
    /// Samples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Latent columns per sample.
    pub crop_w: usize,
    /// Probability of the empty caption.
    pub caption_dropout: f64,
    /// min-SNR gamma, if weighting.
    pub snr_gamma: Option<f64>,
    /// Scale of the per-channel noise offset.
    pub noise_offset: f64,
    /// Extra noise on the model input only (input perturbation).
    pub input_perturbation: f64,
    /// Clip the global gradient norm to this.
    pub max_grad_norm: f64,
    /// The learning-rate schedule.
    pub lr: LrSchedule,
    /// AdamW settings.
    pub adam: AdamWConfig,
    /// EMA decay bound, when averaging.
    pub ema_decay: Option<f64>,
    /// What the UNet predicts.
    pub prediction: Prediction,
    /// UNet compute dtype (f32, or bf16 on CUDA).
    pub compute_dtype: DType,
    /// Keep only segment boundaries in the forward and recompute each
    /// segment in the backward (less memory, about one more forward).
    pub gradient_checkpointing: bool,
    /// The run seed.
    pub seed: u64,
    /// Auxiliary loss, if any.
    pub aux: Option<AuxSettings>,
}

/// What one optimiser step did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepReport {
    /// The step number (1-based: steps completed).
    pub step: u64,
    /// Total loss (diffusion + lambda * aux), mean over micro-batches.
    pub loss: f64,
    /// The (weighted) diffusion loss.
    pub diffusion_loss: f64,
    /// The auxiliary cross-entropy (before lambda), when any sample had
    /// `t <= t_max`.
    pub aux_loss: Option<f64>,
    /// Norm of lambda * aux gradient over the diffusion gradient, when
    /// measured.
    pub aux_grad_ratio: Option<f64>,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// The training state: models, parameters, optimiser, data.
pub struct Trainer {
    /// The pipeline (tokenizer, text encoder, VAE, scheduler); its `unet`
    /// is replaced by [`Trainer::current_unet`] for validation.
    pub sd: StableDiffusion,
    /// The UNet's config.
    pub unet_config: UnetConfig,
    /// Trainable parameters.
    pub params: ParamSet,
    /// Optimiser state.
    pub opt: AdamW,
    /// Weight average, if kept.
    pub ema: Option<Ema>,
    /// Optimiser steps completed.
    pub step: u64,
    /// Step settings.
    pub settings: StepSettings,
    schedule: NoiseSchedule,
    entries: Vec<DataEntry>,
    latents: Vec<CachedLatent>,
    order: SampleOrder,
    text_cache: HashMap<String, Tensor>,
    judge: Option<Box<dyn LatentJudge>>,
    device: Device,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("step", &self.step)
            .field("params", &self.params)
            .finish()
    }
}

impl Trainer {
    /// A trainer at step 0. `judge` is required when `settings.aux` is set.
    pub fn new(
        sd: StableDiffusion,
        unet_config: UnetConfig,
        params: ParamSet,
        entries: Vec<DataEntry>,
        latents: Vec<CachedLatent>,
        settings: StepSettings,
        judge: Option<Box<dyn LatentJudge>>,
    ) -> Result<Self> {
        if settings.aux.is_some() != judge.is_some() {
            return Err(Error::param(
                "aux",
                "the auxiliary loss needs a latent classifier (and one is only used with it)",
            ));
        }
        if settings.batch_size == 0 || settings.grad_accum == 0 {
            return Err(Error::param(
                "batch-size",
                "batch size and accumulation must be >= 1",
            ));
        }
        if entries.len() != latents.len() {
            return Err(Error::param(
                "data",
                "one cached latent per example is required",
            ));
        }
        let device = sd.unet.device().clone();
        // building once checks names and shapes and that every tensor is
        // used; the pipeline's own UNet copy is dropped for this one
        let mut sd = sd;
        sd.unet = Unet::new(
            &params.var_builder(settings.compute_dtype, &device),
            &unet_config,
        )
        .map_err(|e| Error::Checkpoint {
            file: "unet".into(),
            reason: e.to_string(),
        })?;
        params.check_all_used()?;
        let opt = AdamW::new(params.vars(), settings.adam)?;
        let ema = match settings.ema_decay {
            Some(d) => Some(Ema::new(params.vars(), d)?),
            None => None,
        };
        Ok(Self {
            schedule: NoiseSchedule::new(&sd.scheduler),
            order: SampleOrder::new(settings.seed, entries.len()),
            sd,
            unet_config,
            params,
            opt,
            ema,
            step: 0,
            settings,
            entries,
            latents,
            text_cache: HashMap::new(),
            judge,
            device,
        })
    }

    /// A UNet on copies of the current weights (or of the EMA weights),
    /// LoRA merged: later optimiser steps do not change it.
    pub fn current_unet(&self, use_ema: bool) -> Result<Unet> {
        let values = match (&self.ema, use_ema) {
            (Some(ema), true) => Some(ema.shadow.as_slice()),
            _ => None,
        };
        let tensors = self.params.merged(values)?.into_iter().collect();
        let store = WeightStore::from_tensors(Path::new("training weights"), tensors);
        Unet::new(
            &store.var_builder(self.settings.compute_dtype, &self.device),
            &self.unet_config,
        )
        .map_err(terr("building the UNet"))
    }

    /// Number of training examples.
    pub fn examples(&self) -> usize {
        self.entries.len()
    }

    fn embed(&mut self, caption: &str) -> Result<Tensor> {
        if let Some(t) = self.text_cache.get(caption) {
            return Ok(t.clone());
        }
        let t = self
            .sd
            .embed_prompt(caption, &NoProgress)?
            .detach()
            .to_dtype(self.settings.compute_dtype)
            .map_err(terr("text embedding"))?;
        self.text_cache.insert(caption.to_string(), t.clone());
        Ok(t)
    }

    /// Runs one optimiser step; `measure_aux` also measures the ratio of
    /// the auxiliary to the diffusion gradient norm (one extra backward).
    pub fn train_step(&mut self, measure_aux: bool) -> Result<StepReport> {
        let s = self.settings.clone();
        let unet = Unet::new(
            &self.params.var_builder(s.compute_dtype, &self.device),
            &self.unet_config,
        )
        .map_err(terr("building the UNet"))?;
        let vars = self.params.vars().to_vec();
        let mut acc = GradAccumulator::new(vars.len());
        let mut report = StepReport {
            step: self.step + 1,
            lr: s.lr.lr(self.step),
            ..Default::default()
        };
        let (mut aux_sum, mut aux_n, mut ratios) = (0.0, 0, Vec::new());
        let inv_accum = 1.0 / s.grad_accum as f64;
        for micro in 0..s.grad_accum {
            let mut rng = step_rng(s.seed, self.step, micro as u64);
            let first = (self.step * s.grad_accum as u64 + micro as u64) * s.batch_size as u64;
            let indices: Vec<usize> = (0..s.batch_size as u64)
                .map(|j| self.order.at(first + j))
                .collect();
            let batch = make_batch(
                &self.latents,
                &self.entries,
                &indices,
                BatchSettings {
                    crop_w: s.crop_w,
                    caption_dropout: s.caption_dropout,
                    scaling_factor: self.sd.vae.config().scaling_factor,
                },
                &mut rng,
                &self.device,
            )?;
            let z0 = &batch.latents;
            let dims = z0.dims().to_vec();
            let b = dims[0];
            let mut noise = SeededNoise::new(rng.random());
            let mut gauss = |shape: &[usize]| -> Result<Tensor> {
                let n = shape.iter().product();
                Tensor::from_vec(noise.values(n), shape, &self.device).map_err(terr("noise"))
            };
            let mut eps = gauss(&dims)?;
            if s.noise_offset > 0.0 {
                let off = (gauss(&[b, dims[1], 1, 1])? * s.noise_offset).map_err(terr("noise"))?;
                eps = eps.broadcast_add(&off).map_err(terr("noise offset"))?;
            }
            let model_eps = if s.input_perturbation > 0.0 {
                (&eps + (gauss(&dims)? * s.input_perturbation).map_err(terr("noise"))?)
                    .map_err(terr("input perturbation"))?
            } else {
                eps.clone()
            };
            let t_len = self.schedule.len();
            let ts: Vec<usize> = (0..b)
                .map(|_| match s.aux {
                    Some(a) if rng.random::<f64>() < a.low_t_share => {
                        rng.random_range(0..=a.t_max.min(t_len - 1))
                    }
                    _ => rng.random_range(0..t_len),
                })
                .collect();
            let x_t = self.schedule.add_noise(z0, &model_eps, &ts)?;
            let target = self.schedule.target(z0, &eps, &ts, s.prediction)?;
            let ctx: Vec<Tensor> = batch
                .captions
                .iter()
                .map(|c| self.embed(c))
                .collect::<Result<_>>()?;
            let ctx = Tensor::cat(&ctx, 0).map_err(terr("text batch"))?;
            let t_tensor = Tensor::from_vec(
                ts.iter().map(|&t| t as f32).collect::<Vec<_>>(),
                b,
                &self.device,
            )
            .map_err(terr("timesteps"))?;
            let segs = unet.segments(&ctx);
            let inputs = x_t
                .to_dtype(s.compute_dtype)
                .and_then(|x| unet.segment_inputs(&x, &t_tensor))
                .map_err(terr("UNet input"))?;
            // with checkpointing the UNet output is a leaf: the loss is
            // differentiated down to it, and the tape takes it from there
            let (out, tape) = if s.gradient_checkpointing {
                let tape = Tape::record(&segs, inputs).map_err(terr("UNet forward"))?;
                let leaf = Var::from_tensor(tape.output()).map_err(terr("UNet forward"))?;
                (leaf.as_tensor().clone(), Some((tape, leaf)))
            } else {
                let out = segments::run(&segs, inputs).map_err(terr("UNet forward"))?;
                (out, None)
            };
            let out = out.to_dtype(DType::F32).map_err(terr("UNet forward"))?;
            let backprop = |loss: &Tensor| -> Result<GradStore> {
                let grads = loss.backward().map_err(terr("backward"))?;
                let Some((tape, leaf)) = &tape else {
                    return Ok(grads);
                };
                match grads.get(leaf.as_tensor()) {
                    Some(cot) => tape
                        .backward(&segs, cot, &vars)
                        .map_err(terr("checkpointed backward")),
                    None => Ok(GradStore::default()),
                }
            };
            let weights = self.schedule.loss_weights(&ts, s.snr_gamma, s.prediction)?;
            let diff = weighted_mse(&out, &target, &weights)?;
            let diff_v = scalar(&diff)?;
            if !diff_v.is_finite() {
                return Err(Error::InvalidData {
                    file: format!("training step {}", self.step + 1),
                    reason: format!("diffusion loss is {diff_v}"),
                });
            }
            report.diffusion_loss += diff_v * inv_accum;
            let aux = match (&self.judge, s.aux) {
                (Some(judge), Some(a)) => {
                    let sel: Vec<(usize, usize)> = batch
                        .indices
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| ts[*i] <= a.t_max)
                        .filter_map(|(i, &ex)| {
                            let raga = self.entries[ex].raga.as_deref()?;
                            Some((i, judge.class_of(raga)?))
                        })
                        .collect();
                    if sel.is_empty() {
                        None
                    } else {
                        let x0 = self.schedule.predicted_x0(&x_t, &out, &ts, s.prediction)?;
                        let rows = Tensor::from_vec(
                            sel.iter().map(|p| p.0 as u32).collect::<Vec<_>>(),
                            sel.len(),
                            &self.device,
                        )
                        .map_err(terr("aux rows"))?;
                        let x0 = x0.index_select(&rows, 0).map_err(terr("aux rows"))?;
                        let labels: Vec<usize> = sel.iter().map(|p| p.1).collect();
                        let l = judge.loss(&x0, &labels)?;
                        Some((l, a.lambda))
                    }
                }
                _ => None,
            };
            let diff_scaled = (diff * inv_accum).map_err(terr("loss"))?;
            match aux {
                Some((ce, lambda)) if lambda > 0.0 => {
                    let raw = scalar(&ce)?;
                    aux_sum += raw;
                    aux_n += 1;
                    report.loss += (diff_v + lambda * raw) * inv_accum;
                    let weighted = (ce * lambda).map_err(terr("aux loss"))?;
                    let aux_scaled = (weighted * inv_accum).map_err(terr("loss"))?;
                    if measure_aux {
                        let gd = backprop(&diff_scaled)?;
                        let ga = backprop(&aux_scaled)?;
                        let norm_of = |g: &GradStore| {
                            let list: Vec<Option<Tensor>> =
                                vars.iter().map(|v| g.get(v.as_tensor()).cloned()).collect();
                            grad_norm(&list)
                        };
                        let (nd, na) = (norm_of(&gd)?, norm_of(&ga)?);
                        if nd > 0.0 {
                            ratios.push(na / nd);
                        }
                        acc.add(&vars, &gd)?;
                        acc.add(&vars, &ga)?;
                    } else {
                        let total = (diff_scaled + aux_scaled).map_err(terr("loss"))?;
                        acc.add(&vars, &backprop(&total)?)?;
                    }
                }
                other => {
                    // lambda 0: the classifier's verdict is logged, not trained on
                    if let Some((ce, _)) = other {
                        aux_sum += scalar(&ce)?;
                        aux_n += 1;
                    }
                    report.loss += diff_v * inv_accum;
                    acc.add(&vars, &backprop(&diff_scaled)?)?;
                }
            }
        }
        let mut grads = acc.take();
        report.grad_norm = clip_grad_norm(&mut grads, s.max_grad_norm)?;
        self.opt.step(&vars, &grads, report.lr)?;
        if let Some(ema) = &mut self.ema {
            ema.update(&vars)?;
        }
        self.step += 1;
        if aux_n > 0 {
            report.aux_loss = Some(aux_sum / aux_n as f64);
        }
        if !ratios.is_empty() {
            report.aux_grad_ratio = Some(ratios.iter().sum::<f64>() / ratios.len() as f64);
        }
        Ok(report)
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.to_scalar::<f64>())
        .map_err(terr("loss value"))
}
