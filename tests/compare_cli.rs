//! `compare` end to end: a small experiment (rendered reference clips from
//! a setup step, the tiny diffusion pipeline at 64 mel bins, the tiny
//! MusicGen) produces consistent results, resumes without remaking
//! finished clips, and its report opens in headless Chromium with every
//! audio and image element resolved and every table filled.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use common::{assert_ok, fails_with, narrow_pipeline, run_cli};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn experiment(dir: &Path, extra_prompt: &str) -> PathBuf {
    let sd = dir.join("sd64");
    if !sd.exists() {
        narrow_pipeline(&sd);
    }
    let text = format!(
        r#"
name = "test <comparison>"
description = "two generators & rendered clips"
seeds = [7]
seconds = 3.0

[[setup]]
run = ["synth", "{{out}}/ref", "--raga", "Mohanam", "--raga", "Hindolam", "--count", "2",
       "--seed", "1", "--timbre", "flute", "--tonic-hz", "146.83", "--no-percussion",
       "--duration-s", "3"]

[[backend]]
name = "reference"
kind = "reference"
clips = "{{out}}/ref"

[[backend]]
name = "sd"
kind = "diffusion"
model = "sd64"
steps = 3
guidance = 2.0

[[backend]]
name = "mg"
kind = "musicgen"
model = "{musicgen}"
greedy = true

[[prompt]]
raga = "Mohanam"
segment = "alapana"
tonic_hz = 146.83

[[prompt]]
id = "hin"
text = "Hindolam raga on flute"
raga = "Hindolam"
{extra_prompt}
"#,
        musicgen = data("musicgen-tiny").display()
    );
    let file = dir.join("exp.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// Runs headless Chromium on `html` with a checking script appended:
/// returns the script's JSON verdict (Chromium from `common::chromium`).
fn chromium_check(html: &Path, work: &Path) -> serde_json::Value {
    let chromium = common::chromium();
    let script = r#"<script>
window.addEventListener('load', async () => {
  const audios = [...document.querySelectorAll('audio')];
  const ready = a => new Promise(res => {
    if (a.readyState >= 1) return res(true);
    a.addEventListener('loadedmetadata', () => res(true), {once: true});
    a.addEventListener('error', () => res(false), {once: true});
    setTimeout(() => res(a.readyState >= 1), 10000);
  });
  const ok = await Promise.all(audios.map(ready));
  const images = [...document.images];
  const out = {
    images: images.length,
    images_ok: images.filter(i => i.complete && i.naturalWidth > 0).length,
    audio: audios.length,
    audio_ok: ok.filter(x => x).length,
    durations: audios.map(a => a.duration),
    external: [...document.querySelectorAll('[src]')].filter(e => !e.getAttribute('src').startsWith('data:')).length,
    tables: [...document.querySelectorAll('table')].map(t => ({
      id: t.id,
      rows: t.tBodies.length ? t.tBodies[0].rows.length : 0,
      empty: [...t.querySelectorAll('td')].filter(td => td.textContent.trim() === '' && !td.querySelector('audio,img')).length,
    })),
  };
  const pre = document.createElement('pre');
  pre.id = 'check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"#;
    let page = std::fs::read_to_string(html).unwrap();
    assert!(page.contains("</body>"));
    let checked = work.join("checked.html");
    std::fs::write(
        &checked,
        page.replace("</body>", &format!("{script}</body>")),
    )
    .unwrap();
    let flags: Vec<&str> = common::HEADLESS_FLAGS
        .into_iter()
        .chain(["--virtual-time-budget=30000"])
        .collect();
    let profile = format!("--user-data-dir={}", work.join("profile").display());
    let dom = Command::new(&chromium)
        .args(&flags)
        .arg(&profile)
        .arg("--dump-dom")
        .arg(format!("file://{}", checked.display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dom.stdout);
    let start = text.find("<pre id=\"check\">").expect("the check ran") + 16;
    let end = start + text[start..].find("</pre>").unwrap();
    let verdict: serde_json::Value =
        serde_json::from_str(&text[start..end].replace("&quot;", "\"")).unwrap();
    // and a screenshot of the report itself
    let shot = work.join("report.png");
    let status = Command::new(&chromium)
        .args(&flags)
        .arg(&profile)
        .arg("--window-size=1400,2000")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (1400, 2000));
    let bytes_per_px = frame.line_size / frame.width as usize;
    let distinct: std::collections::HashSet<&[u8]> = pixels.chunks(bytes_per_px).collect();
    assert!(
        distinct.len() > 50,
        "a blank screenshot ({} colours)",
        distinct.len()
    );
    verdict
}

#[test]
fn compare_reports_resumes_and_opens_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), "");
    let out = dir.path().join("out");
    let run = run_cli(&[
        "compare",
        exp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&run);

    // one row per clip: 4 reference + 2 prompts x 1 seed x 2 generators
    let mut csv = csv::Reader::from_path(out.join("results.csv")).unwrap();
    let headers = csv.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 8);
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let backends = results["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 3);
    for b in backends {
        let name = b["name"].as_str().unwrap();
        let mine: Vec<&csv::StringRecord> =
            rows.iter().filter(|r| &r[col("backend")] == name).collect();
        assert_eq!(b["clips"].as_u64().unwrap() as usize, mine.len());
        // accuracy is the count of right verdicts, by hand from the rows
        for (judge, key) in [("cnn", "cnn_top1_right"), ("knn", "knn_top1_right")] {
            let right = mine.iter().filter(|r| &r[col(key)] == "true").count();
            let top1 = b[judge]["top1"].as_f64().unwrap();
            assert!(
                (top1 * mine.len() as f64 - right as f64).abs() < 1e-9,
                "{name} {judge}"
            );
        }
        let generated = name != "reference";
        assert_eq!(
            b["fd_cnn"].is_number(),
            generated,
            "{name}: {}",
            b["fd_cnn"]
        );
        assert_eq!(b["fd_knn"].is_number(), generated, "{name}");
        assert_eq!(b["seconds_per_clip"].is_object(), generated, "{name}");
        for r in &mine {
            assert!(out.join(&r[col("wav")]).is_file());
            assert!(out.join(&r[col("png")]).is_file());
        }
    }
    // the reference clips are judged with their labelled raga and tonic
    let tonic = rows
        .iter()
        .filter(|r| &r[col("backend")] == "reference")
        .map(|r| r[col("tonic_hz")].parse::<f64>().unwrap());
    assert!(tonic.into_iter().all(|t| (t - 146.83).abs() < 1e-9));
    // the prompt without a tonic had it estimated
    let hin = rows.iter().find(|r| &r[col("clip")] == "hin-s7").unwrap();
    assert_eq!(&hin[col("tonic_given")], "false");
    for chart in [
        "cnn-top1.png",
        "knn-top3.png",
        "fd-cnn.png",
        "seconds-per-clip.png",
        "confusion-sd-cnn.png",
    ] {
        assert!(out.join("charts").join(chart).is_file(), "{chart}");
    }
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 4, "{summary}");

    // a rerun remakes nothing; a deleted clip is remade alone
    let clip = |b: &str, c: &str| out.join("clips").join(b).join(format!("{c}.json"));
    let before = [
        modified(&clip("sd", "p1-s7")),
        modified(&clip("mg", "hin-s7")),
    ];
    assert_ok(&run_cli(&[
        "compare",
        exp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(
        before,
        [
            modified(&clip("sd", "p1-s7")),
            modified(&clip("mg", "hin-s7"))
        ]
    );
    std::fs::remove_file(out.join("clips/mg/hin-s7.wav")).unwrap();
    assert_ok(&run_cli(&[
        "compare",
        exp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(before[0], modified(&clip("sd", "p1-s7")));
    assert_ne!(before[1], modified(&clip("mg", "hin-s7")));
    assert!(out.join("clips/mg/hin-s7.wav").is_file());

    let v = chromium_check(&out.join("report.html"), dir.path());
    assert_eq!(v["audio"].as_u64(), Some(8), "{v}");
    assert_eq!(v["audio_ok"], v["audio"], "{v}");
    assert!(v["images"].as_u64().unwrap() >= 8 + 5, "{v}");
    assert_eq!(v["images_ok"], v["images"], "{v}");
    assert_eq!(v["external"].as_u64(), Some(0), "{v}");
    for d in v["durations"].as_array().unwrap() {
        assert!((d.as_f64().unwrap() - 3.0).abs() < 0.05, "{v}");
    }
    let tables = v["tables"].as_array().unwrap();
    assert!(tables.len() >= 5, "{v}");
    for t in tables {
        assert!(t["rows"].as_u64().unwrap() > 0, "{t}");
        assert_eq!(t["empty"].as_u64(), Some(0), "{t}");
    }
}

#[test]
fn bad_experiments_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let exp = experiment(dir.path(), "");
    let text = std::fs::read_to_string(&exp).unwrap();
    let cases = [
        (
            text.replace("raga = \"Mohanam\"", "raga = \"Mohnam\""),
            vec!["exp.toml", "prompt[0].raga", "Mohanam"],
        ),
        (
            text.replace("model = \"sd64\"", "model = \"missing\""),
            vec!["missing", "model_index.json"],
        ),
        (
            text.replace("steps = 3", "steps = 3\ntop_k = 5"),
            vec!["exp.toml", "backend[1] (`sd`).top_k"],
        ),
        (
            text.replace("seconds = 3.0", "seconds = \"long\""),
            vec!["exp.toml", "seconds"],
        ),
    ];
    for (bad, words) in cases {
        std::fs::write(&exp, bad).unwrap();
        // setup runs (the reference clips are measured before the model
        // is found missing)
        let r = run_cli(&[
            "compare",
            exp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        fails_with(&r, &words);
    }
    let r = run_cli(&["compare", "nowhere.toml", "--out", out.to_str().unwrap()]);
    fails_with(&r, &["nowhere.toml"]);
}
