//! The options of a training run, as read from a TOML file and/or flags
//! and saved with the run (`OUT/train_config.toml`). Defaults follow
//! diffusers' `train_text_to_image` where it has one.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::objective::Prediction;
use super::optim::{AdamWConfig, LrSchedule, LrScheduleKind};
use crate::error::{Error, Result};
use crate::nn::lora::LoraConfig;

/// Every option of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    /// Image folder with metadata.jsonl.
    pub data: Option<PathBuf>,
    /// Base checkpoint (diffusers folder); also supplies the VAE, text
    /// encoder, tokenizer and scheduler when training from a named config.
    pub model: Option<PathBuf>,
    /// Train the UNet from scratch with this config: tiny, compact, small or sd15.
    pub config: Option<String>,
    /// Optimiser steps in all.
    pub max_steps: u64,
    /// Samples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Peak learning rate (default 1e-5 for a full fine-tune, 1e-4 with
    /// LoRA or from scratch).
    pub learning_rate: Option<f64>,
    /// Learning-rate schedule.
    pub lr_scheduler: LrScheduleKind,
    /// Warm-up steps (ignored by `constant`).
    pub lr_warmup_steps: u64,
    /// AdamW settings.
    pub adam: AdamWConfig,
    /// Gradient-norm clipping.
    pub max_grad_norm: f64,
    /// min-SNR weighting gamma (5 recommended); none: plain MSE.
    pub snr_gamma: Option<f64>,
    /// Per-channel noise offset scale.
    pub noise_offset: f64,
    /// Input perturbation (0.1 recommended).
    pub input_perturbation: f64,
    /// Prediction type; default the scheduler's.
    pub prediction: Option<Prediction>,
    /// Probability of training on the empty caption.
    pub caption_dropout: f64,
    /// Keep an EMA of the weights with this decay bound (0.9999 in
    /// diffusers); exported and validated with it.
    pub ema_decay: Option<f64>,
    /// Train LoRA adapters instead of the full UNet.
    pub lora: Option<LoraConfig>,
    /// `no` (f32) or `bf16` (CUDA only: bf16 compute, f32 master weights).
    pub mixed_precision: String,
    /// Recompute the UNet's activations segment by segment in the
    /// backward instead of keeping them (less memory, slower steps).
    pub gradient_checkpointing: bool,
    /// Seed of initialisation, data order, crops, noise and timesteps.
    pub seed: u64,
    /// Training crop width in pixels (time; a multiple of the VAE scale
    /// times the UNet's down-sampling).
    pub crop_px: usize,
    /// Checkpoint every N steps (and at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Measure the aux / diffusion gradient-norm ratio every N steps.
    pub log_every: u64,
    /// Validate every N steps (and at the end); 0: never.
    pub validate_every: u64,
    /// Prompts generated at validation.
    pub validation_prompts: Vec<String>,
    /// Sampling steps at validation.
    pub validation_steps: usize,
    /// Latent raga classifier folder for the auxiliary loss.
    pub aux_classifier: Option<PathBuf>,
    /// Weight of the auxiliary loss.
    pub aux_lambda: f64,
    /// Auxiliary loss only for timesteps up to this.
    pub aux_t_max: usize,
    /// Share of samples drawn from timesteps 0..=t_max.
    pub aux_low_t_share: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            data: None,
            model: None,
            config: None,
            max_steps: 1000,
            batch_size: 1,
            grad_accum: 1,
            learning_rate: None,
            lr_scheduler: LrScheduleKind::Constant,
            lr_warmup_steps: 500,
            adam: AdamWConfig::default(),
            max_grad_norm: 1.0,
            snr_gamma: None,
            noise_offset: 0.0,
            input_perturbation: 0.0,
            prediction: None,
            caption_dropout: 0.1,
            ema_decay: None,
            lora: None,
            mixed_precision: "no".into(),
            gradient_checkpointing: false,
            seed: 0,
            crop_px: 512,
            checkpoint_every: 500,
            keep_checkpoints: 3,
            log_every: 10,
            validate_every: 0,
            validation_prompts: Vec::new(),
            validation_steps: 20,
            aux_classifier: None,
            aux_lambda: 0.05,
            aux_t_max: 200,
            aux_low_t_share: 0.0,
        }
    }
}

impl TrainOptions {
    /// Reads a TOML file (unknown keys are refused, naming the file).
    pub fn from_toml(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::InvalidData {
            file: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The options of a run in `out`: with `resume`, the run's saved
    /// `train_config.toml` (only `max_steps` may change); otherwise the
    /// options `file` (or the defaults) with `fields` laid over them.
    ///
    /// `fields` is a JSON object of option names (see [`crate::overlay`]);
    /// besides the options themselves it may hold `lora: true`,
    /// `lora_rank` (which also sets alpha to the rank) and `lora_alpha`,
    /// each of which turns LoRA on.
    pub fn for_run(
        out: &std::path::Path,
        file: Option<&std::path::Path>,
        resume: bool,
        fields: &serde_json::Value,
    ) -> Result<Self> {
        let saved = out.join("train_config.toml");
        let mut given = crate::overlay::given_fields(fields);
        if resume && saved.is_file() {
            let mut o = Self::from_toml(&saved)?;
            if let Some(steps) = given.get("max_steps") {
                o.max_steps = serde_json::from_value(steps.clone())
                    .map_err(|e| Error::param("max_steps", e.to_string()))?;
            }
            return Ok(o);
        }
        let mut o = match file {
            Some(p) => Self::from_toml(p)?,
            None => Self::default(),
        };
        let switch = given.remove("lora").is_some();
        let rank = given.remove("lora_rank");
        let alpha = given.remove("lora_alpha");
        if switch || rank.is_some() || alpha.is_some() {
            let mut l = o.lora.take().unwrap_or_default();
            if let Some(r) = &rank {
                let r = r.as_u64().ok_or_else(|| {
                    Error::param("lora_rank", format!("{r} is not a whole number"))
                })?;
                l.rank = r as usize;
                l.alpha = r as f64;
            }
            if let Some(a) = &alpha {
                l.alpha = a
                    .as_f64()
                    .ok_or_else(|| Error::param("lora_alpha", format!("{a} is not a number")))?;
            }
            o.lora = Some(l);
        }
        crate::overlay::overlay(&o, &serde_json::Value::Object(given), "options")
    }

    /// The options as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::param("options", e.to_string()))
    }

    /// The learning rate in effect.
    pub fn lr(&self) -> f64 {
        self.learning_rate
            .unwrap_or(if self.lora.is_some() || self.config.is_some() {
                1e-4
            } else {
                1e-5
            })
    }

    /// The learning-rate schedule of the run.
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            kind: self.lr_scheduler,
            base_lr: self.lr(),
            warmup_steps: self.lr_warmup_steps,
            total_steps: self.max_steps,
            cycles: if self.lr_scheduler == LrScheduleKind::Cosine {
                0.5
            } else {
                1.0
            },
        }
    }

    /// Refuses values no run can use, naming the option.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| Err(Error::param(field, reason));
        if self.data.is_none() {
            return bad("data", "give the training folder (--data DIR)");
        }
        if self.model.is_none() {
            return bad(
                "model",
                "give a checkpoint (--model DIR); with --config it supplies the VAE, text encoder and tokenizer",
            );
        }
        if self.max_steps == 0 {
            return bad("max-steps", "must be at least 1");
        }
        if self.batch_size == 0 || self.grad_accum == 0 {
            return bad(
                "batch-size",
                "batch size and gradient accumulation must be at least 1",
            );
        }
        if !(self.lr() > 0.0 && self.lr().is_finite()) {
            return bad("learning-rate", "must be positive");
        }
        if !(0.0..1.0).contains(&self.caption_dropout) {
            return bad("caption-dropout", "must be in [0, 1)");
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm <= 0.0 {
            return bad("max-grad-norm", "must be positive");
        }
        if let Some(g) = self.snr_gamma {
            if g.is_nan() || g <= 0.0 {
                return bad("snr-gamma", "must be positive");
            }
        }
        if let Some(d) = self.ema_decay {
            if !(0.0..1.0).contains(&d) {
                return bad("ema-decay", "must be in [0, 1)");
            }
        }
        if self.crop_px == 0 {
            return bad(
                "crop-px",
                "must be at least 1 (a multiple of the VAE scale)",
            );
        }
        for (field, v) in [
            ("noise-offset", self.noise_offset),
            ("input-perturbation", self.input_perturbation),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::param(field, format!("{v} must be 0 or more")));
            }
        }
        if !matches!(self.mixed_precision.as_str(), "no" | "bf16") {
            return bad("mixed-precision", "`no` or `bf16`");
        }
        if let Some(l) = &self.lora {
            l.validate()?;
        }
        if self.aux_classifier.is_some() && (self.aux_lambda.is_nan() || self.aux_lambda < 0.0) {
            return bad("aux-lambda", "must be 0 or more");
        }
        if !(0.0..=1.0).contains(&self.aux_low_t_share) {
            return bad("aux-low-t-share", "must be in [0, 1]");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("o.toml");
        std::fs::write(
            &p,
            "data = \"x\"\nmodel = \"m\"\nmax_steps = 7\nlr_scheduler = \"cosine\"\n\
             [lora]\nrank = 8\nalpha = 8.0\ntargets = [\"to_q\"]\n",
        )
        .unwrap();
        let o = TrainOptions::from_toml(&p).unwrap();
        assert_eq!(o.max_steps, 7);
        assert_eq!(o.lora.as_ref().unwrap().rank, 8);
        assert_eq!(o.lr(), 1e-4);
        o.validate().unwrap();
        let back: TrainOptions = toml::from_str(&o.to_toml().unwrap()).unwrap();
        assert_eq!(back, o);
        std::fs::write(&p, "max_step = 7\n").unwrap();
        let e = TrainOptions::from_toml(&p).unwrap_err().to_string();
        assert!(e.contains("o.toml") && e.contains("max_step"), "{e}");
        let none = TrainOptions::default();
        assert!(none.validate().unwrap_err().to_string().contains("data"));
    }

    #[test]
    fn fields_over_a_file_and_a_resumed_run() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("o.toml");
        std::fs::write(
            &file,
            "max_steps = 7\nseed = 3\n[lora]\nrank = 8\nalpha = 2.0\ntargets = [\"to_q\"]\n",
        )
        .unwrap();
        let fields = serde_json::json!({
            "max_steps": 9, "seed": null, "gradient_checkpointing": false,
            "validation_prompts": [], "lora_rank": 6, "prediction": "v_prediction",
        });
        let o = TrainOptions::for_run(d.path(), Some(&file), false, &fields).unwrap();
        assert_eq!((o.max_steps, o.seed), (9, 3));
        assert!(!o.gradient_checkpointing && o.validation_prompts.is_empty());
        let l = o.lora.as_ref().unwrap();
        assert_eq!((l.rank, l.alpha, l.targets.len()), (6, 6.0, 1));
        assert_eq!(o.prediction, Some(crate::train::Prediction::V));
        let alpha = serde_json::json!({"lora": true, "lora_alpha": 16.0});
        let l = TrainOptions::for_run(d.path(), None, false, &alpha)
            .unwrap()
            .lora
            .unwrap();
        assert_eq!((l.rank, l.alpha), (4, 16.0));
        assert!(
            TrainOptions::for_run(d.path(), None, false, &serde_json::json!({}))
                .unwrap()
                .lora
                .is_none()
        );
        let e = TrainOptions::for_run(d.path(), None, false, &serde_json::json!({"max_step": 1}));
        assert!(e.unwrap_err().to_string().contains("max_step"));
        // A resumed run keeps its saved options; only the length may grow.
        std::fs::write(d.path().join("train_config.toml"), o.to_toml().unwrap()).unwrap();
        let more = serde_json::json!({"max_steps": 20, "seed": 5});
        let r = TrainOptions::for_run(d.path(), None, true, &more).unwrap();
        assert_eq!((r.max_steps, r.seed, r.lora), (20, 3, o.lora));
    }
}
