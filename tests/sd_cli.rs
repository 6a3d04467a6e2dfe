//! `generate`, `audio-to-audio` and `interpolate` end to end on the CPU with
//! the tiny random checkpoint (tests/data/sd-tiny): the files they write,
//! the long-form seam test, and clear errors for bad input.

use std::path::{Path, PathBuf};

mod common;

use common::{assert_ok as ok, fails_with, run_cli as run};

use ragafusion::audio::{read_audio_as, ChannelLayout};
use ragafusion::diffusion::pipeline::longform::Tiling;
use ragafusion::spectrogram::{read_png, SpectrogramConverter, SpectrogramParams};

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sd-tiny")
}

fn clip() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/clips/vignesh_5120ms.wav")
}

fn sidecar(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Checks one output triple and returns its sidecar.
fn check_outputs(dir: &Path, name: &str, width_px: usize) -> serde_json::Value {
    let png = read_png(&dir.join(format!("{name}.png"))).unwrap();
    assert!(png.has_exif, "the PNG carries riffusion's EXIF parameters");
    assert_eq!((png.image.width, png.image.height), (width_px, 512));
    let audio =
        read_audio_as(&dir.join(format!("{name}.wav")), 44100, ChannelLayout::Mono).unwrap();
    let expected_s = width_px as f64 / 100.0;
    assert!(
        (audio.duration_s() - expected_s).abs() < 0.05,
        "{}",
        audio.duration_s()
    );
    assert!(audio.peak() > 0.01, "not silent");
    let s = sidecar(&dir.join(format!("{name}.json")));
    assert_eq!(s["width_px"], width_px);
    assert!(s["model"]["content_hash"]
        .as_str()
        .unwrap()
        .starts_with("xxh3:"));
    s
}

#[test]
fn generate_writes_wav_png_and_sidecar_and_is_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let m = model();
    let args = [
        "generate",
        "kalyani raga, adi tala, violin",
        "--model",
        m.to_str().unwrap(),
        "--out",
        out,
        "--steps",
        "2",
        "--scheduler",
        "ddim",
        "--negative",
        "noise",
        "--seed",
        "9",
    ];
    ok(&run(&args));
    let s = check_outputs(tmp.path(), "kalyani-raga-adi-tala-violin-s9", 512);
    assert_eq!(s["prompt"], "kalyani raga, adi tala, violin");
    assert_eq!(s["negative_prompt"], "noise");
    assert_eq!(
        (s["seed"].as_u64(), s["steps"].as_u64()),
        (Some(9), Some(2))
    );
    assert_eq!(s["scheduler"], "ddim");
    assert_eq!(s["guidance"], 7.0);
    assert!(s["timings_s"]["denoise_and_decode"].as_f64().unwrap() > 0.0);
    let first = std::fs::read(tmp.path().join("kalyani-raga-adi-tala-violin-s9.png")).unwrap();
    // the same seed gives the same image
    let again = tempfile::tempdir().unwrap();
    let mut args2 = args;
    args2[5] = again.path().to_str().unwrap();
    ok(&run(&args2));
    let second = std::fs::read(again.path().join("kalyani-raga-adi-tala-violin-s9.png")).unwrap();
    assert_eq!(first, second);
}

#[test]
fn long_form_has_no_seam_at_clip_joins() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model();
    ok(&run(&[
        "generate",
        "bhairavi raga alapana",
        "--model",
        m.to_str().unwrap(),
        "--out",
        tmp.path().to_str().unwrap(),
        "--steps",
        "2",
        "--scheduler",
        "ddim",
        "--guidance",
        "1",
        "--seconds",
        "30",
        "--name",
        "long",
    ]));
    let s = check_outputs(tmp.path(), "long", 3000);
    assert_eq!(s["kind"], "long-form");
    let tiling = Tiling {
        clip_px: 512,
        overlap_px: 128,
    };
    assert_eq!(tiling.starts(3000).len(), 8);
    common::assert_no_seam(
        &[&tmp.path().join("long.wav")],
        SpectrogramParams::default(),
        3000,
    );
}

#[test]
fn audio_to_audio_keeps_masked_parts_and_handles_long_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model();
    // an 8 s input: two clips
    let params = SpectrogramParams::default();
    let audio = read_audio_as(&clip(), 44100, ChannelLayout::Mono).unwrap();
    let mut long = audio.channels[0].clone();
    long.extend_from_slice(&audio.channels[0][..(2.88 * 44100.0) as usize]);
    let input = tmp.path().join("in.wav");
    let a = ragafusion::audio::Audio::new(vec![long], 44100, "test").unwrap();
    ragafusion::audio::write_wav(&input, &a, ragafusion::audio::WavFormat::Pcm16).unwrap();
    let (img, _) = SpectrogramConverter::new(params.clone())
        .unwrap()
        .image_from_audio(&a)
        .unwrap();
    // mask: repaint (white) the right half, keep (black) the left half
    let (w, h) = (img.width, img.height);
    let mut mask = ragafusion::spectrogram::SpectrogramImage {
        width: w,
        height: h,
        rgb: vec![0; w * h * 3],
    };
    for y in 0..h {
        for x in w / 2..w {
            for c in 0..3 {
                mask.rgb[(y * w + x) * 3 + c] = 255;
            }
        }
    }
    let mask_path = tmp.path().join("mask.png");
    ragafusion::spectrogram::write_png(&mask_path, &mask, &params, 1.0).unwrap();
    let out = tmp.path().join("out");
    ok(&run(&[
        "audio-to-audio",
        input.to_str().unwrap(),
        "kalyani raga on flute",
        "--model",
        m.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "4",
        "--strength",
        "0.5",
        "--guidance",
        "1",
        "--scheduler",
        "ddim",
        "--mask",
        mask_path.to_str().unwrap(),
        "--name",
        "a2a",
    ]));
    let s = check_outputs(&out, "a2a", w);
    assert_eq!(s["kind"], "audio-to-audio");
    assert_eq!(s["strength"], 0.5);
    // the kept half stays closer to the input than the repainted half
    let got = read_png(&out.join("a2a.png")).unwrap().image;
    let diff = |x0: usize, x1: usize| {
        let mut d = 0f64;
        for y in 0..h {
            for x in x0..x1 {
                d += (got.rgb[(y * w + x) * 3] as f64 - img.rgb[(y * w + x) * 3] as f64).abs();
            }
        }
        d / (h * (x1 - x0)) as f64
    };
    let kept = diff(8, w / 2 - 16);
    let repainted = diff(w / 2 + 16, w - 8);
    assert!(
        kept < repainted,
        "kept {kept:.1} vs repainted {repainted:.1}"
    );

    // a mask of the wrong size is named
    let bad = tmp.path().join("small.png");
    let small = ragafusion::spectrogram::SpectrogramImage {
        width: 64,
        height: 512,
        rgb: vec![0; 64 * 512 * 3],
    };
    ragafusion::spectrogram::write_png(&bad, &small, &params, 1.0).unwrap();
    let o = run(&[
        "audio-to-audio",
        input.to_str().unwrap(),
        "x",
        "--model",
        m.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--mask",
        bad.to_str().unwrap(),
    ]);
    fails_with(&o, &["small.png", "64x512"]);
}

#[test]
fn interpolate_writes_each_clip_and_the_joined_file() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model();
    ok(&run(&[
        "interpolate",
        "--from",
        "todi raga:1",
        "--to",
        "mohanam raga:2",
        "--steps",
        "3",
        "--inference-steps",
        "2",
        "--scheduler",
        "ddim",
        "--guidance",
        "1",
        "--model",
        m.to_str().unwrap(),
        "--out",
        tmp.path().to_str().unwrap(),
        "--name",
        "walk",
    ]));
    for k in 0..3 {
        let s = check_outputs(tmp.path(), &format!("walk-{k:02}"), 512);
        assert_eq!(s["alpha"], k as f64 / 2.0);
    }
    // three clips overlapping by 128 px
    let s = check_outputs(tmp.path(), "walk-joined", 512 * 3 - 2 * 128);
    assert_eq!(s["kind"], "interpolation-joined");
    let o = run(&[
        "interpolate",
        "--from",
        "todi raga",
        "--to",
        "mohanam:2",
        "--model",
        m.to_str().unwrap(),
    ]);
    fails_with(&o, &["--from", "PROMPT:SEED"]);
}

#[test]
fn bad_generation_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model();
    let out = tmp.path().to_str().unwrap();
    // --init-latents with the wrong shape / name
    let lat = tmp.path().join("lat.safetensors");
    let t = candle_core::Tensor::zeros(
        (1, 4, 8, 8),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    ragafusion::nn::weights::write_safetensors(&lat, &[("latents".into(), t.clone())]).unwrap();
    let o = run(&[
        "generate",
        "x",
        "--model",
        m.to_str().unwrap(),
        "--out",
        out,
        "--steps",
        "1",
        "--init-latents",
        lat.to_str().unwrap(),
    ]);
    fails_with(&o, &["init-latents", "[1, 4, 8, 8]", "[1, 4, 64, 64]"]);
    ragafusion::nn::weights::write_safetensors(&lat, &[("noise".into(), t)]).unwrap();
    let o = run(&[
        "generate",
        "x",
        "--model",
        m.to_str().unwrap(),
        "--out",
        out,
        "--steps",
        "1",
        "--init-latents",
        lat.to_str().unwrap(),
    ]);
    fails_with(&o, &["lat.safetensors", "latents", "noise"]);
    // a folder that is not a checkpoint
    let o = run(&["generate", "x", "--model", out, "--out", out]);
    fails_with(&o, &["model_index.json"]);
    // an unknown scheduler is a usage error
    let o = run(&[
        "generate",
        "x",
        "--model",
        m.to_str().unwrap(),
        "--scheduler",
        "lms",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lms"));
    // bf16 on the CPU
    let o = run(&[
        "generate",
        "x",
        "--model",
        m.to_str().unwrap(),
        "--dtype",
        "bf16",
    ]);
    fails_with(&o, &["bf16", "CUDA"]);
}

#[test]
fn model_defaults_and_tonic_shape_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("model");
    common::copy_dir(&model(), &m);
    std::fs::write(
        m.join("ragafusion.json"),
        r#"{"canonical_tonic_hz": 146.83, "scheduler": "ddim", "steps": 2, "guidance": 3.0}"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let gen = |prompt: &str, extra: &[&str], name: &str| {
        let mut args = vec![
            "generate",
            prompt,
            "--model",
            m.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--name",
            name,
            "--seed",
            "3",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    // the model's own sampler settings; the shruti phrase leaves the caption
    ok(&gen("todi raga, shruti D", &[], "d"));
    let s = sidecar(&out.join("d.json"));
    assert_eq!(
        (s["scheduler"].as_str(), s["steps"].as_u64()),
        (Some("ddim"), Some(2))
    );
    assert_eq!(s["guidance"].as_f64(), Some(3.0));
    assert_eq!(s["model_prompt"], "todi raga");
    assert!((s["transpose_ratio"].as_f64().unwrap() - 1.0).abs() < 1e-3);
    // shruti A: the same clip a fifth higher (rows counted from the top)
    ok(&gen("todi raga, shruti A", &[], "a"));
    let s = sidecar(&out.join("a.json"));
    assert!((s["tonic_hz"].as_f64().unwrap() - 220.0).abs() < 0.01);
    let (d, a) = (
        read_png(&out.join("d.png")).unwrap(),
        read_png(&out.join("a.png")).unwrap(),
    );
    let ratio = s["transpose_ratio"].as_f64().unwrap();
    assert!((ratio - 220.0 / 146.83).abs() < 1e-3, "{ratio}");
    let moved =
        ragafusion::spectrogram::transpose::transpose_image(&d.image, &d.params, ratio).unwrap();
    assert!(
        moved.rgb == a.image.rgb,
        "the A clip is the D clip transposed"
    );
    assert!(d.image.rgb != a.image.rgb);
    // --tonic wins over the caption; flags win over the model's settings
    ok(&gen(
        "todi raga, shruti A",
        &["--tonic", "D", "--steps", "1"],
        "flag",
    ));
    let s = sidecar(&out.join("flag.json"));
    assert!((s["tonic_hz"].as_f64().unwrap() - 146.83).abs() < 0.01);
    assert_eq!(s["steps"].as_u64(), Some(1));
    // a model without a canonical tonic cannot honour --tonic
    let o = run(&[
        "generate",
        "x",
        "--model",
        model().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--tonic",
        "D",
    ]);
    fails_with(&o, &["tonic", "ragafusion.json"]);
    // a broken ragafusion.json names the file and the field
    std::fs::write(m.join("ragafusion.json"), r#"{"steps": 0}"#).unwrap();
    fails_with(&gen("x", &[], "bad"), &["ragafusion.json", "steps"]);
    // an unreadable tonic is a usage error naming the flag
    let o = gen("x", &["--tonic", "Q"], "q");
    assert_eq!(o.status.code(), Some(2));
}
