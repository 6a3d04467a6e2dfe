//! Random captions with their labels, for teaching a text encoder what
//! captions mean.
//!
//! Each caption names a random subset of a raga, a segment type, a tala,
//! an instrument and a composer, each under any of its spellings (the
//! vocabulary's name or an alias, in lower, title or upper case), phrased
//! either by one of the vocabulary's templates that fits or by joining
//! free phrases ("Kalyani raga", "in adi tala", "on violin") in a random
//! order. The labels say which raga, segment, tala and instrument the
//! caption names, as indices into the vocabulary's lists.

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::templates::CaptionFields;
use super::vocab::{Role, Vocabulary};

/// A caption and what it names (indices into the vocabulary's lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledCaption {
    /// The caption text.
    pub text: String,
    /// Index into `Vocabulary::ragas`.
    pub raga: Option<usize>,
    /// Index into `Vocabulary::segments`.
    pub segment: Option<usize>,
    /// Index into `Vocabulary::talas`.
    pub tala: Option<usize>,
    /// Index into `Vocabulary::instruments`.
    pub instrument: Option<usize>,
}

/// Probabilities of naming each field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerShares {
    /// A raga (else none).
    pub raga: f64,
    /// A segment type.
    pub segment: f64,
    /// A tala, when the segment is metred or not named.
    pub tala: f64,
    /// An instrument.
    pub instrument: f64,
    /// A composer (a distractor: it has no label).
    pub composer: f64,
    /// The empty caption (classifier-free guidance's unconditional input).
    pub empty: f64,
}

impl Default for SamplerShares {
    fn default() -> Self {
        Self {
            raga: 0.9,
            segment: 0.75,
            tala: 0.6,
            instrument: 0.8,
            composer: 0.1,
            empty: 0.05,
        }
    }
}

fn spelling(name: &str, aliases: &[String], rng: &mut ChaCha8Rng) -> String {
    let base = if aliases.is_empty() || rng.random_bool(0.6) {
        name.to_string()
    } else {
        aliases
            .choose(rng)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    };
    match rng.random_range(0..10) {
        0..=3 => base.to_lowercase(),
        4 => base.to_uppercase(),
        _ => base,
    }
}

fn phrase(forms: &[&str], value: &str, rng: &mut ChaCha8Rng) -> String {
    forms
        .choose(rng)
        .copied()
        .unwrap_or("{}")
        .replace("{}", value)
}

/// Draws one labelled caption from `vocab` with `shares`.
pub fn sample_caption(
    vocab: &Vocabulary,
    shares: &SamplerShares,
    rng: &mut ChaCha8Rng,
) -> LabelledCaption {
    let mut out = LabelledCaption {
        text: String::new(),
        raga: None,
        segment: None,
        tala: None,
        instrument: None,
    };
    if rng.random_bool(shares.empty) {
        return out;
    }
    let mut fields = CaptionFields::default();
    if rng.random_bool(shares.raga) {
        let i = rng.random_range(0..vocab.ragas.len());
        let r = &vocab.ragas[i];
        fields.raga = Some(spelling(&r.name, &r.aliases, rng));
        out.raga = Some(i);
    }
    if rng.random_bool(shares.segment) {
        let i = rng.random_range(0..vocab.segments.len());
        let s = &vocab.segments[i];
        fields.segment = Some(spelling(&s.name, &s.aliases, rng));
        out.segment = Some(i);
    }
    let metred = out
        .segment
        .map(|i| vocab.segments[i].metred)
        .unwrap_or(true);
    if metred && rng.random_bool(shares.tala) {
        let i = rng.random_range(0..vocab.talas.len());
        let t = &vocab.talas[i];
        fields.tala = Some(spelling(&t.name, &t.aliases, rng));
        out.tala = Some(i);
    }
    if rng.random_bool(shares.instrument) {
        let candidates: Vec<usize> = (0..vocab.instruments.len())
            .filter(|&i| vocab.instruments[i].role != Role::Drone)
            .collect();
        if let Some(&i) = candidates.choose(rng) {
            let ins = &vocab.instruments[i];
            fields.instrument = Some(spelling(&ins.name, &ins.aliases, rng));
            out.instrument = Some(i);
        }
    }
    if rng.random_bool(shares.composer) && !vocab.composers.is_empty() {
        let c = &vocab.composers[rng.random_range(0..vocab.composers.len())];
        fields.composer = Some(spelling(&c.name, &c.aliases, rng));
    }
    // a template that names exactly these fields, half the time
    let named = |t: &str, key: &str| t.contains(&format!("{{{key}}}"));
    let fitting: Vec<String> = vocab
        .templates
        .iter()
        .filter(|t| {
            ["raga", "tala", "instrument", "segment", "composer"]
                .iter()
                .all(|k| {
                    let has = match *k {
                        "raga" => fields.raga.is_some(),
                        "tala" => fields.tala.is_some(),
                        "instrument" => fields.instrument.is_some(),
                        "segment" => fields.segment.is_some(),
                        _ => fields.composer.is_some(),
                    };
                    // a specific template implies its segment type
                    let implied = *k == "segment" && t.segment != "*";
                    has == (named(&t.text, k) || implied)
                })
                && (t.segment == "*"
                    || out.segment.map(|i| vocab.segments[i].name.as_str())
                        == Some(t.segment.as_str()))
        })
        .filter_map(|t| t.render(&fields))
        .collect();
    if !fitting.is_empty() && rng.random_bool(0.5) {
        out.text = fitting.choose(rng).cloned().unwrap_or_default();
        return out;
    }
    let mut parts = Vec::new();
    if let Some(r) = &fields.raga {
        parts.push(phrase(
            &[
                "raga {}",
                "{} raga",
                "{}",
                "in raga {}",
                "in {}",
                "{} ragam",
            ],
            r,
            rng,
        ));
    }
    if let Some(s) = &fields.segment {
        parts.push(phrase(&["{}", "a {}", "{} piece"], s, rng));
    }
    if let Some(t) = &fields.tala {
        parts.push(phrase(
            &["{} tala", "in {} tala", "tala {}", "{} talam"],
            t,
            rng,
        ));
    }
    if let Some(i) = &fields.instrument {
        parts.push(phrase(&["{}", "on {}", "played on {}", "solo {}"], i, rng));
    }
    if let Some(c) = &fields.composer {
        parts.push(phrase(
            &["by {}", "composer {}", "a {} composition"],
            c,
            rng,
        ));
    }
    // shuffle, keeping the raga first most of the time
    let keep_first = fields.raga.is_some() && rng.random_bool(0.5);
    let start = usize::from(keep_first);
    for i in (start + 1..parts.len()).rev() {
        let j = rng.random_range(start..=i);
        parts.swap(i, j);
    }
    let sep = [", ", " ", ", ", "; "].choose(rng).copied().unwrap_or(", ");
    out.text = parts.join(sep);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn labels_match_what_the_caption_names() {
        let v = Vocabulary::builtin();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut empty = 0;
        for _ in 0..400 {
            let c = sample_caption(v, &SamplerShares::default(), &mut rng);
            if c.text.is_empty() {
                empty += 1;
                assert_eq!(
                    (c.raga, c.segment, c.tala, c.instrument),
                    (None, None, None, None)
                );
                continue;
            }
            let lower = c.text.to_lowercase();
            if let Some(i) = c.raga {
                let r = &v.ragas[i];
                let spelt = std::iter::once(&r.name)
                    .chain(&r.aliases)
                    .any(|n| lower.contains(&n.to_lowercase()));
                assert!(spelt, "{:?} does not name {}", c.text, r.name);
            }
            if let Some(i) = c.tala {
                let t = &v.talas[i];
                assert!(
                    std::iter::once(&t.name)
                        .chain(&t.aliases)
                        .any(|n| lower.contains(&n.to_lowercase())),
                    "{:?} does not name {}",
                    c.text,
                    t.name
                );
                if let Some(s) = c.segment {
                    assert!(v.segments[s].metred);
                }
            }
        }
        assert!((5..60).contains(&empty), "{empty} empty captions of 400");
    }

    #[test]
    fn deterministic_per_seed() {
        let v = Vocabulary::builtin();
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..20)
                .map(|_| sample_caption(v, &SamplerShares::default(), &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }
}
