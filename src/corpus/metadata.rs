//! Recording metadata for `prepare`: one row per recording or segment of a
//! recording, from CSV (with a header) or JSONL.
//!
//! Columns: `file` (relative to the audio folder, required), `raga`
//! (required), `tala`, `composer`, `artist`, `segment`, `instrument`,
//! `start_s`, `end_s`. Other columns are ignored.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::captions::{CaptionFields, Vocabulary};
use crate::error::{Error, Result};

/// One metadata row as written by the user.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MetadataRow {
    /// Audio file, relative to the audio folder.
    #[serde(default)]
    pub file: String,
    /// Raga name (any known spelling).
    #[serde(default)]
    pub raga: String,
    /// Tala name.
    #[serde(default)]
    pub tala: Option<String>,
    /// Composer (free text; known names are normalised).
    #[serde(default)]
    pub composer: Option<String>,
    /// Artist (free text).
    #[serde(default)]
    pub artist: Option<String>,
    /// Segment type.
    #[serde(default)]
    pub segment: Option<String>,
    /// Lead instrument.
    #[serde(default)]
    pub instrument: Option<String>,
    /// Segment start within the file, seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub start_s: Option<f64>,
    /// Segment end within the file, seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub end_s: Option<f64>,
}

/// Accepts a number, a numeric string, or an empty string (none).
fn lenient_f64<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        N(f64),
        S(String),
    }
    match Option::<V>::deserialize(d)? {
        None => Ok(None),
        Some(V::N(x)) => Ok(Some(x)),
        Some(V::S(s)) if s.trim().is_empty() => Ok(None),
        Some(V::S(s)) => s.trim().parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// A row that could not be read, with its 1-based line and the reason.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BadRow {
    /// Line in the metadata file (1-based, header included).
    pub line: usize,
    /// The row's `file` value, if it could be read.
    pub file: String,
    /// Why the row was skipped.
    pub reason: String,
}

/// Rows read from a metadata file, each with its 1-based line.
pub type NumberedRows = Vec<(usize, MetadataRow)>;

/// Reads rows from a `.csv` (header required) or `.jsonl` file. Rows that
/// cannot be parsed come back as [`BadRow`]s; an unreadable file is an error.
pub fn read_metadata(path: &Path) -> Result<(NumberedRows, Vec<BadRow>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_metadata(&text, path)
}

/// [`read_metadata`] on text already in memory; `path` gives the format
/// (by its extension) and names the file in errors.
pub fn parse_metadata(text: &str, path: &Path) -> Result<(NumberedRows, Vec<BadRow>)> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let clean = |r: MetadataRow| MetadataRow {
        file: r.file.trim().to_string(),
        raga: r.raga.trim().to_string(),
        ..r
    };
    match ext.as_str() {
        "jsonl" | "json" | "ndjson" => {
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<MetadataRow>(line) {
                    Ok(r) => rows.push((i + 1, clean(r))),
                    Err(e) => bad.push(BadRow {
                        line: i + 1,
                        file: String::new(),
                        reason: format!("not a JSON object of metadata fields ({e})"),
                    }),
                }
            }
        }
        "csv" | "tsv" => {
            let delimiter = if ext == "tsv" { b'\t' } else { b',' };
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .flexible(true)
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            let headers = reader.headers().map_err(|e| Error::InvalidData {
                file: path.display().to_string(),
                reason: format!("CSV header: {e}"),
            })?;
            if !headers.iter().any(|h| h == "file") || !headers.iter().any(|h| h == "raga") {
                return Err(Error::InvalidData {
                    file: path.display().to_string(),
                    reason: "the CSV header must name the columns `file` and `raga`".into(),
                });
            }
            for (i, rec) in reader.deserialize::<MetadataRow>().enumerate() {
                match rec {
                    Ok(r) => rows.push((i + 2, clean(r))),
                    Err(e) => bad.push(BadRow {
                        line: i + 2,
                        file: String::new(),
                        reason: format!("unreadable CSV row ({e})"),
                    }),
                }
            }
        }
        _ => {
            return Err(Error::InvalidData {
                file: path.display().to_string(),
                reason: "metadata must be .csv, .tsv or .jsonl".into(),
            })
        }
    }
    Ok((rows, bad))
}

/// Checks one row against the vocabulary and the audio folder: the raga
/// (and tala, segment) must be known, times must make sense, and the file
/// must exist inside `audio_dir` (or anywhere, with `allow_outside`).
/// Returns the audio path and the caption fields, or the reason in words.
pub(crate) fn validate_row(
    vocab: &Vocabulary,
    audio_dir: &Path,
    row: &MetadataRow,
    allow_outside: bool,
) -> std::result::Result<(PathBuf, CaptionFields), String> {
    if row.file.is_empty() {
        return Err("no `file`".into());
    }
    let leaves = Path::new(&row.file)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if leaves && !allow_outside {
        return Err(format!(
            "`file` {} is outside --audio-dir (absolute, or climbing with ..); \
             pass --allow-outside to read it",
            row.file
        ));
    }
    if row.raga.is_empty() {
        return Err("no `raga`".into());
    }
    let raga = vocab.raga(&row.raga).map_err(|e| e.to_string())?;
    let tala = match row.tala.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(t) => Some(vocab.tala(t).map_err(|e| e.to_string())?.name.clone()),
        None => None,
    };
    let segment = match row.segment.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(s) => Some(vocab.segment(s).map_err(|e| e.to_string())?.name.clone()),
        None => None,
    };
    let known_or_given = |v: &Option<String>, find: &dyn Fn(&str) -> Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| find(s).unwrap_or_else(|| s.to_string()))
    };
    let composer = known_or_given(&row.composer, &|s| {
        vocab.composer(s).ok().map(|c| c.name.clone())
    });
    let instrument = known_or_given(&row.instrument, &|s| {
        vocab.instrument(s).ok().map(|c| c.name.clone())
    });
    let artist = known_or_given(&row.artist, &|_| None);
    for (name, v) in [("start_s", row.start_s), ("end_s", row.end_s)] {
        if let Some(x) = v {
            if !(x.is_finite() && x >= 0.0) {
                return Err(format!("`{name}` {x} is not a time in seconds"));
            }
        }
    }
    if let (Some(a), Some(b)) = (row.start_s, row.end_s) {
        if a >= b {
            return Err(format!("`start_s` {a} is not before `end_s` {b}"));
        }
    }
    let path = audio_dir.join(&row.file);
    if !path.is_file() {
        return Err(format!("audio file {} not found", path.display()));
    }
    Ok((
        path,
        CaptionFields {
            raga: Some(raga.name.clone()),
            tala,
            composer,
            instrument,
            artist,
            segment,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_jsonl_read_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("m.csv");
        std::fs::write(
            &csv,
            "file,raga,tala,composer,segment,start_s,end_s,extra\na.wav,Todi,Adi,Tyagaraja,kriti,1.5,,x\nb.mp3,Kalyani,,,alapana,,,\nc.wav,Kapi,,,,abc,,\n",
        )
        .unwrap();
        let (rows, bad) = read_metadata(&csv).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.start_s, Some(1.5));
        assert_eq!(rows[0].1.end_s, None);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 4);
        let jsonl = dir.path().join("m.jsonl");
        std::fs::write(
            &jsonl,
            "{\"file\": \"a.wav\", \"raga\": \"Todi\", \"start_s\": 1.5}\nnot json\n",
        )
        .unwrap();
        let (rows, bad) = read_metadata(&jsonl).unwrap();
        assert_eq!(rows[0].1.raga, "Todi");
        assert_eq!(bad[0].line, 2);
        let no_header = dir.path().join("n.csv");
        std::fs::write(&no_header, "a.wav,Todi\n").unwrap();
        assert!(read_metadata(&no_header)
            .unwrap_err()
            .to_string()
            .contains("`file` and `raga`"));
    }
}

#[cfg(test)]
mod validate_tests {
    use super::*;

    fn row(file: &str) -> MetadataRow {
        MetadataRow {
            file: file.into(),
            raga: "Kalyani".into(),
            ..Default::default()
        }
    }

    #[test]
    fn files_outside_the_audio_folder_need_allow_outside() {
        let dir = tempfile::tempdir().unwrap();
        let audio = dir.path().join("audio");
        std::fs::create_dir(&audio).unwrap();
        std::fs::write(dir.path().join("out.wav"), b"x").unwrap();
        std::fs::write(audio.join("in.wav"), b"x").unwrap();
        let vocab = Vocabulary::builtin();
        let abs = dir.path().join("out.wav").display().to_string();
        for file in ["../out.wav", abs.as_str()] {
            let e = validate_row(vocab, &audio, &row(file), false).unwrap_err();
            assert!(e.contains("outside --audio-dir") && e.contains(file), "{e}");
            let (path, _) = validate_row(vocab, &audio, &row(file), true).unwrap();
            assert!(path.ends_with("out.wav"));
        }
        let (path, fields) = validate_row(vocab, &audio, &row("./in.wav"), false).unwrap();
        assert!(path.ends_with("in.wav"));
        assert_eq!(fields.raga.as_deref(), Some("Kalyani"));
    }
}
