//! The four samplers, each a transcription of diffusers' update rule with
//! scalar coefficients in f64 and tensor arithmetic in f32.

use candle_core::{DType, Tensor};

use super::{spaced_timesteps, NoiseSource, Sampler, SamplerState, SchedulerConfig};
use crate::error::{Error, Result};

fn terr(e: candle_core::Error) -> Error {
    Error::Tensor {
        context: "sampler step".into(),
        source: e,
    }
}

fn f32_of(t: &Tensor) -> candle_core::Result<Tensor> {
    t.to_dtype(DType::F32)
}

/// `a * x + b * y`.
fn axpby(a: f64, x: &Tensor, b: f64, y: &Tensor) -> candle_core::Result<Tensor> {
    (x * a)? + (y * b)?
}

/// Epsilon from a v-prediction (or the output itself for epsilon models).
fn to_epsilon(
    v_pred: bool,
    out: &Tensor,
    sample: &Tensor,
    abar: f64,
) -> candle_core::Result<Tensor> {
    if v_pred {
        axpby(abar.sqrt(), out, (1.0 - abar).sqrt(), sample)
    } else {
        Ok(out.clone())
    }
}

/// DDPM forward noising at alpha-bar `abar`.
fn noise_to(abar: f64, x: &Tensor, noise: &Tensor) -> candle_core::Result<Tensor> {
    let dtype = x.dtype();
    axpby(
        abar.sqrt(),
        &f32_of(x)?,
        (1.0 - abar).sqrt(),
        &f32_of(noise)?,
    )?
    .to_dtype(dtype)
}

/// Sigma (Karras notation) for every timestep, linearly interpolated at
/// `timesteps` as numpy.interp does, plus a final 0.
fn sigmas_at(abar: &[f64], timesteps: &[f64]) -> Vec<f64> {
    let sig: Vec<f64> = abar.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
    let mut out: Vec<f64> = timesteps
        .iter()
        .map(|&t| {
            let t = t.clamp(0.0, (sig.len() - 1) as f64);
            let i = t.floor() as usize;
            let f = t - i as f64;
            if i + 1 < sig.len() {
                sig[i] * (1.0 - f) + sig[i + 1] * f
            } else {
                sig[i]
            }
        })
        // diffusers stores sigmas as f32
        .map(|s| s as f32 as f64)
        .collect();
    out.push(0.0);
    out
}

/// Alpha-bar per training timestep, and the value after the last step
/// (1 with `set_alpha_to_one`, else alpha-bar of step 0), for the samplers
/// that step between discrete timesteps.
#[derive(Debug, Clone)]
struct AlphaBars {
    abar: Vec<f64>,
    after_last: f64,
}

impl AlphaBars {
    fn new(config: &SchedulerConfig) -> Self {
        let abar = config.alphas_cumprod();
        let after_last = if config.set_alpha_to_one {
            1.0
        } else {
            abar[0]
        };
        Self { abar, after_last }
    }

    /// Alpha-bar at timestep `t`; negative `t` is past the last step.
    fn at(&self, t: i64) -> f64 {
        if t >= 0 {
            self.abar[t as usize]
        } else {
            self.after_last
        }
    }
}

/// DDIM with eta 0 (deterministic).
#[derive(Debug, Clone)]
pub struct Ddim {
    abar: AlphaBars,
    timesteps: Vec<f64>,
    ratio: usize,
    v_pred: bool,
    clip: Option<f64>,
}

impl Ddim {
    /// A DDIM run of `steps` steps ("leading" spacing by default).
    pub fn new(config: &SchedulerConfig, steps: usize) -> Self {
        Self {
            timesteps: spaced_timesteps(config, "leading", steps),
            ratio: config.num_train_timesteps / steps,
            abar: AlphaBars::new(config),
            v_pred: config.v_prediction(),
            clip: if config.clip_sample.unwrap_or(true) {
                Some(config.clip_sample_range)
            } else {
                None
            },
        }
    }
}

impl Sampler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn step(
        &mut self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let run = || -> candle_core::Result<Tensor> {
            let t = self.timesteps[index] as i64;
            let prev = t - self.ratio as i64;
            let (a_t, a_prev) = (self.abar.at(t), self.abar.at(prev));
            let (x, out) = (f32_of(sample)?, f32_of(model_output)?);
            let (x0, eps) = if self.v_pred {
                (
                    axpby(a_t.sqrt(), &x, -(1.0 - a_t).sqrt(), &out)?,
                    axpby(a_t.sqrt(), &out, (1.0 - a_t).sqrt(), &x)?,
                )
            } else {
                (
                    axpby(1.0 / a_t.sqrt(), &x, -(1.0 - a_t).sqrt() / a_t.sqrt(), &out)?,
                    out,
                )
            };
            let x0 = match self.clip {
                Some(r) => x0.clamp(-r as f32, r as f32)?,
                None => x0,
            };
            axpby(a_prev.sqrt(), &x0, (1.0 - a_prev).sqrt(), &eps)?.to_dtype(sample.dtype())
        };
        run().map_err(terr)
    }
    fn add_noise(&self, x: &Tensor, noise: &Tensor, index: usize) -> candle_core::Result<Tensor> {
        noise_to(self.abar.at(self.timesteps[index] as i64), x, noise)
    }
}

/// PNDM's pseudo linear multistep method (PLMS), with `skip_prk_steps`.
#[derive(Debug, Clone)]
pub struct Pndm {
    abar: AlphaBars,
    timesteps: Vec<f64>,
    ratio: i64,
    v_pred: bool,
    ets: Vec<Tensor>,
    counter: usize,
    cur_sample: Option<Tensor>,
}

impl Pndm {
    /// A PLMS run of `steps` steps ("leading" spacing by default); the
    /// second timestep is repeated, as diffusers does.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        if !config.skip_prk_steps {
            return Err(Error::param(
                "scheduler",
                "PNDM with Runge-Kutta warm-up steps (skip_prk_steps = false) is not supported; \
                 SD and riffusion configs set skip_prk_steps = true",
            ));
        }
        let mut base = spaced_timesteps(config, "leading", steps);
        base.reverse(); // ascending, as diffusers builds it
        let n = base.len();
        let mut plms: Vec<f64> = base[..n.saturating_sub(1)].to_vec();
        if n >= 2 {
            plms.push(base[n - 2]);
        }
        plms.push(base[n - 1]);
        plms.reverse();
        Ok(Self {
            abar: AlphaBars::new(config),
            timesteps: plms,
            ratio: (config.num_train_timesteps / steps) as i64,
            v_pred: config.v_prediction(),
            ets: Vec::new(),
            counter: 0,
            cur_sample: None,
        })
    }

    fn prev_sample(
        &self,
        x: &Tensor,
        t: i64,
        prev: i64,
        out: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (a_t, a_prev) = (self.abar.at(t), self.abar.at(prev));
        let eps = to_epsilon(self.v_pred, out, x, a_t)?;
        let b_t = 1.0 - a_t;
        let b_prev = 1.0 - a_prev;
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        axpby(sample_coeff, x, -(a_prev - a_t) / denom, &eps)
    }
}

impl Sampler for Pndm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn step(
        &mut self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let mut run = || -> candle_core::Result<Tensor> {
            let mut t = self.timesteps[index] as i64;
            let mut prev = t - self.ratio;
            let out = f32_of(model_output)?;
            let mut x = f32_of(sample)?;
            if self.counter != 1 {
                if self.ets.len() > 3 {
                    self.ets.remove(0);
                }
                self.ets.push(out.clone());
            } else {
                prev = t;
                t += self.ratio;
            }
            let e = &self.ets;
            let n = e.len();
            let combined = if n == 1 && self.counter == 0 {
                self.cur_sample = Some(x.clone());
                out
            } else if n == 1 && self.counter == 1 {
                x = self.cur_sample.take().unwrap_or(x);
                ((out + &e[0])? * 0.5)?
            } else if n == 2 {
                axpby(1.5, &e[1], -0.5, &e[0])?
            } else if n == 3 {
                ((axpby(23.0, &e[2], -16.0, &e[1])? + (&e[0] * 5.0)?)? / 12.0)?
            } else {
                let a = axpby(55.0, &e[3], -59.0, &e[2])?;
                let b = axpby(37.0, &e[1], -9.0, &e[0])?;
                ((a + b)? / 24.0)?
            };
            let prev_sample = self.prev_sample(&x, t, prev, &combined)?;
            self.counter += 1;
            prev_sample.to_dtype(sample.dtype())
        };
        run().map_err(terr)
    }
    fn add_noise(&self, x: &Tensor, noise: &Tensor, index: usize) -> candle_core::Result<Tensor> {
        noise_to(self.abar.at(self.timesteps[index] as i64), x, noise)
    }
    fn state(&self) -> SamplerState {
        let mut tensors = self.ets.clone();
        tensors.extend(self.cur_sample.clone());
        SamplerState {
            tensors,
            counters: vec![self.counter as u64, self.ets.len() as u64],
        }
    }
    fn restore(&mut self, mut state: SamplerState) -> Result<()> {
        let [counter, ets] = state.counters[..] else {
            return Err(Error::param(
                "scheduler",
                "a saved state for another sampler",
            ));
        };
        let ets = ets as usize;
        if ets > state.tensors.len() || state.tensors.len() > ets + 1 {
            return Err(Error::param(
                "scheduler",
                "a saved state for another sampler",
            ));
        }
        self.cur_sample = state.tensors.get(ets).cloned();
        state.tensors.truncate(ets);
        self.ets = state.tensors;
        self.counter = counter as usize;
        Ok(())
    }
}

/// Euler ancestral ("linspace" spacing by default): an Euler step to
/// sigma_down plus fresh noise of sigma_up.
#[derive(Debug, Clone)]
pub struct EulerAncestral {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    leading: bool,
    v_pred: bool,
}

impl EulerAncestral {
    /// An Euler-ancestral run of `steps` steps.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Self {
        let abar = config.alphas_cumprod();
        let timesteps = spaced_timesteps(config, "linspace", steps);
        Self {
            sigmas: sigmas_at(&abar, &timesteps),
            timesteps,
            leading: config.spacing("linspace") == "leading",
            v_pred: config.v_prediction(),
        }
    }
}

impl Sampler for EulerAncestral {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn init_noise_sigma(&self) -> f64 {
        let max = self.sigmas.iter().cloned().fold(0.0, f64::max);
        if self.leading {
            (max * max + 1.0).sqrt()
        } else {
            max
        }
    }
    fn scale_model_input(&self, sample: &Tensor, index: usize) -> candle_core::Result<Tensor> {
        let s = self.sigmas[index];
        sample / (s * s + 1.0).sqrt()
    }
    fn step(
        &mut self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let sigma = self.sigmas[index];
        let sigma_to = self.sigmas[index + 1];
        let fresh = noise.noise(model_output.dims(), model_output.device())?;
        let run = || -> candle_core::Result<Tensor> {
            let (x, out) = (f32_of(sample)?, f32_of(model_output)?);
            let x0 = if self.v_pred {
                let c = (sigma * sigma + 1.0).sqrt();
                axpby(-sigma / c, &out, 1.0 / (sigma * sigma + 1.0), &x)?
            } else {
                axpby(1.0, &x, -sigma, &out)?
            };
            let sigma_up = (sigma_to * sigma_to * (sigma * sigma - sigma_to * sigma_to)
                / (sigma * sigma))
                .sqrt();
            let sigma_down = (sigma_to * sigma_to - sigma_up * sigma_up).max(0.0).sqrt();
            let derivative = ((&x - x0)? / sigma)?;
            let prev = (x + (derivative * (sigma_down - sigma))?)?;
            (prev + (fresh * sigma_up)?)?.to_dtype(sample.dtype())
        };
        run().map_err(terr)
    }
    fn add_noise(&self, x: &Tensor, noise: &Tensor, index: usize) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        axpby(1.0, &f32_of(x)?, self.sigmas[index], &f32_of(noise)?)?.to_dtype(dtype)
    }
}

/// DPM-Solver++ of order 2, multistep, midpoint ("linspace" spacing by
/// default, lower order at the end of short runs, final sigma 0).
#[derive(Debug, Clone)]
pub struct DpmSolverPp2m {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    v_pred: bool,
    previous: Option<Tensor>,
    lower_order_nums: usize,
}

impl DpmSolverPp2m {
    /// A DPM-Solver++(2M) run of `steps` steps.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Self {
        let abar = config.alphas_cumprod();
        let n = config.num_train_timesteps;
        let timesteps: Vec<f64> = match config.spacing("linspace") {
            "linspace" => {
                let mut t: Vec<f64> = super::linspace(0.0, (n - 1) as f64, steps + 1)
                    .into_iter()
                    .map(super::round_even)
                    .collect();
                t.reverse();
                t.pop();
                t
            }
            "leading" => {
                let ratio = n / (steps + 1);
                (1..=steps)
                    .rev()
                    .map(|i| (i * ratio + config.steps_offset) as f64)
                    .collect()
            }
            _ => spaced_timesteps(config, "trailing", steps),
        };
        Self {
            sigmas: sigmas_at(&abar, &timesteps),
            timesteps,
            v_pred: config.v_prediction(),
            previous: None,
            lower_order_nums: 0,
        }
    }

    fn alpha_sigma(sigma: f64) -> (f64, f64) {
        let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
        (alpha, sigma * alpha)
    }
}

impl Sampler for DpmSolverPp2m {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn step(
        &mut self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let n = self.timesteps.len();
        let run = |this: &mut Self| -> candle_core::Result<Tensor> {
            let (x, out) = (f32_of(sample)?, f32_of(model_output)?);
            let (alpha_s0, sigma_s0) = Self::alpha_sigma(this.sigmas[index]);
            let x0 = if this.v_pred {
                axpby(alpha_s0, &x, -sigma_s0, &out)?
            } else {
                ((&x - (&out * sigma_s0)?)? / alpha_s0)?
            };
            // final sigma 0: the last step is always first order
            let lower_final = index == n - 1;
            let (alpha_t, sigma_t) = Self::alpha_sigma(this.sigmas[index + 1]);
            let lambda = |a: f64, s: f64| a.ln() - s.ln();
            let lambda_t = lambda(alpha_t, sigma_t);
            let lambda_s0 = lambda(alpha_s0, sigma_s0);
            let h = lambda_t - lambda_s0;
            let first = (-h).exp() - 1.0;
            let prev = match (&this.previous, this.lower_order_nums < 1 || lower_final) {
                (Some(m1), false) => {
                    let (alpha_s1, sigma_s1) = Self::alpha_sigma(this.sigmas[index - 1]);
                    let h0 = lambda_s0 - lambda(alpha_s1, sigma_s1);
                    let r0 = h0 / h;
                    let d1 = ((&x0 - m1)? * (1.0 / r0))?;
                    let base = axpby(sigma_t / sigma_s0, &x, -alpha_t * first, &x0)?;
                    (base - (d1 * (0.5 * alpha_t * first))?)?
                }
                _ => axpby(sigma_t / sigma_s0, &x, -alpha_t * first, &x0)?,
            };
            this.previous = Some(x0);
            if this.lower_order_nums < 2 {
                this.lower_order_nums += 1;
            }
            prev.to_dtype(sample.dtype())
        };
        run(self).map_err(terr)
    }
    fn add_noise(&self, x: &Tensor, noise: &Tensor, index: usize) -> candle_core::Result<Tensor> {
        let (alpha, sigma) = Self::alpha_sigma(self.sigmas[index]);
        let dtype = x.dtype();
        axpby(alpha, &f32_of(x)?, sigma, &f32_of(noise)?)?.to_dtype(dtype)
    }
    fn state(&self) -> SamplerState {
        SamplerState {
            tensors: self.previous.iter().cloned().collect(),
            counters: vec![self.lower_order_nums as u64],
        }
    }
    fn restore(&mut self, mut state: SamplerState) -> Result<()> {
        let ([lower], 0..=1) = (&state.counters[..], state.tensors.len()) else {
            return Err(Error::param(
                "scheduler",
                "a saved state for another sampler",
            ));
        };
        self.lower_order_nums = *lower as usize;
        self.previous = state.tensors.pop();
        Ok(())
    }
}
