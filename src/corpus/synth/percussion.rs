//! Mridangam-like percussion on the tala's beat grid: a bass stroke (thom)
//! on each anga's first beat, a tonal right-head stroke (nam, tuned to the
//! tonic) on the other beats, light strokes (ta) on some half beats.
//! Synthetic strokes, or recorded ones from a [`StrokeKit`].

pub use super::stroke_kit::Stroke;
use super::stroke_kit::StrokeKit;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::captions::Tala;

/// One percussion onset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Onset {
    /// Time in seconds.
    pub time_s: f64,
    /// Beat position in the cycle (0-based; .5 for half beats).
    pub beat: f64,
    /// Stroke kind.
    pub stroke: Stroke,
}

/// Places strokes for `duration_s` seconds of `tala` at `bpm`, the first
/// beat (samam) at `start_s`.
pub fn pattern(
    tala: &Tala,
    bpm: f64,
    start_s: f64,
    duration_s: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<Onset> {
    let beat_s = 60.0 / bpm;
    let accents = tala.anga_starts();
    let mut out = Vec::new();
    let mut i = 0u64;
    loop {
        let time_s = start_s + i as f64 * beat_s;
        if time_s >= duration_s - 0.05 {
            break;
        }
        let beat = (i % tala.beats as u64) as u32;
        let stroke = if accents.contains(&beat) {
            Stroke::Thom
        } else {
            Stroke::Nam
        };
        out.push(Onset {
            time_s,
            beat: beat as f64,
            stroke,
        });
        let half = time_s + beat_s / 2.0;
        if half < duration_s - 0.05 && rng.random_bool(0.5) {
            out.push(Onset {
                time_s: half,
                beat: beat as f64 + 0.5,
                stroke: Stroke::Ta,
            });
        }
        i += 1;
    }
    out
}

/// Loudness of each stroke kind, relative to a thom.
fn stroke_gain(stroke: Stroke) -> f64 {
    match stroke {
        Stroke::Thom => 1.0,
        Stroke::Nam => 0.75,
        Stroke::Ta => 0.45,
    }
}

/// Renders the strokes with recorded ones drawn from `kit` (at its rate,
/// `len` samples).
pub fn render_kit(onsets: &[Onset], kit: &StrokeKit, len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let mut out = vec![0.0f32; len];
    let rate = kit.rate_hz as f64;
    for o in onsets {
        let start = (o.time_s * rate).round() as usize;
        let gain = (0.5 * stroke_gain(o.stroke)) as f32;
        let stroke = kit.draw(o.stroke, rng);
        for (s, v) in out.iter_mut().skip(start).zip(stroke) {
            *s += gain * v;
        }
    }
    out
}

/// Renders the strokes at `rate` Hz; the right head is tuned to `tonic_hz`.
pub fn render_percussion(
    onsets: &[Onset],
    tonic_hz: f64,
    rate: f64,
    len: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    let mut out = vec![0.0f32; len];
    for o in onsets {
        let start = (o.time_s * rate).round() as usize;
        let gain = stroke_gain(o.stroke);
        let (ring_s, bass, partials): (f64, bool, &[(f64, f64)]) = match o.stroke {
            Stroke::Thom => (0.18, true, &[(1.0, 0.6), (2.0, 0.3), (3.0, 0.15)]),
            Stroke::Nam => (
                0.25,
                false,
                &[(1.0, 0.7), (2.0, 0.45), (3.0, 0.3), (4.05, 0.2)],
            ),
            Stroke::Ta => (0.05, false, &[(1.0, 0.4), (2.0, 0.3), (3.02, 0.2)]),
        };
        let end = (start + (ring_s * 6.0 * rate) as usize).min(len);
        let mut noise_env = 1.0f64;
        for (i, s) in out.iter_mut().enumerate().take(end).skip(start) {
            let t = (i - start) as f64 / rate;
            let env = (-t / ring_s).exp();
            let mut v = 0.0;
            for (ratio, amp) in partials {
                v += amp * (std::f64::consts::TAU * tonic_hz * ratio * t).sin();
            }
            if bass {
                // Bass head: pitch falling from 130 to 75 Hz (the phase is
                // the integral of 75 + 55 exp(-t / 0.05)).
                let ph =
                    std::f64::consts::TAU * (75.0 * t + 55.0 * 0.05 * (1.0 - (-t / 0.05).exp()));
                v += 1.2 * (-t / 0.3).exp() * ph.sin();
            }
            // Stroke click: a few ms of noise.
            noise_env *= (-1.0 / (0.004 * rate)).exp();
            v = v * env + 0.8 * noise_env * rng.random_range(-1.0..1.0);
            *s += (gain * v * 0.5) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captions::Vocabulary;
    use rand::SeedableRng;

    #[test]
    fn adi_accents_fall_on_anga_starts() {
        let adi = Vocabulary::builtin().tala("Adi").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let p = pattern(adi, 120.0, 0.1, 8.0, &mut rng);
        let thoms: Vec<f64> = p
            .iter()
            .filter(|o| o.stroke == Stroke::Thom)
            .map(|o| o.beat)
            .collect();
        assert!(
            thoms.iter().all(|b| [0.0, 4.0, 6.0].contains(b)),
            "{thoms:?}"
        );
        for o in &p {
            let grid = (o.time_s - 0.1) / 0.25;
            assert!(
                (grid - grid.round()).abs() < 1e-9,
                "onset off the half-beat grid"
            );
        }
    }
}
