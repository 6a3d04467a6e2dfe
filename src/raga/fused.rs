//! The raga ear: the grammar scorer and the spectrogram CNN together.
//!
//! The grammar scorer (music theory, no fitted weights) carries the
//! verdict on real recordings; the CNN, which has only heard the
//! renderer, sharpens it where its training transfers. Their rankings
//! combine in log space, `log p_grammar + cnn_weight * log p_cnn`, over
//! the grammar scorer's ragas (a raga the CNN does not know counts as
//! uniform for it), then a softmax. The tonic is the grammar scorer's
//! (given, or chosen jointly with the raga), and the CNN reads the clip
//! around the same tonic.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cnn::CnnModel;
use super::grammar::{GrammarConfig, GrammarModel};
use crate::captions::Vocabulary;
use crate::error::{Error, Result};

/// `kind` in a fused classifier's config.json.
pub const FUSED_KIND: &str = "raga-fusion";

/// A fused classifier's config.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusedConfig {
    /// Always [`FUSED_KIND`].
    pub kind: String,
    /// The CNN's folder, relative to this config's folder.
    pub cnn: PathBuf,
    /// Weight of the CNN's log-probabilities against the grammar's.
    pub cnn_weight: f64,
    /// The grammar scorer's settings (defaults where left out).
    #[serde(default)]
    pub grammar: GrammarConfig,
}

/// The grammar scorer and the CNN, fused.
#[derive(Debug, Clone)]
pub struct FusedModel {
    /// Its settings.
    pub config: FusedConfig,
    /// The grammar scorer.
    pub grammar: GrammarModel,
    /// The CNN.
    pub cnn: CnnModel,
}

impl FusedModel {
    /// The fused classifier of `config` with `cnn`; `origin` names the
    /// config in errors.
    pub fn new(config: FusedConfig, cnn: CnnModel, origin: &str) -> Result<Self> {
        let bad = |field: &str, why: String| Error::InvalidData {
            file: origin.to_string(),
            reason: format!("field `{field}` {why}"),
        };
        if config.kind != FUSED_KIND {
            return Err(bad(
                "kind",
                format!("is {:?}, expected {FUSED_KIND:?}", config.kind),
            ));
        }
        let w = config.cnn_weight;
        if !(w.is_finite() && (0.0..=100.0).contains(&w)) {
            return Err(bad("cnn_weight", format!("is {w}; must lie in 0-100")));
        }
        let grammar = GrammarModel::new(config.grammar.clone(), Vocabulary::builtin(), origin)
            .map_err(|e| match e {
                Error::InvalidData { file, reason } => Error::InvalidData {
                    file,
                    reason: format!("in `grammar`: {reason}"),
                },
                other => other,
            })?;
        Ok(FusedModel {
            config,
            grammar,
            cnn,
        })
    }

    /// Loads `dir/config.json` and the CNN folder it names.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let bytes = crate::fsutil::read_bytes(&path)?;
        let config: FusedConfig = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid_data(&path, e.to_string()))?;
        let cnn = CnnModel::load(&dir.join(&config.cnn)).map_err(|e| Error::Within {
            context: format!("{}: field `cnn`", path.display()),
            source: Box::new(e),
        })?;
        Self::new(config, cnn, &path.display().to_string())
    }

    /// The ragas it names (the grammar scorer's).
    pub fn ragas(&self) -> &[String] {
        self.grammar.ragas()
    }

    /// Combines the two rankings ((raga, probability) pairs) into one,
    /// best first, its shares summing to 1.
    pub fn combine(&self, grammar: &[(String, f64)], cnn: &[(String, f64)]) -> Vec<(String, f64)> {
        let cnn_log: std::collections::HashMap<&str, f64> = cnn
            .iter()
            .map(|(r, p)| (r.as_str(), p.max(1e-12).ln()))
            .collect();
        let unknown = (1.0 / cnn.len().max(1) as f64).ln();
        let mut scored: Vec<(String, f64)> = grammar
            .iter()
            .map(|(r, p)| {
                let c = cnn_log.get(r.as_str()).copied().unwrap_or(unknown);
                (r.clone(), p.max(1e-300).ln() + self.config.cnn_weight * c)
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top = scored.first().map_or(0.0, |s| s.1);
        let total: f64 = scored.iter().map(|(_, s)| (s - top).exp()).sum();
        scored
            .into_iter()
            .map(|(r, s)| (r, (s - top).exp() / total))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fused(weight: f64) -> FusedModel {
        let crate::raga::classifier::Classifier::Fused(m) =
            crate::raga::classifier::Classifier::builtin().unwrap()
        else {
            panic!("the built-in classifier is fused")
        };
        FusedModel::new(
            FusedConfig {
                cnn_weight: weight,
                ..m.config.clone()
            },
            m.cnn.clone(),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn the_cnn_sharpens_the_grammar_by_its_weight() {
        let g = vec![
            ("Kalyani".to_string(), 0.5),
            ("Todi".to_string(), 0.4),
            ("Jog".to_string(), 0.1),
        ];
        let c = vec![("Todi".to_string(), 0.9), ("Kalyani".to_string(), 0.1)];
        let none = fused(0.0).combine(&g, &c);
        assert_eq!(none[0].0, "Kalyani");
        assert!((none[0].1 - 0.5).abs() < 1e-9, "{none:?}");
        let strong = fused(1.0).combine(&g, &c);
        assert_eq!(strong[0].0, "Todi", "{strong:?}");
        // A raga the CNN does not know is neither helped nor dropped.
        assert!(strong.iter().any(|(r, p)| r == "Jog" && *p > 0.0));
        let total: f64 = strong.iter().map(|(_, p)| p).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn configs_name_the_field_they_break() {
        let m = fused(0.1);
        let bad = FusedConfig {
            cnn_weight: f64::NAN,
            ..m.config.clone()
        };
        let e = FusedModel::new(bad, m.cnn.clone(), "x/config.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x/config.json") && e.contains("cnn_weight"),
            "{e}"
        );
        let mut bad = m.config.clone();
        bad.grammar.temperature = -1.0;
        let e = FusedModel::new(bad, m.cnn.clone(), "x/config.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("grammar") && e.contains("temperature"), "{e}");
    }
}
