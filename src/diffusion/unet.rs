//! The SD 1.x / 2.x `UNet2DConditionModel`, with diffusers' tensor names.
//!
//! Built from differentiable ops only (see [`crate::nn::layers`]) so that the
//! same model is trained by `train`; takes one timestep per sample.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use super::config::UnetConfig;
use super::transformer::SpatialTransformer;
use crate::nn::layers::{
    conv2d, group_norm, linear, Conv2d, Downsample, GroupNorm, ResnetBlock, Upsample,
};
use crate::nn::segments::{self, Segment};

/// Sinusoidal embedding of `timesteps` (`[batch]`, any numeric dtype) into
/// `dim` channels, diffusers' `get_timestep_embedding`.
pub fn timestep_embedding(
    timesteps: &Tensor,
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
) -> Result<Tensor> {
    let half = dim / 2;
    let device = timesteps.device();
    let exponent: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / (half as f64 - freq_shift)).exp() as f32)
        .collect();
    let freqs = Tensor::from_vec(exponent, (1, half), device)?;
    let t = timesteps.to_dtype(DType::F32)?.unsqueeze(1)?;
    let args = t.broadcast_mul(&freqs)?;
    let (sin, cos) = (args.sin()?, args.cos()?);
    let emb = if flip_sin_to_cos {
        Tensor::cat(&[cos, sin], D::Minus1)?
    } else {
        Tensor::cat(&[sin, cos], D::Minus1)?
    };
    if dim % 2 == 1 {
        emb.pad_with_zeros(D::Minus1, 0, 1)
    } else {
        Ok(emb)
    }
}

#[derive(Debug, Clone)]
struct DownBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    downsample: Option<Downsample>,
}

#[derive(Debug, Clone)]
struct UpBlock {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
    upsample: Option<Upsample>,
}

#[derive(Debug, Clone)]
struct MidBlock {
    resnet0: ResnetBlock,
    attention: SpatialTransformer,
    resnet1: ResnetBlock,
}

/// The conditional UNet: noisy latents, timesteps and text embeddings in,
/// predicted noise (or v) out.
#[derive(Debug, Clone)]
pub struct Unet {
    config: UnetConfig,
    conv_in: Conv2d,
    time_linear_1: Linear,
    time_linear_2: Linear,
    down: Vec<DownBlock>,
    mid: MidBlock,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    dtype: DType,
}

impl Unet {
    /// Builds the UNet of `config` from `vb` (weights from a checkpoint, or
    /// fresh variables for training from scratch). The config must have
    /// passed [`UnetConfig::validate`].
    pub fn new(vb: &VarBuilder, config: &UnetConfig) -> Result<Self> {
        let c = config;
        let ch = &c.block_out_channels;
        let n = ch.len();
        let temb = 4 * ch[0];
        let groups = c.norm_num_groups;
        let eps = c.norm_eps;
        let transformer = |vb: VarBuilder, channels: usize, level: usize| {
            SpatialTransformer::new(
                &vb,
                channels,
                c.heads(level),
                c.transformer_layers_per_block.get(level),
                c.cross_attention_dim,
                groups,
                c.use_linear_projection,
            )
        };

        let mut down = Vec::with_capacity(n);
        let mut c_prev = ch[0];
        for (i, kind) in c.down_block_types.iter().enumerate() {
            let vb_b = vb.pp("down_blocks").pp(i);
            let layers = c.layers_per_block.get(i);
            let with_attention = kind == "CrossAttnDownBlock2D";
            let mut resnets = Vec::new();
            let mut attentions = Vec::new();
            for j in 0..layers {
                let c_in = if j == 0 { c_prev } else { ch[i] };
                resnets.push(ResnetBlock::new(
                    &vb_b.pp("resnets").pp(j),
                    c_in,
                    ch[i],
                    Some(temb),
                    groups,
                    eps,
                )?);
                if with_attention {
                    attentions.push(transformer(vb_b.pp("attentions").pp(j), ch[i], i)?);
                }
            }
            let downsample = if i + 1 < n {
                Some(Downsample::new(&vb_b, ch[i], c.downsample_padding)?)
            } else {
                None
            };
            down.push(DownBlock {
                resnets,
                attentions,
                downsample,
            });
            c_prev = ch[i];
        }

        let last = ch[n - 1];
        let vb_m = vb.pp("mid_block");
        let mid = MidBlock {
            resnet0: ResnetBlock::new(&vb_m.pp("resnets.0"), last, last, Some(temb), groups, eps)?,
            attention: transformer(vb_m.pp("attentions.0"), last, n - 1)?,
            resnet1: ResnetBlock::new(&vb_m.pp("resnets.1"), last, last, Some(temb), groups, eps)?,
        };

        let mut up = Vec::with_capacity(n);
        let mut c_prev_out = last;
        for (i, kind) in c.up_block_types.iter().enumerate() {
            let level = n - 1 - i;
            let c_out = ch[level];
            let c_skip_in = ch[level.saturating_sub(1)];
            let layers = c.layers_per_block.get(level) + 1;
            let with_attention = kind == "CrossAttnUpBlock2D";
            let vb_b = vb.pp("up_blocks").pp(i);
            let mut resnets = Vec::new();
            let mut attentions = Vec::new();
            for j in 0..layers {
                let skip = if j == layers - 1 { c_skip_in } else { c_out };
                let c_in = if j == 0 { c_prev_out } else { c_out };
                resnets.push(ResnetBlock::new(
                    &vb_b.pp("resnets").pp(j),
                    c_in + skip,
                    c_out,
                    Some(temb),
                    groups,
                    eps,
                )?);
                if with_attention {
                    attentions.push(transformer(vb_b.pp("attentions").pp(j), c_out, level)?);
                }
            }
            let upsample = if i + 1 < n {
                Some(Upsample::new(&vb_b, c_out)?)
            } else {
                None
            };
            up.push(UpBlock {
                resnets,
                attentions,
                upsample,
            });
            c_prev_out = c_out;
        }

        Ok(Self {
            config: c.clone(),
            conv_in: conv2d(vb, "conv_in", c.in_channels, ch[0], 3, 1, 1)?,
            time_linear_1: linear(&vb.pp("time_embedding"), "linear_1", ch[0], temb)?,
            time_linear_2: linear(&vb.pp("time_embedding"), "linear_2", temb, temb)?,
            down,
            mid,
            up,
            norm_out: group_norm(vb, "conv_norm_out", groups, ch[0], eps)?,
            conv_out: conv2d(vb, "conv_out", ch[0], c.out_channels, 3, 1, 1)?,
            dtype: vb.dtype(),
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &UnetConfig {
        &self.config
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        self.conv_in.weight().device()
    }

    /// Computes attention in slices of `slice` batch x heads (less memory),
    /// or all at once with `None`; a slice of 0 is refused.
    pub fn set_attention_slice(&mut self, slice: Option<usize>) -> crate::Result<()> {
        if slice == Some(0) {
            return Err(crate::Error::param("attention-slice", "must be at least 1"));
        }
        let all = self
            .down
            .iter_mut()
            .flat_map(|b| b.attentions.iter_mut())
            .chain(self.up.iter_mut().flat_map(|b| b.attentions.iter_mut()))
            .chain(std::iter::once(&mut self.mid.attention));
        for t in all {
            t.set_slice_size(slice);
        }
        Ok(())
    }

    /// `sample` `[batch, in_channels, h, w]`, `timesteps` `[batch]` (one per
    /// sample; a single value is broadcast), `context` `[batch, tokens,
    /// cross_attention_dim]`.
    pub fn forward(&self, sample: &Tensor, timesteps: &Tensor, context: &Tensor) -> Result<Tensor> {
        segments::run(
            &self.segments(context),
            self.segment_inputs(sample, timesteps)?,
        )
    }

    /// The first slots of [`Unet::segments`]: the sample and the sinusoidal
    /// timestep embedding (neither is differentiated).
    pub fn segment_inputs(&self, sample: &Tensor, timesteps: &Tensor) -> Result<Vec<Tensor>> {
        let b = sample.dim(0)?;
        let timesteps = match timesteps.elem_count() {
            1 => timesteps.flatten_all()?.broadcast_as(b)?.contiguous()?,
            _ => timesteps.clone(),
        };
        let c = &self.config;
        let emb = timestep_embedding(
            &timesteps,
            c.block_out_channels[0],
            c.flip_sin_to_cos,
            c.freq_shift as f64,
        )?
        .to_dtype(self.dtype)?;
        Ok(vec![sample.clone(), emb])
    }

    /// The forward as segments (one per resnet, transformer, resampler,
    /// plus the time MLP, `conv_in` and the output head) over the slots
    /// that start with [`Unet::segment_inputs`]; `context` is a constant.
    pub fn segments<'a>(&'a self, context: &'a Tensor) -> Vec<Segment<'a>> {
        const SAMPLE: usize = 0;
        const SINUSOID: usize = 1;
        const TEMB: usize = 2;
        let mut segs = vec![
            Segment::new(vec![SINUSOID], move |a| {
                let h = self.time_linear_1.forward(&a[0])?.silu()?;
                Ok(vec![self.time_linear_2.forward(&h)?])
            }),
            Segment::new(vec![SAMPLE], move |a| {
                Ok(vec![self.conv_in.forward(&a[0])?])
            }),
        ];
        // every segment writes one slot after the two inputs: the k-th
        // segment's output is slot 2 + k
        let push = |segs: &mut Vec<Segment<'a>>, seg: Segment<'a>| {
            segs.push(seg);
            SINUSOID + segs.len()
        };
        let resnet = |r: &'a ResnetBlock, x: usize| {
            Segment::new(vec![x, TEMB], move |a| {
                Ok(vec![r.forward(&a[0], Some(&a[1]))?])
            })
        };
        let attention = |t: &'a SpatialTransformer, x: usize| {
            Segment::new(vec![x], move |a| Ok(vec![t.forward(&a[0], context)?]))
        };
        let mut x = TEMB + 1;
        let mut skips = vec![x];
        for block in &self.down {
            for (j, r) in block.resnets.iter().enumerate() {
                x = push(&mut segs, resnet(r, x));
                if let Some(t) = block.attentions.get(j) {
                    x = push(&mut segs, attention(t, x));
                }
                skips.push(x);
            }
            if let Some(ds) = &block.downsample {
                x = push(
                    &mut segs,
                    Segment::new(vec![x], move |a| Ok(vec![ds.forward(&a[0])?])),
                );
                skips.push(x);
            }
        }
        x = push(&mut segs, resnet(&self.mid.resnet0, x));
        x = push(&mut segs, attention(&self.mid.attention, x));
        x = push(&mut segs, resnet(&self.mid.resnet1, x));
        for block in &self.up {
            for (j, r) in block.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip per up-block resnet");
                x = push(
                    &mut segs,
                    Segment::new(vec![x, skip, TEMB], move |a| {
                        Ok(vec![
                            r.forward(&Tensor::cat(&[&a[0], &a[1]], 1)?, Some(&a[2]))?
                        ])
                    }),
                );
                if let Some(t) = block.attentions.get(j) {
                    x = push(&mut segs, attention(t, x));
                }
            }
            if let Some(us) = &block.upsample {
                // the next skip only gives the target size
                let mut inputs = vec![x];
                inputs.extend(skips.last().copied());
                x = push(
                    &mut segs,
                    Segment::new(inputs, move |a| {
                        let size = match a.get(1) {
                            Some(s) => Some((s.dim(2)?, s.dim(3)?)),
                            None => None,
                        };
                        Ok(vec![us.forward(&a[0], size)?])
                    }),
                );
            }
        }
        push(
            &mut segs,
            Segment::new(vec![x], move |a| {
                Ok(vec![self
                    .conv_out
                    .forward(&self.norm_out.forward(&a[0])?.silu()?)?])
            }),
        );
        segs
    }
}
