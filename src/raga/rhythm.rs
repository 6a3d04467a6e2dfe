//! Whether percussion keeps time: onsets found in the audio, and the share
//! of them that sit on one steady pulse grid, beyond what chance gives.
//!
//! A tala is counted on a steady pulse (the beats and their even
//! subdivisions, the nadai), so a clip that keeps a tala puts its strokes
//! on an isochronous grid. The grid is not known for a generated clip (its
//! tempo is the model's choice), so the measure searches it: every pulse
//! period in a range and every phase, scored by the share of onsets within
//! a tolerance of a grid line. A grid of short period catches many onsets
//! by chance (`2 * tol / period` of uniformly placed ones), so the score is
//! the share above chance, scaled to 1 for a perfect fit:
//! `(share - chance) / (1 - chance)`, maximised over the grids.
//!
//! The best of so many grids fits even random onsets fairly well (about
//! 0.5 for a dozen), so the same search is run on uniformly random onsets
//! of the same number over the same length (a fixed set of draws) and the
//! verdict is the excess over their mean: near 0 for random strokes, about
//! 0.5 for a metronome.

use serde::{Deserialize, Serialize};

use crate::spectrogram::stft::Stft;

/// Settings of the onset detector and the grid search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RhythmParams {
    /// Shortest pulse period searched, seconds (0.12 s: a fast nadai).
    pub min_period_s: f64,
    /// Longest pulse period searched, seconds.
    pub max_period_s: f64,
    /// Period search step, seconds.
    pub period_step_s: f64,
    /// How far from a grid line an onset may fall, seconds.
    pub tolerance_s: f64,
    /// Least time between two onsets, seconds.
    pub min_gap_s: f64,
    /// An onset's strength must exceed the median by this many median
    /// absolute deviations.
    pub threshold_mads: f64,
    /// Fewest onsets for a verdict.
    pub min_onsets: usize,
    /// Onsets weaker than this share of the strongest are ignored.
    pub min_relative_strength: f64,
    /// Random onset sets the fit is compared with.
    pub null_draws: usize,
}

impl Default for RhythmParams {
    fn default() -> Self {
        RhythmParams {
            min_period_s: 0.12,
            max_period_s: 1.0,
            period_step_s: 0.002,
            tolerance_s: 0.025,
            min_gap_s: 0.07,
            threshold_mads: 3.0,
            min_onsets: 6,
            min_relative_strength: 0.2,
            null_draws: 16,
        }
    }
}

/// The best pulse grid of a clip's onsets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GridFit {
    /// Onsets found.
    pub onsets: usize,
    /// The grid's period, seconds.
    pub period_s: f64,
    /// Its phase (time of the first grid line), seconds.
    pub phase_s: f64,
    /// Share of onsets within the tolerance of a grid line.
    pub on_grid_share: f64,
    /// The share uniformly placed onsets would get on this grid.
    pub chance_share: f64,
    /// `(on_grid_share - chance_share) / (1 - chance_share)`.
    pub above_chance: f64,
    /// The mean `above_chance` of the best grids of random onsets (same
    /// number, same length).
    pub null_above_chance: f64,
    /// `above_chance - null_above_chance`: the verdict.
    pub excess: f64,
}

/// Onset strength: the half-wave rectified rise of log magnitude, summed
/// over frequency, per frame of `hop_s` seconds (returned with it).
pub fn onset_strength(samples: &[f32], rate_hz: u32) -> (Vec<f64>, f64) {
    // ~46 ms window, ~5.8 ms hop at 44.1 kHz, scaled with the rate
    let n_fft = ((rate_hz as f64 * 0.046) as usize)
        .next_power_of_two()
        .max(64);
    let hop = (n_fft / 8).max(1);
    let hop_s = hop as f64 / rate_hz as f64;
    let Ok(stft) = Stft::new(n_fft, hop, n_fft) else {
        return (Vec::new(), hop_s);
    };
    if samples.len() < n_fft {
        return (Vec::new(), hop_s);
    }
    let spec = stft.forward(samples, stft.num_bins());
    let log: Vec<f32> = spec
        .magnitudes()
        .iter()
        .map(|m| (1.0 + 100.0 * m).ln())
        .collect();
    let bins = spec.bins;
    let mut strength = vec![0.0; spec.frames];
    // the first and last half-window see the padding, not the signal
    let edge = (n_fft / 2).div_ceil(hop);
    for t in (1 + edge)..spec.frames.saturating_sub(edge) {
        let (prev, cur) = (
            &log[(t - 1) * bins..t * bins],
            &log[t * bins..(t + 1) * bins],
        );
        strength[t] = cur
            .iter()
            .zip(prev)
            .map(|(c, p)| (c - p).max(0.0) as f64)
            .sum::<f64>()
            / bins as f64;
    }
    (strength, hop_s)
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Onset times, seconds: local maxima of `strength` (frames `hop_s`
/// apart) above the median by `threshold_mads` median absolute deviations
/// and above `min_relative_strength` of the strongest, at least
/// `min_gap_s` apart (the stronger kept).
pub fn pick_onsets(strength: &[f64], hop_s: f64, p: &RhythmParams) -> Vec<f64> {
    let med = median(&mut strength.to_vec());
    let mad = median(&mut strength.iter().map(|v| (v - med).abs()).collect::<Vec<_>>());
    let peak = strength.iter().cloned().fold(0.0, f64::max);
    // a floor for near-silent or steady signals, whose flux is rounding
    const FLOOR: f64 = 1e-3;
    let threshold = (med + p.threshold_mads * mad)
        .max(p.min_relative_strength * peak)
        .max(FLOOR);
    let gap = ((p.min_gap_s / hop_s).round() as usize).max(1);
    let mut onsets: Vec<(usize, f64)> = Vec::new();
    for t in 1..strength.len().saturating_sub(1) {
        let v = strength[t];
        if v <= threshold || v < strength[t - 1] || v < strength[t + 1] {
            continue;
        }
        match onsets.last_mut() {
            Some(last) if t - last.0 < gap => {
                if v > last.1 {
                    *last = (t, v);
                }
            }
            _ => onsets.push((t, v)),
        }
    }
    onsets.into_iter().map(|(t, _)| t as f64 * hop_s).collect()
}

/// Circular distance of `x` to the nearest multiple of `period`.
fn grid_distance(x: f64, period: f64) -> f64 {
    let r = x.rem_euclid(period);
    r.min(period - r)
}

/// The pulse grid that holds the most onsets beyond chance, and how much
/// better it holds them than the best grids of random onsets over
/// `length_s`; `None` with fewer than `min_onsets` onsets.
pub fn fit_grid(onsets: &[f64], length_s: f64, p: &RhythmParams) -> Option<GridFit> {
    let mut fit = best_grid(onsets, p)?;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut null = 0.0;
    for _ in 0..p.null_draws.max(1) {
        let random: Vec<f64> = (0..onsets.len()).map(|_| uniform() * length_s).collect();
        null += best_grid(&random, p).map_or(0.0, |g| g.above_chance);
    }
    fit.null_above_chance = null / p.null_draws.max(1) as f64;
    fit.excess = fit.above_chance - fit.null_above_chance;
    Some(fit)
}

/// The grid with the highest `above_chance`. Phases tried: each onset's own.
fn best_grid(onsets: &[f64], p: &RhythmParams) -> Option<GridFit> {
    if onsets.len() < p.min_onsets.max(2) || p.period_step_s <= 0.0 {
        return None;
    }
    let n = onsets.len() as f64;
    let mut best: Option<GridFit> = None;
    let mut period = p.min_period_s;
    while period <= p.max_period_s + 1e-12 {
        let chance = (2.0 * p.tolerance_s / period).min(1.0);
        if chance < 1.0 {
            for &anchor in onsets {
                let hits = onsets
                    .iter()
                    .filter(|&&t| grid_distance(t - anchor, period) <= p.tolerance_s)
                    .count() as f64;
                let share = hits / n;
                let above = (share - chance) / (1.0 - chance);
                if best.is_none_or(|b| above > b.above_chance) {
                    best = Some(GridFit {
                        onsets: onsets.len(),
                        period_s: period,
                        phase_s: anchor.rem_euclid(period),
                        on_grid_share: share,
                        chance_share: chance,
                        above_chance: above,
                        null_above_chance: 0.0,
                        excess: above,
                    });
                }
            }
        }
        period += p.period_step_s;
    }
    best
}

/// Onsets of mono `samples` and their best pulse grid.
pub fn rhythm_fit(samples: &[f32], rate_hz: u32, p: &RhythmParams) -> Option<GridFit> {
    let (strength, hop_s) = onset_strength(samples, rate_hz);
    let length_s = samples.len() as f64 / rate_hz as f64;
    fit_grid(&pick_onsets(&strength, hop_s, p), length_s, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decaying noise bursts ("strokes") at `times`, over a quiet sine.
    fn strokes(times: &[f64], rate: u32, seconds: f64) -> Vec<f32> {
        let n = (seconds * rate as f64) as usize;
        let mut x: Vec<f32> = (0..n).map(|i| 0.05 * (i as f32 * 0.05).sin()).collect();
        let mut seed = 12345u64;
        for &t in times {
            let start = (t * rate as f64) as usize;
            for k in 0..(rate as usize / 20) {
                if start + k >= n {
                    break;
                }
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let noise = ((seed >> 33) as f32 / (1u64 << 31) as f32) - 1.0;
                x[start + k] += 0.8 * noise * (-(k as f32) / (rate as f32 * 0.01)).exp();
            }
        }
        x
    }

    #[test]
    fn onsets_are_found_where_the_strokes_are() {
        let rate = 22050;
        let times: Vec<f64> = (0..10).map(|i| 0.3 + i as f64 * 0.41).collect();
        let p = RhythmParams::default();
        let (s, hop) = onset_strength(&strokes(&times, rate, 4.8), rate);
        let found = pick_onsets(&s, hop, &p);
        assert_eq!(found.len(), times.len(), "{found:?}");
        for (f, t) in found.iter().zip(&times) {
            assert!((f - t).abs() < 0.02, "{f} vs {t}");
        }
    }

    #[test]
    fn a_steady_pulse_fits_and_random_strokes_do_not() {
        let p = RhythmParams::default();
        // a pulse of 0.3 s with some strokes skipped and +-10 ms jitter
        let steady: Vec<f64> = (0..16)
            .filter(|i| i % 5 != 3)
            .map(|i| 0.2 + i as f64 * 0.3 + if i % 2 == 0 { 0.01 } else { -0.01 })
            .collect();
        let fit = fit_grid(&steady, 5.0, &p).unwrap();
        assert!(fit.above_chance > 0.9 && fit.excess > 0.3, "{fit:?}");
        assert!(
            (fit.period_s - 0.3).abs() < 0.01 || (fit.period_s - 0.15).abs() < 0.01,
            "{fit:?}"
        );
        // uniformly random onsets, several draws: no excess on average
        let mut seed = 7u64;
        let mut total = 0.0;
        for _ in 0..8 {
            let mut t: Vec<f64> = (0..14)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 11) as f64 / (1u64 << 53) as f64 * 5.0
                })
                .collect();
            t.sort_by(f64::total_cmp);
            total += fit_grid(&t, 5.0, &p).unwrap().excess;
        }
        assert!(
            (total / 8.0).abs() < 0.1,
            "random onsets: excess {}",
            total / 8.0
        );
        // too few onsets: no verdict
        assert!(fit_grid(&steady[..3], 5.0, &p).is_none());
    }

    #[test]
    fn audio_end_to_end() {
        let rate = 22050;
        let p = RhythmParams::default();
        let beat: Vec<f64> = (0..12).map(|i| 0.25 + i as f64 * 0.375).collect();
        let fit = rhythm_fit(&strokes(&beat, rate, 5.0), rate, &p).unwrap();
        assert!(fit.excess > 0.3 && fit.onsets == 12, "{fit:?}");
        // a sine alone has no onsets to judge
        let quiet = strokes(&[], rate, 5.0);
        assert!(rhythm_fit(&quiet, rate, &p).is_none());
    }
}
