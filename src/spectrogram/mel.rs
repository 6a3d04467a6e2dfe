//! HTK mel filterbank without normalisation (torchaudio's
//! `melscale_fbanks(norm=None, mel_scale="htk")`), stored sparsely, with
//! the forward projection and two inverses from mel to linear magnitudes.

use crate::error::{Error, Result};

/// Hz to HTK mel.
pub fn hz_to_mel(hz: f64) -> f64 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

/// HTK mel to Hz.
pub fn mel_to_hz(mel: f64) -> f64 {
    700.0 * (10f64.powf(mel / 2595.0) - 1.0)
}

/// One triangular filter: weights for bins `start..start + weights.len()`.
#[derive(Debug, Clone)]
struct Filter {
    start: usize,
    weights: Vec<f32>,
}

/// A triangular mel filterbank mapping `num_bins` linear bins to `num_mels`.
#[derive(Debug, Clone)]
pub struct MelFilterbank {
    filters: Vec<Filter>,
    num_bins: usize,
    /// One past the highest bin any filter touches.
    active_bins: usize,
    /// Tridiagonal Gram matrix `M M^T` (+ a small ridge), factorised for
    /// the Thomas algorithm: sub-diagonal multipliers and pivots.
    gram_lower: Vec<f64>,
    gram_pivot: Vec<f64>,
    gram_upper: Vec<f64>,
    /// Step size for projected gradient: 1 / (upper bound on ||M||^2).
    step: f32,
}

impl MelFilterbank {
    /// Builds the filterbank for `num_bins` one-sided bins of a signal at
    /// `sample_rate_hz`, `num_mels` filters between `min_hz` and `max_hz`.
    pub fn new(
        num_bins: usize,
        num_mels: usize,
        sample_rate_hz: f64,
        min_hz: f64,
        max_hz: f64,
    ) -> Result<Self> {
        if num_bins < 2
            || num_mels == 0
            || min_hz.partial_cmp(&max_hz) != Some(std::cmp::Ordering::Less)
        {
            return Err(Error::param(
                "num_mel_bins",
                format!("cannot build {num_mels} mel filters over {num_bins} bins from {min_hz} to {max_hz} Hz"),
            ));
        }
        let bin_hz = (sample_rate_hz / 2.0) / (num_bins - 1) as f64;
        let (m_min, m_max) = (hz_to_mel(min_hz), hz_to_mel(max_hz));
        let f_pts: Vec<f64> = (0..num_mels + 2)
            .map(|i| mel_to_hz(m_min + (m_max - m_min) * i as f64 / (num_mels + 1) as f64))
            .collect();
        let filters: Vec<Filter> = (0..num_mels)
            .map(|m| {
                let (lo, mid, hi) = (f_pts[m], f_pts[m + 1], f_pts[m + 2]);
                let first = ((lo / bin_hz).floor().max(0.0)) as usize;
                let last = ((hi / bin_hz).ceil() as usize).min(num_bins - 1);
                let mut start = None;
                let mut weights = Vec::new();
                for k in first..=last {
                    let f = k as f64 * bin_hz;
                    let w = ((f - lo) / (mid - lo)).min((hi - f) / (hi - mid)).max(0.0);
                    if w > 0.0 || start.is_some() {
                        start.get_or_insert(k);
                        weights.push(w as f32);
                    }
                }
                while weights.last() == Some(&0.0) {
                    weights.pop();
                }
                Filter {
                    start: start.unwrap_or(first),
                    weights,
                }
            })
            .collect();
        let active_bins = filters
            .iter()
            .map(|f| f.start + f.weights.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut fb = MelFilterbank {
            filters,
            num_bins,
            active_bins,
            gram_lower: vec![],
            gram_pivot: vec![],
            gram_upper: vec![],
            step: 0.0,
        };
        fb.factor_gram();
        Ok(fb)
    }

    /// Number of mel filters.
    pub fn num_mels(&self) -> usize {
        self.filters.len()
    }

    /// Number of linear bins expected on input.
    pub fn num_bins(&self) -> usize {
        self.num_bins
    }

    /// One past the highest linear bin with a non-zero weight: bins at and
    /// above it never reach the mel spectrogram.
    pub fn active_bins(&self) -> usize {
        self.active_bins
    }

    /// Mel amplitudes of one frame: `mel[m] = sum_k W[m, k] * linear[k]`.
    /// `linear` may be shorter than `num_bins` (missing bins are zero).
    pub fn apply(&self, linear: &[f32], mel: &mut [f32]) {
        for (out, f) in mel.iter_mut().zip(&self.filters) {
            let end = (f.start + f.weights.len()).min(linear.len());
            *out = if f.start >= end {
                0.0
            } else {
                f.weights
                    .iter()
                    .zip(&linear[f.start..end])
                    .map(|(w, x)| w * x)
                    .sum()
            };
        }
    }

    /// `linear = W^T mel` over the first `linear.len()` bins.
    fn apply_transpose(&self, mel: &[f32], linear: &mut [f32]) {
        linear.fill(0.0);
        for (m, f) in mel.iter().zip(&self.filters) {
            let end = (f.start + f.weights.len()).min(linear.len());
            if f.start < end {
                for (o, w) in linear[f.start..end].iter_mut().zip(&f.weights) {
                    *o += w * m;
                }
            }
        }
    }

    fn factor_gram(&mut self) {
        let n = self.filters.len();
        let dot = |a: &Filter, b: &Filter| -> f64 {
            let lo = a.start.max(b.start);
            let hi = (a.start + a.weights.len()).min(b.start + b.weights.len());
            (lo..hi)
                .map(|k| a.weights[k - a.start] as f64 * b.weights[k - b.start] as f64)
                .sum()
        };
        let diag: Vec<f64> = self.filters.iter().map(|f| dot(f, f)).collect();
        let off: Vec<f64> = (0..n.saturating_sub(1))
            .map(|i| dot(&self.filters[i], &self.filters[i + 1]))
            .collect();
        // A small ridge keeps empty (zero-weight) filters solvable.
        let ridge = 1e-6 * diag.iter().cloned().fold(0.0, f64::max).max(1e-12);
        let mut lower = vec![0.0; n];
        let mut pivot = vec![0.0; n];
        for i in 0..n {
            let d = diag[i] + ridge;
            if i == 0 {
                pivot[0] = d;
            } else {
                lower[i] = off[i - 1] / pivot[i - 1];
                pivot[i] = d - lower[i] * off[i - 1];
            }
        }
        // Gershgorin bound on the largest eigenvalue of M M^T (= of M^T M).
        let bound = (0..n)
            .map(|i| {
                diag[i]
                    + if i > 0 { off[i - 1].abs() } else { 0.0 }
                    + off.get(i).map_or(0.0, |v| v.abs())
            })
            .fold(0.0, f64::max);
        self.gram_lower = lower;
        self.gram_pivot = pivot;
        self.gram_upper = off;
        self.step = (1.0 / bound.max(1e-12)) as f32;
    }

    /// Solves `(M M^T + ridge) z = y` in place.
    fn solve_gram(&self, z: &mut [f64]) {
        let n = z.len();
        for i in 1..n {
            z[i] -= self.gram_lower[i] * z[i - 1];
        }
        z[n - 1] /= self.gram_pivot[n - 1];
        for i in (0..n - 1).rev() {
            z[i] = (z[i] - self.gram_upper[i] * z[i + 1]) / self.gram_pivot[i];
        }
    }

    /// Minimum-norm least-squares inverse, clamped at zero (what current
    /// torchaudio's `InverseMelScale` computes): `max(0, M^T (M M^T)^-1 y)`.
    /// Writes the first `linear.len()` bins.
    pub fn inverse_least_squares(&self, mel: &[f32], linear: &mut [f32]) {
        let mut z: Vec<f64> = mel.iter().map(|&v| v as f64).collect();
        self.solve_gram(&mut z);
        let z32: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        self.apply_transpose(&z32, linear);
        for v in linear.iter_mut() {
            *v = v.max(0.0);
        }
    }

    /// Non-negative least squares, `min ||M x - y||^2` over `x >= 0`, by
    /// accelerated projected gradient (FISTA) started from the clamped
    /// least-squares solution. Writes the first `linear.len()` bins.
    pub fn inverse_nnls(&self, mel: &[f32], linear: &mut [f32], iterations: usize) {
        let n = linear.len().min(self.active_bins);
        self.inverse_least_squares(mel, linear);
        let mut x = linear[..n].to_vec();
        let mut y = x.clone();
        let mut x_prev = x.clone();
        let mut r = vec![0.0f32; self.num_mels()];
        let mut grad = vec![0.0f32; n];
        let mut t = 1.0f32;
        for _ in 0..iterations {
            self.apply(&y, &mut r);
            for (ri, yi) in r.iter_mut().zip(mel) {
                *ri -= yi;
            }
            self.apply_transpose(&r, &mut grad);
            x_prev.copy_from_slice(&x);
            for ((xi, yi), gi) in x.iter_mut().zip(&y).zip(&grad) {
                *xi = (yi - self.step * gi).max(0.0);
            }
            let t_next = 0.5 * (1.0 + (1.0 + 4.0 * t * t).sqrt());
            let beta = (t - 1.0) / t_next;
            for ((yi, xi), pi) in y.iter_mut().zip(&x).zip(&x_prev) {
                *yi = xi + beta * (xi - pi);
            }
            t = t_next;
        }
        linear[..n].copy_from_slice(&x);
        linear[n..].fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn riffusion_fb() -> MelFilterbank {
        MelFilterbank::new(8821, 512, 44100.0, 0.0, 10000.0).unwrap()
    }

    #[test]
    fn mel_scale_round_trips() {
        for hz in [0.0, 100.0, 1000.0, 10000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6);
        }
        assert!((hz_to_mel(1000.0) - 999.9855).abs() < 1e-3);
    }

    #[test]
    fn filters_are_triangles_within_band() {
        let fb = riffusion_fb();
        assert_eq!(fb.num_mels(), 512);
        // 10 kHz is bin 4000; nothing at or above bin 4001.
        assert!((4000..=4001).contains(&fb.active_bins()));
        for f in &fb.filters {
            let peak = f.weights.iter().cloned().fold(0.0, f32::max);
            assert!(peak <= 1.0 + 1e-6);
        }
        // A flat spectrum maps to the filter sums.
        let flat = vec![1.0f32; 8821];
        let mut mel = vec![0.0; 512];
        fb.apply(&flat, &mut mel);
        assert!(mel[511] > mel[0]);
    }

    #[test]
    fn inverses_reproduce_mel_of_smooth_spectrum() {
        let fb = riffusion_fb();
        let linear: Vec<f32> = (0..8821)
            .map(|k| {
                if k < 4000 {
                    1.0 + (k as f32 / 300.0).sin().abs()
                } else {
                    0.0
                }
            })
            .collect();
        let mut mel = vec![0.0; 512];
        fb.apply(&linear, &mut mel);
        let mel_norm = mel.iter().map(|v| v * v).sum::<f32>().sqrt();
        for nnls in [false, true] {
            let mut est = vec![0.0; 8821];
            if nnls {
                fb.inverse_nnls(&mel, &mut est, 50);
            } else {
                fb.inverse_least_squares(&mel, &mut est);
            }
            assert!(est.iter().all(|v| *v >= 0.0));
            let mut back = vec![0.0; 512];
            fb.apply(&est, &mut back);
            let err = back
                .iter()
                .zip(&mel)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
                .sqrt();
            assert!(
                err / mel_norm < 1e-3,
                "nnls={nnls}: relative residual {}",
                err / mel_norm
            );
        }
    }

    #[test]
    fn nnls_beats_clamped_least_squares_on_peaky_input() {
        let fb = riffusion_fb();
        // Sparse peaks make the min-norm solution go negative between them.
        let mut linear = vec![0.0f32; 8821];
        for k in (100..4000).step_by(97) {
            linear[k] = 1.0;
        }
        let mut mel = vec![0.0; 512];
        fb.apply(&linear, &mut mel);
        let residual = |est: &[f32]| {
            let mut back = vec![0.0; 512];
            fb.apply(est, &mut back);
            back.iter()
                .zip(&mel)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
        };
        let mut ls = vec![0.0; 8821];
        fb.inverse_least_squares(&mel, &mut ls);
        let mut nn = vec![0.0; 8821];
        fb.inverse_nnls(&mel, &mut nn, 100);
        assert!(
            residual(&nn) < residual(&ls),
            "{} vs {}",
            residual(&nn),
            residual(&ls)
        );
    }
}
