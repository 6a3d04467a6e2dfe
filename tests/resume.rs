//! Interrupted generation continues on rerun: a job cancelled part-way
//! leaves its saved state in `OUT/.partial/`; running the same request
//! again into the same folder skips the finished work and writes the same
//! WAV and PNG bytes as a run that was never interrupted. Covers a single
//! clip (PNDM, whose multistep memory is saved), long form (DPM-Solver++),
//! audio-to-audio clip by clip (Euler ancestral, whose noise stream is
//! saved) and interpolation.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use common::narrow_pipeline;
use ragafusion::engine::resume::PARTIAL_DIR;
use ragafusion::engine::{Engine, GenerateRequest, ModelSpec, Task};
use ragafusion::{Error, NoProgress, Progress};

/// Cancels the job at its `stop_at`-th progress report; counts reports.
struct Stopper {
    stop_at: u64,
    calls: AtomicU64,
}

impl Stopper {
    fn new(stop_at: u64) -> Self {
        Self {
            stop_at,
            calls: AtomicU64::new(0),
        }
    }
}

impl Progress for Stopper {
    fn start(&self, _total: u64, _what: &str) {}
    fn advance(&self, _done: u64) -> bool {
        self.calls.fetch_add(1, Ordering::Relaxed) + 1 < self.stop_at
    }
    fn message(&self, _text: &str) {}
    fn finish(&self) {}
}

fn engine(dir: &Path) -> Engine {
    narrow_pipeline(dir);
    Engine::load(&ModelSpec {
        dir: Some(dir.to_path_buf()),
        ..ModelSpec::default()
    })
    .unwrap()
}

/// The WAV and PNG files of a folder, by name.
fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav" || e == "png"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Runs `request` once straight through, and once cancelled at the
/// `stop_at`-th progress report and then rerun; asserts the same files and
/// that the rerun skipped the `saved` reports' work (it reports restored
/// work in one call of its own).
fn interrupted_then_resumed(engine: &Engine, request: &GenerateRequest, stop_at: u64, saved: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
    let full = Stopper::new(u64::MAX);
    engine
        .generate_into(request, &whole, 0.0, &full, &mut |_| {})
        .unwrap();
    let full_calls = full.calls.load(Ordering::Relaxed);
    assert!(full_calls > stop_at, "{full_calls} reports");
    assert!(!whole.join(PARTIAL_DIR).exists());

    let e = engine
        .generate_into(request, &cut, 0.0, &Stopper::new(stop_at), &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    assert!(cut.join(PARTIAL_DIR).is_dir(), "nothing saved");

    let again = Stopper::new(u64::MAX);
    engine
        .generate_into(request, &cut, 0.0, &again, &mut |_| {})
        .unwrap();
    let resumed_calls = again.calls.load(Ordering::Relaxed);
    assert!(
        resumed_calls + saved <= full_calls + 1,
        "the rerun did the work again: {resumed_calls} reports of {full_calls}"
    );
    assert!(!cut.join(PARTIAL_DIR).exists(), "saved state left behind");
    let (a, b) = (outputs(&whole), outputs(&cut));
    assert!(!a.is_empty());
    assert_eq!(
        a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        b.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs after resuming");
    }
}

fn request(sampler: &str, steps: usize) -> GenerateRequest {
    GenerateRequest {
        steps: Some(steps),
        sampler: Some(sampler.parse().unwrap()),
        guidance: Some(2.0),
        name: Some("r".into()),
        ..GenerateRequest::new("Kalyani raga on veena", 5)
    }
}

#[test]
fn a_single_clip_resumes_with_the_samplers_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path());
    // cancelled after its fourth step, which is saved
    interrupted_then_resumed(&engine, &request("pndm", 6), 4, 4);
}

#[test]
fn long_form_resumes_at_its_step() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path());
    let r = GenerateRequest {
        seconds: Some(9.0),
        ..request("dpmpp-2m", 4)
    };
    // two windows, one report a step: cancelled inside the third step,
    // the state before it is saved
    interrupted_then_resumed(&engine, &r, 3, 2);
}

#[test]
fn audio_to_audio_resumes_after_its_finished_clips() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(&tmp.path().join("model"));
    // 12 s of a gliding tone: three clips
    let input = tmp.path().join("in.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 22_050,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&input, spec).unwrap();
    for i in 0..22_050 * 12 {
        let t = i as f32 / 22_050.0;
        let hz = 220.0 + 20.0 * t;
        w.write_sample((8000.0 * (std::f32::consts::TAU * hz * t).sin()) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    let r = GenerateRequest {
        task: Task::AudioToAudio {
            input,
            strength: 0.6,
            mask: None,
        },
        ..request("euler-a", 5)
    };
    // three steps a clip: cancelled inside the second clip, the first
    // is saved
    interrupted_then_resumed(&engine, &r, 5, 3);
}

#[test]
fn interpolation_resumes_after_its_finished_clips() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path());
    let r = GenerateRequest {
        task: Task::Interpolate {
            to_prompt: "Todi raga on flute".into(),
            to_seed: 9,
            clips: 3,
        },
        ..request("pndm", 3)
    };
    // four reports a clip, then its audio: cancelled while the first
    // clip's audio is made, after its latents are saved
    interrupted_then_resumed(&engine, &r, 5, 4);
}

#[test]
fn another_request_does_not_pick_up_saved_state() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(&tmp.path().join("model"));
    let out = tmp.path().join("out");
    let r = request("pndm", 4);
    let e = engine
        .generate_into(&r, &out, 0.0, &Stopper::new(2), &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, Error::Cancelled));
    let other = GenerateRequest {
        seed: 6,
        ..r.clone()
    };
    let fresh = Stopper::new(u64::MAX);
    engine
        .generate_into(&other, &out, 0.0, &fresh, &mut |_| {})
        .unwrap();
    let straight = Stopper::new(u64::MAX);
    engine
        .generate_into(&other, &tmp.path().join("o2"), 0.0, &straight, &mut |_| {})
        .unwrap();
    assert_eq!(
        fresh.calls.load(Ordering::Relaxed),
        straight.calls.load(Ordering::Relaxed),
        "did not run every step"
    );
    // the first request's state is still there for its own rerun
    assert!(out.join(PARTIAL_DIR).is_dir());
    engine
        .generate_into(&r, &out, 0.0, &NoProgress, &mut |_| {})
        .unwrap();
    assert!(!out.join(PARTIAL_DIR).exists());
}
