//! One generation path: for the same request, the command line (`generate`
//! on both backends, long form, `audio-to-audio`, `interpolate`), `compare`
//! and the library's engine write byte-identical WAVs.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_ok, narrow_pipeline, run_cli};
use ragafusion::engine::{
    write_outputs, Backend, Engine, GenerateRequest, ModelSpec, MusicgenOptions, Task,
};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const PROMPT: &str = "Hindolam raga on flute";

/// Runs `compare` with one diffusion and one MusicGen backend at
/// `seconds`; returns the output folder.
fn compare(dir: &Path, sd: &Path, seconds: f64) -> PathBuf {
    let text = format!(
        r#"
name = "one path"
seeds = [7]
seconds = {seconds}

[[setup]]
run = ["synth", "{{out}}/ref", "--raga", "Hindolam", "--raga", "Mohanam", "--count", "2",
       "--seed", "1", "--timbre", "flute", "--no-percussion", "--duration-s", "3"]

[[backend]]
name = "reference"
kind = "reference"
clips = "{{out}}/ref"

[[backend]]
name = "sd"
kind = "diffusion"
model = "{sd}"
steps = 2
scheduler = "ddim"
guidance = 2.0

[[backend]]
name = "mg"
kind = "musicgen"
model = "{mg}"
greedy = true

[[prompt]]
id = "hin"
text = "{PROMPT}"
raga = "Hindolam"
"#,
        sd = sd.display(),
        mg = data("musicgen-tiny").display(),
    );
    let file = dir.join(format!("exp-{seconds}.toml"));
    std::fs::write(&file, text).unwrap();
    let out = dir.join(format!("cmp-{seconds}"));
    assert_ok(&run_cli(&[
        "compare",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    out
}

/// `generate` with the flags matching the experiment's backends.
fn cli_generate(out: &Path, sd: &Path, backend: &str, seconds: f64) -> PathBuf {
    let seconds = seconds.to_string();
    let mut args = vec![
        "generate",
        PROMPT,
        "--backend",
        backend,
        "--seed",
        "7",
        "--seconds",
        &seconds,
        "--out",
        out.to_str().unwrap(),
        "--name",
        "x",
    ];
    let mg = data("musicgen-tiny");
    if backend == "diffusion" {
        args.extend([
            "--model",
            sd.to_str().unwrap(),
            "--steps",
            "2",
            "--scheduler",
            "ddim",
            "--guidance",
            "2",
        ]);
    } else {
        args.extend(["--model", mg.to_str().unwrap(), "--greedy"]);
    }
    assert_ok(&run_cli(&args));
    out.join("x.wav")
}

#[test]
fn the_cli_and_compare_make_the_same_clips() {
    let tmp = tempfile::tempdir().unwrap();
    let sd = tmp.path().join("sd64");
    narrow_pipeline(&sd);
    // one clip (3 s), and long form (8 s: two windows)
    for seconds in [3.0, 8.0] {
        let cmp = compare(tmp.path(), &sd, seconds);
        for (backend, name) in [("diffusion", "sd"), ("musicgen", "mg")] {
            let out = tmp.path().join(format!("cli-{backend}-{seconds}"));
            let wav = cli_generate(&out, &sd, backend, seconds);
            let theirs = cmp.join(format!("clips/{name}/hin-s7.wav"));
            assert!(
                bytes(&wav) == bytes(&theirs),
                "{backend} at {seconds} s: the CLI's WAV differs from compare's"
            );
        }
    }
}

#[test]
fn the_cli_and_the_engine_make_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    let sd = tmp.path().join("sd64");
    narrow_pipeline(&sd);
    let clip = data("clips/vignesh_5120ms.wav");
    let engine = Engine::load(&ModelSpec {
        dir: Some(sd.clone()),
        ..ModelSpec::default()
    })
    .unwrap();
    let base = GenerateRequest {
        steps: Some(2),
        sampler: Some("ddim".parse().unwrap()),
        guidance: Some(2.0),
        name: Some("x".into()),
        ..GenerateRequest::new(PROMPT, 5)
    };
    let common = [
        "--model",
        sd.to_str().unwrap(),
        "--steps",
        "2",
        "--scheduler",
        "ddim",
        "--guidance",
        "2",
        "--name",
        "x",
    ];
    let cases: Vec<(GenerateRequest, Vec<String>, Vec<&str>)> = vec![
        (
            GenerateRequest {
                task: Task::AudioToAudio {
                    input: clip.clone(),
                    strength: 0.5,
                    mask: None,
                },
                ..base.clone()
            },
            ["audio-to-audio", clip.to_str().unwrap(), PROMPT]
                .iter()
                .map(|s| s.to_string())
                .chain(["--strength", "0.5", "--seed", "5"].map(String::from))
                .collect(),
            vec!["x"],
        ),
        (
            GenerateRequest {
                task: Task::Interpolate {
                    to_prompt: "Todi raga".into(),
                    to_seed: 6,
                    clips: 3,
                },
                ..base.clone()
            },
            [
                "interpolate",
                "--from",
                &format!("{PROMPT}:5"),
                "--to",
                "Todi raga:6",
                "--steps",
                "3",
                "--inference-steps",
                "2",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            vec!["x-00", "x-01", "x-02", "x-joined"],
        ),
    ];
    for (k, (request, mut args, names)) in cases.into_iter().enumerate() {
        let lib = tmp.path().join(format!("lib-{k}"));
        for made in engine.generate(&request, &ragafusion::NoProgress).unwrap() {
            write_outputs(&lib, &made).unwrap();
        }
        let cli = tmp.path().join(format!("cli-{k}"));
        // interpolate's --steps counts clips (its denoising steps are
        // --inference-steps, given above)
        let flags: Vec<&str> = if args[0] == "interpolate" {
            [&common[..2], &common[4..]].concat()
        } else {
            common.to_vec()
        };
        args.extend(flags.iter().map(|s| s.to_string()));
        args.extend(["--out".into(), cli.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_ok(&run_cli(&args));
        for name in names {
            for ext in ["wav", "png"] {
                let file = format!("{name}.{ext}");
                assert!(
                    bytes(&cli.join(&file)) == bytes(&lib.join(&file)),
                    "{}: {file} differs",
                    args[0]
                );
            }
        }
    }
    // the request names MusicGen's own settings
    let mg = GenerateRequest {
        musicgen: MusicgenOptions {
            greedy: true,
            ..Default::default()
        },
        ..GenerateRequest::new(PROMPT, 1)
    };
    assert!(mg.check(Backend::Musicgen).is_ok());
    assert!(mg.check(Backend::Diffusion).is_err());
}
