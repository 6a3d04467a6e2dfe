//! Dataset preparation: recordings + metadata -> 5.12 s spectrogram clips
//! with captions, in the diffusers image-folder layout:
//!
//! ```text
//! OUT/train/metadata.jsonl       {"file_name": "x.png", "text": caption, raga, ...}
//! OUT/train/*.png
//! OUT/validation/..., OUT/test/...
//! OUT/summary.json               counts, splits, bad rows and files with reasons
//! OUT/.prepare/                  one record per finished row (resume)
//! ```
//!
//! Recordings are streamed (decoded block by block), so memory does not
//! grow with their length. Each recording goes to one split, chosen from a
//! hash of its file name and the seed, so adding recordings never moves
//! others. A rerun skips every row already recorded in `.prepare/`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::metadata::{read_metadata, validate_row, BadRow, MetadataRow};
use crate::audio::stream::{AudioStream, StreamResampler};
use crate::audio::Audio;
use crate::captions::{stable_hash, CaptionFields, Percussion, Vocabulary};
use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, write_json_atomic};
use crate::progress::Progress;
use crate::spectrogram::{write_png, SpectrogramConverter, SpectrogramParams};

/// Clip lengths accepted, seconds (up to ten minutes: memory stays
/// bounded, see [`crate::spectrogram::segmented`]).
pub const CLIP_S: std::ops::RangeInclusive<f64> = 0.1..=600.0;

/// Hops between clip starts accepted, seconds.
pub const HOP_S: std::ops::RangeInclusive<f64> = 0.01..=3600.0;

/// Silence thresholds accepted, dBFS.
pub const SILENCE_DBFS: std::ops::RangeInclusive<f64> = -200.0..=0.0;

/// The three splits, in order.
pub const SPLITS: [&str; 3] = ["train", "validation", "test"];

/// Settings of a preparation run.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareOptions {
    /// Clip length, seconds.
    pub clip_s: f64,
    /// Hop between clip starts, seconds.
    pub hop_s: f64,
    /// Shares of recordings for train, validation, test (summing to 1).
    pub split: [f64; 3],
    /// Seed of the split assignment.
    pub seed: u64,
    /// Drop rows whose segment is a percussion solo (tani avartanam).
    pub skip_percussion_solo: bool,
    /// Clips quieter than this RMS level (dBFS) are skipped as silence.
    pub silence_dbfs: f64,
    /// Spectrogram parameters (mono).
    pub params: SpectrogramParams,
    /// Read metadata `file` values that are absolute or climb out of the
    /// audio folder with `..` (refused by default).
    pub allow_outside: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            clip_s: 5.12,
            hop_s: 5.12,
            split: [0.8, 0.1, 0.1],
            seed: 0,
            skip_percussion_solo: true,
            silence_dbfs: -50.0,
            params: SpectrogramParams::default(),
            allow_outside: false,
        }
    }
}

/// One line of a split's `metadata.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipEntry {
    /// PNG name within the split folder.
    pub file_name: String,
    /// Caption.
    pub text: String,
    /// Raga (vocabulary name).
    pub raga: String,
    /// Tala, if known.
    pub tala: Option<String>,
    /// Composer, if known.
    pub composer: Option<String>,
    /// Artist, if known.
    pub artist: Option<String>,
    /// Segment type, if known.
    pub segment: Option<String>,
    /// Instrument, if known.
    pub instrument: Option<String>,
    /// Source recording, relative to the audio folder.
    pub source: String,
    /// Clip start within the source, seconds.
    pub start_s: f64,
}

/// What happened to one row; stored in `.prepare/` so reruns skip it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RowRecord {
    split: String,
    entries: Vec<ClipEntry>,
    silent_clips: usize,
    error: Option<String>,
}

/// A skipped input: a metadata row or an audio file, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BadInput {
    /// Metadata line (1-based).
    pub line: usize,
    /// The file named by the row.
    pub file: String,
    /// Why it was skipped.
    pub reason: String,
}

/// The outcome of a run (also written to `summary.json`).
#[derive(Debug, Default, Serialize)]
pub struct PrepareSummary {
    /// Metadata rows read.
    pub rows: usize,
    /// Rows processed in this run.
    pub rows_processed: usize,
    /// Rows already done by an earlier run.
    pub rows_already_done: usize,
    /// Rows skipped as percussion solos.
    pub rows_percussion_solo: usize,
    /// Clips per split.
    pub clips: BTreeMap<String, usize>,
    /// Recordings per split.
    pub recordings: BTreeMap<String, usize>,
    /// Clips skipped as silence.
    pub silent_clips: usize,
    /// Rows and files skipped, with reasons.
    pub bad: Vec<BadInput>,
}

/// The counts on one line, then each bad input with its line number.
impl std::fmt::Display for PrepareSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let clips: Vec<String> = self.clips.iter().map(|(k, v)| format!("{k} {v}")).collect();
        write!(
            f,
            "{} rows: {} processed, {} already done, {} percussion solos skipped; \
             clips: {}; silent clips skipped: {}",
            self.rows,
            self.rows_processed,
            self.rows_already_done,
            self.rows_percussion_solo,
            clips.join(", "),
            self.silent_clips
        )?;
        if !self.bad.is_empty() {
            write!(f, "\nskipped {} bad inputs:", self.bad.len())?;
        }
        for b in &self.bad {
            write!(f, "\n  line {}: {}: {}", b.line, b.file, b.reason)?;
        }
        Ok(())
    }
}

/// A row that passed validation.
struct Job {
    line: usize,
    row: MetadataRow,
    path: PathBuf,
    fields: CaptionFields,
    split: &'static str,
    key: String,
}

/// The split of a recording: from a hash of its name and the seed.
pub fn split_of(file: &str, seed: u64, shares: [f64; 3]) -> &'static str {
    let u = (stable_hash(&format!("{seed}:{file}")) >> 11) as f64 / (1u64 << 53) as f64;
    if u < shares[0] {
        SPLITS[0]
    } else if u < shares[0] + shares[1] {
        SPLITS[1]
    } else {
        SPLITS[2]
    }
}

/// Prepares a dataset; see the module docs.
pub fn prepare(
    vocab: &Vocabulary,
    audio_dir: &Path,
    metadata: &Path,
    out_dir: &Path,
    opts: &PrepareOptions,
    progress: &dyn Progress,
) -> Result<PrepareSummary> {
    if opts.params.stereo {
        return Err(Error::param("stereo", "prepare makes mono spectrograms"));
    }
    crate::limits::in_range("clip_s", opts.clip_s, &CLIP_S, " s")?;
    crate::limits::in_range("hop_s", opts.hop_s, &HOP_S, " s")?;
    crate::limits::in_range("silence_dbfs", opts.silence_dbfs, &SILENCE_DBFS, " dBFS")?;
    if !audio_dir.is_dir() {
        return Err(Error::io(
            audio_dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the audio folder (--audio-dir) does not exist or is not a folder",
            ),
        ));
    }
    let total: f64 = opts.split.iter().sum();
    if opts.split.iter().any(|s| *s < 0.0) || (total - 1.0).abs() > 1e-6 {
        return Err(Error::param(
            "split",
            format!("shares {:?} must be non-negative and sum to 1", opts.split),
        ));
    }
    let converter = SpectrogramConverter::new(opts.params.clone())?;
    let (rows, unreadable) = read_metadata(metadata)?;
    let mut summary = PrepareSummary {
        rows: rows.len() + unreadable.len(),
        ..Default::default()
    };
    summary
        .bad
        .extend(unreadable.into_iter().map(|b: BadRow| BadInput {
            line: b.line,
            file: b.file,
            reason: b.reason,
        }));
    let fingerprint = format!(
        "{:?}|{}|{}|{}",
        opts.params, opts.clip_s, opts.hop_s, opts.silence_dbfs
    );
    let mut jobs = Vec::new();
    for (line, row) in rows {
        match validate_row(vocab, audio_dir, &row, opts.allow_outside) {
            Err(reason) => summary.bad.push(BadInput {
                line,
                file: row.file.clone(),
                reason,
            }),
            Ok((path, fields)) => {
                let solo = fields
                    .segment
                    .as_deref()
                    .and_then(|s| vocab.segment(s).ok())
                    .is_some_and(|s| s.percussion == Percussion::Solo);
                if solo && opts.skip_percussion_solo {
                    summary.rows_percussion_solo += 1;
                    continue;
                }
                let split = split_of(&row.file, opts.seed, opts.split);
                let key = format!(
                    "{:016x}",
                    stable_hash(&format!("{fingerprint}|{split}|{row:?}|{fields:?}"))
                );
                jobs.push(Job {
                    line,
                    row,
                    path,
                    fields,
                    split,
                    key,
                });
            }
        }
    }
    let state_dir = out_dir.join(".prepare");
    for dir in SPLITS
        .iter()
        .map(|s| out_dir.join(s))
        .chain([state_dir.clone()])
    {
        crate::fsutil::create_dir(&dir)?;
    }
    progress.start(jobs.len() as u64, "recordings");
    let cancelled = AtomicBool::new(false);
    let records: Vec<(usize, bool, RowRecord)> = jobs
        .par_iter()
        .map(|job| {
            let marker = state_dir.join(format!("{}.json", job.key));
            if let Some(rec) = std::fs::read(&marker)
                .ok()
                .and_then(|b| serde_json::from_slice::<RowRecord>(&b).ok())
            {
                progress.advance(1);
                return Ok((job.line, false, rec));
            }
            if cancelled.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let rec = match process_row(vocab, &converter, job, out_dir, opts) {
                Ok(rec) => rec,
                Err(e @ Error::AudioDecode { .. }) | Err(e @ Error::InvalidAudio { .. }) => {
                    RowRecord {
                        split: job.split.to_string(),
                        entries: vec![],
                        silent_clips: 0,
                        error: Some(e.to_string()),
                    }
                }
                Err(e) => return Err(e),
            };
            write_json_atomic(&marker, &rec)?;
            if !progress.advance(1) {
                cancelled.store(true, Ordering::Relaxed);
            }
            Ok((job.line, true, rec))
        })
        .collect::<Result<_>>()?;
    progress.finish();

    let mut by_split: BTreeMap<&str, Vec<(usize, ClipEntry)>> = BTreeMap::new();
    let mut recordings: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for ((line, fresh, rec), job) in records.iter().zip(&jobs) {
        if *fresh {
            summary.rows_processed += 1;
        } else {
            summary.rows_already_done += 1;
        }
        summary.silent_clips += rec.silent_clips;
        if let Some(e) = &rec.error {
            summary.bad.push(BadInput {
                line: *line,
                file: job.row.file.clone(),
                reason: e.clone(),
            });
            continue;
        }
        recordings
            .entry(job.split)
            .or_default()
            .insert(job.row.file.as_str());
        let list = by_split.entry(job.split).or_default();
        list.extend(rec.entries.iter().cloned().map(|e| (*line, e)));
    }
    for split in SPLITS {
        let mut entries = by_split.remove(split).unwrap_or_default();
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.start_s.total_cmp(&b.1.start_s)));
        summary.clips.insert(split.to_string(), entries.len());
        summary.recordings.insert(
            split.to_string(),
            recordings.get(split).map_or(0, BTreeSet::len),
        );
        let path = out_dir.join(split).join("metadata.jsonl");
        write_atomic(&path, |w| {
            for (_, e) in &entries {
                let line = serde_json::to_string(e).map_err(|err| Error::InvalidData {
                    file: path.display().to_string(),
                    reason: err.to_string(),
                })?;
                writeln!(w, "{line}").map_err(|err| Error::io(&path, err))?;
            }
            Ok(())
        })?;
    }
    summary.bad.sort_by_key(|b| b.line);
    write_json_atomic(&out_dir.join("summary.json"), &summary)?;
    if summary.rows > 0 && summary.bad.len() == summary.rows {
        return Err(Error::InvalidData {
            file: metadata.display().to_string(),
            reason: format!(
                "every one of its {} rows failed, so no clip was made; the first: line {}: {}",
                summary.rows, summary.bad[0].line, summary.bad[0].reason
            ),
        });
    }
    Ok(summary)
}

/// Streams one row's audio, cuts clips, writes their PNGs.
fn process_row(
    vocab: &Vocabulary,
    conv: &SpectrogramConverter,
    job: &Job,
    out_dir: &Path,
    opts: &PrepareOptions,
) -> Result<RowRecord> {
    let rate = opts.params.sample_rate_hz;
    let clip_len = (opts.clip_s * rate as f64).round() as usize;
    let hop = ((opts.hop_s * rate as f64).round() as usize).max(1);
    let start = (job.row.start_s.unwrap_or(0.0) * rate as f64).round() as usize;
    let end = job
        .row
        .end_s
        .map(|e| (e * rate as f64).round() as usize)
        .unwrap_or(usize::MAX);
    let mut stream = AudioStream::open(&job.path)?;
    let mut resampler = StreamResampler::new(stream.sample_rate_hz, rate)?;
    let stem: String = Path::new(&job.row.file)
        .file_stem()
        .map(|s| {
            s.to_string_lossy()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .unwrap_or_else(|| "clip".into());
    let mut rec = RowRecord {
        split: job.split.to_string(),
        entries: vec![],
        silent_clips: 0,
        error: None,
    };
    // `buf` holds samples from absolute index `buf_start`; `next` is the
    // next clip's start.
    let mut buf: Vec<f32> = Vec::new();
    let mut buf_start = 0usize;
    let mut next = start;
    let mut block = Vec::new();
    let mut finished = false;
    let threshold = 10f64.powf(opts.silence_dbfs / 20.0);
    let emit = |samples: &[f32], at: usize, rec: &mut RowRecord| -> Result<()> {
        let rms = (samples.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / samples.len() as f64)
            .sqrt();
        if rms < threshold {
            rec.silent_clips += 1;
            return Ok(());
        }
        let start_ms = (at as f64 * 1000.0 / rate as f64).round() as u64;
        let file_name = format!("{stem}_{}_{start_ms}ms.png", job.line);
        let audio = Audio::new(vec![samples.to_vec()], rate, &job.row.file)?;
        let (image, max) = conv.image_from_audio(&audio)?;
        write_png(
            &out_dir.join(job.split).join(&file_name),
            &image,
            &opts.params,
            max,
        )?;
        let id = format!("{}/{}", job.row.file, start_ms);
        rec.entries.push(ClipEntry {
            file_name,
            text: vocab.caption(&job.fields, stable_hash(&id)),
            raga: job.fields.raga.clone().unwrap_or_default(),
            tala: job.fields.tala.clone(),
            composer: job.fields.composer.clone(),
            artist: job.fields.artist.clone(),
            segment: job.fields.segment.clone(),
            instrument: job.fields.instrument.clone(),
            source: job.row.file.clone(),
            start_s: at as f64 / rate as f64,
        });
        Ok(())
    };
    let mut emitted_any = false;
    loop {
        if !finished {
            block.clear();
            match stream.next_mono()? {
                Some(b) => resampler.push(&b, &mut block)?,
                None => {
                    resampler.finish(&mut block)?;
                    finished = true;
                }
            }
            buf.extend_from_slice(&block);
        }
        let buf_end = buf_start + buf.len();
        // Full clips that fit before the end.
        while next + clip_len <= buf_end.min(end) {
            let off = next - buf_start;
            emit(&buf[off..off + clip_len], next, &mut rec)?;
            emitted_any = true;
            next += hop;
        }
        // Drop what no later clip needs.
        if next > buf_start {
            let drop = (next - buf_start).min(buf.len());
            buf.drain(..drop);
            buf_start += drop;
        }
        let done = finished || buf_end >= end;
        if done {
            // A tail of at least half a clip, or a segment shorter than one
            // clip, becomes one zero-padded clip.
            let avail_end = buf_end.min(end);
            if next < avail_end {
                let have = avail_end - next;
                if have * 2 >= clip_len || !emitted_any {
                    let off = next - buf_start;
                    let mut padded = buf[off..off + have].to_vec();
                    padded.resize(clip_len, 0.0);
                    emit(&padded, next, &mut rec)?;
                }
            }
            break;
        }
    }
    if start > 0 && buf_start + buf.len() < start {
        return Err(Error::InvalidAudio {
            context: job.row.file.clone(),
            reason: format!(
                "`start_s` {} is past the end of the recording",
                job.row.start_s.unwrap_or(0.0)
            ),
        });
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stable_and_proportional() {
        let shares = [0.8, 0.1, 0.1];
        let mut counts = BTreeMap::new();
        for i in 0..2000 {
            let name = format!("rec{i}.wav");
            let s = split_of(&name, 1, shares);
            assert_eq!(s, split_of(&name, 1, shares));
            *counts.entry(s).or_insert(0) += 1;
        }
        assert!((1450..1750).contains(&counts["train"]), "{counts:?}");
        assert!((120..280).contains(&counts["validation"]), "{counts:?}");
    }
}
