//! Tonic estimation that listens to the drone.
//!
//! Two folded (octave-free) pitch-class histograms in 10-cent bins are
//! combined: the drone's (peaks of the stationary spectrum, i.e. the 20th
//! percentile of each bin's magnitude over time, between 35 Hz and 1 kHz,
//! where the tanpura's strings and their harmonics stand and melody notes,
//! which come and go, do not) and, with less weight, the melody's (the
//! pitch track's voiced frames). A Sa-Pa-Ma template picks the tonic's
//! pitch class (Sa strongest: three of the tanpura's four strings play it).
//! The octave comes from the drone's lowest Sa component (the low Sa
//! string, an octave below the tonic) or, without a drone, from the
//! melody's median lying about a fifth above Sa; it is kept in the search
//! range (100-260 Hz is usual).

use serde::Serialize;

use super::features::smooth_circular;
use super::pitch::PitchTrack;
use crate::error::{Error, Result};
use crate::spectrogram::stft::Stft;

/// Reference frequency of pitch-class bin 0 (Hz).
pub const REF_HZ: f64 = 55.0;
/// How far above the stationary spectrum's median a peak must stand to
/// count as the drone's (ratio of magnitudes).
const DRONE_PEAK_OVER_FLOOR: f64 = 4.0;
/// Summed log-strength of the peaks above which a drone is clear.
const MIN_DRONE_STRENGTH: f64 = 5.0;
/// Folded histogram bins (10 cents each).
pub const PC_BINS: usize = 120;

/// A tonic estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TonicEstimate {
    /// Tonic, Hz.
    pub tonic_hz: f64,
    /// Template score of the winner divided by the runner-up's (>= 1).
    pub confidence: f64,
}

/// Folds `hz` to a 10-cent pitch-class bin.
fn pc_bin(hz: f64) -> usize {
    let cents = 1200.0 * (hz / REF_HZ).log2();
    ((cents.rem_euclid(1200.0) / 10.0).round() as usize) % PC_BINS
}

fn normalise(h: &mut [f64]) {
    let s: f64 = h.iter().sum();
    if s > 0.0 {
        h.iter_mut().for_each(|v| *v /= s);
    }
}

/// Peaks (Hz, strength) of the stationary spectrum between 35 Hz and
/// 1 kHz: per bin, the 20th percentile of the magnitude over frames, so
/// that what sounds all the time (the drone) stands out and melody notes,
/// which come and go, do not.
fn stationary_peaks(samples: &[f32], rate: f64) -> Result<Vec<(f64, f64)>> {
    let n_fft = ((rate * 0.37) as usize).next_power_of_two(); // 16384 at 44.1 kHz
    let stft = Stft::new(n_fft, n_fft / 4, n_fft)?;
    let bin_hz = rate / n_fft as f64;
    let bins = ((1000.0 / bin_hz) as usize + 2).min(stft.num_bins());
    let spec = stft.forward(samples, bins);
    let mut per_bin: Vec<Vec<f32>> = vec![Vec::with_capacity(spec.frames); bins];
    for frame in spec.data.chunks(bins) {
        for (b, c) in per_bin.iter_mut().zip(frame) {
            b.push(c.norm());
        }
    }
    let level: Vec<f64> = per_bin
        .iter_mut()
        .map(|v| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 5] as f64
        })
        .collect();
    let floor = {
        let mut s = level.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        s[s.len() / 2].max(1e-12)
    };
    let lo = ((35.0 / bin_hz) as usize).max(1);
    let mut peaks = Vec::new();
    for k in lo..bins - 1 {
        if level[k] > level[k - 1]
            && level[k] >= level[k + 1]
            && level[k] > DRONE_PEAK_OVER_FLOOR * floor
        {
            let (a, b, c) = (level[k - 1].ln(), level[k].ln(), level[k + 1].ln());
            let denom = a - 2.0 * b + c;
            let shift = if denom.abs() > 1e-12 {
                (0.5 * (a - c) / denom).clamp(-0.5, 0.5)
            } else {
                0.0
            };
            peaks.push(((k as f64 + shift) * bin_hz, (level[k] / floor).ln()));
        }
    }
    Ok(peaks)
}

/// What a clip says about its tonic: folded (octave-free) pitch-class
/// histograms of the melody and of the drone, in [`PC_BINS`] 10-cent bins
/// counted from [`REF_HZ`], and what places the tonic's octave.
#[derive(Debug, Clone)]
pub struct TonicEvidence {
    /// Combined, smoothed histogram (the drone's, when there is one, with
    /// the melody's at 0.3 weight; the melody's alone otherwise).
    combined: Vec<f64>,
    /// Whether a drone was heard.
    has_drone: bool,
    /// The stationary spectrum's peaks (Hz, strength).
    peaks: Vec<(f64, f64)>,
    /// Voiced frames' f0, Hz.
    voiced_hz: Vec<f64>,
}

impl TonicEvidence {
    /// Gathers the evidence from mono `samples` at `sample_rate_hz` and
    /// their pitch track.
    pub fn gather(samples: &[f32], sample_rate_hz: u32, track: &PitchTrack) -> Result<Self> {
        let voiced_hz: Vec<f64> = track
            .f0_hz
            .iter()
            .zip(&track.voiced)
            .filter(|(f, v)| **v && **f > 0.0)
            .map(|(f, _)| *f as f64)
            .collect();
        let mut melody = vec![0.0f64; PC_BINS];
        for f in &voiced_hz {
            melody[pc_bin(*f)] += 1.0;
        }
        let peaks = stationary_peaks(samples, sample_rate_hz as f64)?;
        let mut accomp = vec![0.0f64; PC_BINS];
        for (hz, w) in &peaks {
            accomp[pc_bin(*hz)] += w;
        }
        // A clear drone decides and the melody breaks ties; a faint one
        // (a few weak peaks) counts in proportion to its strength.
        let strength: f64 = accomp.iter().sum();
        let has_drone = strength > MIN_DRONE_STRENGTH;
        normalise(&mut melody);
        normalise(&mut accomp);
        if has_drone {
            melody.iter_mut().for_each(|v| *v *= 0.3);
        } else {
            let share = strength / MIN_DRONE_STRENGTH;
            accomp.iter_mut().for_each(|v| *v *= share);
        }
        if melody.iter().all(|v| *v == 0.0) && accomp.iter().all(|v| *v == 0.0) {
            return Err(Error::InvalidAudio {
                context: "tonic estimation".into(),
                reason: "no pitched content (no voiced frames, no spectral peaks)".into(),
            });
        }
        let h: Vec<f64> = melody.iter().zip(&accomp).map(|(m, a)| m + a).collect();
        Ok(TonicEvidence {
            combined: smooth_circular(&h, 1.5),
            has_drone,
            peaks,
            voiced_hz,
        })
    }

    /// Whether a drone was heard.
    pub fn has_drone(&self) -> bool {
        self.has_drone
    }

    /// How well each pitch-class bin (bin `b` is `REF_HZ * 2^(b / 120)`,
    /// folded) fits as Sa: a Sa-Pa-Ma template on the combined histogram
    /// (Sa 1, Pa 0.5, Ma 0.25).
    pub fn scores(&self) -> Vec<f64> {
        let h = &self.combined;
        (0..PC_BINS)
            .map(|c| h[c] + 0.5 * h[(c + 70) % PC_BINS] + 0.25 * h[(c + 50) % PC_BINS])
            .collect()
    }

    /// The tonic in `range_hz` whose pitch class is bin `bin`: refined
    /// within the bin from the melody's frames near it, its octave placed
    /// by the drone's lowest Sa component (the low Sa string, an octave
    /// below the tonic) or, without a drone, by the melody's median lying
    /// about a fifth above Sa.
    pub fn tonic_in_bin(&self, bin: usize, range_hz: (f64, f64)) -> Result<f64> {
        let (lo, hi) = range_hz;
        let base_cents = (bin % PC_BINS) as f64 * 10.0;
        let near: Vec<f64> = self
            .voiced_hz
            .iter()
            .map(|f| 1200.0 * (f / REF_HZ).log2())
            .map(|c| {
                let d = (c - base_cents).rem_euclid(1200.0);
                if d > 600.0 {
                    d - 1200.0
                } else {
                    d
                }
            })
            .filter(|d| d.abs() <= 15.0)
            .collect();
        let offset = if near.len() >= 10 {
            near.iter().sum::<f64>() / near.len() as f64
        } else {
            0.0
        };
        let pc_hz = REF_HZ * ((base_cents + offset) / 1200.0).exp2();
        let low_sa = self
            .peaks
            .iter()
            .filter(|(hz, _)| {
                let d = (1200.0 * (hz / pc_hz).log2()).rem_euclid(1200.0);
                d.min(1200.0 - d) <= 30.0
            })
            .map(|(hz, _)| *hz)
            .fold(f64::INFINITY, f64::min);
        let mut sorted = self.voiced_hz.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let median = sorted.get(sorted.len() / 2).copied();
        let cost = |t: f64| {
            if self.has_drone && low_sa.is_finite() {
                ((2.0 * low_sa / t).log2()).abs()
            } else {
                match median {
                    Some(m) => ((m / t).log2() - 0.58).abs(),
                    None => (t / (lo * hi).sqrt()).log2().abs(),
                }
            }
        };
        (-4..=4)
            .map(|k| pc_hz * 2f64.powi(k))
            .filter(|t| *t >= lo * 0.985 && *t <= hi * 1.015)
            .min_by(|a, b| cost(*a).total_cmp(&cost(*b)))
            .ok_or_else(|| Error::param("range_hz", "no octave of the tonic falls in the range"))
    }
}

/// The pitch-class bin (10 cents, counted from [`REF_HZ`]) of `hz`.
pub fn pitch_class_bin(hz: f64) -> usize {
    pc_bin(hz)
}

/// Checks that a tonic search range spans an octave.
fn check_range(range_hz: (f64, f64)) -> Result<()> {
    let (lo, hi) = range_hz;
    if !(lo > 0.0 && hi >= 2.0 * lo * 0.99) {
        return Err(Error::param(
            "range_hz",
            format!("{lo}-{hi} Hz must span an octave"),
        ));
    }
    Ok(())
}

/// Estimates the tonic from mono `samples` at `sample_rate_hz` and their
/// pitch track, searching `range_hz` (100-260 Hz is typical).
pub fn estimate_tonic(
    samples: &[f32],
    sample_rate_hz: u32,
    track: &PitchTrack,
    range_hz: (f64, f64),
) -> Result<TonicEstimate> {
    check_range(range_hz)?;
    let evidence = TonicEvidence::gather(samples, sample_rate_hz, track)?;
    let mut scored: Vec<(f64, usize)> = evidence
        .scores()
        .into_iter()
        .enumerate()
        .map(|(c, s)| (s, c))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let best = scored[0].1;
    // Runner-up: the best candidate at least 50 cents away.
    let runner = scored
        .iter()
        .find(|(_, c)| {
            let d = best.abs_diff(*c);
            d.min(PC_BINS - d) >= 5
        })
        .map_or(1e-12, |s| s.0.max(1e-12));
    Ok(TonicEstimate {
        tonic_hz: evidence.tonic_in_bin(best, range_hz)?,
        confidence: scored[0].0 / runner,
    })
}

/// The tonic to analyse `samples` with: `given` when present (it must be
/// a positive frequency), otherwise estimated in `range_hz` from a fresh
/// pitch track.
pub fn resolve_tonic(
    samples: &[f32],
    sample_rate_hz: u32,
    given: Option<f64>,
    range_hz: (f64, f64),
) -> Result<f64> {
    match given {
        Some(t) if t.is_finite() && t > 0.0 => Ok(t),
        Some(t) => Err(Error::param("tonic_hz", format!("{t} is not a frequency"))),
        None => {
            let track = super::pitch::pyin(samples, sample_rate_hz, &Default::default())?;
            Ok(estimate_tonic(samples, sample_rate_hz, &track, range_hz)?.tonic_hz)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_and_smoothing() {
        assert_eq!(pc_bin(55.0), 0);
        assert_eq!(pc_bin(110.0), 0);
        assert_eq!(pc_bin(55.0 * 1.5), 70);
        let mut h = vec![0.0; PC_BINS];
        h[0] = 1.0;
        let s = smooth_circular(&h, 1.5);
        assert!(s[119] > 0.0 && s[1] > 0.0 && (s[119] - s[1]).abs() < 1e-12);
    }
}
