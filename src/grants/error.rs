//! Errors of the grants domain, each with a stable code.

use axum::http::StatusCode;

use super::lock::LockError;
use crate::audit::AuditError;
use crate::error::ErrorCode;
use crate::okta::OktaError;
use crate::scheduler::SchedulerError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("no resource named `{0}` in the policy")]
    UnknownResource(String),
    #[error("{0}")]
    InvalidDuration(String),
    #[error("duration {requested} exceeds the resource's maximum of {max}")]
    DurationTooLong { requested: String, max: String },
    #[error(
        "extension refused: the grant may last until {latest} at most (now + max_duration {max})"
    )]
    ExtensionTooLong { latest: String, max: String },
    #[error("resource `{0}` requires a reason")]
    ReasonRequired(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("no Okta user `{0}`")]
    UnknownUser(String),
    #[error("Okta user `{user}` is {status}, not ACTIVE")]
    UserNotActive { user: String, status: String },
    #[error("no grant `{0}`")]
    NotFound(String),
    #[error("grant is {0}: only an active grant can be extended")]
    NotActive(&'static str),
    #[error("the grant changed concurrently; read it again and retry")]
    Conflict,
    /// The authorization rules refused (see [`crate::authz::decide`]).
    #[error(transparent)]
    Denied(#[from] crate::authz::Denied),
    #[error("Okta is not configured (`okta.base_url` is empty): grants are unavailable")]
    OktaNotConfigured,
    #[error("Okta refused or failed the call")]
    Okta(#[from] OktaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A batched commit (see `grants::commit`) failed; the text is the shared cause, which
    /// cannot be handed to every waiter as a typed error. Nothing of the batch was committed.
    #[error("the batched commit failed: {0}")]
    GroupCommit(String),
}

impl From<sqlx::Error> for GrantError {
    fn from(e: sqlx::Error) -> Self {
        GrantError::Store(StoreError::Query(e))
    }
}

impl ErrorCode for GrantError {
    fn status(&self) -> StatusCode {
        use GrantError::*;
        match self {
            UnknownResource(_)
            | InvalidDuration(_)
            | DurationTooLong { .. }
            | ExtensionTooLong { .. }
            | ReasonRequired(_)
            | InvalidInput(_)
            | UnknownUser(_)
            | UserNotActive { .. } => StatusCode::BAD_REQUEST,
            NotFound(_) => StatusCode::NOT_FOUND,
            NotActive(_) | Conflict => StatusCode::CONFLICT,
            Denied(e) => e.status(),
            OktaNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            Okta(e) => ErrorCode::status(e),
            Store(e) => e.status(),
            Audit(e) => e.status(),
            Scheduler(e) => e.status(),
            Lock(_) | GroupCommit(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        use GrantError::*;
        match self {
            UnknownResource(_) => "unknown_resource",
            InvalidDuration(_) => "invalid_duration",
            DurationTooLong { .. } => "duration_exceeds_max",
            ExtensionTooLong { .. } => "extension_exceeds_max",
            ReasonRequired(_) => "reason_required",
            InvalidInput(_) => "invalid_input",
            UnknownUser(_) => "unknown_user",
            UserNotActive { .. } => "user_not_active",
            NotFound(_) => "not_found",
            NotActive(_) => "grant_not_active",
            Conflict => "concurrent_update",
            Denied(e) => e.code(),
            OktaNotConfigured => "okta_not_configured",
            Okta(e) => ErrorCode::code(e),
            Store(e) => e.code(),
            Audit(e) => e.code(),
            Scheduler(e) => e.code(),
            Lock(LockError::Busy) => "access_busy",
            Lock(LockError::Redis(_)) => "redis_unavailable",
            GroupCommit(_) => "store_unavailable",
        }
    }
}
