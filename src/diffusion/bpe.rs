//! Learning a CLIP-layout BPE vocabulary from a caption corpus.
//!
//! The result is what transformers' `CLIPTokenizer` and [`ClipTokenizer`]
//! read: `vocab.json` (the 256 byte characters, the same with `</w>`, one
//! token per merge, then `<|startoftext|>` and `<|endoftext|>`) and
//! `merges.txt` (`#version: 0.2`, then one merge per line, by rank).
//! Words are cut exactly as the tokenizer cuts them (NFC, whitespace
//! folding, lower case, CLIP's word pattern, byte-level characters), and
//! the most frequent adjacent pair is merged until the vocabulary is full
//! or no pair occurs twice; ties go to the pair that sorts first, so the
//! result is a function of the corpus alone.
//!
//! [`ClipTokenizer`]: super::tokenizer::ClipTokenizer

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::json;

use crate::error::{Error, Result};
use crate::fsutil::write_bytes_atomic;

const START: &str = "<|startoftext|>";
const END: &str = "<|endoftext|>";

/// GPT-2 / CLIP's byte-to-character table, in CLIP's vocabulary order:
/// the printable bytes first (as themselves), then the rest mapped to
/// U+0100 onwards.
pub fn byte_chars() -> Vec<(u8, char)> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut out: Vec<(u8, char)> = (0u32..256)
        .filter(|&b| printable(b))
        .map(|b| (b as u8, char::from_u32(b).expect("below 256")))
        .collect();
    let mut n = 0u32;
    for b in 0u32..256 {
        if !printable(b) {
            out.push((b as u8, char::from_u32(256 + n).expect("valid code point")));
            n += 1;
        }
    }
    out
}

/// A learned vocabulary: tokens by id, and merges by rank.
#[derive(Debug, Clone, PartialEq)]
pub struct BpeVocab {
    /// Token strings; the index is the id.
    pub tokens: Vec<String>,
    /// Merges, most frequent first.
    pub merges: Vec<(String, String)>,
}

impl BpeVocab {
    /// Id of `<|startoftext|>`.
    pub fn start_id(&self) -> usize {
        self.tokens.len() - 2
    }

    /// Id of `<|endoftext|>` (also the padding token).
    pub fn end_id(&self) -> usize {
        self.tokens.len() - 1
    }

    /// Writes `vocab.json`, `merges.txt`, `tokenizer_config.json` and
    /// `special_tokens_map.json` into `dir` (a pipeline's `tokenizer/`).
    pub fn write(&self, dir: &Path, max_len: usize) -> Result<()> {
        crate::fsutil::create_dir(dir)?;
        let vocab: serde_json::Map<String, serde_json::Value> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        let text =
            serde_json::to_string(&vocab).map_err(|e| Error::param("vocab", e.to_string()))?;
        write_bytes_atomic(&dir.join("vocab.json"), text.as_bytes())?;
        let mut merges = String::from("#version: 0.2\n");
        for (a, b) in &self.merges {
            merges.push_str(&format!("{a} {b}\n"));
        }
        write_bytes_atomic(&dir.join("merges.txt"), merges.as_bytes())?;
        let config = json!({
            "tokenizer_class": "CLIPTokenizer",
            "bos_token": START,
            "eos_token": END,
            "pad_token": END,
            "unk_token": END,
            "model_max_length": max_len,
            "do_lower_case": true,
        });
        write_bytes_atomic(
            &dir.join("tokenizer_config.json"),
            serde_json::to_string_pretty(&config)
                .map_err(|e| Error::param("tokenizer config", e.to_string()))?
                .as_bytes(),
        )?;
        let special =
            json!({"bos_token": START, "eos_token": END, "pad_token": END, "unk_token": END});
        write_bytes_atomic(
            &dir.join("special_tokens_map.json"),
            serde_json::to_string_pretty(&special)
                .map_err(|e| Error::param("special tokens", e.to_string()))?
                .as_bytes(),
        )
    }
}

/// Cuts `text` into words the way a CLIP tokenizer does before BPE, each
/// word as byte-level characters: NFC, whitespace folded, lower case, then
/// letter runs, single digits, and runs of other non-space characters
/// (CLIP's pattern; contractions stay with their letters' neighbours).
pub fn clip_words(text: &str) -> Vec<String> {
    use unicode_normalization::UnicodeNormalization;
    let table: HashMap<u8, char> = byte_chars().into_iter().collect();
    let norm: String = text.nfc().collect::<String>().to_lowercase();
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut kind = 0u8; // 0 none, 1 letters, 2 other
    let flush = |cur: &mut String, words: &mut Vec<String>| {
        if !cur.is_empty() {
            words.push(std::mem::take(cur));
        }
    };
    for c in norm.chars() {
        if c.is_whitespace() {
            flush(&mut cur, &mut words);
            kind = 0;
        } else if c.is_alphabetic() {
            if kind != 1 {
                flush(&mut cur, &mut words);
            }
            cur.push(c);
            kind = 1;
        } else if c.is_numeric() {
            flush(&mut cur, &mut words);
            words.push(c.to_string());
            kind = 0;
        } else {
            if kind != 2 {
                flush(&mut cur, &mut words);
            }
            cur.push(c);
            kind = 2;
        }
    }
    flush(&mut cur, &mut words);
    words
        .into_iter()
        .map(|w| {
            let mut buf = [0u8; 4];
            w.chars()
                .flat_map(|c| c.encode_utf8(&mut buf).as_bytes().to_vec())
                .map(|b| table[&b])
                .collect()
        })
        .collect()
}

/// Learns a vocabulary of at most `max_tokens` entries (at least the 514
/// fixed ones) from `texts`.
pub fn learn_bpe<'a>(texts: impl IntoIterator<Item = &'a str>, max_tokens: usize) -> BpeVocab {
    let chars: Vec<String> = byte_chars().iter().map(|(_, c)| c.to_string()).collect();
    let mut tokens: Vec<String> = chars.clone();
    tokens.extend(chars.iter().map(|c| format!("{c}</w>")));
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for t in texts {
        for w in clip_words(t) {
            *counts.entry(w).or_default() += 1;
        }
    }
    // each word as symbols, the last with the end-of-word suffix
    let mut words: Vec<(Vec<String>, u64)> = counts
        .into_iter()
        .map(|(w, n)| {
            let mut s: Vec<String> = w.chars().map(|c| c.to_string()).collect();
            if let Some(last) = s.last_mut() {
                last.push_str("</w>");
            }
            (s, n)
        })
        .collect();
    let mut merges = Vec::new();
    let budget = max_tokens.saturating_sub(tokens.len() + 2);
    while merges.len() < budget {
        let mut pairs: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (s, n) in &words {
            for p in s.windows(2) {
                *pairs.entry((p[0].as_str(), p[1].as_str())).or_default() += n;
            }
        }
        // highest count; among equals the first in sort order
        let Some(((a, b), n)) =
            pairs
                .into_iter()
                .fold(None::<((&str, &str), u64)>, |best, (p, n)| match best {
                    Some((_, bn)) if bn >= n => best,
                    _ => Some((p, n)),
                })
        else {
            break;
        };
        if n < 2 {
            break;
        }
        let (a, b) = (a.to_string(), b.to_string());
        let joined = format!("{a}{b}");
        for (s, _) in &mut words {
            let mut i = 0;
            while i + 1 < s.len() {
                if s[i] == a && s[i + 1] == b {
                    s[i] = joined.clone();
                    s.remove(i + 1);
                }
                i += 1;
            }
        }
        tokens.push(joined);
        merges.push((a, b));
    }
    tokens.push(START.into());
    tokens.push(END.into());
    BpeVocab { tokens, merges }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::tokenizer::ClipTokenizer;

    #[test]
    fn byte_table_matches_clip() {
        let t = byte_chars();
        assert_eq!(t.len(), 256);
        assert_eq!(t[0], (b'!', '!'));
        assert_eq!(t[93], (b'~', '~'));
        // the first non-printable byte (0) maps to U+0100, space (32) to U+0120
        assert!(t.contains(&(0, '\u{100}')));
        assert!(t.contains(&(b' ', '\u{120}')));
        let mut seen: Vec<char> = t.iter().map(|p| p.1).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
    }

    #[test]
    fn words_follow_the_clip_pattern() {
        assert_eq!(
            clip_words("Kalyani  raga, Adi-tala 146 Hz"),
            ["kalyani", "raga", ",", "adi", "-", "tala", "1", "4", "6", "hz"]
        );
    }

    #[test]
    fn frequent_words_become_single_tokens_and_load_in_the_tokenizer() {
        let corpus: Vec<String> = (0..20)
            .map(|i| format!("kriti in raga Kalyani, adi tala {i}"))
            .chain((0..20).map(|_| "alapana in raga Todi on violin".to_string()))
            .collect();
        let v = learn_bpe(corpus.iter().map(String::as_str), 600);
        assert!(v.tokens.len() <= 600);
        assert!(v.tokens.contains(&"kalyani</w>".to_string()));
        assert!(v.tokens.contains(&"raga</w>".to_string()));
        assert_eq!(v.tokens[v.start_id()], START);
        // deterministic
        assert_eq!(v, learn_bpe(corpus.iter().map(String::as_str), 600));

        let dir = tempfile::tempdir().unwrap();
        v.write(dir.path(), 77).unwrap();
        let tok = ClipTokenizer::load(dir.path()).unwrap();
        let ids = tok.encode("Kalyani raga").unwrap().ids;
        let id = |t: &str| v.tokens.iter().position(|x| x == t).unwrap() as u32;
        assert_eq!(
            &ids[..4],
            &[id(START), id("kalyani</w>"), id("raga</w>"), id(END)]
        );
        assert_eq!(ids.len(), 77);
        // a word never seen still tokenises, as byte characters
        let unseen = tok.encode("zzq").unwrap().ids;
        assert_eq!(&unseen[1..4], &[id("z"), id("z"), id("q</w>")]);
    }
}
