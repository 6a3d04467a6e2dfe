//! `ragafusion train` end to end on the tiny fixture: a short run with
//! validation, checkpoints, a resume that extends it, the export loaded by
//! `generate`, and clear errors for bad options.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::fails_with;

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

    // a checkpoint exported on its own: the newest one (step 5) is the
    // final export's UNet; f16 storage halves it; ragafusion.json written
    let same = tmp.path().join("same");
    ok(&[
        "export-checkpoint",
        "--run",
        o,
        "--out",
        same.to_str().unwrap(),
    ]);
    let unet =
        |dir: &Path| std::fs::read(dir.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    assert!(
        unet(&same) == unet(&final_dir),
        "the newest checkpoint is the final export"
    );
    let half = tmp.path().join("half");
    let done = ok(&[
        "export-checkpoint",
        "--run",
        o,
        "--step",
        "4",
        "--out",
        half.to_str().unwrap(),
        "--dtype",
        "f16",
        "--canonical-tonic-hz",
        "146.83",
        "--steps",
        "2",
    ]);
    assert!(String::from_utf8_lossy(&done.stderr).contains("exported step 4"));
    assert!(
        unet(&half).len() * 10 < unet(&final_dir).len() * 6,
        "f16 storage"
    );
    let defaults = ragafusion::diffusion::defaults::ModelDefaults::read(&half).unwrap();
    assert_eq!(
        (defaults.canonical_tonic_hz, defaults.steps),
        (Some(146.83), Some(2))
    );
    ok(&[
        "generate",
        "Todi raga, shruti E",
        "--model",
        half.to_str().unwrap(),
        "--out",
        gen.to_str().unwrap(),
        "--name",
        "h",
    ]);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(gen.join("h.json")).unwrap()).unwrap();
    assert_eq!(
        (s["steps"].as_u64(), s["model_prompt"].as_str()),
        (Some(2), Some("Todi raga"))
    );
    // a step the run does not have, and a folder that is not a run
    fails_with(
        &run(&[
            "export-checkpoint",
            "--run",
            o,
            "--step",
            "1",
            "--out",
            half.to_str().unwrap(),
        ]),
        &["step 1"],
    );
    fails_with(
        &run(&[
            "export-checkpoint",
            "--run",
            d,
            "--out",
            half.to_str().unwrap(),
        ]),
        &["train_config.toml"],
    );
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

#[test]
fn vae_latent_classifier_and_aux_training_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::tiny_dataset(&data, 6, 64, 136);
    let d = data.to_str().unwrap();
    let vae = tmp.path().join("vae");
    let v = vae.to_str().unwrap();
    let vae_args = [
        "train-vae",
        "--data",
        d,
        "--out",
        v,
        "--model",
        TINY,
        "--config",
        "tiny",
        "--crop-px",
        "64",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "1",
    ];
    ok(&[&vae_args[..], &["--max-steps", "2"]].concat());
    let out = ok(&[&vae_args[..], &["--max-steps", "3", "--resume"]].concat());
    assert!(String::from_utf8_lossy(&out.stderr).contains("resumed from step 2"));
    assert_eq!(lines(&vae.join("metrics.jsonl")).len(), 3);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vae.join("summary.json")).unwrap()).unwrap();
    assert!(summary["scaling_factor"].as_f64().unwrap() > 0.0);
    let fin = vae.join("final");
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fin.join("spectrogram.json")).unwrap()).unwrap();
    assert_eq!(spec["num_mel_bins"], 64);
    let vae_cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fin.join("vae/config.json")).unwrap()).unwrap();
    assert_eq!(
        vae_cfg["block_out_channels"],
        serde_json::json!([16, 32, 64, 64])
    );

    let clf = tmp.path().join("clf");
    let c = clf.to_str().unwrap();
    let f = fin.to_str().unwrap();
    ok(&[
        "train-latent-classifier",
        "--data",
        d,
        "--model",
        f,
        "--out",
        c,
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--crop-px",
        "64",
        "--holdout-every",
        "3",
    ]);
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(clf.join("training.json")).unwrap()).unwrap();
    assert_eq!(info["ragas"], serde_json::json!(["Kalyani", "Todi"]));
    assert_eq!(info["holdout_examples"], 2);

    let run_dir = tmp.path().join("run");
    let r = run_dir.to_str().unwrap();
    ok(&[
        "train",
        "--data",
        d,
        "--out",
        r,
        "--model",
        f,
        "--config",
        "tiny",
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--crop-px",
        "64",
        "--aux-classifier",
        c,
        "--aux-t-max",
        "999",
        "--gradient-checkpointing",
    ]);
    let m = lines(&run_dir.join("metrics.jsonl"));
    assert!(m.iter().any(|l| l["aux_loss"].as_f64().is_some()), "{m:?}");
    let saved = std::fs::read_to_string(run_dir.join("train_config.toml")).unwrap();
    assert!(saved.contains("gradient_checkpointing = true"), "{saved}");
    // the export knows its spectrogram format: generate makes 64-row images
    let gen = tmp.path().join("gen");
    let g = gen.to_str().unwrap();
    ok(&[
        "generate",
        "Todi raga",
        "--model",
        run_dir.join("final").to_str().unwrap(),
        "--out",
        g,
        "--name",
        "x",
        "--steps",
        "2",
    ]);
    let params = ok(&[
        "print-params",
        gen.join("x.png").to_str().unwrap(),
        "--json",
    ]);
    let p: serde_json::Value = serde_json::from_slice(&params.stdout).unwrap();
    assert_eq!(p["params"]["num_mel_bins"], 64);
    assert_eq!(p["height_px"], 64);

    // labels are required, and named when missing
    std::fs::write(
        data.join("metadata.jsonl"),
        "{\"file_name\": \"clip00.png\", \"text\": \"x\"}\n",
    )
    .unwrap();
    let bad = run(&[
        "train-latent-classifier",
        "--data",
        d,
        "--model",
        f,
        "--out",
        c,
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("raga"));
}
