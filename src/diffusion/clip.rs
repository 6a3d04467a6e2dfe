//! transformers' `CLIPTextModel`: token ids to the last hidden state that
//! Stable Diffusion's UNet attends to.
//!
//! Accepts both key layouts found in checkpoints: with the `text_model.`
//! prefix (transformers 4, every 2022-era SD repository, plus the
//! `embeddings.position_ids` buffer) and without it (transformers 5).

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};

use super::config::ClipTextConfig;
use crate::nn::layers::{linear, LayerNorm};

#[derive(Debug, Clone)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The CLIP text transformer.
#[derive(Debug, Clone)]
pub struct ClipTextModel {
    config: ClipTextConfig,
    token_embedding: Embedding,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
}

impl ClipTextModel {
    /// Builds the encoder of `config` from `vb`.
    pub fn new(vb: &VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        let vb = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
            vb.pp("text_model")
        } else {
            vb.clone()
        };
        let d = config.hidden_size;
        let eps = config.layer_norm_eps;
        let emb = vb.pp("embeddings");
        if emb.contains_tensor("position_ids") {
            // a buffer (0..77) saved by transformers 4; read so it counts as
            // used (a fresh model has none to give, which is fine)
            let _ = emb.get_unchecked_dtype("position_ids", DType::I64);
        }
        let token_embedding = Embedding::new(
            emb.get((config.vocab_size, d), "token_embedding.weight")?,
            d,
        );
        let position_embedding = emb.get(
            (config.max_position_embeddings, d),
            "position_embedding.weight",
        )?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = vb.pp("encoder.layers").pp(i);
                let a = l.pp("self_attn");
                Ok(EncoderLayer {
                    layer_norm1: LayerNorm::new(&l, "layer_norm1", d, eps)?,
                    q: linear(&a, "q_proj", d, d)?,
                    k: linear(&a, "k_proj", d, d)?,
                    v: linear(&a, "v_proj", d, d)?,
                    out: linear(&a, "out_proj", d, d)?,
                    layer_norm2: LayerNorm::new(&l, "layer_norm2", d, eps)?,
                    fc1: linear(&l.pp("mlp"), "fc1", d, config.intermediate_size)?,
                    fc2: linear(&l.pp("mlp"), "fc2", config.intermediate_size, d)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm: LayerNorm::new(&vb, "final_layer_norm", d, eps)?,
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        self.position_embedding.device()
    }

    fn activation(&self, x: &Tensor) -> Result<Tensor> {
        if self.config.hidden_act == "gelu" {
            x.gelu_erf()
        } else {
            x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
        }
    }

    /// `ids` `[batch, tokens]` (u32 / i64) to `[batch, tokens, hidden]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, n) = ids.dims2()?;
        let heads = self.config.num_attention_heads;
        let d = self.config.hidden_size;
        let hd = d / heads;
        let dtype = self.position_embedding.dtype();
        let pos = self.position_embedding.narrow(0, 0, n)?;
        let mut x = self
            .token_embedding
            .forward(&ids.to_dtype(DType::U32)?)?
            .broadcast_add(&pos)?;
        // causal mask: position i sees 0..=i
        let mask: Vec<f32> = (0..n * n)
            .map(|k| if k % n > k / n { f32::NEG_INFINITY } else { 0. })
            .collect();
        let mask = Tensor::from_vec(mask, (1, 1, n, n), ids.device())?;
        let scale = (hd as f64).powf(-0.5);
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, n, heads, hd))?.transpose(1, 2)?.contiguous()
        };
        for l in &self.layers {
            let h = l.layer_norm1.forward(&x)?;
            let q = split((l.q.forward(&h)? * scale)?)?;
            let k = split(l.k.forward(&h)?)?;
            let v = split(l.v.forward(&h)?)?;
            let scores = q
                .to_dtype(DType::F32)?
                .matmul(&k.to_dtype(DType::F32)?.t()?)?
                .broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?.to_dtype(dtype)?;
            let a = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, n, d))?;
            x = (l.out.forward(&a)? + x)?;
            let h = l.layer_norm2.forward(&x)?;
            let h = l.fc2.forward(&self.activation(&l.fc1.forward(&h)?)?)?;
            x = (h + x)?;
        }
        self.final_layer_norm.forward(&x)
    }
}
