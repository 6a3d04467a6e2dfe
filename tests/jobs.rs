//! The engine's job queue on a real model (the tiny test pipeline): a job
//! runs to its files with progress, the model is loaded once for several
//! jobs, and a running job stops when cancelled.

use std::path::Path;
use std::sync::mpsc;

use ragafusion::engine::jobs::{Job, JobEvent, JobState};
use ragafusion::{GenerateRequest, JobQueue, ModelSpec};

fn job(out: &Path, seed: u64, steps: usize) -> Job {
    Job::generate(
        ModelSpec {
            dir: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sd-tiny")),
            ..ModelSpec::default()
        },
        GenerateRequest {
            steps: Some(steps),
            name: Some(format!("s{seed}")),
            ..GenerateRequest::new("todi raga alapana", seed)
        },
        out.to_path_buf(),
    )
}

#[test]
fn jobs_run_to_their_files_and_a_running_job_can_be_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let q = JobQueue::new(8);
    let (tx, rx) = mpsc::channel();
    q.subscribe(tx);
    let a = q.submit(job(tmp.path(), 1, 1)).unwrap();
    let b = q.submit(job(tmp.path(), 2, 1)).unwrap();
    for (id, name) in [(a, "s1"), (b, "s2")] {
        let s = q.wait(id).unwrap();
        assert_eq!(s.state, JobState::Done);
        assert_eq!(s.outputs, vec![tmp.path().join(format!("{name}.wav"))]);
        for ext in ["wav", "png", "json"] {
            assert!(tmp.path().join(format!("{name}.{ext}")).is_file());
        }
    }
    let events: Vec<JobEvent> = rx.try_iter().collect();
    let loads = events
        .iter()
        .filter(|e| matches!(e, JobEvent::Progress(_, _, _, what) if what == "loading the model"))
        .count();
    assert_eq!(loads, 1, "the model is loaded once for both jobs");
    assert!(events
        .iter()
        .any(|e| matches!(e, JobEvent::Progress(id, d, t, _) if *id == b && d == t && *t > 0)));

    // a long job, cancelled at its first progress report
    let c = q.submit(job(tmp.path(), 3, 50)).unwrap();
    loop {
        match rx.recv().unwrap() {
            JobEvent::Progress(id, done, _, _) if id == c && done > 0 => break,
            _ => {}
        }
    }
    assert!(q.cancel(c));
    assert_eq!(q.wait(c).unwrap().state, JobState::Cancelled);
    assert!(!tmp.path().join("s3.wav").exists());
}
