//! The API's errors: `{"error": ..., "field": ...}` with the status that
//! fits.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::Error;

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub error: String,
    /// The request field at fault (snake_case), if one is.
    pub field: Option<String>,
}

impl ApiError {
    /// An error with no field.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            field: None,
        }
    }

    /// A 400 naming the field at fault.
    pub fn bad_field(field: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: error.into(),
            field: Some(field.into()),
        }
    }

    /// A 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::InvalidParameter { field, reason } => {
                let field = field.replace('-', "_");
                Self::bad_field(field.clone(), format!("{field}: {reason}"))
            }
            Error::UnknownName { kind, .. } => Self::bad_field(*kind, e.to_string()),
            Error::QueueFull { .. } => Self::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
            Error::Tool { .. } => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.report()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.error, "field": self.field}));
        (self.status, body).into_response()
    }
}
