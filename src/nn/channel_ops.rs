//! Per-channel affine maps of `[batch, channels, ...]` f32 tensors on the
//! CPU, `x * scale[c] + shift[c]`, with gradients.
//!
//! Written with broadcasting, the backward pass of such a map reduces the
//! gradient over the batch and pixel axes, which candle 0.11 does element
//! by element on one core: in a small VAE's training step those
//! reductions cost more than the convolutions. Here a channel's sum is a
//! run over contiguous rows.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};

/// `[batch, channels, rest]` sizes of a layout with at least two axes.
fn bcs(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.shape().dims();
    if d.len() < 2 {
        candle_core::bail!("channel_ops: expected [batch, channels, ...], got {:?}", d)
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

fn affine(
    x: &[f32],
    (b, c, s): (usize, usize, usize),
    scale: Option<&[f32]>,
    shift: &[f32],
) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for bi in 0..b {
        for ci in 0..c {
            let o = (bi * c + ci) * s;
            let (w, t) = (scale.map(|v| v[ci]).unwrap_or(1.0), shift[ci]);
            for (y, &v) in out[o..o + s].iter_mut().zip(&x[o..o + s]) {
                *y = v * w + t;
            }
        }
    }
    out
}

/// Sum over batch and pixels: `[b, c, ...] -> [c]`.
struct ChannelSum;

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, n) = bcs(l)?;
        let x = super::conv_cpu::f32_slice(s, l, "input")?;
        let mut out = vec![0f32; c];
        for bi in 0..b {
            for (ci, acc) in out.iter_mut().enumerate() {
                let o = (bi * c + ci) * n;
                // f64 partial sums: pixel counts reach 10^6 in a batch
                *acc += x[o..o + n].iter().map(|&v| v as f64).sum::<f64>() as f32;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(c)))
    }
}

fn channel_sum(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&ChannelSum)
}

/// `x + shift[c]`.
struct ChannelShift;

impl CustomOp2 for ChannelShift {
    fn name(&self) -> &'static str {
        "channel-shift"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = bcs(xl)?;
        let out = affine(
            super::conv_cpu::f32_slice(xs, xl, "input")?,
            dims,
            None,
            super::conv_cpu::f32_slice(ts, tl, "shift")?,
        );
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _t: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(channel_sum(grad)?)))
    }
}

/// `x * scale[c] + shift[c]`.
struct ChannelAffine;

impl CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        "channel-affine"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = bcs(xl)?;
        let out = affine(
            super::conv_cpu::f32_slice(xs, xl, "input")?,
            dims,
            Some(super::conv_cpu::f32_slice(ws, wl, "scale")?),
            super::conv_cpu::f32_slice(ts, tl, "shift")?,
        );
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _t: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let zero = w.zeros_like()?;
        let gx = grad.apply_op3_no_bwd(w, &zero, &ChannelAffine)?;
        let gw = channel_sum(&(&grad * x)?)?;
        Ok((Some(gx), Some(gw), Some(channel_sum(&grad)?)))
    }
}

fn fast(x: &Tensor, params: &[&Tensor]) -> bool {
    x.device().is_cpu()
        && x.dtype() == DType::F32
        && x.rank() >= 2
        && params
            .iter()
            .all(|p| p.dtype() == DType::F32 && p.dims() == [x.dims()[1]])
}

/// `x [b, c, ...] + shift [c]`, differentiable in both.
pub fn add_channel_shift(x: &Tensor, shift: &Tensor) -> Result<Tensor> {
    if fast(x, &[shift]) {
        return x
            .contiguous()?
            .apply_op2(&shift.contiguous()?, ChannelShift);
    }
    let mut dims = vec![1; x.rank()];
    dims[1] = shift.elem_count();
    x.broadcast_add(&shift.reshape(dims)?)
}

/// `x [b, c, ...] * scale [c] + shift [c]`, differentiable in all three.
pub fn channel_affine(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    if fast(x, &[scale, shift]) {
        return x.contiguous()?.apply_op3(
            &scale.contiguous()?,
            &shift.contiguous()?,
            ChannelAffine,
        );
    }
    let mut dims = vec![1; x.rank()];
    dims[1] = shift.elem_count();
    x.broadcast_mul(&scale.reshape(dims.clone())?)?
        .broadcast_add(&shift.reshape(dims)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &Tensor) -> bool {
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        d.to_scalar::<f32>().unwrap() < 1e-3
    }

    #[test]
    fn match_the_broadcast_forms_and_their_gradients() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (3, 5, 4, 7), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1., 5, &dev).unwrap()).unwrap();
        let t = Var::from_tensor(&Tensor::randn(0f32, 1., 5, &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1., (3, 5, 4, 7), &dev).unwrap();
        let reference = x
            .broadcast_mul(&w.reshape((1, 5, 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&t.reshape((1, 5, 1, 1)).unwrap())
            .unwrap();
        let ours = channel_affine(&x, &w, &t).unwrap();
        assert!(close(&ours, &reference));
        let g1 = (ours * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g2 = (reference * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&x, &w, &t] {
            assert!(close(g1.get(v).unwrap(), g2.get(v).unwrap()));
        }

        let reference = x.broadcast_add(&t.reshape((1, 5, 1, 1)).unwrap()).unwrap();
        let ours = add_channel_shift(&x, &t).unwrap();
        assert!(close(&ours, &reference));
        let g1 = (ours * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g2 = (reference * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&x, &t] {
            assert!(close(g1.get(v).unwrap(), g2.get(v).unwrap()));
        }
        // three axes, and the broadcast fallback for other dtypes
        let x3 = Tensor::randn(0f32, 1., (2, 5, 6), &dev).unwrap();
        let r3 = x3.broadcast_add(&t.reshape((1, 5, 1)).unwrap()).unwrap();
        assert!(close(&add_channel_shift(&x3, &t).unwrap(), &r3));
        let h = x3.to_dtype(DType::F64).unwrap();
        let th = t.to_dtype(DType::F64).unwrap();
        let r = add_channel_shift(&h, &th)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert!(close(&r, &r3));
    }
}
