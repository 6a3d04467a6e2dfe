#![no_main]
//! Text a user writes for ragafusion. The first byte picks the kind: a
//! `compare` experiment (TOML, validated and resolved against the
//! vocabulary), dataset metadata as CSV or JSON lines, or a caption (tonic
//! phrases, raga lookup by any spelling, the output file-name slug).

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ragafusion::captions::shruti::split_shruti;
use ragafusion::captions::Vocabulary;
use ragafusion::compare::experiment::{resolve, Experiment};
use ragafusion::corpus::metadata::parse_metadata;
use ragafusion::engine::outputs::slug;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let vocab = Vocabulary::builtin();
    match pick % 4 {
        0 => {
            if let Ok(e) = toml::from_str::<Experiment>(text) {
                let (file, base) = (Path::new("/x/exp.toml"), Path::new("/x"));
                let _ = resolve(e, file, base, Path::new("/x/out"), vocab);
            }
        }
        1 => {
            let _ = parse_metadata(text, Path::new("metadata.csv"));
        }
        2 => {
            let _ = parse_metadata(text, Path::new("metadata.jsonl"));
        }
        _ => {
            let _ = split_shruti(text);
            let _ = vocab.raga(text);
            let _ = slug(text);
        }
    }
});
