//! Recorded percussion strokes in place of the synthetic ones: a folder
//! with one sub-folder of audio files per stroke name, e.g. the CompMusic
//! Mridangam Stroke dataset's `train/<stroke>/` layout.
//!
//! The renderer places three kinds of stroke (see `percussion`); each
//! folder name is read as one of them:
//!
//! | kind | folder names |
//! |---|---|
//! | thom (bass, anga starts) | `thom`, `tham`, `bheem`, `dheem` |
//! | nam (ringing right head, other beats) | `nam`, `num`, `dhin` |
//! | ta (short damped, half beats) | `ta`, `tha`, `thi`, `cha`, `ki` |
//!
//! Every kind needs at least one readable file. Each stroke is read as
//! mono at the render rate, cut to its first second and scaled to a peak
//! of 1; at most [`MAX_PER_KIND`] files per kind are kept (the first by
//! name), and a clip draws its strokes among them with its own seed. The
//! strokes are played at their recorded pitch: a kit tuned to another
//! tonic than the clip's sounds so.

use std::path::{Path, PathBuf};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::audio::{read_audio_as, ChannelLayout};
use crate::error::{Error, Result};
use serde::Serialize;

/// Files kept per stroke kind.
pub const MAX_PER_KIND: usize = 100;

/// A stroke kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stroke {
    /// Left-head bass with the right head: first beat of an anga.
    Thom,
    /// Ringing right-head stroke on the tonic: other beats.
    Nam,
    /// Short damped stroke: half beats.
    Ta,
}

/// Folder names read as each kind, in [`Stroke`] order (thom, nam, ta).
pub const KIND_FOLDERS: [(Stroke, &[&str]); 3] = [
    (Stroke::Thom, &["thom", "tham", "bheem", "dheem"]),
    (Stroke::Nam, &["nam", "num", "dhin"]),
    (Stroke::Ta, &["ta", "tha", "thi", "cha", "ki"]),
];

fn kind_index(stroke: Stroke) -> usize {
    match stroke {
        Stroke::Thom => 0,
        Stroke::Nam => 1,
        Stroke::Ta => 2,
    }
}

/// Loaded strokes, by kind.
#[derive(Clone)]
pub struct StrokeKit {
    /// The folder they came from.
    pub dir: PathBuf,
    /// Sample rate of the strokes, Hz.
    pub rate_hz: u32,
    strokes: [Vec<Vec<f32>>; 3],
}

impl std::fmt::Debug for StrokeKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrokeKit")
            .field("dir", &self.dir)
            .field("rate_hz", &self.rate_hz)
            .field("strokes", &self.counts())
            .finish()
    }
}

impl PartialEq for StrokeKit {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir && self.rate_hz == other.rate_hz && self.counts() == other.counts()
    }
}

impl StrokeKit {
    /// Loads the kit in `dir` at `rate_hz`.
    pub fn load(dir: &Path, rate_hz: u32) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut files: [Vec<PathBuf>; 3] = Default::default();
        let mut folders: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            if entry.path().is_dir() {
                folders.push(entry.path());
            }
        }
        folders.sort();
        for folder in folders {
            let name = folder
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            let Some((kind, _)) = KIND_FOLDERS
                .iter()
                .find(|(_, names)| names.contains(&name.as_str()))
            else {
                return Err(Error::invalid_data(
                    &folder,
                    format!(
                        "`{name}` is not a stroke name this kit reads ({})",
                        KIND_FOLDERS
                            .iter()
                            .flat_map(|(_, n)| n.iter())
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            let mut inside: Vec<PathBuf> = std::fs::read_dir(&folder)
                .map_err(|e| Error::io(&folder, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_audio(p))
                .collect();
            inside.sort();
            files[kind_index(*kind)].extend(inside);
        }
        let mut strokes: [Vec<Vec<f32>>; 3] = Default::default();
        for (k, list) in files.iter().enumerate() {
            for path in list.iter().take(MAX_PER_KIND) {
                strokes[k].push(read_stroke(path, rate_hz)?);
            }
            if strokes[k].is_empty() {
                let (_, names) = KIND_FOLDERS[k];
                return Err(Error::invalid_data(
                    dir,
                    format!(
                        "no audio files for the {:?} stroke (a sub-folder named one of: {})",
                        KIND_FOLDERS[k].0,
                        names.join(", ")
                    ),
                ));
            }
        }
        Ok(StrokeKit {
            dir: dir.to_path_buf(),
            rate_hz,
            strokes,
        })
    }

    /// Strokes loaded per kind (thom, nam, ta).
    pub fn counts(&self) -> [usize; 3] {
        [
            self.strokes[0].len(),
            self.strokes[1].len(),
            self.strokes[2].len(),
        ]
    }

    /// One recorded stroke of `kind`, drawn with `rng`.
    pub fn draw(&self, kind: Stroke, rng: &mut ChaCha8Rng) -> &[f32] {
        let list = &self.strokes[kind_index(kind)];
        &list[rng.random_range(0..list.len())]
    }
}

fn is_audio(path: &Path) -> bool {
    matches!(
        path.extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .as_deref(),
        Some("wav" | "flac" | "mp3" | "ogg")
    )
}

/// The first second of `path`, mono at `rate_hz`, peak 1.
fn read_stroke(path: &Path, rate_hz: u32) -> Result<Vec<f32>> {
    let audio = read_audio_as(path, rate_hz, ChannelLayout::Mono)?;
    let mut s = audio.channels.into_iter().next().unwrap_or_default();
    s.truncate(rate_hz as usize);
    let peak = s.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if !(peak.is_finite() && peak > 1e-6) {
        return Err(Error::invalid_data(
            path,
            "silent or not finite: not a stroke",
        ));
    }
    s.iter_mut().for_each(|v| *v /= peak);
    Ok(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audio::{write_wav, Audio, WavFormat};
    use rand::SeedableRng;

    /// A decaying sine of `hz` as a stroke file.
    pub(crate) fn write_stroke(path: &Path, hz: f32, rate: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let s: Vec<f32> = (0..rate / 4)
            .map(|i| {
                let t = i as f32 / rate as f32;
                0.5 * (-t / 0.05).exp() * (std::f32::consts::TAU * hz * t).sin()
            })
            .collect();
        write_wav(
            path,
            &Audio::new(vec![s], rate, "stroke").unwrap(),
            WavFormat::Pcm16,
        )
        .unwrap();
    }

    #[test]
    fn loads_by_folder_name_and_refuses_what_it_cannot_read() {
        let d = tempfile::tempdir().unwrap();
        write_stroke(&d.path().join("tham/a.wav"), 100.0, 22050);
        write_stroke(&d.path().join("num/a.wav"), 300.0, 22050);
        write_stroke(&d.path().join("num/b.wav"), 310.0, 22050);
        std::fs::write(d.path().join("num/notes.txt"), "not audio").unwrap();
        // a missing kind is named
        let e = StrokeKit::load(d.path(), 44100).unwrap_err().to_string();
        assert!(e.contains("Ta") && e.contains("tha"), "{e}");
        write_stroke(&d.path().join("ta/a.wav"), 900.0, 22050);
        let kit = StrokeKit::load(d.path(), 44100).unwrap();
        assert_eq!(kit.counts(), [1, 2, 1]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let s = kit.draw(Stroke::Thom, &mut rng);
        assert!(
            s.len().abs_diff(44100 / 4) <= 2,
            "resampled to the render rate: {}",
            s.len()
        );
        assert!((s.iter().fold(0.0f32, |m, v| m.max(v.abs())) - 1.0).abs() < 1e-6);
        // an unknown folder and a broken file are named
        std::fs::create_dir_all(d.path().join("tabla")).unwrap();
        let e = StrokeKit::load(d.path(), 44100).unwrap_err().to_string();
        assert!(e.contains("tabla"), "{e}");
        std::fs::remove_dir(d.path().join("tabla")).unwrap();
        std::fs::write(d.path().join("ta/broken.wav"), b"RIFF....").unwrap();
        let e = StrokeKit::load(d.path(), 44100).unwrap_err().to_string();
        assert!(e.contains("broken.wav"), "{e}");
        // a missing folder
        assert!(StrokeKit::load(&d.path().join("none"), 44100).is_err());
    }
}
