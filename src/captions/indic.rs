//! Names written in Indian scripts, read as Latin letters. Devanagari,
//! Bengali, Gurmukhi, Gujarati, Oriya, Tamil, Telugu, Kannada and
//! Malayalam share one layout in Unicode (inherited from ISCII): the same
//! offset in each script's block is the same letter, so one table over the
//! offsets transliterates them all. The output is plain lower-case Latin
//! in the spelling raga names usually take (`kalyaani`, `shankaraabharanam`,
//! `todi`), ready for [`super::fold`] and for file names.

use std::borrow::Cow;

/// First and last code points of the shared-layout blocks.
const FIRST: u32 = 0x0900;
const LAST: u32 = 0x0D7F;

/// What a code point is, by its offset in its block.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Letter {
    /// An independent vowel.
    Vowel(&'static str),
    /// A consonant with its inherent `a`.
    Consonant(&'static str),
    /// A dependent vowel sign, replacing the inherent `a`.
    Sign(&'static str),
    /// The vowel killer.
    Virama,
    /// Nasalisation (anusvara, candrabindu): `m` or `n` by what follows.
    Nasal,
    /// Visarga.
    Visarga,
    /// Danda and double danda.
    Stop,
    /// A digit.
    Digit(char),
    /// Nukta, avagraha, accents, length marks: nothing to write.
    Silent,
}

fn letter(c: char) -> Option<Letter> {
    let cp = c as u32;
    if !(FIRST..=LAST).contains(&cp) {
        return None;
    }
    use Letter::*;
    const CONSONANTS: [&str; 37] = [
        "k", "kh", "g", "gh", "n", "ch", "chh", "j", "jh", "n", "t", "th", "d", "dh", "n", "t",
        "th", "d", "dh", "n", "n", "p", "ph", "b", "bh", "m", "y", "r", "r", "l", "l", "zh", "v",
        "sh", "sh", "s", "h",
    ];
    const VOWELS: [&str; 16] = [
        "a", "a", "aa", "i", "ii", "u", "uu", "ri", "li", "e", "e", "e", "ai", "o", "o", "o",
    ];
    const SIGNS: [&str; 15] = [
        "aa", "i", "ii", "u", "uu", "ri", "rri", "e", "e", "e", "ai", "o", "o", "o", "au",
    ];
    const NUKTA_CONSONANTS: [&str; 8] = ["k", "kh", "g", "z", "d", "rh", "f", "y"];
    let off = ((cp - FIRST) % 0x80) as usize;
    Some(match off {
        0x01 | 0x02 => Nasal,
        0x03 => Visarga,
        0x04..=0x13 => Vowel(VOWELS[off - 0x04]),
        0x14 => Vowel("au"),
        0x15..=0x39 => Consonant(CONSONANTS[off - 0x15]),
        0x3E..=0x4C => Sign(SIGNS[off - 0x3E]),
        0x4D => Virama,
        0x58..=0x5F => Consonant(NUKTA_CONSONANTS[off - 0x58]),
        0x60 => Vowel("ri"),
        0x61 => Vowel("li"),
        0x62 | 0x63 => Sign("li"),
        0x64 | 0x65 => Stop,
        0x66..=0x6F => Digit(char::from(b'0' + (off - 0x66) as u8)),
        _ => Silent,
    })
}

/// Whether a nasal before `next` is written `m` (before labials, sibilants
/// and `h`, and at the end of a word) rather than `n`.
fn nasal_is_m(next: Option<Letter>) -> bool {
    match next {
        Some(Letter::Consonant(c)) => {
            matches!(c.as_bytes()[0], b'p' | b'b' | b'm' | b'v' | b's' | b'h')
        }
        _ => true,
    }
}

/// `text` with every letter of the shared-layout scripts written in Latin
/// letters; other text is kept as it is (borrowed when there is none).
pub fn to_latin(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| letter(c).is_some()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    // the next letter after any silent marks (nukta)
    let next_letter = |chars: &std::iter::Peekable<std::str::Chars<'_>>| {
        chars
            .clone()
            .map(letter)
            .find(|l| *l != Some(Letter::Silent))
            .flatten()
    };
    while let Some(c) = chars.next() {
        let Some(l) = letter(c) else {
            out.push(c);
            continue;
        };
        match l {
            Letter::Consonant(s) => {
                out.push_str(s);
                while chars.peek().and_then(|&c| letter(c)) == Some(Letter::Silent) {
                    chars.next();
                }
                match chars.peek().and_then(|&c| letter(c)) {
                    Some(Letter::Sign(v)) => {
                        out.push_str(v);
                        chars.next();
                    }
                    Some(Letter::Virama) => {
                        chars.next();
                    }
                    _ => out.push('a'),
                }
            }
            Letter::Vowel(s) | Letter::Sign(s) => out.push_str(s),
            Letter::Nasal => out.push(if nasal_is_m(next_letter(&chars)) {
                'm'
            } else {
                'n'
            }),
            Letter::Visarga => out.push('h'),
            Letter::Stop => out.push(' '),
            Letter::Digit(d) => out.push(d),
            Letter::Virama | Letter::Silent => {}
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_scripts_read_as_latin() {
        for (text, latin) in [
            ("कल्याणी", "kalyaanii"),
            ("तोडी", "todii"),
            ("शङ्कराभरणम्", "shankaraabharanam"),
            ("हंसध्वनि", "hamsadhvani"),
            ("హిందోళం", "hindolam"),
            ("శంకరాభరణం", "shankaraabharanam"),
            ("కాంభోజి", "kaambhoji"),
            ("ಕಲ್ಯಾಣಿ", "kalyaani"),
            ("ಖರಹರಪ್ರಿಯ", "kharaharapriya"),
            ("கல்யாணி", "kalyaani"),
            ("தோடி", "toti"), // Tamil writes d and t alike
            ("மோகனம்", "mokanam"),
        ] {
            assert_eq!(to_latin(text), latin, "{text}");
        }
    }

    #[test]
    fn other_text_is_kept_and_mixed_text_is_read() {
        assert!(matches!(to_latin("Kalyani raga"), Cow::Borrowed(_)));
        assert_eq!(to_latin("तोडी raga, ९ beats"), "todii raga, 9 beats");
        assert_eq!(to_latin("ராகம்।"), "raakam ");
    }
}
