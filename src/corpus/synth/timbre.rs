//! Additive synthesis of the melody line in four timbres. Each harmonic's
//! level comes from a spectral envelope (formants for the voice, body
//! resonances for the violin, a steep roll-off for the flute, a plucked
//! decay for the veena); harmonics stay below 12 kHz.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::melody::{NoteEvent, CONTROL_HZ};

/// Synthetic timbres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Timbre {
    /// Sung vowel "aa" (formants 750, 1200, 2600 Hz).
    Voice,
    /// Bowed string: bright 1/k spectrum with body resonances and bow noise.
    Violin,
    /// Strong fundamental, few harmonics, breath noise.
    Flute,
    /// Plucked string: each note is plucked and decays; gamakas bend it.
    Veena,
}

crate::choices!(Timbre, "timbre", [
    Voice => "voice": "sung vowel aa",
    Violin => "violin": "bowed string",
    Flute => "flute": "strong fundamental, few harmonics, breath noise",
    Veena => "veena": "plucked string; gamakas bend it",
]);

/// All timbres.
pub const TIMBRES: [Timbre; 4] = [Timbre::Voice, Timbre::Violin, Timbre::Flute, Timbre::Veena];

impl Timbre {
    /// The instrument name this timbre stands for in captions.
    pub fn instrument(self) -> &'static str {
        match self {
            Timbre::Voice => "voice",
            Timbre::Violin => "violin",
            Timbre::Flute => "flute",
            Timbre::Veena => "veena",
        }
    }

    /// Parses an instrument or timbre name.
    pub fn from_name(name: &str) -> Option<Timbre> {
        TIMBRES
            .iter()
            .copied()
            .find(|t| t.instrument().eq_ignore_ascii_case(name))
    }
}

fn resonance(f: f64, centre: f64, bandwidth: f64) -> f64 {
    let x = (f - centre) / bandwidth;
    1.0 / (1.0 + x * x)
}

/// Relative level of harmonic `k` (1-based) at frequency `f` Hz.
fn harmonic_level(timbre: Timbre, k: usize, f: f64) -> f64 {
    let k = k as f64;
    match timbre {
        Timbre::Voice => {
            let source = k.powf(-1.2);
            let env = 0.25
                + resonance(f, 750.0, 90.0)
                + 0.7 * resonance(f, 1200.0, 110.0)
                + 0.3 * resonance(f, 2600.0, 160.0);
            source * env
        }
        Timbre::Violin => {
            let source = 1.0 / k;
            let env = 0.5 + 0.8 * resonance(f, 280.0, 60.0) + 0.6 * resonance(f, 3000.0, 600.0);
            source * env
        }
        Timbre::Flute => 0.45f64.powf(k - 1.0),
        Timbre::Veena => k.powf(-0.9) * (1.0 + 0.5 * resonance(f, 1800.0, 500.0)),
    }
}

/// One-pole low-pass coefficient for a cutoff in Hz.
fn one_pole(cutoff_hz: f64, rate: f64) -> f64 {
    (-std::f64::consts::TAU * cutoff_hz / rate).exp()
}

/// Renders the melody: `cents` and `loud` are contours at [`CONTROL_HZ`],
/// pitch relative to `tonic_hz`. Returns `len` samples at `rate` Hz.
#[allow(clippy::too_many_arguments)]
pub fn render_melody(
    timbre: Timbre,
    events: &[NoteEvent],
    cents: &[f64],
    loud: &[f64],
    tonic_hz: f64,
    rate: f64,
    len: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    let max_harmonic_hz = 12_000.0f64.min(0.45 * rate);
    let control = |v: &[f64], t: f64| {
        let x = t * CONTROL_HZ;
        let i = (x.floor() as usize).min(v.len() - 2);
        let frac = (x - i as f64).clamp(0.0, 1.0);
        v[i] * (1.0 - frac) + v[i + 1] * frac
    };
    // Plucks: onset times for the veena's decay envelope.
    let plucks: Vec<f64> = events.iter().map(|e| e.start_s).collect();
    let mut next_pluck = 0;
    let mut last_pluck = f64::NEG_INFINITY;
    let mut phase = 0.0f64;
    let mut noise_lp = 0.0f64;
    let noise_coef = one_pole(3000.0, rate);
    let mut out = vec![0.0f32; len];
    // Harmonic levels change slowly: refresh them once per control tick.
    let refresh = (rate / CONTROL_HZ).round().max(1.0) as usize;
    let mut levels: Vec<f64> = Vec::new();
    let noise_level = match timbre {
        Timbre::Flute => 0.06,
        Timbre::Violin => 0.03,
        Timbre::Voice => 0.015,
        Timbre::Veena => 0.0,
    };
    for (i, o) in out.iter_mut().enumerate() {
        let t = i as f64 / rate;
        let f0 = tonic_hz * (control(cents, t) / 1200.0).exp2();
        let a = control(loud, t);
        phase = (phase + std::f64::consts::TAU * f0 / rate).rem_euclid(std::f64::consts::TAU);
        while next_pluck < plucks.len() && plucks[next_pluck] <= t {
            last_pluck = plucks[next_pluck];
            next_pluck += 1;
        }
        if i % refresh == 0 {
            let since_pluck = t - last_pluck;
            let count = (max_harmonic_hz / f0) as usize;
            levels.clear();
            levels.extend((1..=count).map(|k| {
                let level = harmonic_level(timbre, k, k as f64 * f0);
                if timbre == Timbre::Veena {
                    // Higher harmonics die away faster after the pluck.
                    level * (-since_pluck * (1.2 + 0.35 * k as f64)).exp()
                } else {
                    level
                }
            }));
        }
        // sin(k phase) by the Chebyshev recurrence.
        let (sin1, cos1) = phase.sin_cos();
        let (mut prev, mut cur) = (0.0f64, sin1);
        let mut s = 0.0;
        for level in &levels {
            s += level * cur;
            let next = 2.0 * cos1 * cur - prev;
            prev = cur;
            cur = next;
        }
        let white: f64 = rng.random_range(-1.0..1.0);
        noise_lp = noise_coef * noise_lp + (1.0 - noise_coef) * white;
        *o = (a * (s + noise_level * noise_lp * 4.0)) as f32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flute_is_darker_than_violin() {
        let centroid = |t| {
            let num: f64 = (1..20)
                .map(|k| k as f64 * harmonic_level(t, k, 200.0 * k as f64))
                .sum();
            let den: f64 = (1..20)
                .map(|k| harmonic_level(t, k, 200.0 * k as f64))
                .sum();
            num / den
        };
        assert!(centroid(Timbre::Flute) < centroid(Timbre::Voice));
        assert!(centroid(Timbre::Voice) < centroid(Timbre::Violin));
        assert_eq!(Timbre::from_name("Violin"), Some(Timbre::Violin));
    }
}
