//! Pitch tracking: probabilistic YIN (pYIN, Mauch and Dixon 2014) with
//! HMM (Viterbi) smoothing over pitch bins and voicing.
//!
//! Per frame, the cumulative mean normalised difference (YIN) is computed;
//! every trough below each of 100 thresholds (beta(2, 18) prior over the
//! thresholds) gets probability by its rank among such troughs (Boltzmann
//! prior), and the trough probabilities land in 10-cent pitch bins. An HMM
//! with voiced and unvoiced copies of each bin, pitch moves of at most
//! `max_transition_rate` octaves per second and a small voicing switch
//! probability picks the most likely path. The reported f0 of a voiced
//! frame is the candidate trough's interpolated frequency nearest the
//! chosen bin (bin centre if none), so it is not quantised to 10 cents.

use std::sync::Arc;

use rayon::prelude::*;
use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

use crate::error::{Error, Result};

/// pYIN settings (defaults follow librosa's `pyin`, with a 10 ms hop).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PyinParams {
    /// Lowest f0, Hz.
    pub fmin_hz: f64,
    /// Highest f0, Hz.
    pub fmax_hz: f64,
    /// Hop between frames, seconds.
    pub hop_s: f64,
    /// Frame length, seconds (rounded to the nearest power of two in
    /// samples: 4096 at 44.1 kHz, 2048 at 22.05 kHz).
    pub frame_s: f64,
    /// Number of YIN thresholds.
    pub n_thresholds: usize,
    /// Beta prior over thresholds (a, b).
    pub beta: (f64, f64),
    /// Boltzmann parameter of the trough-rank prior.
    pub boltzmann: f64,
    /// Pitch bin width, semitones.
    pub resolution_semitones: f64,
    /// Largest pitch change the HMM allows, octaves per second.
    pub max_transition_rate: f64,
    /// Probability of switching between voiced and unvoiced per frame.
    pub switch_prob: f64,
    /// Probability given to the global minimum when no trough is below a threshold.
    pub no_trough_prob: f64,
}

impl Default for PyinParams {
    fn default() -> Self {
        PyinParams {
            fmin_hz: 60.0,
            fmax_hz: 1500.0,
            hop_s: 0.01,
            frame_s: 0.0929,
            n_thresholds: 100,
            beta: (2.0, 18.0),
            boltzmann: 2.0,
            resolution_semitones: 0.1,
            max_transition_rate: 35.92,
            switch_prob: 0.01,
            no_trough_prob: 0.01,
        }
    }
}

/// A pitch track at a fixed hop.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PitchTrack {
    /// Seconds between frames; frame `i` is centred at `i * hop_s`.
    pub hop_s: f64,
    /// f0 in Hz per frame, 0 where unvoiced.
    pub f0_hz: Vec<f32>,
    /// Voicing decision per frame.
    pub voiced: Vec<bool>,
    /// Probability that the frame is voiced (before smoothing).
    pub voiced_prob: Vec<f32>,
}

impl PitchTrack {
    /// Cents above `tonic_hz` per frame (None where unvoiced).
    pub fn cents(&self, tonic_hz: f64) -> Vec<Option<f64>> {
        self.f0_hz
            .iter()
            .zip(&self.voiced)
            .map(|(f, v)| (*v && *f > 0.0).then(|| 1200.0 * (*f as f64 / tonic_hz).log2()))
            .collect()
    }
}

/// Probability mass of beta(a, b) in each of `n` equal threshold intervals
/// of [0, 1], by Simpson integration of the density.
fn beta_probs(n: usize, a: f64, b: f64) -> Vec<f64> {
    let pdf = |x: f64| {
        if x <= 0.0 || x >= 1.0 {
            0.0
        } else {
            x.powf(a - 1.0) * (1.0 - x).powf(b - 1.0)
        }
    };
    let steps = 64;
    let mass: Vec<f64> = (0..n)
        .map(|i| {
            let (lo, hi) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
            let h = (hi - lo) / steps as f64;
            let mut s = pdf(lo) + pdf(hi);
            for k in 1..steps {
                s += pdf(lo + k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 };
            }
            s * h / 3.0
        })
        .collect();
    let total: f64 = mass.iter().sum();
    mass.iter().map(|m| m / total).collect()
}

/// Boltzmann pmf: P(k) for k in 0..n with parameter `lambda`.
fn boltzmann(k: usize, lambda: f64, n: usize) -> f64 {
    (1.0 - (-lambda).exp()) * (-lambda * k as f64).exp() / (1.0 - (-lambda * n as f64).exp())
}

/// Per-frame YIN candidates: (f0 Hz, probability).
type Candidates = Vec<(f64, f64)>;

struct Yin {
    frame: usize,
    min_period: usize,
    max_period: usize,
    fft: Arc<dyn Fft<f32>>,
    ifft: Arc<dyn Fft<f32>>,
}

impl Yin {
    /// Cumulative mean normalised difference for lags 0..=max_period.
    fn cmnd(&self, x: &[f32], buf: &mut Vec<Complex32>) -> Vec<f64> {
        let n = self.fft.len();
        buf.clear();
        buf.extend(x.iter().map(|&v| Complex32::new(v, 0.0)));
        buf.resize(n, Complex32::new(0.0, 0.0));
        self.fft.process(buf);
        for c in buf.iter_mut() {
            *c = Complex32::new(c.norm_sqr(), 0.0);
        }
        self.ifft.process(buf);
        let acf: Vec<f64> = buf[..=self.max_period]
            .iter()
            .map(|c| c.re as f64 / n as f64)
            .collect();
        // d(tau) = sum_{j < N - tau} (x_j - x_{j + tau})^2
        //        = E[0, N - tau) + E[tau, N) - 2 acf(tau).
        let mut prefix = vec![0.0f64; x.len() + 1];
        for (i, v) in x.iter().enumerate() {
            prefix[i + 1] = prefix[i] + (*v as f64) * (*v as f64);
        }
        let total = prefix[x.len()];
        let mut out = vec![1.0f64; self.max_period + 1];
        let mut running = 0.0;
        for tau in 1..=self.max_period {
            let d = (prefix[x.len() - tau] + (total - prefix[tau]) - 2.0 * acf[tau]).max(0.0);
            running += d;
            out[tau] = if running > 0.0 {
                d * tau as f64 / running
            } else {
                1.0
            };
        }
        out
    }
}

fn candidates(
    cmnd: &[f64],
    yin: &Yin,
    rate: f64,
    thresholds: &[f64],
    bp: &[f64],
    p: &PyinParams,
) -> Candidates {
    let lo = yin.min_period;
    let hi = yin.max_period;
    let y = &cmnd[lo..=hi];
    // Troughs: local minima of the normalised difference over the lag range.
    let troughs: Vec<usize> = (0..y.len())
        .filter(|&i| {
            let left = i == 0 || y[i] < y[i - 1];
            let right = i + 1 == y.len() || y[i] <= y[i + 1];
            left && right && !(i == 0 && y.len() > 1 && y[0] >= y[1])
        })
        .collect();
    if troughs.is_empty() {
        return vec![];
    }
    let mut probs = vec![0.0f64; troughs.len()];
    for (j, &t) in thresholds.iter().enumerate() {
        let below: Vec<usize> = (0..troughs.len()).filter(|&k| y[troughs[k]] < t).collect();
        for (rank, &k) in below.iter().enumerate() {
            probs[k] += boltzmann(rank, p.boltzmann, below.len()) * bp[j];
        }
        let global = (0..troughs.len())
            .min_by(|&a, &b| y[troughs[a]].total_cmp(&y[troughs[b]]))
            .expect("non-empty");
        if y[troughs[global]] >= t {
            probs[global] += p.no_trough_prob * bp[j];
        }
    }
    troughs
        .iter()
        .zip(&probs)
        .filter(|(_, pr)| **pr > 0.0)
        .map(|(&i, &pr)| {
            // Parabolic interpolation of the trough.
            let shift = if i > 0 && i + 1 < y.len() {
                let (a, b, c) = (y[i - 1], y[i], y[i + 1]);
                let denom = a - 2.0 * b + c;
                if denom.abs() > 1e-12 {
                    (0.5 * (a - c) / denom).clamp(-1.0, 1.0)
                } else {
                    0.0
                }
            } else {
                0.0
            };
            (rate / ((lo + i) as f64 + shift), pr)
        })
        .collect()
}

/// Tracks f0 in mono `samples` at `sample_rate_hz`.
pub fn pyin(samples: &[f32], sample_rate_hz: u32, p: &PyinParams) -> Result<PitchTrack> {
    let rate = sample_rate_hz as f64;
    if !(p.fmin_hz > 0.0 && p.fmin_hz < p.fmax_hz && p.fmax_hz < rate / 2.0) {
        return Err(Error::param(
            "fmin_hz",
            format!(
                "need 0 < fmin ({}) < fmax ({}) < Nyquist ({})",
                p.fmin_hz,
                p.fmax_hz,
                rate / 2.0
            ),
        ));
    }
    if !(p.hop_s > 0.0 && p.resolution_semitones > 0.0 && p.n_thresholds > 0) {
        return Err(Error::param(
            "hop_s",
            "hop, resolution and thresholds must be positive",
        ));
    }
    if samples.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidAudio {
            context: "pitch tracking".into(),
            reason: "NaN or infinite samples".into(),
        });
    }
    let hop = ((p.hop_s * rate).round() as usize).max(1);
    let frame = (1usize << ((p.frame_s * rate).max(64.0).log2().round() as u32)).max(64);
    let min_period = ((rate / p.fmax_hz).floor() as usize).max(1);
    let max_period = ((rate / p.fmin_hz).ceil() as usize).min(frame - 2);
    if min_period + 2 > max_period {
        return Err(Error::param("frame_s", "frame too short for fmin"));
    }
    let mut planner = FftPlanner::<f32>::new();
    let n_fft = (2 * frame).next_power_of_two();
    let yin = Yin {
        frame,
        min_period,
        max_period,
        fft: planner.plan_fft_forward(n_fft),
        ifft: planner.plan_fft_inverse(n_fft),
    };
    let n_frames = 1 + samples.len() / hop;
    let pad = frame / 2;
    let thresholds: Vec<f64> = (1..=p.n_thresholds)
        .map(|i| i as f64 / p.n_thresholds as f64)
        .collect();
    let bp = beta_probs(p.n_thresholds, p.beta.0, p.beta.1);
    let cands: Vec<Candidates> = (0..n_frames)
        .into_par_iter()
        .map_init(Vec::new, |buf, t| {
            // Centred frame, zero-padded at the edges.
            let start = (t * hop) as isize - pad as isize;
            let x: Vec<f32> = (0..yin.frame)
                .map(|j| {
                    let i = start + j as isize;
                    if i >= 0 && (i as usize) < samples.len() {
                        samples[i as usize]
                    } else {
                        0.0
                    }
                })
                .collect();
            if x.iter().all(|v| *v == 0.0) {
                return vec![];
            }
            let c = yin.cmnd(&x, buf);
            candidates(&c, &yin, rate, &thresholds, &bp, p)
        })
        .collect();

    // Pitch bins and the HMM.
    let per_semitone = (1.0 / p.resolution_semitones).ceil();
    let n_bins = (12.0 * per_semitone * (p.fmax_hz / p.fmin_hz).log2()).floor() as usize + 1;
    let bin_of = |f: f64| {
        ((12.0 * per_semitone * (f / p.fmin_hz).log2())
            .round()
            .max(0.0) as usize)
            .min(n_bins - 1)
    };
    let bin_hz = |b: usize| p.fmin_hz * (b as f64 / (12.0 * per_semitone)).exp2();
    let max_semitones = (p.max_transition_rate * 12.0 * hop as f64 / rate).round();
    let half = (max_semitones * per_semitone) as usize / 2 + 1;
    // Triangular kernel over |b - b'| < half, normalised per source row.
    let kernel: Vec<f64> = (0..half).map(|d| (half - d) as f64).collect();
    let log_row_norm: Vec<f64> = (0..n_bins)
        .map(|b| {
            let lo = b.saturating_sub(half - 1);
            let hi = (b + half - 1).min(n_bins - 1);
            (lo..=hi).map(|c| kernel[b.abs_diff(c)]).sum::<f64>().ln()
        })
        .collect();
    let log_kernel: Vec<f64> = kernel.iter().map(|k| k.ln()).collect();
    let log_stay = (1.0 - p.switch_prob).ln();
    let log_switch = p.switch_prob.max(1e-300).ln();
    let states = 2 * n_bins;
    let mut voiced_prob = vec![0.0f32; n_frames];
    let emissions = |t: usize, obs: &mut Vec<f64>| -> f32 {
        obs.clear();
        obs.resize(states, 0.0);
        for &(f, pr) in &cands[t] {
            obs[bin_of(f)] += pr;
        }
        let vp = obs[..n_bins].iter().sum::<f64>().clamp(0.0, 1.0);
        for o in obs[n_bins..].iter_mut() {
            *o = (1.0 - vp) / n_bins as f64;
        }
        for o in obs.iter_mut() {
            *o = o.max(1e-300).ln();
        }
        vp as f32
    };
    let mut obs = Vec::new();
    let mut delta: Vec<f64> = vec![-(states as f64).ln(); states];
    voiced_prob[0] = emissions(0, &mut obs);
    for (d, o) in delta.iter_mut().zip(&obs) {
        *d += o;
    }
    let mut back: Vec<u16> = vec![0; n_frames * states];
    let mut next = vec![0.0f64; states];
    let mut best_from = vec![(0.0f64, 0usize); states];
    for t in 1..n_frames {
        voiced_prob[t] = emissions(t, &mut obs);
        // Best predecessor bin within each voicing layer, per target bin.
        best_from
            .par_chunks_mut(n_bins)
            .enumerate()
            .for_each(|(layer, out)| {
                let src = &delta[layer * n_bins..(layer + 1) * n_bins];
                for (b2, o) in out.iter_mut().enumerate() {
                    let lo = b2.saturating_sub(half - 1);
                    let hi = (b2 + half - 1).min(n_bins - 1);
                    let mut best = (f64::NEG_INFINITY, lo);
                    for (b, s) in src.iter().enumerate().take(hi + 1).skip(lo) {
                        let v = s + log_kernel[b.abs_diff(b2)] - log_row_norm[b];
                        if v > best.0 {
                            best = (v, b);
                        }
                    }
                    *o = (best.0, layer * n_bins + best.1);
                }
            });
        for s2 in 0..states {
            let (layer, b2) = (s2 / n_bins, s2 % n_bins);
            let same = best_from[layer * n_bins + b2];
            let other = best_from[(1 - layer) * n_bins + b2];
            let (v, from) = if same.0 + log_stay >= other.0 + log_switch {
                (same.0 + log_stay, same.1)
            } else {
                (other.0 + log_switch, other.1)
            };
            next[s2] = v + obs[s2];
            back[t * states + s2] = from as u16;
        }
        std::mem::swap(&mut delta, &mut next);
    }
    let mut s = (0..states)
        .max_by(|&a, &b| delta[a].total_cmp(&delta[b]))
        .unwrap_or(0);
    let mut path = vec![0usize; n_frames];
    for t in (0..n_frames).rev() {
        path[t] = s;
        if t > 0 {
            s = back[t * states + s] as usize;
        }
    }
    let mut f0_hz = vec![0.0f32; n_frames];
    let mut voiced = vec![false; n_frames];
    for t in 0..n_frames {
        let (layer, b) = (path[t] / n_bins, path[t] % n_bins);
        if layer == 0 && !cands[t].is_empty() {
            voiced[t] = true;
            let refined = cands[t]
                .iter()
                .filter(|(f, _)| bin_of(*f).abs_diff(b) <= 1)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(f, _)| *f);
            f0_hz[t] = refined.unwrap_or_else(|| bin_hz(b)) as f32;
        }
    }
    Ok(PitchTrack {
        hop_s: hop as f64 / rate,
        f0_hz,
        voiced,
        voiced_prob,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(f: f64, secs: f64, rate: f64) -> Vec<f32> {
        (0..(secs * rate) as usize)
            .map(|i| {
                (0.5 * (std::f64::consts::TAU * f * i as f64 / rate).sin()
                    + 0.2 * (std::f64::consts::TAU * 2.0 * f * i as f64 / rate).sin())
                    as f32
            })
            .collect()
    }

    #[test]
    fn tracks_steady_tones_and_silence() {
        let rate = 16000.0;
        for f in [80.0, 146.8, 440.0, 1200.0] {
            let mut x = tone(f, 0.6, rate);
            x.extend(std::iter::repeat_n(0.0, 8000));
            let tr = pyin(&x, 16000, &PyinParams::default()).unwrap();
            let mid = 30;
            assert!(tr.voiced[mid], "{f} Hz unvoiced");
            let cents = 1200.0 * (tr.f0_hz[mid] as f64 / f).log2();
            assert!(cents.abs() < 5.0, "{f} Hz: {cents} cents");
            let last = tr.voiced.len() - 5;
            assert!(!tr.voiced[last], "{f} Hz: silence voiced");
        }
    }

    #[test]
    fn beta_and_boltzmann_are_distributions() {
        let b = beta_probs(100, 2.0, 18.0);
        assert!((b.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // beta(2, 18) has its mode at 1/18: interval 5.
        let mode = (0..100).max_by(|&i, &j| b[i].total_cmp(&b[j])).unwrap();
        assert!((4..=6).contains(&mode), "{mode}");
        let s: f64 = (0..7).map(|k| boltzmann(k, 2.0, 7)).sum();
        assert!((s - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let x = tone(200.0, 0.2, 16000.0);
        let p = PyinParams {
            fmax_hz: 9000.0,
            ..Default::default()
        };
        assert!(pyin(&x, 16000, &p).is_err());
        assert!(pyin(&[f32::NAN; 100], 16000, &PyinParams::default()).is_err());
    }
}
