//! The PCD/TDMS kNN classifier on held-out rendered clips: 20 ragas of the
//! CompMusic set, trained on voice / violin / flute clips, tested on veena
//! clips with unseen seeds and tonics. Prints top-1 / top-3 with the true
//! tonic and with the estimated tonic; asserts they are far above chance
//! (5% top-1, 15% top-3).

use rayon::prelude::*;

use ragafusion::captions::Vocabulary;
use ragafusion::corpus::synth::{render, SynthSegment, SynthSpec, Timbre};
use ragafusion::raga::knn::{clip_features, ClipFeatures, KnnModel};

fn spec(raga: &str, timbre: Timbre, seed: u64, tonic: f64, i: usize) -> SynthSpec {
    SynthSpec {
        raga: raga.into(),
        tala: Some("Adi".into()),
        tonic_hz: tonic,
        tempo_bpm: 70.0 + (i % 5) as f64 * 10.0,
        timbre,
        segment: [
            SynthSegment::Alapana,
            SynthSegment::Kriti,
            SynthSegment::Tanam,
            SynthSegment::Kalpanaswaram,
        ][i % 4],
        percussion: i % 3 == 0,
        stroke_kit: None,
        drone: true,
        duration_s: 5.12,
        sample_rate_hz: 44100,
        seed,
    }
}

#[test]
fn knn_beats_chance_on_held_out_clips() {
    let vocab = Vocabulary::builtin();
    let ragas: Vec<String> = vocab
        .ragas
        .iter()
        .filter(|r| r.compmusic)
        .take(20)
        .map(|r| r.name.clone())
        .collect();
    let train_timbres = [Timbre::Voice, Timbre::Violin, Timbre::Flute];
    let jobs: Vec<(usize, usize)> = (0..ragas.len())
        .flat_map(|r| (0..6).map(move |i| (r, i)))
        .collect();
    let train: Vec<(ClipFeatures, usize)> = jobs
        .par_iter()
        .map(|&(r, i)| {
            let tonic = 100.0 + ((r * 7 + i * 13) % 16) as f64 * 10.0;
            let clip = render(
                vocab,
                &spec(
                    &ragas[r],
                    train_timbres[i % 3],
                    (r * 100 + i) as u64,
                    tonic,
                    i,
                ),
            )
            .unwrap();
            (
                clip_features(&clip.mix.channels[0], 44100, Some(tonic), (100.0, 260.0)).unwrap(),
                r,
            )
        })
        .collect();
    let model = KnnModel::fit(ragas.clone(), &train, 5, 100).unwrap();
    let tests: Vec<(usize, usize)> = (0..ragas.len())
        .flat_map(|r| (0..3).map(move |i| (r, i)))
        .collect();
    let outcomes: Vec<[bool; 4]> = tests
        .par_iter()
        .map(|&(r, i)| {
            let tonic = 105.0 + ((r * 11 + i * 17) % 15) as f64 * 10.0;
            let clip = render(
                vocab,
                &spec(
                    &ragas[r],
                    Timbre::Veena,
                    50_000 + (r * 100 + i) as u64,
                    tonic,
                    i + 1,
                ),
            )
            .unwrap();
            let x = &clip.mix.channels[0];
            let known =
                model.predict(&clip_features(x, 44100, Some(tonic), (100.0, 260.0)).unwrap());
            let est = model.predict(&clip_features(x, 44100, None, (100.0, 260.0)).unwrap());
            let in_top =
                |p: &[(String, f64)], n: usize| p.iter().take(n).any(|(name, _)| *name == ragas[r]);
            [
                in_top(&known, 1),
                in_top(&known, 3),
                in_top(&est, 1),
                in_top(&est, 3),
            ]
        })
        .collect();
    let rate = |k: usize| outcomes.iter().filter(|o| o[k]).count() as f64 / outcomes.len() as f64;
    eprintln!(
        "kNN on {} held-out clips, {} ragas: true tonic top-1 {:.1}% top-3 {:.1}%; estimated tonic top-1 {:.1}% top-3 {:.1}%",
        outcomes.len(),
        ragas.len(),
        rate(0) * 100.0,
        rate(1) * 100.0,
        rate(2) * 100.0,
        rate(3) * 100.0
    );
    assert!(rate(0) >= 0.3, "top-1 {}", rate(0));
    assert!(rate(1) >= 0.5, "top-3 {}", rate(1));
}
