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

use common::{assert_ok, narrow_pipeline};

/// Address-space cap of every run here (virtual memory, which bounds the
/// resident set): far above what a refused input needs, far below the
/// gigabytes an unchecked size would ask for.
const MEMORY_CAP_BYTES: u64 = 3 << 30;

/// Runs the command line with its address space capped at
/// [`MEMORY_CAP_BYTES`]; a panic fails the test.
fn run_cli(args: &[&str]) -> Output {
    let out = capped(args).output().expect("binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(
        !err.contains("memory allocation"),
        "over the memory cap: {err}"
    );
    out
}

/// The command line with `args`, its address space capped at
/// [`MEMORY_CAP_BYTES`].
fn capped(args: &[&str]) -> Command {
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
    cmd
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
    // a float WAV whose samples reach 3e37: the resampler's FFT overflowed
    // and rubato panicked
    let found = data("fuzz/huge-float-samples.wav").display().to_string();
    for args in [
        vec!["audio-to-image", &found, &png],
        vec!["classify", &found],
    ] {
        fails_with(
            &run_cli(&args),
            &["huge-float-samples.wav", "far outside any audio's range"],
        );
    }
    assert!(files_in(tmp.path()).is_empty());
}

#[test]
fn every_generating_verb_checks_its_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (model, dir) = (sd(), out.display().to_string());
    let clip = data("clips/vignesh_5120ms.wav").display().to_string();
    let a2a = [
        "audio-to-audio",
        &clip,
        "todi raga",
        "--attention-slice",
        "0",
        "--model",
        &model,
        "--out",
        &dir,
    ];
    let interpolate = [
        "interpolate",
        "--from",
        "todi:1",
        "--to",
        "kalyani:2",
        "--attention-slice",
        "0",
        "--model",
        &model,
        "--out",
        &dir,
    ];
    for args in [&a2a[..], &interpolate[..]] {
        fails_with(&run_cli(args), &["--attention-slice"]);
    }
    let mg = data("musicgen-tiny").display().to_string();
    let o = run_cli(&[
        "generate",
        "raga",
        "--backend",
        "musicgen",
        "--model",
        &mg,
        "--seconds",
        "1e9",
        "--out",
        &dir,
    ]);
    fails_with(&o, &["--seconds", "3600"]);
    assert!(files_in(&out).is_empty());
    // a prompt in Tamil script names its files after the raga
    let o = run_cli(&[
        "generate",
        "கல்யாணி ராகம்",
        "--backend",
        "musicgen",
        "--model",
        &mg,
        "--seconds",
        "0.1",
        "--out",
        &dir,
    ]);
    assert_ok(&o);
    assert!(
        out.join("kalyaani-raakam-s42.wav").is_file(),
        "{:?}",
        files_in(&out)
    );
}

#[test]
fn compare_names_every_late_field() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("exp.toml");
    let sd = sd();
    let cases: [(&str, &str, &[&str]); 5] = [
        ("seconds = 1e9", "", &["exp.toml", "seconds", "3600"]),
        (
            "",
            "steps = 1000000",
            &["backend[1] (`sd`)", "steps", "1000"],
        ),
        (
            "",
            "dtype = \"f64\"",
            &["backend[1] (`sd`)", "dtype", "f64"],
        ),
        (
            "[classifiers]\ncnn = \"no-cnn\"",
            "",
            &["classifiers.cnn", "no-cnn"],
        ),
        (
            "",
            "model = \"no-model\"",
            &["backend[1] (`sd`)", "model", "no-model", "model_index.json"],
        ),
    ];
    for (top, backend, words) in cases {
        let model = if backend.starts_with("model") {
            String::new()
        } else {
            format!("model = \"{sd}\"")
        };
        let text = format!(
            "name = \"x\"\nseeds = [1]\n{top}\n\
             [[setup]]\nrun = [\"synth\", \"{{out}}/ref\", \"--raga\", \"Mohanam\", \
             \"--count\", \"1\", \"--duration-s\", \"1\"]\n\
             [[backend]]\nname = \"ref\"\nkind = \"reference\"\nclips = \"{{out}}/ref\"\n\
             [[backend]]\nname = \"sd\"\nkind = \"diffusion\"\n{model}\n{backend}\n\
             [[prompt]]\nraga = \"Mohanam\"\n"
        );
        std::fs::write(&exp, text).unwrap();
        let out = tmp.path().join("out");
        let o = run_cli(&[
            "compare",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        fails_with(&o, words);
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn prepare_stays_in_its_audio_folder_and_train_names_the_device() {
    let tmp = tempfile::tempdir().unwrap();
    let audio = tmp.path().join("audio");
    std::fs::create_dir(&audio).unwrap();
    let outside = tmp.path().join("outside.wav");
    std::fs::copy(data("clips/vignesh_5120ms.wav"), &outside).unwrap();
    let meta = tmp.path().join("meta.csv");
    std::fs::write(&meta, format!("file,raga\n{},Kalyani\n", outside.display())).unwrap();
    let ds = tmp.path().join("ds");
    let o = run_cli(&[
        "prepare",
        "--audio-dir",
        audio.to_str().unwrap(),
        "--metadata",
        meta.to_str().unwrap(),
        "--out",
        ds.to_str().unwrap(),
    ]);
    fails_with(&o, &["outside.wav", "--allow-outside"]);
    assert!(files_in(&ds)
        .iter()
        .all(|p| p.extension().is_none_or(|e| e != "png")));
    let (d, m) = (data("clips").display().to_string(), sd());
    let out = tmp.path().join("t").display().to_string();
    let o = run_cli(&[
        "train", "--out", &out, "--data", &d, "--model", &m, "--device", "cuda",
    ]);
    fails_with(&o, &["device", "cuda"]);
    assert!(!o.stderr.is_empty() && !String::from_utf8_lossy(&o.stderr).contains("mixed"));
}

/// The PNG of the report: 100,000 x 512 black pixels (full-scale noise)
/// with riffusion's EXIF (1000 s), about 150 KB, which once made three
/// verbs climb to 11 GB.
#[test]
fn a_thousand_second_spectrogram_stays_under_the_memory_cap() {
    use ragafusion::spectrogram::image::{encode_png, exif_for, DEFAULT_MAX_VALUE};
    use ragafusion::spectrogram::{SpectrogramImage, SpectrogramParams};
    let tmp = tempfile::tempdir().unwrap();
    let image = SpectrogramImage {
        width: 100_000,
        height: 512,
        rgb: vec![0; 100_000 * 512 * 3],
    };
    let exif = exif_for(&SpectrogramParams::default(), DEFAULT_MAX_VALUE);
    let png = tmp.path().join("long.png");
    std::fs::write(&png, encode_png(&image, &exif).unwrap()).unwrap();
    let p = png.display().to_string();
    let wav = tmp.path().join("long.wav");
    // no Griffin-Lim iterations: the reading, mel inversion and phase
    // estimate over all 1000 s are what is measured here
    let o = run_cli(&[
        "image-to-audio",
        &p,
        wav.to_str().unwrap(),
        "--iterations",
        "0",
    ]);
    assert_ok(&o);
    let r = hound::WavReader::open(&wav).unwrap();
    let seconds = r.duration() as f64 / r.spec().sample_rate as f64;
    assert!((seconds - 1000.0).abs() < 0.1, "{seconds} s");
    let o = run_cli(&["classify", &p, "--max-seconds", "30"]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "no-pitched-content", "{v}");
    let fig = tmp.path().join("fig.png").display().to_string();
    // analyze cuts to --max-seconds before reconstructing
    let o = run_cli(&["analyze", &p, "--out", &fig, "--json"]);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("analysing the first 60 s"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["verdict"].is_string() && v["verdict"] != "raga",
        "{}",
        v["verdict"]
    );
}

/// Ctrl-C stops a long generation with its work saved; the same command
/// again continues it and cleans up.
#[test]
fn an_interrupted_generation_continues_on_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    narrow_pipeline(&model);
    let out = tmp.path().join("out");
    let (m, o) = (model.display().to_string(), out.display().to_string());
    let args = [
        "generate",
        "todi raga",
        "--model",
        &m,
        "--out",
        &o,
        "--seconds",
        "60",
        "--steps",
        "40",
    ];
    let child = capped(&args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    // SAFETY: kill() with a child's pid and SIGINT
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let first = child.wait_with_output().unwrap();
    fails_with(
        &first,
        &["cancelled", ".partial", "run the same request again"],
    );
    assert!(out.join(".partial").is_dir());
    let written: Vec<_> = files_in(&out).into_iter().filter(|p| p.is_file()).collect();
    assert!(written.is_empty(), "{written:?}");
    let again = run_cli(&args);
    assert_ok(&again);
    assert!(String::from_utf8_lossy(&again.stderr).contains("resuming"));
    assert!(out.join("todi-raga-s42.wav").is_file());
    assert!(!out.join(".partial").exists());
}
