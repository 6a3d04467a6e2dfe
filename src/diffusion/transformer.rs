//! diffusers' `Transformer2DModel` as used by the SD 1.x / 2.x UNet:
//! group norm, projection in, basic transformer blocks (self-attention,
//! cross-attention to the text, GEGLU feed-forward), projection out, and a
//! residual connection.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use crate::nn::layers::{conv2d, group_norm, linear, Attention, Conv2d, GroupNorm, LayerNorm};

/// The GEGLU feed-forward: `net.0.proj` to twice the inner width, value
/// times exact-GELU(gate), `net.2` back.
#[derive(Debug, Clone)]
struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    fn new(vb: &VarBuilder, dim: usize) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            proj_in: linear(&vb.pp("net.0"), "proj", dim, 2 * inner)?,
            proj_out: linear(&vb.pp("net"), "2", inner, dim)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.proj_in.forward(x)?;
        let half = h.dim(D::Minus1)? / 2;
        let value = h.narrow(D::Minus1, 0, half)?;
        let gate = h.narrow(D::Minus1, half, half)?;
        self.proj_out.forward(&(value * gate.gelu_erf()?)?)
    }
}

/// `BasicTransformerBlock` with pre-norm self-attention, cross-attention
/// and feed-forward, each with a residual.
#[derive(Debug, Clone)]
struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl TransformerBlock {
    fn new(vb: &VarBuilder, dim: usize, context_dim: usize, heads: usize) -> Result<Self> {
        let head_dim = dim / heads;
        Ok(Self {
            norm1: LayerNorm::new(vb, "norm1", dim, 1e-5)?,
            attn1: Attention::new(&vb.pp("attn1"), dim, dim, heads, head_dim)?,
            norm2: LayerNorm::new(vb, "norm2", dim, 1e-5)?,
            attn2: Attention::new(&vb.pp("attn2"), dim, context_dim, heads, head_dim)?,
            norm3: LayerNorm::new(vb, "norm3", dim, 1e-5)?,
            ff: FeedForward::new(&vb.pp("ff"), dim)?,
        })
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let x = (self.attn1.forward(&self.norm1.forward(x)?, None)? + x)?;
        let x = (self
            .attn2
            .forward(&self.norm2.forward(&x)?, Some(context))?
            + &x)?;
        self.ff.forward(&self.norm3.forward(&x)?)? + x
    }
}

#[derive(Debug, Clone)]
enum Proj {
    Conv(Conv2d),
    Linear(Linear),
}

/// A spatial transformer over a `[batch, channels, height, width]` map.
#[derive(Debug, Clone)]
pub struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Proj,
    blocks: Vec<TransformerBlock>,
    proj_out: Proj,
}

impl SpatialTransformer {
    /// `channels` in and out, `heads` of width `channels / heads`, `depth`
    /// transformer blocks attending to a `context_dim`-wide context.
    pub fn new(
        vb: &VarBuilder,
        channels: usize,
        heads: usize,
        depth: usize,
        context_dim: usize,
        groups: usize,
        linear_projection: bool,
    ) -> Result<Self> {
        let proj = |name: &str| -> Result<Proj> {
            Ok(if linear_projection {
                Proj::Linear(linear(vb, name, channels, channels)?)
            } else {
                Proj::Conv(conv2d(vb, name, channels, channels, 1, 0, 1)?)
            })
        };
        let blocks = (0..depth)
            .map(|i| {
                TransformerBlock::new(
                    &vb.pp("transformer_blocks").pp(i),
                    channels,
                    context_dim,
                    heads,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            norm: group_norm(vb, "norm", groups, channels, 1e-6)?,
            proj_in: proj("proj_in")?,
            blocks,
            proj_out: proj("proj_out")?,
        })
    }

    /// Sets the attention slice size of every block.
    pub fn set_slice_size(&mut self, slice: Option<usize>) {
        for b in &mut self.blocks {
            b.attn1.slice_size = slice;
            b.attn2.slice_size = slice;
        }
    }

    /// `context` is `[batch, tokens, context_dim]`.
    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let normed = self.norm.forward(x)?;
        let to_tokens = |t: Tensor| t.reshape((b, c, h * w))?.transpose(1, 2)?.contiguous();
        let mut t = match &self.proj_in {
            Proj::Conv(conv) => to_tokens(conv.forward(&normed)?)?,
            Proj::Linear(lin) => lin.forward(&to_tokens(normed)?)?,
        };
        for block in &self.blocks {
            t = block.forward(&t, context)?;
        }
        let to_map = |t: Tensor| t.transpose(1, 2)?.contiguous()?.reshape((b, c, h, w));
        let out = match &self.proj_out {
            Proj::Conv(conv) => conv.forward(&to_map(t)?)?,
            Proj::Linear(lin) => to_map(lin.forward(&t)?)?,
        };
        out + x
    }
}
