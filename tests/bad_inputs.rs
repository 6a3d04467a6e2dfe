//! The bad-input matrix: absurd numbers, names that leave the output
//! folder, and outputs that would replace their own input. Every case must
//! end with exit status 1, an error naming the flag or file, no panic,
//! nothing written where it should not be, and the input unchanged.

mod common;

use std::path::{Path, PathBuf};

use common::run_cli;

/// Asserts a refusal: exit status 1 (or clap's 2 for a value it parses
/// itself), no panic, and an error holding `words`.
fn fails_with(out: &std::process::Output, words: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(1 | 2)), "{err}");
    for w in words {
        assert!(err.contains(w), "error lacks {w:?}: {err}");
    }
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn sd() -> String {
    data("sd-tiny").display().to_string()
}

/// `generate` on the tiny pipeline into `out` with `extra` flags.
fn generate(out: &Path, extra: &[&str]) -> std::process::Output {
    let (model, out) = (sd(), out.display().to_string());
    let mut args = vec!["generate", "kalyani raga", "--model", &model, "--out", &out];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--steps", "2"]);
    run_cli(&args)
}

/// Files directly in `dir` (none when it does not exist).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn absurd_generation_numbers_are_refused_by_flag_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cases: &[(&[&str], &str)] = &[
        (&["--attention-slice", "0"], "--attention-slice"),
        (&["--batch", "100000"], "--batch"),
        (&["--seconds", "1e9"], "--seconds"),
        (&["--guidance", "nan"], "--guidance"),
        (&["--guidance=-1"], "--guidance"),
        (&["--guidance", "inf"], "--guidance"),
        (&["--tonic", "1e9"], "tonic"),
    ];
    for (extra, flag) in cases {
        let o = generate(&out, extra);
        fails_with(&o, &[flag]);
        assert!(files_in(&out).is_empty(), "{extra:?} wrote files");
    }
    let (model, dir) = (sd(), out.display().to_string());
    let o = run_cli(&[
        "interpolate",
        "--from",
        "todi:1",
        "--to",
        "kalyani:2",
        "--steps",
        "1000000",
        "--model",
        &model,
        "--out",
        &dir,
    ]);
    fails_with(&o, &["--steps", "256"]);
    let clip = data("clips/vignesh_5120ms.wav").display().to_string();
    let o = run_cli(&[
        "audio-to-audio",
        &clip,
        "todi raga",
        "--steps",
        "1",
        "--model",
        &model,
        "--out",
        &dir,
    ]);
    fails_with(&o, &["--steps", "denoise not once"]);
    assert!(files_in(&out).is_empty());
}

#[test]
fn names_stay_one_plain_file_name_inside_the_output_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a").join("out");
    let outside = tmp.path().join("escaped");
    let absolute = outside.display().to_string();
    for name in ["../../escaped", absolute.as_str(), "", ".hidden"] {
        let o = generate(&out, &["--name", name]);
        fails_with(&o, &["--name"]);
    }
    assert!(files_in(&out).is_empty());
    assert!(
        files_in(tmp.path()).iter().all(|p| p.is_dir()),
        "{:?}",
        files_in(tmp.path())
    );
}

#[test]
fn outputs_never_replace_their_input() {
    let tmp = tempfile::tempdir().unwrap();
    let wav = tmp.path().join("x.wav");
    std::fs::copy(data("clips/vignesh_5120ms.wav"), &wav).unwrap();
    let before = std::fs::read(&wav).unwrap();
    let w = wav.display().to_string();
    for args in [
        vec!["analyze", &w, "--out", &w],
        vec!["audio-to-image", &w, &w],
    ] {
        let o = run_cli(&args);
        fails_with(&o, &["x.wav", "input"]);
        assert_eq!(std::fs::read(&wav).unwrap(), before, "{args:?}");
    }
    // the same file by another path
    let png = tmp.path().join("x.png");
    common::assert_ok(&run_cli(&["audio-to-image", &w, png.to_str().unwrap()]));
    let png_before = std::fs::read(&png).unwrap();
    let other = tmp.path().join(".").join("x.png").display().to_string();
    let o = run_cli(&["image-to-audio", png.to_str().unwrap(), &other]);
    fails_with(&o, &["x.png", "input"]);
    assert_eq!(std::fs::read(&png).unwrap(), png_before);

    // a MusicGen continuation written over its own source
    let mg = data("musicgen-tiny").display().to_string();
    let dir = tmp.path().display().to_string();
    let o = run_cli(&[
        "generate",
        "raga",
        "--backend",
        "musicgen",
        "--model",
        &mg,
        "--continue",
        &w,
        "--seconds",
        "0.2",
        "--name",
        "x",
        "--out",
        &dir,
    ]);
    fails_with(&o, &["x.wav", "input"]);
    assert_eq!(std::fs::read(&wav).unwrap(), before);
}

#[test]
fn absurd_tonics_are_refused_by_the_ear() {
    let clip = data("clips/vignesh_5120ms.wav").display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let fig = tmp.path().join("f.png").display().to_string();
    let classify = ["classify", &clip, "--tonic", "1e9"];
    let analyze = ["analyze", &clip, "--tonic", "1e9", "--out", &fig];
    for args in [&classify[..], &analyze[..]] {
        fails_with(&run_cli(args), &["tonic", "1000000000"]);
    }
    assert!(files_in(tmp.path()).is_empty());
}
