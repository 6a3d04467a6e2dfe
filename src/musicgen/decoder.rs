//! The MusicGen decoder (transformers' `MusicgenForCausalLM`): the sum of
//! one embedding per codebook plus sinusoidal positions, pre-norm layers of
//! causal self-attention (with a KV cache), cross-attention to the text
//! memory (keys and values computed once per prompt) and a GELU MLP, a
//! final layer norm and one head per codebook. Inference only.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::kv_cache::KvCache;
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use super::config::DecoderConfig;
use super::gemv::FastLinear;
use super::step_attention;

/// A bias-free linear layer `name` (`[d_out, d_in]`).
fn fast_linear(vb: &VarBuilder, name: &str, d_in: usize, d_out: usize) -> Result<FastLinear> {
    FastLinear::new(vb.pp(name).get((d_out, d_in), "weight")?)
}

const LN_EPS: f64 = 1e-5;

fn layer_norm(vb: &VarBuilder, name: &str, dim: usize) -> Result<LayerNorm> {
    let vb = vb.pp(name);
    Ok(LayerNorm::new(
        vb.get(dim, "weight")?,
        vb.get(dim, "bias")?,
        LN_EPS,
    ))
}

#[derive(Debug, Clone)]
struct Attention {
    q: FastLinear,
    k: FastLinear,
    v: FastLinear,
    out: FastLinear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(vb: &VarBuilder, hidden: usize, kv_in: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            q: fast_linear(vb, "q_proj", hidden, hidden)?,
            k: fast_linear(vb, "k_proj", kv_in, hidden)?,
            v: fast_linear(vb, "v_proj", kv_in, hidden)?,
            out: fast_linear(vb, "out_proj", hidden, hidden)?,
            heads,
            head_dim: hidden / heads,
        })
    }

    /// `[b, t, H]` -> `[b, heads, t, head_dim]`.
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        x.reshape((b, t, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split(&self.k.forward(x)?)?,
            self.split(&self.v.forward(x)?)?,
        ))
    }

    /// Attention of queries from `x` over `k`, `v` with an additive bias
    /// broadcast to `[b, heads, t, s]`.
    fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let dtype = x.dtype();
        let q = (self.split(&self.q.forward(x)?)? * (self.head_dim as f64).powf(-0.5))?;
        if bias.is_none() && step_attention::applies(&q, k) {
            let att = step_attention::step_attention(&q, k, v)?;
            return self.out.forward(&att.transpose(1, 2)?.reshape((b, t, h))?);
        }
        let mut scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(bias)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let att = probs.matmul(v)?.transpose(1, 2)?.reshape((b, t, h))?;
        self.out.forward(&att)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    self_norm: LayerNorm,
    self_attn: Attention,
    cross_norm: LayerNorm,
    cross_attn: Attention,
    final_norm: LayerNorm,
    fc1: FastLinear,
    fc2: FastLinear,
}

/// The decoder with its embeddings and heads.
#[derive(Debug, Clone)]
pub struct Decoder {
    embeds: Vec<Embedding>,
    layers: Vec<Layer>,
    norm: LayerNorm,
    /// All codebook heads stacked into one `[codebooks * vocab, H]` matrix.
    heads: FastLinear,
    config: DecoderConfig,
    device: Device,
    dtype: DType,
}

/// Per-generation state: the self-attention caches, the cross-attention
/// keys / values of the memory, and the memory's padding bias.
#[derive(Debug, Clone)]
pub struct DecoderState {
    caches: Vec<KvCache>,
    cross: Vec<(Tensor, Tensor)>,
    memory_bias: Tensor,
    batch: usize,
}

impl DecoderState {
    /// Tokens already fed (the next position).
    pub fn len(&self) -> usize {
        self.caches.first().map_or(0, |c| c.current_seq_len())
    }

    /// Whether no token has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Decoder {
    /// Loads `model.decoder.*` and `lm_heads.*` from `vb` (the `decoder`
    /// prefix of a MusicGen checkpoint); `memory_width` is the width of the
    /// cross-attended memory.
    ///
    /// On the CPU, an f16 `vb` keeps the matrices in f16 and computes in f32
    /// (see [`super::gemv`]); elsewhere the dtype is the compute dtype.
    pub fn new(vb: &VarBuilder, config: &DecoderConfig, memory_width: usize) -> Result<Self> {
        let c = config;
        let h = c.hidden_size;
        let weights_vb = vb.clone();
        let dtype = if vb.device().is_cpu() && vb.dtype() == DType::F16 {
            DType::F32
        } else {
            vb.dtype()
        };
        let vb = &vb.clone().set_dtype(dtype);
        let dec = vb.pp("model.decoder");
        let mats = weights_vb.pp("model.decoder");
        let embeds = (0..c.num_codebooks)
            .map(|k| {
                Ok(Embedding::new(
                    dec.get((c.vocab_size + 1, h), &format!("embed_tokens.{k}.weight"))?,
                    h,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        // a stored position table is ignored: positions are computed
        if dec.contains_tensor("embed_positions.weights") {
            let _ = dec.get_unchecked("embed_positions.weights")?;
        }
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = dec.pp(format!("layers.{i}"));
                let m = mats.pp(format!("layers.{i}"));
                Ok(Layer {
                    self_norm: layer_norm(&l, "self_attn_layer_norm", h)?,
                    self_attn: Attention::new(&m.pp("self_attn"), h, h, c.num_attention_heads)?,
                    cross_norm: layer_norm(&l, "encoder_attn_layer_norm", h)?,
                    cross_attn: Attention::new(
                        &m.pp("encoder_attn"),
                        h,
                        memory_width,
                        c.num_attention_heads,
                    )?,
                    final_norm: layer_norm(&l, "final_layer_norm", h)?,
                    fc1: fast_linear(&m, "fc1", h, c.ffn_dim)?,
                    fc2: fast_linear(&m, "fc2", c.ffn_dim, h)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let heads = (0..c.num_codebooks)
            .map(|k| weights_vb.get((c.vocab_size, h), &format!("lm_heads.{k}.weight")))
            .collect::<Result<Vec<_>>>()?;
        let heads = FastLinear::new(Tensor::cat(&heads, 0)?)?;
        let norm = layer_norm(&dec, "layer_norm", h)?;
        Ok(Self {
            embeds,
            layers,
            norm,
            heads,
            config: c.clone(),
            device: vb.device().clone(),
            dtype,
        })
    }

    /// The decoder's config.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Starts a generation against `memory` `[b, s, W]` with its 0/1 mask
    /// `[b, s]`: computes every layer's cross-attention keys and values once.
    /// The self-attention caches grow as needed; [`Self::start_for`] sizes
    /// them up front.
    pub fn start(&self, memory: &Tensor, mask: &Tensor) -> Result<DecoderState> {
        self.start_for(memory, mask, 256)
    }

    /// [`Self::start`] with room for `positions` tokens in the caches.
    pub fn start_for(
        &self,
        memory: &Tensor,
        mask: &Tensor,
        positions: usize,
    ) -> Result<DecoderState> {
        let (b, s, _) = memory.dims3()?;
        let memory = memory.to_dtype(self.dtype)?;
        let cross = self
            .layers
            .iter()
            .map(|l| l.cross_attn.keys_values(&memory))
            .collect::<Result<Vec<_>>>()?;
        let memory_bias = ((mask.to_dtype(DType::F32)?.affine(-1.0, 1.0)?) * f32::MIN as f64)?
            .reshape((b, 1, 1, s))?;
        Ok(DecoderState {
            caches: self
                .layers
                .iter()
                .map(|_| KvCache::new(2, positions.max(1)))
                .collect(),
            cross,
            memory_bias,
            batch: b,
        })
    }

    /// Feeds `tokens` `[b, codebooks, t]` (u32, pad = vocab_size) after the
    /// tokens already in `state` and returns the logits
    /// `[b, codebooks, t', vocab]` (f32), where `t'` is `t`, or 1 (the last
    /// position) with `last_only`.
    pub fn step(
        &self,
        state: &mut DecoderState,
        tokens: &Tensor,
        last_only: bool,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, k, t) = tokens.dims3()?;
        if b != state.batch || k != c.num_codebooks {
            candle_core::bail!(
                "decoder tokens of shape [{b}, {k}, {t}], expected [{}, {}, _]",
                state.batch,
                c.num_codebooks
            );
        }
        let offset = state.len();
        let mut x = self.embeds[0].forward(&tokens.narrow(1, 0, 1)?.squeeze(1)?)?;
        for (i, e) in self.embeds.iter().enumerate().skip(1) {
            x = (x + e.forward(&tokens.narrow(1, i, 1)?.squeeze(1)?)?)?;
        }
        if c.scale_embedding {
            x = (x * (c.hidden_size as f64).sqrt())?;
        }
        let pos = sinusoids(offset, t, c.hidden_size, &self.device)?.to_dtype(self.dtype)?;
        x = x.broadcast_add(&pos)?;
        let causal = if t > 1 {
            Some(causal_bias(offset, t, &self.device)?)
        } else {
            None
        };
        for ((layer, cache), (ck, cv)) in self
            .layers
            .iter()
            .zip(state.caches.iter_mut())
            .zip(state.cross.iter())
        {
            let n = layer.self_norm.forward(&x)?;
            let (k_new, v_new) = layer.self_attn.keys_values(&n)?;
            let (k_all, v_all) = cache.append(&k_new, &v_new)?;
            x = (x + layer
                .self_attn
                .attend(&n, &k_all, &v_all, causal.as_ref())?)?;
            let n = layer.cross_norm.forward(&x)?;
            x = (x + layer
                .cross_attn
                .attend(&n, ck, cv, Some(&state.memory_bias))?)?;
            let n = layer.final_norm.forward(&x)?;
            let ff = layer.fc2.forward(&layer.fc1.forward(&n)?.gelu_erf()?)?;
            x = (x + ff)?;
        }
        if last_only && t > 1 {
            x = x.narrow(1, t - 1, 1)?;
        }
        let t_out = x.dim(1)?;
        let x = self.norm.forward(&x)?;
        self.heads
            .forward(&x)?
            .to_dtype(DType::F32)?
            .reshape((b, t_out, k, c.vocab_size))?
            .transpose(1, 2)?
            .contiguous()
    }
}

/// Sinusoidal position embeddings `[t, dim]` for positions `offset ..
/// offset + t`: cos then sin, frequencies exp(-i ln(10000) / (dim/2 - 1)),
/// computed in f32 as transformers does.
pub fn sinusoids(offset: usize, t: usize, dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    let step = (10000f64).ln() / (half.max(2) - 1) as f64;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (i as f32 * -(step as f32)).exp())
        .collect();
    let mut data = vec![0f32; t * dim];
    for p in 0..t {
        let row = &mut data[p * dim..(p + 1) * dim];
        for (i, f) in freqs.iter().enumerate() {
            let a = (offset + p) as f32 * f;
            row[i] = a.cos();
            row[half + i] = a.sin();
        }
    }
    Tensor::from_vec(data, (t, dim), device)
}

/// Additive causal bias `[t, offset + t]` for queries at `offset ..`.
fn causal_bias(offset: usize, t: usize, device: &Device) -> Result<Tensor> {
    let s = offset + t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..s).map(move |j| if j <= offset + i { 0.0 } else { f32::MIN }))
        .collect();
    Tensor::from_vec(data, (t, s), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoids_start_cos_then_sin() {
        let s = sinusoids(3, 2, 8, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // position 3, frequency 1 for i = 0
        assert!((s[0][0] - 3f32.cos()).abs() < 1e-6 && (s[0][4] - 3f32.sin()).abs() < 1e-6);
        // the last frequency is 1/10000
        let f = 1e-4f32;
        assert!((s[1][7] - (4.0 * f).sin()).abs() < 1e-7, "{}", s[1][7]);
    }

    #[test]
    fn causal_bias_sees_the_past_and_itself() {
        let b = causal_bias(2, 2, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(b[0][..3], [0.0, 0.0, 0.0]);
        assert_eq!(b[0][3], f32::MIN);
        assert_eq!(b[1], vec![0.0; 4]);
    }
}
