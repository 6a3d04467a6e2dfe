//! File-level conversions and folder batches: the edge between paths and
//! the spectrogram codec. Each output is written atomically; a batch skips
//! outputs that already exist (so a rerun resumes) and reports every file
//! it could not convert instead of stopping.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::audio::{read_audio, read_audio_as, write_wav, Audio, ChannelLayout, WavFormat};
use crate::error::{Error, Result};
use crate::fsutil::refuse_overwriting;
use crate::limits;
use crate::progress::{NoProgress, Progress};
use crate::spectrogram::image::{read_png, write_png};
use crate::spectrogram::{InversionSettings, SpectrogramConverter, SpectrogramParams};

/// Audio file extensions a folder batch or a labelled folder picks up.
pub const AUDIO_EXTENSIONS: [&str; 10] = [
    "wav", "mp3", "flac", "ogg", "oga", "opus", "m4a", "mp4", "aif", "aiff",
];

/// What an audio -> image conversion produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    /// Image width in pixels (STFT frames).
    pub width: usize,
    /// Image height in pixels (mel bins).
    pub height: usize,
    /// Duration of the converted audio in seconds.
    pub duration_s: f64,
    /// Largest mel amplitude (EXIF tag 11080).
    pub max_value: f32,
}

/// Converts an audio file to a spectrogram PNG with `params` (resampling and
/// mixing channels as needed).
pub fn audio_file_to_image(
    input: &Path,
    output: &Path,
    params: &SpectrogramParams,
) -> Result<ImageSummary> {
    refuse_overwriting(output, &[input])?;
    let converter = SpectrogramConverter::new(params.clone())?;
    audio_file_to_image_with(&converter, input, output)
}

fn audio_file_to_image_with(
    converter: &SpectrogramConverter,
    input: &Path,
    output: &Path,
) -> Result<ImageSummary> {
    let params = converter.params();
    let layout = if params.stereo {
        ChannelLayout::Stereo
    } else {
        ChannelLayout::Mono
    };
    let audio = read_audio_as(input, params.sample_rate_hz, layout)?;
    let (image, max_value) = converter.image_from_audio(&audio)?;
    write_png(output, &image, params, max_value)?;
    Ok(ImageSummary {
        width: image.width,
        height: image.height,
        duration_s: audio.duration_s(),
        max_value,
    })
}

/// What an image -> audio conversion did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AudioSummary {
    /// Duration of the written audio in seconds.
    pub duration_s: f64,
    /// Whether the image carried riffusion's EXIF parameters; `false` means
    /// the defaults were used.
    pub had_exif: bool,
}

/// Converts a spectrogram PNG to a WAV file, using the parameters in its
/// EXIF (or the defaults when it has none).
pub fn image_file_to_audio(
    input: &Path,
    output: &Path,
    settings: &InversionSettings,
    format: WavFormat,
    progress: &dyn Progress,
) -> Result<AudioSummary> {
    refuse_overwriting(output, &[input])?;
    let loaded = read_png(input)?;
    let converter = SpectrogramConverter::new(loaded.params.clone())?;
    let opts = settings.options(&loaded.params);
    let audio = converter.audio_from_image(&loaded, &opts, progress)?;
    write_wav(output, &audio, format)?;
    Ok(AudioSummary {
        duration_s: audio.duration_s(),
        had_exif: loaded.has_exif,
    })
}

/// The outcome of a folder batch.
#[derive(Debug, Default, serde::Serialize)]
pub struct BatchReport {
    /// Files converted in this run.
    pub converted: usize,
    /// Files skipped because their output already existed.
    pub skipped: usize,
    /// Files that failed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// One line of counts, then one line per failed file.
impl std::fmt::Display for BatchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "converted {}, skipped {} (output exists), failed {}",
            self.converted,
            self.skipped,
            self.failed.len()
        )?;
        for (path, reason) in &self.failed {
            write!(f, "\n  failed: {}: {reason}", path.display())?;
        }
        Ok(())
    }
}

/// Lists the files directly inside `dir` whose extension is in `extensions`
/// (case-insensitive), sorted by name.
pub fn list_files(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// [`list_files`] for a batch: a folder holding none of the files is an
/// error naming it, not a run that converts nothing and succeeds.
fn batch_inputs(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>> {
    let files = list_files(dir, extensions)?;
    if files.is_empty() {
        return Err(Error::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the folder holds no .{} files", extensions.join("/.")),
            ),
        ));
    }
    Ok(files)
}

/// Runs `convert(input, output)` for every input in parallel, writing
/// `out_dir/STEM.out_ext`; existing outputs are skipped unless `overwrite`.
pub fn convert_folder(
    inputs: &[PathBuf],
    out_dir: &Path,
    out_ext: &str,
    overwrite: bool,
    progress: &dyn Progress,
    convert: impl Fn(&Path, &Path) -> Result<()> + Sync,
) -> Result<BatchReport> {
    crate::fsutil::create_dir(out_dir)?;
    progress.start(inputs.len() as u64, "files");
    let report = Mutex::new(BatchReport::default());
    let cancelled = std::sync::atomic::AtomicBool::new(false);
    let outputs = output_names(inputs, out_ext);
    inputs.par_iter().zip(&outputs).for_each(|(input, name)| {
        if cancelled.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let output = out_dir.join(name);
        let outcome = if !overwrite && output.exists() {
            Ok(false)
        } else {
            convert(input, &output).map(|_| true)
        };
        {
            let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
            match outcome {
                Ok(true) => r.converted += 1,
                Ok(false) => r.skipped += 1,
                Err(e) => {
                    let why = e.report();
                    progress.message(&format!("skipped {}: {why}", input.display()));
                    r.failed.push((input.clone(), why));
                }
            }
        }
        if !progress.advance(1) {
            cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    progress.finish();
    if cancelled.into_inner() {
        return Err(Error::Cancelled);
    }
    let mut report = report.into_inner().unwrap_or_else(|p| p.into_inner());
    report.failed.sort();
    Ok(report)
}

/// Output file names: `STEM.out_ext`, or `NAME.out_ext` (the whole input
/// name) where two inputs share a stem, so no output overwrites another.
fn output_names(inputs: &[PathBuf], out_ext: &str) -> Vec<String> {
    let stem = |p: &PathBuf| {
        p.file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let mut counts = std::collections::HashMap::new();
    for p in inputs {
        *counts.entry(stem(p)).or_insert(0usize) += 1;
    }
    inputs
        .iter()
        .map(|p| {
            if counts[&stem(p)] > 1 {
                format!(
                    "{}.{out_ext}",
                    p.file_name().unwrap_or_default().to_string_lossy()
                )
            } else {
                format!("{}.{out_ext}", stem(p))
            }
        })
        .collect()
}

/// Converts every audio file in `in_dir` to a PNG in `out_dir`.
pub fn audio_folder_to_images(
    in_dir: &Path,
    out_dir: &Path,
    params: &SpectrogramParams,
    overwrite: bool,
    progress: &dyn Progress,
) -> Result<BatchReport> {
    let converter = SpectrogramConverter::new(params.clone())?;
    let inputs = batch_inputs(in_dir, &AUDIO_EXTENSIONS)?;
    convert_folder(&inputs, out_dir, "png", overwrite, progress, |i, o| {
        audio_file_to_image_with(&converter, i, o).map(|_| ())
    })
}

/// Writes `out_dir/metadata.jsonl` (the diffusers image-folder captions
/// that `train` reads) for the images converted from the audio files in
/// `in_dir` that have a JSON label beside them, as `synth` writes: one
/// line per image with `file_name`, `text` (the label's `caption`, else
/// "RAGA raga") and `raga`. Returns the number of lines.
pub fn write_caption_metadata(in_dir: &Path, out_dir: &Path) -> Result<usize> {
    let mut lines = String::new();
    let mut n = 0;
    for audio in list_files(in_dir, &AUDIO_EXTENSIONS)? {
        let label = audio.with_extension("json");
        let stem = audio.file_stem().map(|s| s.to_string_lossy().into_owned());
        let (Some(stem), true) = (stem, label.is_file()) else {
            continue;
        };
        let png = format!("{stem}.png");
        if !out_dir.join(&png).is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&label).map_err(|e| Error::io(&label, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::invalid_data(&label, e.to_string()))?;
        let raga = v["raga"]
            .as_str()
            .ok_or_else(|| Error::invalid_data(&label, "field `raga` missing or not a string"))?;
        let caption = v["caption"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{raga} raga"));
        let line = serde_json::json!({"file_name": png, "text": caption, "raga": raga});
        lines.push_str(&line.to_string());
        lines.push('\n');
        n += 1;
    }
    crate::fsutil::write_bytes_atomic(&out_dir.join("metadata.jsonl"), lines.as_bytes())?;
    Ok(n)
}

/// Converts every PNG in `in_dir` to a WAV in `out_dir`.
pub fn image_folder_to_audio(
    in_dir: &Path,
    out_dir: &Path,
    settings: &InversionSettings,
    format: WavFormat,
    overwrite: bool,
    progress: &dyn Progress,
) -> Result<BatchReport> {
    let inputs = batch_inputs(in_dir, &["png"])?;
    convert_folder(&inputs, out_dir, "wav", overwrite, progress, |i, o| {
        image_file_to_audio(i, o, settings, format, &NoProgress).map(|_| ())
    })
}

/// One clip cut from a longer recording.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Start within the source, in milliseconds.
    pub start_ms: u64,
    /// The clip's audio (zero-padded if the source ends early).
    pub audio: Audio,
}

/// How clip start times are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipPlacement {
    /// `count` random starts from a seeded generator (riffusion's way).
    Random {
        /// Number of clips.
        count: usize,
        /// Generator seed.
        seed: u64,
    },
    /// Consecutive clips every `hop_ms` until the audio ends.
    Sequential {
        /// Milliseconds between clip starts.
        hop_ms: u64,
    },
}

/// Start times (ms) of the clips of `duration_ms` that `placement` cuts
/// from `audio`, checked against [`limits::MAX_CLIPS`] and
/// [`limits::MAX_SECONDS`] before anything is cut.
pub fn clip_starts_ms(
    audio: &Audio,
    duration_ms: u64,
    placement: ClipPlacement,
) -> Result<Vec<u64>> {
    let max_ms = (limits::MAX_SECONDS * 1000.0) as u64;
    if duration_ms == 0 || duration_ms > max_ms {
        return Err(Error::param(
            "duration_ms",
            format!("{duration_ms} ms is outside 1-{max_ms} ms"),
        ));
    }
    let rate = audio.sample_rate_hz as u64;
    let total_ms = audio.len_samples() as u64 * 1000 / rate;
    let last_start_ms = total_ms.saturating_sub(duration_ms);
    match placement {
        ClipPlacement::Random { count, seed } => {
            limits::count("num_clips", count, limits::MAX_CLIPS)?;
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            Ok((0..count)
                .map(|_| rng.random_range(0..=last_start_ms))
                .collect())
        }
        ClipPlacement::Sequential { hop_ms } => {
            if hop_ms == 0 {
                return Err(Error::param("hop_ms", "clip hop is 0 ms"));
            }
            let count = (last_start_ms / hop_ms + 1) as usize;
            if count > limits::MAX_CLIPS {
                return Err(Error::param(
                    "hop_ms",
                    format!(
                        "{hop_ms} ms over {total_ms} ms makes {count} clips, more than the limit of {}",
                        limits::MAX_CLIPS
                    ),
                ));
            }
            Ok((0..=last_start_ms).step_by(hop_ms as usize).collect())
        }
    }
}

/// The clip of `duration_ms` starting at `start_ms` (zero-padded past the
/// end).
fn cut(audio: &Audio, start_ms: u64, duration_ms: u64) -> Clip {
    let to_samples = |ms: u64| (ms * audio.sample_rate_hz as u64 / 1000) as usize;
    Clip {
        start_ms,
        audio: audio.slice_padded(to_samples(start_ms), to_samples(duration_ms)),
    }
}

/// Cuts clips of `duration_ms` from `audio`. A source shorter than one clip
/// gives a single zero-padded clip starting at 0.
pub fn sample_clips(
    audio: &Audio,
    duration_ms: u64,
    placement: ClipPlacement,
) -> Result<Vec<Clip>> {
    let starts = clip_starts_ms(audio, duration_ms, placement)?;
    Ok(starts
        .into_iter()
        .map(|start_ms| cut(audio, start_ms, duration_ms))
        .collect())
}

/// Reads `input`, cuts clips and writes them one at a time as
/// `clip_{i}_start_{ms}_ms_duration_{ms}_ms.wav` in `out_dir` (riffusion's
/// names). Returns the written paths.
pub fn sample_clips_to_folder(
    input: &Path,
    out_dir: &Path,
    duration_ms: u64,
    placement: ClipPlacement,
    mono: bool,
    format: WavFormat,
) -> Result<Vec<PathBuf>> {
    let mut audio = read_audio(input)?;
    if mono {
        audio = audio.with_layout(ChannelLayout::Mono);
    }
    let starts = clip_starts_ms(&audio, duration_ms, placement)?;
    crate::fsutil::create_dir(out_dir)?;
    starts
        .into_iter()
        .enumerate()
        .map(|(i, start_ms)| {
            let name = format!("clip_{i}_start_{start_ms}_ms_duration_{duration_ms}_ms.wav");
            let path = out_dir.join(name);
            write_wav(&path, &cut(&audio, start_ms, duration_ms).audio, format)?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(ms: usize) -> Audio {
        Audio::new(vec![vec![0.1; ms * 8]], 8000, "t").unwrap()
    }

    #[test]
    fn shared_stems_keep_their_extension() {
        let inputs: Vec<PathBuf> = ["a.wav", "a.mp3", "b.flac"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(
            output_names(&inputs, "png"),
            vec!["a.wav.png", "a.mp3.png", "b.png"]
        );
    }

    #[test]
    fn sequential_clips_cover_the_audio() {
        let clips = sample_clips(
            &audio(12000),
            5120,
            ClipPlacement::Sequential { hop_ms: 2560 },
        )
        .unwrap();
        let starts: Vec<u64> = clips.iter().map(|c| c.start_ms).collect();
        assert_eq!(starts, vec![0, 2560, 5120]);
        assert!(clips.iter().all(|c| c.audio.len_samples() == 5120 * 8));
    }

    #[test]
    fn short_audio_gives_one_padded_clip() {
        let clips = sample_clips(
            &audio(1000),
            5120,
            ClipPlacement::Random { count: 2, seed: 1 },
        )
        .unwrap();
        assert_eq!(clips.len(), 2);
        assert_eq!(clips[0].start_ms, 0);
        let none = ClipPlacement::Random { count: 0, seed: 1 };
        let e = sample_clips(&audio(1000), 5120, none).unwrap_err();
        assert!(e.to_string().contains("num_clips"), "{e}");
        assert_eq!(clips[0].audio.channels[0][8000 * 5], 0.0);
    }

    #[test]
    fn absurd_clip_counts_and_lengths_are_refused_before_cutting() {
        let a = audio(1000);
        let many = ClipPlacement::Random {
            count: 1_000_000,
            seed: 1,
        };
        let e = sample_clips(&a, 5120, many).unwrap_err().to_string();
        assert!(e.contains("num_clips") && e.contains("100000"), "{e}");
        let one = ClipPlacement::Random { count: 1, seed: 1 };
        let e = sample_clips(&a, 100_000_000, one).unwrap_err().to_string();
        assert!(e.contains("duration_ms"), "{e}");
        let long = audio(101_000);
        let dense = ClipPlacement::Sequential { hop_ms: 1 };
        let e = clip_starts_ms(&long, 10, dense).unwrap_err().to_string();
        assert!(e.contains("hop_ms") && e.contains("clips"), "{e}");
    }

    #[test]
    fn random_clips_are_seeded() {
        let a = sample_clips(
            &audio(20000),
            5120,
            ClipPlacement::Random { count: 3, seed: 4 },
        )
        .unwrap();
        let b = sample_clips(
            &audio(20000),
            5120,
            ClipPlacement::Random { count: 3, seed: 4 },
        )
        .unwrap();
        assert_eq!(
            a.iter().map(|c| c.start_ms).collect::<Vec<_>>(),
            b.iter().map(|c| c.start_ms).collect::<Vec<_>>()
        );
        assert!(a.iter().all(|c| c.start_ms <= 20000 - 5120));
    }
}
