//! Optimisation: AdamW with saveable state, learning-rate schedules with
//! warm-up (the `transformers` / diffusers formulas), gradient accumulation,
//! gradient-norm clipping and an exponential moving average of the weights.
//!
//! Everything works on a list of f32 master [`Var`]s and gradients aligned
//! with it; updates are computed on detached tensors, so no graph grows.

use candle_core::{backprop::GradStore, DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::terr;
use crate::error::{Error, Result};

/// AdamW hyper-parameters (defaults: torch / diffusers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// AdamW over a fixed list of variables, with its moments exposed so a run
/// can be checkpointed and resumed exactly.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    /// Optimiser steps taken.
    pub steps: u64,
    /// First moments, one per variable.
    pub m: Vec<Tensor>,
    /// Second moments, one per variable.
    pub v: Vec<Tensor>,
}

impl AdamW {
    /// Fresh (zero) moments for `vars`.
    pub fn new(vars: &[Var], config: AdamWConfig) -> Result<Self> {
        let zeros = |v: &Var| v.zeros_like().map_err(terr("optimizer state"));
        Ok(Self {
            config,
            steps: 0,
            m: vars.iter().map(zeros).collect::<Result<_>>()?,
            v: vars.iter().map(zeros).collect::<Result<_>>()?,
        })
    }

    /// One update at learning rate `lr`; a `None` gradient counts as zero
    /// (the moments still decay, as in torch when a gradient is zero).
    pub fn step(&mut self, vars: &[Var], grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        if vars.len() != self.m.len() || grads.len() != vars.len() {
            return Err(Error::InvalidParameter {
                field: "optimizer",
                reason: format!(
                    "{} variables, {} gradients, state for {}",
                    vars.len(),
                    grads.len(),
                    self.m.len()
                ),
            });
        }
        self.steps += 1;
        let c = self.config;
        let t = self.steps as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for (i, var) in vars.iter().enumerate() {
            let mut f = || -> candle_core::Result<()> {
                let theta = var.as_tensor().detach();
                let g = match &grads[i] {
                    Some(g) => g.detach().to_dtype(theta.dtype())?,
                    None => theta.zeros_like()?,
                };
                let m = ((&self.m[i] * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
                let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                let denom = ((&v / bc2)?.sqrt()? + c.eps)?;
                let update = ((&m / bc1)? / denom)?;
                let next = ((theta * (1.0 - lr * c.weight_decay))? - (update * lr)?)?;
                var.set(&next)?;
                self.m[i] = m;
                self.v[i] = v;
                Ok(())
            };
            f().map_err(terr("AdamW step"))?;
        }
        Ok(())
    }
}

/// A learning-rate schedule, named as in diffusers' `--lr_scheduler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrScheduleKind {
    /// The base rate throughout (no warm-up).
    Constant,
    /// Linear warm-up, then the base rate.
    ConstantWithWarmup,
    /// Linear warm-up, then linear decay to 0 at the last step.
    Linear,
    /// Linear warm-up, then half a cosine down to 0.
    Cosine,
    /// Linear warm-up, then cosine decays restarting `cycles` times.
    CosineWithRestarts,
    /// Linear warm-up, then polynomial (power 1) decay to 1e-7.
    Polynomial,
}

crate::choices!(LrScheduleKind, "lr_scheduler", [
    Constant => "constant": "the base rate throughout",
    ConstantWithWarmup => "constant_with_warmup": "linear warm-up, then the base rate",
    Linear => "linear": "warm-up, then linear decay to 0",
    Cosine => "cosine": "warm-up, then half a cosine down to 0",
    CosineWithRestarts => "cosine_with_restarts": "warm-up, then restarting cosine decays",
    Polynomial => "polynomial": "warm-up, then polynomial decay to 1e-7",
]);

/// A learning-rate schedule over a run of `total_steps` optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The shape.
    pub kind: LrScheduleKind,
    /// Base (peak) learning rate.
    pub base_lr: f64,
    /// Warm-up steps.
    pub warmup_steps: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Cosine cycles (0.5 = one half-cosine for `cosine`; restarts for
    /// `cosine_with_restarts`, default 1).
    pub cycles: f64,
}

impl LrSchedule {
    /// The learning rate of optimiser step `step` (0-based), as
    /// `transformers`' `LambdaLR` schedules give it.
    pub fn lr(&self, step: u64) -> f64 {
        let (s, w, t) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        let warm = |s: f64| s / w.max(1.0);
        let progress = ((s - w) / (t - w).max(1.0)).max(0.0);
        let factor = match self.kind {
            LrScheduleKind::Constant => 1.0,
            _ if s < w => warm(s),
            LrScheduleKind::ConstantWithWarmup => 1.0,
            LrScheduleKind::Linear => ((t - s) / (t - w).max(1.0)).max(0.0),
            LrScheduleKind::Cosine => {
                (0.5 * (1.0 + (std::f64::consts::PI * 2.0 * self.cycles * progress).cos())).max(0.0)
            }
            LrScheduleKind::CosineWithRestarts => {
                if progress >= 1.0 {
                    0.0
                } else {
                    let phase = (self.cycles * progress) % 1.0;
                    (0.5 * (1.0 + (std::f64::consts::PI * phase).cos())).max(0.0)
                }
            }
            LrScheduleKind::Polynomial => {
                let end = 1e-7;
                if s > t || self.base_lr <= end {
                    end / self.base_lr
                } else {
                    let decay = (self.base_lr - end) * (1.0 - progress) + end;
                    decay / self.base_lr
                }
            }
        };
        self.base_lr * factor
    }
}

/// Gradients summed over micro-batches, aligned with a variable list.
#[derive(Debug)]
pub struct GradAccumulator {
    sums: Vec<Option<Tensor>>,
}

impl GradAccumulator {
    /// An empty accumulator for `n` variables.
    pub fn new(n: usize) -> Self {
        Self {
            sums: vec![None; n],
        }
    }

    /// Adds the gradients `store` holds for `vars` (detached).
    pub fn add(&mut self, vars: &[Var], store: &GradStore) -> Result<()> {
        for (i, var) in vars.iter().enumerate() {
            if let Some(g) = store.get(var.as_tensor()) {
                let g = g.detach();
                self.sums[i] = Some(match self.sums[i].take() {
                    Some(s) => (s + g).map_err(terr("gradient accumulation"))?,
                    None => g,
                });
            }
        }
        Ok(())
    }

    /// The sums, leaving the accumulator empty.
    pub fn take(&mut self) -> Vec<Option<Tensor>> {
        let n = self.sums.len();
        std::mem::replace(&mut self.sums, vec![None; n])
    }
}

/// The global L2 norm of `grads`.
pub fn grad_norm(grads: &[Option<Tensor>]) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.iter().flatten() {
        let s = g
            .to_dtype(DType::F32)
            .and_then(|g| g.sqr()?.sum_all()?.to_scalar::<f32>())
            .map_err(terr("gradient norm"))?;
        total += s as f64;
    }
    Ok(total.sqrt())
}

/// Scales `grads` so that their global norm is at most `max_norm` (torch's
/// `clip_grad_norm_`); returns the norm before clipping. A non-finite norm
/// is an error: the step would destroy the weights.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let norm = grad_norm(grads)?;
    if !norm.is_finite() {
        return Err(Error::InvalidData {
            file: "training step".into(),
            reason: format!("gradient norm is {norm} (NaN or infinite loss)"),
        });
    }
    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        for g in grads.iter_mut().flatten() {
            *g = (&*g * scale).map_err(terr("gradient clipping"))?;
        }
    }
    Ok(norm)
}

/// An exponential moving average of the weights (diffusers' `EMAModel`
/// without warm-up: decay `min(max_decay, (1 + n) / (10 + n))`, 0 on the
/// first update).
#[derive(Debug)]
pub struct Ema {
    /// Upper bound of the decay (diffusers: 0.9999).
    pub max_decay: f64,
    /// Updates applied.
    pub updates: u64,
    /// The averaged weights, one per variable.
    pub shadow: Vec<Tensor>,
}

impl Ema {
    /// Starts from the current weights.
    pub fn new(vars: &[Var], max_decay: f64) -> Result<Self> {
        let shadow = vars
            .iter()
            .map(|v| v.as_tensor().detach().copy())
            .collect::<candle_core::Result<_>>()
            .map_err(terr("EMA copy"))?;
        Ok(Self {
            max_decay,
            updates: 0,
            shadow,
        })
    }

    /// The decay of update number `n` (1-based).
    pub fn decay(&self, n: u64) -> f64 {
        let step = n.saturating_sub(1) as f64;
        if step <= 0.0 {
            0.0
        } else {
            ((1.0 + step) / (10.0 + step)).min(self.max_decay)
        }
    }

    /// Moves the average towards the current weights.
    pub fn update(&mut self, vars: &[Var]) -> Result<()> {
        self.updates += 1;
        let d = self.decay(self.updates);
        for (s, v) in self.shadow.iter_mut().zip(vars) {
            let cur = v.as_tensor().detach();
            *s = s
                .affine(d, 0.0)
                .and_then(|a| a + cur.affine(1.0 - d, 0.0)?)
                .map_err(terr("EMA update"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn sched(kind: LrScheduleKind) -> LrSchedule {
        LrSchedule {
            kind,
            base_lr: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            cycles: if kind == LrScheduleKind::Cosine {
                0.5
            } else {
                1.0
            },
        }
    }

    #[test]
    fn schedules_follow_the_transformers_formulas() {
        use LrScheduleKind::*;
        assert_eq!(sched(Constant).lr(0), 1.0);
        for k in [
            ConstantWithWarmup,
            Linear,
            Cosine,
            CosineWithRestarts,
            Polynomial,
        ] {
            let s = sched(k);
            assert_eq!(s.lr(0), 0.0, "{k:?}");
            assert!((s.lr(5) - 0.5).abs() < 1e-12, "{k:?}");
            assert!((s.lr(10) - 1.0).abs() < 1e-12, "{k:?}");
        }
        assert!((sched(Linear).lr(60) - 0.5).abs() < 1e-12);
        assert_eq!(sched(Linear).lr(110), 0.0);
        assert!((sched(Cosine).lr(60) - 0.5).abs() < 1e-12);
        assert!(sched(Cosine).lr(110).abs() < 1e-12);
        let mut r = sched(CosineWithRestarts);
        r.cycles = 2.0;
        // half-way through the first of two cycles, then restarted
        assert!((r.lr(35) - 0.5).abs() < 1e-12);
        assert!((r.lr(60) - 1.0).abs() < 1e-12);
        assert!((sched(Polynomial).lr(60) - (0.5 + 0.5e-7)).abs() < 1e-12);
        assert!((sched(Polynomial).lr(200) - 1e-7).abs() < 1e-15);
    }

    #[test]
    fn adamw_matches_a_hand_computed_step() {
        let dev = Device::Cpu;
        let var = Var::new(&[1.0f32, -2.0], &dev).unwrap();
        let vars = [var.clone()];
        let cfg = AdamWConfig::default();
        let mut opt = AdamW::new(&vars, cfg).unwrap();
        let g = Tensor::new(&[0.5f32, -0.25], &dev).unwrap();
        opt.step(&vars, &[Some(g)], 0.1).unwrap();
        // first step: m_hat = g, v_hat = g^2, update = sign(g) (up to eps)
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        let want = [
            1.0 * (1.0 - 0.1 * 0.01) - 0.1,
            -2.0 * (1.0 - 0.1 * 0.01) + 0.1,
        ];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b as f32).abs() < 1e-6, "{got:?}");
        }
        // a missing gradient leaves only the decay and the old momentum
        opt.step(&vars, &[None], 0.1).unwrap();
        assert_eq!(opt.steps, 2);
    }

    #[test]
    fn clipping_caps_the_global_norm() {
        let dev = Device::Cpu;
        let mut grads = vec![
            Some(Tensor::new(&[3f32, 0.], &dev).unwrap()),
            None,
            Some(Tensor::new(&[4f32], &dev).unwrap()),
        ];
        let before = clip_grad_norm(&mut grads, 1.0).unwrap();
        assert!((before - 5.0).abs() < 1e-6);
        assert!((grad_norm(&grads).unwrap() - 1.0).abs() < 1e-5);
        let mut small = vec![Some(Tensor::new(&[0.3f32], &dev).unwrap())];
        clip_grad_norm(&mut small, 1.0).unwrap();
        assert_eq!(small[0].as_ref().unwrap().to_vec1::<f32>().unwrap(), [0.3]);
        let mut bad = vec![Some(Tensor::new(&[f32::NAN], &dev).unwrap())];
        assert!(clip_grad_norm(&mut bad, 1.0).is_err());
    }

    #[test]
    fn ema_copies_first_then_averages() {
        let dev = Device::Cpu;
        let var = Var::new(&[0f32], &dev).unwrap();
        let vars = [var.clone()];
        let mut ema = Ema::new(&vars, 0.9999).unwrap();
        var.set(&Tensor::new(&[1f32], &dev).unwrap()).unwrap();
        ema.update(&vars).unwrap();
        assert_eq!(ema.shadow[0].to_vec1::<f32>().unwrap(), [1.0]);
        var.set(&Tensor::new(&[0f32], &dev).unwrap()).unwrap();
        ema.update(&vars).unwrap();
        // update 2: decay (1 + 1) / (10 + 1)
        let want = 2.0 / 11.0;
        assert!((ema.shadow[0].to_vec1::<f32>().unwrap()[0] - want).abs() < 1e-6);
        assert_eq!(ema.decay(1_000_000), 0.9999);
    }
}
