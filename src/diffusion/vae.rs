//! diffusers' `AutoencoderKL`: images in [-1, 1] to latents and back.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::VaeConfig;
use crate::nn::layers::{
    conv2d, group_norm, Attention, Conv2d, Downsample, GroupNorm, ResnetBlock, Upsample,
};

const EPS: f64 = 1e-6;

/// The VAE's mid block: resnet, single-head self-attention, resnet.
#[derive(Debug, Clone)]
struct MidBlock {
    resnet0: ResnetBlock,
    attention: Option<(GroupNorm, Attention)>,
    resnet1: ResnetBlock,
}

impl MidBlock {
    fn new(vb: &VarBuilder, ch: usize, groups: usize, with_attention: bool) -> Result<Self> {
        let attention = if with_attention {
            let vb_a = vb.pp("attentions.0");
            Some((
                group_norm(&vb_a, "group_norm", groups, ch, EPS)?,
                Attention::new_vae(&vb_a, ch)?,
            ))
        } else {
            None
        };
        Ok(Self {
            resnet0: ResnetBlock::new(&vb.pp("resnets.0"), ch, ch, None, groups, EPS)?,
            attention,
            resnet1: ResnetBlock::new(&vb.pp("resnets.1"), ch, ch, None, groups, EPS)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.resnet0.forward(x, None)?;
        if let Some((norm, att)) = &self.attention {
            let (b, c, h, w) = x.dims4()?;
            let t = norm
                .forward(&x)?
                .reshape((b, c, h * w))?
                .transpose(1, 2)?
                .contiguous()?;
            let t = att.forward(&t, None)?;
            let t = t.transpose(1, 2)?.contiguous()?.reshape((b, c, h, w))?;
            x = (t + x)?;
        }
        self.resnet1.forward(&x, None)
    }
}

#[derive(Debug, Clone)]
struct Encoder {
    conv_in: Conv2d,
    down: Vec<(Vec<ResnetBlock>, Option<Downsample>)>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

#[derive(Debug, Clone)]
struct Decoder {
    conv_in: Conv2d,
    mid: MidBlock,
    up: Vec<(Vec<ResnetBlock>, Option<Upsample>)>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

/// The variational autoencoder of Stable Diffusion.
#[derive(Debug, Clone)]
pub struct Vae {
    config: VaeConfig,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
}

/// The encoder's posterior: a diagonal Gaussian per latent cell.
#[derive(Debug, Clone)]
pub struct LatentDistribution {
    /// Means, `[batch, latent_channels, h, w]`.
    pub mean: Tensor,
    /// Standard deviations, same shape.
    pub std: Tensor,
}

impl LatentDistribution {
    /// `mean + std * noise`, with `noise` of the same shape.
    pub fn sample_with(&self, noise: &Tensor) -> Result<Tensor> {
        self.mean.clone() + (&self.std * noise.to_dtype(self.std.dtype())?)?
    }
}

impl Vae {
    /// Builds the VAE of `config` from `vb`.
    pub fn new(vb: &VarBuilder, config: &VaeConfig) -> Result<Self> {
        let ch = &config.block_out_channels;
        let n = ch.len();
        let groups = config.norm_num_groups;
        let layers = config.layers_per_block;
        let last = ch[n - 1];
        let lat = config.latent_channels;

        let vb_e = vb.pp("encoder");
        let mut down = Vec::with_capacity(n);
        let mut c_prev = ch[0];
        for (i, &c) in ch.iter().enumerate() {
            let vb_b = vb_e.pp("down_blocks").pp(i);
            let resnets = (0..layers)
                .map(|j| {
                    let c_in = if j == 0 { c_prev } else { c };
                    ResnetBlock::new(&vb_b.pp("resnets").pp(j), c_in, c, None, groups, EPS)
                })
                .collect::<Result<Vec<_>>>()?;
            let ds = if i + 1 < n {
                Some(Downsample::new(&vb_b, c, 0)?)
            } else {
                None
            };
            down.push((resnets, ds));
            c_prev = c;
        }
        let encoder = Encoder {
            conv_in: conv2d(&vb_e, "conv_in", config.in_channels, ch[0], 3, 1, 1)?,
            down,
            mid: MidBlock::new(
                &vb_e.pp("mid_block"),
                last,
                groups,
                config.mid_block_add_attention,
            )?,
            norm_out: group_norm(&vb_e, "conv_norm_out", groups, last, EPS)?,
            conv_out: conv2d(&vb_e, "conv_out", last, 2 * lat, 3, 1, 1)?,
        };

        let vb_d = vb.pp("decoder");
        let mut up = Vec::with_capacity(n);
        let mut c_prev = last;
        for i in 0..n {
            let c = ch[n - 1 - i];
            let vb_b = vb_d.pp("up_blocks").pp(i);
            let resnets = (0..layers + 1)
                .map(|j| {
                    let c_in = if j == 0 { c_prev } else { c };
                    ResnetBlock::new(&vb_b.pp("resnets").pp(j), c_in, c, None, groups, EPS)
                })
                .collect::<Result<Vec<_>>>()?;
            let us = if i + 1 < n {
                Some(Upsample::new(&vb_b, c)?)
            } else {
                None
            };
            up.push((resnets, us));
            c_prev = c;
        }
        let decoder = Decoder {
            conv_in: conv2d(&vb_d, "conv_in", lat, last, 3, 1, 1)?,
            mid: MidBlock::new(
                &vb_d.pp("mid_block"),
                last,
                groups,
                config.mid_block_add_attention,
            )?,
            up,
            norm_out: group_norm(&vb_d, "conv_norm_out", groups, ch[0], EPS)?,
            conv_out: conv2d(&vb_d, "conv_out", ch[0], config.out_channels, 3, 1, 1)?,
        };

        Ok(Self {
            config: config.clone(),
            encoder,
            decoder,
            quant_conv: if config.use_quant_conv {
                Some(conv2d(vb, "quant_conv", 2 * lat, 2 * lat, 1, 0, 1)?)
            } else {
                None
            },
            post_quant_conv: if config.use_post_quant_conv {
                Some(conv2d(vb, "post_quant_conv", lat, lat, 1, 0, 1)?)
            } else {
                None
            },
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        self.encoder.conv_in.weight().device()
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.encoder.conv_in.weight().dtype()
    }

    /// Encodes images `[batch, 3, H, W]` in [-1, 1] (H and W multiples of
    /// the down-scale factor) into the latent posterior (unscaled).
    pub fn encode(&self, images: &Tensor) -> Result<LatentDistribution> {
        let e = &self.encoder;
        let mut x = e.conv_in.forward(&images.to_dtype(self.dtype())?)?;
        for (resnets, ds) in &e.down {
            for r in resnets {
                x = r.forward(&x, None)?;
            }
            if let Some(ds) = ds {
                x = ds.forward(&x)?;
            }
        }
        x = e.mid.forward(&x)?;
        x = e.conv_out.forward(&e.norm_out.forward(&x)?.silu()?)?;
        if let Some(q) = &self.quant_conv {
            x = q.forward(&x)?;
        }
        let lat = self.config.latent_channels;
        let mean = x.narrow(1, 0, lat)?;
        let logvar = x.narrow(1, lat, lat)?.clamp(-30f32, 20f32)?;
        let std = (logvar * 0.5)?.exp()?;
        Ok(LatentDistribution { mean, std })
    }

    /// Decodes unscaled latents `[batch, latent_channels, h, w]` into images
    /// in (about) [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let d = &self.decoder;
        let mut x = latents.to_dtype(self.dtype())?;
        if let Some(q) = &self.post_quant_conv {
            x = q.forward(&x)?;
        }
        x = d.conv_in.forward(&x)?;
        x = d.mid.forward(&x)?;
        for (resnets, us) in &d.up {
            for r in resnets {
                x = r.forward(&x, None)?;
            }
            if let Some(us) = us {
                x = us.forward(&x, None)?;
            }
        }
        d.conv_out.forward(&d.norm_out.forward(&x)?.silu()?)
    }
}
