//! The CLIP tokenizer of a checkpoint's `tokenizer/` folder.
//!
//! Reads `tokenizer.json` when present, else the 2022 layout `vocab.json` +
//! `merges.txt`, for which the same pipeline as transformers'
//! `CLIPTokenizerFast` is assembled (NFC, whitespace folding, lower case,
//! CLIP's word regex, byte-level BPE with the `</w>` end-of-word suffix).
//! Prompts are wrapped in start / end tokens and padded to the context
//! length; longer prompts are truncated and reported.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};

const START: &str = "<|startoftext|>";
const END: &str = "<|endoftext|>";
/// CLIP's word-splitting pattern (transformers' CLIP converter).
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// A CLIP BPE tokenizer with its special tokens and context length.
pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    start_id: u32,
    end_id: u32,
    pad_id: u32,
    max_len: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("dir", &self.dir)
            .field("max_len", &self.max_len)
            .finish()
    }
}

/// Token ids of one prompt, and whether it had to be cut.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    /// Exactly the context length: start, tokens, end, padding.
    pub ids: Vec<u32>,
    /// Tokens dropped from the end of an over-long prompt.
    pub truncated: usize,
}

fn bad(file: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

impl ClipTokenizer {
    /// Loads the tokenizer of `dir` (a checkpoint's `tokenizer/` folder).
    pub fn load(dir: &Path) -> Result<Self> {
        let json_file = dir.join("tokenizer.json");
        let inner = if json_file.exists() {
            tokenizers::Tokenizer::from_file(&json_file)
                .map_err(|e| bad(&json_file, format!("cannot read the tokenizer: {e}")))?
        } else {
            let vocab_file = dir.join("vocab.json");
            let merges_file = dir.join("merges.txt");
            for f in [&vocab_file, &merges_file] {
                if !f.exists() {
                    return Err(bad(
                        f,
                        "missing: the tokenizer folder needs tokenizer.json, or vocab.json and merges.txt",
                    ));
                }
            }
            let spec = bpe_spec(&vocab_file, &merges_file)?;
            spec.parse::<tokenizers::Tokenizer>()
                .map_err(|e| bad(&vocab_file, format!("cannot build the tokenizer: {e}")))?
        };
        let cfg_file = dir.join("tokenizer_config.json");
        let cfg: Value = if cfg_file.exists() {
            let text = std::fs::read_to_string(&cfg_file).map_err(|e| Error::io(&cfg_file, e))?;
            serde_json::from_str(&text).map_err(|e| bad(&cfg_file, e.to_string()))?
        } else {
            Value::Null
        };
        let token_name = |key: &str, default: &str| -> String {
            match &cfg[key] {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("content")
                    .and_then(Value::as_str)
                    .unwrap_or(default)
                    .to_string(),
                _ => default.to_string(),
            }
        };
        let id = |name: &str| {
            inner
                .token_to_id(name)
                .ok_or_else(|| bad(dir, format!("the vocabulary has no `{name}` token")))
        };
        let start_id = id(&token_name("bos_token", START))?;
        let end_id = id(&token_name("eos_token", END))?;
        let pad_id = id(&token_name("pad_token", END))?;
        let max_len = cfg["model_max_length"]
            .as_u64()
            .filter(|&n| (2..=4096).contains(&n))
            .unwrap_or(77) as usize;
        Ok(Self {
            inner,
            start_id,
            end_id,
            pad_id,
            max_len,
            dir: dir.to_path_buf(),
        })
    }

    /// The context length (77 for CLIP).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokenises `prompt` into exactly [`Self::max_len`] ids.
    pub fn encode(&self, prompt: &str) -> Result<Tokens> {
        let enc = self
            .inner
            .encode(prompt, false)
            .map_err(|e| bad(&self.dir, format!("cannot tokenise {prompt:?}: {e}")))?;
        let body = enc.get_ids();
        let room = self.max_len - 2;
        let kept = body.len().min(room);
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(self.start_id);
        ids.extend_from_slice(&body[..kept]);
        ids.push(self.end_id);
        ids.resize(self.max_len, self.pad_id);
        Ok(Tokens {
            ids,
            truncated: body.len() - kept,
        })
    }
}

/// A tokenizer.json equivalent to transformers' conversion of a slow CLIP
/// tokenizer from `vocab.json` + `merges.txt`.
fn bpe_spec(vocab_file: &Path, merges_file: &Path) -> Result<String> {
    let vocab_text = std::fs::read_to_string(vocab_file).map_err(|e| Error::io(vocab_file, e))?;
    let vocab: serde_json::Map<String, Value> = serde_json::from_str(&vocab_text)
        .map_err(|e| bad(vocab_file, format!("not a JSON token -> id map: {e}")))?;
    let merges_text =
        std::fs::read_to_string(merges_file).map_err(|e| Error::io(merges_file, e))?;
    let mut merges = Vec::new();
    for (i, line) in merges_text.lines().enumerate() {
        if line.starts_with("#version") || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => merges.push(json!([a, b])),
            _ => {
                return Err(bad(
                    merges_file,
                    format!("line {}: expected two tokens separated by a space", i + 1),
                ))
            }
        }
    }
    let id = |t: &str| vocab.get(t).and_then(Value::as_u64);
    let (Some(start), Some(end)) = (id(START), id(END)) else {
        return Err(bad(
            vocab_file,
            format!("the vocabulary lacks {START} or {END}"),
        ));
    };
    let special = |content: &str, id: u64| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(START, start), special(END, end)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CLIP_PATTERN}, "behavior": "Removed",
             "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
             "use_regex": true}]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": END,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "</w>",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    });
    Ok(spec.to_string())
}
