//! One request type for every kind of generation job, on either backend.

use std::path::PathBuf;

use super::defaults;
use crate::diffusion::SamplerKind;
use crate::error::{Error, Result};
use crate::limits;
use crate::spectrogram::Quality;

/// The model family a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// A Stable Diffusion checkpoint in the diffusers layout: spectrogram
    /// images, turned into audio by phase reconstruction.
    #[default]
    Diffusion,
    /// A MusicGen checkpoint in the transformers layout: codec tokens,
    /// turned into audio by EnCodec.
    Musicgen,
}

crate::choices!(Backend, "backend", [
    Diffusion => "diffusion": "spectrogram diffusion (WAV + PNG + JSON)",
    Musicgen => "musicgen": "MusicGen tokens (WAV + JSON)",
]);

/// What a job makes from its prompt and seed.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// Text to audio: one clip per batch item, or one long piece when
    /// `seconds` is longer than a clip.
    Text,
    /// A new version of a recording (diffusion): its spectrogram partly
    /// noised and denoised towards the prompt, clip by clip.
    AudioToAudio {
        /// The recording (any length).
        input: PathBuf,
        /// How much is re-generated: 0 keeps the input, 1 ignores it.
        strength: f64,
        /// Grayscale PNG the size of the input's spectrogram: white is
        /// repainted, black kept.
        mask: Option<PathBuf>,
    },
    /// Clips walking from the request's prompt and seed to another
    /// (diffusion), plus the clips joined into one file.
    Interpolate {
        /// The end point's prompt.
        to_prompt: String,
        /// The end point's seed.
        to_seed: u64,
        /// Clips from start to end, both included (at least 2).
        clips: usize,
    },
}

/// MusicGen's own settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MusicgenOptions {
    /// Audio whose codes start the sequence; the output begins with it.
    pub continue_from: Option<PathBuf>,
    /// The most likely token at every step instead of sampling.
    pub greedy: bool,
    /// Sample among the K most likely tokens (0: all).
    pub top_k: usize,
    /// Sample among the most likely tokens up to this total probability
    /// (0 or 1: off).
    pub top_p: f64,
    /// Sampling temperature.
    pub temperature: f64,
    /// The longest stretch the model sees at once, seconds.
    pub window_s: f64,
    /// New seconds per later window.
    pub stride_s: f64,
}

impl Default for MusicgenOptions {
    fn default() -> Self {
        Self {
            continue_from: None,
            greedy: false,
            top_k: defaults::MUSICGEN_TOP_K,
            top_p: defaults::MUSICGEN_TOP_P,
            temperature: defaults::MUSICGEN_TEMPERATURE,
            window_s: defaults::MUSICGEN_WINDOW_S,
            stride_s: defaults::MUSICGEN_STRIDE_S,
        }
    }
}

/// Everything a generation job needs besides the loaded model. Fields left
/// `None` take the model's settings (`ragafusion.json`), then
/// [`defaults`].
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// What to make.
    pub task: Task,
    /// The caption (MusicGen: empty generates unconditionally).
    pub prompt: String,
    /// What to steer away from (diffusion); default the empty prompt.
    pub negative: Option<String>,
    /// Seed of every random draw.
    pub seed: u64,
    /// Length, seconds (default one 5.12 s clip). Diffusion: longer than a
    /// clip is one long piece; MusicGen: new audio after any continuation.
    pub seconds: Option<f64>,
    /// The tonic asked for, Hz (diffusion models with a canonical tonic;
    /// default the caption's shruti phrase, else the model's tonic).
    pub tonic_hz: Option<f64>,
    /// Sampler (diffusion).
    pub sampler: Option<SamplerKind>,
    /// Denoising steps of a full-strength run (diffusion).
    pub steps: Option<usize>,
    /// Classifier-free guidance scale; 1 disables guidance.
    pub guidance: Option<f64>,
    /// Clips made at once, each its own output (diffusion text, single
    /// clips only).
    pub batch: usize,
    /// Columns shared by consecutive windows or joined clips, ms.
    pub overlap_ms: u32,
    /// A safetensors file whose tensor `latents` replaces the seed's
    /// initial noise (diffusion text, single clips only).
    pub init_latents: Option<PathBuf>,
    /// Spectrogram-to-audio trade-off (diffusion).
    pub quality: Quality,
    /// MusicGen's settings.
    pub musicgen: MusicgenOptions,
    /// Base name of the outputs; default from the prompt and seed.
    pub name: Option<String>,
}

impl GenerateRequest {
    /// A text-to-audio request with every other field at its default.
    pub fn new(prompt: impl Into<String>, seed: u64) -> Self {
        Self {
            task: Task::Text,
            prompt: prompt.into(),
            negative: None,
            seed,
            seconds: None,
            tonic_hz: None,
            sampler: None,
            steps: None,
            guidance: None,
            batch: 1,
            overlap_ms: defaults::OVERLAP_MS,
            init_latents: None,
            quality: defaults::QUALITY,
            musicgen: MusicgenOptions::default(),
            name: None,
        }
    }

    /// The files the request reads: the audio it re-generates or
    /// continues, its mask and its initial latents.
    pub fn input_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Task::AudioToAudio { input, mask, .. } = &self.task {
            files.push(input.clone());
            files.extend(mask.clone());
        }
        files.extend(self.init_latents.clone());
        files.extend(self.musicgen.continue_from.clone());
        files
    }

    /// Checks the fields that need no model, for `backend`; errors name
    /// the field.
    pub fn check(&self, backend: Backend) -> Result<()> {
        limits::count("batch", self.batch, limits::MAX_BATCH)?;
        limits::prompt("prompt", &self.prompt)?;
        if let Some(n) = &self.negative {
            limits::prompt("negative", n)?;
        }
        if let Task::Interpolate { to_prompt, .. } = &self.task {
            limits::prompt("to", to_prompt)?;
        }
        if let Some(s) = self.seconds {
            if !(s > 0.0 && s.is_finite()) {
                return Err(Error::param(
                    "seconds",
                    format!("must be positive, got {s}"),
                ));
            }
            limits::in_range("seconds", s, &(0.0..=limits::MAX_SECONDS), " s")?;
        }
        if let Some(g) = self.guidance {
            limits::in_range("guidance", g, &limits::GUIDANCE, "")?;
        }
        if let Some(steps) = self.steps {
            limits::count("steps", steps, limits::MAX_STEPS)?;
        }
        if let Some(t) = self.tonic_hz {
            limits::in_range("tonic", t, &limits::TONIC_HZ, " Hz")?;
        }
        if let Some(name) = &self.name {
            limits::file_name("name", name)?;
        }
        match &self.task {
            Task::Text => {}
            Task::AudioToAudio { strength, .. } => {
                if !(0.0..=1.0).contains(strength) {
                    return Err(Error::param(
                        "strength",
                        format!("must be in [0, 1], got {strength}"),
                    ));
                }
                // diffusers runs int(steps * strength) of the steps
                let idle = |s: &usize| *strength > 0.0 && (*s as f64 * strength) < 1.0;
                if let Some(steps) = self.steps.filter(idle) {
                    return Err(Error::param(
                        "steps",
                        format!("{steps} steps at strength {strength} denoise not once"),
                    ));
                }
            }
            Task::Interpolate { clips, .. } => {
                if *clips < 2 {
                    return Err(Error::param(
                        "steps",
                        "an interpolation needs at least 2 clips (the two end points)",
                    ));
                }
                limits::count("steps", *clips, limits::MAX_INTERPOLATION_CLIPS)?;
            }
        }
        match backend {
            Backend::Diffusion => {
                let (m, d) = (&self.musicgen, MusicgenOptions::default());
                let musicgen_only = [
                    (m.continue_from.is_some(), "continue"),
                    (m.greedy != d.greedy, "greedy"),
                    (m.top_k != d.top_k, "top-k"),
                    (m.top_p != d.top_p, "top-p"),
                    (m.temperature != d.temperature, "temperature"),
                    (m.window_s != d.window_s, "window-s"),
                    (m.stride_s != d.stride_s, "stride-s"),
                ];
                match musicgen_only.iter().find(|(given, _)| *given) {
                    Some((_, field)) => {
                        Err(Error::param(field, "applies to --backend musicgen only"))
                    }
                    None => Ok(()),
                }
            }
            Backend::Musicgen => self.check_musicgen(),
        }
    }

    fn check_musicgen(&self) -> Result<()> {
        let diffusion_only = [
            (
                self.task != Task::Text,
                "task (audio-to-audio, interpolate)",
            ),
            (self.negative.is_some(), "negative"),
            (self.init_latents.is_some(), "init-latents"),
            (self.batch != 1, "batch"),
            (self.tonic_hz.is_some(), "tonic"),
            (self.steps.is_some(), "steps"),
            (self.sampler.is_some(), "scheduler"),
        ];
        if let Some((_, field)) = diffusion_only.iter().find(|(given, _)| *given) {
            return Err(Error::param(field, "applies to --backend diffusion only"));
        }
        let m = &self.musicgen;
        for (v, field) in [(m.window_s, "window-s"), (m.stride_s, "stride-s")] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(Error::param(field, format!("must be positive, got {v}")));
            }
        }
        if m.stride_s >= m.window_s {
            return Err(Error::param(
                "stride-s",
                format!(
                    "{} must be shorter than window-s {}",
                    m.stride_s, m.window_s
                ),
            ));
        }
        if self.prompt.trim().is_empty() {
            if let Some(g) = self.guidance.filter(|g| *g > 1.0) {
                return Err(Error::param(
                    "guidance",
                    format!("{g} needs a prompt (an empty prompt generates unconditionally)"),
                ));
            }
        }
        Ok(())
    }
}

/// An interpolation end point written `PROMPT:SEED` (the seed after the
/// last `:`, so a prompt may hold colons); `field` names it in errors.
pub fn parse_point(text: &str, field: &'static str) -> Result<(String, u64)> {
    let Some((prompt, seed)) = text.rsplit_once(':') else {
        return Err(Error::param(
            field,
            format!("{text:?}: expected PROMPT:SEED"),
        ));
    };
    let seed = seed.trim().parse().map_err(|_| {
        Error::param(
            field,
            format!("{text:?}: the seed after the last ':' must be a whole number"),
        )
    })?;
    Ok((prompt.to_string(), seed))
}

#[cfg(test)]
mod tests {
    #[test]
    fn points() {
        assert_eq!(
            parse_point("raga: kalyani:7", "from").unwrap(),
            ("raga: kalyani".into(), 7)
        );
        assert!(parse_point("kalyani", "from").is_err());
        assert!(parse_point("kalyani:x", "from").is_err());
    }

    use super::*;

    #[test]
    fn bad_fields_are_named() {
        let ok = GenerateRequest::new("todi raga", 1);
        assert!(ok.check(Backend::Diffusion).is_ok());
        assert!(ok.check(Backend::Musicgen).is_ok());
        let cases: Vec<(GenerateRequest, Backend, &str)> = vec![
            (
                GenerateRequest {
                    batch: 0,
                    ..ok.clone()
                },
                Backend::Diffusion,
                "batch",
            ),
            (
                GenerateRequest {
                    seconds: Some(f64::NAN),
                    ..ok.clone()
                },
                Backend::Diffusion,
                "seconds",
            ),
            (
                GenerateRequest {
                    task: Task::AudioToAudio {
                        input: "a.wav".into(),
                        strength: 1.5,
                        mask: None,
                    },
                    ..ok.clone()
                },
                Backend::Diffusion,
                "strength",
            ),
            (
                GenerateRequest {
                    task: Task::Interpolate {
                        to_prompt: "x".into(),
                        to_seed: 2,
                        clips: 1,
                    },
                    ..ok.clone()
                },
                Backend::Diffusion,
                "steps",
            ),
            (
                GenerateRequest {
                    prompt: "kalyani ".repeat(1000),
                    ..ok.clone()
                },
                Backend::Diffusion,
                "prompt",
            ),
            (
                GenerateRequest {
                    negative: Some("noise".into()),
                    ..ok.clone()
                },
                Backend::Musicgen,
                "negative",
            ),
            (
                GenerateRequest {
                    musicgen: MusicgenOptions {
                        greedy: true,
                        ..Default::default()
                    },
                    ..ok.clone()
                },
                Backend::Diffusion,
                "greedy",
            ),
            (
                GenerateRequest {
                    musicgen: MusicgenOptions {
                        stride_s: 40.0,
                        ..Default::default()
                    },
                    ..ok.clone()
                },
                Backend::Musicgen,
                "stride-s",
            ),
            (
                GenerateRequest {
                    prompt: " ".into(),
                    guidance: Some(3.0),
                    ..ok.clone()
                },
                Backend::Musicgen,
                "guidance",
            ),
        ];
        for (r, backend, field) in cases {
            let e = r.check(backend).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }
}
