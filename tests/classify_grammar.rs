//! The grammar scorer and the fused built-in ear on rendered clips with
//! unseen seeds and estimated tonics, a grammar scorer saved as a folder,
//! and `evaluate --skip-unknown` on labels that name ragas outside the
//! vocabulary. Real-recording figures (which may not be committed) are in
//! docs/analysis.md.

mod common;

use rayon::prelude::*;

use common::{assert_ok, run_cli};
use ragafusion::captions::Vocabulary;
use ragafusion::corpus::synth::{render, SynthSpec};
use ragafusion::raga::classifier::Classifier;

/// (top-1, top-3) hits of `model` on 24 clips of spread-out vocabulary
/// ragas, tonic estimated.
fn hits(model: &Classifier, seed: u64) -> (usize, usize) {
    let vocab = Vocabulary::builtin();
    let picks: Vec<usize> = (0..24).map(|i| (i * 41 + 3) % vocab.ragas.len()).collect();
    let outcomes: Vec<(bool, bool)> = picks
        .par_iter()
        .enumerate()
        .map(|(i, &r)| {
            let raga = &vocab.ragas[r].name;
            let spec = SynthSpec::random(vocab, raga, seed + i as u64, 8.0);
            let clip = render(vocab, &spec).unwrap();
            let c = model.classify_audio(&clip.mix.channels[0], None).unwrap();
            (
                c.ranked[0].0 == *raga,
                c.ranked.iter().take(3).any(|(n, _)| n == raga),
            )
        })
        .collect();
    (
        outcomes.iter().filter(|o| o.0).count(),
        outcomes.iter().filter(|o| o.1).count(),
    )
}

#[test]
fn the_grammar_scorer_from_a_folder_names_rendered_ragas_without_a_tonic() {
    let dir = tempfile::tempdir().unwrap();
    // Every setting left out takes its default.
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"kind": "raga-grammar"}"#,
    )
    .unwrap();
    let model = Classifier::load(dir.path()).unwrap();
    assert_eq!(model.kind(), "raga-grammar");
    assert_eq!(model.ragas().len(), Vocabulary::builtin().ragas.len());
    let (top1, top3) = hits(&model, 9_100_000);
    eprintln!("grammar scorer, 24 unseen clips, estimated tonic: top-1 {top1}, top-3 {top3}");
    // Chance over 160 ragas is under 1 clip of 24 top-1, 2 top-3.
    assert!(top1 >= 8 && top3 >= 13, "top-1 {top1}/24, top-3 {top3}/24");
}

#[test]
fn the_builtin_ear_names_rendered_ragas_without_a_tonic() {
    let model = Classifier::builtin().unwrap();
    let (top1, top3) = hits(&model, 9_200_000);
    eprintln!("built-in ear, 24 unseen clips, estimated tonic: top-1 {top1}, top-3 {top3}");
    assert!(top1 >= 9 && top3 >= 14, "top-1 {top1}/24, top-3 {top3}/24");
}

#[test]
fn a_grammar_config_that_breaks_a_field_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, r#"{"kind": "raga-grammar", "move_slip": 2}"#).unwrap();
    let e = Classifier::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("move_slip"), "{e}");
    std::fs::write(
        &cfg,
        r#"{"kind": "raga-grammar", "ragas": ["Kalyani", "Xyzzy"]}"#,
    )
    .unwrap();
    let e = Classifier::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("Xyzzy"), "{e}");
    std::fs::write(&cfg, r#"{"kind": "raga-grammar", "sa_wieght": 2}"#).unwrap();
    let e = Classifier::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("sa_wieght"), "{e}");
}

#[test]
fn evaluate_skips_labels_outside_the_vocabulary_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("clips");
    std::fs::create_dir(&data).unwrap();
    let vocab = Vocabulary::builtin();
    // Real recordings' labels spell ragas their own way; one names a song.
    for (i, (label, raga)) in [
        ("Shivaranjini", "Shivaranjani"),
        ("Raag Yaman", "Kalyani"),
        ("Mangalam", "Madhyamavati"),
    ]
    .iter()
    .enumerate()
    {
        let spec = SynthSpec::random(vocab, raga, 9_300_000 + i as u64, 4.0);
        let clip = render(vocab, &spec).unwrap();
        let wav = data.join(format!("{i}.wav"));
        ragafusion::audio::write_wav(&wav, &clip.mix, ragafusion::audio::WavFormat::Pcm16).unwrap();
        let label = label.trim_start_matches("Raag ");
        std::fs::write(
            data.join(format!("{i}.json")),
            format!(r#"{{"raga": "{label}"}}"#),
        )
        .unwrap();
    }
    let out_dir = dir.path().join("report");
    let (d, o) = (data.to_str().unwrap(), out_dir.to_str().unwrap());
    let strict = run_cli(&["evaluate", "--data", d, "--out", o]);
    assert!(!strict.status.success());
    let err = String::from_utf8_lossy(&strict.stderr);
    assert!(err.contains("2.json") && err.contains("Mangalam"), "{err}");
    let lenient = run_cli(&["evaluate", "--data", d, "--out", o, "--skip-unknown"]);
    assert_ok(&lenient);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["clips"], 2);
    assert_eq!(m["classifier"], "raga-fusion");
    let skipped = m["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["raga"], "Mangalam");
    let per_clip = m["per_clip"].as_array().unwrap();
    assert_eq!(per_clip.len(), 2);
    assert_eq!(per_clip[0]["raga"], "Shivaranjani");
    assert_eq!(per_clip[1]["raga"], "Kalyani");
    assert!(per_clip
        .iter()
        .all(|c| c["top3"].as_array().unwrap().len() == 3));
}
