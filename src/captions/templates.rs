//! Caption templates: "kriti in raga {raga}, {tala} tala, composer
//! {composer}". A clip gets one of the templates of its segment type whose
//! placeholders it can all fill.

use serde::Deserialize;

use super::vocab::Vocabulary;
use crate::error::{Error, Result};

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 6] = [
    "raga",
    "tala",
    "composer",
    "instrument",
    "artist",
    "segment",
];

/// One caption template.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Segment type it describes, or `*` for any.
    pub segment: String,
    /// Text with `{placeholder}`s.
    pub text: String,
}

/// What is known about a clip, by placeholder (display names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptionFields {
    /// Raga name.
    pub raga: Option<String>,
    /// Tala name.
    pub tala: Option<String>,
    /// Composer name.
    pub composer: Option<String>,
    /// Instrument name.
    pub instrument: Option<String>,
    /// Artist name.
    pub artist: Option<String>,
    /// Segment type name.
    pub segment: Option<String>,
}

impl CaptionFields {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "raga" => self.raga.as_deref(),
            "tala" => self.tala.as_deref(),
            "composer" => self.composer.as_deref(),
            "instrument" => self.instrument.as_deref(),
            "artist" => self.artist.as_deref(),
            "segment" => self.segment.as_deref(),
            _ => None,
        }
        .filter(|v| !v.trim().is_empty())
    }
}

/// Splits a template into literal text and placeholder names.
fn pieces(text: &str) -> std::result::Result<Vec<(bool, &str)>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push((false, &rest[..open]));
        let close = rest[open..].find('}').ok_or("unclosed `{`")? + open;
        out.push((true, &rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err("unmatched `}`".into());
    }
    out.push((false, rest));
    Ok(out)
}

impl Template {
    /// Checks the segment type and placeholders against the vocabulary.
    pub fn check(&self, vocab: &Vocabulary) -> Result<()> {
        let bad = |reason: String| Error::InvalidData {
            file: "templates.toml".into(),
            reason: format!("template `{}`: {reason}", self.text),
        };
        if self.segment != "*" {
            vocab
                .segment(&self.segment)
                .map_err(|e| bad(e.to_string()))?;
        }
        for (is_key, p) in pieces(&self.text).map_err(bad)? {
            if is_key && !PLACEHOLDERS.contains(&p) {
                return Err(bad(format!("unknown placeholder {{{p}}}")));
            }
        }
        Ok(())
    }

    /// Fills the template, or `None` when a placeholder is unknown.
    pub fn render(&self, fields: &CaptionFields) -> Option<String> {
        let mut out = String::new();
        for (is_key, p) in pieces(&self.text).ok()? {
            if is_key {
                out.push_str(fields.get(p)?);
            } else {
                out.push_str(p);
            }
        }
        Some(out)
    }
}

impl Vocabulary {
    /// A caption for a clip: among the templates of its segment type (then
    /// the `*` ones) that `fields` can fill and that name the raga when it
    /// is known, the one picked by `key`
    /// (e.g. a hash of the clip's id, so captions are stable across runs).
    pub fn caption(&self, fields: &CaptionFields, key: u64) -> String {
        let segment = fields
            .segment
            .as_deref()
            .and_then(|s| self.segment(s).ok())
            .map(|s| s.name.as_str());
        // A known raga is always named: that is what the model must learn.
        let usable = |t: &&Template| fields.raga.is_none() || t.text.contains("{raga}");
        let specific: Vec<String> = self
            .templates
            .iter()
            .filter(|t| Some(t.segment.as_str()) == segment)
            .filter(usable)
            .filter_map(|t| t.render(fields))
            .collect();
        let pool = if specific.is_empty() {
            self.templates
                .iter()
                .filter(|t| t.segment == "*")
                .filter(usable)
                .filter_map(|t| t.render(fields))
                .collect()
        } else {
            specific
        };
        if pool.is_empty() {
            return "Carnatic music".into();
        }
        pool[(key % pool.len() as u64) as usize].clone()
    }
}

/// A stable 64-bit hash of a string (FNV-1a), for picking templates.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> CaptionFields {
        CaptionFields {
            raga: Some("Todi".into()),
            tala: Some("Adi".into()),
            composer: Some("Tyagaraja".into()),
            instrument: Some("violin".into()),
            artist: None,
            segment: Some("kriti".into()),
        }
    }

    #[test]
    fn kriti_captions_name_raga_tala_and_composer() {
        let v = Vocabulary::builtin();
        let all: std::collections::HashSet<String> =
            (0..50).map(|k| v.caption(&fields(), k)).collect();
        assert!(
            all.contains("kriti in raga Todi, Adi tala, composer Tyagaraja"),
            "{all:?}"
        );
        assert!(all.iter().all(|c| c.contains("Todi")));
    }

    #[test]
    fn templates_needing_missing_fields_are_skipped() {
        let v = Vocabulary::builtin();
        let f = CaptionFields {
            raga: Some("Kalyani".into()),
            instrument: Some("violin".into()),
            segment: Some("alapana".into()),
            ..Default::default()
        };
        for k in 0..20 {
            let c = v.caption(&f, k);
            assert!(c.contains("Kalyani") && c.contains("violin"), "{c}");
        }
        // Kalpanaswaram templates need a tala; without one a generic
        // template still names the raga.
        let f = CaptionFields {
            raga: Some("Mohanam".into()),
            segment: Some("kalpanaswaram".into()),
            ..Default::default()
        };
        for k in 0..20 {
            assert!(v.caption(&f, k).contains("Mohanam"));
        }
        assert_eq!(v.caption(&CaptionFields::default(), 0), "Carnatic music");
    }

    #[test]
    fn bad_templates_are_refused() {
        let v = Vocabulary::builtin();
        let t = Template {
            segment: "kriti".into(),
            text: "in {ragam}".into(),
        };
        assert!(t.check(v).unwrap_err().to_string().contains("ragam"));
        let t = Template {
            segment: "kriti".into(),
            text: "in {raga".into(),
        };
        assert!(t.check(v).is_err());
        assert_eq!(stable_hash("a"), stable_hash("a"));
        assert_ne!(stable_hash("a"), stable_hash("b"));
    }
}
