//! Phase reconstruction: fast Griffin-Lim (Perraudin, Balazs and
//! Sondergaard 2013) with torchaudio's momentum convention, started from
//! random phase or from phase-gradient heap integration (PGHI, Prusa,
//! Balazs and Sondergaard 2017).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use rustfft::num_complex::Complex32;

use super::stft::{Spectrum, Stft};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// How the phase is initialised before iterating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseInit {
    /// Uniform random phase from the seed (riffusion / torchaudio).
    #[default]
    Random,
    /// Phase-gradient heap integration from the magnitude alone.
    Pghi,
}

/// Griffin-Lim settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GriffinLimOptions {
    /// Number of projection iterations.
    pub iterations: usize,
    /// Momentum (torchaudio's `momentum`; the update uses
    /// `momentum / (1 + momentum)`). 0 gives classic Griffin-Lim.
    pub momentum: f32,
    /// Seed for the random initial phase (and for coefficients too quiet for
    /// PGHI).
    pub seed: u64,
    /// Phase initialisation.
    pub init: PhaseInit,
}

impl Default for GriffinLimOptions {
    /// Riffusion's settings: 32 iterations, momentum 0.99, random phase.
    fn default() -> Self {
        GriffinLimOptions {
            iterations: 32,
            momentum: 0.99,
            seed: 0,
            init: PhaseInit::Random,
        }
    }
}

/// Reconstructs a signal whose STFT magnitude approximates `magnitude`
/// (`frames x bins`, frame-major, bins from 0 up; higher bins are zero).
/// Returns `hop * (frames - 1)` samples. `progress` gets one unit per
/// iteration and may cancel.
pub fn griffin_lim(
    stft: &Stft,
    magnitude: &[f32],
    frames: usize,
    bins: usize,
    opts: &GriffinLimOptions,
    progress: &dyn Progress,
) -> Result<Vec<f32>> {
    if magnitude.len() != frames * bins || bins > stft.num_bins() || frames < 2 {
        return Err(Error::param(
            "magnitude",
            format!(
                "expected {frames} frames x {bins} bins (at most {} bins, at least 2 frames), got {} values",
                stft.num_bins(),
                magnitude.len()
            ),
        ));
    }
    if !(0.0..1.0).contains(&opts.momentum) {
        return Err(Error::param("momentum", format!("{} is outside [0, 1)", opts.momentum)));
    }
    let mut angles = Spectrum::zeros(frames, bins);
    match opts.init {
        PhaseInit::Random => random_phase(&mut angles.data, opts.seed),
        PhaseInit::Pghi => pghi(stft, magnitude, &mut angles, opts.seed),
    }
    let alpha = opts.momentum / (1.0 + opts.momentum);
    // `spec` holds magnitude x current phase; `rebuilt` the STFT of its
    // inverse; `tprev` the previous `rebuilt` (swapped, not copied).
    let mut spec = angles;
    apply_magnitude(magnitude, &mut spec);
    let mut rebuilt = Spectrum::zeros(frames, bins);
    let mut tprev = Spectrum::zeros(frames, bins);
    let mut signal = Vec::new();
    let mut frames_buf = Vec::new();
    let mut padded = Vec::new();
    for _ in 0..opts.iterations {
        stft.inverse_into(&spec, &mut frames_buf, &mut signal);
        stft.forward_into(&signal, &mut padded, &mut rebuilt);
        spec.data
            .par_iter_mut()
            .zip(rebuilt.data.par_iter())
            .zip(tprev.data.par_iter())
            .zip(magnitude.par_iter())
            .with_min_len(4096)
            .for_each(|(((s, r), p), m)| {
                let v = r - *p * alpha;
                *s = v * (m / (v.norm() + 1e-16));
            });
        std::mem::swap(&mut rebuilt, &mut tprev);
        if !progress.advance(1) {
            return Err(Error::Cancelled);
        }
    }
    stft.inverse_into(&spec, &mut frames_buf, &mut signal);
    Ok(signal)
}

/// Multiplies unit phases by the magnitudes, in place.
fn apply_magnitude(magnitude: &[f32], spec: &mut Spectrum) {
    spec.data
        .par_iter_mut()
        .zip(magnitude.par_iter())
        .with_min_len(4096)
        .for_each(|(s, m)| *s *= *m);
}

fn random_phase(angles: &mut [Complex32], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for a in angles.iter_mut() {
        let phi: f32 = rng.random_range(0.0..std::f32::consts::TAU);
        *a = Complex32::from_polar(1.0, phi);
    }
}

/// Equivalent Gaussian time-frequency ratio for a Hann window of `L`
/// samples: lambda = 0.25645 L^2 (Prusa et al. 2017, table 1).
const HANN_GAMMA: f64 = 0.25645;

#[derive(PartialEq)]
struct Entry(f32, usize);

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

/// Phase-gradient heap integration. The STFT here places the window's
/// centre at the frame centre, so `X[t, k] = (-1)^k V(tH, k/N)` with `V` the
/// phase-locked STFT, whose phase gradient for a Gaussian window of
/// parameter lambda is `d/dx phi = s_w / lambda + 2 pi w`,
/// `d/dw phi = -lambda s_x` (s = log-magnitude).
fn pghi(stft: &Stft, magnitude: &[f32], angles: &mut Spectrum, seed: u64) {
    let (frames, bins) = (angles.frames, angles.bins);
    let n = stft.n_fft() as f64;
    let h = stft.hop() as f64;
    let lambda = HANN_GAMMA * (stft.window().len() as f64).powi(2);
    let max = magnitude.iter().cloned().fold(0.0f32, f32::max);
    let floor = (max as f64 * 1e-5).max(1e-30);
    let logm: Vec<f64> = magnitude.iter().map(|&m| (m as f64).max(floor).ln()).collect();
    let at = |t: usize, k: usize| logm[t * bins + k];
    // Phase advance per frame (time direction) and per bin (frequency).
    let mut dt = vec![0.0f64; frames * bins];
    let mut dk = vec![0.0f64; frames * bins];
    for t in 0..frames {
        for k in 0..bins {
            let ds_dk = if k == 0 || k + 1 == bins {
                0.0
            } else {
                (at(t, k + 1) - at(t, k - 1)) / 2.0
            };
            let ds_dt = if t == 0 || t + 1 == frames {
                0.0
            } else {
                (at(t + 1, k) - at(t - 1, k)) / 2.0
            };
            let w = k as f64 / n;
            dt[t * bins + k] = h * (n / lambda * ds_dk + std::f64::consts::TAU * w);
            dk[t * bins + k] = -lambda / (n * h) * ds_dt + std::f64::consts::PI;
        }
    }
    let mut phase = vec![0.0f64; frames * bins];
    let mut done = vec![false; frames * bins];
    let tol = (max as f64 * 1e-5) as f32;
    for (i, m) in magnitude.iter().enumerate() {
        if *m <= tol {
            done[i] = true;
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (i, d) in done.iter().enumerate() {
        if *d {
            phase[i] = rng.random_range(0.0..std::f64::consts::TAU);
        }
    }
    let mut heap = BinaryHeap::new();
    let mut order: Vec<usize> = (0..frames * bins).filter(|&i| !done[i]).collect();
    order.sort_unstable_by(|&a, &b| magnitude[b].total_cmp(&magnitude[a]));
    let mut next_seed = 0;
    loop {
        while next_seed < order.len() && done[order[next_seed]] {
            next_seed += 1;
        }
        if next_seed == order.len() {
            break;
        }
        let start = order[next_seed];
        done[start] = true;
        phase[start] = 0.0;
        heap.push(Entry(magnitude[start], start));
        while let Some(Entry(_, i)) = heap.pop() {
            let (t, k) = (i / bins, i % bins);
            let mut visit = |j: usize, delta: f64| {
                if !done[j] {
                    phase[j] = phase[i] + delta;
                    done[j] = true;
                    heap.push(Entry(magnitude[j], j));
                }
            };
            if t + 1 < frames {
                let j = i + bins;
                visit(j, (dt[i] + dt[j]) / 2.0);
            }
            if t > 0 {
                let j = i - bins;
                visit(j, -(dt[i] + dt[j]) / 2.0);
            }
            if k + 1 < bins {
                let j = i + 1;
                visit(j, (dk[i] + dk[j]) / 2.0);
            }
            if k > 0 {
                let j = i - 1;
                visit(j, -(dk[i] + dk[j]) / 2.0);
            }
        }
    }
    for (a, p) in angles.data.iter_mut().zip(&phase) {
        *a = Complex32::from_polar(1.0, *p as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    fn chirp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f32 / 8000.0;
                (std::f32::consts::TAU * (300.0 * t + 400.0 * t * t)).sin()
                    + 0.5 * (std::f32::consts::TAU * 1200.0 * t).sin()
            })
            .collect()
    }

    fn inconsistency(stft: &Stft, target: &[f32], signal: &[f32], bins: usize) -> f32 {
        let got = stft.forward(signal, bins).magnitudes();
        let num: f32 = got.iter().zip(target).map(|(a, b)| (a - b).powi(2)).sum();
        let den: f32 = target.iter().map(|b| b * b).sum();
        (num / den).sqrt()
    }

    #[test]
    fn more_iterations_and_pghi_converge_better() {
        let stft = Stft::new(512, 32, 128).unwrap();
        let x = chirp(8000);
        let bins = stft.num_bins();
        let spec = stft.forward(&x, bins);
        let mag = spec.magnitudes();
        let run = |iterations, init| {
            let opts = GriffinLimOptions {
                iterations,
                init,
                ..Default::default()
            };
            let y = griffin_lim(&stft, &mag, spec.frames, bins, &opts, &NoProgress).unwrap();
            inconsistency(&stft, &mag, &y, bins)
        };
        let r0 = run(0, PhaseInit::Random);
        let r32 = run(32, PhaseInit::Random);
        let p0 = run(0, PhaseInit::Pghi);
        let p32 = run(32, PhaseInit::Pghi);
        assert!(r32 < 0.5 * r0, "random: {r0} -> {r32}");
        assert!(p0 < r0, "pghi start {p0} vs random start {r0}");
        assert!(p32 < r32, "pghi {p32} vs random {r32} after 32 iterations");
    }

    #[test]
    fn seeded_runs_repeat() {
        let stft = Stft::new(256, 64, 256).unwrap();
        let x = chirp(4000);
        let spec = stft.forward(&x, 129);
        let mag = spec.magnitudes();
        let opts = GriffinLimOptions {
            iterations: 4,
            seed: 9,
            ..Default::default()
        };
        let a = griffin_lim(&stft, &mag, spec.frames, 129, &opts, &NoProgress).unwrap();
        let b = griffin_lim(&stft, &mag, spec.frames, 129, &opts, &NoProgress).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn wrong_shape_is_an_error() {
        let stft = Stft::new(256, 64, 256).unwrap();
        let r = griffin_lim(&stft, &[1.0; 10], 3, 129, &GriffinLimOptions::default(), &NoProgress);
        assert!(r.is_err());
    }
}
