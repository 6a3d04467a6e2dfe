//! Running an experiment: every backend's clips are made (or read, for
//! reference clips), written under `OUT/clips/BACKEND/`, and measured.
//! Each clip's record (`CLIP.json`, beside `CLIP.wav` and `CLIP.png`)
//! holds a key of everything that made it; a rerun keeps the clips whose
//! key still matches and makes only the rest, loading a model only when
//! one of its clips is missing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::analysis::{analyse_clip, ClipAnalysis, Judges, ANALYSIS_VERSION};
use super::experiment::{BackendKind, BackendSpec, Prompt, Resolved};
use crate::audio::{read_audio, write_wav, Audio, WavFormat};
use crate::captions::{stable_hash, Vocabulary};
use crate::diffusion::defaults::default_model_dir;
use crate::engine::{defaults, Backend, Engine, GenerateRequest, ModelSpec, MusicgenOptions};
use crate::error::{Error, Result};
use crate::fsutil::write_json_atomic;
use crate::memory::{peak_rss_mib, reset_peak_rss};
use crate::progress::Progress;
use crate::raga::dataset::{list_labelled, LabelledClip};
use crate::spectrogram::image::DEFAULT_MAX_VALUE;
use crate::spectrogram::{write_png, SpectrogramConverter, SpectrogramParams};

/// One clip and its measurements, as stored in `CLIP.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipRecord {
    /// Hash of everything that made the clip; a mismatch remakes it.
    pub key: String,
    /// Backend name.
    pub backend: String,
    /// Clip id (`PROMPT-sSEED`, or a reference file's stem).
    pub clip: String,
    /// Prompt id (generated clips).
    pub prompt_id: Option<String>,
    /// The caption (generated clips).
    pub prompt: Option<String>,
    /// The raga the clip should be in.
    pub raga: String,
    /// Seed (generated clips).
    pub seed: Option<u64>,
    /// The file a reference clip came from.
    pub source: Option<PathBuf>,
    /// Length, seconds.
    pub duration_s: f64,
    /// Seconds to generate it, model loading excluded.
    pub generate_s: Option<f64>,
    /// Generation seconds per second of audio (below 1: faster than real
    /// time).
    pub real_time_factor: Option<f64>,
    /// Peak resident memory of the process while the backend ran, MiB.
    pub peak_rss_mib: Option<f64>,
    /// The audio, relative to the output folder.
    pub wav: String,
    /// The spectrogram image (the model's own for diffusion backends),
    /// relative to the output folder.
    pub png: String,
    /// The measurements.
    pub analysis: ClipAnalysis,
}

/// What is known of one backend's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendRun {
    /// Backend name.
    pub name: String,
    /// Its kind.
    pub kind: BackendKind,
    /// The model or clips folder.
    pub source: PathBuf,
    /// The settings that shaped its clips.
    pub settings: serde_json::Value,
    /// Seconds to load the model in the last run that loaded it.
    pub load_s: Option<f64>,
    /// Whether the peak memory counter was reset before loading (Linux
    /// `clear_refs`); when not, the peak includes earlier backends.
    pub peak_rss_isolated: bool,
    /// Content hash of the model folder (generating backends): part of
    /// every clip's key, so a retrained model's clips are made again.
    #[serde(default)]
    pub model_hash: Option<String>,
}

/// A content hash of every file in a model folder (recursively, in name
/// order; Markdown notes left out).
pub fn model_fingerprint(dir: &Path) -> Result<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.extension().is_none_or(|e| e != "md") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    crate::fsutil::content_hash(&files)
}

/// The engine of a generating backend.
pub fn load_engine(spec: &BackendSpec) -> Result<Engine> {
    let backend = match spec.kind()? {
        BackendKind::Diffusion => Backend::Diffusion,
        BackendKind::Musicgen => Backend::Musicgen,
        BackendKind::Reference => {
            return Err(Error::param(
                "kind",
                format!("backend `{}` reads clips; it has no generator", spec.name),
            ))
        }
    };
    if backend == Backend::Musicgen && spec.model.is_none() {
        return Err(Error::param(
            "model",
            format!("backend `{}` has no model", spec.name),
        ));
    }
    Engine::load(&ModelSpec {
        backend,
        dir: spec.model.clone(),
        device: spec
            .device
            .clone()
            .unwrap_or_else(|| defaults::DEVICE.into()),
        dtype: spec.dtype.clone().unwrap_or_else(|| defaults::DTYPE.into()),
        ..ModelSpec::default()
    })
}

/// The request a backend's settings make for one prompt, seed and length;
/// the tonic goes to models that play it (the caption carries it to the
/// others).
pub fn clip_request(
    spec: &BackendSpec,
    engine: &Engine,
    prompt: &Prompt,
    seed: u64,
    seconds: f64,
) -> Result<GenerateRequest> {
    let musicgen = MusicgenOptions::default();
    Ok(GenerateRequest {
        negative: spec.negative.clone(),
        seconds: Some(seconds),
        tonic_hz: prompt.tonic_hz.filter(|_| engine.plays_tonics()),
        sampler: spec.scheduler.as_deref().map(str::parse).transpose()?,
        steps: spec.steps,
        guidance: spec.guidance,
        quality: match &spec.quality {
            Some(q) => q.parse()?,
            None => defaults::QUALITY,
        },
        musicgen: MusicgenOptions {
            greedy: spec.greedy.unwrap_or(musicgen.greedy),
            top_k: spec.top_k.unwrap_or(musicgen.top_k),
            top_p: spec.top_p.unwrap_or(musicgen.top_p),
            temperature: spec.temperature.unwrap_or(musicgen.temperature),
            ..musicgen
        },
        ..GenerateRequest::new(prompt.text.clone(), seed)
    })
}

/// The settings of a backend as written in the experiment (the source of
/// its clips' keys).
fn spec_settings(spec: &BackendSpec) -> serde_json::Value {
    let mut v = serde_json::to_value(spec).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        map.retain(|_, x| !x.is_null());
    }
    v
}

/// Reports an inner job's progress as the status of the clip bar; the
/// outer sink decides cancellation.
struct Inner<'a> {
    outer: &'a dyn Progress,
    label: String,
    total: AtomicU64,
    done: AtomicU64,
    what: Mutex<String>,
}

impl Progress for Inner<'_> {
    fn start(&self, total: u64, what: &str) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        if let Ok(mut w) = self.what.lock() {
            *w = what.to_string();
        }
        self.outer.status(&format!("{}: {what}", self.label));
    }
    fn advance(&self, done: u64) -> bool {
        let d = self.done.fetch_add(done, Ordering::Relaxed) + done;
        let what = self.what.lock().map(|w| w.clone()).unwrap_or_default();
        self.outer.status(&format!(
            "{}: {what} {d}/{}",
            self.label,
            self.total.load(Ordering::Relaxed)
        ));
        self.outer.advance(0)
    }
    fn message(&self, text: &str) {
        self.outer.message(text);
    }
    fn finish(&self) {}
}

/// Where a clip's files go.
struct ClipFiles {
    json: PathBuf,
    wav: PathBuf,
    png: PathBuf,
    wav_rel: String,
    png_rel: String,
}

fn clip_files(out: &Path, backend: &str, clip: &str) -> ClipFiles {
    let rel = |ext: &str| format!("clips/{backend}/{clip}.{ext}");
    ClipFiles {
        json: out.join(rel("json")),
        wav: out.join(rel("wav")),
        png: out.join(rel("png")),
        wav_rel: rel("wav"),
        png_rel: rel("png"),
    }
}

/// The stored record at `json` if its key is `key`, its analysis current
/// and its files present.
fn stored(files: &ClipFiles, key: &str) -> Option<ClipRecord> {
    let text = std::fs::read_to_string(&files.json).ok()?;
    let r: ClipRecord = serde_json::from_str(&text).ok()?;
    (r.key == key
        && r.analysis.version == ANALYSIS_VERSION
        && files.wav.is_file()
        && files.png.is_file())
    .then_some(r)
}

/// Writes the riffusion spectrogram of `audio` as `png`.
fn write_spectrogram(png: &Path, audio: &Audio) -> Result<()> {
    let params = SpectrogramParams::default();
    let audio = crate::audio::resample(
        &audio.clone().with_layout(crate::audio::ChannelLayout::Mono),
        params.sample_rate_hz,
    )?;
    let (image, max) = SpectrogramConverter::new(params.clone())?.image_from_audio(&audio)?;
    write_png(png, &image, &params, max)
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Every clip of every backend, in backend order.
    pub clips: Vec<ClipRecord>,
    /// One entry per backend.
    pub backends: Vec<BackendRun>,
}

/// Runs (or resumes) every backend of `exp` into `out`. An error inside a
/// backend names the experiment file and the backend, then the cause.
pub fn run_experiment(
    exp: &Resolved,
    out: &Path,
    judges: &Judges,
    vocab: &Vocabulary,
    load: &dyn Fn(&BackendSpec) -> Result<Engine>,
    progress: &dyn Progress,
) -> Result<RunOutput> {
    let within = |i: usize, spec: &BackendSpec| {
        let context = format!("{}: backend[{i}] (`{}`)", exp.file.display(), spec.name);
        move |e: Error| match e {
            Error::Cancelled => e,
            e => Error::Within {
                context: context.clone(),
                source: Box::new(e),
            },
        }
    };
    let seeds = &exp.experiment.seeds;
    let mut references = Vec::new();
    let mut total = 0u64;
    for (i, spec) in exp.backends().iter().enumerate() {
        check_paths(spec).map_err(within(i, spec))?;
        if let Some(dir) = spec.clips.as_deref().filter(|_| !spec.generates()) {
            let clips = list_labelled(dir, vocab).map_err(within(i, spec))?;
            total += clips.len() as u64;
            references.push(clips);
        } else {
            total += (exp.prompts.len() * seeds.len()) as u64;
            references.push(Vec::new());
        }
    }
    progress.start(total, "clips");
    let mut output = RunOutput {
        clips: Vec::new(),
        backends: Vec::new(),
    };
    let ctx = BackendContext {
        exp,
        out,
        judges,
        vocab,
        load,
        progress,
    };
    for (i, (spec, refs)) in exp.backends().iter().zip(references).enumerate() {
        let run = run_backend(&ctx, spec, refs, &mut output.clips).map_err(within(i, spec))?;
        output.backends.push(run);
    }
    progress.finish();
    Ok(output)
}

/// A backend's model and clips paths, when given, must exist (after the
/// setup steps, which may have made them).
fn check_paths(spec: &BackendSpec) -> Result<()> {
    if let Some(p) = spec.model.as_deref().filter(|p| !p.exists()) {
        let wanted = match spec.kind()? {
            BackendKind::Musicgen => "config.json",
            _ => "model_index.json",
        };
        return Err(Error::param(
            "model",
            format!(
                "{} does not exist (a model folder holds {wanted})",
                p.display()
            ),
        ));
    }
    if let Some(p) = spec.clips.as_deref().filter(|p| !p.exists()) {
        return Err(Error::param(
            "clips",
            format!("{} does not exist", p.display()),
        ));
    }
    Ok(())
}

/// What every backend of one run shares.
#[derive(Clone, Copy)]
struct BackendContext<'a> {
    exp: &'a Resolved,
    out: &'a Path,
    judges: &'a Judges,
    vocab: &'a Vocabulary,
    load: &'a dyn Fn(&BackendSpec) -> Result<Engine>,
    progress: &'a dyn Progress,
}

/// Runs (or resumes) one backend, appending its clips to `clips`; returns
/// its run record, also written to `clips/NAME/backend.json`.
fn run_backend(
    c: &BackendContext<'_>,
    spec: &BackendSpec,
    refs: Vec<LabelledClip>,
    clips: &mut Vec<ClipRecord>,
) -> Result<BackendRun> {
    let (out, progress) = (c.out, c.progress);
    let kind = spec.kind()?;
    let run_file = out.join("clips").join(&spec.name).join("backend.json");
    let previous: Option<BackendRun> = std::fs::read_to_string(&run_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let mut run = BackendRun {
        name: spec.name.clone(),
        kind,
        source: spec
            .model
            .clone()
            .or_else(|| spec.clips.clone())
            .or_else(|| default_model_dir().ok())
            .unwrap_or_default(),
        settings: spec_settings(spec),
        load_s: previous.as_ref().and_then(|p| p.load_s),
        peak_rss_isolated: previous.as_ref().is_some_and(|p| p.peak_rss_isolated),
        model_hash: None,
    };
    if kind != BackendKind::Reference && run.source.is_dir() {
        run.model_hash = Some(model_fingerprint(&run.source)?);
    }
    if kind == BackendKind::Reference {
        for clip in refs {
            let record = reference_clip(out, spec, &clip, c.judges, c.vocab)?;
            clips.push(record);
            if !progress.advance(1) {
                return Err(Error::Cancelled);
            }
        }
    } else {
        let mut generator: Option<(Engine, serde_json::Value)> = None;
        for prompt in &c.exp.prompts {
            for &seed in &c.exp.experiment.seeds {
                let record = generated_clip(c, spec, prompt, seed, &mut generator, &mut run)?;
                clips.push(record);
                if !progress.advance(1) {
                    return Err(Error::Cancelled);
                }
            }
        }
        if let Some((_, effective)) = &generator {
            run.settings = serde_json::json!({"experiment": spec_settings(spec),
                                              "effective": effective});
        } else if let Some(p) = &previous {
            run.settings = p.settings.clone();
        }
    }
    write_json_atomic(&run_file, &run)?;
    Ok(run)
}

/// One reference clip: the stored record when current, else read,
/// measured and copied into the output folder now.
fn reference_clip(
    out: &Path,
    spec: &BackendSpec,
    clip: &LabelledClip,
    judges: &Judges,
    vocab: &Vocabulary,
) -> Result<ClipRecord> {
    let id = clip
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let files = clip_files(out, &spec.name, &id);
    let len = std::fs::metadata(&clip.path).map(|m| m.len()).unwrap_or(0);
    let key_src = format!("{}|{len}|{:?}", clip.path.display(), clip.tonic_hz);
    let key = format!("{:016x}", stable_hash(&key_src));
    if let Some(r) = stored(&files, &key) {
        return Ok(r);
    }
    let audio = read_audio(&clip.path)?;
    let raga = vocab.raga(&clip.raga)?;
    let analysis = analyse_clip(&audio, raga, clip.tonic_hz, judges, vocab)
        .map_err(|e| Error::invalid_data(&clip.path, format!("measuring: {e}")))?;
    write_wav(&files.wav, &audio, WavFormat::Pcm16)?;
    write_spectrogram(&files.png, &audio)?;
    let record = ClipRecord {
        key,
        backend: spec.name.clone(),
        clip: id,
        prompt_id: None,
        prompt: None,
        raga: clip.raga.clone(),
        seed: None,
        source: Some(clip.path.clone()),
        duration_s: audio.duration_s(),
        generate_s: None,
        real_time_factor: None,
        peak_rss_mib: None,
        wav: files.wav_rel.clone(),
        png: files.png_rel.clone(),
        analysis,
    };
    write_json_atomic(&files.json, &record)?;
    Ok(record)
}

/// One generated clip: the stored one when current, else made now
/// (loading the backend's generator on first need).
#[allow(clippy::too_many_arguments)]
fn generated_clip(
    c: &BackendContext<'_>,
    spec: &BackendSpec,
    prompt: &Prompt,
    seed: u64,
    generator: &mut Option<(Engine, serde_json::Value)>,
    run: &mut BackendRun,
) -> Result<ClipRecord> {
    let BackendContext {
        exp,
        out,
        judges,
        vocab,
        load,
        progress,
    } = *c;
    let id = format!("{}-s{seed}", prompt.id);
    let files = clip_files(out, &spec.name, &id);
    let seconds = exp.experiment.seconds;
    let key_src = serde_json::json!({
        "backend": spec_settings(spec), "model": run.model_hash, "prompt": prompt, "seed": seed,
        "seconds": seconds,
    });
    let key = format!("{:016x}", stable_hash(&key_src.to_string()));
    if let Some(r) = stored(&files, &key) {
        return Ok(r);
    }
    if generator.is_none() {
        progress.status(&format!("{}: loading", spec.name));
        run.peak_rss_isolated = reset_peak_rss();
        let t0 = Instant::now();
        let engine = load(spec)?;
        run.load_s = Some(t0.elapsed().as_secs_f64());
        let request = clip_request(spec, &engine, prompt, seed, seconds)?;
        let effective = engine.effective_settings(&request)?;
        *generator = Some((engine, effective));
    }
    let Some((engine, _)) = generator.as_ref() else {
        return Err(Error::param(
            "backend",
            format!("`{}` did not load", spec.name),
        ));
    };
    let request = clip_request(spec, engine, prompt, seed, seconds)?;
    let inner = Inner {
        outer: progress,
        label: format!("{} {id}", spec.name),
        total: AtomicU64::new(0),
        done: AtomicU64::new(0),
        what: Mutex::new(String::new()),
    };
    let t0 = Instant::now();
    let made = engine.generate(&request, &inner)?.remove(0);
    let generate_s = t0.elapsed().as_secs_f64();
    let duration_s = made.audio.duration_s();
    let raga = vocab.raga(&prompt.raga)?;
    let analysis = analyse_clip(&made.audio, raga, prompt.tonic_hz, judges, vocab)
        .map_err(|e| Error::invalid_data(&files.wav, format!("measuring: {e}")))?;
    write_wav(&files.wav, &made.audio, WavFormat::Pcm16)?;
    match &made.image {
        Some((image, params)) => write_png(&files.png, image, params, DEFAULT_MAX_VALUE)?,
        None => write_spectrogram(&files.png, &made.audio)?,
    }
    let record = ClipRecord {
        key,
        backend: spec.name.clone(),
        clip: id,
        prompt_id: Some(prompt.id.clone()),
        prompt: Some(prompt.text.clone()),
        raga: prompt.raga.clone(),
        seed: Some(seed),
        source: None,
        duration_s,
        generate_s: Some(generate_s),
        real_time_factor: Some(generate_s / duration_s.max(1e-9)),
        peak_rss_mib: peak_rss_mib(),
        wav: files.wav_rel.clone(),
        png: files.png_rel.clone(),
        analysis,
    };
    write_json_atomic(&files.json, &record)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_fingerprint_follows_the_weights_not_the_notes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("unet")).unwrap();
        std::fs::write(d.path().join("unet/w.safetensors"), b"one").unwrap();
        std::fs::write(d.path().join("README.md"), b"card").unwrap();
        let a = model_fingerprint(d.path()).unwrap();
        std::fs::write(d.path().join("README.md"), b"a new card").unwrap();
        assert_eq!(model_fingerprint(d.path()).unwrap(), a);
        std::fs::write(d.path().join("unet/w.safetensors"), b"two").unwrap();
        assert_ne!(model_fingerprint(d.path()).unwrap(), a);
        assert!(model_fingerprint(&d.path().join("none")).is_err());
    }
}
