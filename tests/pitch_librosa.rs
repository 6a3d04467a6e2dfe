//! pYIN against librosa's pyin on the CC BY real clips (fixtures from
//! tools/make_pyin_fixture.py, librosa 0.11.0): median absolute difference
//! under 20 cents on frames both call voiced.

use std::path::Path;

use ragafusion::audio::read_audio;
use ragafusion::raga::{pyin, PyinParams};

#[test]
fn agrees_with_librosa_on_real_clips() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for name in ["vignesh", "carnatic", "mridangam", "violin-B3", "flute-A4"] {
        let fixture: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(format!("pyin/{name}.json"))).unwrap(),
        )
        .unwrap();
        let theirs: Vec<Option<f64>> = fixture["f0_hz"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64())
            .collect();
        let audio = read_audio(&root.join(format!("clips/{name}_5120ms.wav"))).unwrap();
        let ours = pyin(
            &audio.channels[0],
            audio.sample_rate_hz,
            &PyinParams::default(),
        )
        .unwrap();
        assert_eq!(ours.f0_hz.len(), theirs.len(), "{name}: frame count");
        let mut diffs: Vec<f64> = ours
            .f0_hz
            .iter()
            .zip(&ours.voiced)
            .zip(&theirs)
            .filter_map(|((f, v), t)| match (v, t) {
                (true, Some(t)) => Some((1200.0 * (*f as f64 / t).log2()).abs()),
                _ => None,
            })
            .collect();
        diffs.sort_by(|a, b| a.total_cmp(b));
        let both = diffs.len();
        let voiced_theirs = theirs.iter().filter(|t| t.is_some()).count();
        let voiced_ours = ours.voiced.iter().filter(|v| **v).count();
        let median = diffs[both / 2];
        eprintln!("{name}: median |diff| {median:.2} cents on {both} frames (voiced: ours {voiced_ours}, librosa {voiced_theirs})");
        assert!(both > 100, "{name}: only {both} frames voiced in both");
        assert!(median < 20.0, "{name}: median difference {median} cents");
    }
}
