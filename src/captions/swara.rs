//! Swaras, notes with octaves, phrase notation and the melakarta rule.

use std::fmt;

/// The sixteen swara names (twelve pitch positions; R2 = G1, R3 = G2,
/// D2 = N1, D3 = N2 share a position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Swara {
    /// Shadjam, the tonic.
    S,
    /// Shuddha rishabham.
    R1,
    /// Chatushruti rishabham.
    R2,
    /// Shatshruti rishabham.
    R3,
    /// Shuddha gandharam.
    G1,
    /// Sadharana gandharam.
    G2,
    /// Antara gandharam.
    G3,
    /// Shuddha madhyamam.
    M1,
    /// Prati madhyamam.
    M2,
    /// Panchamam.
    P,
    /// Shuddha dhaivatam.
    D1,
    /// Chatushruti dhaivatam.
    D2,
    /// Shatshruti dhaivatam.
    D3,
    /// Shuddha nishadam.
    N1,
    /// Kaishiki nishadam.
    N2,
    /// Kakali nishadam.
    N3,
}

/// Every swara, in pitch order.
pub const ALL_SWARAS: [Swara; 16] = {
    use Swara::*;
    [S, R1, R2, R3, G1, G2, G3, M1, M2, P, D1, D2, D3, N1, N2, N3]
};

impl Swara {
    /// Semitones above Sa (0-11).
    pub fn semitones(self) -> u8 {
        use Swara::*;
        match self {
            S => 0,
            R1 => 1,
            R2 | G1 => 2,
            R3 | G2 => 3,
            G3 => 4,
            M1 => 5,
            M2 => 6,
            P => 7,
            D1 => 8,
            D2 | N1 => 9,
            D3 | N2 => 10,
            N3 => 11,
        }
    }

    /// The swara's short name ("R2").
    pub fn name(self) -> &'static str {
        use Swara::*;
        match self {
            S => "S",
            R1 => "R1",
            R2 => "R2",
            R3 => "R3",
            G1 => "G1",
            G2 => "G2",
            G3 => "G3",
            M1 => "M1",
            M2 => "M2",
            P => "P",
            D1 => "D1",
            D2 => "D2",
            D3 => "D3",
            N1 => "N1",
            N2 => "N2",
            N3 => "N3",
        }
    }

    /// Parses a short name ("S", "R2", "p"; case-insensitive).
    pub fn parse(text: &str) -> Option<Swara> {
        ALL_SWARAS
            .iter()
            .copied()
            .find(|s| s.name().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Swara {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A swara in an octave: 0 middle (madhya), -1 lower (mandra), +1 upper
/// (tara).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Note {
    /// The swara.
    pub swara: Swara,
    /// Octave relative to the tonic's.
    pub octave: i8,
}

impl Note {
    /// Semitones above the middle Sa (negative below it).
    pub fn semitones(self) -> i32 {
        self.swara.semitones() as i32 + 12 * self.octave as i32
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.swara)?;
        let mark = if self.octave > 0 { "'" } else { "." };
        for _ in 0..self.octave.unsigned_abs() {
            f.write_str(mark)?;
        }
        Ok(())
    }
}

/// Parses space-separated notes: `S R2 G3 P D2 S'`, with `'` per octave up
/// and `.` per octave down.
pub fn parse_phrase(text: &str) -> Result<Vec<Note>, String> {
    let notes: Vec<Note> = text
        .split_whitespace()
        .map(|tok| {
            let up = tok.chars().rev().take_while(|c| *c == '\'').count();
            let down = tok.chars().rev().take_while(|c| *c == '.').count();
            let core = tok.trim_end_matches(['\'', '.']);
            let swara = Swara::parse(core).ok_or_else(|| format!("`{tok}` is not a swara"))?;
            Ok(Note {
                swara,
                octave: up as i8 - down as i8,
            })
        })
        .collect::<Result<_, String>>()?;
    if notes.len() < 2 {
        return Err(format!("`{text}` has fewer than two notes"));
    }
    Ok(notes)
}

/// Writes notes back in the same notation.
pub fn format_phrase(notes: &[Note]) -> String {
    notes
        .iter()
        .map(Note::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The seven swaras of melakarta `number` (1-72) by the rule: Ma is M1 for
/// 1-36 and M2 for 37-72; with `k = (n - 1) mod 36`, the Ri-Ga pair is
/// `PAIRS[k / 6]` and the Da-Ni pair `PAIRS[k mod 6]`, pairs in the order
/// 1-1, 1-2, 1-3, 2-2, 2-3, 3-3.
pub fn melakarta_scale(number: u8) -> Option<[Swara; 7]> {
    use Swara::*;
    if !(1..=72).contains(&number) {
        return None;
    }
    const RG: [(Swara, Swara); 6] = [(R1, G1), (R1, G2), (R1, G3), (R2, G2), (R2, G3), (R3, G3)];
    const DN: [(Swara, Swara); 6] = [(D1, N1), (D1, N2), (D1, N3), (D2, N2), (D2, N3), (D3, N3)];
    let n = number as usize - 1;
    let ma = if n < 36 { M1 } else { M2 };
    let k = n % 36;
    let (r, g) = RG[k / 6];
    let (d, ni) = DN[k % 6];
    Some([S, r, g, ma, P, d, ni])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcs(scale: [Swara; 7]) -> Vec<u8> {
        scale.iter().map(|s| s.semitones()).collect()
    }

    #[test]
    fn named_melakarta_checks() {
        // raga.md: 15 Mayamalavagowla, 22 Kharaharapriya, 29 Shankarabharanam,
        // 65 Kalyani, 8 Todi, 28 Harikambhoji, 20 Natabhairavi.
        let cases: [(u8, [u8; 7]); 7] = [
            (15, [0, 1, 4, 5, 7, 8, 11]),
            (22, [0, 2, 3, 5, 7, 9, 10]),
            (29, [0, 2, 4, 5, 7, 9, 11]),
            (65, [0, 2, 4, 6, 7, 9, 11]),
            (8, [0, 1, 3, 5, 7, 8, 10]),
            (28, [0, 2, 4, 5, 7, 9, 10]),
            (20, [0, 2, 3, 5, 7, 8, 10]),
        ];
        for (n, expect) in cases {
            assert_eq!(pcs(melakarta_scale(n).unwrap()), expect, "mela {n}");
        }
        assert!(melakarta_scale(0).is_none() && melakarta_scale(73).is_none());
    }

    #[test]
    fn all_72_are_distinct_ascending_seven_note_scales() {
        let mut seen = std::collections::HashSet::new();
        for n in 1..=72u8 {
            let scale = melakarta_scale(n).unwrap();
            let p = pcs(scale);
            assert!(p.windows(2).all(|w| w[0] < w[1]), "mela {n}: {p:?}");
            assert_eq!(p[0], 0);
            assert_eq!(p[4], 7, "Pa is fixed");
            assert_eq!(p[3], if n <= 36 { 5 } else { 6 });
            assert!(seen.insert(p), "mela {n} repeats a scale");
        }
        // 72 = 2 Ma x 6 Ri-Ga x 6 Da-Ni: every combination appears once.
        assert_eq!(seen.len(), 72);
        // Mela 1 is Kanakangi (R1 G1 M1 P D1 N1), 72 Rasikapriya (R3 G3 M2 P D3 N3).
        assert_eq!(pcs(melakarta_scale(1).unwrap()), [0, 1, 2, 5, 7, 8, 9]);
        assert_eq!(pcs(melakarta_scale(72).unwrap()), [0, 3, 4, 6, 7, 10, 11]);
    }

    #[test]
    fn phrases_parse_with_octaves() {
        let notes = parse_phrase("N2. S R2 G3 S'").unwrap();
        assert_eq!(notes[0].semitones(), -2);
        assert_eq!(notes[4].semitones(), 12);
        assert_eq!(format_phrase(&notes), "N2. S R2 G3 S'");
        assert!(parse_phrase("S X2 P").unwrap_err().contains("X2"));
        assert!(parse_phrase("S").is_err());
        // N2 is 10 semitones, N3 11 (not 11 and 12).
        assert_eq!(Swara::N2.semitones(), 10);
        assert_eq!(Swara::N3.semitones(), 11);
    }
}
