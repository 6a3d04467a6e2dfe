//! Recording metadata for `prepare`: one row per recording or segment of a
//! recording, from CSV (with a header) or JSONL.
//!
//! Columns: `file` (relative to the audio folder, required), `raga`
//! (required), `tala`, `composer`, `artist`, `segment`, `instrument`,
//! `start_s`, `end_s`. Other columns are ignored.

use std::path::Path;

use serde::Deserialize;

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
