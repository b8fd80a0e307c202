//! Everything that can go wrong talking to Okta, classified retryable or permanent.
//!
//! Why it exists: the expiry worker's whole retry policy (I8) hangs on one question, "will
//! trying again help?", and the answer must be decided once, here, from Okta's `errorCode`
//! and status, not re-guessed by every caller.
//!
//! What it must never do: carry a credential (tokens never reach an error message), or call a
//! permanent refusal retryable (Teleport #53947 loops forever on exactly that).

use axum::http::StatusCode;
use serde::Deserialize;

use crate::error::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum OktaError {
    /// Okta answered with an error body.
    #[error("Okta answered {status} {error_code}: {error_summary} (errorId {error_id:?}, request {request_id:?})")]
    Api {
        status: u16,
        error_code: String,
        error_summary: String,
        error_id: Option<String>,
        request_id: Option<String>,
    },
    #[error("cannot reach Okta")]
    Transport(#[source] reqwest::Error),
    #[error("Okta did not answer within the request timeout")]
    Timeout,
    /// The user holds the app through a group assignment (scope GROUP): it cannot be removed
    /// per user, and retrying will never change that.
    #[error("user {user_id} holds app {app_id} through a group assignment; it cannot be removed per user")]
    InheritedAccess { app_id: String, user_id: String },
    /// The credential's capabilities (probed at start) do not allow this change.
    #[error("the broker's Okta credential lacks the `{capability}` capability")]
    NotPermitted { capability: &'static str },
    /// Okta's body was not the JSON we expected.
    #[error("unexpected response body from Okta for {op}")]
    Decode {
        op: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Okta's answer made no sense (a pagination link to another host, a missing field).
    #[error("unexpected response from Okta: {0}")]
    Protocol(String),
    /// The OAuth token endpoint refused or failed.
    #[error("Okta's token endpoint answered {status}: {error}")]
    TokenEndpoint { status: u16, error: String },
    #[error("cannot sign the OAuth client assertion")]
    Signing(#[source] jsonwebtoken::errors::Error),
    #[error("Okta client misconfigured: {0}")]
    Config(String),
    /// An id the caller passed cannot be an Okta id (empty, `.`/`..`, control characters).
    #[error("invalid Okta id: {0:?}")]
    InvalidId(String),
}

impl OktaError {
    /// Will the same call, tried again later, plausibly succeed?
    pub fn is_retryable(&self) -> bool {
        match self {
            OktaError::Api {
                status, error_code, ..
            } => {
                *status == 429
                    || *status >= 500
                    // "role assignments are being changed concurrently": transient by definition.
                    || error_code == "E0000268"
            }
            OktaError::Transport(_) | OktaError::Timeout => true,
            OktaError::TokenEndpoint { status, .. } => *status == 429 || *status >= 500,
            OktaError::InheritedAccess { .. }
            | OktaError::NotPermitted { .. }
            | OktaError::Decode { .. }
            | OktaError::Protocol(_)
            | OktaError::Signing(_)
            | OktaError::Config(_)
            | OktaError::InvalidId(_) => false,
        }
    }

    /// Okta's `errorCode` (E0000…), when Okta sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            OktaError::Api { error_code, .. } if !error_code.is_empty() => Some(error_code),
            _ => None,
        }
    }

    /// The HTTP status Okta answered, when it did.
    pub fn status(&self) -> Option<u16> {
        match self {
            OktaError::Api { status, .. } | OktaError::TokenEndpoint { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> OktaError {
        if e.is_timeout() {
            OktaError::Timeout
        } else {
            OktaError::Transport(e)
        }
    }

    /// Builds an [`OktaError::Api`] from a non-success response body (tolerating a body that
    /// is not Okta's error JSON, such as a proxy's HTML page).
    pub(crate) fn from_body(status: u16, body: &[u8], request_id: Option<String>) -> OktaError {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            #[serde(default)]
            error_code: String,
            #[serde(default)]
            error_summary: String,
            #[serde(default)]
            error_id: Option<String>,
        }
        let parsed: Option<Body> = serde_json::from_slice(body).ok();
        match parsed {
            Some(b) => OktaError::Api {
                status,
                error_code: b.error_code,
                error_summary: b.error_summary,
                error_id: b.error_id,
                request_id,
            },
            None => OktaError::Api {
                status,
                error_code: String::new(),
                error_summary: format!("HTTP {status} without an Okta error body"),
                error_id: None,
                request_id,
            },
        }
    }
}

impl ErrorCode for OktaError {
    fn status(&self) -> StatusCode {
        match self {
            OktaError::InheritedAccess { .. } => StatusCode::CONFLICT,
            OktaError::NotPermitted { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            OktaError::InvalidId(_) => StatusCode::BAD_REQUEST,
            OktaError::Config(_) | OktaError::Signing(_) => StatusCode::INTERNAL_SERVER_ERROR,
            e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            OktaError::InheritedAccess { .. } => "okta_inherited_access",
            OktaError::NotPermitted { .. } => "okta_not_permitted",
            OktaError::InvalidId(_) => "okta_invalid_id",
            OktaError::Config(_) | OktaError::Signing(_) => "okta_misconfigured",
            e if e.is_retryable() => "okta_unavailable",
            _ => "okta_error",
        }
    }
}
