//! Smoke tests of the `ragafusion` binary: the codec verbs end to end, and
//! bad input answered with a clear error naming the file, a non-zero exit
//! and no panic (or the documented fallback).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ragafusion"))
}

fn example_clip() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/clips/vignesh_5120ms.wav")
}

fn run(args: &[&Path]) -> Output {
    let out = bin().args(args).output().expect("binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Expects failure with a message naming `file`.
fn assert_clear_error(out: &Output, file: &Path, words: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(err.contains(&*name), "error does not name {name}: {err}");
    assert!(
        err.to_lowercase().contains(words),
        "error lacks '{words}': {err}"
    );
}

fn write_png(path: &Path, width: u32, height: u32, color: png::ColorType, depth: png::BitDepth) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(color);
    enc.set_depth(depth);
    if color == png::ColorType::Indexed {
        enc.set_palette((0..=255u8).flat_map(|v| [v, v, v]).collect::<Vec<u8>>());
    }
    let mut w = enc.write_header().unwrap();
    let samples = match color {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::GrayscaleAlpha => 2,
        _ => 1,
    };
    let bytes_per = if depth == png::BitDepth::Sixteen {
        2
    } else {
        1
    };
    let data: Vec<u8> = (0..(width * height) as usize * samples * bytes_per)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    w.write_image_data(&data).unwrap();
}

#[test]
fn codec_round_trip_and_print_params() {
    let dir = tempfile::tempdir().unwrap();
    let png_path = dir.path().join("clip.png");
    let wav = dir.path().join("clip.wav");
    let out = run(&[Path::new("audio-to-image"), &example_clip(), &png_path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&[Path::new("image-to-audio"), &png_path, &wav]);
    assert!(out.status.success(), "{}", stderr(&out));
    let audio = ragafusion::audio::read_audio(&wav).unwrap();
    assert_eq!(audio.len_samples(), 225_792);
    assert_eq!(audio.sample_rate_hz, 44100);
    let out = run(&[Path::new("print-params"), &png_path, Path::new("--json")]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["params"]["sample_rate_hz"], 44100);
    assert_eq!(v["width_px"], 513);
    assert_eq!(v["has_exif"], true);
    let out = run(&[Path::new("print-params"), &png_path]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("NUM_FREQUENCIES"));
}

#[test]
fn stereo_preset_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let png_path = dir.path().join("st.png");
    let wav = dir.path().join("st.wav");
    let out = bin()
        .args(["audio-to-image", "--preset", "20khz"])
        .arg(example_clip())
        .arg(&png_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&[
        Path::new("image-to-audio"),
        &png_path,
        &wav,
        Path::new("--float"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let audio = ragafusion::audio::read_audio(&wav).unwrap();
    assert_eq!(audio.num_channels(), 2);
}

#[test]
fn folder_batch_converts_resumes_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let output = dir.path().join("out");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(example_clip(), input.join("a.wav")).unwrap();
    std::fs::copy(example_clip(), input.join("b.wav")).unwrap();
    std::fs::write(input.join("broken.wav"), "not audio").unwrap();
    let out = run(&[Path::new("audio-to-image"), &input, &output]);
    assert_eq!(out.status.code(), Some(1), "a failed file fails the batch");
    let err = stderr(&out);
    assert!(
        err.contains("converted 2") && err.contains("broken.wav"),
        "{err}"
    );
    assert!(output.join("a.png").exists() && output.join("b.png").exists());
    std::fs::remove_file(input.join("broken.wav")).unwrap();
    let out = run(&[Path::new("audio-to-image"), &input, &output]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("skipped 2"), "{}", stderr(&out));
    let wavs = dir.path().join("wavs");
    let out = run(&[Path::new("image-to-audio"), &output, &wavs]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wavs.join("a.wav").exists() && wavs.join("b.wav").exists());
}

#[test]
fn sample_clips_writes_riffusion_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("sample-clips")
        .arg(example_clip())
        .arg(dir.path())
        .args(["--hop-ms", "1000", "--duration-ms", "2000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.contains(&"clip_0_start_0_ms_duration_2000_ms.wav".to_string()));
}

#[test]
fn truncated_wav() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("truncated.wav");
    let bytes = std::fs::read(example_clip()).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let out = run(&[Path::new("audio-to-image"), &bad, &dir.path().join("x.png")]);
    assert_clear_error(&out, &bad, "truncated");
    assert!(!dir.path().join("x.png").exists());
}

#[test]
fn zero_length_audio() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("empty.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(&bad, spec)
        .unwrap()
        .finalize()
        .unwrap();
    let out = run(&[Path::new("audio-to-image"), &bad, &dir.path().join("x.png")]);
    assert_clear_error(&out, &bad, "zero-length");
    let zero_bytes = dir.path().join("zero.mp3");
    std::fs::write(&zero_bytes, b"").unwrap();
    let out = run(&[
        Path::new("audio-to-image"),
        &zero_bytes,
        &dir.path().join("x.png"),
    ]);
    assert_clear_error(&out, &zero_bytes, "empty");
}

#[test]
fn text_file_named_wav() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("readme.wav");
    std::fs::write(&bad, "This is a text file, not a recording.\n").unwrap();
    let out = run(&[Path::new("audio-to-image"), &bad, &dir.path().join("x.png")]);
    assert_clear_error(&out, &bad, "not a recognised audio format");
}

#[test]
fn nan_and_inf_samples() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [("nan.wav", f32::NAN), ("inf.wav", f32::INFINITY)] {
        let bad = dir.path().join(name);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 44100,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&bad, spec).unwrap();
        for i in 0..4410 {
            w.write_sample(if i == 100 { value } else { 0.1 }).unwrap();
        }
        w.finalize().unwrap();
        let out = run(&[Path::new("audio-to-image"), &bad, &dir.path().join("x.png")]);
        assert_clear_error(&out, &bad, "sample 100");
    }
}

#[test]
fn png_of_wrong_height() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("short.png");
    write_png(&bad, 100, 256, png::ColorType::Rgb, png::BitDepth::Eight);
    let out = run(&[Path::new("image-to-audio"), &bad, &dir.path().join("x.wav")]);
    assert_clear_error(&out, &bad, "256 px high");
    assert!(!dir.path().join("x.wav").exists());
}

#[test]
fn sixteen_bit_png_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("deep.png");
    write_png(&bad, 64, 512, png::ColorType::Rgb, png::BitDepth::Sixteen);
    let out = run(&[Path::new("image-to-audio"), &bad, &dir.path().join("x.wav")]);
    assert_clear_error(&out, &bad, "16-bit");
}

#[test]
fn images_without_exif_and_grayscale_or_palette_fall_back_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    for (name, color) in [
        ("gray.png", png::ColorType::Grayscale),
        ("palette.png", png::ColorType::Indexed),
        ("gray_alpha.png", png::ColorType::GrayscaleAlpha),
        ("rgb_without_exif.png", png::ColorType::Rgb),
    ] {
        let img = dir.path().join(name);
        write_png(&img, 64, 512, color, png::BitDepth::Eight);
        let wav = dir.path().join(format!("{name}.wav"));
        let out = run(&[Path::new("image-to-audio"), &img, &wav]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("no spectrogram EXIF") && err.contains(name),
            "{err}"
        );
        let audio = ragafusion::audio::read_audio(&wav).unwrap();
        assert_eq!(audio.len_samples(), 441 * 63);
    }
}

#[test]
fn corrupt_png_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("corrupt.png");
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(&[0u8; 40]);
    std::fs::write(&bad, &bytes).unwrap();
    let out = run(&[Path::new("image-to-audio"), &bad, &dir.path().join("x.wav")]);
    assert_clear_error(&out, &bad, "png");
    let missing = dir.path().join("missing.png");
    let out = run(&[Path::new("print-params"), &missing]);
    assert_clear_error(&out, &missing, "no such file");
}

#[test]
fn synth_renders_labelled_clips_and_refuses_unknown_ragas() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("synth")
        .arg(dir.path())
        .args([
            "--raga",
            "Sankarabharanam",
            "--raga",
            "hindolam",
            "--count",
            "2",
            "--duration-s",
            "1.5",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 8, "{names:?}");
    assert_eq!(names[0], "hindolam_00000.json");
    let label: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("shankarabharanam_00001.json")).unwrap(),
    )
    .unwrap();
    for key in [
        "raga",
        "tala",
        "tonic_hz",
        "tempo_bpm",
        "instrument",
        "segment",
        "swaras",
    ] {
        assert!(label.get(key).is_some(), "label lacks {key}");
    }
    // the labels caption the images for `train`
    let img = dir.path().join("img");
    let out = bin()
        .arg("audio-to-image")
        .arg(dir.path())
        .arg(&img)
        .args(["--num-mel-bins", "64", "--captions"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = std::fs::read_to_string(img.join("metadata.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = meta
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4, "{meta}");
    assert_eq!(rows[0]["file_name"], "hindolam_00000.png");
    assert_eq!(rows[0]["raga"], "Hindolam");
    let caption = rows[0]["text"].as_str().unwrap();
    let own: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("hindolam_00000.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(caption, own["caption"].as_str().unwrap());
    let out = bin()
        .arg("synth")
        .arg(dir.path())
        .args(["--raga", "Kalyni"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("unknown raga `Kalyni`") && err.contains("Kalyani"),
        "{err}"
    );
}

#[test]
fn train_classifier_then_classify_evaluate_and_analyze() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = bin()
        .arg("synth")
        .arg(&data)
        .args([
            "--raga",
            "Mohanam",
            "--raga",
            "Hindolam",
            "--count",
            "3",
            "--duration-s",
            "3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let clip = data.join("hindolam_00001.wav");
    let png_path = dir.path().join("h.png");
    assert!(run(&[Path::new("audio-to-image"), &clip, &png_path])
        .status
        .success());
    for (kind, extra) in [("knn", vec![]), ("cnn", vec!["--epochs", "2"])] {
        let model = dir.path().join(format!("model_{kind}"));
        let out = bin()
            .arg("train-classifier")
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&model)
            .args(["--kind", kind])
            .args(&extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(model.join("config.json").exists() && model.join("model.safetensors").exists());
        for input in [&clip, &png_path] {
            let out = bin()
                .arg("classify")
                .arg(input)
                .arg("--model")
                .arg(&model)
                .args(["--top", "2"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let top = v["top"].as_array().unwrap();
            assert_eq!(top.len(), 2);
            assert!(top[0]["score"].as_f64().unwrap() >= top[1]["score"].as_f64().unwrap());
        }
        let report = dir.path().join(format!("eval_{kind}"));
        let out = bin()
            .arg("evaluate")
            .arg("--model")
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(&report)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(report.join("metrics.json")).unwrap()).unwrap();
        assert_eq!(m["clips"], 6);
        assert_eq!(m["top3"], 1.0, "two ragas: always in the top 3");
        let csv = std::fs::read_to_string(report.join("confusion.csv")).unwrap();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        let png = std::fs::read(report.join("confusion.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    // analyze with the built-in classifier, JSON on stdout.
    let figure = dir.path().join("fig.png");
    let out = bin()
        .arg("analyze")
        .arg(&clip)
        .args(["--json", "--raga", "Hindolam", "--tonic", "150", "--out"])
        .arg(&figure)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tonic"]["hz"], 150.0);
    assert_eq!(v["pcd"].as_array().unwrap().len(), 120);
    assert_eq!(v["top"].as_array().unwrap().len(), 5);
    assert_eq!(v["adherence"]["raga"], "Hindolam");
    assert!(v["loudness"]["rms_dbfs"].as_f64().unwrap() < 0.0);
    let png = std::fs::read(&figure).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // ... and its default figure path, from a spectrogram image.
    let out = bin().arg("analyze").arg(&png_path).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("h.analysis.png").exists());

    // Bad inputs.
    let text = dir.path().join("notes.wav");
    std::fs::write(&text, "not audio").unwrap();
    let out = bin().arg("analyze").arg(&text).output().unwrap();
    assert_clear_error(&out, &text, "cannot decode audio");
    let out = bin()
        .arg("analyze")
        .arg(&clip)
        .args(["--raga", "Hindolem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("did you mean Hindolam"),
        "{}",
        stderr(&out)
    );
    let out = bin()
        .arg("analyze")
        .arg(&clip)
        .arg("--tonic=-3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("tonic_hz"), "{}", stderr(&out));

    let missing = dir.path().join("nomodel");
    let out = bin()
        .arg("classify")
        .arg(&clip)
        .arg("--model")
        .arg(&missing)
        .output()
        .unwrap();
    assert_clear_error(&out, &missing.join("config.json"), "no such file");
}

#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let png =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/riffusion/carnatic_5120ms.png");
    for _ in 0..3 {
        let mut child = bin()
            .args(["classify", png.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // the reader goes away before the verb prints its JSON
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "panic: {stderr}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc_sigpipe()),
            "{:?}: {stderr}",
            out.status
        );
    }
}

/// SIGPIPE's number on Linux and the BSDs.
#[cfg(unix)]
fn libc_sigpipe() -> i32 {
    13
}

/// Verbs whose flags become a library job by name: every flag reaches the
/// job (a flag the job lacked would be refused before the job's own
/// checks, which these runs reach).
#[test]
fn job_verbs_hand_their_flags_to_the_job() {
    for verb in ["bench-sd", "bench-musicgen"] {
        let out = bin().args([verb, "--device", "nosuch"]).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{verb}: {err}");
        assert!(err.contains("`nosuch`: expected cpu"), "{verb}: {err}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let out = bin()
        .args(["train-text-encoder", "--out", dir, "--model", dir])
        .args(["--hidden", "6", "--heads", "4"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("hidden") && err.contains("multiple"), "{err}");
}
