//! The models a server offers: checkpoint folders named on its command
//! line (or the shipped default), each with its family.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diffusion::defaults::default_model_dir;
use crate::engine::Backend;
use crate::error::{Error, Result};

/// A model jobs may name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEntry {
    /// The name jobs use: the folder's name, made unique.
    pub name: String,
    /// The checkpoint folder.
    pub path: PathBuf,
    /// Its family.
    #[serde(serialize_with = "as_name")]
    pub backend: Backend,
}

fn as_name<S: serde::Serializer>(b: &Backend, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&b.to_string())
}

/// The family of the checkpoint in `dir`: a diffusers pipeline
/// (`model_index.json`) or a transformers MusicGen (`config.json` whose
/// `model_type` is `musicgen`).
pub fn backend_of(dir: &Path) -> Result<Backend> {
    if dir.join("model_index.json").is_file() {
        return Ok(Backend::Diffusion);
    }
    let config = dir.join("config.json");
    if config.is_file() {
        let v: serde_json::Value = crate::fsutil::read_json(&config)?;
        if v["model_type"].as_str() == Some("musicgen") {
            return Ok(Backend::Musicgen);
        }
    }
    Err(Error::param(
        "model",
        format!(
            "{}: neither a diffusers pipeline (model_index.json) nor a MusicGen checkpoint \
             (config.json with model_type musicgen)",
            dir.display()
        ),
    ))
}

/// The entries for `dirs` (the first is the default); the shipped model
/// when `dirs` is empty.
pub fn model_entries(dirs: &[PathBuf]) -> Result<Vec<ModelEntry>> {
    let dirs = match dirs {
        [] => vec![default_model_dir()?],
        d => d.to_vec(),
    };
    let mut out: Vec<ModelEntry> = Vec::new();
    for path in dirs {
        let backend = backend_of(&path)?;
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let mut name = base.clone();
        let mut n = 1;
        while out.iter().any(|m| m.name == name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        out.push(ModelEntry {
            name,
            path,
            backend,
        });
    }
    Ok(out)
}
