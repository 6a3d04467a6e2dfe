//! Building blocks shared by the UNet, the VAE and the text encoder, under
//! diffusers' tensor names.
//!
//! Only candle ops with a backward pass are used (composite softmax and
//! layer norm, group norm, conv2d, matmul), so the same code serves
//! inference and training: candle's fused `softmax_last_dim`, `layer_norm`
//! and `sdpa` kernels have no gradient.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

/// A linear layer `name` with bias.
pub fn linear(vb: &VarBuilder, name: &str, d_in: usize, d_out: usize) -> Result<Linear> {
    let vb = vb.pp(name);
    Ok(Linear::new(
        vb.get((d_out, d_in), "weight")?,
        Some(vb.get(d_out, "bias")?),
    ))
}

/// A linear layer `name` without bias.
pub fn linear_no_bias(vb: &VarBuilder, name: &str, d_in: usize, d_out: usize) -> Result<Linear> {
    Ok(Linear::new(vb.pp(name).get((d_out, d_in), "weight")?, None))
}

/// A linear layer whose weight may be stored as a 1x1 convolution
/// (`[out, in, 1, 1]`, as in checkpoints converted from the original
/// Stable Diffusion code).
fn linear_or_1x1(vb: &VarBuilder, name: &str, d: usize) -> Result<Linear> {
    let v = vb.pp(name);
    let w = match v.get((d, d), "weight") {
        Ok(w) => w,
        Err(_) => v.get((d, d, 1, 1), "weight")?.reshape((d, d))?,
    };
    Ok(Linear::new(w, Some(v.get(d, "bias")?)))
}

/// A 2-D convolution with bias (weights `[c_out, c_in, k, k]`).
///
/// Stride-1 f32 convolutions on the CPU run through
/// [`conv_cpu`](super::conv_cpu) (several times faster than candle's for
/// small channel counts, gradients included); everything else through
/// candle's convolution.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    padding: usize,
    stride: usize,
}

impl Conv2d {
    /// A convolution from its weight `[c_out, c_in, k, k]` and bias `[c_out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>, padding: usize, stride: usize) -> Self {
        Self {
            weight,
            bias,
            padding,
            stride,
        }
    }

    /// The weight `[c_out, c_in, k, k]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if self.stride == 1 && super::conv_cpu::supported(x, &self.weight, self.padding) {
            super::conv_cpu::conv2d_stride1(x, &self.weight, self.padding)?
        } else {
            x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?
        };
        match &self.bias {
            Some(bias) => super::channel_ops::add_channel_shift(&y, bias),
            None => Ok(y),
        }
    }
}

/// A 2-D convolution `name` with bias.
pub fn conv2d(
    vb: &VarBuilder,
    name: &str,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    padding: usize,
    stride: usize,
) -> Result<Conv2d> {
    let vb = vb.pp(name);
    Ok(Conv2d::new(
        vb.get((c_out, c_in, kernel, kernel), "weight")?,
        Some(vb.get(c_out, "bias")?),
        padding,
        stride,
    ))
}

/// Group norm with a per-channel affine map, as candle's `GroupNorm`
/// computes it (statistics in f32 for half-precision inputs), with the
/// affine step through [`channel_affine`](super::channel_ops::channel_affine)
/// so that its gradients are fast on the CPU.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        if dims.len() < 3 || dims[1] != self.weight.elem_count() || dims[1] % self.groups != 0 {
            candle_core::bail!(
                "group norm of {} channels in {} groups: input {:?}",
                self.weight.elem_count(),
                self.groups,
                dims
            )
        }
        let n = dims[1..].iter().product::<usize>() / self.groups;
        let dtype = x.dtype();
        let internal = match dtype {
            DType::F16 | DType::BF16 => DType::F32,
            d => d,
        };
        let x = x.reshape((dims[0], self.groups, n))?.to_dtype(internal)?;
        let mean = (x.sum_keepdim(2)? / n as f64)?;
        let x = x.broadcast_sub(&mean)?;
        let var = (x.sqr()?.sum_keepdim(2)? / n as f64)?;
        let normed = x
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .to_dtype(dtype)?
            .reshape(dims)?;
        super::channel_ops::channel_affine(&normed, &self.weight, &self.bias)
    }
}

/// A group norm `name` over `channels`.
pub fn group_norm(
    vb: &VarBuilder,
    name: &str,
    groups: usize,
    channels: usize,
    eps: f64,
) -> Result<GroupNorm> {
    let vb = vb.pp(name);
    if groups == 0 || channels % groups != 0 {
        candle_core::bail!("{channels} channels do not split into {groups} groups")
    }
    Ok(GroupNorm {
        weight: vb.get(channels, "weight")?,
        bias: vb.get(channels, "bias")?,
        groups,
        eps,
    })
}

/// Layer norm over the last dimension, from differentiable ops (computed in
/// f32 for half-precision inputs).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads `name.weight` and `name.bias`.
    pub fn new(vb: &VarBuilder, name: &str, dim: usize, eps: f64) -> Result<Self> {
        let vb = vb.pp(name);
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = if dtype == DType::F32 || dtype == DType::F64 {
            x.clone()
        } else {
            x.to_dtype(DType::F32)?
        };
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .to_dtype(dtype)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Score-matrix budget above which attention is computed in chunks of query
/// rows when no slice size is set (32 MiB: large enough for full-speed
/// matrix products, small enough to stay in reused heap memory).
pub const AUTO_SLICE_BYTES: usize = 16 << 20;

/// Multi-head scaled dot-product attention with diffusers' `to_q`, `to_k`,
/// `to_v`, `to_out.0` projections.
#[derive(Debug, Clone)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    scale: f64,
    /// Batch x heads processed at once (diffusers' attention slicing);
    /// `None`: all heads, in chunks of query rows when the score matrices
    /// would exceed [`AUTO_SLICE_BYTES`]. f32 on the CPU takes the fused
    /// kernel of [`attention_cpu`](super::attention_cpu), whose memory is
    /// bounded anyway, and ignores it.
    pub slice_size: Option<usize>,
}

impl Attention {
    /// The transformer-block attention of the UNet: projections without
    /// bias, output with bias; `context_dim` for cross-attention.
    pub fn new(
        vb: &VarBuilder,
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self> {
        let inner = heads * head_dim;
        Ok(Self {
            to_q: linear_no_bias(vb, "to_q", query_dim, inner)?,
            to_k: linear_no_bias(vb, "to_k", context_dim, inner)?,
            to_v: linear_no_bias(vb, "to_v", context_dim, inner)?,
            to_out: linear(vb, "to_out.0", inner, query_dim)?,
            heads,
            scale: (head_dim as f64).powf(-0.5),
            slice_size: None,
        })
    }

    /// The VAE's single-head self-attention: every projection has a bias;
    /// accepts diffusers' current names and the older `query`, `key`,
    /// `value`, `proj_attn`.
    pub fn new_vae(vb: &VarBuilder, channels: usize) -> Result<Self> {
        let (q, k, v, o) = if vb.contains_tensor("to_q.weight") {
            ("to_q", "to_k", "to_v", "to_out.0")
        } else {
            ("query", "key", "value", "proj_attn")
        };
        Ok(Self {
            to_q: linear_or_1x1(vb, q, channels)?,
            to_k: linear_or_1x1(vb, k, channels)?,
            to_v: linear_or_1x1(vb, v, channels)?,
            to_out: linear_or_1x1(vb, o, channels)?,
            heads: 1,
            scale: (channels as f64).powf(-0.5),
            slice_size: None,
        })
    }

    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        x.reshape((b, n, self.heads, c / self.heads))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * self.heads, n, c / self.heads))
    }

    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let dtype = q.dtype();
        // scaling the queries costs a pass over n x d values, not n x m
        let scores = (q * self.scale)?.matmul(&k.t()?)?;
        let scores = if dtype == DType::F32 || dtype == DType::F64 {
            scores
        } else {
            scores.to_dtype(DType::F32)?
        };
        // the fused kernel has no backward pass: only when nothing is trained
        let probs = if q.track_op() || k.track_op() || v.track_op() {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        probs.to_dtype(dtype)?.matmul(v)
    }

    /// Attention over query rows in chunks whose score matrices stay within
    /// [`AUTO_SLICE_BYTES`] (the same result, bounded memory).
    fn attend_chunked(&self, q: &Tensor, k: &Tensor, v: &Tensor, budget: usize) -> Result<Tensor> {
        let (bh, n, _) = q.dims3()?;
        let m = k.dim(1)?;
        let rows = (budget / (bh * m * 4)).max(1);
        if rows >= n {
            return self.attend(q, k, v);
        }
        let mut parts = Vec::with_capacity(n.div_ceil(rows));
        let mut i = 0;
        while i < n {
            let len = rows.min(n - i);
            parts.push(self.attend(&q.narrow(1, i, len)?, k, v)?);
            i += len;
        }
        Tensor::cat(&parts, 1)
    }

    /// `x` is `[batch, tokens, query_dim]`; `context` (cross-attention) is
    /// `[batch, context_tokens, context_dim]`.
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let ctx = context.unwrap_or(x);
        let (q, k, v) = (
            self.to_q.forward(x)?,
            self.to_k.forward(ctx)?,
            self.to_v.forward(ctx)?,
        );
        if super::attention_cpu::supported(&q, &k, &v) {
            let out = super::attention_cpu::attention(&q, &k, &v, self.heads, self.scale)?;
            return self.to_out.forward(&out);
        }
        let (q, k, v) = (
            self.split_heads(&q)?,
            self.split_heads(&k)?,
            self.split_heads(&v)?,
        );
        let bh = b * self.heads;
        let out = match self.slice_size {
            Some(s) if s < bh => {
                let mut parts = Vec::with_capacity(bh.div_ceil(s));
                let mut i = 0;
                while i < bh {
                    let len = s.min(bh - i);
                    parts.push(self.attend(
                        &q.narrow(0, i, len)?,
                        &k.narrow(0, i, len)?,
                        &v.narrow(0, i, len)?,
                    )?);
                    i += len;
                }
                Tensor::cat(&parts, 0)?
            }
            _ => self.attend_chunked(&q, &k, &v, AUTO_SLICE_BYTES)?,
        };
        let d = out.dim(2)?;
        let out = out
            .reshape((b, self.heads, n, d))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, n, self.heads * d))?;
        self.to_out.forward(&out)
    }
}

/// diffusers' `ResnetBlock2D`: two group-norm / SiLU / conv stages, an
/// optional time-embedding projection, and a 1x1 shortcut when the channel
/// count changes.
#[derive(Debug, Clone)]
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    /// `temb_channels` is `None` for the VAE's blocks.
    pub fn new(
        vb: &VarBuilder,
        c_in: usize,
        c_out: usize,
        temb_channels: Option<usize>,
        groups: usize,
        eps: f64,
    ) -> Result<Self> {
        Ok(Self {
            norm1: group_norm(vb, "norm1", groups, c_in, eps)?,
            conv1: conv2d(vb, "conv1", c_in, c_out, 3, 1, 1)?,
            time_emb_proj: match temb_channels {
                Some(t) => Some(linear(vb, "time_emb_proj", t, c_out)?),
                None => None,
            },
            norm2: group_norm(vb, "norm2", groups, c_out, eps)?,
            conv2: conv2d(vb, "conv2", c_out, c_out, 3, 1, 1)?,
            shortcut: if c_in != c_out {
                Some(conv2d(vb, "conv_shortcut", c_in, c_out, 1, 0, 1)?)
            } else {
                None
            },
        })
    }

    /// `temb` is the (already SiLU-free) time embedding `[batch, temb]`.
    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let mut h = self.conv1.forward(&self.norm1.forward(x)?.silu()?)?;
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb) {
            let t = proj.forward(&t.silu()?)?.unsqueeze(2)?.unsqueeze(3)?;
            h = h.broadcast_add(&t)?;
        }
        let h = self.conv2.forward(&self.norm2.forward(&h)?.silu()?)?;
        match &self.shortcut {
            Some(s) => s.forward(x)? + h,
            None => x + h,
        }
    }
}

/// A stride-2 convolution (`downsamplers.0.conv`). With `padding == 0` the
/// input is first padded by one on the right and bottom (the VAE's
/// encoder), as diffusers does.
#[derive(Debug, Clone)]
pub struct Downsample {
    conv: Conv2d,
    pad_right_bottom: bool,
}

impl Downsample {
    /// Loads `downsamplers.0.conv` under `vb`.
    pub fn new(vb: &VarBuilder, channels: usize, padding: usize) -> Result<Self> {
        Ok(Self {
            conv: conv2d(
                &vb.pp("downsamplers.0"),
                "conv",
                channels,
                channels,
                3,
                padding,
                2,
            )?,
            pad_right_bottom: padding == 0,
        })
    }
}

impl Module for Downsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.pad_right_bottom {
            let x = x
                .pad_with_zeros(D::Minus1, 0, 1)?
                .pad_with_zeros(D::Minus2, 0, 1)?;
            self.conv.forward(&x)
        } else {
            self.conv.forward(x)
        }
    }
}

/// Nearest-neighbour up-sampling followed by a 3x3 convolution
/// (`upsamplers.0.conv`).
#[derive(Debug, Clone)]
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    /// Loads `upsamplers.0.conv` under `vb`.
    pub fn new(vb: &VarBuilder, channels: usize) -> Result<Self> {
        Ok(Self {
            conv: conv2d(&vb.pp("upsamplers.0"), "conv", channels, channels, 3, 1, 1)?,
        })
    }

    /// Up-samples to `size` (height, width), or doubles when `None`.
    pub fn forward(&self, x: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (th, tw) = size.unwrap_or((2 * h, 2 * w));
        self.conv.forward(&x.upsample_nearest2d(th, tw)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;

    /// A VarBuilder whose tensors, once created, are set to random values.
    pub(crate) fn randomise(vm: &VarMap, seed: u64) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for v in vm.all_vars() {
            let n = v.elem_count();
            let vals: Vec<f32> = (0..n).map(|_| rng.random_range(-0.5f32..0.5)).collect();
            let t = Tensor::from_vec(vals, v.shape(), v.device()).unwrap();
            v.set(&t.to_dtype(v.dtype()).unwrap()).unwrap();
        }
    }

    #[test]
    fn layer_norm_normalises_the_last_dimension() {
        let dev = Device::Cpu;
        let ln = LayerNorm {
            weight: Tensor::new(&[2f32; 8], &dev).unwrap(),
            bias: Tensor::new(&[0.5f32; 8], &dev).unwrap(),
            eps: 1e-5,
        };
        let x = (Tensor::randn(0f32, 3., (2, 5, 8), &dev).unwrap() + 7.).unwrap();
        let y = ln.forward(&x).unwrap();
        let mean = y.mean_keepdim(D::Minus1).unwrap();
        let var = y
            .broadcast_sub(&mean)
            .unwrap()
            .sqr()
            .unwrap()
            .mean(D::Minus1)
            .unwrap();
        for m in mean.flatten_all().unwrap().to_vec1::<f32>().unwrap() {
            assert!((m - 0.5).abs() < 1e-5, "{m}");
        }
        for v in var.flatten_all().unwrap().to_vec1::<f32>().unwrap() {
            assert!((v - 4.).abs() < 1e-3, "{v}");
        }
    }

    #[test]
    fn sliced_attention_equals_full_attention() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let mut att = Attention::new(&vb.pp("att"), 8, 6, 2, 4).unwrap();
        randomise(&vm, 1);
        let x = Tensor::randn(0f32, 1., (3, 5, 8), &dev).unwrap();
        let ctx = Tensor::randn(0f32, 1., (3, 4, 6), &dev).unwrap();
        let full = att.forward(&x, Some(&ctx)).unwrap();
        assert!(
            full.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 1e-3
        );
        att.slice_size = Some(4);
        let sliced = att.forward(&x, Some(&ctx)).unwrap();
        let d = (&full - sliced).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
        // query-row chunks: 2 rows at a time
        let q = att.split_heads(&att.to_q.forward(&x).unwrap()).unwrap();
        let k = att.split_heads(&att.to_k.forward(&ctx).unwrap()).unwrap();
        let v = att.split_heads(&att.to_v.forward(&ctx).unwrap()).unwrap();
        let whole = att.attend(&q, &k, &v).unwrap();
        let chunked = att.attend_chunked(&q, &k, &v, 6 * 4 * 4 * 2).unwrap();
        let d = (whole - chunked).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
