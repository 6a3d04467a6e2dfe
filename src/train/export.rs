//! Export of a trained model as a diffusers pipeline folder: the base
//! checkpoint's tokenizer, text encoder, VAE and scheduler copied, and the
//! trained UNet (EMA weights when averaged, LoRA merged) written as
//! `unet/config.json` + `unet/diffusion_pytorch_model.safetensors`. A LoRA
//! run also writes its adapters alone as `pytorch_lora_weights.safetensors`
//! (PEFT names with the `unet.` prefix, as diffusers' `load_lora_weights`
//! reads them; the scale `alpha / rank` folded into `lora_B`) with
//! `lora_config.json` (alpha = rank after folding). The folder is
//! assembled under a temporary name and renamed into place. A run's
//! checkpoint can be exported the same way, while the run goes on.

use crate::fsutil::read_json;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::trainer::Trainer;
use crate::diffusion::config::{ClipTextConfig, UnetConfig, VaeConfig};
use crate::diffusion::defaults::DEFAULTS_FILE;
use crate::diffusion::pipeline::load::find_weights;
use crate::diffusion::unet::Unet;
use crate::error::{Error, Result};
use crate::fsutil::io_at as io;
use crate::fsutil::{write_bytes_atomic, write_json_atomic};
use crate::nn::weights::{tensor_err, write_safetensors, WeightStore};
use crate::spectrogram::SpectrogramParams;

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
        crate::fsutil::create_dir(parent)?;
    }
    std::fs::copy(from, to).map_err(io(from)).map(|_| ())
}

pub use crate::diffusion::pipeline::load::SPECTROGRAM_FILE;

/// Assembles the pipeline folder `out` from the checkpoint at `base` (its
/// loaded `weight_files`), leaving out component `replaced`, which
/// `write` puts into the temporary folder it is given; then renames the
/// folder into place.
pub fn assemble_pipeline(
    base: &Path,
    weight_files: &[PathBuf],
    out: &Path,
    replaced: &str,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::fsutil::create_dir(parent)?;
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
    for own in [SPECTROGRAM_FILE, DEFAULTS_FILE] {
        if base.join(own).is_file() {
            copy_file(&base.join(own), &tmp.join(own))?;
        }
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
    for file in weight_files {
        let component = file
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if component == replaced {
            continue;
        }
        let dest = tmp.join(&component);
        copy_file(
            &base.join(&component).join("config.json"),
            &dest.join("config.json"),
        )?;
        copy_file(file, &dest.join(file.file_name().unwrap_or_default()))?;
    }
    write(&tmp)?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(io(out))?;
    }
    std::fs::rename(&tmp, out).map_err(io(out))
}

/// Writes the pipeline folder `out` from `trainer` (EMA weights when
/// `use_ema` and averaging), with `spectrogram` (the training images'
/// parameters) as [`SPECTROGRAM_FILE`]. Returns the number of UNet tensors
/// written.
pub fn export_diffusers(
    trainer: &Trainer,
    out: &Path,
    use_ema: bool,
    spectrogram: Option<&SpectrogramParams>,
) -> Result<usize> {
    let values = match (&trainer.ema, use_ema) {
        (Some(ema), true) => Some(ema.shadow.as_slice()),
        _ => None,
    };
    let tensors: Vec<(String, Tensor)> = trainer.params.merged(values)?.into_iter().collect();
    let count = tensors.len();
    assemble_pipeline(
        &trainer.sd.dir,
        &trainer.sd.weight_files,
        out,
        "unet",
        |tmp| {
            if let Some(p) = spectrogram {
                write_json_atomic(&tmp.join(SPECTROGRAM_FILE), p)?;
            }
            write_bytes_atomic(
                &tmp.join("unet/config.json"),
                &unet_config_json(&trainer.unet_config)?,
            )?;
            write_safetensors(
                &tmp.join("unet/diffusion_pytorch_model.safetensors"),
                &tensors,
            )?;
            if let Some(lora) = trainer.params.lora() {
                // The scale alpha / rank is folded into lora_B, so the file
                // means the same with any reader's default alpha (= rank).
                let scale = lora.alpha / lora.rank as f64;
                let mut adapters = Vec::new();
                for (n, t) in trainer.params.adapters(values)? {
                    let t = if n.ends_with(".lora_B.weight") {
                        (t * scale).map_err(crate::error::terr("LoRA export"))?
                    } else {
                        t
                    };
                    adapters.push((format!("unet.{n}"), t));
                }
                write_safetensors(&tmp.join("pytorch_lora_weights.safetensors"), &adapters)?;
                let folded = super::LoraConfig {
                    alpha: lora.rank as f64,
                    ..lora.clone()
                };
                write_json_atomic(&tmp.join("lora_config.json"), &folded)?;
            }
            Ok(())
        },
    )?;
    Ok(count)
}

/// How exported UNet weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageDtype {
    /// 32-bit floats.
    #[default]
    F32,
    /// 16-bit floats: half the size; the CPU computes in f32 either way.
    F16,
}

crate::choices!(StorageDtype, "dtype", [
    F32 => "f32": "32-bit floats",
    F16 => "f16": "16-bit floats (half the size)",
]);

impl StorageDtype {
    fn dtype(self) -> DType {
        match self {
            StorageDtype::F32 => DType::F32,
            StorageDtype::F16 => DType::F16,
        }
    }
}

/// Writes the pipeline folder `out` from checkpoint `step` (default the
/// newest) of the full-UNet training run in `run`: the run's base
/// pipeline (from its `train_config.toml`) with the checkpoint's UNet, EMA
/// weights when `use_ema` and the run averaged, stored as `dtype`. The
/// tensors are checked against the UNet config before anything is
/// written. Returns the step exported. A run can be exported while it
/// trains: checkpoints are complete or absent.
pub fn export_checkpoint(
    run: &Path,
    step: Option<u64>,
    out: &Path,
    use_ema: bool,
    storage: StorageDtype,
) -> Result<u64> {
    let dtype = storage.dtype();
    let options_file = run.join("train_config.toml");
    let o = super::options::TrainOptions::from_toml(&options_file)?;
    if o.lora.is_some() {
        return Err(Error::invalid_data(
            &options_file,
            "`lora`: a LoRA run's adapters are exported by `train` itself (OUT/final)",
        ));
    }
    let base = o.model.clone().ok_or_else(|| {
        Error::invalid_data(&options_file, "`model`: the run names no base pipeline")
    })?;
    let checkpoints = super::checkpoint::list_checkpoints(run)?;
    let (step, dir) = match step {
        Some(s) => checkpoints
            .into_iter()
            .find(|(n, _)| *n == s)
            .ok_or_else(|| {
                Error::param(
                    "checkpoint",
                    format!("{}: no checkpoint of step {s}", run.display()),
                )
            })?,
        None => checkpoints.into_iter().last().ok_or_else(|| {
            Error::param(
                "checkpoint",
                format!("{}: no checkpoints yet", run.display()),
            )
        })?,
    };
    let config = match &o.config {
        Some(name) => {
            let text: ClipTextConfig = read_json(&base.join("text_encoder/config.json"))?;
            let vae: VaeConfig = read_json(&base.join("vae/config.json"))?;
            super::setup::named_config(name, text.hidden_size, vae.latent_channels)?
        }
        None => read_json(&base.join("unet/config.json"))?,
    };
    let ema = dir.join("ema.safetensors");
    let file = if use_ema && ema.is_file() {
        ema
    } else {
        dir.join("trainable.safetensors")
    };
    let cpu = Device::Cpu;
    let store = WeightStore::open(&file, &cpu)?;
    Unet::new(&store.var_builder(DType::F32, &cpu), &config).map_err(tensor_err(&file))?;
    store.check_all_used()?;
    let mut tensors: Vec<(String, Tensor)> = store.to_map().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, t) in tensors.iter_mut() {
        *t = t
            .to_dtype(dtype)
            .map_err(crate::error::terr("export dtype"))?;
    }
    let weights = vec![
        find_weights(
            &base.join("text_encoder"),
            &["model", "pytorch_model"],
            None,
        )?,
        find_weights(&base.join("vae"), &["diffusion_pytorch_model"], None)?,
    ];
    assemble_pipeline(&base, &weights, out, "unet", |tmp| {
        write_bytes_atomic(&tmp.join("unet/config.json"), &unet_config_json(&config)?)?;
        write_safetensors(
            &tmp.join("unet/diffusion_pytorch_model.safetensors"),
            &tensors,
        )
    })?;
    Ok(step)
}
