//! The experiment file of `compare`: backends x prompts x seeds, the
//! classifiers that judge them, and optional setup steps that build what
//! the backends need. TOML; see docs/experiments.md for every field.
//!
//! Paths are relative to the experiment file's folder, and `{out}` stands
//! for the output folder, so an experiment can build its models there.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::captions::Vocabulary;
use crate::error::{Error, Result};
use crate::limits;

/// Default clip length, seconds (one riffusion clip).
pub const DEFAULT_SECONDS: f64 = 5.12;

/// The experiment file as written.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Title of the report.
    pub name: String,
    /// A paragraph for the report.
    #[serde(default)]
    pub description: String,
    /// Seeds; every generating backend makes one clip per prompt and seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Clip length, seconds.
    #[serde(default = "default_seconds")]
    pub seconds: f64,
    /// The judges.
    #[serde(default)]
    pub classifiers: ClassifierSpec,
    /// Commands run before the comparison (each once; see [`SetupStep`]).
    #[serde(default)]
    pub setup: Vec<SetupStep>,
    /// What is compared.
    #[serde(rename = "backend", default)]
    pub backends: Vec<BackendSpec>,
    /// The captions, each with the raga and tonic the metrics assume.
    #[serde(rename = "prompt", default)]
    pub prompts: Vec<PromptSpec>,
}

fn default_seeds() -> Vec<u64> {
    vec![1]
}

fn default_seconds() -> f64 {
    DEFAULT_SECONDS
}

/// The raga classifiers that judge every clip.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierSpec {
    /// A spectrogram-CNN folder (`train-classifier --kind cnn`); default
    /// the built-in CNN.
    pub cnn: Option<PathBuf>,
    /// A PCD/TDMS kNN folder (`train-classifier --kind knn`); default one
    /// fitted on the reference clips (each reference clip itself judged
    /// leave-one-out).
    pub knn: Option<PathBuf>,
}

/// One setup command: `ragafusion` with these arguments, run in the
/// experiment file's folder unless it already succeeded for this output
/// folder with the same arguments.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetupStep {
    /// Arguments after `ragafusion` (`{out}` is replaced).
    pub run: Vec<String>,
}

/// One backend as written: `kind` decides which other fields apply.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// Name in tables and the folder of its clips (letters, digits, `-`,
    /// `_`, `.`).
    pub name: String,
    /// `diffusion`, `musicgen` or `reference`.
    pub kind: String,
    /// Checkpoint folder (musicgen; diffusion: default the shipped model,
    /// `checkpoints/ragafusion-carnatic-v1`).
    pub model: Option<PathBuf>,
    /// Folder of labelled clips, WAV + JSON label as `synth` writes them
    /// (reference).
    pub clips: Option<PathBuf>,
    /// Denoising steps (diffusion; default the model's `ragafusion.json`,
    /// else 50).
    pub steps: Option<usize>,
    /// Guidance scale (diffusion: default the model's, else 7; musicgen 3).
    pub guidance: Option<f64>,
    /// Sampler (diffusion; default the model's, else pndm).
    pub scheduler: Option<String>,
    /// Negative prompt (diffusion).
    pub negative: Option<String>,
    /// Image-to-audio quality: fast, high, riffusion (diffusion; default
    /// fast).
    pub quality: Option<String>,
    /// Top-k sampling (musicgen; default 250).
    pub top_k: Option<usize>,
    /// Top-p sampling, 0 = off (musicgen; default 0).
    pub top_p: Option<f64>,
    /// Sampling temperature (musicgen; default 1).
    pub temperature: Option<f64>,
    /// Most likely token at every step (musicgen; default false).
    pub greedy: Option<bool>,
    /// `cpu` or `cuda[:N]` (default cpu).
    pub device: Option<String>,
    /// `f32`, `f16` or `bf16` (default f32).
    pub dtype: Option<String>,
}

/// The kind of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Spectrogram diffusion (diffusers layout).
    Diffusion,
    /// MusicGen (transformers layout).
    Musicgen,
    /// Existing labelled clips.
    Reference,
}

impl BackendKind {
    /// The name used in experiment files and tables.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Diffusion => "diffusion",
            BackendKind::Musicgen => "musicgen",
            BackendKind::Reference => "reference",
        }
    }
}

impl BackendSpec {
    /// The parsed kind.
    pub fn kind(&self) -> Result<BackendKind> {
        match self.kind.as_str() {
            "diffusion" => Ok(BackendKind::Diffusion),
            "musicgen" => Ok(BackendKind::Musicgen),
            "reference" => Ok(BackendKind::Reference),
            other => Err(Error::param(
                "kind",
                format!("`{other}` is not diffusion, musicgen or reference"),
            )),
        }
    }

    /// Whether it generates clips (rather than reading them).
    pub fn generates(&self) -> bool {
        !matches!(self.kind(), Ok(BackendKind::Reference))
    }

    /// Fields set that do not apply to its kind.
    fn misplaced(&self, kind: BackendKind) -> Vec<&'static str> {
        let diffusion = [
            ("steps", self.steps.is_some()),
            ("scheduler", self.scheduler.is_some()),
            ("negative", self.negative.is_some()),
            ("quality", self.quality.is_some()),
        ];
        let musicgen = [
            ("top_k", self.top_k.is_some()),
            ("top_p", self.top_p.is_some()),
            ("temperature", self.temperature.is_some()),
            ("greedy", self.greedy.is_some()),
        ];
        let generator = [
            ("model", self.model.is_some()),
            ("guidance", self.guidance.is_some()),
            ("device", self.device.is_some()),
            ("dtype", self.dtype.is_some()),
        ];
        let reference = [("clips", self.clips.is_some())];
        let wrong: Vec<&[(&'static str, bool)]> = match kind {
            BackendKind::Diffusion => vec![&musicgen, &reference],
            BackendKind::Musicgen => vec![&diffusion, &reference],
            BackendKind::Reference => vec![&diffusion, &musicgen, &generator],
        };
        wrong
            .into_iter()
            .flatten()
            .filter(|(_, set)| *set)
            .map(|(n, _)| *n)
            .collect()
    }
}

/// One prompt: the caption and the labels the metrics judge it by.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    /// Short id for file names (default `p1`, `p2`, ...).
    pub id: Option<String>,
    /// The caption; default composed from the labels with the caption
    /// templates.
    pub text: Option<String>,
    /// The requested raga (any known spelling).
    pub raga: String,
    /// Tonic the metrics assume, Hz; estimated from each clip when absent.
    pub tonic_hz: Option<f64>,
    /// Tala (caption only).
    pub tala: Option<String>,
    /// Composer (caption only).
    pub composer: Option<String>,
    /// Segment type, e.g. alapana (caption only).
    pub segment: Option<String>,
    /// Instrument (caption only).
    pub instrument: Option<String>,
}

/// A prompt with its caption composed and its raga resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prompt {
    /// Id used in clip names.
    pub id: String,
    /// The caption the generators get.
    pub text: String,
    /// The requested raga's vocabulary name.
    pub raga: String,
    /// Tonic the metrics assume, Hz.
    pub tonic_hz: Option<f64>,
}

/// An experiment ready to run: validated, paths resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The file it came from.
    pub file: PathBuf,
    /// The experiment with every path absolute.
    pub experiment: Experiment,
    /// The prompts, composed.
    pub prompts: Vec<Prompt>,
}

impl Resolved {
    /// The backends in file order.
    pub fn backends(&self) -> &[BackendSpec] {
        &self.experiment.backends
    }

    /// The reference backend the Frechet distances are measured against
    /// (the first of kind `reference`).
    pub fn reference(&self) -> Option<&BackendSpec> {
        self.backends().iter().find(|b| !b.generates())
    }
}

/// `{out}` replaced, then made absolute against `base`.
pub fn resolve_path(path: &Path, base: &Path, out: &Path) -> PathBuf {
    let text = path
        .to_string_lossy()
        .replace("{out}", &out.to_string_lossy());
    let p = PathBuf::from(text);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

fn bad(file: &Path, field: &str, reason: impl std::fmt::Display) -> Error {
    Error::invalid_data(file, format!("{field}: {reason}"))
}

/// Reads, validates and resolves the experiment at `file` for the output
/// folder `out` (absolute). Errors name the file and the field.
pub fn load_experiment(file: &Path, out: &Path, vocab: &Vocabulary) -> Result<Resolved> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let experiment: Experiment =
        toml::from_str(&text).map_err(|e| Error::invalid_data(file, e.to_string()))?;
    let base = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let base = std::path::absolute(&base).map_err(|e| Error::io(&base, e))?;
    resolve(experiment, file, &base, out, vocab)
}

/// Validates `e` (read from `file`) and resolves its paths against
/// `base`.
pub fn resolve(
    mut e: Experiment,
    file: &Path,
    base: &Path,
    out: &Path,
    vocab: &Vocabulary,
) -> Result<Resolved> {
    if e.name.trim().is_empty() {
        return Err(bad(file, "name", "must not be empty"));
    }
    if e.seeds.is_empty() {
        return Err(bad(file, "seeds", "needs at least one seed"));
    }
    if !(e.seconds > 0.0 && e.seconds <= limits::MAX_SECONDS) {
        return Err(bad(
            file,
            "seconds",
            format!("{} is outside 0-{} s", e.seconds, limits::MAX_SECONDS),
        ));
    }
    if e.backends.is_empty() {
        return Err(bad(file, "backend", "no [[backend]] tables"));
    }
    for (i, step) in e.setup.iter_mut().enumerate() {
        if step.run.is_empty() {
            return Err(bad(file, &format!("setup[{i}].run"), "is empty"));
        }
        for arg in &mut step.run {
            *arg = arg.replace("{out}", &out.to_string_lossy());
        }
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, b) in e.backends.iter_mut().enumerate() {
        let field = |f: &str| format!("backend[{i}] (`{}`).{f}", b.name);
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if b.name.is_empty() || !b.name.chars().all(ok_char) || b.name.starts_with('.') {
            return Err(bad(
                file,
                &format!("backend[{i}].name"),
                format!("`{}`: use letters, digits, `-`, `_` and `.`", b.name),
            ));
        }
        let kind = b.kind().map_err(|err| bad(file, &field("kind"), err))?;
        if let Some(f) = b.misplaced(kind).first() {
            return Err(bad(
                file,
                &field(f),
                format!("does not apply to a {} backend", b.kind),
            ));
        }
        match kind {
            BackendKind::Reference if b.clips.is_none() => {
                return Err(bad(
                    file,
                    &field("clips"),
                    "a reference backend needs `clips`",
                ))
            }
            BackendKind::Musicgen if b.model.is_none() => {
                return Err(bad(
                    file,
                    &field("model"),
                    "a musicgen backend needs `model`",
                ))
            }
            _ => {}
        }
        if let Some(g) = b.guidance {
            limits::in_range("guidance", g, &limits::GUIDANCE, "")
                .map_err(|err| bad(file, &field("guidance"), err))?;
        }
        if let Some(steps) = b.steps {
            limits::count("steps", steps, limits::MAX_STEPS)
                .map_err(|err| bad(file, &field("steps"), err))?;
        }
        for p in [&mut b.model, &mut b.clips].into_iter().flatten() {
            *p = resolve_path(p, base, out);
        }
    }
    for (i, b) in e.backends.iter().enumerate() {
        if names.contains(&b.name.as_str()) {
            return Err(bad(
                file,
                &format!("backend[{i}].name"),
                format!("`{}` is used twice", b.name),
            ));
        }
        names.push(&b.name);
    }
    let generating = e.backends.iter().any(|b| b.generates());
    if generating && e.prompts.is_empty() {
        return Err(bad(
            file,
            "prompt",
            "generating backends need [[prompt]] tables",
        ));
    }
    let has_reference = e.backends.iter().any(|b| !b.generates());
    if e.classifiers.knn.is_none() && !has_reference {
        return Err(bad(
            file,
            "classifiers.knn",
            "give a kNN classifier folder, or a reference backend to fit one on",
        ));
    }
    for p in [&mut e.classifiers.cnn, &mut e.classifiers.knn]
        .into_iter()
        .flatten()
    {
        *p = resolve_path(p, base, out);
    }
    let mut prompts: Vec<Prompt> = Vec::new();
    for (i, p) in e.prompts.iter().enumerate() {
        let field = |f: &str| format!("prompt[{i}].{f}");
        let raga = vocab
            .raga(&p.raga)
            .map_err(|err| bad(file, &field("raga"), err))?;
        if let Some(t) = p.tonic_hz {
            limits::in_range("tonic_hz", t, &limits::TONIC_HZ, " Hz")
                .map_err(|err| bad(file, &field("tonic_hz"), err))?;
        }
        let id = p.id.clone().unwrap_or_else(|| format!("p{}", i + 1));
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(bad(
                file,
                &field("id"),
                format!("`{id}`: use letters, digits, `-` and `_`"),
            ));
        }
        if prompts.iter().any(|q| q.id == id) {
            return Err(bad(file, &field("id"), format!("`{id}` is used twice")));
        }
        let text = match &p.text {
            Some(t) => t.clone(),
            None => vocab
                .caption_of_labels(
                    &raga.name,
                    p.tala.as_deref(),
                    p.segment.as_deref(),
                    p.composer.as_deref(),
                    p.instrument.as_deref(),
                )
                .map_err(|err| bad(file, &field("text"), err))?,
        };
        prompts.push(Prompt {
            id,
            text,
            raga: raga.name.clone(),
            tonic_hz: p.tonic_hz,
        });
    }
    Ok(Resolved {
        file: file.to_path_buf(),
        experiment: e,
        prompts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
seeds = [1, 2]

[[backend]]
name = "ref"
kind = "reference"
clips = "{out}/ref"

[[backend]]
name = "mg"
kind = "musicgen"
model = "models/mg"
guidance = 3.0

[[prompt]]
raga = "mohanam"
tonic_hz = 146.83
segment = "alapana"

[[prompt]]
id = "kal"
text = "kalyani raga"
raga = "Kalyani"
"#;

    fn load(text: &str) -> Result<Resolved> {
        let e: Experiment = toml::from_str(text)
            .map_err(|e| Error::invalid_data(Path::new("x.toml"), e.to_string()))?;
        resolve(
            e,
            Path::new("x.toml"),
            Path::new("/base"),
            Path::new("/out"),
            Vocabulary::builtin(),
        )
    }

    #[test]
    fn paths_resolve_and_prompts_are_composed() {
        let r = load(GOOD).unwrap();
        assert_eq!(
            r.backends()[0].clips.as_deref(),
            Some(Path::new("/out/ref"))
        );
        assert_eq!(
            r.backends()[1].model.as_deref(),
            Some(Path::new("/base/models/mg"))
        );
        assert_eq!(r.reference().unwrap().name, "ref");
        assert_eq!(r.prompts[0].id, "p1");
        assert_eq!(r.prompts[0].raga, "Mohanam");
        assert!(
            r.prompts[0].text.contains("Mohanam"),
            "{}",
            r.prompts[0].text
        );
        assert_eq!(r.prompts[1].text, "kalyani raga");
        assert_eq!(r.prompts[1].tonic_hz, None);
    }

    #[test]
    fn mistakes_name_the_field() {
        let cases = [
            (
                GOOD.replace("\"mohanam\"", "\"nosuchraga\""),
                "prompt[0].raga",
            ),
            (
                GOOD.replace("tonic_hz = 146.83", "tonic_hz = -1.0"),
                "prompt[0].tonic_hz",
            ),
            (
                GOOD.replace("guidance = 3.0", "steps = 3"),
                "backend[1] (`mg`).steps",
            ),
            (
                GOOD.replace("kind = \"musicgen\"", "kind = \"gan\""),
                "backend[1] (`mg`).kind",
            ),
            (
                GOOD.replace("name = \"mg\"", "name = \"ref\""),
                "backend[1].name",
            ),
            (
                GOOD.replace("name = \"mg\"", "name = \"a/b\""),
                "backend[1].name",
            ),
            (GOOD.replace("clips = \"{out}/ref\"", ""), "clips"),
            (
                GOOD.replace("model = \"models/mg\"", ""),
                "backend[1] (`mg`).model",
            ),
            (GOOD.replace("seeds = [1, 2]", "seeds = []"), "seeds"),
            (
                GOOD.replace("segment = \"alapana\"", "segment = \"solo\""),
                "prompt[0].text",
            ),
            (GOOD.replace("id = \"kal\"", "id = \"p1\""), "prompt[1].id"),
            (GOOD.replace("seeds = [1, 2]", "colour = 1"), "colour"),
        ];
        for (text, field) in cases {
            let e = load(&text).unwrap_err().to_string();
            assert!(e.contains(field), "expected {field} in: {e}");
        }
    }

    #[test]
    fn a_knn_needs_a_reference_or_a_folder() {
        let no_ref = GOOD.replace(
            "kind = \"reference\"\nclips = \"{out}/ref\"",
            "kind = \"musicgen\"\nmodel = \"m\"",
        );
        let e = load(&no_ref).unwrap_err().to_string();
        assert!(e.contains("classifiers.knn"), "{e}");
        let text = no_ref.replacen(
            "[[backend]]",
            "[classifiers]\nknn = \"{out}/knn\"\n\n[[backend]]",
            1,
        );
        let r = load(&text).unwrap();
        assert_eq!(
            r.experiment.classifiers.knn.as_deref(),
            Some(Path::new("/out/knn"))
        );
    }

    #[test]
    fn a_diffusion_backend_may_leave_the_model_to_the_default() {
        let text = GOOD.replace(
            "kind = \"musicgen\"\nmodel = \"models/mg\"",
            "kind = \"diffusion\"",
        );
        let r = load(&text).unwrap();
        assert_eq!(r.backends()[1].model, None);
    }
}
