//! `GET /api/jobs/{id}/events`: a job's Server-Sent Events. A listener
//! first gets the job's state as it is (and its messages and progress so
//! far, while it runs), then every
//! change: `queued`, `running`, `progress` (step, total, fraction, stage),
//! `output`, `message`, and one of `done`, `failed` or `cancelled`, after
//! which the stream ends.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::api_error::ApiError;
use super::state::AppState;
use crate::engine::{JobEvent, JobId, JobState};

fn event(name: &str, data: serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// The event for a state; `None` for no event.
fn state_event(app: &AppState, id: JobId, state: &JobState) -> Event {
    match state {
        JobState::Queued => event("queued", json!({"id": id})),
        JobState::Running => event("running", json!({"id": id})),
        JobState::Done => {
            let files: Vec<_> = app
                .history
                .files(id)
                .into_iter()
                .map(|(name, bytes)| {
                    let url = format!("/api/jobs/{id}/files/{name}");
                    json!({"name": name, "bytes": bytes, "url": url})
                })
                .collect();
            event("done", json!({"id": id, "files": files}))
        }
        JobState::Failed(why) => event("failed", json!({"id": id, "error": why})),
        JobState::Cancelled => event("cancelled", json!({"id": id})),
    }
}

fn progress_event(id: JobId, done: u64, total: u64, stage: &str) -> Event {
    let fraction = if total > 0 {
        done as f64 / total as f64
    } else {
        0.0
    };
    event(
        "progress",
        json!({"id": id, "step": done, "total": total, "fraction": fraction, "stage": stage}),
    )
}

/// The event for a queue event of job `id`, and whether it is the last.
fn job_event(app: &AppState, id: JobId, e: &JobEvent) -> Option<(Event, bool)> {
    match e {
        JobEvent::State(i, s) if *i == id => Some((state_event(app, id, s), s.is_final())),
        JobEvent::Progress(i, done, total, stage) if *i == id => {
            Some((progress_event(id, *done, *total, stage), false))
        }
        JobEvent::Output(i, path) if *i == id => {
            let name = path.file_name()?.to_string_lossy().into_owned();
            let url = format!("/api/jobs/{id}/files/{name}");
            Some((
                event("output", json!({"id": id, "name": name, "url": url})),
                false,
            ))
        }
        JobEvent::Message(i, text) if *i == id => {
            Some((event("message", json!({"id": id, "text": text})), false))
        }
        _ => None,
    }
}

/// The handler.
pub async fn job_events(
    State(app): State<Arc<AppState>>,
    Path(id): Path<JobId>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let rx = app.events.subscribe();
    let state = app
        .snapshot(id)
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let mut first = vec![state_event(&app, id, &state)];
    if let (false, Some(s)) = (state.is_final(), app.queue.status(id)) {
        // what a listener from the start would have seen
        for text in &s.messages {
            first.push(event("message", json!({"id": id, "text": text})));
        }
        if state == JobState::Running {
            first.push(progress_event(id, s.done, s.total, &s.stage));
        }
    }
    let ended = state.is_final();
    let head = stream::iter(first);
    let tail = stream::unfold((rx, app, ended), move |(mut rx, app, ended)| async move {
        if ended {
            return None;
        }
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Some((ev, last)) = job_event(&app, id, &e) {
                        return Some((ev, (rx, app, last)));
                    }
                }
                // fell behind: the events in between are gone, so the job
                // may have ended among them
                Err(RecvError::Lagged(_)) => match app.snapshot(id) {
                    Some(s) if s.is_final() => {
                        let ev = state_event(&app, id, &s);
                        return Some((ev, (rx, app, true)));
                    }
                    _ => continue,
                },
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(head.chain(tail).map(Ok)).keep_alive(KeepAlive::default()))
}
