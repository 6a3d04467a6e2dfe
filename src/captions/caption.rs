//! Captions for labelled clips: the vocabulary's templates filled with
//! what is known about a clip.

use super::templates::{stable_hash, CaptionFields, Template};
use super::vocab::Vocabulary;
use crate::error::Result;

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

impl Vocabulary {
    /// A caption from a clip's labels (names checked and spelled as the
    /// vocabulary spells them), the template picked by a hash of the
    /// labels so the same labels always get the same caption.
    pub fn caption_of_labels(
        &self,
        raga: &str,
        tala: Option<&str>,
        segment: Option<&str>,
        composer: Option<&str>,
        instrument: Option<&str>,
    ) -> Result<String> {
        let fields = CaptionFields {
            raga: Some(raga.to_string()),
            tala: tala
                .map(|n| self.tala(n).map(|t| t.name.clone()))
                .transpose()?,
            composer: composer
                .map(|n| self.composer(n).map(|c| c.name.clone()))
                .transpose()?,
            instrument: instrument
                .map(|n| self.instrument(n).map(|i| i.name.clone()))
                .transpose()?,
            segment: segment
                .map(|n| self.segment(n).map(|s| s.name.clone()))
                .transpose()?,
            artist: None,
        };
        // the labels as written, as before: captions stay stable
        let key = format!("{raga}|{tala:?}|{segment:?}|{composer:?}");
        Ok(self.caption(&fields, stable_hash(&key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captions::templates::stable_hash;

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
        assert!(t
            .check(|s| v.segment(s))
            .unwrap_err()
            .to_string()
            .contains("ragam"));
        let t = Template {
            segment: "kriti".into(),
            text: "in {raga".into(),
        };
        assert!(t.check(|s| v.segment(s)).is_err());
        assert_eq!(stable_hash("a"), stable_hash("a"));
        assert_ne!(stable_hash("a"), stable_hash("b"));
    }
}
