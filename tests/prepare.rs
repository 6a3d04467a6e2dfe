//! `prepare` end to end on a mixed folder: rendered clips, the CC BY real
//! clips, a corrupt file, and a row with an unknown raga. The real clips'
//! raga labels here are placeholders: the test checks the pipeline, not
//! musicology.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use ragafusion::captions::Vocabulary;
use ragafusion::corpus::synth_set::{render_set, SynthOverrides, SynthSet};
use ragafusion::NoProgress;

fn run_prepare(audio: &Path, meta: &Path, out: &Path) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_ragafusion"))
        .arg("prepare")
        .arg("--audio-dir")
        .arg(audio)
        .arg("--metadata")
        .arg(meta)
        .arg("--out")
        .arg(out)
        .args(["--split", "0.5,0.25,0.25"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("panicked"));
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn mixed_folder_makes_a_dataset_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let audio = dir.path().join("audio");
    std::fs::create_dir(&audio).unwrap();
    let vocab = Vocabulary::builtin();
    let ragas: Vec<String> = ["Kalyani", "Todi", "Mohanam"].map(String::from).to_vec();
    let job = SynthSet {
        ragas,
        count: 2,
        seed: 9,
        duration_s: 6.0,
        overrides: SynthOverrides::default(),
    };
    let set = render_set(vocab, &audio, &job, &NoProgress).unwrap();
    let mut csv = String::from("file,raga,tala,composer,artist,segment,start_s,end_s\n");
    for wav in &set.files {
        let label: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(wav.with_extension("json")).unwrap())
                .unwrap();
        let name = wav.file_name().unwrap().to_string_lossy();
        csv += &format!(
            "{name},{},,,,{},,\n",
            label["raga"].as_str().unwrap(),
            label["segment"].as_str().unwrap()
        );
    }
    // A segment of one rendered clip, with Thodi spelled another way.
    csv += "todi_00000.wav,Thodi,Adi,Thyagaraja,,kriti,0.5,3.0\n";
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/clips");
    for (name, raga, segment) in [
        ("vignesh", "Kalyani", "alapana"),
        ("carnatic", "Todi", "alapana"),
        ("violin-B3", "Kharaharapriya", "kriti"),
        ("flute-A4", "Mohanam", "kriti"),
        ("mridangam", "Kalyani", "tani avartanam"),
    ] {
        std::fs::copy(
            real.join(format!("{name}_5120ms.wav")),
            audio.join(format!("{name}.wav")),
        )
        .unwrap();
        csv += &format!("{name}.wav,{raga},Adi,,Xavier Serra,{segment},,\n");
    }
    std::fs::write(
        audio.join("broken.wav"),
        b"RIFF\x10\x00\x00\x00WAVEfmt garbage",
    )
    .unwrap();
    csv += "broken.wav,Todi,,,,,,\n";
    csv += "vignesh.wav,Kalyanni Xyz,,,,,,\n";
    let meta = dir.path().join("meta.csv");
    std::fs::write(&meta, &csv).unwrap();
    let out = dir.path().join("out");

    let s = run_prepare(&audio, &meta, &out);
    let bad = s["bad"].as_array().unwrap();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad.iter()
            .any(|b| b["file"] == "broken.wav"
                && b["reason"].as_str().unwrap().contains("broken.wav"))
    );
    assert!(bad.iter().any(|b| b["reason"]
        .as_str()
        .unwrap()
        .contains("unknown raga `Kalyanni Xyz`")));
    assert_eq!(s["rows_percussion_solo"], 1);
    assert_eq!(s["rows_already_done"], 0);

    // Every listed PNG exists, captions name the raga, no recording in two splits.
    let mut source_split: BTreeMap<String, String> = BTreeMap::new();
    let mut total = 0;
    for split in ["train", "validation", "test"] {
        let text = std::fs::read_to_string(out.join(split).join("metadata.jsonl")).unwrap();
        for line in text.lines() {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            let png = out.join(split).join(e["file_name"].as_str().unwrap());
            assert!(png.exists(), "{png:?}");
            let raga = e["raga"].as_str().unwrap();
            assert!(e["text"].as_str().unwrap().contains(raga), "{e}");
            let source = e["source"].as_str().unwrap().to_string();
            let prev = source_split.insert(source.clone(), split.to_string());
            assert!(
                prev.is_none() || prev.as_deref() == Some(split),
                "{source} in two splits"
            );
            total += 1;
        }
    }
    // 6 rendered clips (6 s: one full clip + a tail under half a clip is
    // dropped), 1 segment, 4 real clips.
    assert_eq!(total, 11, "{s}");
    assert!(
        source_split.contains_key("vignesh.wav") && !source_split.contains_key("mridangam.wav")
    );
    let splits: BTreeSet<&String> = source_split.values().collect();
    assert!(
        splits.len() >= 2,
        "all recordings in one split: {source_split:?}"
    );

    // A second run does no work.
    let pngs = |d: &Path| {
        walk(d)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .count()
    };
    let before = pngs(&out);
    let s2 = run_prepare(&audio, &meta, &out);
    assert_eq!(s2["rows_processed"], 0);
    assert_eq!(s2["rows_already_done"], s["rows_processed"]);
    assert_eq!(pngs(&out), before);
    assert_eq!(s2["clips"], s["clips"]);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
