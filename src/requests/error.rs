//! Errors of the requests domain, each with a stable code (what every channel shows people).

use axum::http::StatusCode;

use crate::audit::AuditError;
use crate::authz::Denied;
use crate::error::ErrorCode;
use crate::grants::GrantError;
use crate::okta::OktaError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no resource named `{0}` in the policy")]
    UnknownResource(String),
    #[error("you are not eligible to request `{0}`")]
    NotEligible(String),
    #[error("{0}")]
    InvalidDuration(String),
    #[error("duration {requested} exceeds the resource's maximum of {max}")]
    DurationTooLong { requested: String, max: String },
    #[error("resource `{0}` requires a reason")]
    ReasonRequired(String),
    #[error("resource `{resource}` requires a ticket reference matching `{pattern}`")]
    TicketRequired { resource: String, pattern: String },
    #[error("ticket `{ticket}` does not match `{pattern}`")]
    InvalidTicket { ticket: String, pattern: String },
    #[error("{0}")]
    InvalidInput(String),
    #[error("no Okta user `{0}`")]
    UnknownUser(String),
    #[error("Okta user `{user}` is {status}, not ACTIVE")]
    UserNotActive { user: String, status: String },
    #[error("a request for `{resource}` is already pending: {id}")]
    AlreadyPending { id: String, resource: String },
    #[error("you already hold `{resource}` through grant {grant_id}: ask to extend it instead (POST /v1/grants/{grant_id}/extend)")]
    AlreadyGranted { grant_id: String, resource: String },
    #[error("resource `{0}` has no break-glass procedure")]
    BreakGlassNotAllowed(String),
    #[error(
        "break-glass duration {requested} exceeds the resource's break-glass maximum of {max}"
    )]
    BreakGlassTooLong { requested: String, max: String },
    #[error("no request `{0}`")]
    NotFound(String),
    #[error("the request is {0}: it can no longer be decided")]
    NotPending(&'static str),
    #[error("the request expired unanswered")]
    Expired,
    #[error("you have already decided on this request")]
    AlreadyDecided,
    #[error("the request changed concurrently; try again")]
    Conflict,
    /// The authorization rules refused (see [`crate::authz::decide`]).
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("Okta refused or failed the call")]
    Okta(#[from] OktaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl From<sqlx::Error> for RequestError {
    fn from(e: sqlx::Error) -> Self {
        RequestError::Store(StoreError::Query(e))
    }
}

impl ErrorCode for RequestError {
    fn status(&self) -> StatusCode {
        use RequestError::*;
        match self {
            UnknownResource(_)
            | InvalidDuration(_)
            | DurationTooLong { .. }
            | ReasonRequired(_)
            | TicketRequired { .. }
            | InvalidTicket { .. }
            | InvalidInput(_)
            | UnknownUser(_)
            | UserNotActive { .. }
            | BreakGlassNotAllowed(_)
            | BreakGlassTooLong { .. } => StatusCode::BAD_REQUEST,
            NotEligible(_) => StatusCode::FORBIDDEN,
            Denied(e) => e.status(),
            NotFound(_) => StatusCode::NOT_FOUND,
            AlreadyPending { .. }
            | AlreadyGranted { .. }
            | NotPending(_)
            | Expired
            | AlreadyDecided
            | Conflict => StatusCode::CONFLICT,
            Grant(e) => e.status(),
            Okta(e) => ErrorCode::status(e),
            Store(e) => e.status(),
            Audit(e) => e.status(),
        }
    }

    fn code(&self) -> &'static str {
        use RequestError::*;
        match self {
            UnknownResource(_) => "unknown_resource",
            NotEligible(_) => "not_eligible",
            InvalidDuration(_) => "invalid_duration",
            DurationTooLong { .. } => "duration_exceeds_max",
            ReasonRequired(_) => "reason_required",
            TicketRequired { .. } => "ticket_required",
            InvalidTicket { .. } => "invalid_ticket",
            InvalidInput(_) => "invalid_input",
            UnknownUser(_) => "unknown_user",
            UserNotActive { .. } => "user_not_active",
            AlreadyPending { .. } => "request_already_pending",
            AlreadyGranted { .. } => "already_granted",
            BreakGlassNotAllowed(_) => "break_glass_not_allowed",
            BreakGlassTooLong { .. } => "break_glass_duration_exceeds_max",
            NotFound(_) => "not_found",
            NotPending(_) => "request_not_pending",
            Expired => "request_expired",
            AlreadyDecided => "already_decided",
            Conflict => "concurrent_update",
            Denied(e) => e.code(),
            Grant(e) => e.code(),
            Okta(e) => ErrorCode::code(e),
            Store(e) => e.code(),
            Audit(e) => e.code(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            RequestError::AlreadyPending { id, .. } => {
                Some(serde_json::json!({ "request_id": id }))
            }
            RequestError::AlreadyGranted { grant_id, .. } => Some(
                serde_json::json!({ "grant_id": grant_id, "extend": format!("/v1/grants/{grant_id}/extend") }),
            ),
            _ => None,
        }
    }
}
