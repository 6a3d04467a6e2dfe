//! Vectorised row kernels on f32 slices: the maximum, and `exp(x - shift)`
//! in place with its sum, the two passes of a softmax row.
//!
//! The crate is built for baseline x86-64 (SSE2), where the standard
//! library's `expf` runs one value at a time. These kernels are written so
//! that the compiler vectorises them, and on x86-64 they run through a copy
//! compiled for AVX2 + FMA when the CPU has both (checked at run time, so
//! the binary still runs on older CPUs).
//!
//! The exponential is a Cephes-style range reduction (`x = n ln 2 + r`,
//! `|r| <= ln 2 / 2`, with `ln 2` split in two so that `r` is exact) and a
//! degree-6 polynomial for `e^r`: within 2 ulp of the correctly rounded
//! value over the range it covers: inputs below -87.3 give `e^-87.3`,
//! about 1e-38, which a softmax cannot tell from zero, and inputs above
//! 88.3 give `e^88.3`, about 2e38 (a softmax only sees inputs <= 0).

/// Lanes of the independent accumulators (one AVX register of f32).
const LANES: usize = 8;

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split so that `n * LN2_HI` is exact for |n| < 2^9.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_MIN: f32 = -87.3;
const EXP_MAX: f32 = 88.3;

/// `e^x` for one value (see the module notes for its accuracy).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(EXP_MIN, EXP_MAX);
    let n = (x * LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e_r = p * r2 + r + 1.0;
    // 2^n, a normal number for n in -126..=127: n + 127 sits in the low
    // mantissa bits of 2^23 + n + 127, and the shift drops the rest (a
    // float-to-int cast would not vectorise)
    let biased = (n + (127.0 + 8_388_608.0)).to_bits();
    e_r * f32::from_bits(biased << 23)
}

#[inline(always)]
fn max_generic(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = acc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &v in tail {
        m = m.max(v);
    }
    m
}

#[inline(always)]
fn exp_shifted_sum_generic(xs: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            *v = exp_f32(*v - shift);
            *a += *v;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp_f32(*v - shift);
        sum += *v;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn max(xs: &[f32]) -> f32 {
        super::max_generic(xs)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
        super::exp_shifted_sum_generic(xs, shift)
    }
}

/// Whether this CPU runs the AVX2 + FMA copies of the kernels (here and in
/// the Winograd transforms); the standard library caches the answer.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// The largest value of `xs` (`-inf` when empty; NaNs are skipped, as
/// `f32::max` does).
pub fn max(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { avx2::max(xs) };
    }
    max_generic(xs)
}

/// Replaces every `x` with `e^(x - shift)` and returns their sum: with
/// `shift` the row's maximum, the unnormalised softmax of the row.
pub fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { avx2::exp_shifted_sum(xs, shift) };
    }
    exp_shifted_sum_generic(xs, shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite f32 values.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_correctly_rounded_value() {
        let mut worst = 0;
        let mut x = EXP_MIN;
        while x < EXP_MAX {
            let exact = (x as f64).exp() as f32;
            let got = exp_f32(x);
            let d = ulps(got, exact);
            assert!(d <= 2, "exp({x}) = {got}, want {exact} ({d} ulp)");
            worst = worst.max(d);
            x += 0.000_731;
        }
        assert!(worst >= 1, "the sweep compares something");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(-1000.0) < 1e-37);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn row_kernels_match_scalar_code_at_every_length() {
        for len in [0usize, 1, 7, 8, 9, 31, 100] {
            let xs: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.7)
                .collect();
            let want_max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&xs), want_max, "len {len}");
            assert_eq!(max_generic(&xs), want_max, "len {len}");
            let mut ys = xs.clone();
            let sum = exp_shifted_sum(&mut ys, want_max);
            let mut want_sum = 0f64;
            for (y, x) in ys.iter().zip(&xs) {
                let e = ((x - want_max) as f64).exp();
                want_sum += e;
                assert!(((*y as f64) - e).abs() <= 2e-7 * e, "len {len}: {y} vs {e}");
            }
            assert!((sum as f64 - want_sum).abs() <= 1e-6 * want_sum.max(1.0));
        }
    }
}
