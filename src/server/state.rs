//! The server's state: the engine's job queue, the history on disk, the
//! uploads, the models, and the events every listener follows.

use std::sync::mpsc;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::api_error::ApiError;
use super::body::{self, Resolver};
use super::history::{now_unix_s, state_name, History, JobRecord};
use super::models::ModelEntry;
use super::uploads::Uploads;
use super::ServeOptions;
use crate::engine::{Job, JobEvent, JobId, JobQueue, JobState};
use crate::error::Result;

/// Events kept for listeners that fall behind.
const EVENT_BUFFER: usize = 4096;

/// Everything the handlers share.
pub struct AppState {
    /// The engine's queue.
    pub queue: JobQueue,
    /// Every job's record.
    pub history: Arc<History>,
    /// Job events as they happen.
    pub events: broadcast::Sender<JobEvent>,
    /// Uploaded files.
    pub uploads: Uploads,
    /// The models jobs may name; the first is the default.
    pub models: Vec<ModelEntry>,
    /// The options the server started with.
    pub options: ServeOptions,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Opens the history and uploads under the data folder, starts the
    /// queue and the thread that records and forwards its events.
    pub fn start(options: ServeOptions, models: Vec<ModelEntry>) -> Result<Self> {
        let history = Arc::new(History::open(&options.data_dir.join("jobs"))?);
        let uploads = Uploads::new(options.data_dir.join("uploads"));
        crate::fsutil::create_dir(uploads.dir())?;
        let queue = JobQueue::new(options.queue);
        queue.number_after(history.last_id());
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (tx, rx) = mpsc::channel();
        queue.subscribe(tx);
        let (h, fwd) = (Arc::clone(&history), events.clone());
        std::thread::spawn(move || {
            for event in rx {
                if let JobEvent::State(id, state) = &event {
                    if let Err(e) = h.set_state(*id, state) {
                        tracing::warn!("job {id}: {}", e.report());
                    }
                }
                let _ = fwd.send(event);
            }
        });
        Ok(Self {
            queue,
            history,
            events,
            uploads,
            models,
            options,
        })
    }

    fn resolver(&self) -> Resolver<'_> {
        Resolver {
            models: &self.models,
            uploads: &self.uploads,
            device: &self.options.device,
            dtype: &self.options.dtype,
        }
    }

    /// Checks a job body, records it and queues it.
    pub fn submit(&self, settings: Value) -> std::result::Result<JobId, ApiError> {
        let (kind, work) = body::parse(&settings, &self.resolver())?;
        let id = self.queue.submit_numbered(|id| {
            self.history.insert(JobRecord {
                id,
                kind,
                settings,
                state: "queued".into(),
                error: None,
                created_unix_s: now_unix_s(),
                finished_unix_s: None,
            })?;
            Ok(Job {
                work,
                out_dir: self.history.job_dir(id),
            })
        })?;
        Ok(id)
    }

    /// Runs an interrupted, cancelled or failed job again under its id and
    /// into its folder, from its recorded settings: a diffusion job goes
    /// on from the state it saved there.
    pub fn resume(&self, id: JobId) -> std::result::Result<(), ApiError> {
        let Some(record) = self.history.get(id) else {
            return Err(ApiError::not_found(format!("no job {id}")));
        };
        let state = self
            .queue
            .status(id)
            .map_or(record.state.clone(), |s| state_name(&s.state).to_string());
        if !matches!(state.as_str(), "interrupted" | "cancelled" | "failed") {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!(
                    "job {id} is {state}; only an interrupted, cancelled or failed job resumes"
                ),
            ));
        }
        let (_, work) = body::parse(&record.settings, &self.resolver())?;
        self.queue.resubmit(id, || {
            self.history.requeue(id)?;
            Ok(Job {
                work,
                out_dir: self.history.job_dir(id),
            })
        })?;
        Ok(())
    }

    /// A job's record, progress and files as the API shows them.
    pub fn job_json(&self, record: &JobRecord) -> Value {
        let id = record.id;
        let progress = self.queue.status(id).map(|s| {
            let fraction = if s.total > 0 {
                s.done as f64 / s.total as f64
            } else {
                0.0
            };
            json!({"step": s.done, "total": s.total, "fraction": fraction, "stage": s.stage})
        });
        let messages = self
            .queue
            .status(id)
            .map(|s| s.messages)
            .unwrap_or_default();
        // the queue knows the state first; the record follows
        let state = match self.queue.status(id) {
            Some(s) => state_name(&s.state).to_string(),
            None => record.state.clone(),
        };
        let files: Vec<Value> = self
            .history
            .files(id)
            .into_iter()
            .map(|(name, bytes)| {
                json!({"name": name, "bytes": bytes, "url": format!("/api/jobs/{id}/files/{name}")})
            })
            .collect();
        json!({
            "id": id,
            "kind": record.kind,
            "state": state,
            "error": record.error,
            "settings": record.settings,
            "created_unix_s": record.created_unix_s,
            "finished_unix_s": record.finished_unix_s,
            "progress": progress,
            "messages": messages,
            "files": files,
        })
    }

    /// The current state of a job as an event, for a listener that starts
    /// late (`None` when the job is unknown).
    pub fn snapshot(&self, id: JobId) -> Option<JobState> {
        if let Some(s) = self.queue.status(id) {
            return Some(s.state);
        }
        let r = self.history.get(id)?;
        Some(match r.state.as_str() {
            "done" => JobState::Done,
            "cancelled" => JobState::Cancelled,
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            _ => JobState::Failed(r.error.unwrap_or_else(|| r.state.clone())),
        })
    }
}
