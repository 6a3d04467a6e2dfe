//! The maths of the comparison: the Frechet distance between two sets of
//! embeddings, spectral statistics of a clip, and summary statistics.
//! Pure functions on slices.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spectrogram::stft::Stft;

/// Mean of each column of `rows` (all the same length).
fn column_means(rows: &[Vec<f64>]) -> Vec<f64> {
    let d = rows[0].len();
    let mut m = vec![0.0; d];
    for r in rows {
        for (acc, v) in m.iter_mut().zip(r) {
            *acc += v;
        }
    }
    m.iter_mut().for_each(|v| *v /= rows.len() as f64);
    m
}

/// Sample covariance (divided by n - 1), row-major `d x d`.
fn covariance(rows: &[Vec<f64>], mean: &[f64]) -> Vec<f64> {
    let d = mean.len();
    let mut c = vec![0.0; d * d];
    for r in rows {
        let x: Vec<f64> = r.iter().zip(mean).map(|(v, m)| v - m).collect();
        for i in 0..d {
            if x[i] == 0.0 {
                continue;
            }
            for j in i..d {
                c[i * d + j] += x[i] * x[j];
            }
        }
    }
    let n = (rows.len() - 1) as f64;
    for i in 0..d {
        for j in i..d {
            c[i * d + j] /= n;
            c[j * d + i] = c[i * d + j];
        }
    }
    c
}

/// Eigen-decomposition of a symmetric `n x n` matrix (row-major) by cyclic
/// Jacobi rotations: eigenvalues, and eigenvectors as the columns of a
/// row-major matrix.
pub fn symmetric_eigen(m: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = m.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = a
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-14 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// The square root of a symmetric positive semi-definite matrix (negative
/// eigenvalues from rounding count as 0).
fn psd_sqrt(m: &[f64], n: usize) -> Vec<f64> {
    let (vals, vecs) = symmetric_eigen(m, n);
    let roots: Vec<f64> = vals.iter().map(|l| l.max(0.0).sqrt()).collect();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            let s: f64 = (0..n)
                .map(|k| vecs[i * n + k] * roots[k] * vecs[j * n + k])
                .sum();
            out[i * n + j] = s;
            out[j * n + i] = s;
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..n {
                out[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    out
}

/// Frechet distance between Gaussians fitted to two sets of embeddings
/// (rows): `|mu_a - mu_b|^2 + tr(Ca + Cb - 2 (Ca^1/2 Cb Ca^1/2)^1/2)`, as
/// FID and FAD define it. Each set needs at least two rows of one width.
/// With fewer rows than dimensions the covariances are singular; the
/// distance is still defined but biased upwards for small sets, so compare
/// it only between sets of equal size.
pub fn frechet_distance(a: &[Vec<f64>], b: &[Vec<f64>]) -> Result<f64> {
    if a.len() < 2 || b.len() < 2 {
        return Err(Error::param(
            "embeddings",
            format!(
                "the Frechet distance needs two or more clips per set ({} and {})",
                a.len(),
                b.len()
            ),
        ));
    }
    let d = a[0].len();
    if d == 0 || a.iter().chain(b).any(|r| r.len() != d) {
        return Err(Error::param(
            "embeddings",
            "every embedding must have the same, non-zero width",
        ));
    }
    if a.iter().chain(b).flatten().any(|v| !v.is_finite()) {
        return Err(Error::param(
            "embeddings",
            "an embedding holds NaN or an infinity",
        ));
    }
    let (ma, mb) = (column_means(a), column_means(b));
    let (ca, cb) = (covariance(a, &ma), covariance(b, &mb));
    let mean_term: f64 = ma.iter().zip(&mb).map(|(x, y)| (x - y).powi(2)).sum();
    let trace = |m: &[f64]| (0..d).map(|i| m[i * d + i]).sum::<f64>();
    let sa = psd_sqrt(&ca, d);
    let inner = matmul(&matmul(&sa, &cb, d), &sa, d);
    // symmetrise against rounding before the eigen-decomposition
    let mut sym = inner.clone();
    for i in 0..d {
        for j in 0..d {
            sym[i * d + j] = 0.5 * (inner[i * d + j] + inner[j * d + i]);
        }
    }
    let (vals, _) = symmetric_eigen(&sym, d);
    let cross: f64 = vals.iter().map(|l| l.max(0.0).sqrt()).sum();
    Ok((mean_term + trace(&ca) + trace(&cb) - 2.0 * cross).max(0.0))
}

/// Spectral statistics of a clip, averaged over the frames that are not
/// silent (within 60 dB of the loudest).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpectralStats {
    /// Amplitude-weighted mean frequency, Hz.
    pub centroid_hz: f64,
    /// Amplitude-weighted standard deviation around the centroid, Hz.
    pub bandwidth_hz: f64,
    /// Frequency below which 85% of the power lies, Hz.
    pub rolloff_hz: f64,
    /// Geometric over arithmetic mean of the power spectrum (0 tonal, 1
    /// white noise).
    pub flatness: f64,
    /// RMS level of the whole clip, dBFS (floored at -120).
    pub rms_dbfs: f64,
}

/// FFT length of the spectral statistics (46 ms at 44.1 kHz).
pub const STATS_FFT: usize = 2048;
/// Hop of the spectral statistics.
pub const STATS_HOP: usize = 512;

/// [`SpectralStats`] of mono `samples` at `rate_hz`.
pub fn spectral_stats(samples: &[f32], rate_hz: u32) -> Result<SpectralStats> {
    if samples.is_empty() || samples.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidAudio {
            context: "spectral statistics".into(),
            reason: "empty, or holds NaN or an infinity".into(),
        });
    }
    let stft = Stft::new(STATS_FFT, STATS_HOP, STATS_FFT)?;
    let bins = STATS_FFT / 2 + 1;
    let spec = stft.forward(samples, bins);
    let hz = |k: usize| k as f64 * rate_hz as f64 / STATS_FFT as f64;
    let power: Vec<Vec<f64>> = (0..spec.frames)
        .map(|f| {
            spec.data[f * bins..(f + 1) * bins]
                .iter()
                .map(|c| c.norm_sqr() as f64)
                .collect()
        })
        .collect();
    let energy: Vec<f64> = power.iter().map(|p| p.iter().sum()).collect();
    let loudest = energy.iter().cloned().fold(0.0, f64::max);
    let mean_sq = samples.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / samples.len() as f64;
    let rms_dbfs = if mean_sq > 0.0 {
        (10.0 * mean_sq.log10()).max(-120.0)
    } else {
        -120.0
    };
    let mut sums = [0.0f64; 4];
    let mut used = 0usize;
    for (p, e) in power.iter().zip(&energy) {
        if loudest <= 0.0 || *e < loudest * 1e-6 {
            continue;
        }
        let amp: Vec<f64> = p.iter().map(|v| v.sqrt()).collect();
        let amp_sum: f64 = amp.iter().sum();
        let centroid = amp.iter().enumerate().map(|(k, a)| hz(k) * a).sum::<f64>() / amp_sum;
        let spread = (amp
            .iter()
            .enumerate()
            .map(|(k, a)| (hz(k) - centroid).powi(2) * a)
            .sum::<f64>()
            / amp_sum)
            .sqrt();
        let mut acc = 0.0;
        let mut rolloff = hz(bins - 1);
        for (k, v) in p.iter().enumerate() {
            acc += v;
            if acc >= 0.85 * e {
                rolloff = hz(k);
                break;
            }
        }
        let eps = 1e-12 * e / bins as f64;
        let log_mean = p.iter().map(|v| (v + eps).ln()).sum::<f64>() / bins as f64;
        let flatness = log_mean.exp() / (e / bins as f64 + eps);
        for (s, v) in sums.iter_mut().zip([centroid, spread, rolloff, flatness]) {
            *s += v;
        }
        used += 1;
    }
    let n = used.max(1) as f64;
    Ok(SpectralStats {
        centroid_hz: sums[0] / n,
        bandwidth_hz: sums[1] / n,
        rolloff_hz: sums[2] / n,
        flatness: sums[3] / n,
        rms_dbfs,
    })
}

/// Mean and sample standard deviation of the finite values (None when
/// there are none; the deviation is 0 for one value).
pub fn mean_std(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    } else {
        0.0
    };
    Some((m, var.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn gaussian_set(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                (0..d)
                    .map(|_| {
                        // Box-Muller
                        let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_set_is_at_distance_zero_from_itself() {
        for (n, d) in [(50, 4), (6, 16)] {
            let a = gaussian_set(n, d, 3);
            let fd = frechet_distance(&a, &a).unwrap();
            assert!(fd.abs() < 1e-8, "n {n} d {d}: {fd}");
        }
    }

    #[test]
    fn a_shift_adds_its_squared_length_and_grows() {
        let a = gaussian_set(40, 5, 7);
        let mut last = 0.0;
        for shift in [0.5, 1.0, 2.0, 4.0] {
            let b: Vec<Vec<f64>> = a
                .iter()
                .map(|r| r.iter().map(|v| v + shift).collect())
                .collect();
            let fd = frechet_distance(&a, &b).unwrap();
            // same covariance: only the mean term remains, 5 * shift^2
            assert!((fd - 5.0 * shift * shift).abs() < 1e-8, "{shift}: {fd}");
            assert!(fd > last);
            last = fd;
        }
    }

    #[test]
    fn one_dimension_matches_the_closed_form() {
        // N(m1, s1^2) vs N(m2, s2^2): (m1 - m2)^2 + (s1 - s2)^2
        let a: Vec<Vec<f64>> = [1.0, 2.0, 3.0, 4.0].iter().map(|v| vec![*v]).collect();
        let b: Vec<Vec<f64>> = [10.0, 14.0, 18.0].iter().map(|v| vec![*v]).collect();
        let (m1, s1) = mean_std(a.iter().map(|r| r[0])).unwrap();
        let (m2, s2) = mean_std(b.iter().map(|r| r[0])).unwrap();
        let fd = frechet_distance(&a, &b).unwrap();
        let want = (m1 - m2).powi(2) + (s1 - s2).powi(2);
        assert!((fd - want).abs() < 1e-9, "{fd} vs {want}");
    }

    #[test]
    fn diagonal_covariances_match_the_closed_form() {
        // independent axes scaled by 1, 2, 3: per axis (s1 - s2)^2
        let a = gaussian_set(400, 3, 11);
        let b: Vec<Vec<f64>> = a
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(i, v)| v * (i + 1) as f64)
                    .collect()
            })
            .collect();
        let fd = frechet_distance(&a, &b).unwrap();
        // the sample covariance of `a` is not exactly diagonal; the
        // closed form from its own diagonal is close
        let want: f64 = (0..3)
            .map(|i| {
                let (_, s) = mean_std(a.iter().map(|r| r[i])).unwrap();
                let (_, t) = mean_std(b.iter().map(|r| r[i])).unwrap();
                let (ma, _) = mean_std(a.iter().map(|r| r[i])).unwrap();
                let (mb, _) = mean_std(b.iter().map(|r| r[i])).unwrap();
                (s - t).powi(2) + (ma - mb).powi(2)
            })
            .sum();
        assert!((fd - want).abs() < 0.05 * want, "{fd} vs {want}");
    }

    #[test]
    fn bad_sets_are_refused() {
        let a = gaussian_set(4, 3, 1);
        assert!(frechet_distance(&a[..1], &a).is_err());
        let wide = gaussian_set(4, 4, 1);
        assert!(frechet_distance(&a, &wide).is_err());
        let mut nan = a.clone();
        nan[2][1] = f64::NAN;
        assert!(frechet_distance(&a, &nan).is_err());
    }

    #[test]
    fn eigen_decomposition_rebuilds_the_matrix() {
        let m = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 1.0];
        let (vals, v) = symmetric_eigen(&m, 3);
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3).map(|k| v[i * 3 + k] * vals[k] * v[j * 3 + k]).sum();
                assert!((r - m[i * 3 + j]).abs() < 1e-12);
            }
        }
        let s = psd_sqrt(&m, 3);
        let back = matmul(&s, &s, 3);
        for (x, y) in back.iter().zip(&m) {
            assert!((x - y).abs() < 1e-12);
        }
    }

    fn sine(freq: f64, rate: u32, seconds: f64) -> Vec<f32> {
        (0..(rate as f64 * seconds) as usize)
            .map(|i| (0.5 * (std::f64::consts::TAU * freq * i as f64 / rate as f64).sin()) as f32)
            .collect()
    }

    #[test]
    fn a_sine_is_tonal_at_its_frequency_and_noise_is_flat() {
        let s = spectral_stats(&sine(1000.0, 44100, 1.0), 44100).unwrap();
        assert!((s.centroid_hz - 1000.0).abs() < 30.0, "{s:?}");
        assert!(s.bandwidth_hz < 150.0, "{s:?}");
        assert!((s.rolloff_hz - 1000.0).abs() < 30.0, "{s:?}");
        assert!(s.flatness < 0.01, "{s:?}");
        assert!((s.rms_dbfs - 20.0 * (0.5f64 / 2f64.sqrt()).log10()).abs() < 0.05);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let noise: Vec<f32> = (0..44100).map(|_| rng.random::<f32>() - 0.5).collect();
        let n = spectral_stats(&noise, 44100).unwrap();
        assert!(n.flatness > 0.4, "{n:?}");
        assert!((n.centroid_hz - 11025.0).abs() < 600.0, "{n:?}");
        assert!(spectral_stats(&[], 44100).is_err());
        assert!(spectral_stats(&[f32::NAN; 10], 44100).is_err());
    }

    #[test]
    fn mean_and_deviation() {
        assert_eq!(mean_std([2.0, 4.0, f64::NAN]), Some((3.0, 2f64.sqrt())));
        assert_eq!(mean_std([5.0]), Some((5.0, 0.0)));
        assert_eq!(mean_std([]), None);
    }
}
