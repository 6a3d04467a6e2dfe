//! The denoising objective: noising clean latents, the regression target
//! (epsilon or v), min-SNR weights, the predicted clean latent and the
//! weighted mean-squared error, after diffusers' `train_text_to_image`.
//!
//! Per-sample coefficients are computed in f64 on the host and applied as
//! `[batch, 1, 1, 1]` tensors, so each sample has its own timestep.

use candle_core::{DType, Device, Tensor};

use crate::diffusion::schedulers::SchedulerConfig;
use crate::error::terr;
use crate::error::{Error, Result};

/// What the UNet is trained to predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// The added noise (SD 1.x, riffusion).
    Epsilon,
    /// The velocity `sqrt(abar) eps - sqrt(1 - abar) z0` (SD 2.x 768).
    #[serde(rename = "v_prediction")]
    V,
}

impl Prediction {
    /// The prediction type a scheduler config names.
    pub fn of(config: &SchedulerConfig) -> Self {
        if config.v_prediction() {
            Prediction::V
        } else {
            Prediction::Epsilon
        }
    }
}

/// The training noise schedule: alpha-bar per timestep.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    abar: Vec<f64>,
}

impl NoiseSchedule {
    /// The schedule of a scheduler config (SD: scaled-linear betas).
    pub fn new(config: &SchedulerConfig) -> Self {
        Self {
            abar: config.alphas_cumprod(),
        }
    }

    /// Number of training timesteps.
    pub fn len(&self) -> usize {
        self.abar.len()
    }

    /// Whether the schedule has no timestep.
    pub fn is_empty(&self) -> bool {
        self.abar.is_empty()
    }

    /// Alpha-bar at timestep `t`.
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.abar[t]
    }

    /// Signal-to-noise ratio `abar / (1 - abar)` at `t`.
    pub fn snr(&self, t: usize) -> f64 {
        let a = self.abar[t];
        a / (1.0 - a)
    }

    fn check(&self, ts: &[usize]) -> Result<()> {
        match ts.iter().find(|&&t| t >= self.abar.len()) {
            Some(t) => Err(Error::InvalidParameter {
                field: "timestep",
                reason: format!("{t} is outside 0..{}", self.abar.len()),
            }),
            None => Ok(()),
        }
    }

    /// `f(abar_t)` per sample as a `[batch, 1, 1, 1]` tensor.
    fn coeff(
        &self,
        ts: &[usize],
        f: impl Fn(f64) -> f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        self.check(ts)?;
        let v: Vec<f32> = ts.iter().map(|&t| f(self.abar[t]) as f32).collect();
        Tensor::from_vec(v, (ts.len(), 1, 1, 1), device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(terr("noise schedule coefficients"))
    }

    /// `x_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps`.
    pub fn add_noise(&self, z0: &Tensor, eps: &Tensor, ts: &[usize]) -> Result<Tensor> {
        let (dt, dev) = (z0.dtype(), z0.device());
        let a = self.coeff(ts, f64::sqrt, dt, dev)?;
        let s = self.coeff(ts, |a| (1.0 - a).sqrt(), dt, dev)?;
        combine(z0, &a, eps, &s, 1.0).map_err(terr("adding noise"))
    }

    /// The regression target for `prediction`.
    pub fn target(
        &self,
        z0: &Tensor,
        eps: &Tensor,
        ts: &[usize],
        prediction: Prediction,
    ) -> Result<Tensor> {
        match prediction {
            Prediction::Epsilon => {
                self.check(ts)?;
                Ok(eps.clone())
            }
            Prediction::V => {
                let (dt, dev) = (z0.dtype(), z0.device());
                let a = self.coeff(ts, f64::sqrt, dt, dev)?;
                let s = self.coeff(ts, |a| (1.0 - a).sqrt(), dt, dev)?;
                combine(eps, &a, z0, &s, -1.0).map_err(terr("v target"))
            }
        }
    }

    /// The clean latent implied by a model output at `x_t` (differentiable
    /// in `model_out`): `(x_t - sqrt(1 - abar) eps_hat) / sqrt(abar)` or
    /// `sqrt(abar) x_t - sqrt(1 - abar) v_hat`.
    pub fn predicted_x0(
        &self,
        x_t: &Tensor,
        model_out: &Tensor,
        ts: &[usize],
        prediction: Prediction,
    ) -> Result<Tensor> {
        let (dt, dev) = (model_out.dtype(), model_out.device());
        let x_t = x_t.to_dtype(dt).map_err(terr("predicted x0"))?;
        let (cx, co) = match prediction {
            Prediction::Epsilon => (
                self.coeff(ts, |a| 1.0 / a.sqrt(), dt, dev)?,
                self.coeff(ts, |a| ((1.0 - a) / a).sqrt(), dt, dev)?,
            ),
            Prediction::V => (
                self.coeff(ts, f64::sqrt, dt, dev)?,
                self.coeff(ts, |a| (1.0 - a).sqrt(), dt, dev)?,
            ),
        };
        combine(&x_t, &cx, model_out, &co, -1.0).map_err(terr("predicted x0"))
    }

    /// Per-sample loss weights: 1 without `snr_gamma`, else min-SNR
    /// weighting `min(snr, gamma) / snr` (epsilon) or
    /// `min(snr, gamma) / (snr + 1)` (v).
    pub fn loss_weights(
        &self,
        ts: &[usize],
        snr_gamma: Option<f64>,
        prediction: Prediction,
    ) -> Result<Vec<f64>> {
        self.check(ts)?;
        Ok(ts
            .iter()
            .map(|&t| match snr_gamma {
                None => 1.0,
                Some(g) => {
                    let snr = self.snr(t);
                    match prediction {
                        Prediction::Epsilon => snr.min(g) / snr,
                        Prediction::V => snr.min(g) / (snr + 1.0),
                    }
                }
            })
            .collect())
    }
}

/// `x * cx + sign * y * cy` with per-sample coefficient tensors.
fn combine(
    x: &Tensor,
    cx: &Tensor,
    y: &Tensor,
    cy: &Tensor,
    sign: f64,
) -> candle_core::Result<Tensor> {
    x.broadcast_mul(cx)? + (y.broadcast_mul(cy)? * sign)?
}

/// `mean_b(w_b * mean_chw((pred - target)^2))`, computed in f32 (f64 for
/// f64 inputs); a scalar.
pub fn weighted_mse(pred: &Tensor, target: &Tensor, weights: &[f64]) -> Result<Tensor> {
    let f = || -> candle_core::Result<Tensor> {
        let dt = if pred.dtype() == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let pred = pred.to_dtype(dt)?;
        let target = target.to_dtype(dt)?;
        let b = pred.dim(0)?;
        let per_sample = (pred - target)?.sqr()?.flatten_from(1)?.mean(1)?;
        let w = Tensor::from_vec(weights.to_vec(), b, per_sample.device())?.to_dtype(dt)?;
        (per_sample * w)?.mean_all()
    };
    if weights.len() != pred.dim(0).map_err(terr("loss"))? {
        return Err(Error::InvalidParameter {
            field: "loss weights",
            reason: format!(
                "{} weights for a batch of {}",
                weights.len(),
                pred.dims()[0]
            ),
        });
    }
    f().map_err(terr("diffusion loss"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched() -> NoiseSchedule {
        NoiseSchedule::new(&SchedulerConfig::sd15())
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn sd15_schedule_matches_published_values() {
        let s = sched();
        assert_eq!(s.len(), 1000);
        // diffusers' scaled_linear SD schedule: abar[0] = 1 - 0.00085,
        // abar[999] ~ 0.0047
        assert!((s.alpha_bar(0) - 0.99915).abs() < 1e-6); // f32 betas, as diffusers
        assert!(
            (s.alpha_bar(999) - 0.004_660_5).abs() < 1e-6,
            "{}",
            s.alpha_bar(999)
        );
        // the 1/sqrt(snr) factors quoted in the training notes
        assert!((1.0 / s.snr(200).sqrt() - 0.57).abs() < 0.01);
        assert!((1.0 / s.snr(999).sqrt() - 14.6).abs() < 0.1);
    }

    #[test]
    fn predicted_x0_inverts_noising_for_both_parameterisations() {
        let dev = Device::Cpu;
        let s = sched();
        let z0 = Tensor::randn(0f32, 1., (3, 4, 2, 5), &dev).unwrap();
        let eps = Tensor::randn(0f32, 1., (3, 4, 2, 5), &dev).unwrap();
        let ts = [0, 500, 999];
        let xt = s.add_noise(&z0, &eps, &ts).unwrap();
        for p in [Prediction::Epsilon, Prediction::V] {
            let target = s.target(&z0, &eps, &ts, p).unwrap();
            let x0 = s.predicted_x0(&xt, &target, &ts, p).unwrap();
            // at t = 999 eps is scaled by 14.6: allow f32 round-off
            assert!(max_diff(&x0, &z0) < 1e-4, "{p:?}");
        }
    }

    #[test]
    fn min_snr_weights_clip_at_gamma() {
        let s = sched();
        let w = s
            .loss_weights(&[0, 999], Some(5.0), Prediction::Epsilon)
            .unwrap();
        assert!((w[0] - 5.0 / s.snr(0)).abs() < 1e-12);
        assert_eq!(w[1], 1.0); // snr < gamma: weight 1
        let v = s.loss_weights(&[999], Some(5.0), Prediction::V).unwrap();
        assert!((v[0] - s.snr(999) / (s.snr(999) + 1.0)).abs() < 1e-12);
        assert_eq!(
            s.loss_weights(&[3], None, Prediction::V).unwrap(),
            vec![1.0]
        );
        assert!(s.loss_weights(&[1000], None, Prediction::V).is_err());
    }

    #[test]
    fn weighted_mse_weights_each_sample() {
        let dev = Device::Cpu;
        let pred = Tensor::new(&[[1f32, 1.], [2., 2.]], &dev).unwrap();
        let target = Tensor::zeros((2, 2), DType::F32, &dev).unwrap();
        // per sample: 1 and 4; weights 1 and 0.5: (1 + 2) / 2
        let l = weighted_mse(&pred, &target, &[1.0, 0.5]).unwrap();
        assert!((l.to_scalar::<f32>().unwrap() - 1.5).abs() < 1e-6);
        assert!(weighted_mse(&pred, &target, &[1.0]).is_err());
    }
}
