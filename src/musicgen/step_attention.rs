//! Self-attention of one new token over the KV cache, on the CPU.
//!
//! In a decoder step each head has one query against `L` cached keys: a
//! matrix-vector product, a softmax and a weighted sum of `L` value rows.
//! candle's batched matrix product handles these `1 x L` products poorly
//! and its cost grows with the cache; [`step_attention`] computes them
//! directly on the cache's storage, one (batch, head) pair per task. Other
//! devices, dtypes and shapes use the general path.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Whether [`step_attention`] takes `q` `[b, h, 1, d]` with `k`, `v`
/// `[b, h, L, d]`.
pub fn applies(q: &Tensor, k: &Tensor) -> bool {
    q.device().is_cpu()
        && q.dtype() == DType::F32
        && k.dtype() == DType::F32
        && q.rank() == 4
        && q.dim(2).is_ok_and(|t| t == 1)
}

/// `softmax(q k^T) v` for one query per (batch, head); `q` already scaled.
pub fn step_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    q.contiguous()?.apply_op3_no_bwd(k, v, &StepAttention)
}

struct StepAttention;

/// Offset of element (b, h, j, 0) of a rank-4 layout whose last stride is 1.
fn base(l: &Layout, b: usize, h: usize, j: usize) -> usize {
    let s = l.stride();
    l.start_offset() + b * s[0] + h * s[1] + j * s[2]
}

impl CustomOp3 for StepAttention {
    fn name(&self) -> &'static str {
        "step-attention"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, h, one, d) = lq.shape().dims4()?;
        let (bk, hk, len, dk) = lk.shape().dims4()?;
        if one != 1 || (bk, hk, dk) != (b, h, d) || lv.shape() != lk.shape() {
            candle_core::bail!("step-attention: shapes {lq:?} {lk:?} {lv:?}");
        }
        if lk.stride()[3] != 1 || lv.stride()[3] != 1 {
            candle_core::bail!("step-attention: the head dimension must be contiguous");
        }
        let q = sq.as_slice::<f32>()?;
        let k = sk.as_slice::<f32>()?;
        let v = sv.as_slice::<f32>()?;
        let mut out = vec![0f32; b * h * d];
        out.par_chunks_mut(d).enumerate().for_each(|(bh, o)| {
            let (bi, hi) = (bh / h, bh % h);
            let qo = base(lq, bi, hi, 0);
            let qrow = &q[qo..qo + d];
            let mut scores: Vec<f32> = (0..len)
                .map(|j| {
                    let ko = base(lk, bi, hi, j);
                    qrow.iter().zip(&k[ko..ko + d]).map(|(a, b)| a * b).sum()
                })
                .collect();
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                total += *s;
            }
            for (j, p) in scores.iter().enumerate() {
                let vo = base(lv, bi, hi, j);
                let w = p / total;
                for (acc, x) in o.iter_mut().zip(&v[vo..vo + d]) {
                    *acc += w * x;
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, h, 1, d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::musicgen::max_abs_diff;
    use candle_core::Device;

    #[test]
    fn matches_the_general_path_on_a_cache_view() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1., (2, 3, 1, 8), &dev).unwrap();
        // a cache with room for 10 positions, 7 filled
        let cache_k = Tensor::randn(0f32, 1., (2, 3, 10, 8), &dev).unwrap();
        let cache_v = Tensor::randn(0f32, 1., (2, 3, 10, 8), &dev).unwrap();
        let (k, v) = (
            cache_k.narrow(2, 0, 7).unwrap(),
            cache_v.narrow(2, 0, 7).unwrap(),
        );
        assert!(applies(&q, &k));
        let fast = step_attention(&q, &k, &v).unwrap();
        let scores = q.matmul(&k.t().unwrap()).unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let want = probs.matmul(&v.contiguous().unwrap()).unwrap();
        let d = max_abs_diff(&fast, &want);
        assert!(d < 1e-5, "{d}");
    }
}
