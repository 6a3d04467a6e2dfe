//! A raga scorer built from music theory alone, so that it hears real
//! singing as well as the renderer: nothing in it is fitted to audio.
//!
//! The pitch track becomes two things, both octave-free and counted from a
//! fixed reference (the tonic is not assumed): a pitch-class distribution
//! (10-cent bins, stable frames weighted up) and the moves between
//! consecutive held notes, each up or down. For every candidate tonic
//! (120 pitch-class bins) and raga the score adds
//!
//! - the PCD's log-likelihood under the raga's template: bumps on its
//!   swaras (Sa and Pa heavier, anya swaras lighter) over a floor;
//! - the moves' mean log-likelihood under the raga's grammar, a Markov
//!   chain over swaras mixing two readings of the arohana and avarohana:
//!   their written steps, vakra turns included, and a walk along them
//!   (going up, to a swara above in the arohana, going down to one below
//!   in the avarohana, the nearest most often). This is what tells
//!   Bilahari from Shankarabharanam, and Sahana from Harikambhoji;
//! - the tonic evidence (the drone's Sa-Pa-Ma fit) for that tonic;
//! - a small penalty for the melakartas that are rarely sung.
//!
//! A raga's score is its best tonic's; the ranking is a softmax over ragas.
//! With the tonic given, only tonics within 30 cents of it are tried.

use serde::{Deserialize, Serialize};

use super::features::smooth_circular;
use super::melody::Melody;
use super::tonic::{pitch_class_bin, PC_BINS};
use crate::captions::{Raga, Vocabulary};
use crate::error::{Error, Result};

/// `kind` in a grammar scorer's config.json.
pub const GRAMMAR_KIND: &str = "raga-grammar";

/// A grammar scorer's settings (its whole model: config.json). Fields
/// left out take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrammarConfig {
    /// Always [`GRAMMAR_KIND`].
    pub kind: String,
    /// Vocabulary ragas it names; empty means every raga of the built-in
    /// vocabulary.
    pub ragas: Vec<String>,
    /// Tonic search range when none is given, Hz.
    pub tonic_range_hz: (f64, f64),
    /// Width of a swara's bump in the template, cents.
    pub swara_sigma_cents: f64,
    /// Template weight of Sa (other scale swaras weigh 1).
    pub sa_weight: f64,
    /// Template weight of Pa, where the raga has it.
    pub pa_weight: f64,
    /// Template weight of an anya swara (used only in phrases).
    pub anya_weight: f64,
    /// Share of the template spread evenly over the octave.
    pub floor_share: f64,
    /// Weight of a frame inside a stable note against a moving one.
    pub stable_weight: f64,
    /// Weight of the moves' mean log-likelihood in the score.
    pub move_weight: f64,
    /// Share of moves that may ignore the raga's grammar (spread evenly
    /// over every swara and direction).
    pub move_slip: f64,
    /// How fast a move's probability falls with the scale steps it skips
    /// (the next swara weighs 1, the one after `exp(-step_decay)`, ...).
    pub step_decay: f64,
    /// Share of a swara's moves given by the written arohana and
    /// avarohana steps (the rest by the walk along them).
    pub phrase_share: f64,
    /// Score taken off the melakartas not marked `concert` in the
    /// vocabulary (rarely sung).
    pub rare_mela_penalty: f64,
    /// Weight of the tonic evidence's log-probability in the score.
    pub tonic_weight: f64,
    /// Softmax temperature turning scores into the ranking's shares.
    pub temperature: f64,
}

impl Default for GrammarConfig {
    fn default() -> Self {
        GrammarConfig {
            kind: GRAMMAR_KIND.into(),
            ragas: Vec::new(),
            tonic_range_hz: (100.0, 260.0),
            swara_sigma_cents: 30.0,
            sa_weight: 2.0,
            pa_weight: 1.5,
            anya_weight: 0.25,
            floor_share: 0.1,
            stable_weight: 3.0,
            move_weight: 0.5,
            move_slip: 0.3,
            step_decay: 2.0,
            phrase_share: 0.7,
            rare_mela_penalty: 0.1,
            tonic_weight: 0.3,
            temperature: 0.05,
        }
    }
}

/// One raga as the scorer sees it.
#[derive(Debug, Clone)]
struct RagaGrammar {
    name: String,
    /// Log of the template over [`PC_BINS`] bins above Sa.
    log_template: Vec<f64>,
    /// Log-probability of moving up from swara `a` to `b` (semitones,
    /// `up[a][b]`), slips included.
    up: [[f64; 12]; 12],
    /// The same for moving down.
    down: [[f64; 12]; 12],
    /// Score offset (minus the rare-mela penalty where it applies).
    offset: f64,
}

/// Move probabilities of a scale walked in one direction: from each swara
/// of `scale`, to every other swara of it, by how many scale steps away it
/// lies going `up` (or down), `exp(-decay * (steps - 1))`, normalised;
/// rows of swaras outside the scale are zero.
fn walk(scale: &[bool; 12], up: bool, decay: f64) -> [[f64; 12]; 12] {
    let mut m = [[0.0f64; 12]; 12];
    for a in (0..12).filter(|&a| scale[a]) {
        let mut steps = 0;
        for d in 1..12 {
            let b = if up { (a + d) % 12 } else { (a + 12 - d) % 12 };
            if scale[b] {
                m[a][b] = (-decay * steps as f64).exp();
                steps += 1;
            }
        }
        let total: f64 = m[a].iter().sum();
        if total > 0.0 {
            m[a].iter_mut().for_each(|v| *v /= total);
        }
    }
    m
}

impl RagaGrammar {
    fn new(raga: &Raga, c: &GrammarConfig) -> Self {
        let mut ascending = [false; 12];
        let mut descending = [false; 12];
        for n in &raga.arohana {
            ascending[n.swara.semitones() as usize % 12] = true;
        }
        for n in &raga.avarohana {
            descending[n.swara.semitones() as usize % 12] = true;
        }
        let mut h = vec![0.0f64; PC_BINS];
        for &p in &raga.pitch_classes {
            let p = p as usize % 12;
            let w = if p == 0 {
                c.sa_weight
            } else if p == 7 {
                c.pa_weight
            } else if ascending[p] || descending[p] {
                1.0
            } else {
                c.anya_weight
            };
            h[p * PC_BINS / 12] += w;
        }
        let bins_per_cent = PC_BINS as f64 / 1200.0;
        let h = smooth_circular(&h, c.swara_sigma_cents * bins_per_cent);
        let total: f64 = h.iter().sum();
        let floor = c.floor_share / PC_BINS as f64;
        let log_template = h
            .iter()
            .map(|v| ((1.0 - c.floor_share) * v / total + floor).ln())
            .collect();
        let (steps_up, steps_down) = written_steps(raga);
        let up = mix_rows(
            walk(&ascending, true, c.step_decay),
            steps_up,
            c.phrase_share,
        );
        let down = mix_rows(
            walk(&descending, false, c.step_decay),
            steps_down,
            c.phrase_share,
        );
        // Half the moves go up, half down; a slip lands anywhere.
        let log_moves = |m: [[f64; 12]; 12]| {
            m.map(|row| row.map(|p| (0.5 * (1.0 - c.move_slip) * p + c.move_slip / 24.0).ln()))
        };
        RagaGrammar {
            name: raga.name.clone(),
            log_template,
            up: log_moves(up),
            down: log_moves(down),
            offset: if raga.concert {
                0.0
            } else {
                -c.rare_mela_penalty
            },
        }
    }
}

/// The steps the arohana and avarohana are written with, as move
/// probabilities: each consecutive pair of notes is a move up or down
/// (vakra turns give moves against the phrase's direction); rows are
/// normalised, rows of swaras no step leaves are zero.
fn written_steps(raga: &Raga) -> ([[f64; 12]; 12], [[f64; 12]; 12]) {
    let mut up = [[0.0f64; 12]; 12];
    let mut down = [[0.0f64; 12]; 12];
    for phrase in [&raga.arohana, &raga.avarohana] {
        for w in phrase.windows(2) {
            let (a, b) = (w[0].semitones(), w[1].semitones());
            let (pa, pb) = (a.rem_euclid(12) as usize, b.rem_euclid(12) as usize);
            if b > a {
                up[pa][pb] += 1.0;
            } else if b < a {
                down[pa][pb] += 1.0;
            }
        }
    }
    for m in [&mut up, &mut down] {
        for row in m.iter_mut() {
            let total: f64 = row.iter().sum();
            if total > 0.0 {
                row.iter_mut().for_each(|v| *v /= total);
            }
        }
    }
    (up, down)
}

/// Row by row, `share` of `steps` and the rest of `walk`; a row only one
/// of them has is taken whole.
fn mix_rows(walk: [[f64; 12]; 12], steps: [[f64; 12]; 12], share: f64) -> [[f64; 12]; 12] {
    let mut out = walk;
    for (o, s) in out.iter_mut().zip(&steps) {
        let has = |r: &[f64; 12]| r.iter().any(|v| *v > 0.0);
        if has(s) {
            let w = if has(o) { share } else { 1.0 };
            for (x, y) in o.iter_mut().zip(s) {
                *x = (1.0 - w) * *x + w * y;
            }
        }
    }
    out
}

/// The grammar scorer: every raga's template and grammar.
#[derive(Debug, Clone)]
pub struct GrammarModel {
    /// Its settings.
    pub config: GrammarConfig,
    ragas: Vec<RagaGrammar>,
    names: Vec<String>,
}

/// A scorer's verdict on a melody.
#[derive(Debug, Clone, PartialEq)]
pub struct GrammarVerdict {
    /// (raga, share), best first; shares sum to 1.
    pub ranked: Vec<(String, f64)>,
    /// The best raga's best tonic, as a pitch-class bin from [`REF_HZ`].
    pub tonic_bin: usize,
}

impl GrammarModel {
    /// A scorer with `config` over `vocab`'s ragas (those `config.ragas`
    /// names, or all of them). `origin` names the config in errors.
    pub fn new(config: GrammarConfig, vocab: &Vocabulary, origin: &str) -> Result<Self> {
        let bad = |field: &str, why: &str| Error::InvalidData {
            file: origin.to_string(),
            reason: format!("field `{field}` {why}"),
        };
        if config.kind != GRAMMAR_KIND {
            return Err(bad(
                "kind",
                &format!("is {:?}, expected {GRAMMAR_KIND:?}", config.kind),
            ));
        }
        let positive = [
            ("swara_sigma_cents", config.swara_sigma_cents),
            ("sa_weight", config.sa_weight),
            ("pa_weight", config.pa_weight),
            ("stable_weight", config.stable_weight),
            ("temperature", config.temperature),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0 && v < 1e6) {
                return Err(bad(field, &format!("is {v}; must be a positive number")));
            }
        }
        for (field, v) in [
            ("anya_weight", config.anya_weight),
            ("move_weight", config.move_weight),
            ("step_decay", config.step_decay),
            ("rare_mela_penalty", config.rare_mela_penalty),
            ("tonic_weight", config.tonic_weight),
        ] {
            if !(v.is_finite() && (0.0..1e6).contains(&v)) {
                return Err(bad(field, &format!("is {v}; must be a number >= 0")));
            }
        }
        for (field, v) in [
            ("floor_share", config.floor_share),
            ("move_slip", config.move_slip),
            ("phrase_share", config.phrase_share),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err(bad(
                    field,
                    &format!("is {v}; must lie strictly between 0 and 1"),
                ));
            }
        }
        let (lo, hi) = config.tonic_range_hz;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && hi >= 2.0 * lo * 0.99 && hi < 2e4) {
            return Err(bad(
                "tonic_range_hz",
                &format!("{lo}-{hi} Hz must span an octave"),
            ));
        }
        let ragas = if config.ragas.is_empty() {
            vocab.ragas.iter().collect::<Vec<_>>()
        } else {
            config
                .ragas
                .iter()
                .map(|n| vocab.raga(n).map_err(|e| bad("ragas", &e.to_string())))
                .collect::<Result<Vec<_>>>()?
        };
        let ragas: Vec<RagaGrammar> = ragas.iter().map(|r| RagaGrammar::new(r, &config)).collect();
        let names = ragas.iter().map(|r| r.name.clone()).collect();
        Ok(GrammarModel {
            config,
            ragas,
            names,
        })
    }

    /// The default scorer over the built-in vocabulary.
    pub fn builtin() -> Result<Self> {
        Self::new(
            GrammarConfig::default(),
            Vocabulary::builtin(),
            "built-in raga-grammar",
        )
    }

    /// Loads `dir/config.json`.
    pub fn load(dir: &std::path::Path) -> Result<Self> {
        let path = dir.join("config.json");
        let bytes = crate::fsutil::read_bytes(&path)?;
        let config: GrammarConfig = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid_data(&path, e.to_string()))?;
        Self::new(config, Vocabulary::builtin(), &path.display().to_string())
    }

    /// The ragas it names, in its order.
    pub fn ragas(&self) -> &[String] {
        &self.names
    }

    /// Scores `melody` over the tonic bins `tonics`, each with the
    /// log-probability the tonic evidence gives it.
    pub fn score(&self, melody: &Melody, tonics: &[(usize, f64)]) -> GrammarVerdict {
        let c = &self.config;
        let mut best: Vec<(f64, usize)> = Vec::with_capacity(self.ragas.len());
        for r in &self.ragas {
            let mut top = (f64::NEG_INFINITY, 0usize);
            for &(tonic, log_prior) in tonics {
                let pcd_ll: f64 = melody
                    .pcd
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| **p > 0.0)
                    .map(|(b, p)| p * r.log_template[(b + PC_BINS - tonic) % PC_BINS])
                    .sum();
                let tonic_cents = tonic as f64 * 1200.0 / PC_BINS as f64;
                let semitone = |cents: f64| {
                    (((cents - tonic_cents) / 100.0).round() as i64).rem_euclid(12) as usize
                };
                let move_ll = if melody.moves.is_empty() {
                    0.0
                } else {
                    let sum: f64 = melody
                        .moves
                        .iter()
                        .map(|&(a, b)| {
                            let (sa, sb) = (semitone(a), semitone(b));
                            if b > a {
                                r.up[sa][sb]
                            } else {
                                r.down[sa][sb]
                            }
                        })
                        .sum();
                    sum / melody.moves.len() as f64
                };
                let s = pcd_ll + c.move_weight * move_ll + c.tonic_weight * log_prior + r.offset;
                if s > top.0 {
                    top = (s, tonic);
                }
            }
            best.push(top);
        }
        let mut order: Vec<usize> = (0..self.ragas.len()).collect();
        order.sort_by(|&a, &b| best[b].0.total_cmp(&best[a].0));
        let max = best[order[0]].0;
        let weights: Vec<f64> = order
            .iter()
            .map(|&i| ((best[i].0 - max) / c.temperature).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        GrammarVerdict {
            ranked: order
                .iter()
                .zip(&weights)
                .map(|(&i, w)| (self.ragas[i].name.clone(), w / total))
                .collect(),
            tonic_bin: best[order[0]].1,
        }
    }

    /// Tonic candidates for a given tonic: its bin and the bins within 30
    /// cents, all equally likely.
    pub fn tonics_near(tonic_hz: f64) -> Vec<(usize, f64)> {
        let centre = pitch_class_bin(tonic_hz);
        (-3i64..=3)
            .map(|d| ((centre as i64 + d).rem_euclid(PC_BINS as i64) as usize, 0.0))
            .collect()
    }

    /// Tonic candidates from evidence scores (one per bin, as
    /// [`super::tonic::TonicEvidence::scores`] gives them): every bin,
    /// with the log of its share of the total (floored at 1% of the mean).
    pub fn tonics_from_scores(scores: &[f64]) -> Vec<(usize, f64)> {
        let total: f64 = scores.iter().map(|s| s.max(0.0)).sum();
        let floor = 0.01 * total / scores.len().max(1) as f64;
        scores
            .iter()
            .enumerate()
            .map(|(b, s)| {
                (
                    b,
                    ((s.max(0.0) + floor) / (total + floor * scores.len() as f64))
                        .max(1e-300)
                        .ln(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raga::pitch::PitchTrack;

    /// A track that holds each of `notes` (semitones above `tonic_hz`) for
    /// 0.3 s, at a 10 ms hop.
    fn held(tonic_hz: f64, notes: &[i32]) -> PitchTrack {
        let mut f0 = Vec::new();
        for n in notes {
            let hz = tonic_hz * (*n as f64 / 12.0).exp2();
            f0.extend(std::iter::repeat_n(hz as f32, 30));
        }
        let n = f0.len();
        PitchTrack {
            hop_s: 0.01,
            f0_hz: f0,
            voiced: vec![true; n],
            voiced_prob: vec![1.0; n],
        }
    }

    fn rank_of(v: &GrammarVerdict, name: &str) -> usize {
        v.ranked.iter().position(|(r, _)| r == name).unwrap()
    }

    #[test]
    fn a_scale_sung_at_a_given_tonic_ranks_its_raga_first() {
        let m = GrammarModel::builtin().unwrap();
        // Mohanam up and down, twice: S R2 G3 P D2 S'.
        let phrase = [0, 2, 4, 7, 9, 12, 9, 7, 4, 2, 0];
        let notes: Vec<i32> = phrase.iter().chain(&phrase).copied().collect();
        let melody = Melody::of(&held(146.8, &notes), 3.0);
        let v = m.score(&melody, &GrammarModel::tonics_near(146.8));
        assert_eq!(v.ranked[0].0, "Mohanam", "{:?}", &v.ranked[..3]);
        let total: f64 = v.ranked.iter().map(|(_, s)| s).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_direction_of_moves_separates_ragas_of_one_scale() {
        let m = GrammarModel::builtin().unwrap();
        // Bilahari: up S R2 G3 P D2 S', down S' N3 D2 P M1 G3 R2 S; the
        // same seven swaras sung straight up and down are Shankarabharanam.
        let bilahari = [0, 2, 4, 7, 9, 12, 11, 9, 7, 5, 4, 2, 0];
        let straight = [0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2, 0];
        let tonic = 130.8;
        let vb = m.score(
            &Melody::of(&held(tonic, &bilahari), 3.0),
            &GrammarModel::tonics_near(tonic),
        );
        let vs = m.score(
            &Melody::of(&held(tonic, &straight), 3.0),
            &GrammarModel::tonics_near(tonic),
        );
        assert!(
            rank_of(&vb, "Bilahari") < rank_of(&vb, "Shankarabharanam"),
            "{:?}",
            &vb.ranked[..5]
        );
        assert!(
            rank_of(&vs, "Shankarabharanam") < rank_of(&vs, "Bilahari"),
            "{:?}",
            &vs.ranked[..5]
        );
    }

    #[test]
    fn the_tonic_evidence_picks_among_rotations() {
        let m = GrammarModel::builtin().unwrap();
        // Mohanam's swaras from 200 Hz are Madhyamavati's from its R2 and
        // Hindolam's from its G3 (the same five pitch classes): the tonic
        // evidence decides which is meant.
        let notes = [0, 2, 4, 7, 9, 12, 9, 7, 4, 2, 0];
        let melody = Melody::of(&held(200.0, &notes), 3.0);
        let mut scores = vec![0.01; PC_BINS];
        scores[pitch_class_bin(200.0 * (4.0f64 / 12.0).exp2())] = 1.0;
        let v = m.score(&melody, &GrammarModel::tonics_from_scores(&scores));
        assert_eq!(v.ranked[0].0, "Hindolam", "{:?}", &v.ranked[..3]);
        assert_eq!(v.tonic_bin, pitch_class_bin(200.0 * (4.0f64 / 12.0).exp2()));
    }

    #[test]
    fn configs_name_the_field_they_break() {
        let vocab = Vocabulary::builtin();
        let bad = GrammarConfig {
            move_slip: 1.5,
            ..Default::default()
        };
        let e = GrammarModel::new(bad, vocab, "x/config.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x/config.json") && e.contains("move_slip"),
            "{e}"
        );
        let bad = GrammarConfig {
            ragas: vec!["Kalyani".into(), "Nosuchraga".into()],
            ..Default::default()
        };
        let e = GrammarModel::new(bad, vocab, "x/config.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ragas") && e.contains("Nosuchraga"), "{e}");
        let nan = GrammarConfig {
            temperature: f64::NAN,
            ..Default::default()
        };
        assert!(GrammarModel::new(nan, vocab, "x").is_err());
    }
}
