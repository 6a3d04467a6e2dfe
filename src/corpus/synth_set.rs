//! Rendering a folder of labelled clips: `NAME_INDEX.wav` plus
//! `NAME_INDEX.json` (the label), in parallel. A clip whose label exists is
//! skipped, so an interrupted run resumes; the label is written last.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

use super::synth::{render, SynthSegment, SynthSpec, Timbre};
use crate::audio::{write_wav, WavFormat};
use crate::captions::{stable_hash, Vocabulary};
use crate::error::{Error, Result};
use crate::fsutil::write_json_atomic;
use crate::progress::Progress;

/// Choices that override the per-clip random ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynthOverrides {
    /// Fixed timbre.
    pub timbre: Option<Timbre>,
    /// Fixed segment type.
    pub segment: Option<SynthSegment>,
    /// Fixed tala (metred segments).
    pub tala: Option<String>,
    /// Fixed tonic, Hz.
    pub tonic_hz: Option<f64>,
    /// Fixed tempo, BPM.
    pub tempo_bpm: Option<f64>,
    /// Force percussion on (`Some(true)`) or off.
    pub percussion: Option<bool>,
    /// Leave out the drone.
    pub no_drone: bool,
    /// Recorded strokes for the percussion.
    pub stroke_kit: Option<std::sync::Arc<super::synth::stroke_kit::StrokeKit>>,
}

/// What a set render did.
#[derive(Debug, Default, serde::Serialize)]
pub struct SetReport {
    /// Clips rendered now.
    pub rendered: usize,
    /// Clips already present.
    pub skipped: usize,
    /// The clips' WAV paths, in order.
    pub files: Vec<PathBuf>,
}

/// File-name stem of clip `index` of `raga`: lower-case ASCII, words joined
/// by `_`.
pub fn clip_stem(raga: &str, index: usize) -> String {
    let name: String = raga
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}_{index:05}")
}

/// The spec of clip `index` of `raga` in a set seeded by `seed`.
pub fn clip_spec(
    vocab: &Vocabulary,
    raga: &str,
    index: usize,
    seed: u64,
    duration_s: f64,
    o: &SynthOverrides,
) -> SynthSpec {
    let clip_seed = stable_hash(&format!("{seed}/{raga}/{index}"));
    let mut spec = SynthSpec::random(vocab, raga, clip_seed, duration_s);
    if let Some(t) = o.timbre {
        spec.timbre = t;
    }
    if let Some(s) = o.segment {
        spec.segment = s;
        if !s.metred() {
            spec.tala = None;
            spec.percussion = false;
        } else if spec.tala.is_none() {
            spec.tala = Some("Adi".into());
        }
    }
    if spec.segment.metred() {
        if let Some(t) = &o.tala {
            spec.tala = Some(t.clone());
        }
        if let Some(p) = o.percussion {
            spec.percussion = p;
        }
    }
    if let Some(t) = o.tonic_hz {
        spec.tonic_hz = t;
    }
    if let Some(b) = o.tempo_bpm {
        spec.tempo_bpm = b;
    }
    spec.drone = !o.no_drone;
    spec.stroke_kit = o.stroke_kit.clone();
    spec
}

/// A set of labelled clips to render.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynthSet {
    /// Ragas, any spelling the vocabulary knows; empty: every raga.
    pub ragas: Vec<String>,
    /// Clips per raga.
    pub count: usize,
    /// Seed of the set: each clip's choices follow from it, the raga and
    /// the clip's index.
    pub seed: u64,
    /// Clip length, seconds.
    pub duration_s: f64,
    /// Choices fixed for every clip.
    pub overrides: SynthOverrides,
}

/// Renders `set.count` clips per raga into `out_dir`.
pub fn render_set(
    vocab: &Vocabulary,
    out_dir: &Path,
    set: &SynthSet,
    progress: &dyn Progress,
) -> Result<SetReport> {
    let (count, seed, duration_s, overrides) =
        (set.count, set.seed, set.duration_s, &set.overrides);
    crate::limits::count("count", count, crate::limits::MAX_CLIPS)?;
    // Resolve every name first, so a typo fails before any work.
    let names: Vec<String> = if set.ragas.is_empty() {
        vocab.ragas.iter().map(|r| r.name.clone()).collect()
    } else {
        let known = set
            .ragas
            .iter()
            .map(|r| vocab.raga(r).map(|r| r.name.clone()));
        known.collect::<Result<_>>()?
    };
    if let Some(t) = &overrides.tala {
        vocab.tala(t)?;
    }
    crate::fsutil::create_dir(out_dir)?;
    let jobs: Vec<(String, usize)> = names
        .iter()
        .flat_map(|n| (0..count).map(move |i| (n.clone(), i)))
        .collect();
    progress.start(jobs.len() as u64, "clips");
    let rendered = AtomicUsize::new(0);
    let skipped = AtomicUsize::new(0);
    let cancelled = AtomicBool::new(false);
    let results: Vec<Result<PathBuf>> = jobs
        .par_iter()
        .map(|(raga, i)| {
            let stem = clip_stem(raga, *i);
            let wav = out_dir.join(format!("{stem}.wav"));
            let json = out_dir.join(format!("{stem}.json"));
            if cancelled.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            if json.exists() && wav.exists() {
                skipped.fetch_add(1, Ordering::Relaxed);
            } else {
                let spec = clip_spec(vocab, raga, *i, seed, duration_s, overrides);
                let clip = render(vocab, &spec)?;
                write_wav(&wav, &clip.mix, WavFormat::Pcm16)?;
                write_json_atomic(&json, &clip.label)?;
                rendered.fetch_add(1, Ordering::Relaxed);
            }
            if !progress.advance(1) {
                cancelled.store(true, Ordering::Relaxed);
            }
            Ok(wav)
        })
        .collect();
    progress.finish();
    let files = results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(SetReport {
        rendered: rendered.into_inner(),
        skipped: skipped.into_inner(),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    #[test]
    fn renders_resumes_and_labels() {
        let v = Vocabulary::builtin();
        let dir = tempfile::tempdir().unwrap();
        let ragas = vec!["thodi".to_string(), "Mohanam".to_string()];
        let set = |ragas: &[String], count| SynthSet {
            ragas: ragas.to_vec(),
            count,
            seed: 7,
            duration_s: 1.0,
            overrides: SynthOverrides::default(),
        };
        let r = render_set(v, dir.path(), &set(&ragas, 2), &NoProgress).unwrap();
        assert_eq!((r.rendered, r.skipped), (4, 0));
        assert!(dir.path().join("todi_00001.json").exists());
        let label: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("mohanam_00000.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(label["raga"], "Mohanam");
        assert!(label["swaras"].as_array().unwrap().len() > 1);
        let again = render_set(v, dir.path(), &set(&ragas, 2), &NoProgress).unwrap();
        assert_eq!((again.rendered, again.skipped), (0, 4));
        let bad = render_set(v, dir.path(), &set(&["Kalyanni q".into()], 1), &NoProgress);
        assert!(bad.unwrap_err().to_string().contains("unknown raga"));
    }
}
