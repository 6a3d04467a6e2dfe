//! The shruti (tonic) a musician names in a caption or on the command line:
//! "shruti D", "sruti C#", "shruti 146 Hz", "tonic 2.5 kattai", or
//! `--tonic D` / `--tonic 146.8`.
//!
//! Note names are read in the octave a tanpura is tuned in for Carnatic
//! concerts, C3-B3 (C = 130.81 Hz ... B = 246.94 Hz, equal temperament on
//! A4 = 440 Hz); kattai numbers are the harmonium's (1 = C, 1.5 = C#, 2 =
//! D, ... 6.5 = B).

use crate::error::{Error, Result};

/// Semitones of the note letters above C.
fn letter_semitones(c: char) -> Option<i32> {
    Some(match c.to_ascii_uppercase() {
        'C' => 0,
        'D' => 2,
        'E' => 4,
        'F' => 5,
        'G' => 7,
        'A' => 9,
        'B' => 11,
        _ => return None,
    })
}

/// Hz of C3.
const C3_HZ: f64 = 130.812_782_650_299_3;

fn hz_of_semitones(s: i32) -> f64 {
    C3_HZ * (s as f64 / 12.0).exp2()
}

/// Kattai (harmonium numbering) to semitones above C: 1 = C, 1.5 = C#,
/// 2 = D, 2.5 = D#, 3 = E, 4 = F, 4.5 = F#, 5 = G, 5.5 = G#, 6 = A,
/// 6.5 = A#, 7 = B.
fn kattai_semitones(k: f64) -> Option<i32> {
    const TABLE: [(f64, i32); 12] = [
        (1.0, 0),
        (1.5, 1),
        (2.0, 2),
        (2.5, 3),
        (3.0, 4),
        (4.0, 5),
        (4.5, 6),
        (5.0, 7),
        (5.5, 8),
        (6.0, 9),
        (6.5, 10),
        (7.0, 11),
    ];
    TABLE
        .iter()
        .find(|(v, _)| (v - k).abs() < 1e-9)
        .map(|p| p.1)
}

/// A tonic given as a note name (`D`, `C#`, `Eb`, `c sharp`), a frequency
/// (`146.8`, `146.8 Hz`, `146.8hz`) or a kattai (`2 kattai`, `kattai 2.5`).
pub fn parse_tonic(text: &str) -> Result<f64> {
    let t = text.trim().to_lowercase();
    let bad = || {
        Error::param(
            "tonic",
            format!(
                "`{text}` is not a tonic: give a note (C, C#, Db ... B, read in C3-B3), \
                 a frequency in Hz (e.g. 146.8 Hz) or a kattai (e.g. 2 kattai)"
            ),
        )
    };
    let words: Vec<&str> = t.split_whitespace().collect();
    let number = |s: &str| s.trim_end_matches("hz").parse::<f64>().ok();
    match words.as_slice() {
        [k, "kattai"] | ["kattai", k] => {
            let v = k.parse::<f64>().map_err(|_| bad())?;
            return kattai_semitones(v).map(hz_of_semitones).ok_or_else(bad);
        }
        [v] | [v, "hz"] if number(v).is_some() => {
            let hz = number(v).ok_or_else(bad)?;
            return crate::limits::in_range("tonic", hz, &crate::limits::TONIC_HZ, " Hz");
        }
        _ => {}
    }
    let mut chars = t.chars();
    let letter = chars.next().and_then(letter_semitones).ok_or_else(bad)?;
    let rest: String = chars.collect::<String>().replace(' ', "");
    let shift = match rest.as_str() {
        "" | "natural" => 0,
        "#" | "sharp" | "♯" => 1,
        "b" | "flat" | "♭" => -1,
        _ => return Err(bad()),
    };
    Ok(hz_of_semitones((letter + shift).rem_euclid(12)))
}

/// A caption with its shruti phrase taken out.
#[derive(Debug, Clone, PartialEq)]
pub struct ShrutiSplit {
    /// The caption without the shruti phrase (separators tidied).
    pub caption: String,
    /// The tonic named, in Hz, if any.
    pub tonic_hz: Option<f64>,
}

/// Finds a shruti phrase in `caption` ("shruti D", "sruti 146 Hz", "tonic
/// 2 kattai", "in shruti C#"), returns the caption without it and the
/// tonic. A keyword followed by something that is not a tonic is an error.
pub fn split_shruti(caption: &str) -> Result<ShrutiSplit> {
    const KEYS: [&str; 4] = ["shruti", "sruti", "sruthi", "tonic"];
    let words: Vec<&str> = caption.split_whitespace().collect();
    let clean = |w: &str| {
        w.trim_matches(|c: char| c == ',' || c == ';' || c == '.' || c == ':')
            .to_lowercase()
    };
    let Some(k) = words.iter().position(|w| KEYS.contains(&clean(w).as_str())) else {
        return Ok(ShrutiSplit {
            caption: caption.trim().to_string(),
            tonic_hz: None,
        });
    };
    // the longest run of following words (up to two) that reads as a tonic
    let mut found = None;
    for n in (1..=2).rev() {
        if k + n >= words.len() {
            continue;
        }
        let phrase: Vec<String> = words[k + 1..=k + n].iter().map(|w| clean(w)).collect();
        if let Ok(hz) = parse_tonic(&phrase.join(" ")) {
            found = Some((n, hz));
            break;
        }
    }
    let (n, hz) = found.ok_or_else(|| {
        Error::param(
            "caption",
            format!(
                "`{}` after `{}` is not a tonic: write e.g. \"shruti D\", \"shruti 146 Hz\" or \"shruti 2 kattai\"",
                words.get(k + 1).copied().unwrap_or(""),
                words[k]
            ),
        )
    })?;
    let mut start = k;
    if start > 0 && matches!(clean(words[start - 1]).as_str(), "in" | "at" | "with") {
        start -= 1;
    }
    let mut kept: Vec<String> = words[..start].iter().map(|w| w.to_string()).collect();
    // the phrase's closing separator stays between its neighbours
    let closing = words[k + n]
        .chars()
        .last()
        .filter(|c| matches!(c, ',' | ';'));
    if let (Some(c), Some(last)) = (closing, kept.last_mut()) {
        if !last.ends_with([',', ';']) && k + 1 + n < words.len() {
            last.push(c);
        }
    }
    kept.extend(words[k + 1 + n..].iter().map(|w| w.to_string()));
    let caption = kept
        .join(" ")
        .replace(" ,", ",")
        .trim()
        .trim_matches(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .replace(",,", ",")
        .to_string();
    Ok(ShrutiSplit {
        caption,
        tonic_hz: Some(hz),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 0.01
    }

    #[test]
    fn tonics_from_names_numbers_and_kattai() {
        assert!(near(parse_tonic("D").unwrap(), 146.83));
        assert!(near(parse_tonic("c#").unwrap(), 138.59));
        assert!(near(parse_tonic("Db").unwrap(), 138.59));
        assert!(near(parse_tonic("A").unwrap(), 220.0));
        assert!(near(parse_tonic("G sharp").unwrap(), 207.65));
        assert!(near(parse_tonic("146.8 Hz").unwrap(), 146.8));
        assert!(near(parse_tonic("146.8hz").unwrap(), 146.8));
        assert!(near(parse_tonic("2 kattai").unwrap(), 146.83));
        assert!(near(parse_tonic("kattai 5").unwrap(), 196.0));
        for bad in ["H", "D##", "3.3 kattai", "5000 Hz", "", "nan"] {
            let e = parse_tonic(bad).unwrap_err().to_string();
            assert!(e.contains("tonic"), "{bad}: {e}");
        }
    }

    #[test]
    fn shruti_phrases_leave_the_caption() {
        let s = split_shruti("Kalyani raga alapana, violin, shruti D").unwrap();
        assert_eq!(s.caption, "Kalyani raga alapana, violin");
        assert!(near(s.tonic_hz.unwrap(), 146.83));
        let s = split_shruti("kriti in raga Todi in shruti 146 Hz, adi tala").unwrap();
        assert_eq!(s.caption, "kriti in raga Todi, adi tala");
        assert!(near(s.tonic_hz.unwrap(), 146.0));
        let s = split_shruti("Mohanam on flute, tonic 5 kattai").unwrap();
        assert_eq!(s.caption, "Mohanam on flute");
        assert!(near(s.tonic_hz.unwrap(), 196.0));
        let s = split_shruti("Bhairavi alapana").unwrap();
        assert_eq!(s.tonic_hz, None);
        assert_eq!(s.caption, "Bhairavi alapana");
        let e = split_shruti("Todi, shruti high").unwrap_err().to_string();
        assert!(e.contains("high") && e.contains("shruti"), "{e}");
    }
}
