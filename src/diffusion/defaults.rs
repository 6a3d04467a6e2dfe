//! What a pipeline folder says about how to use it, beyond the diffusers
//! layout: `ragafusion.json` with the tonic its music was trained at and
//! the sampler settings it was tuned for; and the shipped default model.
//!
//! A model trained at one canonical tonic plays any other by transposing
//! the spectrogram it makes (`spectrogram::transpose`), so the caption's
//! shruti phrase is taken out before the text encoder sees it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{SampleSettings, SamplerKind};
use crate::captions::shruti::split_shruti;
use crate::choice::Choice;
use crate::error::{Error, Result};
use crate::fsutil::read_json;
use crate::spectrogram::transpose::transpose_image;
use crate::spectrogram::{SpectrogramImage, SpectrogramParams};

/// The file in a pipeline folder with its [`ModelDefaults`].
pub const DEFAULTS_FILE: &str = "ragafusion.json";

/// The shipped model, relative to the repository root.
pub const DEFAULT_MODEL: &str = "checkpoints/ragafusion-carnatic-v1";

/// Environment variable naming the model used when `--model` is absent.
pub const MODEL_ENV: &str = "RAGAFUSION_MODEL";

/// A pipeline's own usage settings (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDefaults {
    /// The tonic (Sa) of all the model's training audio, Hz. When set, a
    /// requested shruti is reached by transposing the model's spectrogram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_tonic_hz: Option<f64>,
    /// Sampler name (`ddim`, `pndm`, `euler-a`, `dpmpp-2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// Denoising steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
}

impl ModelDefaults {
    /// Sets the given fields in `dir`'s [`DEFAULTS_FILE`], keeping the
    /// others, and reads the file back with the load-time checks. With no
    /// field given the file is left as it is (or absent).
    pub fn update(
        dir: &Path,
        canonical_tonic_hz: Option<f64>,
        scheduler: Option<SamplerKind>,
        steps: Option<usize>,
        guidance: Option<f64>,
    ) -> Result<Self> {
        let mut d = Self::read(dir)?;
        let given = canonical_tonic_hz.is_some()
            || scheduler.is_some()
            || steps.is_some()
            || guidance.is_some();
        if !given {
            return Ok(d);
        }
        d.canonical_tonic_hz = canonical_tonic_hz.or(d.canonical_tonic_hz);
        d.scheduler = scheduler.map(|s| s.name().to_string()).or(d.scheduler);
        d.steps = steps.or(d.steps);
        d.guidance = guidance.or(d.guidance);
        d.write(dir)?;
        Self::read(dir)
    }

    /// The defaults of the pipeline in `dir`: its [`DEFAULTS_FILE`], or
    /// none when it has no such file. Values are checked, naming the field.
    pub fn read(dir: &Path) -> Result<Self> {
        let file = dir.join(DEFAULTS_FILE);
        if !file.is_file() {
            return Ok(Self::default());
        }
        let d: Self = read_json(&file)?;
        let bad =
            |field: &str, why: String| Error::invalid_data(&file, format!("`{field}`: {why}"));
        if let Some(t) = d.canonical_tonic_hz {
            if !(t.is_finite() && crate::limits::TONIC_HZ.contains(&t)) {
                return Err(bad(
                    "canonical_tonic_hz",
                    format!("{t} is not a tonic in 40-1000 Hz"),
                ));
            }
        }
        if let Some(s) = &d.scheduler {
            s.parse::<SamplerKind>()
                .map_err(|e| bad("scheduler", e.to_string()))?;
        }
        if let Some(n) = d.steps {
            if !(1..=1000).contains(&n) {
                return Err(bad("steps", format!("{n} is outside 1-1000")));
            }
        }
        if let Some(g) = d.guidance {
            if !(g.is_finite() && (0.0..=50.0).contains(&g)) {
                return Err(bad("guidance", format!("{g} is outside 0-50")));
            }
        }
        Ok(d)
    }

    /// The sampler, when the file names one.
    pub fn sampler(&self) -> Option<SamplerKind> {
        self.scheduler
            .as_deref()
            .and_then(|s| s.parse::<SamplerKind>().ok())
    }

    /// Sampler settings: each one given, else this model's, else
    /// `fallback`'s.
    pub fn settings(
        &self,
        sampler: Option<SamplerKind>,
        steps: Option<usize>,
        guidance: Option<f64>,
        fallback: SampleSettings,
    ) -> SampleSettings {
        SampleSettings {
            sampler: sampler.or(self.sampler()).unwrap_or(fallback.sampler),
            steps: steps.or(self.steps).unwrap_or(fallback.steps),
            guidance: guidance.or(self.guidance).unwrap_or(fallback.guidance),
        }
    }

    /// Writes the defaults into the pipeline folder `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let value = serde_json::to_value(self)
            .map_err(|e| Error::invalid_data(&dir.join(DEFAULTS_FILE), e.to_string()))?;
        crate::fsutil::write_json_atomic(&dir.join(DEFAULTS_FILE), &value)
    }
}

/// The model to use when none is named: `$RAGAFUSION_MODEL`, else
/// [`DEFAULT_MODEL`] under the working directory, else under the source
/// tree this binary was built from.
pub fn default_model_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(MODEL_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let candidates = [
        PathBuf::from(DEFAULT_MODEL),
        Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_MODEL),
    ];
    candidates
        .iter()
        .find(|p| p.join("model_index.json").is_file())
        .cloned()
        .ok_or_else(|| {
            Error::checkpoint(
                &candidates[0],
                format!(
                    "no default model here or in {} (give --model DIR or set {MODEL_ENV})",
                    candidates[1].display()
                ),
            )
        })
}

/// A caption made ready for a model: the text its encoder sees and the
/// pitch ratio that takes its output to the requested tonic.
#[derive(Debug, Clone, PartialEq)]
pub struct TonicPlan {
    /// The caption the text encoder gets.
    pub prompt: String,
    /// The tonic asked for (the flag's, else the caption's), Hz.
    pub tonic_hz: Option<f64>,
    /// Frequency ratio to apply to the model's spectrogram (exactly 1:
    /// none; a tonic within 2 cents of the canonical one gives 1).
    pub ratio: f64,
}

impl TonicPlan {
    /// The model's spectrogram (made with `params`) moved to the tonic
    /// asked for.
    pub fn apply(
        &self,
        image: SpectrogramImage,
        params: &SpectrogramParams,
    ) -> Result<SpectrogramImage> {
        if self.ratio == 1.0 {
            Ok(image)
        } else {
            transpose_image(&image, params, self.ratio)
        }
    }
}

/// Resolves the tonic of a request. With a canonical tonic, the caption's
/// shruti phrase is removed and the tonic asked for (`tonic_hz`, else the
/// caption's) becomes a transposition ratio. Without one, the caption is
/// left as it is and a `tonic_hz` is refused: the model cannot honour it.
pub fn plan_tonic(
    defaults: &ModelDefaults,
    prompt: &str,
    tonic_hz: Option<f64>,
) -> Result<TonicPlan> {
    let Some(canonical) = defaults.canonical_tonic_hz else {
        if let Some(t) = tonic_hz {
            return Err(Error::param(
                "tonic",
                format!(
                    "{t} Hz asked for, but the model has no canonical tonic ({DEFAULTS_FILE}); \
                     name the shruti in the caption if the model was trained on such captions"
                ),
            ));
        }
        return Ok(TonicPlan {
            prompt: prompt.to_string(),
            tonic_hz: None,
            ratio: 1.0,
        });
    };
    let split = split_shruti(prompt)?;
    let tonic = tonic_hz.or(split.tonic_hz);
    if let Some(t) = tonic {
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::param("tonic", format!("{t} Hz is not a tonic")));
        }
    }
    // within 2 cents of the canonical tonic is the canonical tonic
    let ratio = tonic.map_or(1.0, |t| t / canonical);
    Ok(TonicPlan {
        prompt: split.caption,
        tonic_hz: tonic,
        ratio: if (ratio - 1.0).abs() < 1e-3 {
            1.0
        } else {
            ratio
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(json: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(DEFAULTS_FILE), json).unwrap();
        d
    }

    #[test]
    fn reads_checks_and_round_trips() {
        let none = tempfile::tempdir().unwrap();
        assert_eq!(
            ModelDefaults::read(none.path()).unwrap(),
            ModelDefaults::default()
        );
        let d = dir_with(r#"{"canonical_tonic_hz": 146.83, "scheduler": "dpmpp-2m", "steps": 20}"#);
        let m = ModelDefaults::read(d.path()).unwrap();
        assert_eq!(m.steps, Some(20));
        assert_eq!(m.sampler(), Some(SamplerKind::DpmPp2m));
        let out = tempfile::tempdir().unwrap();
        m.write(out.path()).unwrap();
        assert_eq!(ModelDefaults::read(out.path()).unwrap(), m);
        for (json, field) in [
            (r#"{"canonical_tonic_hz": -3}"#, "canonical_tonic_hz"),
            (r#"{"scheduler": "fast"}"#, "scheduler"),
            (r#"{"steps": 0}"#, "steps"),
            (r#"{"guidance": 1e9}"#, "guidance"),
            (r#"{"tonic": 1}"#, "tonic"),
        ] {
            let e = ModelDefaults::read(dir_with(json).path())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(field) && e.contains(DEFAULTS_FILE),
                "{json}: {e}"
            );
        }
    }

    #[test]
    fn tonic_from_flag_or_caption() {
        let m = ModelDefaults {
            canonical_tonic_hz: Some(146.83),
            ..Default::default()
        };
        let p = plan_tonic(&m, "Kalyani raga alapana, violin, shruti D", None).unwrap();
        assert_eq!(p.prompt, "Kalyani raga alapana, violin");
        assert_eq!(p.ratio, 1.0);
        let p = plan_tonic(&m, "Kalyani raga, shruti G", None).unwrap();
        assert!((p.ratio - 196.0 / 146.83).abs() < 1e-3, "{}", p.ratio);
        // the flag wins over the caption
        let p = plan_tonic(&m, "Kalyani raga, shruti G", Some(146.83)).unwrap();
        assert!((p.ratio - 1.0).abs() < 1e-9);
        let p = plan_tonic(&m, "Todi", None).unwrap();
        assert_eq!(
            (p.prompt.as_str(), p.tonic_hz, p.ratio),
            ("Todi", None, 1.0)
        );
        assert!(plan_tonic(&m, "Todi, shruti Q", None).is_err());
        // no canonical tonic: the caption is the model's business
        let plain = ModelDefaults::default();
        let p = plan_tonic(&plain, "Todi, shruti G", None).unwrap();
        assert_eq!(p.prompt, "Todi, shruti G");
        assert!(plan_tonic(&plain, "Todi", Some(196.0)).is_err());
    }

    #[test]
    fn settings_fall_back_in_order() {
        let fallback = SampleSettings {
            sampler: SamplerKind::Pndm,
            steps: 50,
            guidance: 7.0,
        };
        let m = ModelDefaults {
            scheduler: Some("dpmpp-2m".into()),
            steps: Some(20),
            ..Default::default()
        };
        let s = m.settings(None, Some(30), None, fallback);
        assert_eq!(
            (s.sampler, s.steps, s.guidance),
            (SamplerKind::DpmPp2m, 30, 7.0)
        );
        let s =
            ModelDefaults::default().settings(Some(SamplerKind::Ddim), None, Some(2.0), fallback);
        assert_eq!(
            (s.sampler, s.steps, s.guidance),
            (SamplerKind::Ddim, 50, 2.0)
        );
    }
}
