//! Tonic-relative pitch features and raga-adherence measures: stable
//! frames, the 120-bin pitch-class distribution (PCD), the time-delayed
//! melody surface (TDMS), in-scale and illegal-swara rates, Jensen-Shannon
//! distance to raga templates. Definitions: shared reference raga.md.

use serde::Serialize;

/// PCD bins (10 cents each).
pub const PCD_BINS: usize = 120;
/// TDMS bins per axis (7.5 cents each).
pub const TDMS_BINS: usize = 160;

/// Frames of a stable pitch: runs of voiced frames at least `min_s` long
/// whose pitch moves less than `max_slope` cents per second.
pub fn stable_frames(cents: &[Option<f64>], hop_s: f64, max_slope: f64, min_s: f64) -> Vec<bool> {
    let min_frames = (min_s / hop_s).ceil() as usize;
    let step = max_slope * hop_s;
    let mut out = vec![false; cents.len()];
    let mut start = 0;
    for i in 1..=cents.len() {
        let continues = i < cents.len()
            && matches!((cents[i - 1], cents[i]), (Some(a), Some(b)) if (a - b).abs() < step);
        if !continues {
            if cents[start].is_some() && i - start >= min_frames {
                out[start..i].iter_mut().for_each(|s| *s = true);
            }
            start = i;
        }
    }
    out
}

/// Circular Gaussian smoothing of a histogram with `sigma` bins.
pub(crate) fn smooth_circular(h: &[f64], sigma: f64) -> Vec<f64> {
    let n = h.len() as isize;
    let r = (3.0 * sigma).ceil() as isize;
    let w: Vec<f64> = (-r..=r)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    (0..n)
        .map(|i| {
            (-r..=r)
                .zip(&w)
                .map(|(d, w)| h[(i + d).rem_euclid(n) as usize] * w)
                .sum()
        })
        .collect()
}

fn l1(mut h: Vec<f64>) -> Vec<f64> {
    let s: f64 = h.iter().sum();
    if s > 0.0 {
        h.iter_mut().for_each(|v| *v /= s);
    }
    h
}

/// Pitch-class distribution: voiced frames' cents above the tonic folded to
/// one octave, 10-cent bins, smoothed (sigma 1 bin), summing to 1 (all zero
/// when nothing is voiced).
pub fn pcd(cents: &[Option<f64>]) -> Vec<f64> {
    let mut h = vec![0.0; PCD_BINS];
    for c in cents.iter().flatten() {
        h[((c.rem_euclid(1200.0) / 10.0).round() as usize) % PCD_BINS] += 1.0;
    }
    l1(smooth_circular(&h, 1.0))
}

/// Time-delayed melody surface: 2-D histogram of (pitch(t), pitch(t +
/// `delay_s`)), octave-folded, 7.5-cent bins, compressed with exponent
/// 0.25, Gaussian-smoothed (sigma 2 bins), summing to 1. Row-major,
/// `TDMS_BINS x TDMS_BINS`.
pub fn tdms(cents: &[Option<f64>], hop_s: f64, delay_s: f64) -> Vec<f64> {
    let n = TDMS_BINS;
    let lag = (delay_s / hop_s).round() as usize;
    let bin = |c: f64| ((c.rem_euclid(1200.0) / 7.5).floor() as usize) % n;
    let mut h = vec![0.0f64; n * n];
    for i in 0..cents.len().saturating_sub(lag) {
        if let (Some(a), Some(b)) = (cents[i], cents[i + lag]) {
            h[bin(a) * n + bin(b)] += 1.0;
        }
    }
    h.iter_mut().for_each(|v| *v = v.powf(0.25));
    // Separable circular smoothing: rows then columns.
    let sigma = 2.0;
    let mut rows = vec![0.0f64; n * n];
    for r in 0..n {
        let s = smooth_circular(&h[r * n..(r + 1) * n], sigma);
        rows[r * n..(r + 1) * n].copy_from_slice(&s);
    }
    let mut out = vec![0.0f64; n * n];
    for c in 0..n {
        let col: Vec<f64> = (0..n).map(|r| rows[r * n + c]).collect();
        for (r, v) in smooth_circular(&col, sigma).into_iter().enumerate() {
            out[r * n + c] = v;
        }
    }
    l1(out)
}

/// A PCD template for a raga from its pitch classes: Gaussian bumps
/// (sigma 20 cents) on each swara, Sa and Pa weighted 1.5.
pub fn scale_template(pitch_classes: &[u8]) -> Vec<f64> {
    let mut h = vec![0.0; PCD_BINS];
    for &p in pitch_classes {
        let w = if p == 0 || p == 7 { 1.5 } else { 1.0 };
        h[(p as usize * 10) % PCD_BINS] += w;
    }
    l1(smooth_circular(&h, 2.0))
}

/// Jensen-Shannon distance (square root of the base-2 divergence) between
/// two distributions of equal length: 0 identical, 1 disjoint.
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| 0.5 * (a + b)).collect();
    (0.5 * kl(p, &m) + 0.5 * kl(q, &m)).max(0.0).sqrt()
}

/// Scale-membership measures on stable frames.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleMembership {
    /// Stable voiced frames measured.
    pub stable_frames: usize,
    /// Share of them within the tolerance of an allowed swara.
    pub in_scale_ratio: f64,
    /// What a uniformly random pitch would score: |swaras| * 2 * tol / 1200.
    pub chance_level: f64,
    /// `in_scale_ratio - chance_level`.
    pub in_scale_above_chance: f64,
    /// Share within the tolerance of a semitone the raga does not use.
    pub illegal_swara_rate: f64,
}

/// In-scale ratio (chance-corrected) and illegal-swara rate of
/// `cents` (tonic-relative) against `pitch_classes`, on `stable` frames.
pub fn scale_membership(
    cents: &[Option<f64>],
    stable: &[bool],
    pitch_classes: &[u8],
    tolerance_cents: f64,
) -> ScaleMembership {
    let dist = |pc: f64, p: u8| {
        let d = (pc - 100.0 * p as f64).abs();
        d.min(1200.0 - d)
    };
    let (mut n, mut inside, mut illegal) = (0usize, 0usize, 0usize);
    for (c, s) in cents.iter().zip(stable) {
        let (Some(c), true) = (c, s) else { continue };
        n += 1;
        let pc = c.rem_euclid(1200.0);
        if pitch_classes
            .iter()
            .any(|p| dist(pc, *p) <= tolerance_cents)
        {
            inside += 1;
        } else if (0..12u8)
            .filter(|p| !pitch_classes.contains(p))
            .any(|p| dist(pc, p) <= tolerance_cents)
        {
            illegal += 1;
        }
    }
    let ratio = inside as f64 / n.max(1) as f64;
    let chance = (pitch_classes.len() as f64 * 2.0 * tolerance_cents / 1200.0).min(1.0);
    ScaleMembership {
        stable_frames: n,
        in_scale_ratio: ratio,
        chance_level: chance,
        in_scale_above_chance: ratio - chance,
        illegal_swara_rate: illegal as f64 / n.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_frames_need_slow_long_runs() {
        let mut c: Vec<Option<f64>> = (0..20).map(|_| Some(700.0)).collect();
        c.extend((0..20).map(|i| Some(i as f64 * 40.0)));
        c.push(None);
        let s = stable_frames(&c, 0.01, 500.0, 0.08);
        assert!(s[..20].iter().all(|v| *v));
        assert!(s[20..].iter().all(|v| !*v));
    }

    #[test]
    fn pcd_js_and_membership() {
        let cents: Vec<Option<f64>> = (0..300)
            .map(|i| Some([0.0, 200.0, 400.0][i % 3] + 1200.0 * (i % 2) as f64))
            .collect();
        let p = pcd(&cents);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(p[0] > p[10] && p[20] > p[30]);
        assert_eq!(js_distance(&p, &p), 0.0);
        let mohanam = scale_template(&[0, 2, 4, 7, 9]);
        let hindolam = scale_template(&[0, 3, 5, 8, 10]);
        assert!(js_distance(&p, &mohanam) < js_distance(&p, &hindolam));
        let all = vec![true; cents.len()];
        let m = scale_membership(&cents, &all, &[0, 2, 4, 7, 9], 30.0);
        assert_eq!(m.in_scale_ratio, 1.0);
        assert!((m.chance_level - 0.25).abs() < 1e-12);
        let h = scale_membership(&cents, &all, &[0, 3, 5, 8, 10], 30.0);
        assert!((h.illegal_swara_rate - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn tdms_is_a_distribution_on_the_diagonal_for_held_notes() {
        let cents: Vec<Option<f64>> = (0..200).map(|_| Some(400.0)).collect();
        let t = tdms(&cents, 0.01, 0.3);
        assert!((t.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let b = (400.0 / 7.5) as usize;
        let peak = (0..TDMS_BINS * TDMS_BINS)
            .max_by(|&i, &j| t[i].total_cmp(&t[j]))
            .unwrap();
        assert_eq!((peak / TDMS_BINS, peak % TDMS_BINS), (b, b));
    }
}
