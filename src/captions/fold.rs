//! Folding names to a spelling-independent key, and nearest-name search.
//!
//! Carnatic names are transliterated many ways: Thodi / Todi,
//! Sankarabharanam / Shankarabharanam / Śaṅkarābharaṇaṁ, Ritigaula /
//! Reetigowla. The key drops diacritics, case, spaces and punctuation,
//! an `h` after a consonant, doubled vowels and common vowel spellings.
//! Names in Indian scripts are read as Latin first ([`super::indic`]), so
//! कल्याणी, కల్యాణి, ಕಲ್ಯಾಣಿ and கல்யாணி share Kalyani's key.
//!
//! Tamil script writes k and g (and often h), t and d, p and b, ch, j and
//! s with one letter each; [`loose_key`] merges those sounds, for a second
//! lookup when the exact key finds nothing.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// The lookup key of a name.
pub fn fold(name: &str) -> String {
    let plain: String = super::indic::to_latin(name)
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .filter(char::is_ascii_alphanumeric)
        .collect();
    // Vowel spellings: ee -> i, oo -> u, ow / ou -> au.
    let plain = plain
        .replace("ee", "i")
        .replace("oo", "u")
        .replace("ow", "au")
        .replace("ou", "au")
        .replace('w', "v");
    let mut out = String::with_capacity(plain.len());
    let mut prev: Option<char> = None;
    for c in plain.chars() {
        // Aspiration: th -> t, bh -> b, sh -> s, ...
        if c == 'h' && prev.is_some_and(|p| p.is_ascii_alphabetic() && !is_vowel(p)) {
            continue;
        }
        // Doubled vowels: aa -> a. Doubled consonants stay: Kanada and
        // Kannada are different ragas.
        if prev == Some(c) && is_vowel(c) {
            continue;
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

/// A looser key: [`fold`]'s, with the sounds Tamil script writes alike
/// merged (g and h into k, d into t, b into p, c and j into s), doubled
/// consonants single, a final `-ini` read as `-ani` (Shivaranjini /
/// Shivaranjani), and the endings of one name in different languages
/// dropped: `-am` and `-a` (Shankarabharanam / Shankarabharana), Tamil
/// `-ai` (Gowlai / Gowla) and Kannada and Telugu `-u` after a consonant
/// (Navaroju / Navaroj).
pub fn loose_key(name: &str) -> String {
    let mut folded = fold(name);
    if let Some(s) = folded.strip_suffix("ini") {
        folded = format!("{s}ani");
    }
    let after_consonant = |s: &str| s.chars().last().is_some_and(|c| !is_vowel(c));
    let stem = folded
        .strip_suffix("am")
        .or_else(|| folded.strip_suffix("ai"))
        .or_else(|| folded.strip_suffix('a'))
        .or_else(|| folded.strip_suffix('u').filter(|s| after_consonant(s)))
        .filter(|s| s.len() >= 3)
        .unwrap_or(&folded);
    let mut out = String::new();
    for c in stem.chars() {
        let c = match c {
            'g' | 'h' => 'k',
            'd' => 't',
            'b' => 'p',
            'c' | 'j' => 's',
            c => c,
        };
        if out.ends_with(c) && !is_vowel(c) {
            continue;
        }
        out.push(c);
    }
    out
}

/// Edit distance (insertions, deletions, substitutions) between two keys.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = diag + usize::from(ca != cb);
            diag = row[j + 1];
            row[j + 1] = sub.min(row[j] + 1).min(diag + 1);
        }
    }
    row[b.len()]
}

/// Up to `n` display names nearest to `query`: `candidates` pairs each
/// display name with the keys it answers to; each name counts once, at its
/// closest key.
pub fn nearest<'a>(
    query: &str,
    candidates: impl Iterator<Item = (&'a str, Vec<String>)>,
    n: usize,
) -> Vec<String> {
    let q = fold(query);
    let mut scored: Vec<(usize, &str)> = candidates
        .map(|(name, keys)| {
            let d = keys
                .iter()
                .map(|k| {
                    // A key that starts with the query is a near hit.
                    if !q.is_empty() && k.starts_with(&q) {
                        1
                    } else {
                        edit_distance(&q, k)
                    }
                })
                .min()
                .unwrap_or(usize::MAX);
            (d, name)
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(n)
        .map(|(_, name)| name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_variants_share_a_key() {
        for group in [
            &["Thodi", "Todi", "TODI", "Tōḍi"][..],
            &[
                "Sankarabharanam",
                "Shankarabharanam",
                "Śaṅkarābharaṇaṁ",
                "shankara-bharanam",
            ],
            &["Ritigaula", "Reetigowla", "Rītigauḷa", "Reeti Gowla"],
            &["Kalyani", "Kalyaani", "Kalyāṇi"],
            &["Gowla", "Gaula", "Goula"],
        ] {
            let key = fold(group[0]);
            for name in group {
                assert_eq!(fold(name), key, "{name} vs {}", group[0]);
            }
        }
        assert_ne!(fold("Kalyani"), fold("Kapi"));
    }

    #[test]
    fn indian_scripts_fold_to_the_latin_keys() {
        for (latin, scripts) in [
            ("Kalyani", &["कल्याणी", "కల్యాణి", "ಕಲ್ಯಾಣಿ", "கல்யாணி"][..]),
            ("Shankarabharanam", &["शङ्कराभरणम्", "శంకరాభరణం", "ಶಂಕರಾಭರಣಂ"]),
            ("Hamsadhwani", &["हंसध्वनि", "హంసధ్వని", "ಹಂಸಧ್ವನಿ"]),
            ("Kambhoji", &["काम्भोजी", "కాంభోజి", "ಕಾಂಭೋಜಿ"]),
        ] {
            for s in scripts {
                assert_eq!(fold(s), fold(latin), "{s}");
            }
        }
        // Tamil needs the loose key: one letter for t and d, k and h ...
        for (latin, tamil) in [
            ("Todi", "தோடி"),
            ("Mohanam", "மோகனம்"),
            ("Sankarabharanam", "சங்கராபரணம்"),
            ("Bhairavi", "பைரவி"),
            ("Kambhoji", "காம்போஜி"),
        ] {
            assert_eq!(loose_key(tamil), loose_key(latin), "{tamil}");
        }
    }

    #[test]
    fn distance_and_nearest() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        let names = ["Kalyani", "Kapi", "Kambhoji", "Todi"];
        let cands = names.iter().map(|n| (*n, vec![fold(n)]));
        assert_eq!(nearest("Kalyni", cands, 2), vec!["Kalyani", "Kapi"]);
    }
}
