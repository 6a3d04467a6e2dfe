//! A stride-1 2-D convolution for f32 tensors on the CPU, with its
//! gradients: im2col of a few output rows at a time into a small reused
//! buffer, then one matrix product per tile written straight into the
//! output.
//!
//! candle 0.11's CPU convolution gathers its im2col tiles element by
//! element and its backward goes through a transposed convolution; for the
//! channel counts of small UNets and VAEs (8-128) that leaves it several
//! times slower than the arithmetic needs. Here every tile row is a
//! contiguous copy, tiles run in parallel, and the backward pass is two
//! more calls of the same kernels: the input gradient is this convolution
//! of the output gradient with the flipped, transposed kernel; the kernel
//! gradient sums `grad_out_tile x im2col_tile^T` over tiles.
//!
//! 3 x 3 kernels with 16 or more channels on both sides (the forward and
//! the input gradient) go through Winograd's F(2x2, 3x3) instead
//! ([`winograd`](super::winograd)), which needs 2.25 times fewer
//! multiplications.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::disjoint::SharedOut;
use super::strided::{matmul, View};

/// Output pixels per tile (rounded to whole rows).
const TILE_PX: usize = 512;
/// Fewest input and output channels for the Winograd path.
const WINOGRAD_MIN_CHANNELS: usize = 16;

/// Geometry of one convolution: input `[b, c, h, w]`, kernel
/// `[o, c, k, k]`, zero padding `pad`, stride 1.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    pad: usize,
}

impl Geometry {
    fn out_h(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.k
    }
    fn out_w(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.k
    }
    fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }
    /// Whether the Winograd kernel takes this convolution: 3 x 3, and
    /// enough channels on both sides for its matrix products (over `c`)
    /// to run at speed.
    fn winograd(&self) -> bool {
        if std::env::var("RF_NOWINO").is_ok() {
            return false;
        }
        self.k == 3 && self.c >= WINOGRAD_MIN_CHANNELS && self.o >= WINOGRAD_MIN_CHANNELS
    }
    fn tile_rows(&self) -> usize {
        (TILE_PX / self.out_w().max(1)).max(1)
    }
    /// (batch, first output row, rows) of every tile.
    fn tiles(&self) -> Vec<(usize, usize, usize)> {
        let (oh, tr) = (self.out_h(), self.tile_rows());
        (0..self.b)
            .flat_map(|b| (0..oh).step_by(tr).map(move |y0| (b, y0, tr.min(oh - y0))))
            .collect()
    }

    /// im2col of output rows `y0..y0 + rows` of image `x` (`[c, h, w]`)
    /// into `cols` (`[c * k * k, rows * out_w]`).
    fn im2col(&self, x: &[f32], y0: usize, rows: usize, cols: &mut [f32]) {
        let (ow, k, pad) = (self.out_w(), self.k, self.pad);
        let n = rows * ow;
        for c in 0..self.c {
            let plane = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ki in 0..k {
                for kj in 0..k {
                    let r = (c * k + ki) * k + kj;
                    let dst = &mut cols[r * n..(r + 1) * n];
                    // valid output columns: 0 <= x + kj - pad < w
                    let x_lo = pad.saturating_sub(kj).min(ow);
                    let x_hi = (self.w + pad).saturating_sub(kj).min(ow).max(x_lo);
                    for yy in 0..rows {
                        let row = &mut dst[yy * ow..(yy + 1) * ow];
                        let iy = (y0 + yy + ki) as isize - pad as isize;
                        if iy < 0 || iy >= self.h as isize {
                            row.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * self.w..(iy as usize + 1) * self.w];
                        row[..x_lo].fill(0.0);
                        row[x_hi..].fill(0.0);
                        let s0 = x_lo + kj - pad;
                        row[x_lo..x_hi].copy_from_slice(&src[s0..s0 + (x_hi - x_lo)]);
                    }
                }
            }
        }
    }
}

/// The f32 elements of a contiguous CPU tensor's storage, or an error
/// naming `what`.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what} must be f32")
    };
    if !l.is_contiguous() {
        candle_core::bail!("{what} must be contiguous")
    }
    Ok(&v[l.start_offset()..l.start_offset() + l.shape().elem_count()])
}

/// The forward convolution `x [b, c, h, w] * w [o, c, k, k]`, stride 1.
#[derive(Debug, Clone, Copy)]
struct ConvFwd {
    pad: usize,
    /// Whether 3 x 3 kernels may take the Winograd path.
    winograd: bool,
}

impl ConvFwd {
    fn geometry(&self, xl: &Layout, wl: &Layout) -> Result<Geometry> {
        let (b, c, h, w) = xl.shape().dims4()?;
        let (o, c2, k, k2) = wl.shape().dims4()?;
        if c != c2 || k != k2 || self.pad >= k || h + 2 * self.pad < k || w + 2 * self.pad < k {
            candle_core::bail!(
                "conv_cpu: input {:?} and kernel {:?} (padding {}) do not fit",
                xl.shape(),
                wl.shape(),
                self.pad
            )
        }
        Ok(Geometry {
            b,
            c,
            h,
            w,
            o,
            k,
            pad: self.pad,
        })
    }
}

impl CustomOp2 for ConvFwd {
    fn name(&self) -> &'static str {
        "conv2d-cpu"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(xl, wl)?;
        let x = f32_slice(xs, xl, "input")?;
        let wt = f32_slice(ws, wl, "kernel")?;
        let (oh, ow, ckk) = (g.out_h(), g.out_w(), g.ckk());
        let mut out = vec![0f32; g.b * g.o * oh * ow];
        if self.winograd && g.winograd() {
            let shape = super::winograd::Conv3x3 {
                b: g.b,
                c: g.c,
                h: g.h,
                w: g.w,
                o: g.o,
                pad: g.pad,
            };
            super::winograd::conv3x3(shape, x, wt, &mut out);
            return Ok((CpuStorage::F32(out), Shape::from((g.b, g.o, oh, ow))));
        }
        let dst = SharedOut(out.as_mut_ptr());
        g.tiles().into_par_iter().for_each_init(
            || vec![0f32; ckk * g.tile_rows() * ow],
            |cols, (b, y0, rows)| {
                let n = rows * ow;
                let image = &x[b * g.c * g.h * g.w..(b + 1) * g.c * g.h * g.w];
                g.im2col(image, y0, rows, &mut cols[..ckk * n]);
                // SAFETY: the destination is rows y0..y0+rows of every
                // output channel of image b, inside `out` and written by this
                // tile alone; the operands are in bounds for the strides.
                unsafe {
                    matmul(
                        (g.o, n, ckk),
                        dst.ptr().add(b * g.o * oh * ow + y0 * ow),
                        oh * ow,
                        false,
                        View::rows(wt.as_ptr(), ckk),
                        View::rows(cols.as_ptr(), n),
                        1.0,
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((g.b, g.o, oh, ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let k = w.dim(2)?;
        let rev = Tensor::from_vec((0..k as u32).rev().collect::<Vec<_>>(), k, w.device())?;
        let w_flip = w
            .index_select(&rev, 2)?
            .index_select(&rev, 3)?
            .transpose(0, 1)?
            .contiguous()?;
        let grad = grad.contiguous()?;
        let gx = grad.apply_op2_no_bwd(
            &w_flip,
            &ConvFwd {
                pad: k - 1 - self.pad,
                winograd: self.winograd,
            },
        )?;
        let gw = x
            .contiguous()?
            .apply_op2_no_bwd(&grad, &ConvKernelGrad { pad: self.pad, k })?;
        Ok((Some(gx), Some(gw)))
    }
}

/// The kernel gradient `sum_b grad [b, o, oh, ow] x im2col(x [b, c, h, w])^T`.
#[derive(Debug, Clone, Copy)]
struct ConvKernelGrad {
    pad: usize,
    k: usize,
}

impl CustomOp2 for ConvKernelGrad {
    fn name(&self) -> &'static str {
        "conv2d-cpu-kernel-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = xl.shape().dims4()?;
        let (b2, o, oh, ow) = gl.shape().dims4()?;
        let g = Geometry {
            b,
            c,
            h,
            w,
            o,
            k: self.k,
            pad: self.pad,
        };
        if b != b2 || g.out_h() != oh || g.out_w() != ow {
            candle_core::bail!(
                "conv_cpu: gradient {:?} does not match input {:?}",
                gl.shape(),
                xl.shape()
            )
        }
        let x = f32_slice(xs, xl, "input")?;
        let gy = f32_slice(gs, gl, "gradient")?;
        let ckk = g.ckk();
        let total = g
            .tiles()
            .into_par_iter()
            .fold(
                || (vec![0f32; o * ckk], vec![0f32; ckk * g.tile_rows() * ow]),
                |(mut acc, mut cols), (bi, y0, rows)| {
                    let n = rows * ow;
                    let image = &x[bi * c * h * w..(bi + 1) * c * h * w];
                    g.im2col(image, y0, rows, &mut cols[..ckk * n]);
                    // SAFETY: acc is o x ckk; the gradient tile is rows
                    // y0..y0+rows of image bi (o rows of n, stride oh*ow);
                    // cols is ckk x n, read transposed.
                    unsafe {
                        matmul(
                            (o, ckk, n),
                            acc.as_mut_ptr(),
                            ckk,
                            true,
                            View::rows(gy.as_ptr().add(bi * o * oh * ow + y0 * ow), oh * ow),
                            View::transposed(cols.as_ptr(), n),
                            1.0,
                        );
                    }
                    (acc, cols)
                },
            )
            .map(|(acc, _)| acc)
            .reduce(
                || vec![0f32; o * ckk],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        Ok((CpuStorage::F32(total), Shape::from((o, c, self.k, self.k))))
    }
}

/// Whether [`conv2d_stride1`] handles this case: f32 on the CPU, square
/// kernel wider than one, padding below the kernel size.
pub fn supported(x: &Tensor, weight: &Tensor, padding: usize) -> bool {
    let square = matches!(weight.dims(), [_, _, k, k2] if k == k2 && *k > 1 && padding < *k);
    x.device().is_cpu() && x.dtype() == DType::F32 && weight.dtype() == DType::F32 && square
}

/// `x [b, c, h, w]` convolved with `weight [o, c, k, k]`, stride 1, zero
/// padding `padding`, differentiable in both. Check [`supported`] first.
pub fn conv2d_stride1(x: &Tensor, weight: &Tensor, padding: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op2(
        &weight.contiguous()?,
        ConvFwd {
            pad: padding,
            winograd: true,
        },
    )
}

/// [`conv2d_stride1`] through the im2col kernel alone, never Winograd's:
/// the comparison for benches and tests.
pub fn conv2d_stride1_im2col(x: &Tensor, weight: &Tensor, padding: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op2(
        &weight.contiguous()?,
        ConvFwd {
            pad: padding,
            winograd: false,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Forward and both gradients equal candle's convolution's, over
    /// shapes with odd sizes, one-row images and every padding, through
    /// the im2col and the Winograd kernels.
    #[test]
    fn matches_candle_forward_and_backward() {
        let dev = Device::Cpu;
        for &(b, c, h, w, o, k, pad) in &[
            (2, 3, 9, 13, 5, 3, 1),
            (1, 4, 1, 7, 2, 3, 1),
            (3, 2, 6, 40, 4, 3, 0),
            (1, 8, 5, 5, 3, 5, 2),
            (2, 16, 16, 70, 8, 3, 1),
            // the Winograd path: forward, and the input gradient (a 3 x 3
            // convolution of the output gradient) in both directions
            (2, 16, 11, 37, 16, 3, 1),
            (1, 17, 8, 21, 16, 3, 0),
            (1, 16, 6, 19, 20, 3, 2),
        ] {
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1., (b, c, h, w), &dev).unwrap()).unwrap();
            let wt =
                Var::from_tensor(&Tensor::randn(0f32, 1., (o, c, k, k), &dev).unwrap()).unwrap();
            let probe = Tensor::randn(
                0f32,
                1.,
                (b, o, h + 2 * pad + 1 - k, w + 2 * pad + 1 - k),
                &dev,
            )
            .unwrap();
            let ours = conv2d_stride1(x.as_tensor(), wt.as_tensor(), pad).unwrap();
            let theirs = x.as_tensor().conv2d(wt.as_tensor(), pad, 1, 1, 1).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            assert!(
                max_diff(&ours, &theirs) < 1e-4,
                "forward {:?}",
                (b, c, h, w, o, k, pad)
            );
            let g1 = (ours * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g2 = (theirs * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in [&x, &wt] {
                let (a, bb) = (
                    g1.get(v.as_tensor()).unwrap(),
                    g2.get(v.as_tensor()).unwrap(),
                );
                let scale = bb
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    max_diff(a, bb) < 1e-4 * scale.max(1.0),
                    "gradient {:?}",
                    (b, c, h, w, o, k, pad)
                );
            }
        }
    }

    #[test]
    fn refuses_what_it_does_not_handle() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 2, 4, 4), DType::F32, &dev).unwrap();
        assert!(!supported(
            &x,
            &Tensor::zeros((2, 2, 1, 1), DType::F32, &dev).unwrap(),
            0
        ));
        assert!(!supported(
            &x.to_dtype(DType::F16).unwrap(),
            &Tensor::zeros((2, 2, 3, 3), DType::F16, &dev).unwrap(),
            1
        ));
        assert!(supported(
            &x,
            &Tensor::zeros((2, 2, 3, 3), DType::F32, &dev).unwrap(),
            1
        ));
        let wrong = Tensor::zeros((2, 3, 3, 3), DType::F32, &dev).unwrap();
        assert!(conv2d_stride1(&x, &wrong, 1).is_err());
    }
}
