//! Caption templates: "kriti in raga {raga}, {tala} tala, composer
//! {composer}". A clip gets one of the templates of its segment type whose
//! placeholders it can all fill.

use serde::Deserialize;

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
    /// Checks the placeholders, and the segment type with `find_segment`
    /// (the vocabulary's lookup, which errs on an unknown name).
    pub fn check<T>(&self, find_segment: impl Fn(&str) -> Result<T>) -> Result<()> {
        let bad = |reason: String| Error::InvalidData {
            file: "templates.toml".into(),
            reason: format!("template `{}`: {reason}", self.text),
        };
        if self.segment != "*" {
            find_segment(&self.segment).map_err(|e| bad(e.to_string()))?;
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

/// A stable 64-bit hash of a string (FNV-1a), for picking templates.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
