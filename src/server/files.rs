//! Serving a job's file: streamed from disk in chunks (a long piece's WAV
//! is hundreds of MB), with one byte range when asked (`Range: bytes=A-B`),
//! so players can seek.

use std::path::Path;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::api_error::ApiError;

/// Bytes read per chunk.
const CHUNK_BYTES: usize = 256 * 1024;

/// The MIME type of an output file, by the extensions the engine writes.
fn mime(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("wav") => "audio/wav",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("csv") => "text/csv",
        Some("mp4") => "video/mp4",
        Some("mov") => "video/quicktime",
        Some("webm") => "video/webm",
        Some("mkv") => "video/x-matroska",
        _ => "application/octet-stream",
    }
}

/// What part of a file a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// All of it (no range, or not one byte range).
    Whole,
    /// `count` bytes from `start`.
    Range {
        /// First byte.
        start: u64,
        /// Bytes.
        count: u64,
    },
    /// A range outside the file.
    Unsatisfiable,
}

/// The part a `Range: bytes=A-B`, `bytes=A-` or `bytes=-N` header asks of
/// a file of `len` bytes.
pub fn byte_range(header: Option<&str>, len: u64) -> Part {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Part::Whole;
    };
    let Some((a, b)) = spec.split_once('-').filter(|_| !spec.contains(',')) else {
        return Part::Whole;
    };
    let last = len.saturating_sub(1);
    let (start, end) = match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
        _ if a.trim().is_empty() => match b.trim().parse::<u64>() {
            Ok(n) => (len.saturating_sub(n), last),
            Err(_) => return Part::Unsatisfiable,
        },
        (Ok(a), _) if b.trim().is_empty() => (a, last),
        (Ok(a), Ok(b)) => (a, b.min(last)),
        _ => return Part::Unsatisfiable,
    };
    if len == 0 || start > end || start >= len {
        return Part::Unsatisfiable;
    }
    Part::Range {
        start,
        count: end - start + 1,
    }
}

/// The file at `path` (named `name` for its type and download name) as an
/// answer to a request with `headers`.
pub async fn serve_file(
    path: &Path,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let gone = |e: std::io::Error| ApiError::not_found(format!("{name}: {e}"));
    let mut file = tokio::fs::File::open(path).await.map_err(gone)?;
    let len = file.metadata().await.map_err(gone)?.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, count) = match byte_range(range, len) {
        Part::Range { start, count } => (StatusCode::PARTIAL_CONTENT, start, count),
        Part::Whole => (StatusCode::OK, 0, len),
        Part::Unsatisfiable => {
            let mut r = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("{name} is {len} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(gone)?;
    let chunks = futures_util::stream::unfold((Some(file), count), |(file, left)| async move {
        let mut file = file?;
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; CHUNK_BYTES.min(left as usize)];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (Some(file), left - n as u64)))
            }
            Err(e) => Some((Err(e), (None, 0))),
        }
    });
    let mut response = (status, Body::from_stream(chunks)).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime(name)));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + count - 1;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |start, count| Part::Range { start, count };
        assert_eq!(byte_range(None, 100), Part::Whole);
        assert_eq!(byte_range(Some("bytes=0-9"), 100), r(0, 10));
        assert_eq!(byte_range(Some("bytes=90-"), 100), r(90, 10));
        assert_eq!(byte_range(Some("bytes=-5"), 100), r(95, 5));
        assert_eq!(byte_range(Some("bytes=50-500"), 100), r(50, 50));
        assert_eq!(byte_range(Some("bytes=0-1,5-6"), 100), Part::Whole);
        assert_eq!(byte_range(Some("items=0-3"), 100), Part::Whole);
        for bad in ["bytes=100-", "bytes=9-3", "bytes=x-3", "bytes=-x"] {
            assert_eq!(byte_range(Some(bad), 100), Part::Unsatisfiable, "{bad}");
        }
    }
}
