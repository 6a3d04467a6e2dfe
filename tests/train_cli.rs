//! `ragafusion train` end to end on the tiny fixture: a short run with
//! validation, checkpoints, a resume that extends it, the export loaded by
//! `generate`, and clear errors for bad options.

mod common;

use std::path::Path;
use std::process::{Command, Output};

const TINY: &str = "tests/data/sd-tiny";

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ragafusion"))
        .args(args)
        .env("RAGAFUSION_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn train_validate_resume_export_generate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::tiny_dataset(&data, 4, 64, 96);
    let out = tmp.path().join("run");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let common_args = [
        "train",
        "--data",
        d,
        "--out",
        o,
        "--model",
        TINY,
        "--batch-size",
        "2",
        "--crop-px",
        "64",
        "--checkpoint-every",
        "2",
        "--lr-warmup-steps",
        "0",
        "--ema-decay",
        "0.99",
        "--snr-gamma",
        "5",
        "--validate-every",
        "3",
        "--validation-prompt",
        "Todi raga",
        "--validation-steps",
        "2",
    ];
    let mut first = common_args.to_vec();
    first.extend(["--max-steps", "3"]);
    let stdout = String::from_utf8(ok(&first).stdout).unwrap();
    assert!(stdout.contains("final"), "{stdout}");
    let m = lines(&out.join("metrics.jsonl"));
    assert_eq!(m.len(), 3);
    assert!(m.iter().all(|l| l["loss"].as_f64().unwrap().is_finite()));
    assert!(out.join("loss.png").is_file());
    assert!(out.join("train_config.toml").is_file());
    assert!(out.join("cache/latents.safetensors").is_file());
    assert!(out
        .join("checkpoints/checkpoint-000002/state.json")
        .is_file());
    assert!(out
        .join("checkpoints/checkpoint-000003/trainable.safetensors")
        .is_file());
    let v = lines(&out.join("validation.jsonl"));
    assert_eq!(v.len(), 1);
    let wav = v[0]["validation"][0]["wav"].as_str().unwrap();
    assert!(Path::new(wav).is_file(), "{wav}");

    // resume: saved options, two more steps
    let resumed = ok(&["train", "--out", o, "--resume", "--max-steps", "5"]);
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(err.contains("resumed from step 3"), "{err}");
    let m = lines(&out.join("metrics.jsonl"));
    assert_eq!(
        m.iter()
            .map(|l| l["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );

    // the export is a pipeline `generate` loads
    let final_dir = out.join("final");
    let gen = tmp.path().join("gen");
    ok(&[
        "generate",
        "Todi raga",
        "--model",
        final_dir.to_str().unwrap(),
        "--steps",
        "2",
        "--guidance",
        "1",
        "--out",
        gen.to_str().unwrap(),
        "--name",
        "g",
    ]);
    assert!(gen.join("g.wav").is_file());
}

#[test]
fn bad_training_options_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::tiny_dataset(&data, 2, 64, 64);
    let (d, o) = (data.to_str().unwrap(), tmp.path().join("o"));
    let o = o.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["train", "--out", o, "--model", TINY], "data"),
        (
            &[
                "train", "--data", d, "--out", o, "--model", TINY, "--config", "huge",
            ],
            "huge",
        ),
        (
            &[
                "train",
                "--data",
                d,
                "--out",
                o,
                "--model",
                TINY,
                "--crop-px",
                "60",
            ],
            "crop",
        ),
        (
            &["train", "--data", d, "--out", o, "--model", "no/such/model"],
            "no/such/model",
        ),
    ];
    for (args, want) in cases {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
