//! EnCodec (transformers' `EncodecModel`) as MusicGen uses it: the SEANet
//! encoder and decoder (weight-normed convolutions with reflect padding,
//! residual blocks, a two-layer LSTM) and the residual vector quantizer.
//!
//! Two details the reference computes that are easy to miss: convolutions
//! pad the input so that the last window is whole (`extra` padding on the
//! right), and transposed convolutions trim `total - total / 2` samples on
//! the left and `total / 2` on the right (non-causal). Weight norm is
//! folded into plain weights at load time; both its storage layouts
//! (`weight_g` / `weight_v` and `parametrizations.weight.original0/1`) load.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::rnn::{LSTMConfig, LSTM, RNN};
use candle_nn::{GroupNorm, VarBuilder};

use super::config::EncodecConfig;

/// A convolution's weight `[d0, d1, k]`, folding weight norm
/// (`g * v / |v|`, the norm over every dimension but the first) when the
/// checkpoint stores it that way.
fn conv_weight(vb: &VarBuilder, shape: (usize, usize, usize)) -> Result<Tensor> {
    let g_shape = (shape.0, 1, 1);
    let (g, v) = if vb.contains_tensor("weight_g") {
        (vb.get(g_shape, "weight_g")?, vb.get(shape, "weight_v")?)
    } else if vb.contains_tensor("parametrizations.weight.original0") {
        (
            vb.get(g_shape, "parametrizations.weight.original0")?,
            vb.get(shape, "parametrizations.weight.original1")?,
        )
    } else {
        return vb.get(shape, "weight");
    };
    let norm = v.sqr()?.sum_keepdim(2)?.sum_keepdim(1)?.sqrt()?;
    v.broadcast_mul(&g.broadcast_div(&norm)?)
}

/// Reflect-pads the last dimension of `[b, c, n]` by `left` / `right` the
/// way EnCodec does: inputs shorter than the padding are first extended with
/// zeros so that the reflection exists, and that extension is cut again.
fn pad_reflect(x: &Tensor, left: usize, right: usize) -> Result<Tensor> {
    let n = x.dim(D::Minus1)?;
    let max_pad = left.max(right);
    let (x, extra) = if n <= max_pad {
        let extra = max_pad - n + 1;
        (x.pad_with_zeros(D::Minus1, 0, extra)?, extra)
    } else {
        (x.clone(), 0)
    };
    let m = n + extra;
    let index: Vec<u32> = (0..left + m + right)
        .map(|i| {
            let j = i as i64 - left as i64;
            let r = if j < 0 {
                -j
            } else if j >= m as i64 {
                2 * (m as i64 - 1) - j
            } else {
                j
            };
            r as u32
        })
        .collect();
    let index = Tensor::from_vec(index, left + m + right, x.device())?;
    // index_select needs a contiguous input; a transposed or narrowed
    // activation (an LSTM's output, a trimmed convolution) is not
    let padded = x.contiguous()?.index_select(&index, 2)?;
    padded.narrow(2, 0, left + m + right - extra)
}

#[derive(Debug, Clone)]
struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    dilation: usize,
    kernel: usize,
    transpose: bool,
    causal: bool,
    reflect: bool,
    trim_right_ratio: f64,
    norm: Option<GroupNorm>,
}

struct ConvSpec {
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    transpose: bool,
}

impl Conv {
    fn new(vb: &VarBuilder, cfg: &EncodecConfig, s: ConvSpec) -> Result<Self> {
        let conv = vb.pp("conv");
        let shape = if s.transpose {
            (s.c_in, s.c_out, s.kernel)
        } else {
            (s.c_out, s.c_in, s.kernel)
        };
        let norm = if cfg.norm_type == "time_group_norm" {
            let n = vb.pp("norm");
            Some(GroupNorm::new(
                n.get(s.c_out, "weight")?,
                n.get(s.c_out, "bias")?,
                s.c_out,
                1,
                1e-5,
            )?)
        } else {
            None
        };
        Ok(Self {
            weight: conv_weight(&conv, shape)?,
            bias: conv.get(s.c_out, "bias")?,
            stride: s.stride,
            dilation: s.dilation,
            kernel: s.kernel,
            transpose: s.transpose,
            causal: cfg.use_causal_conv,
            reflect: cfg.pad_mode == "reflect",
            trim_right_ratio: cfg.trim_right_ratio,
            norm,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.reshape((1, (), 1))?;
        if self.transpose {
            let y = x
                .conv_transpose1d(&self.weight, 0, 0, self.stride, 1, 1)?
                .broadcast_add(&bias)?;
            let y = match &self.norm {
                Some(n) => n.forward(&y)?,
                None => y,
            };
            let total = self.kernel - self.stride;
            let right = if self.causal {
                (total as f64 * self.trim_right_ratio).ceil() as usize
            } else {
                total / 2
            };
            let left = total - right;
            let n = y.dim(D::Minus1)?;
            return y.narrow(2, left, n - left - right);
        }
        let n = x.dim(D::Minus1)?;
        let k_eff = (self.kernel - 1) * self.dilation + 1;
        let total = k_eff - self.stride;
        // pad so that the last window is whole
        let frames = ((n + total) as f64 - k_eff as f64) / self.stride as f64 + 1.0;
        let ideal = (frames.ceil() as usize - 1) * self.stride + k_eff - total;
        let extra = ideal.saturating_sub(n);
        let (left, right) = if self.causal {
            (total, extra)
        } else {
            (total - total / 2, total / 2 + extra)
        };
        let padded = if self.reflect {
            pad_reflect(x, left, right)?
        } else {
            x.pad_with_zeros(D::Minus1, left, right)?
        };
        let y = padded
            .conv1d(&self.weight, 0, self.stride, self.dilation, 1)?
            .broadcast_add(&bias)?;
        match &self.norm {
            Some(n) => n.forward(&y),
            None => Ok(y),
        }
    }
}

#[derive(Debug, Clone)]
struct ResBlock {
    conv1: Conv,
    conv2: Conv,
    shortcut: Option<Conv>,
}

impl ResBlock {
    fn new(vb: &VarBuilder, cfg: &EncodecConfig, dim: usize, dilation: usize) -> Result<Self> {
        let hidden = dim / cfg.compress;
        let spec = |c_in, c_out, kernel, dilation| ConvSpec {
            c_in,
            c_out,
            kernel,
            stride: 1,
            dilation,
            transpose: false,
        };
        Ok(Self {
            conv1: Conv::new(
                &vb.pp("block.1"),
                cfg,
                spec(dim, hidden, cfg.residual_kernel_size, dilation),
            )?,
            conv2: Conv::new(&vb.pp("block.3"), cfg, spec(hidden, dim, 1, 1))?,
            shortcut: if cfg.use_conv_shortcut {
                Some(Conv::new(&vb.pp("shortcut"), cfg, spec(dim, dim, 1, 1))?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv1.forward(&x.elu(1.0)?)?;
        let y = self.conv2.forward(&y.elu(1.0)?)?;
        let skip = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        skip + y
    }
}

/// LSTM layers over the time axis of `[b, c, t]`, with a skip connection.
#[derive(Debug, Clone)]
struct Lstm {
    layers: Vec<LSTM>,
}

impl Lstm {
    fn new(vb: &VarBuilder, dim: usize, num_layers: usize) -> Result<Self> {
        let layers = (0..num_layers)
            .map(|i| {
                let cfg = LSTMConfig {
                    layer_idx: i,
                    ..Default::default()
                };
                candle_nn::rnn::lstm(dim, dim, cfg, vb.pp("lstm"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let input = x.transpose(1, 2)?.contiguous()?; // [b, t, c]
        let mut h = input.clone();
        for layer in &self.layers {
            let states = layer.seq(&h)?;
            h = layer.states_to_tensor(&states)?;
        }
        (h + input)?.transpose(1, 2)?.contiguous()
    }
}

#[derive(Debug, Clone)]
enum Stage {
    Conv(Conv),
    Res(ResBlock),
    Elu,
    Lstm(Lstm),
}

impl Stage {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Stage::Conv(c) => c.forward(x),
            Stage::Res(r) => r.forward(x),
            Stage::Elu => x.elu(1.0),
            Stage::Lstm(l) => l.forward(x),
        }
    }
}

/// Builds the numbered `layers.{i}` list, ELUs included in the numbering.
struct StageList<'a> {
    vb: VarBuilder<'a>,
    stages: Vec<Stage>,
}

impl StageList<'_> {
    fn next_vb(&self) -> VarBuilder<'_> {
        self.vb.pp(format!("layers.{}", self.stages.len()))
    }
    fn conv(&mut self, cfg: &EncodecConfig, spec: ConvSpec) -> Result<()> {
        let c = Conv::new(&self.next_vb(), cfg, spec)?;
        self.stages.push(Stage::Conv(c));
        Ok(())
    }
    fn res(&mut self, cfg: &EncodecConfig, dim: usize) -> Result<()> {
        for j in 0..cfg.num_residual_layers {
            let d = cfg.dilation_growth_rate.pow(j as u32);
            let r = ResBlock::new(&self.next_vb(), cfg, dim, d)?;
            self.stages.push(Stage::Res(r));
        }
        Ok(())
    }
    fn lstm(&mut self, cfg: &EncodecConfig, dim: usize) -> Result<()> {
        let l = Lstm::new(&self.next_vb(), dim, cfg.num_lstm_layers)?;
        self.stages.push(Stage::Lstm(l));
        Ok(())
    }
}

fn plain(c_in: usize, c_out: usize, kernel: usize) -> ConvSpec {
    ConvSpec {
        c_in,
        c_out,
        kernel,
        stride: 1,
        dilation: 1,
        transpose: false,
    }
}

/// The EnCodec codec: audio <-> codes.
#[derive(Debug, Clone)]
pub struct Encodec {
    encoder: Vec<Stage>,
    decoder: Vec<Stage>,
    codebooks: Vec<Tensor>,
    config: EncodecConfig,
}

impl Encodec {
    /// Loads `encoder.*`, `decoder.*` and `quantizer.*` from `vb` (the
    /// `audio_encoder` prefix of a MusicGen checkpoint).
    pub fn new(vb: &VarBuilder, cfg: &EncodecConfig) -> Result<Self> {
        let nf = cfg.num_filters;
        let top = 1usize << cfg.upsampling_ratios.len();
        let mut enc = StageList {
            vb: vb.pp("encoder"),
            stages: Vec::new(),
        };
        enc.conv(cfg, plain(cfg.audio_channels, nf, cfg.kernel_size))?;
        let mut scale = 1;
        for &r in cfg.upsampling_ratios.iter().rev() {
            let dim = scale * nf;
            enc.res(cfg, dim)?;
            enc.stages.push(Stage::Elu);
            enc.conv(
                cfg,
                ConvSpec {
                    stride: r,
                    ..plain(dim, dim * 2, 2 * r)
                },
            )?;
            scale *= 2;
        }
        enc.lstm(cfg, top * nf)?;
        enc.stages.push(Stage::Elu);
        enc.conv(cfg, plain(top * nf, cfg.hidden_size, cfg.last_kernel_size))?;

        let mut dec = StageList {
            vb: vb.pp("decoder"),
            stages: Vec::new(),
        };
        dec.conv(cfg, plain(cfg.hidden_size, top * nf, cfg.kernel_size))?;
        dec.lstm(cfg, top * nf)?;
        let mut scale = top;
        for &r in &cfg.upsampling_ratios {
            let dim = scale * nf;
            dec.stages.push(Stage::Elu);
            dec.conv(
                cfg,
                ConvSpec {
                    stride: r,
                    transpose: true,
                    ..plain(dim, dim / 2, 2 * r)
                },
            )?;
            dec.res(cfg, dim / 2)?;
            scale /= 2;
        }
        dec.stages.push(Stage::Elu);
        dec.conv(cfg, plain(nf, cfg.audio_channels, cfg.last_kernel_size))?;

        let dim = cfg.codebook_dim();
        let codebooks = (0..cfg.num_quantizers())
            .map(|q| {
                let cb = vb.pp(format!("quantizer.layers.{q}.codebook"));
                // training statistics: present in checkpoints, unused here
                for extra in ["inited", "cluster_size", "embed_avg"] {
                    if cb.contains_tensor(extra) {
                        let _ = cb.get_unchecked(extra)?;
                    }
                }
                cb.get((cfg.codebook_size, dim), "embed")
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            encoder: enc.stages,
            decoder: dec.stages,
            codebooks,
            config: cfg.clone(),
        })
    }

    /// The codec's config.
    pub fn config(&self) -> &EncodecConfig {
        &self.config
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        self.codebooks[0].device()
    }

    /// Codes `[b, q, frames]` (u32, `q` up to the number of quantizers) to
    /// audio `[b, 1, frames * hop]` (f32).
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let (b, q, t) = codes.dims3()?;
        if q == 0 || q > self.codebooks.len() {
            candle_core::bail!(
                "{q} codebooks given, the codec has {}",
                self.codebooks.len()
            );
        }
        let dim = self.config.codebook_dim();
        let dtype = self.codebooks[0].dtype();
        let mut sum = Tensor::zeros((b * t, dim), dtype, self.device())?;
        for (k, cb) in self.codebooks.iter().take(q).enumerate() {
            let ids = codes.narrow(1, k, 1)?.flatten_all()?;
            sum = (sum + cb.index_select(&ids, 0)?)?;
        }
        let mut x = sum.reshape((b, t, dim))?.transpose(1, 2)?.contiguous()?;
        for s in &self.decoder {
            x = s.forward(&x)?;
        }
        x.to_dtype(DType::F32)
    }

    /// Audio `[b, 1, n]` to codes `[b, q, frames]` (u32) with the quantizers
    /// of the lowest bandwidth (the one MusicGen was trained on).
    pub fn encode(&self, audio: &Tensor) -> Result<Tensor> {
        let dtype = self.codebooks[0].dtype();
        let mut x = audio.to_dtype(dtype)?;
        for s in &self.encoder {
            x = s.forward(&x)?;
        }
        let (b, dim, t) = x.dims3()?;
        let mut residual = x
            .transpose(1, 2)?
            .reshape((b * t, dim))?
            .to_dtype(DType::F32)?;
        let mut all = Vec::new();
        for cb in self.codebooks.iter().take(self.encode_quantizers()) {
            let cb = cb.to_dtype(DType::F32)?;
            // argmax of -(|x|^2 - 2 x.e + |e|^2), as the reference computes it
            let xx = residual.sqr()?.sum_keepdim(1)?;
            let ee = cb.sqr()?.sum_keepdim(1)?.t()?;
            let dist = xx
                .broadcast_sub(&(residual.matmul(&cb.t()?)? * 2.0)?)?
                .broadcast_add(&ee)?
                .neg()?;
            let ids = dist.argmax(1)?;
            residual = (residual - cb.index_select(&ids, 0)?)?;
            all.push(ids.reshape((b, 1, t))?);
        }
        Tensor::cat(&all, 1)
    }

    fn encode_quantizers(&self) -> usize {
        let c = &self.config;
        let per_q = (c.codebook_size as f64).log2() * c.frame_rate() as f64;
        let bw = c.target_bandwidths.first().copied().unwrap_or(0.0);
        ((bw * 1000.0 / per_q).floor() as usize).clamp(1, self.codebooks.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_padding_takes_non_contiguous_inputs() {
        // [1, 4, 2] transposed to [1, 2, 4]: a strided view, as after an LSTM
        let x = Tensor::arange(0f32, 8., &Device::Cpu)
            .unwrap()
            .reshape((1, 4, 2))
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        assert!(!x.is_contiguous());
        let a = pad_reflect(&x, 2, 1).unwrap();
        let b = pad_reflect(&x.contiguous().unwrap(), 2, 1).unwrap();
        assert_eq!(a.to_vec3::<f32>().unwrap(), b.to_vec3::<f32>().unwrap());
        assert_eq!(a.dims(), &[1, 2, 7]);
    }

    #[test]
    fn reflect_padding_matches_torch() {
        let x = Tensor::new(&[[[1f32, 2., 3., 4.]]], &Device::Cpu).unwrap();
        let p = pad_reflect(&x, 2, 3).unwrap().flatten_all().unwrap();
        assert_eq!(
            p.to_vec1::<f32>().unwrap(),
            vec![3., 2., 1., 2., 3., 4., 3., 2., 1.]
        );
        // shorter than the padding: zeros first, reflected, then cut
        let x = Tensor::new(&[[[5f32, 6.]]], &Device::Cpu).unwrap();
        let p = pad_reflect(&x, 3, 1).unwrap().flatten_all().unwrap();
        // torch: pad [5, 6, 0, 0] by (3, 1) -> [0, 0, 6, 5, 6, 0, 0, 0], drop 2
        assert_eq!(p.to_vec1::<f32>().unwrap(), vec![0., 0., 6., 5., 6., 0.]);
    }
}
