//! The caption vocabulary: ragas, talas, composers, instruments and segment
//! types, loaded from the TOML files in the top-level `captions/` folder
//! (built into the binary, or read from a folder a user edits).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::fold::{fold, loose_key, nearest};
use super::swara::{melakarta_scale, parse_phrase, Note, Swara};
use super::templates::Template;
use crate::error::{Error, Result};

/// A raga: a melakarta (scale from the rule) or a janya (scale from data).
#[derive(Debug, Clone, PartialEq)]
pub struct Raga {
    /// Name used in captions.
    pub name: String,
    /// Other names and spellings.
    pub aliases: Vec<String>,
    /// The melakarta number if this raga is itself a melakarta.
    pub melakarta: Option<u8>,
    /// Parent melakarta number (its own number for a melakarta).
    pub parent: u8,
    /// Ascending form, vakra moves kept.
    pub arohana: Vec<Note>,
    /// Descending form.
    pub avarohana: Vec<Note>,
    /// Swaras outside the parent mela that the raga uses.
    pub anya: Vec<Swara>,
    /// Semitones above Sa of every swara used, ascending.
    pub pitch_classes: Vec<u8>,
    /// One of the 40 ragas of the CompMusic recognition dataset.
    pub compmusic: bool,
    /// Commonly performed in concerts: every janya of the vocabulary, and
    /// the melakartas marked `concert = true` (most of the 72 are rarely
    /// sung; the raga scorer leans away from those).
    pub concert: bool,
}

impl Raga {
    /// Whether pitch class `semitones` (0-11) belongs to the raga.
    pub fn has_pitch_class(&self, semitones: u8) -> bool {
        self.pitch_classes.contains(&(semitones % 12))
    }
}

/// One anga (section) of a tala.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anga {
    /// Laghu of `n` beats (its jati).
    Laghu(u32),
    /// Dhrutam: 2 beats.
    Dhrutam,
    /// Anudhrutam: 1 beat.
    Anudhrutam,
    /// A chapu group of `n` beats.
    Group(u32),
}

impl Anga {
    /// Beats (aksharas) in this anga.
    pub fn beats(self) -> u32 {
        match self {
            Anga::Laghu(n) | Anga::Group(n) => n,
            Anga::Dhrutam => 2,
            Anga::Anudhrutam => 1,
        }
    }
}

/// A tala (rhythmic cycle).
#[derive(Debug, Clone, PartialEq)]
pub struct Tala {
    /// Name used in captions.
    pub name: String,
    /// Other names.
    pub aliases: Vec<String>,
    /// Sections, in order.
    pub angas: Vec<Anga>,
    /// Beats per cycle.
    pub beats: u32,
    /// Usual range of the beat tempo, beats per minute.
    pub tempo_bpm: (f32, f32),
}

impl Tala {
    /// Beat indices (0-based) that open an anga: where the cycle's accents fall.
    pub fn anga_starts(&self) -> Vec<u32> {
        let mut starts = Vec::with_capacity(self.angas.len());
        let mut at = 0;
        for a in &self.angas {
            starts.push(at);
            at += a.beats();
        }
        starts
    }
}

/// A composer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Composer {
    /// Name used in captions.
    pub name: String,
    /// Other spellings.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// An instrument's part in an ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Plays the melody.
    Melodic,
    /// Percussion.
    Percussion,
    /// Drone (tanpura).
    Drone,
}

/// An instrument.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    /// Name used in captions.
    pub name: String,
    /// Other names.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Its part.
    pub role: Role,
    /// The synthetic timbre that stands for it, if any.
    #[serde(default)]
    pub timbre: Option<String>,
}

/// How percussion figures in a segment type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Percussion {
    /// No percussion.
    None,
    /// Percussion accompanies the melody.
    Accompanying,
    /// A percussion solo.
    Solo,
}

/// A segment type (part of a concert piece).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentType {
    /// Name used in captions.
    pub name: String,
    /// Other names.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Performed in tala.
    pub metred: bool,
    /// Role of percussion.
    pub percussion: Percussion,
    /// Improvised rather than composed.
    pub improvised: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMela {
    number: u8,
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    compmusic: bool,
    #[serde(default)]
    concert: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRaga {
    name: String,
    parent: u8,
    arohana: String,
    avarohana: String,
    #[serde(default)]
    anya: Vec<String>,
    pitch_classes: Vec<u8>,
    #[serde(default)]
    compmusic: bool,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTala {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    structure: String,
    beats: u32,
    tempo_bpm: [f32; 2],
}

/// The text of each vocabulary file, by file name.
pub struct Sources<'a> {
    /// `melakartas.toml`
    pub melakartas: &'a str,
    /// `ragas.toml`
    pub ragas: &'a str,
    /// `talas.toml`
    pub talas: &'a str,
    /// `composers.toml`
    pub composers: &'a str,
    /// `instruments.toml`
    pub instruments: &'a str,
    /// `segments.toml`
    pub segments: &'a str,
    /// `templates.toml`
    pub templates: &'a str,
}

/// The vocabulary files built into the binary (the repository's `captions/`).
pub const BUILTIN: Sources<'static> = Sources {
    melakartas: include_str!("../../captions/melakartas.toml"),
    ragas: include_str!("../../captions/ragas.toml"),
    talas: include_str!("../../captions/talas.toml"),
    composers: include_str!("../../captions/composers.toml"),
    instruments: include_str!("../../captions/instruments.toml"),
    segments: include_str!("../../captions/segments.toml"),
    templates: include_str!("../../captions/templates.toml"),
};

/// Lookup keys of one kind of name: exact [`fold`] keys, and
/// [`loose_key`]s where they name one item only (None: more than one).
#[derive(Debug, Clone, Default)]
struct Index {
    exact: HashMap<String, usize>,
    loose: HashMap<String, Option<usize>>,
}

impl Index {
    fn build<'a>(
        kind: &str,
        file: &str,
        names: impl Iterator<Item = (usize, Vec<&'a String>)>,
    ) -> Result<Self> {
        let mut map: HashMap<String, usize> = HashMap::new();
        let mut loose: HashMap<String, Option<usize>> = HashMap::new();
        let mut first_name: HashMap<String, &str> = HashMap::new();
        for (i, all) in names {
            for n in all {
                let key = fold(n);
                if key.is_empty() {
                    return Err(Error::InvalidData {
                        file: file.into(),
                        reason: format!("{kind} name `{n}` has no letters"),
                    });
                }
                match map.get(&key) {
                    Some(&j) if j != i => {
                        return Err(Error::InvalidData {
                            file: file.into(),
                            reason: format!(
                                "{kind} name `{n}` clashes with `{}`",
                                first_name[&key]
                            ),
                        })
                    }
                    _ => {
                        map.insert(key.clone(), i);
                        first_name.entry(key).or_insert(n.as_str());
                    }
                }
                loose
                    .entry(loose_key(n))
                    .and_modify(|v: &mut Option<usize>| {
                        if *v != Some(i) {
                            *v = None;
                        }
                    })
                    .or_insert(Some(i));
            }
        }
        Ok(Index { exact: map, loose })
    }

    /// The item `name` names: by its exact key, else by a loose key that
    /// only one item has.
    fn get(&self, name: &str) -> Option<usize> {
        self.exact
            .get(&fold(name))
            .copied()
            .or_else(|| self.loose.get(&loose_key(name)).copied().flatten())
    }
}

/// All caption vocabulary, with lookups that fold spellings.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// The 72 melakartas (numbers 1-72 in order) then the janya ragas.
    pub ragas: Vec<Raga>,
    /// Talas.
    pub talas: Vec<Tala>,
    /// Composers.
    pub composers: Vec<Composer>,
    /// Instruments.
    pub instruments: Vec<Instrument>,
    /// Segment types.
    pub segments: Vec<SegmentType>,
    /// Caption templates.
    pub templates: Vec<Template>,
    raga_index: Index,
    tala_index: Index,
    composer_index: Index,
    instrument_index: Index,
    segment_index: Index,
}

fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| Error::InvalidData {
        file: file.into(),
        reason: e.to_string(),
    })
}

#[derive(Deserialize)]
struct MelaFile {
    mela: Vec<RawMela>,
}
#[derive(Deserialize)]
struct RagaFile {
    raga: Vec<RawRaga>,
}
#[derive(Deserialize)]
struct TalaFile {
    tala: Vec<RawTala>,
}
#[derive(Deserialize)]
struct ComposerFile {
    composer: Vec<Composer>,
}
#[derive(Deserialize)]
struct InstrumentFile {
    instrument: Vec<Instrument>,
}
#[derive(Deserialize)]
struct SegmentFile {
    segment: Vec<SegmentType>,
}
#[derive(Deserialize)]
struct TemplateFile {
    template: Vec<Template>,
}

fn melakarta_raga(m: RawMela) -> Result<Raga> {
    let bad = |reason: String| Error::InvalidData {
        file: "melakartas.toml".into(),
        reason,
    };
    let scale = melakarta_scale(m.number).ok_or_else(|| {
        bad(format!(
            "mela `{}`: number {} is not 1-72",
            m.name, m.number
        ))
    })?;
    let mut arohana: Vec<Note> = scale
        .iter()
        .map(|&swara| Note { swara, octave: 0 })
        .collect();
    arohana.push(Note {
        swara: Swara::S,
        octave: 1,
    });
    let avarohana = arohana.iter().rev().copied().collect();
    Ok(Raga {
        name: m.name,
        aliases: m.aliases,
        melakarta: Some(m.number),
        parent: m.number,
        arohana,
        avarohana,
        anya: vec![],
        pitch_classes: scale.iter().map(|s| s.semitones()).collect(),
        compmusic: m.compmusic,
        concert: m.concert,
    })
}

fn janya_raga(r: RawRaga) -> Result<Raga> {
    let bad = |field: &str, reason: String| Error::InvalidData {
        file: "ragas.toml".into(),
        reason: format!("raga `{}`, field `{field}`: {reason}", r.name),
    };
    if melakarta_scale(r.parent).is_none() {
        return Err(bad(
            "parent",
            format!("{} is not a melakarta number (1-72)", r.parent),
        ));
    }
    let arohana = parse_phrase(&r.arohana).map_err(|e| bad("arohana", e))?;
    let avarohana = if r.avarohana.trim() == "reverse" {
        arohana.iter().rev().copied().collect()
    } else {
        parse_phrase(&r.avarohana).map_err(|e| bad("avarohana", e))?
    };
    let anya = r
        .anya
        .iter()
        .map(|a| Swara::parse(a).ok_or_else(|| bad("anya", format!("`{a}` is not a swara"))))
        .collect::<Result<Vec<_>>>()?;
    let mut pitch_classes = r.pitch_classes.clone();
    pitch_classes.sort_unstable();
    pitch_classes.dedup();
    if pitch_classes.iter().any(|p| *p > 11) {
        return Err(bad("pitch_classes", "values must be 0-11".into()));
    }
    Ok(Raga {
        name: r.name.clone(),
        aliases: r.aliases.clone(),
        melakarta: None,
        parent: r.parent,
        arohana,
        avarohana,
        anya,
        pitch_classes,
        compmusic: r.compmusic,
        concert: true,
    })
}

fn tala(t: RawTala) -> Result<Tala> {
    let bad = |reason: String| Error::InvalidData {
        file: "talas.toml".into(),
        reason: format!("tala `{}`: {reason}", t.name),
    };
    let angas = t
        .structure
        .split_whitespace()
        .map(|tok| match tok {
            "O" => Ok(Anga::Dhrutam),
            "U" => Ok(Anga::Anudhrutam),
            _ if tok.starts_with('I') => tok[1..]
                .parse()
                .map(Anga::Laghu)
                .map_err(|_| bad(format!("structure token `{tok}`"))),
            _ => tok
                .parse()
                .map(Anga::Group)
                .map_err(|_| bad(format!("structure token `{tok}`"))),
        })
        .collect::<Result<Vec<_>>>()?;
    if angas.is_empty() || angas.iter().any(|a| a.beats() == 0) {
        return Err(bad("empty structure or zero-beat anga".into()));
    }
    let [lo, hi] = t.tempo_bpm;
    if !(lo > 0.0 && lo <= hi) {
        return Err(bad(format!(
            "tempo_bpm [{lo}, {hi}] is not an increasing positive range"
        )));
    }
    Ok(Tala {
        name: t.name,
        aliases: t.aliases,
        angas,
        beats: t.beats,
        tempo_bpm: (lo, hi),
    })
}

fn with_aliases<'a>(name: &'a String, aliases: &'a [String]) -> Vec<&'a String> {
    std::iter::once(name).chain(aliases).collect()
}

impl Vocabulary {
    /// Parses and checks a vocabulary from file texts.
    pub fn parse(src: &Sources<'_>) -> Result<Self> {
        let melas: MelaFile = parse_toml(src.melakartas, "melakartas.toml")?;
        let janyas: RagaFile = parse_toml(src.ragas, "ragas.toml")?;
        let talas: TalaFile = parse_toml(src.talas, "talas.toml")?;
        let composers: ComposerFile = parse_toml(src.composers, "composers.toml")?;
        let instruments: InstrumentFile = parse_toml(src.instruments, "instruments.toml")?;
        let segments: SegmentFile = parse_toml(src.segments, "segments.toml")?;
        let templates: TemplateFile = parse_toml(src.templates, "templates.toml")?;

        let mut melas = melas.mela;
        melas.sort_by_key(|m| m.number);
        if melas.iter().map(|m| m.number).ne(1..=72) {
            return Err(Error::InvalidData {
                file: "melakartas.toml".into(),
                reason: "must list each melakarta number 1-72 exactly once".into(),
            });
        }
        let mut ragas = melas
            .into_iter()
            .map(melakarta_raga)
            .collect::<Result<Vec<_>>>()?;
        ragas.extend(
            janyas
                .raga
                .into_iter()
                .map(janya_raga)
                .collect::<Result<Vec<_>>>()?,
        );
        let talas = talas
            .tala
            .into_iter()
            .map(tala)
            .collect::<Result<Vec<_>>>()?;

        let raga_index = Index::build(
            "raga",
            "ragas.toml / melakartas.toml",
            ragas
                .iter()
                .enumerate()
                .map(|(i, r)| (i, with_aliases(&r.name, &r.aliases))),
        )?;
        let tala_index = Index::build(
            "tala",
            "talas.toml",
            talas
                .iter()
                .enumerate()
                .map(|(i, t)| (i, with_aliases(&t.name, &t.aliases))),
        )?;
        let composer_index = Index::build(
            "composer",
            "composers.toml",
            composers
                .composer
                .iter()
                .enumerate()
                .map(|(i, c)| (i, with_aliases(&c.name, &c.aliases))),
        )?;
        let instrument_index = Index::build(
            "instrument",
            "instruments.toml",
            instruments
                .instrument
                .iter()
                .enumerate()
                .map(|(i, c)| (i, with_aliases(&c.name, &c.aliases))),
        )?;
        let segment_index = Index::build(
            "segment",
            "segments.toml",
            segments
                .segment
                .iter()
                .enumerate()
                .map(|(i, c)| (i, with_aliases(&c.name, &c.aliases))),
        )?;
        let vocab = Vocabulary {
            ragas,
            talas,
            composers: composers.composer,
            instruments: instruments.instrument,
            segments: segments.segment,
            templates: templates.template,
            raga_index,
            tala_index,
            composer_index,
            instrument_index,
            segment_index,
        };
        for t in &vocab.templates {
            t.check(|name| vocab.segment(name))?;
        }
        Ok(vocab)
    }

    /// The vocabulary built into the binary.
    pub fn builtin() -> &'static Vocabulary {
        static CELL: std::sync::OnceLock<Vocabulary> = std::sync::OnceLock::new();
        CELL.get_or_init(|| {
            // The built-in files are checked by the test suite; failing here
            // means the binary was built from broken data.
            Vocabulary::parse(&BUILTIN).expect("built-in captions/ data is valid")
        })
    }

    /// Reads the seven files from a folder laid out like `captions/`.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| Error::io(dir.join(name), e))
        };
        let texts = [
            read("melakartas.toml")?,
            read("ragas.toml")?,
            read("talas.toml")?,
            read("composers.toml")?,
            read("instruments.toml")?,
            read("segments.toml")?,
            read("templates.toml")?,
        ];
        Vocabulary::parse(&Sources {
            melakartas: &texts[0],
            ragas: &texts[1],
            talas: &texts[2],
            composers: &texts[3],
            instruments: &texts[4],
            segments: &texts[5],
            templates: &texts[6],
        })
    }

    fn find<'a, T>(
        &'a self,
        kind: &'static str,
        index: &Index,
        items: &'a [T],
        name: &str,
        names_of: impl Fn(&'a T) -> (&'a str, &'a [String]),
    ) -> Result<&'a T> {
        if let Some(i) = index.get(name) {
            return Ok(&items[i]);
        }
        let suggestions = nearest(
            name,
            items.iter().map(|it| {
                let (n, aliases) = names_of(it);
                (
                    n,
                    std::iter::once(n)
                        .chain(aliases.iter().map(String::as_str))
                        .map(fold)
                        .collect(),
                )
            }),
            3,
        );
        Err(Error::UnknownName {
            kind,
            name: name.to_string(),
            suggestions,
        })
    }

    /// Looks a raga up by any of its names or spellings.
    pub fn raga(&self, name: &str) -> Result<&Raga> {
        self.find("raga", &self.raga_index, &self.ragas, name, |r| {
            (&r.name, &r.aliases)
        })
    }

    /// Looks a tala up.
    pub fn tala(&self, name: &str) -> Result<&Tala> {
        self.find("tala", &self.tala_index, &self.talas, name, |t| {
            (&t.name, &t.aliases)
        })
    }

    /// Looks a composer up.
    pub fn composer(&self, name: &str) -> Result<&Composer> {
        self.find(
            "composer",
            &self.composer_index,
            &self.composers,
            name,
            |c| (&c.name, &c.aliases),
        )
    }

    /// Looks an instrument up.
    pub fn instrument(&self, name: &str) -> Result<&Instrument> {
        self.find(
            "instrument",
            &self.instrument_index,
            &self.instruments,
            name,
            |c| (&c.name, &c.aliases),
        )
    }

    /// Looks a segment type up.
    pub fn segment(&self, name: &str) -> Result<&SegmentType> {
        self.find("segment", &self.segment_index, &self.segments, name, |c| {
            (&c.name, &c.aliases)
        })
    }

    /// The melakarta with number `n` (1-72).
    pub fn melakarta(&self, n: u8) -> Option<&Raga> {
        self.ragas
            .get(n.checked_sub(1)? as usize)
            .filter(|r| r.melakarta == Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raga_names_in_indian_scripts_are_found() {
        let v = Vocabulary::builtin();
        for (name, spellings) in [
            ("Kalyani", &["कल्याणी", "కల్యాణి", "ಕಲ್ಯಾಣಿ", "கல்யாணி"][..]),
            ("Todi", &["तोडी", "తోడి", "ತೋಡಿ", "தோடி"]),
            ("Mohanam", &["मोहनम्", "మోహనం", "ಮೋಹನ", "மோகனம்"]),
            ("Hindolam", &["हिन्दोलम्", "హిందోళం", "ಹಿಂದೋಳ", "இந்தோளம்"]),
            ("Bhairavi", &["भैरवी", "భైరవి", "ಭೈರವಿ", "பைரவி"]),
            ("Kambhoji", &["काम्भोजी", "కాంభోజి", "ಕಾಂಭೋಜಿ", "காம்போஜி"]),
            ("Hamsadhwani", &["हंसध्वनि", "హంసధ్వని", "ಹಂಸಧ್ವನಿ", "ஹம்ஸத்வனி"]),
        ] {
            let want = v.raga(name).unwrap();
            for s in spellings {
                let got = v.raga(s).unwrap_or_else(|e| panic!("{s}: {e}"));
                assert_eq!(got.name, want.name, "{s}");
            }
        }
    }

    #[test]
    fn builtin_loads_with_the_promised_sizes() {
        let v = Vocabulary::builtin();
        assert_eq!(v.ragas.iter().filter(|r| r.melakarta.is_some()).count(), 72);
        assert!(v.ragas.iter().filter(|r| r.melakarta.is_none()).count() >= 60);
        assert!(v.talas.len() >= 10);
        assert!(v.composers.len() >= 25);
        for seg in [
            "alapana",
            "tanam",
            "neraval",
            "kalpanaswaram",
            "kriti",
            "pallavi",
            "anupallavi",
            "charanam",
            "tani avartanam",
            "varnam",
        ] {
            v.segment(seg).unwrap();
        }
    }

    #[test]
    fn melakartas_follow_the_rule_and_names() {
        let v = Vocabulary::builtin();
        for n in 1..=72u8 {
            let r = v.melakarta(n).unwrap();
            let expect: Vec<u8> = melakarta_scale(n)
                .unwrap()
                .iter()
                .map(|s| s.semitones())
                .collect();
            assert_eq!(r.pitch_classes, expect, "{}", r.name);
        }
        for (name, n) in [
            ("Mayamalavagowla", 15),
            ("Kharaharapriya", 22),
            ("Shankarabharanam", 29),
            ("Kalyani", 65),
            ("Todi", 8),
            ("Harikambhoji", 28),
            ("Natabhairavi", 20),
        ] {
            assert_eq!(v.raga(name).unwrap().melakarta, Some(n), "{name}");
        }
    }

    #[test]
    fn pitch_classes_are_the_union_of_the_forms_and_anya_swaras() {
        let v = Vocabulary::builtin();
        for r in &v.ragas {
            let mut union: Vec<u8> = r
                .arohana
                .iter()
                .chain(&r.avarohana)
                .map(|n| n.swara.semitones())
                .chain(r.anya.iter().map(|s| s.semitones()))
                .collect();
            union.sort_unstable();
            union.dedup();
            assert_eq!(union, r.pitch_classes, "raga {}", r.name);
            // Every swara of the forms outside the parent mela is declared anya.
            let parent: Vec<u8> = melakarta_scale(r.parent)
                .unwrap()
                .iter()
                .map(|s| s.semitones())
                .collect();
            for n in r.arohana.iter().chain(&r.avarohana) {
                let p = n.swara.semitones();
                assert!(
                    parent.contains(&p) || r.anya.iter().any(|a| a.semitones() == p),
                    "raga {}: {} is neither in mela {} nor declared anya",
                    r.name,
                    n.swara,
                    r.parent
                );
            }
            assert!(r.pitch_classes.contains(&0), "{} lacks Sa", r.name);
        }
    }

    #[test]
    fn compmusic_forty_are_all_present() {
        let v = Vocabulary::builtin();
        let names = "Shanmukhapriya, Kapi, Bhairavi, Madhyamavati, Bilahari, Mohanam, Senchurutti, \
            Sriranjani, Reetigowla, Husseni, Dhanyasi, Atana, Behag, Surati, Kamavardhani, Mukhari, \
            Sindhubhairavi, Sahana, Kanada, Mayamalavagowla, Nattai, Shankarabharanam, Saveri, Kamas, \
            Todi, Begada, Harikambhoji, Sri, Kalyani, Sama, Natakurinji, Purvikalyani, \
            Yadukulakambhoji, Devagandhari, Kedaragowla, Anandabhairavi, Gowla, Varali, Kambhoji, \
            Kharaharapriya";
        let list: Vec<&str> = names.split(", ").collect();
        assert_eq!(list.len(), 40);
        for n in &list {
            assert!(v.raga(n).unwrap().compmusic, "{n} not flagged");
        }
        assert_eq!(v.ragas.iter().filter(|r| r.compmusic).count(), 40);
    }

    #[test]
    fn the_concert_ragas_users_asked_for_resolve_to_ragas_with_scales() {
        let v = Vocabulary::builtin();
        // Every name, as spelt in the request for them, with a variant.
        for name in [
            "Desh",
            "Des",
            "Punnagavarali",
            "Shivaranjani",
            "Sivaranjani",
            "Brindavana Saranga",
            "Brindavani Sarang",
            "Dwijavanti",
            "Jaijaivanti",
            "Hamir Kalyani",
            "Hamirkalyani",
            "Navarasa Kannada",
            "Navarasakannada",
            "Sumanesaranjani",
            "Madhukauns",
            "Saraswati",
            "Saraswathi",
            "Jog",
            "Joga",
            "Pilu",
            "Peelu",
            "Yaman Kalyani",
            "Yaman Kalyan",
            "Karnaranjani",
            "Karnaranjini",
            "Chandrajyoti",
            "Chandrajyothi",
            "Kalavati",
            "Kalavathi",
            "Navaroj",
            "Navaroju",
            "Mand",
            "Maand",
            "Bageshri",
            "Bageshree",
            "Shankarabharana",
            "Natikurunji",
            "Bhairav",
            "Bhoopali",
            "Yaman",
            "Malkauns",
            "Darbari",
        ] {
            let r = v.raga(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                r.pitch_classes.len() >= 5 && r.arohana.len() >= 5 && r.avarohana.len() >= 5,
                "{name} -> {}",
                r.name
            );
        }
    }

    #[test]
    fn lookup_folds_variants_and_suggests_neighbours() {
        let v = Vocabulary::builtin();
        for (a, b) in [
            ("Thodi", "Todi"),
            ("Sankarabharanam", "Shankarabharanam"),
            ("Ritigaula", "Reetigowla"),
            ("kalyāṇi", "Kalyani"),
            ("Dheerasankarabharanam", "Shankarabharanam"),
            ("Shankarabharana", "Shankarabharanam"),
            ("Natikurunji", "Natakurinji"),
            ("Hindola", "Hindolam"),
            // Hindustani names of the same scales
            ("Yaman", "Kalyani"),
            ("Bhoopali", "Mohanam"),
            ("Bhupali", "Mohanam"),
            ("Malkauns", "Hindolam"),
            ("Bhairav", "Mayamalavagowla"),
            ("Darbari", "Darbari Kanada"),
            ("Yaman Kalyan", "Yaman Kalyani"),
            // Tamil -ai, Kannada/Telugu -u, -ini for -ani, th/t, ee/i, w/v
            ("Mayamalavagowlai", "Mayamalavagowla"),
            ("Navaroju", "Navaroj"),
            ("Shivaranjini", "Shivaranjani"),
            ("Karnaranjini", "Karnaranjani"),
            ("Sumanasaranjini", "Sumanesaranjani"),
            ("Chandrajyothi", "Chandrajyoti"),
            ("Kalavathi", "Kalavati"),
            ("Saraswathi", "Saraswati"),
            ("Bhaageshri", "Bageshri"),
            ("Shreeraga", "Sri"),
            ("Dwijavanthi", "Dwijavanti"),
            ("Brindavana Sarangaa", "Brindavana Saranga"),
            ("Punnaagavaraali", "Punnagavarali"),
            ("Navarasa Kannadam", "Navarasa Kannada"),
            ("Hameer Kalyani", "Hamir Kalyani"),
            ("Peelu", "Pilu"),
        ] {
            assert_eq!(
                v.raga(a).unwrap().name,
                v.raga(b).unwrap().name,
                "{a} / {b}"
            );
        }
        match v.raga("Kalyanni vasantham x") {
            Err(Error::UnknownName {
                kind, suggestions, ..
            }) => {
                assert_eq!(kind, "raga");
                assert!(
                    suggestions.iter().any(|s| s == "Kalyanavasantam"),
                    "{suggestions:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        let e = v.raga("Kalyni").unwrap_err().to_string();
        assert!(
            e.contains("unknown raga `Kalyni`") && e.contains("Kalyani"),
            "{e}"
        );
        assert_eq!(v.tala("adi tala").unwrap().name, "Adi");
        assert_eq!(v.composer("Thyagaraja").unwrap().name, "Tyagaraja");
        assert_eq!(v.instrument("vocal").unwrap().name, "voice");
        assert!(v.tala("Adhi").is_ok());
    }

    #[test]
    fn tala_beats_match_structure() {
        for t in &Vocabulary::builtin().talas {
            assert_eq!(
                t.angas.iter().map(|a| a.beats()).sum::<u32>(),
                t.beats,
                "{}",
                t.name
            );
        }
        let adi = Vocabulary::builtin().tala("Adi").unwrap();
        assert_eq!(adi.anga_starts(), vec![0, 4, 6]);
    }

    #[test]
    fn broken_data_names_file_and_field() {
        let mut src = BUILTIN;
        let bad = BUILTIN.ragas.replace(
            "arohana = \"S R2 G3 P D2 S'\"",
            "arohana = \"S R9 G3 P D2 S'\"",
        );
        src.ragas = &bad;
        let e = Vocabulary::parse(&src).unwrap_err().to_string();
        assert!(
            e.contains("ragas.toml") && e.contains("arohana") && e.contains("R9"),
            "{e}"
        );
        let dup = format!("{}\n[[raga]]\nname = \"Thodi\"\nparent = 8\narohana = \"S R1 G2\"\navarohana = \"reverse\"\npitch_classes = [0, 1, 3]\n", BUILTIN.ragas);
        src.ragas = &dup;
        let e = Vocabulary::parse(&src).unwrap_err().to_string();
        assert!(e.contains("clashes"), "{e}");
    }
}
