//! Training data: an image folder with `metadata.jsonl` (diffusers'
//! image-folder layout, as `prepare` writes it), VAE latents cached once,
//! a deterministic sample order and batches with random time crops.
//!
//! Randomness is a pure function of the run seed and the step, so a run
//! resumed from a checkpoint at step `n` draws exactly what an unbroken run
//! draws from step `n` on; nothing but the step number needs saving.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::diffusion::pipeline::rgb_to_images;
use crate::diffusion::vae::Vae;
use crate::diffusion::SeededNoise;
use crate::error::terr;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::spectrogram::image::decode_png;

/// One line of `metadata.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataEntry {
    /// Image path relative to the folder.
    pub file_name: String,
    /// Caption.
    pub text: String,
    /// Raga label (for the auxiliary loss and validation), if known.
    #[serde(default)]
    pub raga: Option<String>,
}

/// Reads `DIR/metadata.jsonl`; errors name the file and line.
pub fn read_entries(dir: &Path) -> Result<Vec<DataEntry>> {
    let path = dir.join("metadata.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: DataEntry = serde_json::from_str(line).map_err(|e| Error::InvalidData {
            file: format!("{}:{}", path.display(), i + 1),
            reason: format!("{e} (each line needs `file_name` and `text`)"),
        })?;
        if e.file_name.contains("..") || Path::new(&e.file_name).is_absolute() {
            return Err(Error::InvalidData {
                file: format!("{}:{}", path.display(), i + 1),
                reason: format!("`file_name` {} must stay inside the folder", e.file_name),
            });
        }
        out.push(e);
    }
    if out.is_empty() {
        return Err(Error::InvalidData {
            file: path.display().to_string(),
            reason: "no training examples".into(),
        });
    }
    Ok(out)
}

/// The VAE posterior of one training image, kept on the host.
#[derive(Debug, Clone)]
pub struct CachedLatent {
    /// Posterior means, `[channels, h, w]`, unscaled.
    pub mean: Tensor,
    /// Posterior standard deviations, same shape.
    pub std: Tensor,
    /// xxh3 of the image file, to tell a stale cache.
    pub file_hash: u64,
}

/// Hashes an image file's bytes.
pub fn file_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Encodes every image with `vae` (one at a time; the VAE's device),
/// reusing `reuse[file_name]` when its hash still matches.
pub fn encode_latents(
    dir: &Path,
    entries: &[DataEntry],
    vae: &Vae,
    reuse: &HashMap<String, CachedLatent>,
    progress: &dyn Progress,
) -> Result<Vec<CachedLatent>> {
    progress.start(entries.len() as u64, "caching VAE latents");
    let mut out = Vec::with_capacity(entries.len());
    let mut shape: Option<(usize, Vec<usize>)> = None;
    for (i, e) in entries.iter().enumerate() {
        let path = dir.join(&e.file_name);
        let bytes = std::fs::read(&path).map_err(|err| Error::io(&path, err))?;
        let hash = file_hash(&bytes);
        let latent = match reuse.get(&e.file_name).filter(|c| c.file_hash == hash) {
            Some(c) => c.clone(),
            None => {
                let loaded = decode_png(&bytes, &path)?;
                let img = rgb_to_images(&[&loaded.image], vae.device())?;
                let dist = vae
                    .encode(&img.to_dtype(vae.dtype()).map_err(terr("image"))?)
                    .map_err(terr("VAE encode"))?;
                let host = |t: &Tensor| {
                    t.squeeze(0)
                        .and_then(|t| t.to_dtype(DType::F32))
                        .and_then(|t| t.to_device(&Device::Cpu))
                        .map_err(terr("latent cache"))
                };
                CachedLatent {
                    mean: host(&dist.mean)?,
                    std: host(&dist.std)?,
                    file_hash: hash,
                }
            }
        };
        let dims = latent.mean.dims().to_vec();
        match &shape {
            None => shape = Some((i, dims)),
            Some((j, d)) if d[..2] != dims[..2] => {
                return Err(Error::InvalidImage {
                    path: path.clone(),
                    reason: format!(
                    "latents {:?} differ in height from {} ({:?}); all images need the same height",
                    dims, entries[*j].file_name, d
                ),
                })
            }
            _ => {}
        }
        out.push(latent);
        if !progress.advance(1) {
            return Err(Error::Cancelled);
        }
    }
    progress.finish();
    Ok(out)
}

/// A ChaCha stream for one purpose of one step.
pub fn step_rng(seed: u64, step: u64, stream: u64) -> ChaCha8Rng {
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&step.to_le_bytes());
    bytes[16..].copy_from_slice(&stream.to_le_bytes());
    ChaCha8Rng::seed_from_u64(xxhash_rust::xxh3::xxh3_64(&bytes))
}

/// The sample order: each epoch a fresh permutation of the examples, a
/// function of the seed and the epoch.
#[derive(Debug, Clone)]
pub struct SampleOrder {
    seed: u64,
    n: usize,
    epoch: Option<(u64, Vec<usize>)>,
}

impl SampleOrder {
    /// An order over `n` examples.
    pub fn new(seed: u64, n: usize) -> Self {
        Self {
            seed,
            n,
            epoch: None,
        }
    }

    /// The example at position `k` of the endless stream.
    pub fn at(&mut self, k: u64) -> usize {
        let epoch = k / self.n as u64;
        if self.epoch.as_ref().map(|e| e.0) != Some(epoch) {
            let mut perm: Vec<usize> = (0..self.n).collect();
            perm.shuffle(&mut step_rng(self.seed, epoch, u64::MAX));
            self.epoch = Some((epoch, perm));
        }
        self.epoch.as_ref().expect("epoch order").1[(k % self.n as u64) as usize]
    }
}

/// One micro-batch, on the training device.
#[derive(Debug)]
pub struct Batch {
    /// Scaled clean latents, `[b, c, h, crop_w]`, f32.
    pub latents: Tensor,
    /// Captions after dropout (`""` for dropped ones).
    pub captions: Vec<String>,
    /// Example indices.
    pub indices: Vec<usize>,
}

/// Batch assembly settings.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Latent columns per sample (the random time crop).
    pub crop_w: usize,
    /// Probability of training on the empty caption.
    pub caption_dropout: f64,
    /// The VAE's latent scaling factor.
    pub scaling_factor: f64,
}

/// Builds the batch of `indices`: a posterior sample of each latent,
/// cropped at a random column, scaled; captions dropped at random.
pub fn make_batch(
    latents: &[CachedLatent],
    entries: &[DataEntry],
    indices: &[usize],
    settings: BatchSettings,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Batch> {
    let mut parts = Vec::with_capacity(indices.len());
    let mut captions = Vec::with_capacity(indices.len());
    for &i in indices {
        let c = &latents[i];
        let w = c.mean.dim(2).map_err(terr("latent"))?;
        if w < settings.crop_w {
            return Err(Error::InvalidImage {
                path: entries[i].file_name.clone().into(),
                reason: format!(
                    "{} latent columns ({} px), narrower than the training crop of {} latent columns",
                    w,
                    w * 8,
                    settings.crop_w
                ),
            });
        }
        let start = rng.random_range(0..=w - settings.crop_w);
        let mut noise = SeededNoise::new(rng.random());
        let mut f = || -> candle_core::Result<Tensor> {
            let mean = c.mean.narrow(2, start, settings.crop_w)?;
            let std = c.std.narrow(2, start, settings.crop_w)?;
            let eps =
                Tensor::from_vec(noise.values(mean.elem_count()), mean.dims(), mean.device())?;
            (mean + (std * eps)?)? * settings.scaling_factor
        };
        parts.push(f().map_err(terr("batch"))?);
        let drop = rng.random::<f64>() < settings.caption_dropout;
        captions.push(if drop {
            String::new()
        } else {
            entries[i].text.clone()
        });
    }
    let latents = Tensor::stack(&parts, 0)
        .and_then(|t| t.to_device(device))
        .map_err(terr("batch"))?;
    Ok(Batch {
        latents,
        captions,
        indices: indices.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_order_is_a_permutation_per_epoch_and_repeatable() {
        let mut a = SampleOrder::new(5, 7);
        let first: Vec<usize> = (0..7).map(|k| a.at(k)).collect();
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..7).collect::<Vec<_>>());
        let second: Vec<usize> = (7..14).map(|k| a.at(k)).collect();
        assert_ne!(first, second);
        // a fresh order (a resumed run) jumping straight to epoch 1 agrees
        let mut b = SampleOrder::new(5, 7);
        assert_eq!((7..14).map(|k| b.at(k)).collect::<Vec<_>>(), second);
    }

    #[test]
    fn batches_crop_in_time_and_drop_captions() {
        let dev = Device::Cpu;
        let mean = Tensor::arange(0f32, 24., &dev)
            .unwrap()
            .reshape((1, 2, 12))
            .unwrap();
        let c = CachedLatent {
            std: mean.zeros_like().unwrap(),
            mean,
            file_hash: 0,
        };
        let entries = vec![DataEntry {
            file_name: "a.png".into(),
            text: "todi".into(),
            raga: None,
        }];
        let s = BatchSettings {
            crop_w: 4,
            caption_dropout: 0.5,
            scaling_factor: 2.0,
        };
        let mut rng = step_rng(1, 2, 3);
        let mut starts = std::collections::BTreeSet::new();
        let mut dropped = 0;
        for _ in 0..40 {
            let b =
                make_batch(std::slice::from_ref(&c), &entries, &[0], s, &mut rng, &dev).unwrap();
            assert_eq!(b.latents.dims(), [1, 1, 2, 4]);
            let v = b.latents.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            // a contiguous crop of both rows, scaled by 2 (std 0: no noise)
            let start = (v[0] / 2.0) as usize;
            assert_eq!(v[4] / 2.0, (12 + start) as f32);
            starts.insert(start);
            dropped += b.captions[0].is_empty() as usize;
        }
        assert!(starts.len() > 4, "{starts:?}");
        assert!(dropped > 5 && dropped < 35, "{dropped}");
        let narrow = BatchSettings { crop_w: 13, ..s };
        let e = make_batch(&[c], &entries, &[0], narrow, &mut rng, &dev).unwrap_err();
        assert!(e.to_string().contains("a.png"), "{e}");
    }

    #[test]
    fn metadata_errors_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("metadata.jsonl"),
            "{\"file_name\": \"a.png\", \"text\": \"x\"}\n{\"file_name\": \"b.png\"}\n",
        )
        .unwrap();
        let e = read_entries(d.path()).unwrap_err().to_string();
        assert!(e.contains("metadata.jsonl:2") && e.contains("text"), "{e}");
        std::fs::write(
            d.path().join("metadata.jsonl"),
            "{\"file_name\": \"../a.png\", \"text\": \"x\"}\n",
        )
        .unwrap();
        assert!(read_entries(d.path())
            .unwrap_err()
            .to_string()
            .contains("inside"));
    }
}
