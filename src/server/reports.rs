//! The `compare` reports under a folder: every `report.html` a few levels
//! down, each known by a hash of its path, never opened by a path from a
//! request.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Levels below the folder searched.
const MAX_DEPTH: usize = 6;
/// Entries read at most, so a huge tree cannot stall the listing.
const MAX_ENTRIES: usize = 50_000;
/// Folders never searched: build outputs and dependencies.
const SKIPPED: [&str; 3] = ["target", "node_modules", "__pycache__"];

/// A report found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Its id: a hash of its path inside the folder.
    pub id: String,
    /// Its path inside the folder.
    pub path: String,
    /// When it was written, seconds since 1970.
    pub modified_unix_s: u64,
    /// The file.
    #[serde(skip)]
    pub file: PathBuf,
}

/// Every `report.html` under `root`, newest first.
pub fn list(root: &Path) -> Vec<Report> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    let mut seen = 0;
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                break;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                let hidden = name.starts_with('.') || SKIPPED.contains(&name.as_str());
                if depth < MAX_DEPTH && !hidden {
                    stack.push((entry.path(), depth + 1));
                }
            } else if kind.is_file() && name == "report.html" {
                let file = entry.path();
                let rel = file.strip_prefix(root).unwrap_or(&file).to_string_lossy();
                let modified_unix_s = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                found.push(Report {
                    id: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(rel.as_bytes())),
                    path: rel.into_owned(),
                    modified_unix_s,
                    file,
                });
            }
        }
    }
    found.sort_by(|a, b| {
        b.modified_unix_s
            .cmp(&a.modified_unix_s)
            .then(a.path.cmp(&b.path))
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_found_below_the_folder_and_not_in_build_outputs() {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["a", "b/c", "target/x", ".hidden"] {
            std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
            std::fs::write(tmp.path().join(dir).join("report.html"), "<html>").unwrap();
        }
        std::fs::write(tmp.path().join("a/other.html"), "<html>").unwrap();
        let mut paths: Vec<String> = list(tmp.path()).into_iter().map(|r| r.path).collect();
        paths.sort();
        assert_eq!(paths, ["a/report.html", "b/c/report.html"]);
        let ids: Vec<String> = list(tmp.path()).into_iter().map(|r| r.id).collect();
        assert_ne!(ids[0], ids[1]);
    }
}
