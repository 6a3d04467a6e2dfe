//! The JSON API's handlers (the events are in `events.rs`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::api_error::ApiError;
use super::reports;
use super::state::AppState;
use super::uploads::{sniff, Uploads, SNIFF_BYTES};
use crate::captions::shruti::parse_tonic;
use crate::captions::{CaptionFields, Vocabulary};
use crate::engine::JobId;

/// Largest JSON body, bytes.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// Bytes of a refused body read (and dropped) before the answer, so that a
/// client still sending gets the 413 rather than a broken connection.
pub const MAX_DRAIN_BYTES: u64 = 64 << 20;

type Shared = State<Arc<AppState>>;

/// `GET /api/health`.
pub async fn health(State(app): Shared) -> Json<Value> {
    let jobs = app.queue.list();
    let waiting = jobs.iter().filter(|j| !j.state.is_final()).count();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "jobs_unfinished": waiting,
        "queue_capacity": app.options.queue,
    }))
}

/// `GET /api/models`.
pub async fn models(State(app): Shared) -> Json<Value> {
    let list: Vec<Value> = app
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            json!({"name": m.name, "backend": m.backend.to_string(),
                   "path": m.path.display().to_string(), "default": i == 0})
        })
        .collect();
    Json(json!({ "models": list }))
}

/// `GET /api/vocabulary`: ragas (with aliases and scales), talas,
/// segment types, instruments and composers.
pub async fn vocabulary() -> Json<Value> {
    let v = Vocabulary::builtin();
    let phrase = |notes: &[crate::captions::Note]| {
        notes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let ragas: Vec<Value> = v
        .ragas
        .iter()
        .map(|r| {
            json!({"name": r.name, "aliases": r.aliases, "melakarta": r.melakarta,
                   "parent": r.parent, "arohana": phrase(&r.arohana),
                   "avarohana": phrase(&r.avarohana)})
        })
        .collect();
    let named = |items: Vec<(&String, &Vec<String>)>| -> Vec<Value> {
        items
            .into_iter()
            .map(|(n, a)| json!({"name": n, "aliases": a}))
            .collect()
    };
    Json(json!({
        "ragas": ragas,
        "talas": named(v.talas.iter().map(|t| (&t.name, &t.aliases)).collect()),
        "segments": named(v.segments.iter().map(|t| (&t.name, &t.aliases)).collect()),
        "instruments": named(v.instruments.iter().map(|t| (&t.name, &t.aliases)).collect()),
        "composers": named(v.composers.iter().map(|t| (&t.name, &t.aliases)).collect()),
        "shrutis": ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"],
    }))
}

/// The query of `GET /api/vocabulary/ragas`.
#[derive(Debug, Deserialize)]
pub struct RagaQuery {
    q: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/vocabulary/ragas?q=TEXT`: ragas matching a typed name, any
/// spelling or alias.
pub async fn search_ragas(Query(q): Query<RagaQuery>) -> Json<Value> {
    let limit = q.limit.unwrap_or(10).min(200);
    let found: Vec<Value> = Vocabulary::builtin()
        .search_ragas(q.q.as_deref().unwrap_or(""), limit)
        .into_iter()
        .map(|r| json!({"name": r.name, "aliases": r.aliases}))
        .collect();
    Json(json!({ "ragas": found }))
}

/// The query of `GET /api/caption`.
#[derive(Debug, Deserialize)]
pub struct CaptionQuery {
    raga: Option<String>,
    tala: Option<String>,
    segment: Option<String>,
    instrument: Option<String>,
    composer: Option<String>,
    shruti: Option<String>,
    text: Option<String>,
}

/// `GET /api/caption?raga=..&tala=..&segment=..&instrument=..&shruti=..&text=..`:
/// a caption in the words the model was trained on, names checked.
pub async fn caption(Query(q): Query<CaptionQuery>) -> Result<Json<Value>, ApiError> {
    fn given(s: &Option<String>) -> Option<&str> {
        s.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
    let v = Vocabulary::builtin();
    let mut parts = Vec::new();
    if let Some(raga) = given(&q.raga) {
        let fields = CaptionFields {
            raga: Some(v.raga(raga)?.name.clone()),
            tala: given(&q.tala)
                .map(|n| v.tala(n))
                .transpose()?
                .map(|t| t.name.clone()),
            segment: given(&q.segment)
                .map(|n| v.segment(n))
                .transpose()?
                .map(|t| t.name.clone()),
            composer: given(&q.composer)
                .map(|n| v.composer(n))
                .transpose()?
                .map(|t| t.name.clone()),
            instrument: given(&q.instrument)
                .map(|n| v.instrument(n))
                .transpose()?
                .map(|t| t.name.clone()),
            artist: None,
        };
        let key = crate::captions::stable_hash(&format!("{fields:?}"));
        parts.push(v.caption_naming_all(&fields, key));
    } else if given(&q.tala).or(given(&q.segment)).is_some() {
        return Err(ApiError::bad_field("raga", "choose a raga first"));
    }
    if let Some(s) = given(&q.shruti) {
        parse_tonic(s)?;
        parts.push(format!("shruti {s}"));
    }
    parts.extend(given(&q.text).map(str::to_string));
    Ok(Json(json!({ "caption": parts.join(", ") })))
}

/// `POST /api/jobs`.
pub async fn submit(State(app): Shared, request: Request) -> Result<Response, ApiError> {
    let bytes = read_body(request.into_body()).await?;
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_field("body", format!("not JSON: {e}")))?;
    let id = tokio::task::spawn_blocking(move || app.submit(body))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

/// A JSON body, at most [`MAX_JSON_BYTES`].
async fn read_body(body: axum::body::Body) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let (mut bytes, mut total) = (Vec::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_field("body", e.to_string()))?;
        total += chunk.len() as u64;
        if total <= MAX_JSON_BYTES as u64 {
            bytes.extend_from_slice(&chunk);
        } else if total > MAX_DRAIN_BYTES {
            break;
        }
    }
    if total > MAX_JSON_BYTES as u64 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a job body is at most {MAX_JSON_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// `GET /api/jobs`: every job, newest first.
pub async fn list_jobs(State(app): Shared) -> Json<Value> {
    let jobs: Vec<Value> = app.history.all().iter().map(|r| app.job_json(r)).collect();
    Json(json!({ "jobs": jobs }))
}

fn record(app: &AppState, id: JobId) -> Result<super::history::JobRecord, ApiError> {
    app.history
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// `GET /api/jobs/{id}`.
pub async fn get_job(State(app): Shared, Path(id): Path<JobId>) -> Result<Json<Value>, ApiError> {
    Ok(Json(app.job_json(&record(&app, id)?)))
}

/// `DELETE /api/jobs/{id}`: cancels a waiting or running job.
pub async fn cancel_job(
    State(app): Shared,
    Path(id): Path<JobId>,
) -> Result<Json<Value>, ApiError> {
    let r = record(&app, id)?;
    if !app.queue.cancel(id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} has already ended ({})", app.job_json(&r)["state"]),
        ));
    }
    Ok(Json(json!({"id": id, "cancelling": true})))
}

/// `POST /api/jobs/{id}/resume`: runs an interrupted, cancelled or failed
/// job again into its folder (a diffusion job goes on from its saved
/// state); answers 202 `{"id"}`.
pub async fn resume_job(State(app): Shared, Path(id): Path<JobId>) -> Result<Response, ApiError> {
    tokio::task::spawn_blocking(move || app.resume(id))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

/// `GET /api/jobs/{id}/files/{name}`: a file the job wrote, by its name
/// in the job's listing (byte ranges served).
pub async fn job_file(
    State(app): Shared,
    Path((id, name)): Path<(JobId, String)>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    record(&app, id)?;
    if !app.history.files(id).iter().any(|(n, _)| *n == name) {
        return Err(ApiError::not_found(format!(
            "job {id} has no file {name:?}"
        )));
    }
    super::files::serve_file(&app.history.job_dir(id).join(&name), &name, &headers).await
}

/// `POST /api/uploads`: one file in the multipart field `file`, at most
/// the server's upload limit, recognised by content (audio, a video or a
/// spectrogram PNG). Answers `{"id", "kind", "format", "bytes", "name"}`.
pub async fn upload(State(app): Shared, mut form: Multipart) -> Result<Response, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        let too_big = e.status() == StatusCode::PAYLOAD_TOO_LARGE;
        ApiError {
            status: e.status(),
            error: if too_big {
                format!("uploads are at most {} bytes", app.options.max_upload_bytes)
            } else {
                e.body_text()
            },
            field: Some("file".into()),
        }
    };
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        if field.name() != Some("file") {
            continue;
        }
        let original = field.file_name().unwrap_or("upload").to_string();
        let tmp = app
            .uploads
            .dir()
            .join(format!(".upload-{}.tmp", rand::random::<u64>()));
        let result = receive(&app, &mut field, &tmp).await;
        let (format, bytes) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(match e {
                    Receive::Form(e) => bad(e),
                    Receive::Api(e) => e,
                });
            }
        };
        let id = Uploads::new_id(format);
        let dest = app.uploads.dir().join(&id);
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let name: String = original
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let answer = json!({"id": id, "kind": format.kind, "format": format.ext,
                            "bytes": bytes, "name": name});
        return Ok((StatusCode::CREATED, Json(answer)).into_response());
    }
    Err(ApiError::bad_field(
        "file",
        "no multipart field named `file`",
    ))
}

enum Receive {
    Form(axum::extract::multipart::MultipartError),
    Api(ApiError),
}

/// Streams a field into `tmp`, checking its first bytes and its size.
async fn receive(
    app: &AppState,
    field: &mut axum::extract::multipart::Field<'_>,
    tmp: &std::path::Path,
) -> Result<(super::uploads::Format, u64), Receive> {
    let io = |e: std::io::Error| {
        Receive::Api(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ))
    };
    let mut file = tokio::fs::File::create(tmp).await.map_err(io)?;
    let mut head: Vec<u8> = Vec::new();
    let mut format = None;
    let mut total: u64 = 0;
    let limit = app.options.max_upload_bytes;
    while let Some(chunk) = field.chunk().await.map_err(Receive::Form)? {
        total += chunk.len() as u64;
        if total > limit {
            // read on (up to a bound) without keeping it, then refuse
            if total > limit.saturating_add(MAX_DRAIN_BYTES) {
                break;
            }
            continue;
        }
        if format.is_none() {
            head.extend_from_slice(&chunk[..chunk.len().min(SNIFF_BYTES)]);
            if head.len() >= SNIFF_BYTES {
                format = Some(recognise(&head)?);
            }
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    if total > limit {
        return Err(Receive::Api(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            error: format!("uploads are at most {limit} bytes"),
            field: Some("file".into()),
        }));
    }
    let format = match format {
        Some(f) => f,
        None => recognise(&head)?,
    };
    Ok((format, total))
}

fn recognise(head: &[u8]) -> Result<super::uploads::Format, Receive> {
    sniff(head).ok_or_else(|| {
        Receive::Api(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error: "not audio (WAV, FLAC, MP3, Ogg Vorbis or Opus, M4A, AIFF), a video \
                    (MP4, MOV, MKV, WebM) or a PNG, judging by its first bytes"
                .into(),
            field: Some("file".into()),
        })
    })
}

/// `GET /api/reports`: the compare reports under the server's reports
/// folder.
pub async fn list_reports(State(app): Shared) -> Json<Value> {
    let root = app.options.reports_dir.clone();
    let found = tokio::task::spawn_blocking(move || reports::list(&root))
        .await
        .unwrap_or_default();
    Json(json!({ "reports": found }))
}

/// `GET /api/reports/{id}`: one report's HTML, sandboxed.
pub async fn report(State(app): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let root = app.options.reports_dir.clone();
    let found = tokio::task::spawn_blocking(move || reports::list(&root))
        .await
        .unwrap_or_default();
    let Some(r) = found.into_iter().find(|r| r.id == id) else {
        return Err(ApiError::not_found(format!("no report {id}")));
    };
    let html = tokio::fs::read(&r.file)
        .await
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let mut response = Bytes::from(html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // its own scripts run, in an origin of its own: no cookies, no API
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox allow-scripts"),
    );
    Ok(response)
}
