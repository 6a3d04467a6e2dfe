//! File helpers shared by every writer: outputs go to a temporary name in
//! the destination folder and are renamed into place, so an interrupted job
//! never leaves a half-written file under the final name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes a file atomically: `write` fills a buffered temporary file next to
/// `path`, which is then renamed to `path`. Missing parent folders are
/// created. On error the temporary is removed.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        w.flush().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The temporary name used for `path` while it is being written:
/// `.NAME.PID.tmp` in the same folder.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// Writes `value` as pretty JSON to `path` atomically.
pub fn write_json_atomic(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::InvalidData {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    write_bytes_atomic(path, text.as_bytes())
}

/// Maps an I/O error on `path` to [`Error::Io`] (for `map_err`).
pub fn io_at(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// A 64-bit content hash (xxh3, hex) of `files` in order: each file's
/// length and bytes. It identifies a checkpoint in sidecars and reports.
pub fn content_hash(files: &[PathBuf]) -> Result<String> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for f in files {
        let bytes = read_bytes(f)?;
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(format!("xxh3:{:016x}", hasher.digest()))
}

/// Refuses to write `output` when it is one of `inputs` (the same file by
/// any path): a run never destroys what it reads.
pub fn refuse_overwriting(output: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(out) = output.canonicalize() else {
        return Ok(()); // not there yet, so no input
    };
    for input in inputs {
        if input.canonicalize().is_ok_and(|i| i == out) {
            return Err(Error::param(
                "output",
                format!(
                    "{} is the input {}; choose another output",
                    output.display(),
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Creates the folder `dir` and its parents. A file already at that path
/// is named as such, rather than the operating system's bare "File exists".
pub fn create_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file is there, and an output folder is needed; choose another path",
            ),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// Reads a whole file, naming it in the error.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads and parses a JSON config file.
pub fn read_json<T: for<'de> serde::Deserialize<'de>>(file: &Path) -> Result<T> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    serde_json::from_str(&text).map_err(|e| Error::invalid_data(file, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        let r = write_atomic(&p, |_| Err(Error::param("x", "boom")));
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_atomic(&p, |w| w.write_all(b"ok").map_err(|e| Error::io("a", e))).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"ok");
    }
}
