//! The training run: steps until `max_steps`, metrics as JSONL, periodic
//! checkpoints and validation, a loss curve at the end. A cancelled run
//! (through the progress callback) checkpoints before it stops.
//!
//! ```text
//! OUT/metrics.jsonl      one object per step (StepReport + time)
//! OUT/validation.jsonl   one object per validation round
//! OUT/checkpoints/       see super::checkpoint
//! OUT/loss.png           the loss curve(s)
//! ```

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::checkpoint::save_checkpoint;
use super::trainer::{StepReport, Trainer};
use crate::error::{Error, Result};
use crate::fsutil::io_at as io;
use crate::fsutil::write_bytes_atomic;
use crate::plot::charts::line_chart;
use crate::progress::Progress;

/// When to log, checkpoint and validate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunPlan {
    /// Stop after this many optimiser steps in all.
    pub max_steps: u64,
    /// Checkpoint every N steps (and at the end); 0: only at the end.
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Measure the aux / diffusion gradient ratio every N steps.
    pub log_every: u64,
    /// Validate every N steps (and at the end); 0: never.
    pub validate_every: u64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MetricsLine {
    /// The step's figures.
    #[serde(flatten)]
    pub report: StepReport,
    /// Seconds the step took.
    pub step_s: f64,
    /// Training samples per second in this step.
    pub samples_per_s: f64,
}

/// Keeps only the lines of a JSONL file whose `step` is at most `step`
/// (a resumed run rewrites what came after its checkpoint).
pub fn truncate_jsonl(path: &Path, step: u64) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_bytes_atomic(path, kept.as_bytes())
}

fn append_line(path: &Path, value: &impl Serialize) -> Result<()> {
    let line = serde_json::to_string(value).map_err(|e| Error::InvalidData {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    writeln!(f, "{line}").map_err(io(path))
}

/// Draws `OUT/loss.png` from `OUT/metrics.jsonl`.
pub fn write_loss_curve(out: &Path) -> Result<()> {
    let path = out.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let (mut total, mut diffusion, mut aux) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        if let Ok(m) = serde_json::from_str::<MetricsLine>(line) {
            let s = m.report.step as f64;
            total.push((s, m.report.loss));
            diffusion.push((s, m.report.diffusion_loss));
            if let Some(a) = m.report.aux_loss {
                aux.push((s, a));
            }
        }
    }
    let mut series = vec![("diffusion".to_string(), smooth(&diffusion))];
    if !aux.is_empty() {
        series.insert(0, ("total".to_string(), smooth(&total)));
        series.push(("aux CE".to_string(), smooth(&aux)));
    }
    let canvas = line_chart("training loss (moving average)", "step", &series);
    write_bytes_atomic(&out.join("loss.png"), &canvas.encode_png()?)
}

/// A trailing moving average over up to 20 points.
fn smooth(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let k = (points.len() / 20).clamp(1, 20);
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, _))| {
            let window = &points[i + 1 - (i + 1).min(k)..=i];
            (
                x,
                window.iter().map(|p| p.1).sum::<f64>() / window.len() as f64,
            )
        })
        .collect()
}

/// Trains until `plan.max_steps`, writing metrics, checkpoints and
/// validation records under `out`; `validate` runs at the validation
/// steps and returns what to record.
pub fn run_training(
    trainer: &mut Trainer,
    out: &Path,
    plan: &RunPlan,
    progress: &dyn Progress,
    validate: &mut dyn FnMut(&mut Trainer) -> Result<serde_json::Value>,
) -> Result<()> {
    crate::fsutil::create_dir(out)?;
    let metrics = out.join("metrics.jsonl");
    let validation = out.join("validation.jsonl");
    truncate_jsonl(&metrics, trainer.step)?;
    truncate_jsonl(&validation, trainer.step)?;
    let samples = (trainer.settings.batch_size * trainer.settings.grad_accum) as f64;
    progress.start(plan.max_steps.saturating_sub(trainer.step), "training");
    let mut smoothed: Option<f64> = None;
    while trainer.step < plan.max_steps {
        let t0 = Instant::now();
        let measure = trainer.settings.aux.is_some()
            && plan.log_every > 0
            && (trainer.step + 1) % plan.log_every == 0;
        let report = trainer.train_step(measure)?;
        let step_s = t0.elapsed().as_secs_f64();
        let s = smoothed.map_or(report.loss, |v| 0.9 * v + 0.1 * report.loss);
        smoothed = Some(s);
        append_line(
            &metrics,
            &MetricsLine {
                samples_per_s: samples / step_s.max(1e-9),
                step_s,
                report,
            },
        )?;
        progress.status(&format!("loss {s:.4}"));
        let step = trainer.step;
        let last = step == plan.max_steps;
        if last || (plan.checkpoint_every > 0 && step % plan.checkpoint_every == 0) {
            save_checkpoint(trainer, out, plan.keep_checkpoints)?;
        }
        if plan.validate_every > 0 && (last || step % plan.validate_every == 0) {
            let record = validate(trainer)?;
            append_line(
                &validation,
                &serde_json::json!({ "step": step, "validation": record }),
            )?;
        }
        if !progress.advance(1) {
            if !last {
                save_checkpoint(trainer, out, plan.keep_checkpoints)?;
            }
            return Err(Error::Cancelled);
        }
    }
    progress.finish();
    write_loss_curve(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_steps_up_to_the_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.jsonl");
        std::fs::write(&p, "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\nbroken\n").unwrap();
        truncate_jsonl(&p, 2).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"step\":1}\n{\"step\":2}\n"
        );
        truncate_jsonl(&d.path().join("absent"), 2).unwrap();
    }

    #[test]
    fn smoothing_averages_a_trailing_window() {
        let pts: Vec<(f64, f64)> = (0..40).map(|i| (i as f64, (i % 2) as f64)).collect();
        let s = smooth(&pts);
        assert_eq!(s.len(), 40);
        assert!((s[39].1 - 0.5).abs() < 1e-12);
        assert_eq!(s[0].1, 0.0);
    }
}
