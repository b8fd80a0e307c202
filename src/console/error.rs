//! Errors of the console, and the sentences people read for every code.
//!
//! Why it exists: the console shows errors as pages, not JSON, but its codes are the same stable
//! `code`s as the API's (mapped once through [`ErrorCode`]); [`sentence`] turns any code,
//! including the requests and grants domains', into one plain sentence.
//!
//! What it must never do: show an internal cause (SQL, Okta's answer, a token) on a page.

use axum::http::StatusCode;

use crate::error::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("the console is not configured")]
    NotConfigured,
    #[error("sign in first")]
    SignInRequired,
    #[error("the sign-in was refused: {0}")]
    SignInRejected(String),
    #[error("this sign-in link is unknown, used or too old")]
    BadState,
    /// A callback whose `state` is not sealed in this browser's sign-in cookie: started in
    /// another browser (login CSRF), or longer ago than `console.login_timeout`.
    #[error("this sign-in was not started in this browser, or took too long")]
    NotStartedHere,
    #[error("the form's security token is missing or wrong")]
    Csrf,
    #[error("Okta could not be reached: {0}")]
    Okta(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("not found")]
    NotFound,
    #[error("Okta is not configured on this broker")]
    OktaNotConfigured,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("page rendering failed: {0}")]
    Render(#[from] askama::Error),
}

impl From<crate::audit::AuditError> for ConsoleError {
    fn from(e: crate::audit::AuditError) -> Self {
        match e {
            crate::audit::AuditError::Store(e) => ConsoleError::Store(e),
            other => ConsoleError::Store(crate::store::StoreError::Corrupt(other.to_string())),
        }
    }
}

impl From<sqlx::Error> for ConsoleError {
    fn from(e: sqlx::Error) -> Self {
        ConsoleError::Store(crate::store::StoreError::Query(e))
    }
}

impl ErrorCode for ConsoleError {
    fn status(&self) -> StatusCode {
        use ConsoleError::*;
        match self {
            NotConfigured => StatusCode::NOT_FOUND,
            SignInRequired | SignInRejected(_) | BadState | NotStartedHere => {
                StatusCode::UNAUTHORIZED
            }
            Csrf => StatusCode::FORBIDDEN,
            Okta(_) => StatusCode::BAD_GATEWAY,
            InvalidInput(_) => StatusCode::BAD_REQUEST,
            NotFound => StatusCode::NOT_FOUND,
            OktaNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            Store(e) => e.status(),
            Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        use ConsoleError::*;
        match self {
            NotConfigured => "console_not_configured",
            SignInRequired => "unauthenticated",
            SignInRejected(_) => "sign_in_rejected",
            BadState => "invalid_state",
            NotStartedHere => "sign_in_not_started_here",
            Csrf => "csrf_invalid",
            Okta(_) => "okta_unavailable",
            InvalidInput(_) => "invalid_input",
            NotFound => "not_found",
            OktaNotConfigured => "okta_not_configured",
            Store(e) => e.code(),
            Render(_) => "internal_error",
        }
    }
}

/// The sentence a person reads for an error code (the API's and the console's).
pub fn sentence(code: &str) -> &'static str {
    match code {
        "unauthenticated" => "Please sign in to continue.",
        "sign_in_rejected" => "Okta's answer could not be trusted, so you were not signed in. Try again.",
        "invalid_state" => "That sign-in link is unknown, already used or too old. Start again.",
        "sign_in_not_started_here" => "This sign-in was not started in this browser, or it took too long, so it was not completed. If someone sent you this link, do not use it. Sign in again from here.",
        "csrf_invalid" => "This form was out of date or did not come from this console. Reload the page and try again.",
        "forbidden" => "You do not have permission to do that.",
        "okta_unavailable" => "Okta did not answer. Try again in a moment.",
        "console_not_configured" => "The console is not configured on this broker.",
        "not_found" => "There is nothing here (it may have been removed).",
        "unknown_resource" => "That resource is not in the policy.",
        "not_eligible" => "You are not eligible to request this resource.",
        "invalid_duration" => "The duration is not valid. Write it like 30m, 2h or 1h30m.",
        "duration_exceeds_max" => "That is longer than this resource allows.",
        "reason_required" => "This resource needs a reason.",
        "ticket_required" => "This resource needs a ticket reference.",
        "invalid_ticket" => "The ticket reference does not have the expected form.",
        "invalid_input" => "Some of what you entered is not valid.",
        "unknown_user" => "Okta does not know that user.",
        "user_not_active" => "That Okta user is not active.",
        "request_already_pending" => "You already have a pending request for this resource.",
        "already_granted" => "You already hold this access; extend it instead.",
        "break_glass_not_allowed" => "This resource has no break-glass procedure.",
        "request_not_pending" => "This request has already been decided or cancelled.",
        "request_expired" => "This request expired without an answer.",
        "self_approval" => "You cannot approve your own request.",
        "not_approver" => "You are not an approver of this request's current stage.",
        "already_decided" => "You have already decided on this request.",
        "step_up_required" => "Approving this resource needs a fresh Okta sign-in.",
        "concurrent_update" => "Someone changed this at the same moment. Try again.",
        "grant_not_active" | "not_active" => "This access is no longer active.",
        "unknown_campaign" | "unknown_item" => "That review campaign or item does not exist.",
        "not_your_item" => "That item is not yours to review.",
        "self_review" => "You cannot review your own access; the campaign's fallback reviewer will.",
        "campaign_closed" => "This review campaign is closed: its decisions can no longer change.",
        "not_recurring" => "This campaign does not recur.",
        "okta_not_configured" => "Okta is not configured on this broker.",
        "database_unavailable" | "redis_unavailable" => "The broker's storage is unavailable. Try again shortly.",
        _ => "Something went wrong. Try again, or give the request id below to an administrator.",
    }
}

/// An error from any domain, as the console shows it: status, code, and the sentence.
pub struct Shown {
    pub status: StatusCode,
    pub code: &'static str,
    /// The domain's own message when it is safe to show (4xx), else empty.
    pub detail: String,
}

impl<E> From<E> for Shown
where
    E: ErrorCode + std::error::Error + Send + Sync + 'static,
{
    fn from(e: E) -> Self {
        let api = ApiError::from(e);
        if api.status.is_server_error() {
            // Logged once here with the cause; the page shows only the sentence.
            let detail = api
                .source
                .as_deref()
                .map(|s| crate::error::chain(s as &(dyn std::error::Error + 'static)))
                .unwrap_or_default();
            tracing::error!(code = api.code, error = %detail, "console request failed");
        }
        Shown {
            status: api.status,
            code: api.code,
            detail: if api.status.is_server_error() {
                String::new()
            } else {
                api.message
            },
        }
    }
}
