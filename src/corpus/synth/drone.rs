//! Tanpura drone: four strings plucked in turn (Pa or Ma below Sa, Sa, Sa,
//! low Sa), each a bright decaying tone whose upper harmonics swell and
//! fade as the jivari bridge does, tuned in just intonation to the tonic.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The drone's first string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DroneTuning {
    /// Pa (3/2) below Sa: the usual tuning.
    #[serde(rename = "Sa-Pa")]
    SaPa,
    /// Ma (4/3) below Sa: for ragas without Pa.
    #[serde(rename = "Sa-Ma")]
    SaMa,
    /// Ni (15/8) below Sa: for ragas with neither Pa nor M1.
    #[serde(rename = "Sa-Ni")]
    SaNi,
}

impl DroneTuning {
    /// The tuning suited to a raga's pitch classes.
    pub fn for_pitch_classes(pcs: &[u8]) -> DroneTuning {
        if pcs.contains(&7) {
            DroneTuning::SaPa
        } else if pcs.contains(&5) {
            DroneTuning::SaMa
        } else {
            DroneTuning::SaNi
        }
    }

    /// Frequency ratio of the first string to the tonic (mandra octave).
    fn first_string_ratio(self) -> f64 {
        match self {
            DroneTuning::SaPa => 0.75,
            DroneTuning::SaMa => 2.0 / 3.0,
            DroneTuning::SaNi => 15.0 / 16.0,
        }
    }
}

/// Renders `len` samples of drone at `rate` Hz on `tonic_hz`.
pub fn render_drone(
    tuning: DroneTuning,
    tonic_hz: f64,
    rate: f64,
    len: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    let strings = [tuning.first_string_ratio(), 1.0, 1.0, 0.5].map(|r| r * tonic_hz);
    let cycle_s = rng.random_range(2.4..3.2);
    let offsets = [0.0, 0.3, 0.55, 0.8].map(|x| x * cycle_s);
    let mut out = vec![0.0f32; len];
    let duration = len as f64 / rate;
    // Plucks start one cycle before 0 so the clip opens mid-drone.
    let mut cycle_start = -cycle_s;
    while cycle_start < duration {
        for (f, off) in strings.iter().zip(offsets) {
            let onset = cycle_start + off + rng.random_range(-0.02..0.02);
            pluck(&mut out, *f, onset, rate);
        }
        cycle_start += cycle_s;
    }
    out
}

/// Adds one decaying tanpura pluck starting at `onset_s` (may be negative).
fn pluck(out: &mut [f32], f: f64, onset_s: f64, rate: f64) {
    let decay_s = 3.5;
    let start = (onset_s * rate).ceil().max(0.0) as usize;
    let end = (((onset_s + 2.5 * decay_s) * rate) as usize).min(out.len());
    let harmonics = ((8000.0 / f) as usize).min(40);
    let refresh = (rate / 1000.0).round().max(1.0) as usize;
    let mut weights = vec![0.0f64; harmonics];
    for (n, o) in out.iter_mut().enumerate().take(end).skip(start) {
        let t = n as f64 / rate - onset_s;
        if (n - start) % refresh == 0 {
            // The jivari's bright band rises through the harmonics and back.
            let centre = 4.0 + 10.0 * (std::f64::consts::PI * (t / 2.5).min(1.0)).sin();
            for (k, w) in weights.iter_mut().enumerate() {
                let kf = (k + 1) as f64;
                let band = 1.0 / (1.0 + ((kf - centre) / 4.0).powi(2));
                *w = 0.6 / kf + 0.4 * band;
            }
        }
        let env = (-t / decay_s).exp() * (t / 0.01).min(1.0);
        // sin(k phase) by the Chebyshev recurrence.
        let (sin1, cos1) = (std::f64::consts::TAU * f * t).sin_cos();
        let (mut prev, mut cur, mut s) = (0.0f64, sin1, 0.0f64);
        for w in &weights {
            s += w * cur;
            let next = 2.0 * cos1 * cur - prev;
            prev = cur;
            cur = next;
        }
        *o += (env * s * 0.25) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_follows_the_raga() {
        assert_eq!(
            DroneTuning::for_pitch_classes(&[0, 2, 4, 7, 9]),
            DroneTuning::SaPa
        );
        assert_eq!(
            DroneTuning::for_pitch_classes(&[0, 3, 5, 8, 10]),
            DroneTuning::SaMa
        );
        assert_eq!(
            DroneTuning::for_pitch_classes(&[0, 4, 6, 9, 11]),
            DroneTuning::SaNi
        );
    }
}
