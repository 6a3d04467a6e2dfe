//! The bad-input matrix: absurd numbers, corrupt headers, names that leave
//! the output folder, outputs that would replace their own input,
//! misleading errors and silent successes. Every case must end with exit
//! status 1 (or clap's 2), an error naming the flag or file, no panic,
//! nothing written where it should not be, the input unchanged, and memory
//! under [`MEMORY_CAP_BYTES`]: each run's address space is capped, so an
//! allocation sized from a bad input aborts and fails the case.
#![cfg(unix)]

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::assert_ok;

/// Address-space cap of every run here (virtual memory, which bounds the
/// resident set): far above what a refused input needs, far below the
/// gigabytes an unchecked size would ask for.
const MEMORY_CAP_BYTES: u64 = 3 << 30;

/// Runs the command line with its address space capped at
/// [`MEMORY_CAP_BYTES`]; a panic fails the test.
fn run_cli(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ragafusion"));
    cmd.args(args);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setrlimit, which is async-signal-safe, on a local struct.
    unsafe {
        cmd.pre_exec(|| {
            let cap = libc::rlimit {
                rlim_cur: MEMORY_CAP_BYTES,
                rlim_max: MEMORY_CAP_BYTES,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &cap) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(
        !err.contains("memory allocation"),
        "over the memory cap: {err}"
    );
    out
}

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

/// Writes `n` samples of `f(i)` as a 16-bit mono WAV at `rate_hz`.
fn write_pcm16(path: &Path, rate_hz: u32, n: usize, f: &mut dyn FnMut(usize) -> f32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate_hz,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..n {
        w.write_sample((f(i).clamp(-1.0, 1.0) * 32767.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
}

/// A 16-sample mono WAV whose header claims `rate_hz`.
fn wav_at(path: &Path, rate_hz: u32) {
    write_pcm16(path, rate_hz, 16, &mut |i| i as f32 / 32767.0);
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
    assert_ok(&run_cli(&["audio-to-image", &w, png.to_str().unwrap()]));
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

#[test]
fn absurd_counts_and_lengths_are_refused_before_allocation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = out.display().to_string();
    let clip = data("clips/vignesh_5120ms.wav").display().to_string();
    let sd = sd();
    let (c, od, m) = (clip.as_str(), o.as_str(), sd.as_str());
    let prepare = move |flag, value| {
        vec![
            "prepare",
            "--audio-dir",
            c,
            "--metadata",
            c,
            "--out",
            od,
            flag,
            value,
        ]
    };
    let train =
        move |flag, value| vec!["train", "--out", od, "--data", c, "--model", m, flag, value];
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["sample-clips", &clip, &o, "--num-clips", "1000000"],
            &["num_clips", "100000"],
        ),
        (
            vec!["sample-clips", &clip, &o, "--duration-ms", "100000000"],
            &["duration_ms"],
        ),
        (
            vec!["synth", &o, "--count", "1000000000"],
            &["count", "100000"],
        ),
        (prepare("--clip-s", "1e9"), &["clip_s"]),
        (prepare("--hop-s", "0"), &["hop_s"]),
        (prepare("--silence-dbfs", "50"), &["silence_dbfs"]),
        (
            prepare("--silence-dbfs", "nan"),
            &["--silence-dbfs", "not a finite number"],
        ),
        (train("--crop-px", "0"), &["crop-px"]),
        (train("--noise-offset", "nan"), &["--noise-offset"]),
        (
            vec![
                "generate", "raga", "--model", &sd, "--out", &o, "--steps", "1000000",
            ],
            &["--steps", "1000"],
        ),
    ];
    for (args, words) in cases {
        fails_with(&run_cli(&args), words);
        assert!(files_in(&out).is_empty(), "{args:?} wrote files");
    }
}

#[test]
fn corrupt_headers_are_refused_before_allocation() {
    let tmp = tempfile::tempdir().unwrap();
    let fig = tmp.path().join("fig.png").display().to_string();
    for hz in [i32::MAX as u32, 1] {
        let wav = tmp.path().join(format!("r{hz}.wav"));
        wav_at(&wav, hz);
        let w = wav.display().to_string();
        let png = tmp.path().join("r.png").display().to_string();
        for args in [
            vec!["analyze", &w, "--out", &fig],
            vec!["audio-to-image", &w, &png],
            vec!["classify", &w],
        ] {
            fails_with(&run_cli(&args), &[&format!("r{hz}.wav"), "sample rate"]);
        }
    }
    // a PNG whose header claims more columns than an hour of audio
    let wide = tmp.path().join("wide.png");
    let mut bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut bytes, 360_001, 2);
    enc.set_color(png::ColorType::Grayscale);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&vec![0u8; 720_002]).unwrap();
    w.finish().unwrap();
    std::fs::write(&wide, bytes).unwrap();
    let mut inputs = files_in(tmp.path());
    inputs.sort();
    let p = wide.display().to_string();
    let wav = tmp.path().join("wide.wav").display().to_string();
    for args in [
        vec!["image-to-audio", &p, &wav],
        vec!["classify", &p],
        vec!["analyze", &p, "--out", &fig],
    ] {
        fails_with(&run_cli(&args), &["wide.png", "360001 x 2 px"]);
    }
    let mut left = files_in(tmp.path());
    left.sort();
    assert_eq!(left, inputs, "outputs were written");
}

#[test]
fn negative_numbers_reach_the_range_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    fails_with(&generate(&out, &["--guidance", "-1"]), &["--guidance"]);
    let clip = data("clips/vignesh_5120ms.wav").display().to_string();
    let fig = tmp.path().join("f.png").display().to_string();
    let o = run_cli(&["analyze", &clip, "--tonic", "-3", "--out", &fig]);
    fails_with(&o, &["tonic_hz", "-3"]);
    assert!(files_in(tmp.path()).is_empty());
}

#[test]
fn misleading_errors_and_silent_successes_are_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |name: &str| tmp.path().join(name);
    // synth into a file
    std::fs::write(t("taken"), "x").unwrap();
    let taken = t("taken").display().to_string();
    fails_with(&run_cli(&["synth", &taken]), &["taken", "a file is there"]);
    assert_eq!(std::fs::read(t("taken")).unwrap(), b"x");
    // a weights variant that is not there
    let out = t("gen");
    fails_with(
        &generate(&out, &["--variant", "fp16"]),
        &["fp16", "--variant"],
    );
    assert!(files_in(&out).is_empty());
    // a folder with nothing to convert
    std::fs::create_dir(t("empty")).unwrap();
    let (empty, pngs) = (t("empty").display().to_string(), t("pngs"));
    let o = run_cli(&["audio-to-image", &empty, pngs.to_str().unwrap()]);
    fails_with(&o, &["empty", "no .wav"]);
    let o = run_cli(&["image-to-audio", &empty, pngs.to_str().unwrap()]);
    fails_with(&o, &["empty", "no .png"]);
    // prepare: a missing audio folder, and rows that all fail
    let meta = t("meta.csv");
    std::fs::write(
        &meta,
        "file,raga\n../outside.wav,Kalyani\nnothere.wav,Kalyani\n",
    )
    .unwrap();
    std::fs::write(t("outside.wav"), "x").unwrap();
    let (m, ds) = (meta.display().to_string(), t("ds").display().to_string());
    let missing = t("no-audio").display().to_string();
    let o = run_cli(&[
        "prepare",
        "--audio-dir",
        &missing,
        "--metadata",
        &m,
        "--out",
        &ds,
    ]);
    fails_with(&o, &["no-audio", "--audio-dir"]);
    std::fs::create_dir(t("audio")).unwrap();
    let audio = t("audio").display().to_string();
    let o = run_cli(&[
        "prepare",
        "--audio-dir",
        &audio,
        "--metadata",
        &m,
        "--out",
        &ds,
    ]);
    fails_with(
        &o,
        &[
            "meta.csv",
            "every one of its 2 rows failed",
            "--allow-outside",
        ],
    );
}

#[test]
fn compare_names_the_backend_and_refuses_to_run_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("exp.toml");
    let write = |setup: &str| {
        let text = format!(
            "name = \"x\"\nseeds = [1]\n{setup}\n[[backend]]\nname = \"ref\"\n\
             kind = \"reference\"\nclips = \"missing-clips\"\n[[prompt]]\nraga = \"Mohanam\"\n"
        );
        std::fs::write(&exp, text).unwrap();
    };
    let e = exp.display().to_string();
    let out = tmp.path().join("out").display().to_string();
    write("[[setup]]\nrun = [\"compare\", \"exp.toml\", \"--out\", \"o2\"]");
    fails_with(
        &run_cli(&["compare", &e, "--out", &out]),
        &["setup[0]", "itself"],
    );
    assert!(!tmp.path().join("o2").exists());
    write("");
    let o = run_cli(&["compare", &e, "--out", &out]);
    fails_with(
        &o,
        &["exp.toml", "backend[0] (`ref`)", "clips", "missing-clips"],
    );
}

#[test]
fn noise_and_a_held_note_are_not_called_ragas() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, f: &mut dyn FnMut(usize) -> f32| {
        let path = tmp.path().join(name);
        write_pcm16(&path, 44_100, 44_100 * 3, f);
        path.display().to_string()
    };
    // a xorshift stream: white noise without a dependency
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise = write("noise.wav", &mut |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 0.6 - 0.3
    });
    let sine = write("sine.wav", &mut |i| {
        0.3 * (i as f32 * 220.0 * std::f32::consts::TAU / 44_100.0).sin()
    });
    for (file, verdict) in [(noise, "no-pitched-content"), (sine, "no-melody")] {
        let out = run_cli(&["classify", &file]);
        assert_ok(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["verdict"], verdict, "{file}: {v}");
    }
}

/// Inputs the fuzz targets found (fuzz/, docs/reliability.md), each now a
/// clear error: tests/data/fuzz/.
#[test]
fn fuzz_findings_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // a WAV header with a zero sample rate behind junk, in a .flac: the
    // WAV reader of symphonia panicked while probing it
    let found = data("fuzz/zero-rate-riff-in.flac").display().to_string();
    let png = tmp.path().join("x.png").display().to_string();
    for args in [
        vec!["audio-to-image", &found, &png],
        vec!["classify", &found],
    ] {
        fails_with(
            &run_cli(&args),
            &["zero-rate-riff-in.flac", "cannot decode audio"],
        );
    }
    assert!(files_in(tmp.path()).is_empty());
}
