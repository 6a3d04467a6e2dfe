//! Raga classifier (b): a small CNN on tonic-relative pitch images of
//! spectrograms ([`super::pitch_image`]).
//!
//! Layers: four 3x3 convolutions (ReLU; 2x2 max pooling after the first
//! three), then the mean and the maximum over time of the last feature map
//! (so any clip length works), flattened, a hidden layer with dropout, and
//! one logit per raga. Every op used has a backward pass in candle (no
//! fused softmax / norm kernels). Weights are initialised from a seeded
//! ChaCha stream, so training is reproducible.
//!
//! Saved as `model.safetensors` (f32 tensors `conv{1..4}.weight` /
//! `.bias`, `fc1.*`, `fc2.*`) plus `config.json` ([`CnnConfig`]).

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::pitch_image::{pitch_image, PitchAxis, PitchImage};
use crate::error::{terr, Error, Result};
use crate::fsutil::{read_bytes, write_json_atomic};
use crate::nn::ops::{conv3x3, max_pool_2x2};
use crate::nn::weights::{tensor_err, write_safetensors, WeightStore};
use crate::spectrogram::{SpectrogramImage, SpectrogramParams};

/// The `kind` written in a CNN's config.json.
pub const CNN_KIND: &str = "spectrogram-cnn";

/// Settings saved with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CnnConfig {
    /// Always [`CNN_KIND`].
    pub kind: String,
    /// Raga names; output `i` scores `ragas[i]`.
    pub ragas: Vec<String>,
    /// Input pitch axis.
    pub axis: PitchAxis,
    /// Time steps per window (128 steps of 40 ms = 5.12 s).
    pub window_steps: usize,
    /// Output channels of the four convolutions.
    pub channels: [usize; 4],
    /// Width of the hidden layer.
    pub hidden: usize,
    /// Tonic search range when none is given, Hz.
    pub tonic_range_hz: (f64, f64),
}

impl CnnConfig {
    /// The default architecture for `ragas`.
    pub fn new(ragas: Vec<String>) -> Self {
        CnnConfig {
            kind: CNN_KIND.into(),
            ragas,
            axis: PitchAxis::default(),
            window_steps: 128,
            channels: [8, 16, 32, 64],
            hidden: 128,
            tonic_range_hz: (100.0, 260.0),
        }
    }

    /// Pitch rows left after the three poolings.
    fn pooled_bins(&self) -> usize {
        self.axis.num_bins() / 8
    }

    /// Names and shapes of every parameter, in a fixed order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let mut c_in = 1;
        for (i, &c) in self.channels.iter().enumerate() {
            out.push((format!("conv{}.weight", i + 1), vec![c, c_in, 3, 3]));
            out.push((format!("conv{}.bias", i + 1), vec![c]));
            c_in = c;
        }
        let feat = 2 * self.channels[3] * self.pooled_bins();
        out.push(("fc1.weight".into(), vec![self.hidden, feat]));
        out.push(("fc1.bias".into(), vec![self.hidden]));
        out.push(("fc2.weight".into(), vec![self.ragas.len(), self.hidden]));
        out.push(("fc2.bias".into(), vec![self.ragas.len()]));
        out
    }

    /// Checks the settings are usable.
    pub fn validate(&self) -> Result<()> {
        if self.kind != CNN_KIND {
            return Err(Error::param(
                "kind",
                format!("`{}` is not `{CNN_KIND}`", self.kind),
            ));
        }
        self.axis.validate()?;
        if self.ragas.len() < 2 {
            return Err(Error::param(
                "ragas",
                "a classifier needs at least two ragas",
            ));
        }
        if self.pooled_bins() == 0 || self.window_steps < 8 {
            return Err(Error::param(
                "window_steps",
                "the input is too small for three 2x2 poolings",
            ));
        }
        if self.channels.contains(&0) || self.hidden == 0 {
            return Err(Error::param("channels", "layer widths must be positive"));
        }
        Ok(())
    }
}

/// Ragas with scores, best first.
pub type Ranked = Vec<(String, f64)>;

/// A raga CNN: its settings and weights (as trainable variables).
#[derive(Debug, Clone)]
pub struct CnnModel {
    /// Settings.
    pub config: CnnConfig,
    params: Vec<(String, Var)>,
}

impl CnnModel {
    /// A fresh model: He-uniform weights and zero biases from `seed`.
    pub fn new(config: CnnConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let params = config
            .parameter_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let values: Vec<f32> = if name.ends_with(".bias") {
                    vec![0.0; n]
                } else {
                    let fan_in: usize = shape[1..].iter().product();
                    let bound = (6.0 / fan_in as f64).sqrt() as f32;
                    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                };
                let t = Tensor::from_vec(values, shape, &Device::Cpu)
                    .and_then(|t| Var::from_tensor(&t))
                    .map_err(terr(&name))?;
                Ok((name, t))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CnnModel { config, params })
    }

    /// The trainable variables, in [`CnnConfig::parameter_shapes`] order.
    pub fn vars(&self) -> Vec<Var> {
        self.params.iter().map(|(_, v)| v.clone()).collect()
    }

    /// A copy with weights in `dtype` (f64 for gradient checks).
    pub fn with_dtype(&self, dtype: DType) -> Result<Self> {
        let params = self
            .params
            .iter()
            .map(|(n, v)| {
                let t = v
                    .as_tensor()
                    .to_dtype(dtype)
                    .and_then(|t| Var::from_tensor(&t))
                    .map_err(terr(n))?;
                Ok((n.clone(), t))
            })
            .collect::<Result<_>>()?;
        Ok(CnnModel {
            config: self.config.clone(),
            params,
        })
    }

    /// Named parameters.
    pub fn named_vars(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        self.params.iter().map(|(_, v)| v.elem_count()).sum()
    }

    fn p(&self, i: usize) -> &Tensor {
        self.params[i].1.as_tensor()
    }

    /// Logits `[batch, ragas]` for inputs `[batch, 1, bins, steps]`;
    /// `dropout` is `(rate, rng)` during training, None otherwise.
    pub fn forward(
        &self,
        x: &Tensor,
        dropout: Option<(f32, &mut ChaCha8Rng)>,
    ) -> candle_core::Result<Tensor> {
        self.logits(&self.hidden(x, dropout)?)
    }

    /// Logits `[batch, ragas]` from hidden activations `[batch, hidden]`.
    fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        hidden.matmul(&self.p(10).t()?)?.broadcast_add(self.p(11))
    }

    /// The hidden layer's activations `[batch, hidden]` (after the ReLU and
    /// any dropout): the embedding the output layer reads.
    pub fn hidden(
        &self,
        x: &Tensor,
        dropout: Option<(f32, &mut ChaCha8Rng)>,
    ) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for layer in 0..4 {
            let (w, b) = (self.p(2 * layer), self.p(2 * layer + 1));
            h = conv3x3(&h, w)?
                .broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?
                .relu()?;
            if layer < 3 {
                h = max_pool_2x2(&h)?;
            }
        }
        // [b, c, bins, steps] -> mean and max over time -> [b, 2 c bins].
        let pooled = Tensor::cat(&[h.mean(D::Minus1)?, h.max(D::Minus1)?], 1)?;
        let mut f = pooled.flatten_from(1)?;
        f = f
            .matmul(&self.p(8).t()?)?
            .broadcast_add(self.p(9))?
            .relu()?;
        if let Some((rate, rng)) = dropout {
            if rate > 0.0 {
                let keep = 1.0 - rate;
                let mask: Vec<f32> = (0..f.elem_count())
                    .map(|_| {
                        if rng.random::<f32>() < keep {
                            1.0 / keep
                        } else {
                            0.0
                        }
                    })
                    .collect();
                f = f.mul(&Tensor::from_vec(mask, f.shape(), f.device())?.to_dtype(f.dtype())?)?;
            }
        }
        Ok(f)
    }

    /// Raga probabilities for a pitch image, averaged over windows of
    /// `window_steps` (hop half a window), best first.
    pub fn predict_pitch_image(&self, p: &PitchImage) -> Result<Vec<(String, f64)>> {
        Ok(self.predict_and_embed(p)?.0)
    }

    /// [`Self::predict_pitch_image`] and the clip's embedding: the hidden
    /// layer's activations averaged over the same windows.
    pub fn predict_and_embed(&self, p: &PitchImage) -> Result<(Ranked, Vec<f32>)> {
        let win = self.config.window_steps;
        if p.bins != self.config.axis.num_bins() {
            return Err(Error::param(
                "pitch image",
                format!(
                    "{} bins, the model expects {}",
                    p.bins,
                    self.config.axis.num_bins()
                ),
            ));
        }
        let starts: Vec<usize> = if p.steps <= win {
            vec![0]
        } else {
            let hop = win / 2;
            let mut s: Vec<usize> = (0..=(p.steps - win) / hop).map(|i| i * hop).collect();
            if *s.last().expect("non-empty") + win < p.steps {
                s.push(p.steps - win);
            }
            s
        };
        let mut probs = vec![0.0f64; self.config.ragas.len()];
        let mut embedding = vec![0.0f32; self.config.hidden];
        let share = 1.0 / starts.len() as f64;
        for chunk in starts.chunks(32) {
            let mut data = Vec::with_capacity(chunk.len() * p.bins * win);
            for &s in chunk {
                data.extend(p.window(s, win));
            }
            let x = Tensor::from_vec(data, (chunk.len(), 1, p.bins, win), &Device::Cpu)
                .map_err(terr("classifier input"))?;
            let (hidden, prob) = self
                .hidden(&x, None)
                .and_then(|h| {
                    let prob = candle_nn::ops::softmax(&self.logits(&h)?, D::Minus1)?;
                    Ok((h.to_vec2::<f32>()?, prob.to_vec2::<f32>()?))
                })
                .map_err(terr("classifier forward pass"))?;
            for (h, row) in hidden.into_iter().zip(prob) {
                for (acc, v) in probs.iter_mut().zip(row) {
                    *acc += v as f64 * share;
                }
                for (acc, v) in embedding.iter_mut().zip(h) {
                    *acc += v * share as f32;
                }
            }
        }
        let mut ranked: Vec<(String, f64)> = self.config.ragas.iter().cloned().zip(probs).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok((ranked, embedding))
    }

    /// Raga probabilities for a spectrogram image with the given tonic.
    pub fn predict(
        &self,
        image: &SpectrogramImage,
        params: &SpectrogramParams,
        tonic_hz: f64,
    ) -> Result<Vec<(String, f64)>> {
        let p = pitch_image(image, params, tonic_hz, &self.config.axis)?;
        self.predict_pitch_image(&p)
    }

    /// Writes `config.json` and `model.safetensors` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        write_safetensors(&dir.join("model.safetensors"), &tensors)?;
        write_json_atomic(&dir.join("config.json"), &self.config)
    }

    /// Reads a model written by [`CnnModel::save`]: every tensor the
    /// architecture needs must be present with its shape, and no other.
    pub fn load(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let weights_path = dir.join("model.safetensors");
        let config = read_bytes(&config_path)?;
        let weights = read_bytes(&weights_path)?;
        Self::from_bytes(
            &config,
            &weights,
            &config_path.display().to_string(),
            &weights_path.display().to_string(),
        )
    }

    /// Builds a model from the bytes of its `config.json` and
    /// `model.safetensors`; the names are used in error messages.
    pub fn from_bytes(
        config_json: &[u8],
        weights: &[u8],
        config_name: &str,
        weights_name: &str,
    ) -> Result<Self> {
        let bad_config = |reason: String| Error::InvalidData {
            file: config_name.to_string(),
            reason,
        };
        let config: CnnConfig =
            serde_json::from_slice(config_json).map_err(|e| bad_config(e.to_string()))?;
        config.validate().map_err(|e| bad_config(e.to_string()))?;
        // The store checks every name and shape and refuses extra tensors.
        let file = Path::new(weights_name);
        let store = WeightStore::from_safetensors_bytes(file, weights, &Device::Cpu)?;
        let vb = store.var_builder(DType::F32, &Device::Cpu);
        let mut params = Vec::new();
        for (name, shape) in config.parameter_shapes() {
            let t = vb.get(shape, &name).map_err(tensor_err(file))?;
            let values = t
                .flatten_all()
                .and_then(|f| f.to_vec1::<f32>())
                .map_err(tensor_err(file))?;
            if values.iter().any(|v| !v.is_finite()) {
                let reason = format!("tensor `{name}` holds NaN or infinite values");
                return Err(Error::checkpoint(file, reason));
            }
            params.push((name, Var::from_tensor(&t).map_err(tensor_err(file))?));
        }
        store.check_all_used()?;
        Ok(CnnModel { config, params })
    }
}

/// Serialises named f32 variables to safetensors bytes.
#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> CnnConfig {
        let mut c = CnnConfig::new(vec!["A".into(), "B".into(), "C".into()]);
        c.axis.bins_per_octave = 12;
        c.axis.octaves_above = 1;
        c.window_steps = 16;
        c.channels = [2, 3, 3, 4];
        c.hidden = 5;
        c
    }

    fn input(c: &CnnConfig, batch: usize, seed: u64) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = batch * c.axis.num_bins() * c.window_steps;
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(
            v,
            (batch, 1, c.axis.num_bins(), c.window_steps),
            &Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn every_parameter_gets_a_gradient() {
        let c = tiny();
        let m = CnnModel::new(c.clone(), 1).unwrap();
        let x = input(&c, 3, 2);
        let y = Tensor::new(&[0u32, 2, 1], &Device::Cpu).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let logits = m.forward(&x, Some((0.2, &mut rng))).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        let grads = loss.backward().unwrap();
        for (name, v) in m.named_vars() {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "{name}: zero gradient");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let c = tiny();
        let m = CnnModel::new(c.clone(), 5)
            .unwrap()
            .with_dtype(DType::F64)
            .unwrap();
        let x = input(&c, 2, 6).to_dtype(DType::F64).unwrap();
        let y = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
        let loss_of = |m: &CnnModel| -> f64 {
            let l = m.forward(&x, None).unwrap();
            candle_nn::loss::cross_entropy(&l, &y)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let l = candle_nn::loss::cross_entropy(&m.forward(&x, None).unwrap(), &y).unwrap();
        let grads = l.backward().unwrap();
        let mut checked = 0;
        for (name, var) in m.named_vars() {
            let shape = var.shape().clone();
            let base: Vec<f64> = var.flatten_all().unwrap().to_vec1().unwrap();
            let analytic: Vec<f64> = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            // The largest-gradient entry of each tensor and one fixed entry.
            let top = (0..base.len())
                .max_by(|a, b| analytic[*a].abs().total_cmp(&analytic[*b].abs()))
                .unwrap();
            for idx in [top, base.len() / 3] {
                let eps = 1e-5;
                let at = |delta: f64| {
                    let mut v = base.clone();
                    v[idx] += delta;
                    var.set(&Tensor::from_vec(v, shape.clone(), &Device::Cpu).unwrap())
                        .unwrap();
                    loss_of(&m)
                };
                let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
                at(0.0);
                let a = analytic[idx];
                assert!(
                    (a - numeric).abs() <= 1e-3 * a.abs().max(numeric.abs()) + 1e-8,
                    "{name}[{idx}]: analytic {a}, numeric {numeric}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 24);
    }

    #[test]
    fn any_length_gives_probabilities_that_sum_to_one() {
        let c = tiny();
        let m = CnnModel::new(c.clone(), 1).unwrap();
        for steps in [5, 16, 40] {
            let p = PitchImage {
                bins: c.axis.num_bins(),
                steps,
                data: (0..c.axis.num_bins() * steps)
                    .map(|i| (i % 7) as f32)
                    .collect(),
            };
            let r = m.predict_pitch_image(&p).unwrap();
            assert_eq!(r.len(), 3);
            let s: f64 = r.iter().map(|(_, v)| v).sum();
            assert!((s - 1.0).abs() < 1e-5);
            assert!(r[0].1 >= r[1].1 && r[1].1 >= r[2].1);
        }
    }

    #[test]
    fn save_load_round_trip_and_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        let c = tiny();
        let m = CnnModel::new(c.clone(), 9).unwrap();
        m.save(dir.path()).unwrap();
        let back = CnnModel::load(dir.path()).unwrap();
        assert_eq!(back.config, c);
        let x = input(&c, 2, 4);
        let a: Vec<Vec<f32>> = m.forward(&x, None).unwrap().to_vec2().unwrap();
        let b: Vec<Vec<f32>> = back.forward(&x, None).unwrap().to_vec2().unwrap();
        assert_eq!(a, b);

        // A config with another width: the weights no longer fit.
        let mut wider = c.clone();
        wider.hidden = 6;
        write_json_atomic(&dir.path().join("config.json"), &wider).unwrap();
        let e = CnnModel::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("model.safetensors") && e.contains("fc1.weight"),
            "{e}"
        );

        // Truncated weights.
        write_json_atomic(&dir.path().join("config.json"), &c).unwrap();
        let w = dir.path().join("model.safetensors");
        let bytes = std::fs::read(&w).unwrap();
        std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
        let e = CnnModel::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("model.safetensors"), "{e}");

        // Missing file.
        std::fs::remove_file(&w).unwrap();
        let e = CnnModel::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("model.safetensors"), "{e}");
    }
}
