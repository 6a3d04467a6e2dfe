//! The trainable parameters of a model, by diffusers name, and the
//! `VarBuilder` backend that builds the model from them.
//!
//! Master weights are f32 [`Var`]s. A model is (re)built from a
//! [`ParamSet`] through [`ParamSet::var_builder`] in the compute dtype:
//! in f32 the model holds the variables themselves; in bf16 / f16 it holds
//! differentiable casts, so gradients still reach the f32 masters. In LoRA
//! mode the base weights are frozen tensors and each targeted projection is
//! handed out as `W + scale * B A`, differentiable in the adapters only.
//!
//! Every tensor is checked by name and shape, and
//! [`ParamSet::check_all_used`] refuses weights the model never asked for
//! (candle's `VarMap` would silently initialise an unknown name instead).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::lora::{adapter_names, init_adapters, merge, LoraConfig};
use crate::error::terr;
use crate::error::{Error, Result};
use crate::nn::random::RandomWeights;
use crate::nn::weights::unused_tensors_error;

struct Shared {
    source: PathBuf,
    vars: HashMap<String, Var>,
    frozen: HashMap<String, Tensor>,
    /// Targeted weight name -> (A name, B name).
    adapters: HashMap<String, (String, String)>,
    lora_scale: f64,
    used: Mutex<BTreeSet<String>>,
}

/// Trainable variables (sorted by name) plus frozen tensors.
#[derive(Clone)]
pub struct ParamSet {
    shared: Arc<Shared>,
    names: Vec<String>,
    vars: Vec<Var>,
    lora: Option<LoraConfig>,
}

impl std::fmt::Debug for ParamSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamSet")
            .field("source", &self.shared.source)
            .field("trainable", &self.names.len())
            .field("frozen", &self.shared.frozen.len())
            .field("lora", &self.lora)
            .finish()
    }
}

fn param_err(file: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

/// A seed per tensor name, so that initial values do not depend on the
/// order in which a model asks for its tensors.
fn name_seed(seed: u64, name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(name.as_bytes(), seed)
}

impl ParamSet {
    /// Parameters from loaded tensors (any float dtype; converted to f32 on
    /// `device`). Without `lora` every tensor is trainable; with it every
    /// tensor is frozen (stored as `frozen_dtype`) and adapters, seeded by
    /// `seed`, are added to the targeted projections.
    pub fn from_tensors(
        source: &Path,
        tensors: HashMap<String, Tensor>,
        lora: Option<LoraConfig>,
        frozen_dtype: DType,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut vars = HashMap::new();
        let mut frozen = HashMap::new();
        let mut adapters = HashMap::new();
        let to_dev = |t: &Tensor, dt: DType| {
            t.to_dtype(dt)
                .and_then(|t| t.to_device(device))
                .map_err(terr("moving weights"))
        };
        match &lora {
            None => {
                for (name, t) in &tensors {
                    let v = Var::from_tensor(&to_dev(t, DType::F32)?).map_err(terr("weights"))?;
                    vars.insert(name.clone(), v);
                }
            }
            Some(cfg) => {
                cfg.validate()?;
                for (name, t) in &tensors {
                    frozen.insert(name.clone(), to_dev(t, frozen_dtype)?);
                    if let Some(module) = cfg.target_module(name, t.dims()) {
                        let (out_dim, in_dim) = (t.dims()[0], t.dims()[1]);
                        let (a, b) = init_adapters(
                            out_dim,
                            in_dim,
                            cfg.rank,
                            name_seed(seed, module),
                            device,
                        )?;
                        let (an, bn) = adapter_names(module);
                        vars.insert(an.clone(), Var::from_tensor(&a).map_err(terr("LoRA"))?);
                        vars.insert(bn.clone(), Var::from_tensor(&b).map_err(terr("LoRA"))?);
                        adapters.insert(name.clone(), (an, bn));
                    }
                }
                if adapters.is_empty() {
                    return Err(param_err(
                        source,
                        format!(
                            "no tensor matches the LoRA targets {:?} (attention projections)",
                            cfg.targets
                        ),
                    ));
                }
            }
        }
        let mut names: Vec<String> = vars.keys().cloned().collect();
        names.sort();
        let ordered = names.iter().map(|n| vars[n].clone()).collect();
        Ok(Self {
            shared: Arc::new(Shared {
                source: source.to_path_buf(),
                vars,
                frozen,
                adapters,
                lora_scale: lora.as_ref().map_or(1.0, |c| c.scale()),
                used: Mutex::new(BTreeSet::new()),
            }),
            names,
            vars: ordered,
            lora,
        })
    }

    /// Fresh parameters for the model `build` makes (training from
    /// scratch), from [`RandomWeights`]: matrices and kernels uniform in
    /// `±1/sqrt(fan_in)` (torch's default), norm scales one, biases zero;
    /// each tensor seeded from `seed` and its name.
    pub fn fresh(
        label: &str,
        seed: u64,
        device: &Device,
        build: impl FnOnce(&VarBuilder) -> candle_core::Result<()>,
    ) -> Result<Self> {
        let made = Arc::new(Mutex::new(HashMap::new()));
        let backend = InitHandle {
            random: RandomWeights { seed },
            made: made.clone(),
        };
        let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone());
        build(&vb).map_err(terr("building a fresh model"))?;
        drop(vb);
        let made = std::mem::take(&mut *made.lock().expect("init lock"));
        Self::from_tensors(Path::new(label), made, None, DType::F32, seed, device)
    }

    /// The current values with their names, sorted by name.
    pub fn named_snapshot(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.names.iter().cloned().zip(self.snapshot()?).collect())
    }

    /// Names of the trainable tensors, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The trainable variables, aligned with [`ParamSet::names`].
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The LoRA settings, if the base is frozen.
    pub fn lora(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// Number of trainable scalars.
    pub fn trainable_count(&self) -> usize {
        self.vars.iter().map(|v| v.elem_count()).sum()
    }

    /// A builder for the model in `dtype` (f32, or bf16 / f16 compute).
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(
            Box::new(ParamBackend {
                shared: self.shared.clone(),
            }),
            dtype,
            device.clone(),
        )
    }

    /// Fails when a tensor was never asked for by the models built so far.
    pub fn check_all_used(&self) -> Result<()> {
        let used = self.shared.used.lock().expect("param lock");
        let unused: Vec<&String> = self
            .shared
            .frozen
            .keys()
            .chain(self.names.iter().filter(|n| !n.contains(".lora_")))
            .filter(|n| !used.contains(*n))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        Err(unused_tensors_error(&self.shared.source, &unused))
    }

    /// Current values of the trainable tensors (detached copies).
    pub fn snapshot(&self) -> Result<Vec<Tensor>> {
        self.vars
            .iter()
            .map(|v| v.as_tensor().detach().copy())
            .collect::<candle_core::Result<_>>()
            .map_err(terr("parameter snapshot"))
    }

    /// Sets every trainable tensor from `values` (by name), which must hold
    /// exactly this set's names and shapes; `file` names the source.
    pub fn load_trainable(&self, file: &Path, values: &HashMap<String, Tensor>) -> Result<()> {
        let expected: BTreeSet<&String> = self.names.iter().collect();
        let given: BTreeSet<&String> = values.keys().collect();
        if let Some(extra) = given.difference(&expected).next() {
            return Err(param_err(
                file,
                format!("tensor `{extra}` is not a parameter of this run"),
            ));
        }
        for (name, var) in self.names.iter().zip(&self.vars) {
            let t = values
                .get(name)
                .ok_or_else(|| param_err(file, format!("tensor `{name}` is missing")))?;
            if t.dims() != var.dims() {
                return Err(param_err(
                    file,
                    format!(
                        "tensor `{name}` has shape {:?}, expected {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            let t = t
                .to_dtype(DType::F32)
                .and_then(|t| t.to_device(var.device()))
                .map_err(terr("loading parameters"))?;
            var.set(&t).map_err(terr("loading parameters"))?;
        }
        Ok(())
    }

    /// Every tensor of the model in f32, LoRA adapters merged into their
    /// projections; `trainable` replaces the current trainable values (for
    /// exporting EMA weights), aligned with [`ParamSet::names`].
    pub fn merged(&self, trainable: Option<&[Tensor]>) -> Result<BTreeMap<String, Tensor>> {
        let current = self.snapshot()?;
        let values: HashMap<&str, &Tensor> = self
            .names
            .iter()
            .map(|n| n.as_str())
            .zip(trainable.unwrap_or(&current))
            .collect();
        let mut out = BTreeMap::new();
        for (name, t) in &self.shared.frozen {
            let t = t.to_dtype(DType::F32).map_err(terr("export"))?;
            let t = match self.shared.adapters.get(name) {
                Some((a, b)) => merge(
                    &t,
                    values[a.as_str()],
                    values[b.as_str()],
                    self.shared.lora_scale,
                )?,
                None => t,
            };
            out.insert(name.clone(), t);
        }
        for (name, t) in values {
            if !name.contains(".lora_") || self.lora.is_none() {
                out.insert(name.to_string(), t.clone());
            }
        }
        Ok(out)
    }

    /// The adapter tensors alone (LoRA mode), by name.
    pub fn adapters(&self, trainable: Option<&[Tensor]>) -> Result<BTreeMap<String, Tensor>> {
        let current = self.snapshot()?;
        Ok(self
            .names
            .iter()
            .zip(trainable.unwrap_or(&current))
            .filter(|(n, _)| n.contains(".lora_"))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect())
    }
}

struct ParamBackend {
    shared: Arc<Shared>,
}

impl ParamBackend {
    fn fetch(&self, name: &str, dtype: DType) -> candle_core::Result<Tensor> {
        let s = &self.shared;
        let t = if let Some((a, b)) = s.adapters.get(name) {
            let w = s.frozen[name].to_dtype(dtype)?;
            let delta = (s.vars[b].as_tensor().matmul(s.vars[a].as_tensor())? * s.lora_scale)?;
            (w + delta.to_dtype(dtype)?)?
        } else if let Some(v) = s.vars.get(name) {
            v.as_tensor().to_dtype(dtype)?
        } else if let Some(t) = s.frozen.get(name) {
            t.to_dtype(dtype)?
        } else {
            candle_core::bail!("{}: tensor `{name}` is missing", s.source.display())
        };
        s.used.lock().expect("param lock").insert(name.to_string());
        Ok(t)
    }
}

impl SimpleBackend for ParamBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.fetch(name, dtype)?;
        if t.shape() != &shape {
            candle_core::bail!(
                "{}: tensor `{name}` has shape {:?}, the config expects {:?}",
                self.shared.source.display(),
                t.dims(),
                shape.dims()
            )
        }
        t.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.fetch(name, dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.shared.vars.contains_key(name) || self.shared.frozen.contains_key(name)
    }
}

/// Records the tensors [`RandomWeights`] hands out, so that a fresh
/// model's parameters can be collected by name.
struct InitHandle {
    random: RandomWeights,
    made: Arc<Mutex<HashMap<String, Tensor>>>,
}

impl SimpleBackend for InitHandle {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut made = self.made.lock().expect("init lock");
        if let Some(t) = made.get(name) {
            if t.shape() != &shape {
                candle_core::bail!("tensor `{name}` requested with two shapes");
            }
            return t.to_dtype(dtype);
        }
        let t = self.random.get(shape, name, init, DType::F32, dev)?;
        made.insert(name.to_string(), t.clone());
        t.to_dtype(dtype)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("fresh model: tensor `{name}` requested without a shape")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        // a fresh model has every tensor a layer asks for under the current
        // diffusers names
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::layers::Attention;

    fn attention_set(lora: Option<LoraConfig>) -> (ParamSet, Attention) {
        let dev = Device::Cpu;
        let fresh = ParamSet::fresh("fresh", 3, &dev, |vb| {
            Attention::new(&vb.pp("blk.attn1"), 8, 8, 2, 4).map(|_| ())
        })
        .unwrap();
        let tensors: HashMap<String, Tensor> = fresh
            .names()
            .iter()
            .cloned()
            .zip(fresh.snapshot().unwrap())
            .collect();
        let set =
            ParamSet::from_tensors(Path::new("m"), tensors, lora, DType::F32, 1, &dev).unwrap();
        let att = Attention::new(
            &set.var_builder(DType::F32, &dev).pp("blk.attn1"),
            8,
            8,
            2,
            4,
        )
        .unwrap();
        (set, att)
    }

    #[test]
    fn fresh_init_is_deterministic_and_follows_the_rules() {
        let (a, _) = attention_set(None);
        let (b, _) = attention_set(None);
        assert_eq!(a.names(), b.names());
        for (x, y) in a.snapshot().unwrap().iter().zip(b.snapshot().unwrap()) {
            assert_eq!(
                x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
        let i = a
            .names()
            .iter()
            .position(|n| n.ends_with("to_out.0.bias"))
            .unwrap();
        assert!(a.snapshot().unwrap()[i]
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .all(|&v| v == 0.0));
        let q = a
            .names()
            .iter()
            .position(|n| n.ends_with("to_q.weight"))
            .unwrap();
        let w = a.snapshot().unwrap()[q]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let bound = 1.0 / 8f32.sqrt();
        assert!(w.iter().all(|v| v.abs() <= bound) && w.iter().any(|v| v.abs() > bound / 2.0));
        a.check_all_used().unwrap();
    }

    #[test]
    fn lora_builds_base_plus_adapters_and_trains_only_adapters() {
        let dev = Device::Cpu;
        let cfg = LoraConfig {
            rank: 2,
            alpha: 4.0,
            targets: vec!["to_q".into(), "to_v".into()],
        };
        let (set, att) = attention_set(Some(cfg));
        assert_eq!(set.names().len(), 4, "{:?}", set.names());
        set.check_all_used().unwrap();
        let x = Tensor::randn(0f32, 1., (1, 3, 8), &dev).unwrap();
        let loss = att
            .forward(&x, None)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        // B starts at zero, so A's gradient is zero; B's is not
        for (n, v) in set.names().iter().zip(set.vars()) {
            let g = grads.get(v.as_tensor()).expect("adapter gradient");
            let g = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(g > 0.0, n.contains("lora_B"), "{n}");
        }
        // merged export equals the base until B moves
        let merged = set.merged(None).unwrap();
        assert!(!merged.keys().any(|k| k.contains("lora")));
        assert_eq!(merged.len(), 5);
    }

    #[test]
    fn unused_and_missing_tensors_are_named() {
        let dev = Device::Cpu;
        let mut t = HashMap::new();
        t.insert(
            "a.weight".to_string(),
            Tensor::zeros((2, 2), DType::F32, &dev).unwrap(),
        );
        t.insert(
            "extra".to_string(),
            Tensor::zeros(2, DType::F32, &dev).unwrap(),
        );
        let set = ParamSet::from_tensors(Path::new("f.safetensors"), t, None, DType::F32, 0, &dev)
            .unwrap();
        let vb = set.var_builder(DType::F32, &dev);
        vb.get((2, 2), "a.weight").unwrap();
        let e = vb.get((3, 2), "a.weight").unwrap_err().to_string();
        assert!(e.contains("a.weight") && e.contains("[3, 2]"), "{e}");
        assert!(vb
            .get(2, "b")
            .unwrap_err()
            .to_string()
            .contains("`b` is missing"));
        let e = set.check_all_used().unwrap_err().to_string();
        assert!(e.contains("f.safetensors") && e.contains("extra"), "{e}");
        let mut wrong = HashMap::new();
        wrong.insert(
            "a.weight".to_string(),
            Tensor::zeros(4, DType::F32, &dev).unwrap(),
        );
        wrong.insert(
            "extra".to_string(),
            Tensor::zeros(2, DType::F32, &dev).unwrap(),
        );
        let e = set
            .load_trainable(Path::new("ck"), &wrong)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.weight") && e.contains("shape"), "{e}");
    }
}
