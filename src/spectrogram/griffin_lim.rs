//! Phase reconstruction: fast Griffin-Lim (Perraudin, Balazs and
//! Sondergaard 2013) with torchaudio's momentum convention, started from
//! random phase or from phase-gradient heap integration (PGHI, Prusa,
//! Balazs and Sondergaard 2017).

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
    let shape = (frames, bins);
    griffin_lim_continued(stft, magnitude, shape, opts, &[], progress).map(|(signal, _)| signal)
}

/// [`griffin_lim`] on one segment of a longer spectrogram (`shape` is
/// `(frames, bins)`): the first `known_phase.len() / bins` frames keep the
/// given unit phases (frames the previous segment settled) through every
/// iteration, and the rest of the segment is fitted to them, so that the
/// two segments agree where they overlap. Also returns the final phases
/// (unit complex values), from which the next segment continues.
pub fn griffin_lim_continued(
    stft: &Stft,
    magnitude: &[f32],
    (frames, bins): (usize, usize),
    opts: &GriffinLimOptions,
    known_phase: &[Complex32],
    progress: &dyn Progress,
) -> Result<(Vec<f32>, Spectrum)> {
    if known_phase.len() > frames * bins || known_phase.len() % bins.max(1) != 0 {
        return Err(Error::param(
            "known_phase",
            format!(
                "{} values are not whole frames of {bins} bins within {frames} frames",
                known_phase.len()
            ),
        ));
    }
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
        return Err(Error::param(
            "momentum",
            format!("{} is outside [0, 1)", opts.momentum),
        ));
    }
    let mut angles = Spectrum::zeros(frames, bins);
    match opts.init {
        PhaseInit::Random => random_phase(&mut angles.data, opts.seed),
        PhaseInit::Pghi => pghi(stft, magnitude, &mut angles, opts.seed),
    }
    angles.data[..known_phase.len()].copy_from_slice(known_phase);
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
        // the known frames stay as given: the segment fits itself to them
        for ((s, k), m) in spec.data.iter_mut().zip(known_phase).zip(magnitude) {
            *s = k * m;
        }
        std::mem::swap(&mut rebuilt, &mut tprev);
        if !progress.advance(1) {
            return Err(Error::Cancelled);
        }
    }
    stft.inverse_into(&spec, &mut frames_buf, &mut signal);
    for c in spec.data.iter_mut() {
        let n = c.norm();
        *c = if n > 0.0 {
            *c / n
        } else {
            Complex32::new(1.0, 0.0)
        };
    }
    Ok((signal, spec))
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

/// Width of one priority bucket in natural-log magnitude (~0.1 dB).
const BUCKET_NEPERS: f64 = 0.01;

/// A max-priority queue over coefficient indices with quantised priorities:
/// O(1) push and pop, ties served last-in first-out. PGHI only needs
/// "roughly the loudest known coefficient next", and a binary heap over
/// millions of coefficients costs more than the whole Griffin-Lim loop.
struct BucketQueue {
    buckets: Vec<Vec<u32>>,
    top: usize,
}

impl BucketQueue {
    fn new(levels: usize) -> Self {
        BucketQueue {
            buckets: vec![Vec::new(); levels.max(1)],
            top: 0,
        }
    }

    fn push(&mut self, level: usize, index: usize) {
        self.buckets[level].push(index as u32);
        self.top = self.top.max(level);
    }

    fn pop(&mut self) -> Option<usize> {
        loop {
            if let Some(i) = self.buckets[self.top].pop() {
                return Some(i as usize);
            }
            if self.top == 0 {
                return None;
            }
            self.top -= 1;
        }
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
    let max = magnitude.iter().cloned().fold(0.0f32, f32::max) as f64;
    // Coefficients more than 100 dB below the maximum get random phase.
    let tol = max * 1e-5;
    let log_floor = tol.max(1e-30).ln();
    let levels = ((max.max(1e-30).ln() - log_floor) / BUCKET_NEPERS) as usize + 1;
    let tau = std::f64::consts::TAU;

    // Work on a grid with a one-cell border (marked done) so that
    // neighbours need no bounds checks: cell (t, k) is (t + 1) * w + k + 1.
    let w = bins + 2;
    let cell = |t: usize, k: usize| (t + 1) * w + k + 1;
    let mut logm = vec![0.0f32; (frames + 2) * w];
    logm.par_chunks_mut(w)
        .skip(1)
        .take(frames)
        .zip(magnitude.par_chunks(bins))
        .for_each(|(row, mags)| {
            for (l, &m) in row[1..=bins].iter_mut().zip(mags) {
                *l = (m as f64).max(tol).max(1e-30).ln() as f32;
            }
        });
    // Phase advance per frame (time direction) and per bin (frequency),
    // from centred differences of the log-magnitude (zero at the edges).
    let mut dt = vec![0.0f32; (frames + 2) * w];
    let mut dk = vec![0.0f32; (frames + 2) * w];
    dt.par_chunks_mut(w)
        .zip(dk.par_chunks_mut(w))
        .enumerate()
        .skip(1)
        .take(frames)
        .for_each(|(row, (dt_row, dk_row))| {
            let t = row - 1;
            for k in 0..bins {
                let p = row * w + k + 1;
                let ds_dk = if k == 0 || k + 1 == bins {
                    0.0
                } else {
                    (logm[p + 1] - logm[p - 1]) as f64 / 2.0
                };
                let ds_dt = if t == 0 || t + 1 == frames {
                    0.0
                } else {
                    (logm[p + w] - logm[p - w]) as f64 / 2.0
                };
                dt_row[k + 1] = (h * (n / lambda * ds_dk + tau * k as f64 / n)) as f32;
                dk_row[k + 1] = (-lambda / (n * h) * ds_dt + std::f64::consts::PI) as f32;
            }
        });
    let levels_of: Vec<u32> = logm
        .par_iter()
        .map(|&l| ((l as f64 - log_floor) / BUCKET_NEPERS).max(0.0) as u32)
        .collect();
    let level = |p: usize| levels_of[p] as usize;

    // Frame by frame (the real-time variant of heap integration, Prusa and
    // Holighaus 2017): the queue holds the previous frame's coefficients and
    // the current frame's as they are reached, so memory access stays
    // within two frames.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Phases stay unwrapped in f64: they grow by at most pi * hop per frame.
    let mut phase = vec![0.0f64; (frames + 2) * w];
    let mut done = vec![true; (frames + 2) * w];
    let mut queue = BucketQueue::new(levels);
    // This frame's coefficients, for fallback seeds, loudest first.
    let mut seeds = BucketQueue::new(levels);
    for t in 0..frames {
        let row = cell(t, 0);
        for k in 0..bins {
            let p = row + k;
            if (magnitude[t * bins + k] as f64) <= tol {
                phase[p] = rng.random_range(0.0..tau);
            } else {
                done[p] = false;
                seeds.push(level(p), p);
            }
        }
        if t > 0 {
            for k in 0..bins {
                let p = row - w + k;
                if (magnitude[(t - 1) * bins + k] as f64) > tol {
                    queue.push(level(p), p);
                }
            }
        }
        loop {
            while let Some(p) = queue.pop() {
                if p < row {
                    // From the previous frame: step forward in time.
                    let q = p + w;
                    if !done[q] {
                        phase[q] = phase[p] + (dt[p] + dt[q]) as f64 / 2.0;
                        done[q] = true;
                        queue.push(level(q), q);
                    }
                } else {
                    for (q, delta) in [
                        (p + 1, (dk[p] + dk[p + 1]) / 2.0),
                        (p - 1, -(dk[p] + dk[p - 1]) / 2.0),
                    ] {
                        if !done[q] {
                            phase[q] = phase[p] + delta as f64;
                            done[q] = true;
                            queue.push(level(q), q);
                        }
                    }
                }
            }
            // Regions the previous frame did not reach start from their
            // loudest coefficient with phase 0.
            let Some(p) = std::iter::from_fn(|| seeds.pop()).find(|&p| !done[p]) else {
                break;
            };
            phase[p] = 0.0;
            done[p] = true;
            queue.push(level(p), p);
        }
    }
    angles
        .data
        .par_chunks_mut(bins)
        .zip(phase.par_chunks(w).skip(1))
        .for_each(|(out, ph)| {
            for (a, p) in out.iter_mut().zip(&ph[1..=bins]) {
                let (sin, cos) = p.sin_cos();
                *a = Complex32::new(cos as f32, sin as f32);
            }
        });
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
    fn known_phases_start_the_run_and_final_phases_come_back() {
        let stft = Stft::new(256, 64, 256).unwrap();
        // a whole number of hops, so the reconstruction has x's length
        let x = chirp(4096);
        let bins = stft.num_bins();
        let spec = stft.forward(&x, bins);
        let mag = spec.magnitudes();
        let unit: Vec<Complex32> = spec.data.iter().map(|c| c / (c.norm() + 1e-30)).collect();
        let opts = GriffinLimOptions {
            iterations: 0,
            ..Default::default()
        };
        let shape = (spec.frames, bins);
        let (y, phase) =
            griffin_lim_continued(&stft, &mag, shape, &opts, &unit, &NoProgress).unwrap();
        assert!(inconsistency(&stft, &mag, &y, bins) < 1e-3);
        assert!(phase.data.iter().all(|c| (c.norm() - 1.0).abs() < 1e-4));
        let (z, _) = griffin_lim_continued(&stft, &mag, shape, &opts, &[], &NoProgress).unwrap();
        assert!(inconsistency(&stft, &mag, &z, bins) > 0.1);
        let bad = griffin_lim_continued(&stft, &mag, shape, &opts, &unit[..bins + 1], &NoProgress);
        assert!(bad.unwrap_err().to_string().contains("known_phase"));
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
        let r = griffin_lim(
            &stft,
            &[1.0; 10],
            3,
            129,
            &GriffinLimOptions::default(),
            &NoProgress,
        );
        assert!(r.is_err());
    }
}
