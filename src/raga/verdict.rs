//! Whether a clip holds a raga to name at all. A classifier always ranks
//! its ragas, even for noise, a drum solo or one held note; the verdict
//! says when its ranking means nothing, from the pitch track and the
//! scores, with the thresholds below.

use serde::Serialize;

use super::pitch::PitchTrack;

/// A frame counts as voiced when pYIN's Viterbi path voices it and its
/// voicing probability is at least this. (The path alone voices most
/// frames of white noise, at probabilities near 0.01; a voice over a drone
/// or a mridangam stroke reaches 0.05-0.5, a solo voice or instrument more.)
pub const VOICED_PROB: f32 = 0.05;

/// Below this share of voiced frames a clip has no pitched content:
/// silence, noise, untuned percussion. The bundled recordings are voiced
/// for 16% (a vocal phrase over a drone) to 100% (a held violin note),
/// rendered clips for 58-100%, white noise and noise clicks for none.
pub const MIN_VOICED_SHARE: f64 = 0.1;

/// A semitone class counts as used when it holds at least this share of
/// the voiced frames.
pub const PITCH_CLASS_SHARE: f64 = 0.05;

/// Fewer used semitone classes than this is no melody (one held note, a
/// drone, a two-note figure): no raga can be told from it.
pub const MIN_PITCH_CLASSES: usize = 3;

/// Below this ratio of the best score to the runner-up the ranking is a
/// guess between them.
pub const MIN_TOP_RATIO: f64 = 1.5;

/// The verdict on a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Melody, and a ranking with a clear leader.
    Raga,
    /// Melody, but the best raga barely leads the next.
    LowConfidence,
    /// Pitched, but fewer than [`MIN_PITCH_CLASSES`] semitone classes.
    NoMelody,
    /// Voiced for less than [`MIN_VOICED_SHARE`] of the clip.
    NoPitchedContent,
}

impl Verdict {
    /// A line for people.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Raga => "a raga",
            Verdict::LowConfidence => "low confidence: the best raga barely leads the next",
            Verdict::NoMelody => "no melody: one or two pitches, no raga to tell",
            Verdict::NoPitchedContent => "no pitched content (silence, noise or percussion)",
        }
    }
}

/// What the pitch track says about a clip.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PitchedContent {
    /// Share of frames voiced (see [`VOICED_PROB`]).
    pub voiced_share: f64,
    /// Semitone classes (absolute, tonic-free) holding at least
    /// [`PITCH_CLASS_SHARE`] of the voiced frames.
    pub pitch_classes: usize,
}

impl PitchedContent {
    /// Measures `track`.
    pub fn of(track: &PitchTrack) -> Self {
        let mut classes = [0usize; 12];
        let mut voiced = 0usize;
        let frames = track
            .f0_hz
            .iter()
            .zip(&track.voiced)
            .zip(&track.voiced_prob);
        for ((&f, &v), &prob) in frames {
            if v && f > 0.0 && prob >= VOICED_PROB {
                voiced += 1;
                let midi = 69.0 + 12.0 * (f as f64 / 440.0).log2();
                classes[(midi.round() as i64).rem_euclid(12) as usize] += 1;
            }
        }
        let frames = track.f0_hz.len().max(1);
        let used = classes
            .iter()
            .filter(|&&n| voiced > 0 && n as f64 >= PITCH_CLASS_SHARE * voiced as f64)
            .count();
        PitchedContent {
            voiced_share: voiced as f64 / frames as f64,
            pitch_classes: used,
        }
    }
}

/// The verdict from the pitched content (when measured) and the ranking
/// (best first).
pub fn judge(pitched: Option<&PitchedContent>, ranked: &[(String, f64)]) -> Verdict {
    if let Some(p) = pitched {
        if p.voiced_share < MIN_VOICED_SHARE {
            return Verdict::NoPitchedContent;
        }
        if p.pitch_classes < MIN_PITCH_CLASSES {
            return Verdict::NoMelody;
        }
    }
    match ranked {
        [(_, best), (_, next), ..] if *best < MIN_TOP_RATIO * next => Verdict::LowConfidence,
        _ => Verdict::Raga,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(f0: &[f32]) -> PitchTrack {
        PitchTrack {
            hop_s: 0.01,
            f0_hz: f0.to_vec(),
            voiced: f0.iter().map(|&f| f > 0.0).collect(),
            voiced_prob: vec![0.9; f0.len()],
        }
    }

    fn ranked(a: f64, b: f64) -> Vec<(String, f64)> {
        vec![("Kalyani".into(), a), ("Todi".into(), b)]
    }

    #[test]
    fn silence_noise_and_one_note_are_not_ragas() {
        let silent = PitchedContent::of(&track(&[0.0; 100]));
        assert_eq!(silent.voiced_share, 0.0);
        assert_eq!(
            judge(Some(&silent), &ranked(0.9, 0.01)),
            Verdict::NoPitchedContent
        );
        let mut sparse = vec![0.0f32; 100];
        sparse[..9].fill(220.0);
        let sparse = PitchedContent::of(&track(&sparse));
        assert_eq!(
            judge(Some(&sparse), &ranked(0.9, 0.01)),
            Verdict::NoPitchedContent
        );
        // noise: the path voices it, at probabilities near 0.01
        let mut noise = track(&[180.0; 100]);
        noise.voiced_prob.fill(0.01);
        assert_eq!(PitchedContent::of(&noise).voiced_share, 0.0);
        let noise = PitchedContent::of(&noise);
        assert_eq!(
            judge(Some(&noise), &ranked(0.9, 0.01)),
            Verdict::NoPitchedContent
        );
        let sine = PitchedContent::of(&track(&[220.0; 100]));
        assert_eq!((sine.voiced_share, sine.pitch_classes), (1.0, 1));
        assert_eq!(judge(Some(&sine), &ranked(0.9, 0.01)), Verdict::NoMelody);
    }

    #[test]
    fn melodies_get_a_raga_or_low_confidence() {
        // Sa Ri Ga Pa Da of Mohanam on 220 Hz, 20 frames each
        let notes: Vec<f32> = [0, 2, 4, 7, 9]
            .iter()
            .flat_map(|&s| [220.0 * 2f32.powf(s as f32 / 12.0); 20])
            .collect();
        let p = PitchedContent::of(&track(&notes));
        assert_eq!(p.pitch_classes, 5);
        assert_eq!(judge(Some(&p), &ranked(0.6, 0.1)), Verdict::Raga);
        assert_eq!(judge(Some(&p), &ranked(0.3, 0.25)), Verdict::LowConfidence);
        // without a pitch track only the scores speak
        assert_eq!(judge(None, &ranked(0.3, 0.25)), Verdict::LowConfidence);
        assert_eq!(judge(None, &ranked(0.6, 0.1)), Verdict::Raga);
    }
}
