//! Multi-head scaled dot-product attention for f32 on the CPU, fused so
//! that the score matrix never exists whole.
//!
//! Written with tensor ops, attention over `n` queries and `m` keys builds
//! `heads x n x m` scores, then passes over them for the maximum, the
//! exponentials, the sum and the division, each pass a fresh buffer in
//! main memory (for SD 1.5's 64 x 64 latent: 16 x 4096 x 4096 values, 1 GiB
//! per pass). Here one task takes a block of query rows of one head: a
//! matrix product writes their scores into a buffer that stays in cache,
//! each row becomes its unnormalised softmax in place
//! ([`vecmath`](super::vecmath)), a second product multiplies by the
//! values, and the rows are divided by their sums at the end (a pass over
//! `head_dim` values instead of `m`). Blocks of all heads run in parallel,
//! and the heads are read from and written to the projections'
//! `[batch, tokens, heads * head_dim]` layout directly, with no transposed
//! copies.
//!
//! Inference only: there is no backward pass (attention that is being
//! trained goes through differentiable tensor ops).

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv_cpu::f32_slice;
use super::disjoint::SharedOut;
use super::vecmath;

/// Score-tile budget of one task. Larger blocks of query rows share the
/// packing of the keys and values that the matrix products do per call:
/// at SD 1.5's 4096 tokens, 256 KiB tiles (16 rows) took 495 ms, 1 MiB
/// 360 ms and 2 MiB 341 ms on a 2-core EPYC with 2 MiB of L2 per core.
const SCORE_TILE_BYTES: usize = 2 << 20;
/// The most query rows one task takes.
const MAX_BLOCK_ROWS: usize = 256;

/// Query rows per task for `m` keys.
fn block_rows(m: usize) -> usize {
    (SCORE_TILE_BYTES / (4 * m.max(1))).clamp(1, MAX_BLOCK_ROWS)
}

/// Shapes of one call: `q [b, n, heads * d]`, `k [b, m, heads * d]`,
/// `v [b, m, heads * dv]`.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    n: usize,
    m: usize,
    heads: usize,
    d: usize,
    dv: usize,
}

#[derive(Debug, Clone, Copy)]
struct FusedAttention {
    heads: usize,
    scale: f32,
}

impl FusedAttention {
    fn dims(&self, ql: &Layout, kl: &Layout, vl: &Layout) -> Result<Dims> {
        let (b, n, hd) = ql.shape().dims3()?;
        let (bk, m, hdk) = kl.shape().dims3()?;
        let (bv, mv, hdv) = vl.shape().dims3()?;
        let h = self.heads;
        if b != bk || b != bv || m != mv || hd != hdk || h == 0 || hd % h != 0 || hdv % h != 0 {
            candle_core::bail!(
                "attention_cpu: queries {:?}, keys {:?}, values {:?} do not fit {h} heads",
                ql.shape(),
                kl.shape(),
                vl.shape()
            )
        }
        if m == 0 {
            candle_core::bail!("attention_cpu: no keys to attend to")
        }
        Ok(Dims {
            b,
            n,
            m,
            heads: h,
            d: hd / h,
            dv: hdv / h,
        })
    }
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "attention-cpu"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.dims(ql, kl, vl)?;
        let q = f32_slice(qs, ql, "queries")?;
        let k = f32_slice(ks, kl, "keys")?;
        let v = f32_slice(vs, vl, "values")?;
        let (hd, hdv) = (g.heads * g.d, g.heads * g.dv);
        let rows = block_rows(g.m);
        let mut out = vec![0f32; g.b * g.n * hdv];
        let dst = SharedOut(out.as_mut_ptr());
        let tasks: Vec<(usize, usize, usize)> = (0..g.b)
            .flat_map(|b| {
                (0..g.heads).flat_map(move |h| (0..g.n).step_by(rows).map(move |i| (b, h, i)))
            })
            .collect();
        tasks.into_par_iter().for_each_init(
            || vec![0f32; rows * g.m],
            |scores, (b, h, i0)| {
                let len = rows.min(g.n - i0);
                let s = &mut scores[..len * g.m];
                // SAFETY: the query block is rows i0..i0+len, columns
                // h*d..(h+1)*d of batch b; the keys are the m rows of batch
                // b, columns h*d.., read as the transposed right operand;
                // `s` holds len x m values. All in bounds of their buffers.
                unsafe {
                    gemm::gemm(
                        len,
                        g.m,
                        g.d,
                        s.as_mut_ptr(),
                        1,
                        g.m as isize,
                        false,
                        q.as_ptr().add((b * g.n + i0) * hd + h * g.d),
                        1,
                        hd as isize,
                        k.as_ptr().add(b * g.m * hd + h * g.d),
                        hd as isize,
                        1,
                        0.0,
                        self.scale,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                let mut inv_sums = [0f32; MAX_BLOCK_ROWS];
                for (row, inv) in s.chunks_exact_mut(g.m).zip(inv_sums.iter_mut()) {
                    let top = vecmath::max(row);
                    *inv = 1.0 / vecmath::exp_shifted_sum(row, top);
                }
                let o = (b * g.n + i0) * hdv + h * g.dv;
                // SAFETY: this task alone writes rows i0..i0+len, columns
                // h*dv..(h+1)*dv of batch b of the output (tasks partition
                // (batch, head, row block)); the values are the m rows of
                // batch b, columns h*dv.., all in bounds.
                unsafe {
                    gemm::gemm(
                        len,
                        g.dv,
                        g.m,
                        dst.ptr().add(o),
                        1,
                        hdv as isize,
                        false,
                        s.as_ptr(),
                        1,
                        g.m as isize,
                        v.as_ptr().add(b * g.m * hdv + h * g.dv),
                        1,
                        hdv as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                    for (r, inv) in inv_sums[..len].iter().enumerate() {
                        let row = std::slice::from_raw_parts_mut(dst.ptr().add(o + r * hdv), g.dv);
                        row.iter_mut().for_each(|x| *x *= inv);
                    }
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((g.b, g.n, hdv))))
    }
}

/// Whether [`attention`] handles these operands: f32 on the CPU, none of
/// them tracked for gradients.
pub fn supported(q: &Tensor, k: &Tensor, v: &Tensor) -> bool {
    [q, k, v]
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32 && !t.track_op())
}

/// `softmax(q k^T * scale) v` per head, with `q [batch, n, heads * d]`,
/// `k [batch, m, heads * d]`, `v [batch, m, heads * dv]` (head `h` in
/// columns `h * d..(h + 1) * d`); returns `[batch, n, heads * dv]` in the
/// same head layout. Check [`supported`] first.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f64) -> Result<Tensor> {
    q.contiguous()?.apply_op3_no_bwd(
        &k.contiguous()?,
        &v.contiguous()?,
        &FusedAttention {
            heads,
            scale: scale as f32,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    /// The reference: split heads, full score matrix, softmax, merge.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f64) -> Tensor {
        let split = |t: &Tensor| {
            let (b, n, c) = t.dims3().unwrap();
            t.reshape((b, n, heads, c / heads))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (q, k, v) = (split(q), split(k), split(v));
        let scores = ((q * scale).unwrap().matmul(&k.t().unwrap())).unwrap();
        let probs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        let out = probs.matmul(&v).unwrap();
        let (b, h, n, dv) = out.dims4().unwrap();
        out.transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((b, n, h * dv))
            .unwrap()
    }

    /// Values in [-2, 2) from a fixed generator.
    fn seeded(shape: (usize, usize, usize), seed: u64) -> Tensor {
        let mut state = seed;
        let n = shape.0 * shape.1 * shape.2;
        let vals: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 22) as f32 - 2.0
            })
            .collect();
        Tensor::from_vec(vals, shape, &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn matches_the_tensor_op_attention() {
        // block edges (m = 5000 gives blocks of 104 rows: 230 rows make
        // three), one key, unequal
        // query and value widths, cross-attention with m != n
        for (b, n, m, heads, d, dv) in [
            (2, 37, 37, 2, 4, 4),
            (1, 230, 5000, 1, 8, 8),
            (3, 9, 1, 3, 5, 2),
            (2, 70, 77, 4, 8, 6),
        ] {
            let q = seeded((b, n, heads * d), 1);
            let k = seeded((b, m, heads * d), 2);
            let v = seeded((b, m, heads * dv), 3);
            let scale = (d as f64).powf(-0.5) * 3.0;
            let want = reference(&q, &k, &v, heads, scale);
            let got = attention(&q, &k, &v, heads, scale).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = max_abs_diff(&got, &want);
            assert!(diff < 1e-5, "({b}, {n}, {m}, {heads}, {d}, {dv}): {diff}");
        }
    }

    #[test]
    fn refuses_operands_that_do_not_fit() {
        let dev = Device::Cpu;
        let t = |s: (usize, usize, usize)| Tensor::zeros(s, DType::F32, &dev).unwrap();
        assert!(attention(&t((1, 4, 6)), &t((1, 5, 6)), &t((1, 4, 6)), 2, 1.0).is_err());
        assert!(attention(&t((1, 4, 6)), &t((1, 5, 6)), &t((1, 5, 6)), 4, 1.0).is_err());
        assert!(attention(&t((1, 4, 6)), &t((2, 5, 6)), &t((2, 5, 6)), 2, 1.0).is_err());
        assert!(attention(&t((1, 4, 6)), &t((1, 0, 6)), &t((1, 0, 6)), 2, 1.0).is_err());
        let tracked = candle_core::Var::zeros((1, 4, 6), DType::F32, &dev).unwrap();
        assert!(!supported(
            tracked.as_tensor(),
            &t((1, 5, 6)),
            &t((1, 5, 6))
        ));
        assert!(supported(&t((1, 4, 6)), &t((1, 5, 6)), &t((1, 5, 6))));
    }
}
