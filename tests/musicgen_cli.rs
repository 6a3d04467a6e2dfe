//! `generate --backend musicgen` end to end on the CPU with the tiny random
//! checkpoints (tests/data/musicgen-tiny, musicgen-tiny-stereo): the files
//! it writes for text-to-music, unconditional, continuation and windowed
//! long generation, and clear errors for bad input.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

use common::{assert_ok as ok, fails_with, run_cli as run};

use ragafusion::audio::read_audio;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn sidecar(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `generate PROMPT --backend musicgen --model DIR --out OUT EXTRA...`,
/// DIR a folder of tests/data or any path.
fn generate(prompt: &str, model: impl AsRef<Path>, out: &Path, extra: &[&str]) -> Output {
    let model = data("").join(model);
    let mut args = vec![
        "generate",
        prompt,
        "--backend",
        "musicgen",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn text_unconditional_continuation_and_long_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();

    // text to music: S seconds = 50 S + 3 decoder steps
    ok(&generate(
        "kalyani raga, adi tala",
        "musicgen-tiny",
        out,
        &["--seconds", "1.5", "--name", "text", "--seed", "3"],
    ));
    let audio = read_audio(&out.join("text.wav")).unwrap();
    assert_eq!(audio.sample_rate_hz, 32000);
    assert_eq!(audio.num_channels(), 1);
    assert_eq!(audio.len_samples(), 75 * 640);
    let s = sidecar(&out.join("text.json"));
    assert_eq!(s["backend"], "musicgen");
    assert_eq!(s["decoder_steps"], 78);
    assert_eq!(s["guidance"], 3.0);
    assert_eq!(s["windows"], 1);
    assert!(s["model"]["content_hash"]
        .as_str()
        .unwrap()
        .starts_with("xxh3:"));
    assert!(s["tokens_per_s"].as_f64().unwrap() > 0.0);

    // the same seed gives the same file; another seed another one
    ok(&generate(
        "kalyani raga, adi tala",
        "musicgen-tiny",
        out,
        &["--seconds", "1.5", "--name", "again", "--seed", "3"],
    ));
    let again = read_audio(&out.join("again.wav")).unwrap();
    assert_eq!(again, audio);
    ok(&generate(
        "kalyani raga, adi tala",
        "musicgen-tiny",
        out,
        &["--seconds", "1.5", "--name", "other", "--seed", "4"],
    ));
    assert_ne!(read_audio(&out.join("other.wav")).unwrap(), audio);

    // unconditional: empty prompt, no guidance, default name
    ok(&generate(
        "",
        "musicgen-tiny",
        out,
        &["--seconds", "0.5", "--greedy"],
    ));
    let s = sidecar(&out.join("unconditional-s42.json"));
    assert_eq!(s["kind"], "musicgen-unconditional");
    assert_eq!(s["guidance"], 1.0);

    // continuation: the output is the prompt plus the new seconds
    ok(&generate(
        "mohanam",
        "musicgen-tiny",
        out,
        &[
            "--seconds",
            "1",
            "--continue",
            out.join("text.wav").to_str().unwrap(),
            "--name",
            "cont",
        ],
    ));
    let cont = read_audio(&out.join("cont.wav")).unwrap();
    assert_eq!(cont.len_samples(), (75 + 50) * 640);
    let s = sidecar(&out.join("cont.json"));
    assert_eq!(s["kind"], "musicgen-continuation");
    assert_eq!(s["prompt_frames"], 75);

    // longer than a window: stereo, 1 s windows with a 0.6 s stride
    ok(&generate(
        "todi",
        "musicgen-tiny-stereo",
        out,
        &[
            "--seconds",
            "2.5",
            "--window-s",
            "1",
            "--stride-s",
            "0.6",
            "--name",
            "long",
        ],
    ));
    let long = read_audio(&out.join("long.wav")).unwrap();
    assert_eq!(long.num_channels(), 2);
    assert_eq!(long.len_samples(), 125 * 640);
    let s = sidecar(&out.join("long.json"));
    // 50 frames, then 30 + 30 + 15 new frames after 20 frames of context
    assert_eq!(s["windows"], 4);
    assert_eq!(s["decoder_steps"], 125 + 4 * 3);
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let o = generate("x", out.join("nope"), out, &[]);
    fails_with(&o, &["nope", "not a folder"]);

    let bad = out.join("bad.wav");
    std::fs::write(&bad, b"RIFF0000WAVEjunk").unwrap();
    let o = generate(
        "x",
        "musicgen-tiny",
        out,
        &["--continue", bad.to_str().unwrap()],
    );
    fails_with(&o, &["bad.wav"]);

    let o = generate("", "musicgen-tiny", out, &["--guidance", "3"]);
    fails_with(&o, &["--guidance", "empty prompt"]);
    let o = generate("x", "musicgen-tiny", out, &["--negative", "noise"]);
    fails_with(&o, &["--negative", "diffusion"]);
    let o = generate("x", "musicgen-tiny", out, &["--temperature", "0"]);
    fails_with(&o, &["temperature"]);
    let o = generate("x", "musicgen-tiny", out, &["--seconds=-1"]);
    fails_with(&o, &["--seconds"]);
    let o = generate(
        "x",
        "musicgen-tiny",
        out,
        &["--window-s", "1", "--stride-s", "2"],
    );
    fails_with(&o, &["--stride-s"]);
    // a diffusers checkpoint is not a MusicGen one
    let o = generate("x", "sd-tiny", out, &[]);
    fails_with(&o, &["config.json", "missing"]);
    assert!(std::fs::read_dir(out).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".json")));
}
