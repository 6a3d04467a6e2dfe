//! Uploaded files: recognised by their first bytes (never by the name they
//! came with), kept under an id the server makes, and found again only by
//! that id.

use std::path::{Path, PathBuf};

use rand::Rng;

use crate::error::{Error, Result};

/// What an upload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// The extension it is stored with (the decoders' hint).
    pub ext: &'static str,
    /// `audio`, `image` or `video`.
    pub kind: &'static str,
}

/// Bytes needed to recognise a format.
pub const SNIFF_BYTES: usize = 64;

/// The format of a file starting with `head` (at least [`SNIFF_BYTES`]
/// bytes when the file is that long); `None` for anything else.
pub fn sniff(head: &[u8]) -> Option<Format> {
    let audio = |ext| Some(Format { ext, kind: "audio" });
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"\x89PNG\r\n\x1a\n") {
        return Some(Format {
            ext: "png",
            kind: "image",
        });
    }
    if (at(0, b"RIFF") || at(0, b"RF64")) && at(8, b"WAVE") {
        return audio("wav");
    }
    if at(0, b"fLaC") {
        return audio("flac");
    }
    if at(0, b"OggS") {
        let opus = head.windows(8).any(|w| w == b"OpusHead");
        return audio(if opus { "opus" } else { "ogg" });
    }
    if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        return audio("aiff");
    }
    let video = |ext| Some(Format { ext, kind: "video" });
    if at(4, b"ftyp") {
        // the major brand: iTunes audio, QuickTime, or any other ISO file
        return match head.get(8..12) {
            Some(b"M4A " | b"M4B " | b"M4P ") => audio("m4a"),
            Some(b"qt  ") => video("mov"),
            _ => video("mp4"),
        };
    }
    if at(0, b"\x1a\x45\xdf\xa3") {
        // EBML: the DocType near the start tells WebM from Matroska
        let webm = head.windows(4).any(|w| w == b"webm");
        return video(if webm { "webm" } else { "mkv" });
    }
    if at(0, b"ID3") {
        return audio("mp3");
    }
    // an MPEG audio frame: 11 sync bits, then a layer that is not 00
    // (00 is AAC's ADTS, which symphonia reads only inside MP4)
    match head {
        [0xff, b, ..] if b & 0xe0 == 0xe0 && b & 0x06 != 0 => audio("mp3"),
        _ => None,
    }
}

/// Every extension an upload is stored with.
const EXTENSIONS: [&str; 12] = [
    "png", "wav", "flac", "ogg", "opus", "aiff", "m4a", "mp3", "mp4", "mov", "mkv", "webm",
];

/// The upload folder.
#[derive(Debug, Clone)]
pub struct Uploads {
    dir: PathBuf,
}

impl Uploads {
    /// Uploads kept in `dir` (created when needed).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new id for a file of `format`: 16 random hex digits and the
    /// format's extension.
    pub fn new_id(format: Format) -> String {
        let n: u64 = rand::rng().random();
        format!("{n:016x}.{}", format.ext)
    }

    /// Where an upload with a well-formed `id` lives (it may not exist).
    pub fn file(&self, id: &str) -> Option<PathBuf> {
        let (hex, ext) = id.split_once('.')?;
        let well_formed = hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            && EXTENSIONS.contains(&ext);
        well_formed.then(|| self.dir.join(id))
    }

    /// The file of the upload `id`, named in the job body's `field`.
    pub fn path(&self, id: &str, field: &'static str) -> Result<PathBuf> {
        match self.file(id) {
            Some(p) if p.is_file() => Ok(p),
            _ => Err(Error::param(
                field,
                format!("`{id}` is not an upload id (POST /api/uploads answers with one)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_known_by_content() {
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.resize(64, 0);
        assert_eq!(sniff(&wav).unwrap().ext, "wav");
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").unwrap().kind, "image");
        assert_eq!(sniff(b"OggS\0\x02........OpusHead").unwrap().ext, "opus");
        assert_eq!(sniff(b"\0\0\0\x20ftypM4A ").unwrap().ext, "m4a");
        assert_eq!(sniff(b"\0\0\0\x20ftypisom").unwrap().kind, "video");
        assert_eq!(sniff(b"\0\0\0\x14ftypqt  ").unwrap().ext, "mov");
        assert_eq!(
            sniff(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm")
                .unwrap()
                .ext,
            "webm"
        );
        assert_eq!(
            sniff(b"\x1a\x45\xdf\xa3\xa3\x42\x82\x88matroska")
                .unwrap()
                .ext,
            "mkv"
        );
        assert_eq!(sniff(&[0xff, 0xfb, 0x90, 0x64]).unwrap().ext, "mp3");
        assert_eq!(sniff(&[0xff, 0xf1, 0x50, 0x80]), None, "ADTS");
        assert_eq!(sniff(b"<html><script>"), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0AVI "), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn ids_are_checked_before_any_path_is_made() {
        let u = Uploads::new("/srv/up".into());
        assert!(u.file("0123456789abcdef.wav").is_some());
        for bad in [
            "../../etc/passwd",
            "0123456789abcdef.sh",
            "0123456789ABCDEF.wav",
            "0123456789abcdef",
            "0123456789abcde/.wav",
            "",
        ] {
            assert_eq!(u.file(bad), None, "{bad}");
        }
        let e = u.path("0123456789abcdef.wav", "input").unwrap_err();
        assert!(e.to_string().contains("input"), "{e}");
    }
}
