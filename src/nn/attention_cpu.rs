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
//! The backward pass is fused the same way. One task per (batch, head)
//! walks its blocks of query rows again: it recomputes the block's
//! probabilities, then `dV += P^T dO`, `dS = P * (dO V^T - rowsum(dO * O))`,
//! `dQ = scale dS K` and `dK += scale dS^T Q`, with the key and value
//! gradients accumulated in place (each task owns its head's columns).

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv_cpu::f32_slice;
use super::disjoint::SharedOut;
use super::strided::{matmul, View};
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
                    matmul(
                        (len, g.m, g.d),
                        s.as_mut_ptr(),
                        g.m,
                        false,
                        View::rows(q.as_ptr().add((b * g.n + i0) * hd + h * g.d), hd),
                        View::transposed(k.as_ptr().add(b * g.m * hd + h * g.d), hd),
                        self.scale,
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
                    matmul(
                        (len, g.dv, g.m),
                        dst.ptr().add(o),
                        hdv,
                        false,
                        View::rows(s.as_ptr(), g.m),
                        View::rows(v.as_ptr().add(b * g.m * hdv + h * g.dv), hdv),
                        1.0,
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

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.dims(q.layout(), k.layout(), v.layout())?;
        let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let grads = backward(
            g,
            self.scale,
            [&flat(q)?, &flat(k)?, &flat(v)?, &flat(out)?, &flat(grad)?],
        );
        let [dq, dk, dv] = grads;
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), dev)?),
            Some(Tensor::from_vec(dk, k.shape(), dev)?),
            Some(Tensor::from_vec(dv, v.shape(), dev)?),
        ))
    }
}

/// The gradients `[dq, dk, dv]` from `[q, k, v, out, d_out]` (see the
/// module notes).
fn backward(g: Dims, scale: f32, [q, k, v, o, go]: [&[f32]; 5]) -> [Vec<f32>; 3] {
    let (hd, hdv) = (g.heads * g.d, g.heads * g.dv);
    let rows = block_rows(g.m);
    let mut dq = vec![0f32; g.b * g.n * hd];
    let mut dk = vec![0f32; g.b * g.m * hd];
    let mut dv = vec![0f32; g.b * g.m * hdv];
    let (dqp, dkp, dvp) = (
        SharedOut(dq.as_mut_ptr()),
        SharedOut(dk.as_mut_ptr()),
        SharedOut(dv.as_mut_ptr()),
    );
    let tasks: Vec<(usize, usize)> = (0..g.b)
        .flat_map(|b| (0..g.heads).map(move |h| (b, h)))
        .collect();
    tasks.into_par_iter().for_each(|(b, h)| {
        let mut p = vec![0f32; rows * g.m];
        let mut ds = vec![0f32; rows * g.m];
        let (kb, vb) = (b * g.m * hd + h * g.d, b * g.m * hdv + h * g.dv);
        for i0 in (0..g.n).step_by(rows) {
            let len = rows.min(g.n - i0);
            let (p, ds) = (&mut p[..len * g.m], &mut ds[..len * g.m]);
            let (qb, ob) = (
                (b * g.n + i0) * hd + h * g.d,
                (b * g.n + i0) * hdv + h * g.dv,
            );
            // SAFETY (every product below): operands are the blocks named
            // in their comments, in bounds of their buffers; the
            // destinations dq (rows i0.., head h's columns), dk and dv
            // (batch b, head h's columns) belong to this task alone.
            unsafe {
                // P = softmax(scale Q K^T)
                matmul(
                    (len, g.m, g.d),
                    p.as_mut_ptr(),
                    g.m,
                    false,
                    View::rows(q.as_ptr().add(qb), hd),
                    View::transposed(k.as_ptr().add(kb), hd),
                    scale,
                );
            }
            for row in p.chunks_exact_mut(g.m) {
                let top = vecmath::max(row);
                let inv = 1.0 / vecmath::exp_shifted_sum(row, top);
                row.iter_mut().for_each(|x| *x *= inv);
            }
            unsafe {
                // dV += P^T dO
                matmul(
                    (g.m, g.dv, len),
                    dvp.ptr().add(vb),
                    hdv,
                    true,
                    View::transposed(p.as_ptr(), g.m),
                    View::rows(go.as_ptr().add(ob), hdv),
                    1.0,
                );
                // dP = dO V^T
                matmul(
                    (len, g.m, g.dv),
                    ds.as_mut_ptr(),
                    g.m,
                    false,
                    View::rows(go.as_ptr().add(ob), hdv),
                    View::transposed(v.as_ptr().add(vb), hdv),
                    1.0,
                );
            }
            // dS = P * (dP - rowsum(dO * O))
            for (r, (ds_row, p_row)) in ds
                .chunks_exact_mut(g.m)
                .zip(p.chunks_exact(g.m))
                .enumerate()
            {
                let at = ob + r * hdv;
                let dot: f32 = go[at..at + g.dv]
                    .iter()
                    .zip(&o[at..at + g.dv])
                    .map(|(a, b)| a * b)
                    .sum();
                for (d, &pv) in ds_row.iter_mut().zip(p_row) {
                    *d = pv * (*d - dot);
                }
            }
            unsafe {
                // dQ = scale dS K
                matmul(
                    (len, g.d, g.m),
                    dqp.ptr().add(qb),
                    hd,
                    false,
                    View::rows(ds.as_ptr(), g.m),
                    View::rows(k.as_ptr().add(kb), hd),
                    scale,
                );
                // dK += scale dS^T Q
                matmul(
                    (g.m, g.d, len),
                    dkp.ptr().add(kb),
                    hd,
                    true,
                    View::transposed(ds.as_ptr(), g.m),
                    View::rows(q.as_ptr().add(qb), hd),
                    scale,
                );
            }
        }
    });
    [dq, dk, dv]
}

/// Whether [`attention`] handles these operands: f32 on the CPU.
pub fn supported(q: &Tensor, k: &Tensor, v: &Tensor) -> bool {
    [q, k, v]
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// `softmax(q k^T * scale) v` per head, with `q [batch, n, heads * d]`,
/// `k [batch, m, heads * d]`, `v [batch, m, heads * dv]` (head `h` in
/// columns `h * d..(h + 1) * d`); returns `[batch, n, heads * dv]` in the
/// same head layout, differentiable in all three. Check [`supported`]
/// first.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, scale: f64) -> Result<Tensor> {
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        FusedAttention {
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

    /// The gradients of `sum(attention * probe)` with respect to q, k and
    /// v equal those of the tensor-op form.
    #[test]
    fn gradients_match_the_tensor_op_attention() {
        for (b, n, m, heads, d, dv) in [
            (2, 37, 37, 2, 4, 4),
            (1, 230, 5000, 1, 8, 8),
            (2, 70, 77, 4, 8, 6),
        ] {
            let var = |shape, seed| candle_core::Var::from_tensor(&seeded(shape, seed)).unwrap();
            let (q, k, v) = (
                var((b, n, heads * d), 1),
                var((b, m, heads * d), 2),
                var((b, m, heads * dv), 3),
            );
            let probe = seeded((b, n, heads * dv), 4);
            let scale = (d as f64).powf(-0.5);
            let loss = |out: Tensor| (out * &probe).unwrap().sum_all().unwrap();
            let (qt, kt, vt) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
            let ours = loss(attention(qt, kt, vt, heads, scale).unwrap())
                .backward()
                .unwrap();
            let theirs = loss(reference(qt, kt, vt, heads, scale))
                .backward()
                .unwrap();
            for (name, x) in [("q", qt), ("k", kt), ("v", vt)] {
                let (a, r) = (ours.get(x).unwrap(), theirs.get(x).unwrap());
                let size: f32 = r.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
                let diff = max_abs_diff(a, r);
                assert!(
                    diff < 1e-5 * size.max(1.0),
                    "d{name} of ({b}, {n}, {m}, {heads}, {d}, {dv}): {diff} (size {size})"
                );
            }
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
        assert!(supported(&t((1, 4, 6)), &t((1, 5, 6)), &t((1, 5, 6))));
        let half = t((1, 4, 6)).to_dtype(DType::F16).unwrap();
        assert!(!supported(&half, &t((1, 5, 6)), &t((1, 5, 6))));
    }
}
