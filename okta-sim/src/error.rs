//! Okta-shaped error bodies.
//!
//! Why it exists: clients branch on `errorCode`, so every refusal the simulator makes must carry
//! the exact code, status and summary Okta uses (see `error-codes.json` in the shared Okta facts),
//! plus a fresh `errorId` and an `errorCauses` array (empty when Okta sends none).
//!
//! What it must never do: invent codes Okta does not have, or answer an error without the body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ids;

/// One Okta API error, rendered as `{errorCode, errorSummary, errorLink, errorId, errorCauses}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {summary}")]
pub struct OktaError {
    pub status: StatusCode,
    pub code: &'static str,
    pub summary: String,
    pub causes: Vec<String>,
}

impl OktaError {
    pub fn new(status: StatusCode, code: &'static str, summary: impl Into<String>) -> Self {
        Self {
            status,
            code,
            summary: summary.into(),
            causes: Vec::new(),
        }
    }

    pub fn with_cause(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self
    }

    /// E0000007: `Not found: Resource not found: <id> (<Type>)`, exactly as recorded.
    pub fn not_found(id: &str, kind: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "E0000007",
            format!("Not found: Resource not found: {id} ({kind})"),
        )
    }

    /// E0000001: validation failed; `detail` goes into the summary after the colon.
    pub fn validation(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "E0000001",
            format!("Api validation failed: {detail}"),
        )
    }

    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "E0000011",
            "Invalid token provided",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "E0000006",
            "You do not have permission to perform the requested action",
        )
    }

    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
        )
    }

    pub fn invalid_paging() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "E0000029",
            "Invalid paging request.",
        )
        .with_cause("Invalid cursor.")
    }

    pub fn invalid_search() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "E0000031",
            "Invalid search criteria.",
        )
    }

    pub fn wrong_status() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "E0000038",
            "This operation is not allowed in the user's current status.",
        )
    }

    pub fn length_required() -> Self {
        // Real Okta's 411 comes from its front proxy and its body is unrecorded (unverified);
        // an Okta-shaped body is the tolerant choice: clients branch on the status here.
        Self::new(
            StatusCode::LENGTH_REQUIRED,
            "E0000003",
            "The request body was not well-formed.",
        )
        .with_cause("Content-Length header is required for PUT and POST requests.")
    }

    /// An injected server error: 503 uses Okta's "temporarily unavailable", others E0000009.
    pub fn internal(status: StatusCode) -> Self {
        if status == StatusCode::SERVICE_UNAVAILABLE {
            Self::new(status, "E0000181", "Service temporarily unavailable.")
        } else {
            Self::new(status, "E0000009", "Internal Server Error")
        }
    }

    /// The JSON body Okta sends.
    pub fn body(&self) -> serde_json::Value {
        let causes: Vec<_> = self
            .causes
            .iter()
            .map(|c| json!({ "errorSummary": c }))
            .collect();
        json!({
            "errorCode": self.code,
            "errorSummary": self.summary,
            "errorLink": self.code,
            "errorId": ids::error_id(),
            "errorCauses": causes,
        })
    }
}

impl IntoResponse for OktaError {
    fn into_response(self) -> Response {
        crate::http_util::json_response(self.status, &self.body())
    }
}

/// Errors from starting the simulator (library API).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("could not bind the listener: {0}")]
    Bind(#[source] std::io::Error),
    #[error("invalid seed: {0}")]
    Seed(String),
    #[error("could not read seed file: {0}")]
    SeedFile(#[source] std::io::Error),
    #[error("could not parse seed file: {0}")]
    SeedParse(#[source] serde_json::Error),
    #[error("invalid OAuth public key: {0}")]
    OAuthKey(#[source] jsonwebtoken::errors::Error),
}
