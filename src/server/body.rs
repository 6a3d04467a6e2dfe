//! A job's JSON body to the engine's job. The body is
//! `{"kind": VERB, ...}`: VERB is the command-line verb (`generate`,
//! `audio-to-audio`, `interpolate`, `analyze`, `score-video`) and the other fields are
//! that verb's flags in snake_case. Files are named by upload id, models
//! by the names `GET /api/models` lists; output folders, devices and
//! precision are the server's.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::api_error::ApiError;
use super::models::ModelEntry;
use super::uploads::Uploads;
use crate::captions::shruti::parse_tonic;
use crate::captions::Vocabulary;
use crate::choice::Choice;
use crate::engine::score_video::{plan, OriginalSound, ScoreVideoRequest};
use crate::engine::{
    defaults, AnalyzeRequest, Backend, GenerateRequest, ModelSpec, MusicgenOptions, Task, Work,
};
use crate::error::{Error, Result};
use crate::raga::inspect::InspectOptions;

/// The job kinds, as their command-line verbs.
pub const KINDS: [&str; 5] = [
    "generate",
    "audio-to-audio",
    "interpolate",
    "analyze",
    "score-video",
];

/// Every field any kind takes; each kind allows the ones [`allowed`] lists.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    prompt: Option<String>,
    seed: Option<u64>,
    backend: Option<String>,
    model: Option<String>,
    steps: Option<usize>,
    inference_steps: Option<usize>,
    batch: Option<usize>,
    seconds: Option<f64>,
    overlap_ms: Option<u32>,
    negative: Option<String>,
    guidance: Option<f64>,
    scheduler: Option<String>,
    tonic: Option<Tonic>,
    quality: Option<String>,
    name: Option<String>,
    input: Option<String>,
    strength: Option<f64>,
    mask: Option<String>,
    from: Option<String>,
    to: Option<String>,
    raga: Option<String>,
    max_seconds: Option<f64>,
    top: Option<usize>,
    #[serde(rename = "continue")]
    continue_from: Option<String>,
    greedy: Option<bool>,
    top_k: Option<usize>,
    top_p: Option<f64>,
    temperature: Option<f64>,
    window_s: Option<f64>,
    stride_s: Option<f64>,
    video: Option<String>,
    loudness: Option<f64>,
    fade_in: Option<f64>,
    fade_out: Option<f64>,
    keep_original: Option<bool>,
    duck: Option<bool>,
    original_gain: Option<f64>,
    start: Option<f64>,
    end: Option<f64>,
    format: Option<String>,
}

/// A tonic as Hz, or as the command line writes it (`D`, `146.8`,
/// `2 kattai`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Tonic {
    Hz(f64),
    Text(String),
}

impl Tonic {
    fn hz(&self) -> Result<f64> {
        match self {
            Tonic::Hz(hz) => Ok(*hz),
            Tonic::Text(t) => parse_tonic(t),
        }
    }
}

const SAMPLING: [&str; 8] = [
    "prompt",
    "seed",
    "model",
    "negative",
    "guidance",
    "scheduler",
    "tonic",
    "name",
];

/// MusicGen's sampling fields.
const MUSICGEN: [&str; 6] = [
    "greedy",
    "top_k",
    "top_p",
    "temperature",
    "window_s",
    "stride_s",
];

/// The fields of `score-video` besides the sampling ones.
const SCORE_VIDEO: [&str; 12] = [
    "video",
    "backend",
    "steps",
    "loudness",
    "fade_in",
    "fade_out",
    "keep_original",
    "duck",
    "original_gain",
    "start",
    "end",
    "format",
];

/// The fields a kind takes besides `kind`.
fn allowed(kind: &str) -> Vec<&'static str> {
    let mut f: Vec<&'static str> = match kind {
        "analyze" => return vec!["input", "tonic", "raga", "max_seconds", "top"],
        "interpolate" => vec![
            "from",
            "to",
            "steps",
            "inference_steps",
            "model",
            "tonic",
            "guidance",
            "scheduler",
            "negative",
            "name",
        ],
        "audio-to-audio" => [&SAMPLING[..], &["input", "steps", "strength", "mask"]].concat(),
        "score-video" => [&SAMPLING[..], &SCORE_VIDEO[..], &MUSICGEN[..]].concat(),
        _ => [
            &SAMPLING[..],
            &["backend", "steps", "batch", "seconds", "continue"],
            &MUSICGEN[..],
        ]
        .concat(),
    };
    f.extend(["overlap_ms", "quality"]);
    f
}

/// Flags of the command line the server sets itself, and why.
const SERVER_FIELDS: [(&str, &str); 6] = [
    ("out", "the server writes each job into its own folder"),
    (
        "device",
        "set when the server starts (`ragafusion serve --device`)",
    ),
    (
        "dtype",
        "set when the server starts (`ragafusion serve --dtype`)",
    ),
    ("variant", "set by the model's folder"),
    ("attention_slice", "set by the server"),
    (
        "init_latents",
        "not taken by the server; use the command line",
    ),
];

/// What the server knows to resolve names in a body.
#[derive(Debug)]
pub struct Resolver<'a> {
    /// The models jobs may name; the first is the default.
    pub models: &'a [ModelEntry],
    /// Uploaded files, by id.
    pub uploads: &'a Uploads,
    /// Device of every model.
    pub device: &'a str,
    /// Compute dtype of every model.
    pub dtype: &'a str,
}

/// A body as a job's work, and the body's kind; errors name the field.
pub fn parse(body: &Value, r: &Resolver) -> std::result::Result<(String, Work), ApiError> {
    let Some(object) = body.as_object() else {
        return Err(Error::param("kind", "the body must be a JSON object").into());
    };
    let kind = match object.get("kind") {
        Some(Value::String(k)) if KINDS.contains(&k.as_str()) => k.clone(),
        Some(other) => {
            return Err(Error::param(
                "kind",
                format!("{other}: expected one of {}", KINDS.join(", ")),
            )
            .into())
        }
        None => {
            return Err(Error::param(
                "kind",
                format!("missing; expected one of {}", KINDS.join(", ")),
            )
            .into())
        }
    };
    let mut rest = object.clone();
    rest.remove("kind");
    for (field, why) in SERVER_FIELDS {
        if rest.contains_key(field) {
            return Err(Error::param(field, why).into());
        }
    }
    let allowed = allowed(&kind);
    if let Some(extra) = rest.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_field(
            extra.clone(),
            format!(
                "`{extra}` is not a field of {kind}; it takes {}",
                allowed.join(", ")
            ),
        ));
    }
    let fields: Fields =
        serde_path_to_error::deserialize(Value::Object(rest.clone())).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            let field = if path == "." {
                unknown_field(&inner).unwrap_or_else(|| "body".into())
            } else {
                path
            };
            ApiError::bad_field(field, inner)
        })?;
    let work = match kind.as_str() {
        "analyze" => analyze(&fields, r)?,
        "score-video" => score_video(&fields, r)?,
        _ => generation(&kind, &fields, r)?,
    };
    Ok((kind, work))
}

/// The field of serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

fn required<'a, T>(value: &'a Option<T>, field: &'static str) -> Result<&'a T> {
    value.as_ref().ok_or_else(|| Error::param(field, "missing"))
}

fn analyze(f: &Fields, r: &Resolver) -> Result<Work> {
    let input = r.uploads.path(required(&f.input, "input")?, "input")?;
    let raga = f.raga.clone().filter(|s| !s.trim().is_empty());
    if let Some(name) = &raga {
        Vocabulary::builtin().raga(name)?;
    }
    let top = f.top.unwrap_or(5);
    crate::limits::count("top", top, 50)?;
    Ok(Work::Analyze(AnalyzeRequest {
        input,
        model: None,
        options: InspectOptions {
            tonic_hz: f.tonic.as_ref().map(Tonic::hz).transpose()?,
            raga,
            max_seconds: f.max_seconds.unwrap_or(60.0),
            top,
        },
    }))
}

fn generation(kind: &str, f: &Fields, r: &Resolver) -> Result<Work> {
    let (model, request) = music(kind, f, r)?;
    Ok(Work::Generate {
        model,
        request: Box::new(request),
    })
}

/// The model and the generation request a body names, checked.
fn music(kind: &str, f: &Fields, r: &Resolver) -> Result<(ModelSpec, GenerateRequest)> {
    let backend = f.backend.as_deref().map(Backend::from_name).transpose()?;
    let model = pick_model(r.models, f.model.as_deref(), backend)?;
    let text_prompt = || required(&f.prompt, "prompt").cloned();
    let (task, prompt, seed, steps) = match kind {
        "interpolate" => {
            let (p0, s0) = parse_point(required(&f.from, "from")?, "from")?;
            let (p1, s1) = parse_point(required(&f.to, "to")?, "to")?;
            let clips = f.steps.unwrap_or(defaults::INTERPOLATION_CLIPS);
            let task = Task::Interpolate {
                to_prompt: p1,
                to_seed: s1,
                clips,
            };
            (task, p0, s0, f.inference_steps)
        }
        "audio-to-audio" => {
            let task = Task::AudioToAudio {
                input: r.uploads.path(required(&f.input, "input")?, "input")?,
                strength: f.strength.unwrap_or(defaults::STRENGTH),
                mask: f
                    .mask
                    .as_deref()
                    .map(|m| r.uploads.path(m, "mask"))
                    .transpose()?,
            };
            (
                task,
                text_prompt()?,
                f.seed.unwrap_or(defaults::SEED),
                f.steps,
            )
        }
        _ => (
            Task::Text,
            text_prompt()?,
            f.seed.unwrap_or(defaults::SEED),
            f.steps,
        ),
    };
    let d = MusicgenOptions::default();
    let musicgen = MusicgenOptions {
        continue_from: f
            .continue_from
            .as_deref()
            .map(|c| r.uploads.path(c, "continue"))
            .transpose()?,
        greedy: f.greedy.unwrap_or(d.greedy),
        top_k: f.top_k.unwrap_or(d.top_k),
        top_p: f.top_p.unwrap_or(d.top_p),
        temperature: f.temperature.unwrap_or(d.temperature),
        window_s: f.window_s.unwrap_or(d.window_s),
        stride_s: f.stride_s.unwrap_or(d.stride_s),
    };
    let request = GenerateRequest {
        task,
        negative: f.negative.clone(),
        seconds: f.seconds,
        tonic_hz: f.tonic.as_ref().map(Tonic::hz).transpose()?,
        sampler: f.scheduler.as_deref().map(Choice::from_name).transpose()?,
        steps,
        guidance: f.guidance,
        batch: f.batch.unwrap_or(1),
        overlap_ms: f.overlap_ms.unwrap_or(defaults::OVERLAP_MS),
        quality: f
            .quality
            .as_deref()
            .map(Choice::from_name)
            .transpose()?
            .unwrap_or(defaults::QUALITY),
        musicgen,
        name: f.name.clone(),
        ..GenerateRequest::new(prompt, seed)
    };
    request.check(model.backend)?;
    let spec = ModelSpec {
        backend: model.backend,
        dir: Some(model.path.clone()),
        device: r.device.to_string(),
        dtype: r.dtype.to_string(),
        variant: None,
        attention_slice: None,
    };
    Ok((spec, request))
}

/// A `score-video` body: the music's request, the video upload and the
/// mixing settings, checked against the video (so a picture-less or empty
/// file is refused before it is queued). `format` picks the container
/// (default the upload's own).
fn score_video(f: &Fields, r: &Resolver) -> Result<Work> {
    let (model, music) = music("score-video", f, r)?;
    let video = r.uploads.path(required(&f.video, "video")?, "video")?;
    let d = ScoreVideoRequest::new(video, music);
    let request = ScoreVideoRequest {
        loudness_lufs: f.loudness.unwrap_or(d.loudness_lufs),
        fade_in_s: f.fade_in.unwrap_or(d.fade_in_s),
        fade_out_s: f.fade_out.unwrap_or(d.fade_out_s),
        original: OriginalSound {
            keep: f.keep_original.unwrap_or(false),
            gain_db: f.original_gain.unwrap_or(0.0),
            duck: f.duck.unwrap_or(false),
        },
        start_s: f.start,
        end_s: f.end,
        ..d
    };
    const FORMATS: [&str; 4] = ["mp4", "mov", "mkv", "webm"];
    let own = request
        .video
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .filter(|e| FORMATS.contains(&e.as_str()));
    let format = f.format.clone().or(own).unwrap_or_else(|| "mp4".into());
    if !FORMATS.contains(&format.as_str()) {
        return Err(Error::param(
            "format",
            format!("`{format}`: expected mp4, mov, mkv or webm"),
        ));
    }
    let out_name = format!("scored.{format}");
    plan(&request, model.backend, Path::new(&out_name), Path::new("")).map_err(|e| match e {
        Error::InvalidVideo { reason, .. } => Error::param("video", reason),
        Error::InvalidParameter {
            field: "out",
            reason,
        } => Error::param("format", reason),
        other => other,
    })?;
    Ok(Work::ScoreVideo {
        model,
        request: Box::new(request),
        out_name,
    })
}

fn parse_point(text: &str, field: &'static str) -> Result<(String, u64)> {
    crate::engine::request::parse_point(text, field)
}

/// The model a body names, or the first of `backend`'s (the default when
/// neither is given).
fn pick_model<'a>(
    models: &'a [ModelEntry],
    name: Option<&str>,
    backend: Option<Backend>,
) -> Result<&'a ModelEntry> {
    let names = || {
        let all: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        all.join(", ")
    };
    let found = match name {
        Some(n) => models
            .iter()
            .find(|m| m.name == n)
            .ok_or_else(|| Error::param("model", format!("`{n}`: expected one of {}", names())))?,
        None => models
            .iter()
            .find(|m| backend.is_none_or(|b| m.backend == b))
            .ok_or_else(|| {
                let b = backend.map(|b| b.to_string()).unwrap_or_default();
                Error::param(
                    "backend",
                    format!("no {b} model is loaded (models: {})", names()),
                )
            })?,
    };
    if let Some(b) = backend.filter(|b| *b != found.backend) {
        return Err(Error::param(
            "backend",
            format!("`{b}`, but the model {} is {}", found.name, found.backend),
        ));
    }
    Ok(found)
}
