//! The T5 encoder (transformers' `T5EncoderModel`) that reads MusicGen's
//! text prompt: RMS-normed pre-norm blocks, unscaled attention with a
//! bucketed relative-position bias shared by all blocks, ReLU (or gated
//! GELU) feed-forward layers. Inference only.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};

use super::config::T5Config;
use crate::nn::layers::linear_no_bias;

/// T5's RMS norm: no mean, no bias, computed in f32.
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(vb: &VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?;
        let var = x32.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x32.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

#[derive(Debug, Clone)]
enum FeedForward {
    Relu {
        wi: Linear,
        wo: Linear,
    },
    GatedGelu {
        wi_0: Linear,
        wi_1: Linear,
        wo: Linear,
    },
}

impl FeedForward {
    fn new(vb: &VarBuilder, c: &T5Config) -> Result<Self> {
        let (d, f) = (c.d_model, c.d_ff);
        Ok(if c.feed_forward_proj == "gated-gelu" {
            FeedForward::GatedGelu {
                wi_0: linear_no_bias(vb, "wi_0", d, f)?,
                wi_1: linear_no_bias(vb, "wi_1", d, f)?,
                wo: linear_no_bias(vb, "wo", f, d)?,
            }
        } else {
            FeedForward::Relu {
                wi: linear_no_bias(vb, "wi", d, f)?,
                wo: linear_no_bias(vb, "wo", f, d)?,
            }
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            FeedForward::Relu { wi, wo } => wo.forward(&wi.forward(x)?.relu()?),
            FeedForward::GatedGelu { wi_0, wi_1, wo } => {
                // gelu_new: the tanh approximation
                let g = wi_0.forward(x)?.gelu()?;
                wo.forward(&(g * wi_1.forward(x)?)?)
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    norm_attn: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    norm_ff: RmsNorm,
    ff: FeedForward,
}

/// The T5 encoder stack with its token embedding.
#[derive(Debug, Clone)]
pub struct T5Encoder {
    embed: Embedding,
    blocks: Vec<Block>,
    relative_bias: Embedding,
    final_norm: RmsNorm,
    config: T5Config,
}

impl T5Encoder {
    /// Loads `shared.weight` and `encoder.*` from `vb` (the `text_encoder`
    /// prefix of a MusicGen checkpoint).
    pub fn new(vb: &VarBuilder, config: &T5Config) -> Result<Self> {
        let c = config;
        let inner = c.num_heads * c.d_kv;
        let embed = Embedding::new(
            vb.get((c.vocab_size, c.d_model), "shared.weight")?,
            c.d_model,
        );
        let enc = vb.pp("encoder");
        // a tied copy of `shared` that some exports keep
        if enc.contains_tensor("embed_tokens.weight") {
            enc.get((c.vocab_size, c.d_model), "embed_tokens.weight")?;
        }
        let mut blocks = Vec::with_capacity(c.num_layers);
        let mut relative_bias = None;
        for i in 0..c.num_layers {
            let b = enc.pp(format!("block.{i}"));
            let att = b.pp("layer.0.SelfAttention");
            if i == 0 {
                relative_bias = Some(Embedding::new(
                    att.get(
                        (c.relative_attention_num_buckets, c.num_heads),
                        "relative_attention_bias.weight",
                    )?,
                    c.num_heads,
                ));
            }
            blocks.push(Block {
                norm_attn: RmsNorm::new(
                    &b.pp("layer.0.layer_norm"),
                    c.d_model,
                    c.layer_norm_epsilon,
                )?,
                q: linear_no_bias(&att, "q", c.d_model, inner)?,
                k: linear_no_bias(&att, "k", c.d_model, inner)?,
                v: linear_no_bias(&att, "v", c.d_model, inner)?,
                o: linear_no_bias(&att, "o", inner, c.d_model)?,
                norm_ff: RmsNorm::new(
                    &b.pp("layer.1.layer_norm"),
                    c.d_model,
                    c.layer_norm_epsilon,
                )?,
                ff: FeedForward::new(&b.pp("layer.1.DenseReluDense"), c)?,
            });
        }
        let relative_bias = relative_bias
            .ok_or_else(|| candle_core::Error::Msg("text_encoder: num_layers is 0".into()))?;
        Ok(Self {
            embed,
            blocks,
            relative_bias,
            final_norm: RmsNorm::new(&enc.pp("final_layer_norm"), c.d_model, c.layer_norm_epsilon)?,
            config: c.clone(),
        })
    }

    /// The last hidden state `[batch, tokens, d_model]` of token ids
    /// `[batch, tokens]` (u32) with a 0/1 attention mask of the same shape
    /// (1 = real token).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let (b, t) = ids.dims2()?;
        let mut x = self.embed.forward(ids)?;
        let dtype = x.dtype();
        // [1, heads, t, t] position bias + [b, 1, 1, t] padding bias
        let buckets = relative_buckets(
            t,
            c.relative_attention_num_buckets,
            c.relative_attention_max_distance,
        );
        let buckets = Tensor::from_vec(buckets, (t, t), ids.device())?;
        let pos = self
            .relative_bias
            .forward(&buckets)?
            .permute((2, 0, 1))?
            .unsqueeze(0)?
            .to_dtype(DType::F32)?;
        let pad = ((mask.to_dtype(DType::F32)?.affine(-1.0, 1.0)?) * f32::MIN as f64)?
            .reshape((b, 1, 1, t))?;
        let bias = pos.broadcast_add(&pad)?.contiguous()?;
        let (h, d) = (c.num_heads, c.d_kv);
        for blk in &self.blocks {
            let n = blk.norm_attn.forward(&x)?;
            let split = |l: &Linear| -> Result<Tensor> {
                l.forward(&n)?
                    .reshape((b, t, h, d))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = (split(&blk.q)?, split(&blk.k)?, split(&blk.v)?);
            let scores = q
                .to_dtype(DType::F32)?
                .matmul(&k.to_dtype(DType::F32)?.t()?)?
                .broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
            let att = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h * d))?;
            x = (x + blk.o.forward(&att)?)?;
            let n = blk.norm_ff.forward(&x)?;
            x = (&x + blk.ff.forward(&n)?)?;
        }
        self.final_norm.forward(&x)
    }
}

/// T5's bidirectional relative-position buckets for `t` tokens, row-major
/// `[query, key]`: half the buckets for keys after the query; exact buckets
/// for the nearest `num_buckets / 4` distances, log-spaced ones up to
/// `max_distance`.
pub fn relative_buckets(t: usize, num_buckets: usize, max_distance: usize) -> Vec<u32> {
    let half = num_buckets / 2;
    let max_exact = half / 2;
    let log_range = ((max_distance as f64) / (max_exact as f64)).ln() as f32;
    let mut out = Vec::with_capacity(t * t);
    for q in 0..t {
        for k in 0..t {
            let rel = k as i64 - q as i64;
            let mut bucket = if rel > 0 { half } else { 0 };
            let dist = rel.unsigned_abs() as usize;
            bucket += if dist < max_exact {
                dist
            } else {
                // f32 as transformers computes it, truncated toward zero
                let large =
                    (dist as f32 / max_exact as f32).ln() / log_range * (half - max_exact) as f32;
                (max_exact + large as usize).min(half - 1)
            };
            out.push(bucket as u32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_t5() {
        // values of transformers' T5Attention._relative_position_bucket
        // (bidirectional, 32 buckets, max distance 128) for query 0
        let b = relative_buckets(200, 32, 128);
        let row0: Vec<u32> = [0, 1, 7, 8, 11, 12, 15, 16, 31, 60, 127, 199]
            .iter()
            .map(|&k| b[k])
            .collect();
        assert_eq!(row0, vec![0, 17, 23, 24, 24, 25, 25, 26, 27, 29, 31, 31]);
        // keys before the query use the lower half
        assert_eq!(b[199 * 200], 15);
        assert_eq!(b[5 * 200 + 4], 1);
    }
}
