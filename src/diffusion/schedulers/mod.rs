//! Noise schedules and samplers: DDIM, PNDM (PLMS, riffusion's default),
//! Euler ancestral and DPM-Solver++ (2M), following diffusers' definitions
//! step for step, including its per-scheduler defaults for keys an older
//! `scheduler_config.json` lacks (e.g. `timestep_spacing`).
//!
//! A sampler is driven by the pipeline: [`Sampler::timesteps`] gives the
//! model-call timesteps, [`Sampler::scale_model_input`] prepares the UNet
//! input and [`Sampler::step`] moves the latents one step. Randomness
//! (Euler ancestral) comes from a [`NoiseSource`], so a run can be replayed
//! with recorded noise.

mod samplers;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use crate::nn::noise::{NoiseSource, RecordedNoise, SeededNoise};
pub use samplers::{Ddim, DpmSolverPp2m, EulerAncestral, Pndm};

/// `scheduler/scheduler_config.json`: the training noise schedule plus
/// sampler options. Keys diffusers would default per scheduler are optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    /// Training timesteps (1000).
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    /// First beta.
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    /// Last beta.
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    /// `linear` or `scaled_linear` (SD).
    #[serde(default = "default_beta_schedule")]
    pub beta_schedule: String,
    /// Explicit betas, overriding the schedule.
    #[serde(default)]
    pub trained_betas: Option<Vec<f64>>,
    /// Use alpha-bar 1 after the last step (else alpha-bar of step 0).
    #[serde(default = "default_true")]
    pub set_alpha_to_one: bool,
    /// Offset added to "leading" timesteps.
    #[serde(default)]
    pub steps_offset: usize,
    /// PNDM: PLMS only (no Runge-Kutta warm-up).
    #[serde(default)]
    pub skip_prk_steps: bool,
    /// `epsilon` or `v_prediction`.
    #[serde(default = "default_prediction")]
    pub prediction_type: String,
    /// `leading`, `linspace` or `trailing`; absent means the scheduler's own
    /// default.
    #[serde(default)]
    pub timestep_spacing: Option<String>,
    /// DDIM: clamp the predicted clean sample (absent means true, as in
    /// diffusers' DDIM).
    #[serde(default)]
    pub clip_sample: Option<bool>,
    /// DDIM: clamp range.
    #[serde(default = "default_clip_range")]
    pub clip_sample_range: f64,
}

fn default_train_steps() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    0.0001
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_beta_schedule() -> String {
    "linear".into()
}
fn default_true() -> bool {
    true
}
fn default_prediction() -> String {
    "epsilon".into()
}
fn default_clip_range() -> f64 {
    1.0
}

impl SchedulerConfig {
    /// riffusion-model-v1's (and SD 1.5's) PNDM config.
    pub fn sd15() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: "scaled_linear".into(),
            trained_betas: None,
            set_alpha_to_one: false,
            steps_offset: 1,
            skip_prk_steps: true,
            prediction_type: "epsilon".into(),
            timestep_spacing: None,
            clip_sample: Some(false),
            clip_sample_range: 1.0,
        }
    }

    /// Refuses settings the samplers here do not implement.
    pub fn validate(&self, file: &Path) -> Result<()> {
        let bad = |reason: String| Error::InvalidData {
            file: file.display().to_string(),
            reason,
        };
        if !matches!(self.beta_schedule.as_str(), "linear" | "scaled_linear")
            && self.trained_betas.is_none()
        {
            return Err(bad(format!(
                "`beta_schedule` {} is not supported (linear, scaled_linear)",
                self.beta_schedule
            )));
        }
        if !matches!(self.prediction_type.as_str(), "epsilon" | "v_prediction") {
            return Err(bad(format!(
                "`prediction_type` {} is not supported (epsilon, v_prediction)",
                self.prediction_type
            )));
        }
        if let Some(s) = &self.timestep_spacing {
            if !matches!(s.as_str(), "leading" | "linspace" | "trailing") {
                return Err(bad(format!("`timestep_spacing` {s} is not supported")));
            }
        }
        if self.num_train_timesteps < 2 {
            return Err(bad("`num_train_timesteps` must be at least 2".into()));
        }
        Ok(())
    }

    /// Whether the model predicts v rather than the noise.
    pub fn v_prediction(&self) -> bool {
        self.prediction_type == "v_prediction"
    }

    /// The cumulative products of (1 - beta), computed in f32 as diffusers
    /// does, widened to f64.
    pub fn alphas_cumprod(&self) -> Vec<f64> {
        let n = self.num_train_timesteps;
        let betas: Vec<f32> = match &self.trained_betas {
            Some(b) => b.iter().map(|&x| x as f32).collect(),
            None if self.beta_schedule == "scaled_linear" => linspace_f32(
                self.beta_start.sqrt() as f32,
                self.beta_end.sqrt() as f32,
                n,
            )
            .into_iter()
            .map(|b| b * b)
            .collect(),
            None => linspace_f32(self.beta_start as f32, self.beta_end as f32, n),
        };
        let mut acc = 1f32;
        betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc as f64
            })
            .collect()
    }

    fn spacing<'a>(&'a self, default: &'a str) -> &'a str {
        self.timestep_spacing.as_deref().unwrap_or(default)
    }
}

/// torch.linspace in f32 (start + i * step, the second half from the end).
fn linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (n - 1 - i) as f32
            }
        })
        .collect()
}

/// numpy.linspace in f64.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n)
        .map(|i| {
            if i == n - 1 {
                end
            } else {
                start + step * i as f64
            }
        })
        .collect()
}

/// numpy's round (half to even).
pub(crate) fn round_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// Discrete timesteps, highest first, for `steps` inference steps.
fn spaced_timesteps(config: &SchedulerConfig, default_spacing: &str, steps: usize) -> Vec<f64> {
    let n = config.num_train_timesteps;
    match config.spacing(default_spacing) {
        "linspace" => linspace(0.0, (n - 1) as f64, steps)
            .into_iter()
            .rev()
            .map(round_even)
            .collect(),
        "trailing" => {
            let ratio = n as f64 / steps as f64;
            let mut t = n as f64;
            let mut out = Vec::new();
            while t > 0.0 {
                out.push(round_even(t) - 1.0);
                t -= ratio;
            }
            out
        }
        _ => {
            let ratio = n / steps;
            (0..steps)
                .rev()
                .map(|i| (i * ratio + config.steps_offset) as f64)
                .collect()
        }
    }
}

/// Which sampler to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// DDIM, deterministic (eta 0).
    Ddim,
    /// PNDM's pseudo linear multistep (riffusion's default).
    Pndm,
    /// Euler ancestral (stochastic).
    EulerA,
    /// DPM-Solver++ second-order multistep.
    DpmPp2m,
}

crate::choices!(SamplerKind, "scheduler", [
    Ddim => "ddim": "DDIM, deterministic (eta 0)",
    Pndm => "pndm": "PNDM's pseudo linear multistep (riffusion's default)",
    EulerA => "euler-a": "Euler ancestral (stochastic)",
    DpmPp2m => "dpmpp-2m": "DPM-Solver++ second-order multistep",
]);

impl SamplerKind {
    /// A fresh sampler of this kind for `steps` inference steps.
    pub fn build(self, config: &SchedulerConfig, steps: usize) -> Result<Box<dyn Sampler>> {
        if steps == 0 || steps > config.num_train_timesteps {
            return Err(Error::param(
                "steps",
                format!("must be 1 ..= {}, got {steps}", config.num_train_timesteps),
            ));
        }
        Ok(match self {
            SamplerKind::Ddim => Box::new(Ddim::new(config, steps)),
            SamplerKind::Pndm => Box::new(Pndm::new(config, steps)?),
            SamplerKind::EulerA => Box::new(EulerAncestral::new(config, steps)),
            SamplerKind::DpmPp2m => Box::new(DpmSolverPp2m::new(config, steps)),
        })
    }
}

/// What a multistep sampler remembers between steps (earlier model
/// outputs, counters), so that a saved run continues exactly.
#[derive(Debug, Clone, Default)]
pub struct SamplerState {
    /// Remembered tensors, in the sampler's own order.
    pub tensors: Vec<candle_core::Tensor>,
    /// Remembered counters.
    pub counters: Vec<u64>,
}

/// One sampling run's state machine.
pub trait Sampler: Send {
    /// The model-call timesteps, in calling order.
    fn timesteps(&self) -> &[f64];
    /// Standard deviation to scale unit-variance initial noise by.
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    /// The UNet input for the step at position `index` (the sample itself
    /// unless the sampler works in sigma space).
    fn scale_model_input(
        &self,
        sample: &candle_core::Tensor,
        _index: usize,
    ) -> candle_core::Result<candle_core::Tensor> {
        Ok(sample.clone())
    }
    /// One step from `sample` given the model output at position `index`.
    fn step(
        &mut self,
        model_output: &candle_core::Tensor,
        index: usize,
        sample: &candle_core::Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<candle_core::Tensor>;
    /// Noises clean latents to the level of position `index` (img2img,
    /// masks).
    fn add_noise(
        &self,
        original: &candle_core::Tensor,
        noise: &candle_core::Tensor,
        index: usize,
    ) -> candle_core::Result<candle_core::Tensor>;
    /// What the sampler remembers between steps (nothing by default).
    fn state(&self) -> SamplerState {
        SamplerState::default()
    }
    /// Puts back a state [`Self::state`] returned after the same steps.
    fn restore(&mut self, state: SamplerState) -> Result<()> {
        if state.tensors.is_empty() && state.counters.is_empty() {
            Ok(())
        } else {
            Err(Error::param(
                "scheduler",
                "a saved state for another sampler (this one keeps none)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::Choice;

    #[test]
    fn timesteps_follow_diffusers() {
        let c = SchedulerConfig::sd15();
        // printed by diffusers 0.42.1 for the riffusion config, 10 steps
        assert_eq!(
            spaced_timesteps(&c, "leading", 10),
            vec![901., 801., 701., 601., 501., 401., 301., 201., 101., 1.]
        );
        assert_eq!(
            spaced_timesteps(&c, "linspace", 10),
            vec![999., 888., 777., 666., 555., 444., 333., 222., 111., 0.]
        );
        let mut t = c.clone();
        t.timestep_spacing = Some("trailing".into());
        assert_eq!(
            spaced_timesteps(&t, "leading", 4),
            vec![999., 749., 499., 249.]
        );
        let a = c.alphas_cumprod();
        assert!((a[0] - (1.0 - 0.00085)).abs() < 1e-7);
        // diffusers: alphas_cumprod[999], [500] for SD's scaled_linear betas
        assert!((a[999] - 0.004_660_095).abs() < 1e-8, "{}", a[999]);
        assert!((a[500] - 0.276_332_468).abs() < 1e-7, "{}", a[500]);
    }

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for k in [
            SamplerKind::Ddim,
            SamplerKind::Pndm,
            SamplerKind::EulerA,
            SamplerKind::DpmPp2m,
        ] {
            assert_eq!(k.name().parse::<SamplerKind>().unwrap(), k);
        }
        let e = "lms".parse::<SamplerKind>().unwrap_err().to_string();
        assert!(e.contains("scheduler") && e.contains("lms"), "{e}");
    }
}
