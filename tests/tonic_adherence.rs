//! On held-out rendered clips (random specs: any raga, timbre, segment,
//! tonic 100-260 Hz, drone, percussion; seeds no other test uses):
//! - the tonic estimate is within 30 cents on >= 90% of clips;
//! - the chance-corrected in-scale ratio with the true tonic separates the
//!   true raga from a wrong one (ROC AUC, printed and asserted >= 0.9).

use rayon::prelude::*;

use ragafusion::captions::Vocabulary;
use ragafusion::corpus::synth::{render, SynthSpec};
use ragafusion::raga::features::{scale_membership, stable_frames};
use ragafusion::raga::{estimate_tonic, pyin, PyinParams};

const CLIPS: usize = 48;

#[test]
fn tonic_and_in_scale_ratio_on_held_out_clips() {
    let vocab = Vocabulary::builtin();
    let results: Vec<(f64, f64, f64)> = (0..CLIPS)
        .into_par_iter()
        .map(|i| {
            let raga = &vocab.ragas[(i * 37) % vocab.ragas.len()];
            let spec = SynthSpec::random(vocab, &raga.name, 900_000 + i as u64, 5.12);
            let clip = render(vocab, &spec).unwrap();
            let x = &clip.mix.channels[0];
            let track = pyin(x, 44100, &PyinParams::default()).unwrap();
            let est = estimate_tonic(x, 44100, &track, (100.0, 260.0)).unwrap();
            let err = (1200.0 * (est.tonic_hz / spec.tonic_hz).log2()).abs();
            let cents = track.cents(spec.tonic_hz);
            let stable = stable_frames(&cents, track.hop_s, 500.0, 0.08);
            let truth = scale_membership(&cents, &stable, &raga.pitch_classes, 30.0);
            // A wrong raga: the next one in the vocabulary with another scale.
            let wrong = (1..vocab.ragas.len())
                .map(|d| &vocab.ragas[(i * 37 + d * 11) % vocab.ragas.len()])
                .find(|r| r.pitch_classes != raga.pitch_classes)
                .unwrap();
            let other = scale_membership(&cents, &stable, &wrong.pitch_classes, 30.0);
            (
                err,
                truth.in_scale_above_chance,
                other.in_scale_above_chance,
            )
        })
        .collect();
    let within = results.iter().filter(|r| r.0 <= 30.0).count();
    let share = within as f64 / CLIPS as f64;
    let mut auc = 0.0;
    for a in &results {
        for b in &results {
            auc += if a.1 > b.2 {
                1.0
            } else if a.1 == b.2 {
                0.5
            } else {
                0.0
            };
        }
    }
    auc /= (CLIPS * CLIPS) as f64;
    let errors: Vec<String> = results.iter().map(|r| format!("{:.0}", r.0)).collect();
    eprintln!("tonic within 30 cents: {within}/{CLIPS} ({:.1}%); in-scale ROC AUC {auc:.3}; errors (cents) {errors:?}", share * 100.0);
    assert!(
        share >= 0.9,
        "tonic within 30 cents on only {:.1}% of clips",
        share * 100.0
    );
    assert!(auc >= 0.9, "ROC AUC {auc}");
}
