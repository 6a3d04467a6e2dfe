//! What the grammar scorer (`super::grammar`) reads from a pitch track:
//! the pitch-class distribution and the moves between held notes, both
//! counted from a fixed reference so that no tonic is assumed.

use super::features::{smooth_circular, stable_frames};
use super::pitch::PitchTrack;
use super::tonic::{pitch_class_bin, PC_BINS, REF_HZ};

/// What the scorer reads from a pitch track: octave-free and counted from
/// [`REF_HZ`], so that no tonic is assumed.
#[derive(Debug, Clone, PartialEq)]
pub struct Melody {
    /// Pitch-class distribution over [`PC_BINS`] bins from `REF_HZ`,
    /// summing to 1 (all zero when nothing is voiced).
    pub pcd: Vec<f64>,
    /// Consecutive held notes as (from, to) cents above `REF_HZ`, not
    /// folded, for notes at least a quarter tone apart.
    pub moves: Vec<(f64, f64)>,
}

/// Fastest pitch change of a held note, cents per second.
const STABLE_CENTS_PER_S: f64 = 600.0;

/// Longest silence between two held notes that still joins them into a
/// move, seconds.
const MAX_GAP_S: f64 = 0.6;

impl Melody {
    /// Reads `track`: stable notes (moving under 600 cents/s for 60 ms or
    /// more) weigh `stable_weight` in the PCD and give the moves, one per
    /// pair of consecutive notes.
    pub fn of(track: &PitchTrack, stable_weight: f64) -> Self {
        let cents: Vec<Option<f64>> = track
            .f0_hz
            .iter()
            .zip(&track.voiced)
            .map(|(f, v)| (*v && *f > 0.0).then(|| 1200.0 * (*f as f64 / REF_HZ).log2()))
            .collect();
        let stable = stable_frames(&cents, track.hop_s, STABLE_CENTS_PER_S, 0.06);
        let mut h = vec![0.0f64; PC_BINS];
        for (c, s) in cents.iter().zip(&stable) {
            if let Some(c) = c {
                let hz = REF_HZ * (c / 1200.0).exp2();
                h[pitch_class_bin(hz)] += if *s { stable_weight } else { 1.0 };
            }
        }
        let h = smooth_circular(&h, 1.0);
        let total: f64 = h.iter().sum();
        let pcd = if total > 0.0 {
            h.iter().map(|v| v / total).collect()
        } else {
            h
        };
        // Held notes: runs of stable frames, each at its median pitch; a
        // jump of a quarter tone or more between two frames starts a new
        // note.
        let joined = |i: usize| match (cents[i - 1], cents[i]) {
            (Some(a), Some(b)) => (a - b).abs() < 50.0,
            _ => false,
        };
        let mut notes: Vec<(usize, usize, f64)> = Vec::new();
        let mut i = 0;
        while i < cents.len() {
            if !stable[i] {
                i += 1;
                continue;
            }
            let start = i;
            i += 1;
            while i < cents.len() && stable[i] && joined(i) {
                i += 1;
            }
            let mut run: Vec<f64> = cents[start..i].iter().flatten().copied().collect();
            run.sort_by(|a, b| a.total_cmp(b));
            notes.push((start, i, run[run.len() / 2]));
        }
        let max_gap = (MAX_GAP_S / track.hop_s).ceil() as usize;
        let moves = notes
            .windows(2)
            .filter(|w| {
                // An octave apart is no move between swaras (and is often
                // the tracker jumping an octave).
                let folded = (w[1].2 - w[0].2).rem_euclid(1200.0);
                w[1].0 - w[0].1 <= max_gap && folded.min(1200.0 - folded) >= 50.0
            })
            .map(|w| (w[0].2, w[1].2))
            .collect();
        Melody { pcd, moves }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_notes_give_moves_and_octave_leaps_do_not() {
        // S R G, then G an octave up, at a 10 ms hop, 0.2 s each.
        let tonic = 150.0f64;
        let mut f0 = Vec::new();
        for n in [0, 2, 4, 16] {
            f0.extend(std::iter::repeat_n(
                (tonic * (n as f64 / 12.0).exp2()) as f32,
                20,
            ));
        }
        let n = f0.len();
        let track = PitchTrack {
            hop_s: 0.01,
            f0_hz: f0,
            voiced: vec![true; n],
            voiced_prob: vec![1.0; n],
        };
        let m = Melody::of(&track, 3.0);
        assert_eq!(m.moves.len(), 2, "{:?}", m.moves);
        assert!(m.moves.iter().all(|(a, b)| b > a));
        assert!((m.moves[0].1 - m.moves[0].0 - 200.0).abs() < 1.0);
        assert!((m.pcd.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // Silence gives an empty reading, not a division by zero.
        let quiet = PitchTrack {
            hop_s: 0.01,
            f0_hz: vec![0.0; 50],
            voiced: vec![false; 50],
            voiced_prob: vec![0.0; 50],
        };
        let m = Melody::of(&quiet, 3.0);
        assert!(m.moves.is_empty() && m.pcd.iter().all(|v| *v == 0.0));
    }
}
