//! One interface over both raga classifiers: load either kind from a model
//! folder (its `config.json` names the kind) or the built-in default, and
//! classify audio or a spectrogram image.

use std::path::Path;

use serde::Serialize;

use super::cnn::{CnnModel, CNN_KIND};
use super::fused::{FusedModel, FUSED_KIND};
use super::grammar::{GrammarModel, GRAMMAR_KIND};
use super::knn::{track_features, KnnModel};
use super::melody::Melody;
use super::pitch::{pyin, PitchTrack, PyinParams};
use super::pitch_image::pitch_image;
use super::tonic::{estimate_tonic, TonicEvidence};
use super::verdict::{judge, PitchedContent, Verdict, MIN_VOICED_SHARE};
use crate::audio::{resample, ChannelLayout};
use crate::error::{Error, Result};
use crate::fsutil::read_bytes;
use crate::progress::NoProgress;
use crate::spectrogram::{InversionSettings, LoadedImage, SpectrogramConverter, SpectrogramParams};

/// The built-in default classifier's config: the grammar scorer fused with
/// the built-in CNN (see `checkpoints/raga-ear/README.md`).
const EAR_CONFIG: &[u8] = include_bytes!("../../checkpoints/raga-ear/config.json");
/// The built-in CNN's config (see `checkpoints/raga-cnn/README.md`).
const CNN_CONFIG: &[u8] = include_bytes!("../../checkpoints/raga-cnn/config.json");
/// The built-in CNN's weights.
const CNN_WEIGHTS: &[u8] = include_bytes!("../../checkpoints/raga-cnn/model.safetensors");

/// Sample rate the classifiers work at (Hz).
pub const ANALYSIS_RATE_HZ: u32 = 44100;

/// Mono audio at [`ANALYSIS_RATE_HZ`] reconstructed from a spectrogram
/// image (default inversion settings).
pub fn audio_of_image(loaded: &LoadedImage) -> Result<Vec<f32>> {
    let conv = SpectrogramConverter::new(loaded.params.clone())?;
    let opts = InversionSettings::default().options(&loaded.params);
    let audio = conv.audio_from_image(loaded, &opts, &NoProgress)?;
    Ok(
        resample(&audio.with_layout(ChannelLayout::Mono), ANALYSIS_RATE_HZ)?
            .channels
            .swap_remove(0),
    )
}

/// A loaded classifier of either kind.
#[derive(Debug, Clone)]
pub enum Classifier {
    /// PCD/TDMS k nearest neighbours.
    Knn(KnnModel),
    /// Spectrogram CNN.
    Cnn(CnnModel),
    /// Music-theory scorer (no fitted weights).
    Grammar(GrammarModel),
    /// The grammar scorer and a CNN together (the built-in default).
    Fused(Box<FusedModel>),
}

/// A verdict: the tonic used and every raga with its score, best first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    /// Tonic the clip was analysed with, Hz (NaN when none was given and
    /// the clip has no pitched content to find one in).
    pub tonic_hz: f64,
    /// Whether the tonic was given (false: estimated).
    pub tonic_given: bool,
    /// (raga, score), best first. CNN scores are probabilities; kNN scores
    /// are vote shares.
    pub ranked: Vec<(String, f64)>,
    /// What the pitch track says (None for an image classified without
    /// reconstructing its audio).
    pub pitched: Option<PitchedContent>,
}

impl Classification {
    /// Whether the ranking names a raga at all (see [`super::verdict`]).
    pub fn verdict(&self) -> Verdict {
        judge(self.pitched.as_ref(), &self.ranked)
    }

    /// The verdict on `file` as JSON: the file, the classifier's kind, the
    /// tonic, the `top` best ragas with their scores, and whether they mean
    /// anything (`verdict`, with the pitched content it rests on).
    pub fn report(&self, file: &Path, classifier: &str, top: usize) -> serde_json::Value {
        let best: Vec<serde_json::Value> = self
            .ranked
            .iter()
            .take(top)
            .map(|(raga, score)| serde_json::json!({"raga": raga, "score": score}))
            .collect();
        serde_json::json!({
            "file": file,
            "classifier": classifier,
            "tonic_hz": self.tonic_hz,
            "tonic_given": self.tonic_given,
            "top": best,
            "verdict": self.verdict(),
            "verdict_text": self.verdict().describe(),
            "pitched": self.pitched,
        })
    }
}

impl Classifier {
    /// Loads the classifier in `dir`, of the kind its `config.json` names.
    pub fn load(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let v: serde_json::Value =
            serde_json::from_slice(&read_bytes(&config_path)?).map_err(|e| Error::InvalidData {
                file: config_path.display().to_string(),
                reason: e.to_string(),
            })?;
        match v["kind"].as_str() {
            Some(CNN_KIND) => Ok(Classifier::Cnn(CnnModel::load(dir)?)),
            Some("pcd-tdms-knn") => Ok(Classifier::Knn(KnnModel::load(dir)?)),
            Some(GRAMMAR_KIND) => Ok(Classifier::Grammar(GrammarModel::load(dir)?)),
            Some(FUSED_KIND) => Ok(Classifier::Fused(Box::new(FusedModel::load(dir)?))),
            other => Err(Error::InvalidData {
                file: config_path.display().to_string(),
                reason: format!(
                    "field `kind` is {other:?}; expected `{CNN_KIND}`, `pcd-tdms-knn`, \
                     `{GRAMMAR_KIND}` or `{FUSED_KIND}`"
                ),
            }),
        }
    }

    /// The default classifier built into the program: the grammar scorer
    /// fused with the built-in CNN.
    pub fn builtin() -> Result<Self> {
        let origin = "built-in checkpoints/raga-ear/config.json";
        let config = serde_json::from_slice(EAR_CONFIG).map_err(|e| Error::InvalidData {
            file: origin.into(),
            reason: e.to_string(),
        })?;
        Ok(Classifier::Fused(Box::new(FusedModel::new(
            config,
            Self::builtin_cnn_model()?,
            origin,
        )?)))
    }

    /// The CNN built into the program (`checkpoints/raga-cnn`).
    pub fn builtin_cnn_model() -> Result<CnnModel> {
        CnnModel::from_bytes(
            CNN_CONFIG,
            CNN_WEIGHTS,
            "built-in checkpoints/raga-cnn/config.json",
            "built-in checkpoints/raga-cnn/model.safetensors",
        )
    }

    /// `load(dir)` when a folder is given, the built-in default otherwise.
    pub fn load_or_builtin(dir: Option<&Path>) -> Result<Self> {
        match dir {
            Some(d) => Self::load(d),
            None => Self::builtin(),
        }
    }

    /// The kind, as written in config.json.
    pub fn kind(&self) -> &str {
        match self {
            Classifier::Knn(m) => &m.config.kind,
            Classifier::Cnn(m) => &m.config.kind,
            Classifier::Grammar(m) => &m.config.kind,
            Classifier::Fused(m) => &m.config.kind,
        }
    }

    /// The ragas it can name.
    pub fn ragas(&self) -> &[String] {
        match self {
            Classifier::Knn(m) => &m.config.ragas,
            Classifier::Cnn(m) => &m.config.ragas,
            Classifier::Grammar(m) => m.ragas(),
            Classifier::Fused(m) => m.ragas(),
        }
    }

    /// Tonic search range used when no tonic is given, Hz.
    pub fn tonic_range_hz(&self) -> (f64, f64) {
        match self {
            Classifier::Knn(m) => m.config.tonic_range_hz,
            Classifier::Cnn(m) => m.config.tonic_range_hz,
            Classifier::Grammar(m) => m.config.tonic_range_hz,
            Classifier::Fused(m) => m.grammar.config.tonic_range_hz,
        }
    }

    /// Classifies a file: a spectrogram PNG, or audio in any format the
    /// decoder reads (resampled to [`ANALYSIS_RATE_HZ`], mono); only its
    /// first `max_seconds` when given.
    pub fn classify_file(
        &self,
        input: &Path,
        tonic_hz: Option<f64>,
        max_seconds: Option<f64>,
    ) -> Result<Classification> {
        if let Some(t) = tonic_hz {
            crate::limits::in_range("tonic_hz", t, &crate::limits::TONIC_HZ, " Hz")?;
        }
        if let Some(s) = max_seconds.filter(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::param(
                "max-seconds",
                format!("{s}: must be a positive number"),
            ));
        }
        let is_png = input
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        if is_png {
            let mut loaded = crate::spectrogram::read_png(input)?;
            if let Some(s) = max_seconds {
                loaded.keep_seconds(s);
            }
            self.classify_image(&loaded, tonic_hz)
        } else {
            let audio = crate::audio::read_audio_as(
                input,
                ANALYSIS_RATE_HZ,
                crate::audio::ChannelLayout::Mono,
            )?;
            let mut samples = audio.channels.into_iter().next().unwrap_or_default();
            if let Some(s) = max_seconds {
                samples.truncate((s * ANALYSIS_RATE_HZ as f64) as usize);
            }
            self.classify_audio(&samples, tonic_hz)
        }
    }

    /// Classifies mono audio at [`ANALYSIS_RATE_HZ`].
    pub fn classify_audio(&self, samples: &[f32], tonic_hz: Option<f64>) -> Result<Classification> {
        let track = pyin(samples, ANALYSIS_RATE_HZ, &PyinParams::default())?;
        self.classify_track(samples, &track, tonic_hz)
    }

    /// Classifies mono audio at [`ANALYSIS_RATE_HZ`] whose pitch track
    /// (pYIN, default settings) is already known.
    pub fn classify_track(
        &self,
        samples: &[f32],
        track: &PitchTrack,
        tonic_hz: Option<f64>,
    ) -> Result<Classification> {
        let rate = ANALYSIS_RATE_HZ;
        let pitched = PitchedContent::of(track);
        if let Some(t) = tonic_hz {
            crate::limits::in_range("tonic_hz", t, &crate::limits::TONIC_HZ, " Hz")?;
        } else if pitched.voiced_share < MIN_VOICED_SHARE {
            return Ok(Self::nothing(pitched));
        }
        let tonic = || -> Result<f64> {
            Ok(match tonic_hz {
                Some(t) => t,
                None => estimate_tonic(samples, rate, track, self.tonic_range_hz())?.tonic_hz,
            })
        };
        let (tonic, ranked) = match self {
            Classifier::Grammar(m) => {
                return classify_by_grammar(m, samples, track, tonic_hz, pitched)
            }
            Classifier::Fused(m) => {
                let by_grammar =
                    classify_by_grammar(&m.grammar, samples, track, tonic_hz, pitched)?;
                let by_cnn = cnn_ranking(&m.cnn, samples, by_grammar.tonic_hz)?;
                return Ok(Classification {
                    ranked: m.combine(&by_grammar.ranked, &by_cnn),
                    ..by_grammar
                });
            }
            Classifier::Knn(m) => {
                let t = tonic()?;
                (t, m.predict(&track_features(track, t)))
            }
            Classifier::Cnn(m) => {
                let t = tonic()?;
                (t, cnn_ranking(m, samples, t)?)
            }
        };
        Ok(Classification {
            tonic_hz: tonic,
            tonic_given: tonic_hz.is_some(),
            ranked,
            pitched: Some(pitched),
        })
    }

    /// The classification of a clip with no pitched content and no given
    /// tonic: no tonic to find (NaN, null in JSON) and no ranking.
    fn nothing(pitched: PitchedContent) -> Classification {
        Classification {
            tonic_hz: f64::NAN,
            tonic_given: false,
            ranked: Vec::new(),
            pitched: Some(pitched),
        }
    }

    /// Classifies a spectrogram image. The CNN reads its pixels directly
    /// (audio is reconstructed only to estimate a missing tonic); the kNN
    /// classifies the reconstructed audio.
    pub fn classify_image(
        &self,
        loaded: &LoadedImage,
        tonic_hz: Option<f64>,
    ) -> Result<Classification> {
        let audio = || audio_of_image(loaded);
        match self {
            Classifier::Knn(_) | Classifier::Grammar(_) | Classifier::Fused(_) => {
                self.classify_audio(&audio()?, tonic_hz)
            }
            Classifier::Cnn(m) => {
                if loaded.params.step_ms != 10 {
                    return Err(Error::param(
                        "step_ms",
                        format!(
                            "the image has {} ms columns; the CNN reads 10 ms columns",
                            loaded.params.step_ms
                        ),
                    ));
                }
                // Audio is reconstructed only when the tonic must be
                // estimated; its pitch track then also gives the verdict.
                let (tonic, pitched) = match tonic_hz {
                    Some(t) => (t, None),
                    None => {
                        let samples = audio()?;
                        let track = pyin(&samples, ANALYSIS_RATE_HZ, &PyinParams::default())?;
                        let pitched = PitchedContent::of(&track);
                        if pitched.voiced_share < MIN_VOICED_SHARE {
                            return Ok(Self::nothing(pitched));
                        }
                        let range = m.config.tonic_range_hz;
                        let t = estimate_tonic(&samples, ANALYSIS_RATE_HZ, &track, range)?;
                        (t.tonic_hz, Some(pitched))
                    }
                };
                let p = pitch_image(&loaded.image, &loaded.params, tonic, &m.config.axis)?;
                Ok(Classification {
                    tonic_hz: tonic,
                    tonic_given: tonic_hz.is_some(),
                    ranked: m.predict_pitch_image(&p)?,
                    pitched,
                })
            }
        }
    }
}

/// The CNN's ranking of mono audio at [`ANALYSIS_RATE_HZ`] around `tonic_hz`.
fn cnn_ranking(m: &CnnModel, samples: &[f32], tonic_hz: f64) -> Result<Vec<(String, f64)>> {
    let params = SpectrogramParams::default();
    let audio = crate::audio::Audio::new(vec![samples.to_vec()], ANALYSIS_RATE_HZ, "clip")?;
    let (image, _) = SpectrogramConverter::new(params.clone())?.image_from_audio(&audio)?;
    m.predict(&image, &params, tonic_hz)
}

/// The grammar scorer's verdict: tonic candidates near the given tonic,
/// or every pitch class weighed by the tonic evidence.
fn classify_by_grammar(
    m: &GrammarModel,
    samples: &[f32],
    track: &PitchTrack,
    tonic_hz: Option<f64>,
    pitched: PitchedContent,
) -> Result<Classification> {
    let melody = Melody::of(track, m.config.stable_weight);
    let range = m.config.tonic_range_hz;
    let (verdict, tonic) = match tonic_hz {
        Some(t) => (m.score(&melody, &GrammarModel::tonics_near(t)), t),
        None => {
            let evidence = TonicEvidence::gather(samples, ANALYSIS_RATE_HZ, track)?;
            let v = m.score(
                &melody,
                &GrammarModel::tonics_from_scores(&evidence.scores()),
            );
            let t = evidence.tonic_in_bin(v.tonic_bin, range)?;
            (v, t)
        }
    };
    Ok(Classification {
        tonic_hz: tonic,
        tonic_given: tonic_hz.is_some(),
        ranked: verdict.ranked,
        pitched: Some(pitched),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captions::Vocabulary;

    #[test]
    fn the_builtin_knows_every_vocabulary_raga() {
        let c = Classifier::builtin().unwrap();
        assert_eq!(c.kind(), FUSED_KIND);
        let vocab = Vocabulary::builtin();
        assert_eq!(c.ragas().len(), vocab.ragas.len());
        for r in &vocab.ragas {
            assert!(c.ragas().contains(&r.name), "{}", r.name);
        }
    }

    #[test]
    fn folders_of_an_unknown_kind_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"kind": "svm"}"#).unwrap();
        let e = Classifier::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("svm"), "{e}");
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let e = Classifier::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
    }

    #[test]
    fn images_with_other_column_steps_are_refused_by_the_cnn() {
        let c = Classifier::Cnn(Classifier::builtin_cnn_model().unwrap());
        let params = SpectrogramParams {
            step_ms: 20,
            ..Default::default()
        };
        let loaded = LoadedImage {
            image: crate::spectrogram::SpectrogramImage {
                width: 64,
                height: 512,
                rgb: vec![255; 64 * 512 * 3],
            },
            params,
            max_value: None,
            has_exif: true,
            exif: Default::default(),
        };
        let e = c
            .classify_image(&loaded, Some(150.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("step_ms"), "{e}");
    }
}
