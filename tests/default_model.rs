//! The shipped default model (checkpoints/ragafusion-carnatic-v1): what a
//! fresh clone's first command does, from any working directory, and that
//! what it makes follows the requested raga.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::{assert_ok as ok, fails_with};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/ragafusion-carnatic-v1")
}

/// Runs the binary in `cwd` with no model named by the environment.
fn run_in(cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ragafusion"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RAGAFUSION_MODEL")
        .output()
        .expect("binary runs");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_shipped_folder_is_small_and_complete() {
    let dir = shipped();
    let mut total = 0u64;
    for entry in walk(&dir) {
        total += entry.metadata().unwrap().len();
    }
    assert!(total < 150 << 20, "{total} bytes");
    for f in [
        "README.md",
        "model_index.json",
        "ragafusion.json",
        "spectrogram.json",
        "scheduler/scheduler_config.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "text_encoder/config.json",
        "unet/config.json",
        "vae/config.json",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let d = ragafusion::diffusion::defaults::ModelDefaults::read(&dir).unwrap();
    assert!((d.canonical_tonic_hz.unwrap() - 146.83).abs() < 0.01);
}

fn walk(dir: &Path) -> Vec<std::fs::DirEntry> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e);
        }
    }
    out
}

#[test]
fn generate_without_a_model_uses_the_shipped_one_and_follows_the_raga() {
    // from a folder outside the repository: found beside the sources
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = run_in(
        tmp.path(),
        &[
            "generate",
            "Kalyani raga alapana, violin, shruti D",
            "--out",
            out.to_str().unwrap(),
            "--seed",
            "1",
        ],
    );
    ok(&o);
    let base = out.join("kalyani-raga-alapana-violin-shruti-d-s1");
    let s = json(&base.with_extension("json"));
    let model_path = s["model"]["path"].as_str().unwrap();
    assert!(
        model_path.ends_with("checkpoints/ragafusion-carnatic-v1"),
        "{model_path}"
    );
    assert_eq!(s["model_prompt"], "Kalyani raga alapana, violin");
    assert_eq!(s["transpose_ratio"].as_f64(), Some(1.0));
    assert_eq!(s["scheduler"], "dpmpp-2m", "the model's own sampler");
    assert_eq!(s["height_px"].as_u64(), Some(128));
    assert!((s["duration_s"].as_f64().unwrap() - 5.12).abs() < 0.05);
    assert!(base.with_extension("png").is_file());

    // the melody keeps to Kalyani's swaras well above chance
    let a = run_in(
        tmp.path(),
        &[
            "analyze",
            base.with_extension("wav").to_str().unwrap(),
            "--tonic",
            "146.83",
            "--raga",
            "Kalyani",
            "--json",
        ],
    );
    ok(&a);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let above = v["adherence"]["membership"]["in_scale_above_chance"]
        .as_f64()
        .unwrap();
    assert!(above > 0.2, "in-scale above chance {above}");
    assert!(v["voiced_fraction"].as_f64().unwrap() > 0.5);
}

#[test]
fn the_environment_can_name_another_model() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-model");
    let o = Command::new(env!("CARGO_BIN_EXE_ragafusion"))
        .args(["generate", "Todi", "--out", tmp.path().to_str().unwrap()])
        .env("RAGAFUSION_MODEL", &missing)
        .output()
        .unwrap();
    fails_with(&o, &["no-such-model"]);
}

#[test]
fn thirty_seconds_have_no_seam_at_the_clip_joins() {
    // three pieces: one piece's 21 joins are too few to tell a seam from
    // the music's own changes (single pieces measure 0.87-1.08)
    let tmp = tempfile::tempdir().unwrap();
    let mut wavs = Vec::new();
    let mut width = 0;
    for seed in ["1", "2", "3"] {
        let name = format!("long{seed}");
        ok(&run_in(
            tmp.path(),
            &[
                "generate",
                "Todi raga alapana, voice",
                "--seconds",
                "30",
                "--seed",
                seed,
                "--out",
                tmp.path().to_str().unwrap(),
                "--name",
                &name,
            ],
        ));
        let s = json(&tmp.path().join(format!("{name}.json")));
        assert_eq!(s["kind"], "long-form");
        width = s["width_px"].as_u64().unwrap() as usize;
        wavs.push(tmp.path().join(format!("{name}.wav")));
    }
    // the model's format: 10 ms columns, clips of 512 sharing 128 (1.28 s)
    let params: ragafusion::spectrogram::SpectrogramParams =
        serde_json::from_str(&std::fs::read_to_string(shipped().join("spectrogram.json")).unwrap())
            .unwrap();
    let wavs: Vec<&Path> = wavs.iter().map(|p| p.as_path()).collect();
    common::assert_no_seam(&wavs, params, width);
}
