//! pYIN against the renderer's ground-truth f0 (melody only: no drone, no
//! percussion): median error < 10 cents on frames both call voiced, and
//! voicing accuracy >= 95%, over ragas, timbres, tonics and segment types.

use ragafusion::captions::Vocabulary;
use ragafusion::corpus::synth::{render, SynthSegment, SynthSpec, TIMBRES};
use ragafusion::raga::{pyin, PyinParams};

#[test]
fn pyin_matches_rendered_ground_truth() {
    let vocab = Vocabulary::builtin();
    let mut errors = Vec::new();
    let (mut agree, mut frames) = (0usize, 0usize);
    let ragas = [
        "Kalyani",
        "Todi",
        "Mohanam",
        "Reetigowla",
        "Varali",
        "Hindolam",
        "Kambhoji",
        "Purvikalyani",
    ];
    for (i, raga) in ragas.iter().enumerate() {
        for (j, timbre) in TIMBRES.iter().enumerate() {
            let spec = SynthSpec {
                raga: raga.to_string(),
                tala: Some("Adi".into()),
                tonic_hz: 100.0 + ((i * 4 + j) as f64 * 23.0) % 160.0,
                tempo_bpm: 75.0,
                timbre: *timbre,
                segment: if (i + j) % 2 == 0 {
                    SynthSegment::Alapana
                } else {
                    SynthSegment::Kriti
                },
                percussion: false,
                stroke_kit: None,
                drone: false,
                duration_s: 5.12,
                sample_rate_hz: 44100,
                seed: (i * 10 + j) as u64,
            };
            let clip = render(vocab, &spec).unwrap();
            let track = pyin(&clip.mix.channels[0], 44100, &PyinParams::default()).unwrap();
            for (t, truth) in clip.f0_truth_hz.iter().enumerate().take(track.f0_hz.len()) {
                let ours = track.voiced[t];
                frames += 1;
                if ours == (*truth > 0.0) {
                    agree += 1;
                }
                if ours && *truth > 0.0 {
                    errors.push((1200.0 * (track.f0_hz[t] as f64 / *truth as f64).log2()).abs());
                }
            }
        }
    }
    errors.sort_by(|a, b| a.total_cmp(b));
    let median = errors[errors.len() / 2];
    let voicing = agree as f64 / frames as f64;
    eprintln!(
        "median error {median:.2} cents over {} frames; voicing accuracy {:.2}%",
        errors.len(),
        voicing * 100.0
    );
    assert!(median < 10.0, "median error {median} cents");
    assert!(voicing >= 0.95, "voicing accuracy {voicing}");
}
