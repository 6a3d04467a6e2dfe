//! Does a clip follow a requested raga? Measures given a tonic (shared
//! reference raga.md): chance-corrected in-scale ratio and illegal-swara
//! rate on stable frames, Jensen-Shannon distance of the clip's PCD to the
//! raga's scale template and that raga's rank among all templates, and the
//! tonic drift (estimated vs requested tonic).

use serde::Serialize;

use super::features::{
    js_distance, scale_membership, scale_template, stable_frames, ScaleMembership,
};
use crate::captions::Raga;

/// Tolerance around each swara for scale membership, cents.
pub const TOLERANCE_CENTS: f64 = 30.0;
/// Largest pitch slope of a stable frame, cents per second.
pub const STABLE_SLOPE_CENTS_PER_S: f64 = 500.0;
/// Shortest stable run, seconds.
pub const STABLE_MIN_S: f64 = 0.08;

/// Adherence of one clip to one raga.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adherence {
    /// The requested raga.
    pub raga: String,
    /// Tonic the measures assume, Hz.
    pub tonic_hz: f64,
    /// In-scale and illegal-swara rates on stable frames.
    pub membership: ScaleMembership,
    /// Jensen-Shannon distance of the PCD to the raga's template (0-1).
    pub js_distance: f64,
    /// Rank of the requested raga when all templates are sorted by
    /// distance (1 = nearest; ragas with the same pitch classes share a
    /// template, and a tie counts in the raga's favour).
    pub template_rank: usize,
    /// Number of templates compared.
    pub templates: usize,
    /// |estimated - assumed tonic| in cents, when a tonic was estimated
    /// as well.
    pub tonic_drift_cents: Option<f64>,
}

/// Distance of `pcd` to each raga's template, nearest first.
pub fn template_ranking<'a>(
    pcd: &[f64],
    ragas: impl IntoIterator<Item = &'a Raga>,
) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = ragas
        .into_iter()
        .map(|r| {
            (
                r.name.clone(),
                js_distance(pcd, &scale_template(&r.pitch_classes)),
            )
        })
        .collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// Tonic drift in cents between two frequencies.
pub fn drift_cents(estimated_hz: f64, assumed_hz: f64) -> f64 {
    (1200.0 * (estimated_hz / assumed_hz).log2()).abs()
}

/// Adherence of a clip, from its tonic-relative pitch track `cents`
/// (hop `hop_s`) and PCD, to `raga`, ranked against `all`.
pub fn adherence<'a>(
    raga: &Raga,
    cents: &[Option<f64>],
    hop_s: f64,
    pcd: &[f64],
    tonic_hz: f64,
    estimated_tonic_hz: Option<f64>,
    all: impl IntoIterator<Item = &'a Raga>,
) -> Adherence {
    let stable = stable_frames(cents, hop_s, STABLE_SLOPE_CENTS_PER_S, STABLE_MIN_S);
    let membership = scale_membership(cents, &stable, &raga.pitch_classes, TOLERANCE_CENTS);
    let ranking = template_ranking(pcd, all);
    let own = js_distance(pcd, &scale_template(&raga.pitch_classes));
    let better = ranking.iter().filter(|(_, d)| *d < own - 1e-12).count();
    Adherence {
        raga: raga.name.clone(),
        tonic_hz,
        membership,
        js_distance: own,
        template_rank: better + 1,
        templates: ranking.len(),
        tonic_drift_cents: estimated_tonic_hz.map(|e| drift_cents(e, tonic_hz)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captions::Vocabulary;
    use crate::raga::features::pcd;

    /// A pitch track that holds each of `semitones` for 0.3 s.
    fn held(semitones: &[i32]) -> Vec<Option<f64>> {
        semitones
            .iter()
            .flat_map(|s| std::iter::repeat_n(Some(*s as f64 * 100.0), 30))
            .collect()
    }

    #[test]
    fn the_played_raga_ranks_first_and_a_foreign_one_does_not() {
        let vocab = Vocabulary::builtin();
        let mohanam = vocab.raga("Mohanam").unwrap();
        let todi = vocab.raga("Todi").unwrap();
        let cents = held(&[0, 2, 4, 7, 9, 12, 9, 7, 4, 2, 0, 7]);
        let p = pcd(&cents);
        let a = adherence(mohanam, &cents, 0.01, &p, 150.0, Some(151.0), &vocab.ragas);
        assert_eq!(a.template_rank, 1);
        assert!((a.membership.in_scale_ratio - 1.0).abs() < 1e-12);
        assert!(a.membership.illegal_swara_rate == 0.0);
        assert!((a.tonic_drift_cents.unwrap() - 11.503).abs() < 0.01);
        let b = adherence(todi, &cents, 0.01, &p, 150.0, None, &vocab.ragas);
        assert!(b.template_rank > 10, "{}", b.template_rank);
        assert!(b.js_distance > a.js_distance);
        assert!(b.membership.illegal_swara_rate > 0.3);
        assert!(b.membership.in_scale_above_chance < a.membership.in_scale_above_chance);
        assert_eq!(b.tonic_drift_cents, None);
    }

    #[test]
    fn ranking_is_sorted_and_complete() {
        let vocab = Vocabulary::builtin();
        let p = pcd(&held(&[0, 4, 7]));
        let r = template_ranking(&p, &vocab.ragas);
        assert_eq!(r.len(), vocab.ragas.len());
        assert!(r.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
