//! Melody as data: phrases that walk a raga's arohana and avarohana (vakra
//! moves kept, extended an octave up or down when the forms span exactly
//! Sa to upper Sa), resting notes, gamakas, and the pitch / loudness
//! contours they give at a fixed control rate.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::captions::{Note, Raga, Swara};

/// Contour sample rate (Hz): pitch and loudness are decided at this rate
/// and interpolated to audio.
pub const CONTROL_HZ: f64 = 1000.0;

/// An ornament on a held note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gamaka {
    /// Held plainly.
    None,
    /// Kampita: oscillation between the note and the raga's next swara up.
    Kampita,
}

/// One note of the melody.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoteEvent {
    /// The swara and octave.
    pub note: Note,
    /// Start time in seconds.
    pub start_s: f64,
    /// Duration in seconds.
    pub dur_s: f64,
    /// Ornament.
    pub gamaka: Gamaka,
    /// Cents of the kampita's upper turning point above the note (0 if none).
    pub kampita_cents: f64,
    /// Starts a phrase (after a breath, or the first note).
    pub phrase_start: bool,
}

/// Rhythm of the melody.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rhythm {
    /// Free (alapana, tanam): durations drawn in seconds.
    Free,
    /// In tala at `bpm` beats per minute: durations in half, one or two beats.
    Metred {
        /// Beats per minute.
        bpm: f64,
    },
}

/// Lowest and highest melody note, in semitones from the middle Sa.
const RANGE: (i32, i32) = (-5, 19);

/// A walkable form: the notes, and whether it repeats by octave.
struct Form {
    notes: Vec<Note>,
    periodic: bool,
}

impl Form {
    fn new(notes: &[Note], ascending: bool) -> Self {
        let (first, last) = (notes[0], notes[notes.len() - 1]);
        let sa = |octave| Note {
            swara: Swara::S,
            octave,
        };
        let periodic = if ascending {
            first == sa(0) && last == sa(1)
        } else {
            first == sa(1) && last == sa(0)
        };
        Form {
            notes: notes.to_vec(),
            periodic,
        }
    }

    /// Note at position `i` (may be outside 0..len for periodic forms).
    fn at(&self, i: i64) -> Option<Note> {
        let n = self.notes.len() as i64;
        if !self.periodic {
            return (0..n).contains(&i).then(|| self.notes[i as usize]);
        }
        let period = n - 1;
        let cycle = i.div_euclid(period);
        let k = i.rem_euclid(period) as usize;
        let base = self.notes[k];
        let shift = if self.notes[0].octave > self.notes[n as usize - 1].octave {
            -cycle
        } else {
            cycle
        };
        let note = Note {
            swara: base.swara,
            octave: base.octave + shift as i8,
        };
        (RANGE.0..=RANGE.1)
            .contains(&note.semitones())
            .then_some(note)
    }

    /// The position whose note is nearest in pitch to `target`.
    fn position_near(&self, target: i32) -> i64 {
        let mut best = (i32::MAX, 0i64);
        for i in -(self.notes.len() as i64)..2 * self.notes.len() as i64 {
            if let Some(n) = self.at(i) {
                let d = (n.semitones() - target).abs();
                if d < best.0 {
                    best = (d, i);
                }
            }
        }
        best.1
    }
}

/// The raga's next pitch above `note` (in cents above it), for kampita.
fn upper_neighbour_cents(raga: &Raga, note: Note) -> f64 {
    let pc = note.swara.semitones();
    let next = (1..=12)
        .find(|d| raga.has_pitch_class((pc + d) % 12))
        .unwrap_or(12);
    100.0 * next as f64
}

/// Draws a melody of `duration_s` seconds in `raga`.
pub fn compose(
    raga: &Raga,
    rhythm: Rhythm,
    duration_s: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<NoteEvent> {
    let up = Form::new(&raga.arohana, true);
    let down = Form::new(&raga.avarohana, false);
    let mut events = Vec::new();
    let mut t = 0.0;
    let mut current = Note {
        swara: raga.arohana[0].swara,
        octave: raga.arohana[0].octave,
    };
    let beat_s = match rhythm {
        Rhythm::Metred { bpm } => 60.0 / bpm,
        Rhythm::Free => 0.0,
    };
    let mut phrase_start = true;
    while t < duration_s {
        let ascending = if current.semitones() >= 12 {
            false
        } else if current.semitones() <= 0 {
            true
        } else {
            rng.random_bool(0.5)
        };
        let form = if ascending { &up } else { &down };
        let first = form.position_near(current.semitones());
        let len = rng.random_range(3..=8);
        for (step, pos) in (0..len).zip(first..) {
            let Some(note) = form.at(pos) else { break };
            let resting = step + 1 == len;
            let dur_s = match rhythm {
                Rhythm::Free => {
                    let base = rng.random_range(0.18..0.45);
                    if resting {
                        base * rng.random_range(2.0..3.5)
                    } else {
                        base
                    }
                }
                Rhythm::Metred { .. } => {
                    let beats = if resting {
                        [1.0, 2.0][rng.random_range(0..2)]
                    } else {
                        [0.5, 0.5, 1.0][rng.random_range(0..3)]
                    };
                    beats * beat_s
                }
            };
            // Sa and Pa are fixed (prakriti) swaras: no oscillation.
            let fixed = matches!(note.swara, Swara::S | Swara::P);
            let kampita = !fixed && dur_s >= 0.35 && rng.random_bool(0.35);
            events.push(NoteEvent {
                note,
                start_s: t,
                dur_s,
                gamaka: if kampita {
                    Gamaka::Kampita
                } else {
                    Gamaka::None
                },
                kampita_cents: if kampita {
                    upper_neighbour_cents(raga, note).min(200.0)
                } else {
                    0.0
                },
                phrase_start,
            });
            phrase_start = false;
            t += dur_s;
            current = note;
            if t >= duration_s {
                break;
            }
        }
        // A breath between phrases, most of the time in free rhythm.
        if matches!(rhythm, Rhythm::Free) && rng.random_bool(0.6) {
            t += rng.random_range(0.12..0.35);
            phrase_start = true;
        }
    }
    events
}

/// Pitch (cents above the tonic) and loudness (0-1) at [`CONTROL_HZ`] for
/// `duration_s` seconds. Silence between phrases has loudness 0 and holds
/// the last pitch. Notes glide from the previous pitch over up to 60 ms.
pub fn contours(events: &[NoteEvent], duration_s: f64, kampita_hz: f64) -> (Vec<f64>, Vec<f64>) {
    let n = (duration_s * CONTROL_HZ).ceil() as usize + 1;
    let mut cents = vec![f64::NAN; n];
    let mut loud = vec![0.0f64; n];
    let mut prev_cents: Option<f64> = None;
    let mut prev_end = 0.0;
    for e in events {
        let target = 100.0 * e.note.semitones() as f64;
        let i0 = (e.start_s * CONTROL_HZ).round() as usize;
        let i1 = (((e.start_s + e.dur_s) * CONTROL_HZ).round() as usize).min(n);
        let legato = prev_cents.is_some() && (e.start_s - prev_end).abs() < 1e-6;
        let glide = if legato {
            (0.3 * e.dur_s).min(0.06)
        } else {
            0.0
        };
        let from = prev_cents.unwrap_or(target);
        let end_s = e.start_s + e.dur_s;
        let next_is_gap = !events.iter().any(|o| (o.start_s - end_s).abs() < 1e-6);
        for i in i0..i1 {
            let t = i as f64 / CONTROL_HZ - e.start_s;
            let mut c = target;
            if t < glide {
                let x = 0.5 - 0.5 * (std::f64::consts::PI * t / glide).cos();
                c = from + (target - from) * x;
            }
            if e.gamaka == Gamaka::Kampita {
                // Oscillate in the middle of the note, starting and ending
                // on the note itself.
                let (a, b) = (0.12, e.dur_s - 0.08);
                if t > a && t < b {
                    let cycles = ((b - a) * kampita_hz).floor().max(1.0);
                    let f = cycles / (b - a);
                    let phase = std::f64::consts::TAU * f * (t - a);
                    c = target + e.kampita_cents * 0.5 * (1.0 - phase.cos());
                }
            }
            cents[i] = c;
            // Attack 25 ms after silence, release 40 ms before a breath.
            let attack = if legato { 1.0 } else { (t / 0.025).min(1.0) };
            let release = if next_is_gap {
                ((end_s - (i as f64 / CONTROL_HZ)) / 0.04).clamp(0.0, 1.0)
            } else {
                1.0
            };
            loud[i] = attack.min(release);
        }
        prev_cents = Some(target);
        prev_end = e.start_s + e.dur_s;
    }
    // Hold pitch through silences so oscillators have a frequency.
    let mut last = cents.iter().copied().find(|c| !c.is_nan()).unwrap_or(0.0);
    for c in cents.iter_mut() {
        if c.is_nan() {
            *c = last;
        } else {
            last = *c;
        }
    }
    (cents, loud)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captions::Vocabulary;
    use rand::SeedableRng;

    #[test]
    fn melodies_stay_in_the_raga_and_range() {
        let v = Vocabulary::builtin();
        for name in ["Mohanam", "Reetigowla", "Senchurutti", "Kalyani", "Varali"] {
            let raga = v.raga(name).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            for rhythm in [Rhythm::Free, Rhythm::Metred { bpm: 80.0 }] {
                let ev = compose(raga, rhythm, 5.12, &mut rng);
                assert!(!ev.is_empty());
                assert!(ev.last().unwrap().start_s < 5.12);
                for e in &ev {
                    assert!(
                        raga.has_pitch_class(e.note.swara.semitones()),
                        "{name}: {}",
                        e.note
                    );
                    assert!(
                        (RANGE.0..=RANGE.1).contains(&e.note.semitones()),
                        "{name}: {}",
                        e.note
                    );
                }
            }
        }
    }

    #[test]
    fn vakra_forms_are_walked_as_written() {
        // Reetigowla's arohana goes S G2 R2 G2 M1 ...: somewhere the melody
        // must step down from G2 to R2 while ascending.
        let v = Vocabulary::builtin();
        let raga = v.raga("Reetigowla").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let ev = compose(raga, Rhythm::Free, 60.0, &mut rng);
        let found = ev.windows(3).any(|w| {
            w[0].note.swara == Swara::G2
                && w[1].note.swara == Swara::R2
                && w[2].note.swara == Swara::G2
        });
        assert!(found);
    }

    #[test]
    fn contours_hit_the_notes_and_glide() {
        let v = Vocabulary::builtin();
        let raga = v.raga("Shankarabharanam").unwrap();
        let note = |swara, octave| Note { swara, octave };
        let ev = vec![
            NoteEvent {
                note: note(Swara::S, 0),
                start_s: 0.0,
                dur_s: 0.5,
                gamaka: Gamaka::None,
                kampita_cents: 0.0,
                phrase_start: true,
            },
            NoteEvent {
                note: note(Swara::G3, 0),
                start_s: 0.5,
                dur_s: 0.5,
                gamaka: Gamaka::Kampita,
                kampita_cents: upper_neighbour_cents(raga, note(Swara::G3, 0)),
                phrase_start: false,
            },
        ];
        let (c, l) = contours(&ev, 1.2, 6.0);
        assert_eq!(c[250], 0.0);
        assert!((c[600] - 400.0).abs() <= 100.0 + 1e-9);
        assert!(c[520] > 0.0 && c[520] < 400.0, "gliding: {}", c[520]);
        // G3's next swara up in Shankarabharanam is M1: 100 cents.
        assert_eq!(ev[1].kampita_cents, 100.0);
        assert!(c[500..1000].iter().all(|&x| x <= 500.0 + 1e-9));
        assert_eq!(l[1150], 0.0);
        assert_eq!(l[250], 1.0);
    }
}
