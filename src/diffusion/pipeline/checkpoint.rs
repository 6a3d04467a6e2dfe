//! Saving a sampling run part-way, so that a rerun of the same request
//! continues where an interrupted one stopped and ends with the same
//! bytes.
//!
//! Two kinds of saved state, each a set of named tensors under a key:
//! - a denoising loop's step (`latents`, the sampler's memory, the noise
//!   stream's position, the next step), saved every so often and when the
//!   run is cancelled;
//! - a finished clip's latents (audio-to-audio and interpolation go clip by
//!   clip), saved as each clip is done.
//!
//! Where the state lives is the caller's business ([`Checkpoints`]); the
//! engine keeps it in a folder beside the outputs.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::diffusion::schedulers::{NoiseSource, Sampler, SamplerState};
use crate::error::terr;
use crate::error::{Error, Result};

/// Named tensors saved under one key.
pub type Saved = HashMap<String, Tensor>;

/// Somewhere to keep a run's saved state.
pub trait Checkpoints: Sync {
    /// The tensors saved under `key`, if any.
    fn load(&self, key: &str) -> Result<Option<Saved>>;
    /// Saves `tensors` under `key`, replacing what was there.
    fn save(&self, key: &str, tensors: Saved) -> Result<()>;
    /// Whether a denoising step is due to be saved (steps are saved every
    /// so often, not every time).
    fn step_due(&self) -> bool;
}

/// One loop's saved state in a [`Checkpoints`], under `key`.
#[derive(Clone, Copy)]
pub struct Resume<'a> {
    /// Where the state is kept.
    pub store: &'a dyn Checkpoints,
    /// Which loop or clip of the run.
    pub key: &'a str,
}

/// A denoising loop restored from a saved step.
pub(crate) struct Restored {
    /// The first step still to run.
    pub next_step: usize,
    /// The latents before that step.
    pub latents: Tensor,
}

const LATENTS: &str = "latents";
const META: &str = "meta";

fn meta_tensor(values: &[u64]) -> Result<Tensor> {
    let v: Vec<i64> = values.iter().map(|&x| x as i64).collect();
    Tensor::from_vec(v, values.len(), &Device::Cpu).map_err(terr("checkpoint"))
}

fn meta_values(saved: &Saved, key: &str) -> Result<Vec<u64>> {
    let t = saved
        .get(META)
        .ok_or_else(|| corrupt(key, "no `meta` tensor"))?;
    let v: Vec<i64> = t
        .to_dtype(DType::I64)
        .and_then(|t| t.flatten_all()?.to_vec1())
        .map_err(terr("checkpoint"))?;
    Ok(v.into_iter().map(|x| x as u64).collect())
}

fn corrupt(key: &str, reason: &str) -> Error {
    Error::param(
        "checkpoint",
        format!("saved state `{key}` is unusable: {reason}"),
    )
}

fn split(position: u128) -> [u64; 2] {
    [(position >> 64) as u64, position as u64]
}

fn join(hi: u64, lo: u64) -> u128 {
    ((hi as u128) << 64) | lo as u128
}

impl Resume<'_> {
    /// Whether this run can be saved at all: it needs a noise source that
    /// reports its position.
    fn usable(noise: &dyn NoiseSource) -> bool {
        noise.position().is_some()
    }

    /// Saves a loop about to run step `next_step` from `latents`.
    pub(crate) fn save_step(
        &self,
        next_step: usize,
        latents: &Tensor,
        sampler: &dyn Sampler,
        noise: &dyn NoiseSource,
    ) -> Result<()> {
        let Some(position) = noise.position() else {
            return Ok(());
        };
        let state = sampler.state();
        let [hi, lo] = split(position);
        let mut meta = vec![next_step as u64, hi, lo, state.tensors.len() as u64];
        meta.extend(&state.counters);
        let mut saved = Saved::new();
        saved.insert(META.into(), meta_tensor(&meta)?);
        let cpu = |t: &Tensor| t.to_device(&Device::Cpu).map_err(terr("checkpoint"));
        saved.insert(LATENTS.into(), cpu(latents)?);
        for (i, t) in state.tensors.iter().enumerate() {
            saved.insert(format!("sampler.{i}"), cpu(t)?);
        }
        self.store.save(self.key, saved)
    }

    /// The saved step of this loop, if any: the sampler and the noise
    /// stream are put back where they were, and the latents returned (on
    /// `device`). A state whose latents have another shape is refused.
    pub(crate) fn restore_step(
        &self,
        sampler: &mut dyn Sampler,
        noise: &mut dyn NoiseSource,
        shape: &[usize],
        device: &Device,
    ) -> Result<Option<Restored>> {
        if !Self::usable(noise) {
            return Ok(None);
        }
        let Some(saved) = self.store.load(self.key)? else {
            return Ok(None);
        };
        let meta = meta_values(&saved, self.key)?;
        let [next_step, hi, lo, n_tensors, ref counters @ ..] = meta[..] else {
            return Err(corrupt(self.key, "`meta` is too short"));
        };
        let latents = self.tensor(&saved, LATENTS, device)?;
        if latents.dims() != shape {
            return Err(corrupt(
                self.key,
                &format!("latents {:?}, the run needs {shape:?}", latents.dims()),
            ));
        }
        let tensors = (0..n_tensors)
            .map(|i| self.tensor(&saved, &format!("sampler.{i}"), device))
            .collect::<Result<Vec<_>>>()?;
        sampler.restore(SamplerState {
            tensors,
            counters: counters.to_vec(),
        })?;
        noise.seek(join(hi, lo))?;
        Ok(Some(Restored {
            next_step: next_step as usize,
            latents,
        }))
    }

    /// Saves a finished clip's latents and the noise stream's position
    /// after it.
    pub(crate) fn save_clip(&self, latents: &Tensor, noise: &dyn NoiseSource) -> Result<()> {
        let Some(position) = noise.position() else {
            return Ok(());
        };
        let mut saved = Saved::new();
        saved.insert(META.into(), meta_tensor(&split(position))?);
        let latents = latents
            .to_device(&Device::Cpu)
            .map_err(terr("checkpoint"))?;
        saved.insert(LATENTS.into(), latents);
        self.store.save(self.key, saved)
    }

    /// A finished clip's latents (on `device`), with the noise stream moved
    /// to where it was after the clip; `None` when the clip is not saved.
    pub(crate) fn restore_clip(
        &self,
        noise: &mut dyn NoiseSource,
        device: &Device,
    ) -> Result<Option<Tensor>> {
        if !Self::usable(noise) {
            return Ok(None);
        }
        let Some(saved) = self.store.load(self.key)? else {
            return Ok(None);
        };
        let [hi, lo] = meta_values(&saved, self.key)?[..] else {
            return Err(corrupt(self.key, "`meta` is not a noise position"));
        };
        let latents = self.tensor(&saved, LATENTS, device)?;
        noise.seek(join(hi, lo))?;
        Ok(Some(latents))
    }

    fn tensor(&self, saved: &Saved, name: &str, device: &Device) -> Result<Tensor> {
        saved
            .get(name)
            .ok_or_else(|| corrupt(self.key, &format!("no `{name}` tensor")))?
            .to_device(device)
            .map_err(terr("checkpoint"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::diffusion::schedulers::SeededNoise;

    /// Checkpoints kept in memory, every step due.
    #[derive(Default)]
    pub(crate) struct InMemory(pub Mutex<HashMap<String, Saved>>);

    impl Checkpoints for InMemory {
        fn load(&self, key: &str) -> Result<Option<Saved>> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn save(&self, key: &str, tensors: Saved) -> Result<()> {
            self.0.lock().unwrap().insert(key.into(), tensors);
            Ok(())
        }
        fn step_due(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_clip_comes_back_with_the_noise_position_after_it() {
        let store = InMemory::default();
        let resume = Resume {
            store: &store,
            key: "clip-0",
        };
        let mut noise = SeededNoise::new(3);
        let latents = noise.noise(&[1, 4, 2, 2], &Device::Cpu).unwrap();
        resume.save_clip(&latents, &noise).unwrap();
        let next = noise.values(5);
        let mut again = SeededNoise::new(3);
        let back = resume
            .restore_clip(&mut again, &Device::Cpu)
            .unwrap()
            .unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            latents.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        assert_eq!(again.values(5), next);
        let other = Resume {
            store: &store,
            key: "clip-1",
        };
        assert!(other
            .restore_clip(&mut again, &Device::Cpu)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_meta_tensor_of_the_wrong_kind_is_named() {
        let store = InMemory::default();
        let mut saved = Saved::new();
        saved.insert(META.into(), meta_tensor(&[1]).unwrap());
        store.save("steps", saved).unwrap();
        let resume = Resume {
            store: &store,
            key: "steps",
        };
        let e = resume
            .restore_clip(&mut SeededNoise::new(1), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`steps`") && e.contains("meta"), "{e}");
    }
}
