//! Low-rank adapters (LoRA) on the UNet's attention projections.
//!
//! A projection weight `W` (`[out, in]`) becomes `W + (alpha / rank) B A`
//! with `A` (`[rank, in]`, Gaussian, std `1 / rank`) and `B` (`[out, rank]`,
//! zero), so training starts from the base model exactly. Adapters are
//! named as PEFT / diffusers name them (`<module>.lora_A.weight`,
//! `<module>.lora_B.weight`); [`LoraConfig::targets`] lists the module
//! suffixes that get one (diffusers' default: `to_q`, `to_k`, `to_v`,
//! `to_out.0` of every attention).

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::terr;
use crate::error::{Error, Result};

/// Which projections get adapters, and their size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank of the update.
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Module name suffixes that receive adapters.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 4,
            alpha: 4.0,
            targets: ["to_q", "to_k", "to_v", "to_out.0"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl LoraConfig {
    /// The multiplier of `B A`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Refuses rank 0 and an empty target list.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(Error::InvalidParameter {
                field: "lora rank",
                reason: "must be at least 1".into(),
            });
        }
        if self.targets.is_empty() {
            return Err(Error::InvalidParameter {
                field: "lora targets",
                reason: "name at least one module (e.g. to_q)".into(),
            });
        }
        Ok(())
    }

    /// The module a weight tensor belongs to when it gets an adapter:
    /// `...attn1.to_q.weight` -> `...attn1.to_q`. Only 2-D weights of
    /// attention blocks (`attn1` / `attn2`) qualify.
    pub fn target_module<'a>(&self, name: &'a str, dims: &[usize]) -> Option<&'a str> {
        let module = name.strip_suffix(".weight")?;
        let in_attention = module.contains(".attn1.") || module.contains(".attn2.");
        let targeted = self
            .targets
            .iter()
            .any(|t| module.ends_with(&format!(".{t}")));
        (dims.len() == 2 && in_attention && targeted).then_some(module)
    }
}

/// The adapter tensor names of `module`: (`A`, `B`).
pub fn adapter_names(module: &str) -> (String, String) {
    (
        format!("{module}.lora_A.weight"),
        format!("{module}.lora_B.weight"),
    )
}

/// Initial adapters for a `[out, in]` weight: `A` Gaussian (std `1 /
/// rank`) from `seed`, `B` zero.
pub fn init_adapters(
    out_dim: usize,
    in_dim: usize,
    rank: usize,
    seed: u64,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let mut noise = crate::nn::noise::SeededNoise::new(seed);
    let std = 1.0 / rank as f32;
    let a: Vec<f32> = noise
        .values(rank * in_dim)
        .into_iter()
        .map(|x| x * std)
        .collect();
    let a = Tensor::from_vec(a, (rank, in_dim), device).map_err(terr("LoRA init"))?;
    let b = Tensor::zeros((out_dim, rank), DType::F32, device).map_err(terr("LoRA init"))?;
    Ok((a, b))
}

/// `W + scale * B A`, in `W`'s dtype (the product is formed in f32).
pub fn merge(w: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    let f = || -> candle_core::Result<Tensor> {
        let delta = (b.to_dtype(DType::F32)?.matmul(&a.to_dtype(DType::F32)?)? * scale)?;
        if delta.dims() != w.dims() {
            candle_core::bail!(
                "adapter product {:?} does not match the weight {:?}",
                delta.dims(),
                w.dims()
            );
        }
        w.broadcast_add(&delta.to_dtype(w.dtype())?)
    };
    f().map_err(terr("LoRA merge"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_attention_projections_are_targeted() {
        let c = LoraConfig::default();
        let n = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight";
        assert_eq!(
            c.target_module(n, &[8, 8]),
            Some("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q")
        );
        let o = "mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.weight";
        assert!(c.target_module(o, &[8, 8]).is_some());
        // biases, feed-forward layers and the VAE-style names are not
        assert!(c
            .target_module(&o.replace("weight", "bias"), &[8])
            .is_none());
        assert!(c
            .target_module("down_blocks.0.attentions.0.proj_in.weight", &[8, 8])
            .is_none());
        assert!(c
            .target_module(
                "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight",
                &[8, 8]
            )
            .is_none());
    }

    #[test]
    fn fresh_adapters_leave_the_weight_unchanged_and_merge_is_b_times_a() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (6, 5), &dev).unwrap();
        let (a, b) = init_adapters(6, 5, 2, 7, &dev).unwrap();
        assert_eq!(a.dims(), [2, 5]);
        let same = merge(&w, &a, &b, 2.0).unwrap();
        let d = (&same - &w).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
        let b1 = Tensor::ones((6, 2), DType::F32, &dev).unwrap();
        let merged = merge(&w, &a, &b1, 0.5).unwrap();
        // every row gains 0.5 * (sum of A's columns)
        let col_sum = (a.sum(0).unwrap() * 0.5).unwrap();
        let want = w.broadcast_add(&col_sum).unwrap();
        let d = (merged - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
        assert!(merge(
            &w,
            &a,
            &Tensor::ones((4, 2), DType::F32, &dev).unwrap(),
            1.0
        )
        .is_err());
    }
}
