//! Every job a server took, kept on disk: `JOBS/ID/` holds the job's
//! outputs and `.job.json`, its record. Records are rewritten (atomically)
//! when a job changes state, so a restart finds them all; a job that was
//! waiting or running when the server stopped is marked `interrupted`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::{JobId, JobState};
use crate::error::Result;
use crate::fsutil::{create_dir, read_json, write_json_atomic};

/// A record's file name inside the job's folder (hidden, so no output can
/// take its name and it is not listed as a file).
pub const RECORD_FILE: &str = ".job.json";

/// What the server keeps of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's id.
    pub id: JobId,
    /// Its kind (the verb).
    pub kind: String,
    /// The body it was submitted with, to run it again.
    pub settings: Value,
    /// `queued`, `running`, `done`, `failed`, `cancelled` or
    /// `interrupted` (the server stopped while it waited or ran).
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was submitted, seconds since 1970.
    pub created_unix_s: u64,
    /// When it ended, seconds since 1970.
    pub finished_unix_s: Option<u64>,
}

/// The name of an engine state in records and events.
pub fn state_name(state: &JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Done => "done",
        JobState::Failed(_) => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// Seconds since 1970.
pub fn now_unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The records, in memory and on disk.
#[derive(Debug)]
pub struct History {
    dir: PathBuf,
    records: Mutex<BTreeMap<JobId, JobRecord>>,
    closed: AtomicBool,
}

impl History {
    /// Reads the records under `dir` (created if needed), marking those
    /// left waiting or running as interrupted. Unreadable records are
    /// skipped with a warning.
    pub fn open(dir: &Path) -> Result<Self> {
        create_dir(dir)?;
        let mut records = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| crate::error::Error::io(dir, e))?;
        for entry in entries.flatten() {
            let file = entry.path().join(RECORD_FILE);
            if !file.is_file() {
                continue;
            }
            match read_json::<JobRecord>(&file) {
                Ok(mut r) => {
                    if matches!(r.state.as_str(), "queued" | "running") {
                        r.state = "interrupted".into();
                        r.error = Some("the server stopped before the job ended".into());
                        write_json_atomic(&file, &r)?;
                    }
                    records.insert(r.id, r);
                }
                Err(e) => tracing::warn!("skipping a job record: {}", e.report()),
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            records: Mutex::new(records),
            closed: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<JobId, JobRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The highest id in the history (0 when empty).
    pub fn last_id(&self) -> JobId {
        self.lock().keys().next_back().copied().unwrap_or(0)
    }

    /// A job's folder.
    pub fn job_dir(&self, id: JobId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// Adds a record and writes it.
    pub fn insert(&self, record: JobRecord) -> Result<()> {
        let dir = self.job_dir(record.id);
        create_dir(&dir)?;
        write_json_atomic(&dir.join(RECORD_FILE), &record)?;
        self.lock().insert(record.id, record);
        Ok(())
    }

    /// Records a job's new state (and its error) and writes the record.
    pub fn set_state(&self, id: JobId, state: &JobState) -> Result<()> {
        let mut records = self.lock();
        if self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(r) = records.get_mut(&id) else {
            return Ok(());
        };
        r.state = state_name(state).into();
        if let JobState::Failed(why) = state {
            r.error = Some(why.clone());
        }
        if state.is_final() {
            r.finished_unix_s = Some(now_unix_s());
        }
        let record = r.clone();
        drop(records);
        write_json_atomic(&self.job_dir(id).join(RECORD_FILE), &record)
    }

    /// Records a job as waiting again (it is resumed) and writes it.
    pub fn requeue(&self, id: JobId) -> Result<()> {
        let mut records = self.lock();
        let Some(r) = records.get_mut(&id) else {
            return Ok(());
        };
        r.state = "queued".into();
        r.error = None;
        r.finished_unix_s = None;
        let record = r.clone();
        drop(records);
        write_json_atomic(&self.job_dir(id).join(RECORD_FILE), &record)
    }

    /// Marks every job still waiting or running as interrupted, writes
    /// the records, and records no later change (the server is stopping).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut records = self.lock();
        for r in records.values_mut() {
            if matches!(r.state.as_str(), "queued" | "running") {
                r.state = "interrupted".into();
                r.error = Some("the server stopped before the job ended".into());
                let file = self.dir.join(r.id.to_string()).join(RECORD_FILE);
                if let Err(e) = write_json_atomic(&file, r) {
                    tracing::warn!("{}", e.report());
                }
            }
        }
    }

    /// A job's record.
    pub fn get(&self, id: JobId) -> Option<JobRecord> {
        self.lock().get(&id).cloned()
    }

    /// Every record, newest first.
    pub fn all(&self) -> Vec<JobRecord> {
        self.lock().values().rev().cloned().collect()
    }

    /// The files a job has written (names in its folder, hidden ones and
    /// so unfinished temporaries, left out), sorted, with their sizes.
    pub fn files(&self, id: JobId) -> Vec<(String, u64)> {
        let Ok(entries) = std::fs::read_dir(self.job_dir(id)) else {
            return Vec::new();
        };
        let mut out: Vec<(String, u64)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let meta = e.metadata().ok()?;
                let shown = meta.is_file() && !name.starts_with('.');
                shown.then_some((name, meta.len()))
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_restart_and_unfinished_jobs_are_interrupted() {
        let tmp = tempfile::tempdir().unwrap();
        let h = History::open(tmp.path()).unwrap();
        for id in [1, 2] {
            h.insert(JobRecord {
                id,
                kind: "generate".into(),
                settings: serde_json::json!({"kind": "generate", "prompt": "todi"}),
                state: "queued".into(),
                error: None,
                created_unix_s: now_unix_s(),
                finished_unix_s: None,
            })
            .unwrap();
        }
        h.set_state(1, &JobState::Done).unwrap();
        h.set_state(2, &JobState::Running).unwrap();
        h.close();
        h.set_state(2, &JobState::Cancelled).unwrap();
        std::fs::write(h.job_dir(1).join("a.wav"), b"RIFF").unwrap();
        std::fs::write(tmp.path().join("1").join(".a.wav.tmp"), b"").unwrap();
        std::fs::create_dir_all(tmp.path().join("junk")).unwrap();
        std::fs::write(tmp.path().join("junk").join(RECORD_FILE), b"{").unwrap();
        drop(h);
        let h = History::open(tmp.path()).unwrap();
        assert_eq!(h.last_id(), 2);
        assert_eq!(h.get(1).unwrap().state, "done");
        assert!(h.get(1).unwrap().finished_unix_s.is_some());
        assert_eq!(h.get(2).unwrap().state, "interrupted");
        assert_eq!(h.files(1), vec![("a.wav".to_string(), 4)]);
        assert_eq!(h.all().iter().map(|r| r.id).collect::<Vec<_>>(), [2, 1]);
    }
}
