//! Labelled synthetic Carnatic audio: a melody walking a raga's arohana and
//! avarohana with gamakas, in one of four timbres, over a tanpura drone,
//! with optional mridangam-like percussion on the tala's beat grid. Every
//! clip comes with a label: what was rendered, and when each swara sounds.
//!
//! Rendering is deterministic per [`SynthSpec`] (its seed included) and
//! independent of thread count.

pub mod drone;
pub mod melody;
pub mod percussion;
pub mod stroke_kit;
pub mod timbre;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::audio::Audio;
use crate::captions::{Raga, Tala, Vocabulary};
use crate::error::{Error, Result};
use drone::{render_drone, DroneTuning};
use melody::{compose, contours, Gamaka, Rhythm};
use percussion::{pattern, render_kit, render_percussion, Onset};
use stroke_kit::StrokeKit;
pub use timbre::{Timbre, TIMBRES};

/// Segment types the renderer can imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SynthSegment {
    /// Free-rhythm exposition, no percussion.
    Alapana,
    /// Pulsed but unmetred, no percussion.
    Tanam,
    /// Composed piece in tala, percussion optional.
    Kriti,
    /// Improvised swara passages in tala.
    Kalpanaswaram,
}

crate::choices!(SynthSegment, "segment", [
    Alapana => "alapana": "free-rhythm exposition, no percussion",
    Tanam => "tanam": "pulsed but unmetred, no percussion",
    Kriti => "kriti": "composed piece in tala, percussion optional",
    Kalpanaswaram => "kalpanaswaram": "improvised swara passages in tala",
]);

impl SynthSegment {
    /// The segment type's name in the caption vocabulary.
    pub fn name(self) -> &'static str {
        match self {
            SynthSegment::Alapana => "alapana",
            SynthSegment::Tanam => "tanam",
            SynthSegment::Kriti => "kriti",
            SynthSegment::Kalpanaswaram => "kalpanaswaram",
        }
    }

    /// Whether it is performed in tala.
    pub fn metred(self) -> bool {
        matches!(self, SynthSegment::Kriti | SynthSegment::Kalpanaswaram)
    }
}

/// The sample rate `synth` renders at, Hz.
pub const RENDER_RATE_HZ: u32 = 44100;

/// Everything that decides one rendered clip.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    /// Raga name (any spelling the vocabulary knows).
    pub raga: String,
    /// Tala name, for metred segments.
    pub tala: Option<String>,
    /// Tonic in Hz (100-260 typical).
    pub tonic_hz: f64,
    /// Beat tempo in BPM (metred segments).
    pub tempo_bpm: f64,
    /// Timbre of the melody.
    pub timbre: Timbre,
    /// Segment type.
    pub segment: SynthSegment,
    /// Include percussion (metred segments only).
    pub percussion: bool,
    /// Recorded strokes to play instead of the synthetic ones (its rate
    /// must be the clip's).
    pub stroke_kit: Option<std::sync::Arc<StrokeKit>>,
    /// Include the tanpura drone.
    pub drone: bool,
    /// Clip length in seconds.
    pub duration_s: f64,
    /// Sample rate in Hz.
    pub sample_rate_hz: u32,
    /// Seed of every random choice in the clip.
    pub seed: u64,
}

impl SynthSpec {
    /// A random spec for `raga` from `seed`: tonic 100-260 Hz, any timbre
    /// and segment, a tala from the vocabulary with a tempo in its range,
    /// percussion on metred segments 70% of the time.
    pub fn random(vocab: &Vocabulary, raga: &str, seed: u64, duration_s: f64) -> SynthSpec {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed);
        let segment = [
            SynthSegment::Alapana,
            SynthSegment::Tanam,
            SynthSegment::Kriti,
            SynthSegment::Kalpanaswaram,
        ][rng.random_range(0..4)];
        let tala = &vocab.talas[rng.random_range(0..vocab.talas.len())];
        let (lo, hi) = tala.tempo_bpm;
        SynthSpec {
            raga: raga.to_string(),
            tala: segment.metred().then(|| tala.name.clone()),
            tonic_hz: rng.random_range(100.0..260.0),
            tempo_bpm: rng.random_range(lo as f64..=hi as f64),
            timbre: TIMBRES[rng.random_range(0..TIMBRES.len())],
            segment,
            percussion: segment.metred() && rng.random_bool(0.7),
            stroke_kit: None,
            drone: true,
            duration_s,
            sample_rate_hz: RENDER_RATE_HZ,
            seed,
        }
    }
}

/// One swara of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwaraLabel {
    /// Start, seconds.
    pub start_s: f64,
    /// End, seconds.
    pub end_s: f64,
    /// Swara name (S, R1, ...).
    pub swara: String,
    /// Octave: -1 mandra, 0 madhya, 1 tara.
    pub octave: i8,
    /// Target pitch in cents above the tonic.
    pub cents: f64,
    /// Ornament.
    pub gamaka: Gamaka,
}

/// The label written next to each rendered clip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthLabel {
    /// Raga (vocabulary name).
    pub raga: String,
    /// Parent melakarta number.
    pub melakarta: u8,
    /// Pitch classes of the raga (semitones above Sa).
    pub pitch_classes: Vec<u8>,
    /// Tala (vocabulary name), for metred segments.
    pub tala: Option<String>,
    /// Tonic, Hz.
    pub tonic_hz: f64,
    /// Beat tempo, BPM (metred segments).
    pub tempo_bpm: Option<f64>,
    /// Instrument the timbre stands for.
    pub instrument: String,
    /// Segment type.
    pub segment: String,
    /// Drone tuning, if a drone sounds.
    pub drone: Option<DroneTuning>,
    /// Percussion onsets (empty without percussion).
    pub percussion: Vec<Onset>,
    /// The folder of the recorded strokes played, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stroke_kit: Option<String>,
    /// Seed.
    pub seed: u64,
    /// Sample rate, Hz.
    pub sample_rate_hz: u32,
    /// Duration, seconds.
    pub duration_s: f64,
    /// The melody's swaras in time order.
    pub swaras: Vec<SwaraLabel>,
    /// Caption from the vocabulary's templates.
    pub caption: String,
}

/// A rendered clip: the mix and its parts.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Melody + drone + percussion, peak-normalised to -1 dBFS.
    pub mix: Audio,
    /// The melody alone (same gain as in the mix).
    pub melody: Vec<f32>,
    /// The drone alone (zeros when off).
    pub drone: Vec<f32>,
    /// The percussion alone (zeros when off).
    pub percussion: Vec<f32>,
    /// Ground-truth melody f0 every 10 ms (frame `i` at `i * 0.01` s), 0
    /// where the melody is silent or fading (loudness below one half).
    pub f0_truth_hz: Vec<f32>,
    /// The label.
    pub label: SynthLabel,
}

fn check_spec(spec: &SynthSpec) -> Result<()> {
    crate::limits::in_range("tonic_hz", spec.tonic_hz, &crate::limits::TONIC_HZ, " Hz")?;
    if !(spec.duration_s.is_finite() && spec.duration_s > 0.1 && spec.duration_s <= 600.0) {
        return Err(Error::param(
            "duration_s",
            format!("{} s is outside 0.1-600 s", spec.duration_s),
        ));
    }
    if !(spec.tempo_bpm.is_finite() && (20.0..=400.0).contains(&spec.tempo_bpm)) {
        return Err(Error::param(
            "tempo_bpm",
            format!("{} is outside 20-400 BPM", spec.tempo_bpm),
        ));
    }
    if spec.sample_rate_hz < 16000 {
        return Err(Error::param("sample_rate_hz", "below 16000 Hz"));
    }
    if let Some(kit) = &spec.stroke_kit {
        if kit.rate_hz != spec.sample_rate_hz {
            return Err(Error::param(
                "stroke_kit",
                format!(
                    "{}: loaded at {} Hz, the clip renders at {} Hz",
                    kit.dir.display(),
                    kit.rate_hz,
                    spec.sample_rate_hz
                ),
            ));
        }
    }
    Ok(())
}

/// Renders one labelled clip.
pub fn render(vocab: &Vocabulary, spec: &SynthSpec) -> Result<Rendered> {
    check_spec(spec)?;
    let raga: &Raga = vocab.raga(&spec.raga)?;
    let tala: Option<&Tala> = match (&spec.tala, spec.segment.metred()) {
        (Some(t), true) => Some(vocab.tala(t)?),
        (None, true) => Some(vocab.tala("Adi")?),
        _ => None,
    };
    let rate = spec.sample_rate_hz as f64;
    let len = (spec.duration_s * rate).round() as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let rhythm = match spec.segment {
        SynthSegment::Alapana => Rhythm::Free,
        SynthSegment::Tanam => Rhythm::Metred {
            bpm: rng.random_range(150.0..220.0),
        },
        _ => Rhythm::Metred {
            bpm: spec.tempo_bpm,
        },
    };
    let events = compose(raga, rhythm, spec.duration_s, &mut rng);
    let (cents, loud) = contours(&events, spec.duration_s, rng.random_range(5.0..7.0));
    let f0_truth_hz = (0..=(spec.duration_s * 100.0) as usize)
        .map(|i| {
            let c = ((i as f64 * 0.01 * melody::CONTROL_HZ).round() as usize).min(cents.len() - 1);
            if loud[c] >= 0.5 {
                (spec.tonic_hz * (cents[c] / 1200.0).exp2()) as f32
            } else {
                0.0
            }
        })
        .collect();
    let mut melody = timbre::render_melody(
        spec.timbre,
        &events,
        &cents,
        &loud,
        spec.tonic_hz,
        rate,
        len,
        &mut rng,
    );

    let tuning = DroneTuning::for_pitch_classes(&raga.pitch_classes);
    let mut drone = if spec.drone {
        render_drone(tuning, spec.tonic_hz, rate, len, &mut rng)
    } else {
        vec![0.0; len]
    };
    let onsets: Vec<Onset> = match (tala, spec.percussion) {
        (Some(t), true) => pattern(
            t,
            spec.tempo_bpm,
            rng.random_range(0.0..0.3),
            spec.duration_s,
            &mut rng,
        ),
        _ => vec![],
    };
    let mut percussion = match (&spec.stroke_kit, onsets.is_empty()) {
        (_, true) => vec![0.0; len],
        (Some(kit), false) => render_kit(&onsets, kit, len, &mut rng),
        (None, false) => render_percussion(&onsets, spec.tonic_hz, rate, len, &mut rng),
    };

    // Balance: drone 14 dB and percussion 6 dB under the melody's RMS.
    let rms = |x: &[f32]| {
        (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    };
    let m_rms = rms(&melody).max(1e-9);
    for (part, db) in [(&mut drone, -14.0), (&mut percussion, -6.0)] {
        let r = rms(part);
        if r > 0.0 {
            let g = (m_rms * 10f64.powf(db / 20.0) / r) as f32;
            part.iter_mut().for_each(|v| *v *= g);
        }
    }
    let mut mix: Vec<f32> = (0..len)
        .map(|i| melody[i] + drone[i] + percussion[i])
        .collect();
    let peak = mix.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-9);
    let g = 10f32.powf(-1.0 / 20.0) / peak;
    for part in [&mut mix, &mut melody, &mut drone, &mut percussion] {
        part.iter_mut().for_each(|v| *v *= g);
    }

    let swaras = events
        .iter()
        .map(|e| SwaraLabel {
            start_s: e.start_s,
            end_s: (e.start_s + e.dur_s).min(spec.duration_s),
            swara: e.note.swara.name().to_string(),
            octave: e.note.octave,
            cents: 100.0 * e.note.semitones() as f64,
            gamaka: e.gamaka,
        })
        .collect();
    let fields = crate::captions::CaptionFields {
        raga: Some(raga.name.clone()),
        tala: tala.map(|t| t.name.clone()),
        instrument: Some(spec.timbre.instrument().to_string()),
        segment: Some(spec.segment.name().to_string()),
        ..Default::default()
    };
    let label = SynthLabel {
        raga: raga.name.clone(),
        melakarta: raga.parent,
        pitch_classes: raga.pitch_classes.clone(),
        tala: tala.map(|t| t.name.clone()),
        tonic_hz: spec.tonic_hz,
        tempo_bpm: match rhythm {
            Rhythm::Metred { bpm } => Some(bpm),
            Rhythm::Free => None,
        },
        instrument: spec.timbre.instrument().to_string(),
        segment: spec.segment.name().to_string(),
        drone: spec.drone.then_some(tuning),
        stroke_kit: spec
            .stroke_kit
            .as_ref()
            .filter(|_| !onsets.is_empty())
            .map(|k| k.dir.display().to_string()),
        percussion: onsets,
        seed: spec.seed,
        sample_rate_hz: spec.sample_rate_hz,
        duration_s: spec.duration_s,
        swaras,
        caption: vocab.caption(&fields, spec.seed),
    };
    Ok(Rendered {
        mix: Audio::new(vec![mix], spec.sample_rate_hz, "rendered clip")?,
        melody,
        drone,
        percussion,
        f0_truth_hz,
        label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64) -> SynthSpec {
        SynthSpec {
            raga: "Kalyani".into(),
            tala: Some("Adi".into()),
            tonic_hz: 146.8,
            tempo_bpm: 90.0,
            timbre: Timbre::Violin,
            segment: SynthSegment::Kriti,
            percussion: true,
            stroke_kit: None,
            drone: true,
            duration_s: 2.0,
            sample_rate_hz: 44100,
            seed,
        }
    }

    /// Power of `x` at `hz` (one DFT bin over the whole signal).
    fn power_at(x: &[f32], hz: f64, rate: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, v) in x.iter().enumerate() {
            let ph = std::f64::consts::TAU * hz * i as f64 / rate;
            re += *v as f64 * ph.cos();
            im += *v as f64 * ph.sin();
        }
        (re * re + im * im) / x.len() as f64
    }

    #[test]
    fn a_stroke_kit_replaces_the_synthetic_strokes() {
        let d = tempfile::tempdir().unwrap();
        for (folder, hz) in [("thom", 1234.0), ("num", 1234.0), ("ta", 1234.0)] {
            stroke_kit::tests::write_stroke(&d.path().join(folder).join("s.wav"), hz, 44100);
        }
        let kit = std::sync::Arc::new(StrokeKit::load(d.path(), 44100).unwrap());
        let v = Vocabulary::builtin();
        let plain = render(v, &spec(3)).unwrap();
        let mut s = spec(3);
        s.stroke_kit = Some(kit.clone());
        let with_kit = render(v, &s).unwrap();
        // same pattern, other sound: the kit's 1234 Hz rings in the strokes
        assert_eq!(plain.label.percussion, with_kit.label.percussion);
        let (p, k) = (
            power_at(&plain.percussion, 1234.0, 44100.0),
            power_at(&with_kit.percussion, 1234.0, 44100.0),
        );
        assert!(k > 20.0 * p, "{k} vs {p}");
        assert_eq!(
            with_kit.label.stroke_kit.as_deref(),
            Some(d.path().to_str().unwrap())
        );
        // the same melody (the mix is levelled again, so compare the score)
        assert_eq!(with_kit.label.swaras, plain.label.swaras);
        // a kit at another rate is refused
        let mut s = spec(3);
        s.stroke_kit = Some(std::sync::Arc::new(
            StrokeKit::load(d.path(), 22050).unwrap(),
        ));
        assert!(render(v, &s)
            .unwrap_err()
            .to_string()
            .contains("stroke_kit"));
    }

    #[test]
    fn deterministic_per_seed() {
        let v = Vocabulary::builtin();
        let a = render(v, &spec(5)).unwrap();
        let b = render(v, &spec(5)).unwrap();
        let c = render(v, &spec(6)).unwrap();
        assert_eq!(a.mix, b.mix);
        assert_eq!(a.label, b.label);
        assert_ne!(a.mix, c.mix);
        assert_eq!(a.mix.len_samples(), 88200);
        assert!(a.mix.peak() <= 1.0);
        assert!(a.label.caption.contains("Kalyani"));
        assert!(!a.label.percussion.is_empty());
    }

    #[test]
    fn bad_specs_name_the_field() {
        let v = Vocabulary::builtin();
        let mut s = spec(1);
        s.raga = "Kalyanni x".into();
        assert!(render(v, &s)
            .unwrap_err()
            .to_string()
            .contains("unknown raga"));
        let mut s = spec(1);
        s.tonic_hz = f64::NAN;
        assert!(render(v, &s).unwrap_err().to_string().contains("tonic_hz"));
    }

    #[test]
    fn random_specs_cover_the_documented_ranges() {
        let v = Vocabulary::builtin();
        for seed in 0..50 {
            let s = SynthSpec::random(v, "Todi", seed, 5.12);
            assert!((100.0..260.0).contains(&s.tonic_hz));
            assert_eq!(s.tala.is_some(), s.segment.metred());
            assert!(!s.percussion || s.segment.metred());
        }
    }
}
