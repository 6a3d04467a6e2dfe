//! Run checkpoints: `OUT/checkpoints/checkpoint-NNNNNN/` with the trainable
//! weights, the optimiser moments, the EMA weights and `state.json`.
//! Written under a temporary name and renamed, so a checkpoint folder is
//! either complete or absent; only the newest `keep` are kept. Data order
//! and noise are functions of the step (see [`super::data`]), so the step
//! number restores them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::trainer::Trainer;
use crate::error::{Error, Result};
use crate::fsutil::io_at as io;
use crate::fsutil::write_json_atomic;
use crate::nn::weights::{write_safetensors, WeightStore};

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimiser steps completed.
    pub step: u64,
    /// AdamW's step counter (bias correction).
    pub adam_steps: u64,
    /// EMA updates applied, if averaging.
    pub ema_updates: Option<u64>,
    /// Trainable tensors, for a quick sanity check.
    pub trainable_tensors: usize,
}

const PREFIX: &str = "checkpoint-";

/// The checkpoint folders under `OUT/checkpoints`, oldest first.
pub fn list_checkpoints(out: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let dir = out.join("checkpoints");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name
            .strip_prefix(PREFIX)
            .and_then(|s| s.parse::<u64>().ok())
        {
            if entry.path().join("state.json").is_file() {
                found.push((step, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Writes a checkpoint of `trainer` and prunes to the newest `keep`.
pub fn save_checkpoint(trainer: &Trainer, out: &Path, keep: usize) -> Result<PathBuf> {
    let root = out.join("checkpoints");
    crate::fsutil::create_dir(&root)?;
    let name = format!("{PREFIX}{:06}", trainer.step);
    let final_dir = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    crate::fsutil::create_dir(&tmp)?;
    let names = trainer.params.names();
    let named = |prefix: &str, ts: &[Tensor]| -> Vec<(String, Tensor)> {
        names
            .iter()
            .zip(ts)
            .map(|(n, t)| (format!("{prefix}{n}"), t.clone()))
            .collect()
    };
    write_safetensors(
        &tmp.join("trainable.safetensors"),
        &named("", &trainer.params.snapshot()?),
    )?;
    let mut moments = named("m.", &trainer.opt.m);
    moments.extend(named("v.", &trainer.opt.v));
    write_safetensors(&tmp.join("optimizer.safetensors"), &moments)?;
    if let Some(ema) = &trainer.ema {
        write_safetensors(&tmp.join("ema.safetensors"), &named("", &ema.shadow))?;
    }
    let state = CheckpointState {
        step: trainer.step,
        adam_steps: trainer.opt.steps,
        ema_updates: trainer.ema.as_ref().map(|e| e.updates),
        trainable_tensors: names.len(),
    };
    write_json_atomic(&tmp.join("state.json"), &state)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    let all = list_checkpoints(out)?;
    if all.len() > keep.max(1) {
        for (_, old) in &all[..all.len() - keep.max(1)] {
            std::fs::remove_dir_all(old).map_err(io(old))?;
        }
    }
    Ok(final_dir)
}

fn read_tensors(file: &Path, device: &candle_core::Device) -> Result<HashMap<String, Tensor>> {
    Ok(WeightStore::open(file, device)?.to_map())
}

fn take_prefixed(
    file: &Path,
    all: &HashMap<String, Tensor>,
    prefix: &str,
    names: &[String],
) -> Result<Vec<Tensor>> {
    names
        .iter()
        .map(|n| {
            all.get(&format!("{prefix}{n}"))
                .cloned()
                .ok_or_else(|| Error::Checkpoint {
                    file: file.to_path_buf(),
                    reason: format!("tensor `{prefix}{n}` is missing"),
                })
        })
        .collect()
}

/// Restores weights, optimiser, EMA and step from checkpoint `dir`.
pub fn load_checkpoint(trainer: &mut Trainer, dir: &Path) -> Result<()> {
    let state_file = dir.join("state.json");
    let state: CheckpointState = crate::fsutil::read_json(&state_file)?;
    let names = trainer.params.names().to_vec();
    if state.trainable_tensors != names.len() {
        return Err(Error::Checkpoint {
            file: state_file,
            reason: format!(
                "the checkpoint has {} trainable tensors, this run {} (another model or LoRA setting?)",
                state.trainable_tensors,
                names.len()
            ),
        });
    }
    let device = trainer.sd.unet.device().clone();
    let weights = dir.join("trainable.safetensors");
    trainer
        .params
        .load_trainable(&weights, &read_tensors(&weights, &device)?)?;
    let opt_file = dir.join("optimizer.safetensors");
    let moments = read_tensors(&opt_file, &device)?;
    let m = take_prefixed(&opt_file, &moments, "m.", &names)?;
    let v = take_prefixed(&opt_file, &moments, "v.", &names)?;
    for (i, var) in trainer.params.vars().iter().enumerate() {
        if m[i].dims() != var.dims() || v[i].dims() != var.dims() {
            return Err(Error::Checkpoint {
                file: opt_file,
                reason: format!("moments of `{}` have the wrong shape", names[i]),
            });
        }
    }
    trainer.opt.m = m;
    trainer.opt.v = v;
    trainer.opt.steps = state.adam_steps;
    match (&mut trainer.ema, state.ema_updates) {
        (Some(ema), Some(updates)) => {
            let f = dir.join("ema.safetensors");
            ema.shadow = take_prefixed(&f, &read_tensors(&f, &device)?, "", &names)?;
            ema.updates = updates;
        }
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::Checkpoint {
                file: state_file,
                reason: "EMA was on in one run and off in the other; resume with the same setting"
                    .into(),
            })
        }
    }
    trainer.step = state.step;
    Ok(())
}
