//! Where an interrupted request's finished work waits for the rerun:
//! `OUT/.partial/FINGERPRINT/KEY.safetensors`, one file per saved loop or
//! clip, written atomically. The fingerprint covers everything that shapes
//! the output (the request, the model's content, the input files' content),
//! so a changed request never picks up another's state. The folder goes
//! once every output of the request is written.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use candle_core::{Device, Tensor};

use super::request::GenerateRequest;
use crate::diffusion::pipeline::{Checkpoints, Saved};
use crate::error::{Error, Result};
use crate::fsutil::{content_hash, create_dir, io_at};
use crate::nn::weights::{write_safetensors, WeightStore};

/// Name of the folder under the output folder that holds saved state.
pub const PARTIAL_DIR: &str = ".partial";

/// Saved state of one request in a folder.
pub struct PartialDir {
    dir: PathBuf,
    every_s: f64,
    last_save: Mutex<Instant>,
}

impl PartialDir {
    /// The folder for the request whose fingerprint is `fingerprint` under
    /// the output folder `out_dir`; denoising steps are saved at most every
    /// `every_s` seconds (0: every step). Nothing is created yet.
    pub fn new(out_dir: &Path, fingerprint: &str, every_s: f64) -> Self {
        Self {
            dir: out_dir.join(PARTIAL_DIR).join(fingerprint),
            every_s,
            last_save: Mutex::new(Instant::now()),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether anything is saved.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Removes the saved state (and the `.partial` folder once empty).
    pub fn remove(&self) -> Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(io_at(&self.dir))?;
        }
        if let Some(parent) = self.dir.parent() {
            // only succeeds when no other request's state is there
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }

    fn file(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.safetensors"))
    }
}

impl Checkpoints for PartialDir {
    fn load(&self, key: &str) -> Result<Option<Saved>> {
        let path = self.file(key);
        if !path.exists() {
            return Ok(None);
        }
        let store = WeightStore::open(&path, &Device::Cpu).map_err(|e| {
            Error::param(
                "checkpoint",
                format!(
                    "saved state is unreadable ({e}); delete {} to start over",
                    self.dir.display()
                ),
            )
        })?;
        let mut saved = Saved::new();
        for name in store.names() {
            if let Some(t) = store.tensor(&name) {
                saved.insert(name.clone(), t.clone());
            }
        }
        Ok(Some(saved))
    }

    fn save(&self, key: &str, tensors: Saved) -> Result<()> {
        create_dir(&self.dir)?;
        let tensors: Vec<(String, Tensor)> = tensors.into_iter().collect();
        write_safetensors(&self.file(key), &tensors)?;
        *self.last_save.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }

    fn step_due(&self) -> bool {
        let last = *self.last_save.lock().unwrap_or_else(|p| p.into_inner());
        last.elapsed().as_secs_f64() >= self.every_s
    }
}

/// A request's fingerprint: a hash of the request as given, the model's
/// record (path and content hash) and the content of every input file.
pub fn fingerprint(request: &GenerateRequest, model: &serde_json::Value) -> Result<String> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(format!("{request:?}").as_bytes());
    hasher.update(model["content_hash"].to_string().as_bytes());
    hasher.update(content_hash(&request.input_files())?.as_bytes());
    Ok(format!("{:016x}", hasher.digest()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_tensors_come_back_and_the_folder_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = PartialDir::new(tmp.path(), "abc", 3600.0);
        assert!(!store.exists());
        assert!(store.load("steps").unwrap().is_none());
        assert!(!store.step_due());
        let t = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap();
        store
            .save("steps", Saved::from([("latents".to_string(), t)]))
            .unwrap();
        let back = store.load("steps").unwrap().unwrap();
        assert_eq!(back["latents"].to_vec1::<f32>().unwrap(), [1.0, 2.0, 3.0]);
        std::fs::write(store.file("bad"), b"junk").unwrap();
        let e = store.load("bad").unwrap_err().to_string();
        assert!(
            e.contains("bad.safetensors") && e.contains("start over"),
            "{e}"
        );
        store.remove().unwrap();
        assert!(!tmp.path().join(PARTIAL_DIR).exists());
        assert!(PartialDir::new(tmp.path(), "x", 0.0).step_due());
    }

    #[test]
    fn the_fingerprint_follows_the_request_and_the_model() {
        let model = serde_json::json!({"content_hash": "xxh3:1"});
        let a = GenerateRequest::new("kalyani", 1);
        let f = fingerprint(&a, &model).unwrap();
        assert_eq!(f, fingerprint(&a.clone(), &model).unwrap());
        assert_ne!(
            f,
            fingerprint(&GenerateRequest::new("kalyani", 2), &model).unwrap()
        );
        let other = serde_json::json!({"content_hash": "xxh3:2"});
        assert_ne!(f, fingerprint(&a, &other).unwrap());
    }
}
