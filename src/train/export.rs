//! Export of a trained model as a diffusers pipeline folder: the base
//! checkpoint's tokenizer, text encoder, VAE and scheduler copied, and the
//! trained UNet (EMA weights when averaged, LoRA merged) written as
//! `unet/config.json` + `unet/diffusion_pytorch_model.safetensors`. A LoRA
//! run also writes its adapters alone as `pytorch_lora_weights.safetensors`
//! (PEFT names with the `unet.` prefix, as diffusers' `load_lora_weights`
//! reads them) with `lora_config.json`. The folder is assembled under a
//! temporary name and renamed into place.

use std::path::Path;

use candle_core::Tensor;

use super::trainer::Trainer;
use crate::diffusion::config::UnetConfig;
use crate::diffusion::weights::write_safetensors;
use crate::error::{Error, Result};
use crate::fsutil::io_at as io;
use crate::fsutil::{write_bytes_atomic, write_json_atomic};

/// `unet/config.json` for `config`: diffusers' class name added, unset
/// (null) keys left out so diffusers applies its defaults.
pub fn unet_config_json(config: &UnetConfig) -> Result<Vec<u8>> {
    let mut v =
        serde_json::to_value(config).map_err(|e| Error::param("unet config", e.to_string()))?;
    if let Some(map) = v.as_object_mut() {
        map.retain(|_, x| !x.is_null());
        map.insert("_class_name".into(), "UNet2DConditionModel".into());
    }
    serde_json::to_vec_pretty(&v).map_err(|e| Error::param("unet config", e.to_string()))
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::copy(from, to).map_err(io(from)).map(|_| ())
}

/// Writes the pipeline folder `out` from `trainer` (EMA weights when
/// `use_ema` and averaging). Returns the number of UNet tensors written.
pub fn export_diffusers(trainer: &Trainer, out: &Path, use_ema: bool) -> Result<usize> {
    let base = &trainer.sd.dir;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "final".into());
    let tmp = parent.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    for rel in ["model_index.json", "scheduler/scheduler_config.json"] {
        copy_file(&base.join(rel), &tmp.join(rel))?;
    }
    let tok = base.join("tokenizer");
    for entry in std::fs::read_dir(&tok).map_err(io(&tok))? {
        let p = entry.map_err(io(&tok))?.path();
        if p.is_file() {
            copy_file(
                &p,
                &tmp.join("tokenizer")
                    .join(p.file_name().unwrap_or_default()),
            )?;
        }
    }
    for file in &trainer.sd.weight_files {
        let component = file
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if component == "unet" {
            continue;
        }
        let dest = tmp.join(&component);
        copy_file(
            &base.join(&component).join("config.json"),
            &dest.join("config.json"),
        )?;
        copy_file(file, &dest.join(file.file_name().unwrap_or_default()))?;
    }
    let values = match (&trainer.ema, use_ema) {
        (Some(ema), true) => Some(ema.shadow.as_slice()),
        _ => None,
    };
    let tensors: Vec<(String, Tensor)> = trainer.params.merged(values)?.into_iter().collect();
    let count = tensors.len();
    write_bytes_atomic(
        &tmp.join("unet/config.json"),
        &unet_config_json(&trainer.unet_config)?,
    )?;
    write_safetensors(
        &tmp.join("unet/diffusion_pytorch_model.safetensors"),
        &tensors,
    )?;
    if let Some(lora) = trainer.params.lora() {
        let adapters: Vec<(String, Tensor)> = trainer
            .params
            .adapters(values)?
            .into_iter()
            .map(|(n, t)| (format!("unet.{n}"), t))
            .collect();
        write_safetensors(&tmp.join("pytorch_lora_weights.safetensors"), &adapters)?;
        write_json_atomic(&tmp.join("lora_config.json"), lora)?;
    }
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(io(out))?;
    }
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(count)
}
