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
        let pool = self.fillable(fields, |_| true);
        if pool.is_empty() {
            return "Carnatic music".into();
        }
        pool[(key % pool.len() as u64) as usize].clone()
    }

    /// A caption naming every field given (for a person who chose them):
    /// among [`Vocabulary::caption`]'s templates, those using each of the
    /// raga, tala, composer and instrument given, picked by `key`; when no
    /// template uses them all, [`Vocabulary::caption`]'s choice with the
    /// fields it leaves out added at the end.
    pub fn caption_naming_all(&self, fields: &CaptionFields, key: u64) -> String {
        let given = [
            ("{raga}", &fields.raga),
            ("{tala}", &fields.tala),
            ("{composer}", &fields.composer),
            ("{instrument}", &fields.instrument),
        ];
        let pool = self.fillable(fields, |t| {
            given
                .iter()
                .all(|(slot, v)| v.is_none() || t.text.contains(slot))
        });
        if !pool.is_empty() {
            return pool[(key % pool.len() as u64) as usize].clone();
        }
        let mut text = self.caption(fields, key);
        let extra = [
            fields.tala.as_ref().map(|t| format!("{t} tala")),
            fields.composer.as_ref().map(|c| format!("composer {c}")),
            fields.instrument.clone(),
        ];
        for e in extra.into_iter().flatten() {
            if !text.contains(&e) {
                text = format!("{text}, {e}");
            }
        }
        text
    }

    /// The captions of the templates of `fields`' segment type (else the
    /// `*` ones) that `fields` can fill, that name the raga when it is
    /// known, and that `keep` accepts.
    fn fillable(&self, fields: &CaptionFields, keep: impl Fn(&Template) -> bool) -> Vec<String> {
        let segment = fields
            .segment
            .as_deref()
            .and_then(|s| self.segment(s).ok())
            .map(|s| s.name.as_str());
        // A known raga is always named: that is what the model must learn.
        let usable =
            |t: &&Template| (fields.raga.is_none() || t.text.contains("{raga}")) && keep(t);
        let of = |seg: Option<&str>| -> Vec<String> {
            self.templates
                .iter()
                .filter(|t| Some(t.segment.as_str()) == seg)
                .filter(usable)
                .filter_map(|t| t.render(fields))
                .collect()
        };
        let specific = of(segment);
        if specific.is_empty() {
            of(Some("*"))
        } else {
            specific
        }
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
    fn chosen_fields_are_all_named_when_a_template_can() {
        let v = Vocabulary::builtin();
        let f = CaptionFields {
            raga: Some("Todi".into()),
            instrument: Some("violin".into()),
            ..Default::default()
        };
        for k in 0..20 {
            let c = v.caption_naming_all(&f, k);
            assert!(c.contains("Todi") && c.contains("violin"), "{c}");
            let c = v.caption_naming_all(
                &CaptionFields {
                    segment: Some("alapana".into()),
                    ..f.clone()
                },
                k,
            );
            assert!(c.contains("alapana") && c.contains("violin"), "{c}");
        }
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
