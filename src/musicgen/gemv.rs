//! Linear layers for token-by-token decoding.
//!
//! A decoder step multiplies one or two rows by every weight matrix, so it
//! is bound by reading the weights. On the CPU, for f32 inputs of at most
//! [`MAX_ROWS`] rows, [`FastLinear`] streams each weight row once and takes
//! its dot product with every input row (AVX2 + FMA where available), split
//! over the rayon pool. Weights may be held in f16 there: they are widened
//! block by block inside the dot products, which halves the bytes read per
//! step while the arithmetic stays f32. Larger inputs and other devices use
//! candle's matrix product (with the weight converted to the input's dtype).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::Linear;
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// Inputs with up to this many rows take the streaming path.
pub const MAX_ROWS: usize = 8;

/// A linear layer without bias, `y = x W^T`, with the streaming CPU path.
#[derive(Debug, Clone)]
pub struct FastLinear {
    weight: Tensor,
}

impl FastLinear {
    /// Wraps a `[out, in]` weight (a non-contiguous one always takes
    /// candle's product).
    pub fn new(weight: Tensor) -> Result<Self> {
        Ok(Self { weight })
    }

    /// The `[out, in]` weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for FastLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let k = *dims.last().unwrap_or(&0);
        let rows = x.elem_count() / k.max(1);
        let streaming = x.device().is_cpu()
            && x.dtype() == DType::F32
            && matches!(self.weight.dtype(), DType::F32 | DType::F16)
            && rows <= MAX_ROWS
            && k > 0
            && self.weight.is_contiguous();
        if !streaming {
            let w = self.weight.to_dtype(x.dtype())?;
            return Linear::new(w, None).forward(x);
        }
        let flat = x.reshape((rows, k))?.contiguous()?;
        let y = flat.apply_op2_no_bwd(&self.weight, &RowDots)?;
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("non-empty dims") = self.weight.dim(0)?;
        y.reshape(out_dims)
    }
}

/// `x [m, k]` times `w [n, k]` transposed, as dot products of rows.
struct RowDots;

impl CustomOp2 for RowDots {
    fn name(&self) -> &'static str {
        "row-dots"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("row-dots: inner sizes {k} and {k2} differ");
        }
        let (Some((a0, a1)), Some((b0, b1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("row-dots: operands must be contiguous");
        };
        let x = &s1.as_slice::<f32>()?[a0..a1];
        let out = match s2 {
            CpuStorage::F16(w) => row_dots(x, Weights::F16(&w[b0..b1]), m, n, k),
            _ => row_dots(x, Weights::F32(&s2.as_slice::<f32>()?[b0..b1]), m, n, k),
        };
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

/// A weight matrix, row-major `[n, k]`.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    /// Single precision.
    F32(&'a [f32]),
    /// Half precision, widened to f32 in blocks.
    F16(&'a [f16]),
}

/// `out[i][j] = x[i] . w[j]` for `x` `[m, k]` and `w` `[n, k]`, row-major.
pub fn row_dots(x: &[f32], w: Weights, m: usize, n: usize, k: usize) -> Vec<f32> {
    // out is built transposed ([n, m]) so that each task owns whole rows
    let mut out_t = vec![0f32; n * m];
    let per_task = (n / (4 * rayon::current_num_threads()).max(1)).clamp(16, 1024);
    out_t
        .par_chunks_mut(per_task * m)
        .enumerate()
        .for_each(|(c, chunk)| {
            let rows = chunk.len() / m;
            let span = c * per_task * k..(c * per_task + rows) * k;
            match w {
                Weights::F32(w) => dots_block(x, &w[span], chunk, m, k),
                Weights::F16(w) => dots_block_f16(x, &w[span], chunk, m, k),
            }
        });
    if m == 1 {
        return out_t;
    }
    let mut out = vec![0f32; m * n];
    for j in 0..n {
        for i in 0..m {
            out[i * n + j] = out_t[j * m + i];
        }
    }
    out
}

/// One task's rows: `out[r * m + i] = w[r] . x[i]`, with AVX2 + FMA where
/// the CPU has them.
fn dots_block(x: &[f32], w: &[f32], out: &mut [f32], m: usize, k: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::available() {
            for (wrow, out_row) in w.chunks_exact(k).zip(out.chunks_mut(m)) {
                // SAFETY: the CPU has AVX2, FMA and F16C (checked above);
                // `wrow` is one row of k weights and `x` holds m rows of k,
                // m = out_row.len(), which the kernel asserts before reading.
                unsafe { simd::row_f32(wrow, x, out_row, k) };
            }
            return;
        }
    }
    dots_block_generic(x, w, out, m, k);
}

/// [`dots_block`] for f16 weights (widened with F16C where available).
fn dots_block_f16(x: &[f32], w: &[f16], out: &mut [f32], m: usize, k: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::available() {
            for (wrow, out_row) in w.chunks_exact(k).zip(out.chunks_mut(m)) {
                // SAFETY: the CPU has AVX2, FMA and F16C (checked above);
                // `wrow` is one row of k weights and `x` holds m rows of k,
                // m = out_row.len(), which the kernel asserts before reading.
                unsafe { simd::row_f16(wrow, x, out_row, k) };
            }
            return;
        }
    }
    let mut wide = vec![0f32; k];
    for (wrow, out_row) in w.chunks_exact(k).zip(out.chunks_mut(m)) {
        wrow.convert_to_f32_slice(&mut wide);
        for (i, o) in out_row.iter_mut().enumerate() {
            *o = dot(&wide, &x[i * k..(i + 1) * k]);
        }
    }
}

/// Hand-written AVX2 / FMA / F16C kernels: one weight row against the
/// input rows two at a time, four 8-wide accumulators per input row.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use half::f16;

    /// Whether the CPU runs these kernels.
    pub fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    /// The sum of the eight lanes.
    ///
    /// # Safety
    ///
    /// The CPU must have AVX2 and FMA ([`available`]).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// The body of [`row_f32`] / [`row_f16`]: `out[i] = w . x[i]` for
    /// every row `i` of `x` (`out.len()` rows of `k`); `$load` gives the 8
    /// weights at `$j` widened to f32, `$tail` the one weight at `$j`.
    ///
    /// Bounds: it first asserts `w.len() >= k` and `x.len() >= out.len() *
    /// k`. Vector loads then read `w[j..j + 8]` and `x[i * k + j..][..8]`
    /// only for `j + 8 <= k / 32 * 32 <= k`, and scalar reads only for `j <
    /// k`, so every read is inside the slices. The prefetch address may lie
    /// past the end of `w`; it is formed with `wrapping_add` (no pointer
    /// arithmetic past the allocation) and a prefetch never faults.
    macro_rules! row_kernel {
        ($j:ident => $load:expr, $tail:expr, $prefetch:expr, $wlen:expr, $x:expr, $out:expr, $k:expr) => {{
            let (x, out, k) = ($x, $out, $k);
            assert!(
                $wlen >= k && x.len() >= out.len() * k,
                "gemv row: operands too short"
            );
            let body = k / 32 * 32;
            let m = out.len();
            let mut i = 0;
            while i < m {
                let i1 = if i + 1 < m { i + 1 } else { i };
                let (x0, x1) = (x[i * k..].as_ptr(), x[i1 * k..].as_ptr());
                let mut a = [_mm256_setzero_ps(); 4];
                let mut b = [_mm256_setzero_ps(); 4];
                let mut j = 0;
                while j < body {
                    {
                        let $j = j;
                        $prefetch;
                    }
                    for u in 0..4 {
                        let wv = {
                            let $j = j + 8 * u;
                            $load
                        };
                        a[u] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0.add(j + 8 * u)), a[u]);
                        b[u] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1.add(j + 8 * u)), b[u]);
                    }
                    j += 32;
                }
                let sa = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
                let sb = _mm256_add_ps(_mm256_add_ps(b[0], b[1]), _mm256_add_ps(b[2], b[3]));
                let (mut r0, mut r1) = (hsum(sa), hsum(sb));
                for j in body..k {
                    let wj: f32 = {
                        let $j = j;
                        $tail
                    };
                    r0 += wj * *x0.add(j);
                    r1 += wj * *x1.add(j);
                }
                out[i] = r0;
                out[i1] = r1;
                i += 2;
            }
        }};
    }

    /// One f32 weight row against every input row: `out[i] = w[..k] .
    /// x[i * k..(i + 1) * k]`. Panics when `w` has fewer than `k` values or
    /// `x` fewer than `out.len()` rows of `k`.
    ///
    /// # Safety
    ///
    /// The CPU must have AVX2, FMA and F16C ([`available`]). The slice
    /// bounds are checked inside.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn row_f32(w: &[f32], x: &[f32], out: &mut [f32], k: usize) {
        let p = w.as_ptr();
        row_kernel!(
            j => _mm256_loadu_ps(p.add(j)),
            w[j],
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(j + 1024) as *const i8),
            w.len(),
            x,
            out,
            k
        )
    }

    /// One f16 weight row against every input row, as [`row_f32`].
    ///
    /// # Safety
    ///
    /// The CPU must have AVX2, FMA and F16C ([`available`]). The slice
    /// bounds are checked inside.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn row_f16(w: &[f16], x: &[f32], out: &mut [f32], k: usize) {
        let p = w.as_ptr() as *const u8;
        row_kernel!(
            j => _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * j) as *const __m128i)),
            w[j].to_f32(),
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(2 * j + 4096) as *const i8),
            w.len(),
            x,
            out,
            k
        )
    }
}

fn dots_block_generic(x: &[f32], w: &[f32], out: &mut [f32], m: usize, k: usize) {
    for (wrow, out_row) in w.chunks_exact(k).zip(out.chunks_mut(m)) {
        for (i, o) in out_row.iter_mut().enumerate() {
            *o = dot(wrow, &x[i * k..(i + 1) * k]);
        }
    }
}

/// A dot product with 16 independent accumulators (vectorises; no
/// `mul_add`, which is a library call without the FMA target feature).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::musicgen::max_abs_diff;
    use candle_core::Device;

    #[test]
    fn streaming_path_matches_the_matrix_product() {
        let dev = Device::Cpu;
        for (rows, k, n) in [(1, 37, 50), (2, 1024, 300), (8, 64, 17)] {
            let w = Tensor::randn(0f32, 1., (n, k), &dev).unwrap();
            let x = Tensor::randn(0f32, 1., (rows, 1, k), &dev).unwrap();
            let fast = FastLinear::new(w.clone()).unwrap().forward(&x).unwrap();
            let want = Linear::new(w, None).forward(&x).unwrap();
            assert_eq!(fast.dims(), want.dims());
            let d = max_abs_diff(&fast, &want);
            assert!(d < 1e-3, "{rows}x{k}x{n}: {d}");
        }
        // f16 weights: the same product within half precision's rounding
        let w = Tensor::randn(0f32, 1., (33, 700), &dev).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 700), &dev).unwrap();
        let half = w.to_dtype(DType::F16).unwrap();
        let fast = FastLinear::new(half.clone()).unwrap().forward(&x).unwrap();
        let want = x
            .matmul(&half.to_dtype(DType::F32).unwrap().t().unwrap())
            .unwrap();
        assert!(max_abs_diff(&fast, &want) < 1e-3);
        // many rows take candle's product
        let w = Tensor::randn(0f32, 1., (5, 3), &dev).unwrap();
        let x = Tensor::randn(0f32, 1., (9, 3), &dev).unwrap();
        let y = FastLinear::new(w).unwrap().forward(&x).unwrap();
        assert_eq!(y.dims(), &[9, 5]);
    }
}
