//! The one place where errors become HTTP responses.
//!
//! Why it exists: clients script against `{code, message}`; the codes must be stable and the
//! mapping must live in one spot, not be re-decided in every handler. Each domain error type
//! (store, audit, grants, Okta, …) implements [`ErrorCode`] next to its definition, and handlers
//! return [`ApiError`], which any such error converts into with `?`.
//!
//! What it must never do: put an internal cause (SQL text, a Redis URL, a secret) in the
//! response body of a 5xx. The full chain is logged once, here; the client gets a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Implemented by every error that can reach an HTTP client.
pub trait ErrorCode {
    fn status(&self) -> StatusCode;
    /// Stable, machine-readable, snake_case. Never change one once released.
    fn code(&self) -> &'static str;
    /// Machine-readable facts a client acts on (the pending request's id behind a 409), sent as
    /// `details`. Never internal causes.
    fn details(&self) -> Option<serde_json::Value> {
        None
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// An error on its way to a client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
    /// Kept for the log line; never sent.
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            source: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl<E> From<E> for ApiError
where
    E: ErrorCode + std::error::Error + Send + Sync + 'static,
{
    fn from(e: E) -> Self {
        let status = e.status();
        let code = e.code();
        let message = if status.is_server_error() {
            // Internal detail stays in the log.
            "internal error; see the broker's log for this request id".to_string()
        } else {
            e.to_string()
        };
        let details = if status.is_server_error() {
            None
        } else {
            e.details()
        };
        ApiError {
            status,
            code,
            message,
            details,
            source: Some(Box::new(e)),
        }
    }
}

/// Renders an error and its `#[source]` chain on one line, for the single log entry.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            let detail = self
                .source
                .as_deref()
                .map(|s| chain(s as &(dyn std::error::Error + 'static)))
                .unwrap_or_else(|| self.message.clone());
            tracing::error!(code = self.code, error = %detail, "request failed");
        } else {
            tracing::debug!(code = self.code, message = %self.message, "request refused");
        }
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message,
            details: self.details,
        };
        (self.status, Json(body)).into_response()
    }
}
