//! The latent raga classifier of the auxiliary loss: a small CNN on VAE
//! latents (`[channels, h, w]`, scaled as the UNet sees them), built from
//! differentiable ops only (convolutions, group norm, SiLU, means), so the
//! fine-tuning loss can push gradients through it into the UNet.
//!
//! Layers: a 3x3 convolution, then three stride-2 3x3 convolutions, each
//! followed by group norm and SiLU; the mean over time (any clip length);
//! the frequency x channel features flattened; a hidden layer; one logit
//! per raga. Saved as `config.json` ([`LatentClassifierConfig`], kind
//! `latent-raga-cnn`) + `model.safetensors`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::trainer::LatentJudge;
use crate::error::terr;
use crate::error::{Error, Result};
use crate::fsutil::read_json;
use crate::nn::layers::{conv2d, group_norm, linear, Conv2d, GroupNorm};
use crate::nn::weights::WeightStore;

/// The `kind` in the classifier's config.json.
pub const LATENT_CLASSIFIER_KIND: &str = "latent-raga-cnn";

/// Architecture and labels of a latent classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentClassifierConfig {
    /// Always [`LATENT_CLASSIFIER_KIND`].
    pub kind: String,
    /// Output `i` scores `ragas[i]`.
    pub ragas: Vec<String>,
    /// Latent channels in (4 for SD).
    pub latent_channels: usize,
    /// Latent rows (frequency): 64 for 512-bin spectrograms.
    pub latent_height: usize,
    /// Channels of the four convolutions.
    pub channels: [usize; 4],
    /// Width of the hidden layer.
    pub hidden: usize,
    /// Group-norm groups.
    pub groups: usize,
}

impl LatentClassifierConfig {
    /// The default architecture (about 1 M parameters at height 64).
    pub fn new(ragas: Vec<String>, latent_channels: usize, latent_height: usize) -> Self {
        Self {
            kind: LATENT_CLASSIFIER_KIND.into(),
            ragas,
            latent_channels,
            latent_height,
            channels: [32, 64, 128, 128],
            hidden: 256,
            groups: 8,
        }
    }

    /// Frequency rows after the three stride-2 convolutions.
    fn pooled_rows(&self) -> usize {
        let mut h = self.latent_height;
        for _ in 0..3 {
            h = h.div_ceil(2);
        }
        h
    }

    /// Refuses sizes the network cannot be built with.
    pub fn validate(&self, file: &Path) -> Result<()> {
        let bad = |reason: String| Error::InvalidData {
            file: file.display().to_string(),
            reason,
        };
        if self.kind != LATENT_CLASSIFIER_KIND {
            return Err(bad(format!(
                "field `kind` is `{}`, expected `{LATENT_CLASSIFIER_KIND}`",
                self.kind
            )));
        }
        if self.ragas.len() < 2 {
            return Err(bad("field `ragas` needs at least two ragas".into()));
        }
        if self.latent_channels == 0 || self.latent_height == 0 || self.hidden == 0 {
            return Err(bad(
                "latent_channels, latent_height and hidden must be positive".into(),
            ));
        }
        if let Some(c) = self
            .channels
            .iter()
            .find(|&&c| c == 0 || c % self.groups != 0)
        {
            return Err(bad(format!(
                "field `channels`: {c} is not a positive multiple of groups {}",
                self.groups
            )));
        }
        Ok(())
    }
}

/// A latent raga classifier.
#[derive(Debug, Clone)]
pub struct LatentClassifier {
    config: LatentClassifierConfig,
    convs: Vec<(Conv2d, GroupNorm)>,
    fc1: Linear,
    fc2: Linear,
    index: HashMap<String, usize>,
}

impl LatentClassifier {
    /// Builds the network of `config` from `vb`.
    pub fn new(vb: &VarBuilder, config: &LatentClassifierConfig) -> candle_core::Result<Self> {
        let mut convs = Vec::new();
        let mut c_in = config.latent_channels;
        for (i, &c) in config.channels.iter().enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            convs.push((
                conv2d(vb, &format!("conv{i}"), c_in, c, 3, 1, stride)?,
                group_norm(vb, &format!("norm{i}"), config.groups, c, 1e-5)?,
            ));
            c_in = c;
        }
        let feat = config.channels[3] * config.pooled_rows();
        Ok(Self {
            convs,
            fc1: linear(vb, "fc1", feat, config.hidden)?,
            fc2: linear(vb, "fc2", config.hidden, config.ragas.len())?,
            index: config
                .ragas
                .iter()
                .enumerate()
                .map(|(i, r)| (r.clone(), i))
                .collect(),
            config: config.clone(),
        })
    }

    /// The config.
    pub fn config(&self) -> &LatentClassifierConfig {
        &self.config
    }

    /// Logits `[n, ragas]` of latents `[n, c, h, w]`. Only the first
    /// multiple of 8 columns is used: candle 0.11's convolution backward
    /// takes the output padding of both axes from the height, so a width of
    /// another parity than the height at a stride-2 layer breaks the
    /// gradient.
    pub fn logits(&self, latents: &Tensor) -> candle_core::Result<Tensor> {
        let (_, c, h, w) = latents.dims4()?;
        if c != self.config.latent_channels || h != self.config.latent_height {
            candle_core::bail!(
                "latents have {c} channels x {h} rows; the classifier takes {} x {}",
                self.config.latent_channels,
                self.config.latent_height
            );
        }
        if w < 8 {
            candle_core::bail!("latents are {w} columns wide; the classifier needs at least 8");
        }
        let mut x = latents.narrow(3, 0, w - w % 8)?.to_dtype(DType::F32)?;
        for (conv, norm) in &self.convs {
            x = norm.forward(&conv.forward(&x)?)?.silu()?;
        }
        let pooled = x.mean(D::Minus1)?.flatten_from(1)?;
        self.fc2.forward(&self.fc1.forward(&pooled)?.silu()?)
    }

    /// Loads `dir/config.json` + `dir/model.safetensors` onto `device`,
    /// every tensor checked.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config_file = dir.join("config.json");
        if !config_file.is_file() {
            return Err(Error::Checkpoint {
                file: config_file,
                reason:
                    "missing (a latent classifier folder has config.json and model.safetensors; \
                         make one with `ragafusion train-latent-classifier`)"
                        .into(),
            });
        }
        let config: LatentClassifierConfig = read_json(&config_file)?;
        config.validate(&config_file)?;
        let weights = dir.join("model.safetensors");
        let store = WeightStore::open(&weights, device)?;
        let model = Self::new(&store.var_builder(DType::F32, device), &config).map_err(|e| {
            Error::Checkpoint {
                file: weights.clone(),
                reason: e.to_string(),
            }
        })?;
        store.check_all_used()?;
        Ok(model)
    }

    /// Class probabilities of each latent, `[n][ragas]`.
    pub fn probabilities(&self, latents: &Tensor) -> Result<Vec<Vec<f32>>> {
        self.logits(latents)
            .and_then(|l| candle_nn::ops::softmax(&l, D::Minus1))
            .and_then(|p| p.to_vec2::<f32>())
            .map_err(terr("latent classifier"))
    }
}

/// Mean cross-entropy of `logits` `[n, k]` against `labels`.
pub fn cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<Tensor> {
    let ids = Tensor::from_vec(
        labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
        labels.len(),
        logits.device(),
    )
    .map_err(terr("labels"))?;
    candle_nn::loss::cross_entropy(logits, &ids).map_err(terr("cross-entropy"))
}

impl LatentJudge for LatentClassifier {
    fn loss(&self, latents: &Tensor, labels: &[usize]) -> Result<Tensor> {
        let logits = self.logits(latents).map_err(terr("latent classifier"))?;
        cross_entropy(&logits, labels)
    }

    fn class_of(&self, raga: &str) -> Option<usize> {
        self.index.get(raga).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::params::ParamSet;

    #[test]
    fn gradients_reach_the_input_latents_and_any_width_works() {
        let dev = Device::Cpu;
        let cfg = LatentClassifierConfig::new(vec!["a".into(), "b".into(), "c".into()], 4, 16);
        cfg.validate(Path::new("c.json")).unwrap();
        let params = ParamSet::fresh("latent", 1, &dev, |vb| {
            LatentClassifier::new(vb, &cfg).map(|_| ())
        })
        .unwrap();
        let m = LatentClassifier::new(&params.var_builder(DType::F32, &dev), &cfg).unwrap();
        params.check_all_used().unwrap();
        for w in [8, 13, 16] {
            let x = candle_core::Var::randn(0f32, 1., (2, 4, 16, w), &dev).unwrap();
            let loss = m.loss(x.as_tensor(), &[0, 2]).unwrap();
            let g = loss.backward().unwrap();
            let gx = g.get(x.as_tensor()).expect("input gradient");
            let n = gx
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n > 0.0);
            for v in params.vars() {
                assert!(g.get(v.as_tensor()).is_some());
            }
        }
        assert_eq!(m.class_of("c"), Some(2));
        assert_eq!(m.class_of("z"), None);
        let e = m.logits(&Tensor::zeros((1, 4, 8, 8), DType::F32, &dev).unwrap());
        assert!(e.unwrap_err().to_string().contains("rows"));
        let e = m.logits(&Tensor::zeros((1, 4, 16, 7), DType::F32, &dev).unwrap());
        assert!(e.unwrap_err().to_string().contains("columns"));
    }
}
