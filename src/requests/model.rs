//! The request record, its states, decisions, and who acts through which channel.
//!
//! Lifecycle: `pending → approved | denied | cancelled | expired`, and `approved → failed` when
//! the grant cannot be made. An approved access request is
//! owed exactly one grant (`grants.request_id` is unique); an approved extension request has
//! extended its grant. A break-glass request is `approved` at once with `review_pending` set until
//! an approver confirms it or denies it (a deny revokes the grant).

use serde::{Deserialize, Serialize};

use crate::grants::Grant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    Pending,
    Approved,
    Denied,
    Cancelled,
    Expired,
    /// Approved, but the grant could not be made (the user left, the policy changed).
    Failed,
}

impl RequestState {
    pub const ALL: [RequestState; 6] = [
        RequestState::Pending,
        RequestState::Approved,
        RequestState::Denied,
        RequestState::Cancelled,
        RequestState::Expired,
        RequestState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
            RequestState::Cancelled => "cancelled",
            RequestState::Expired => "expired",
            RequestState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// What is asked for: new access, or more time on an active grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    Access,
    Extension,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Access => "access",
            RequestKind::Extension => "extension",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "access" => Some(RequestKind::Access),
            "extension" => Some(RequestKind::Extension),
            _ => None,
        }
    }
}

/// One request, as stored. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    /// The Okta user who would get the access.
    pub user_id: String,
    pub user_login: String,
    pub resource: String,
    pub kind: RequestKind,
    /// Extension: the grant to extend. Access: the grant made once approved (also findable by
    /// `grants.request_id`).
    pub grant_id: Option<String>,
    pub duration_ms: i64,
    pub reason: String,
    pub ticket: Option<String>,
    /// Who submitted it: the user themself, or an admin or portal acting on their behalf.
    pub requested_by: String,
    /// The channel it came through (`api`, `slack`, `console`, `cli`, `callback:<name>`).
    pub channel: String,
    pub state: RequestState,
    pub break_glass: bool,
    /// Break-glass only: granted at once, waiting for an approver's after-the-fact decision.
    pub review_pending: bool,
    pub created_at: i64,
    /// A pending request expires at this time (the resource's `pending_timeout`).
    pub expires_at: i64,
    pub decided_at: Option<i64>,
    /// Why it ended: the deny comment, `cancelled by …`, `pending timeout`, `policy`.
    pub end_reason: Option<String>,
    /// What the policy's automatic approval made of it, when it was more than "named": which
    /// on-call source and schedule approved it, or why it could not (a source down, slow or
    /// rate-limiting; outside the auto-approval windows), for the requester to read.
    #[serde(default)]
    pub auto_approval: Option<AutoApproval>,
    pub version: i64,
}

/// How `auto_approve` went for a request, beyond the people it names (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoApproval {
    /// `on_call` (approved: the source says the requester is on call now), `unavailable` (a
    /// source could not answer: the request waits for approvers), `outside_window`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    /// What the requester is told.
    pub note: String,
}

impl Request {
    pub fn subject(&self) -> String {
        format!("request:{}", self.id)
    }

    pub fn is_on_behalf(&self) -> bool {
        !same_person(&self.requested_by, &self.user_login)
            && !same_person(&self.requested_by, &self.user_id)
    }
}

/// Okta logins are case-insensitive (the authorization domain's rule, re-exported).
pub use crate::authz::same_person;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Deny,
    /// The requester's own emergency approval (break-glass).
    BreakGlass,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
            Verdict::BreakGlass => "break_glass",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approve" => Some(Verdict::Approve),
            "deny" => Some(Verdict::Deny),
            "break_glass" => Some(Verdict::BreakGlass),
            _ => None,
        }
    }
}

/// One person's decision on one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub approver: String,
    /// Index into the resource's approval stages when it was made.
    pub stage: i64,
    pub decision: Verdict,
    pub channel: String,
    pub comment: String,
    pub decided_at: i64,
}

/// Who acts and through which channel: the authorization domain's, re-exported where requests
/// have always taken them from.
pub use crate::authz::{Actor, Channel};

/// A request with everything a person deciding on it needs.
#[derive(Debug, Clone, Serialize)]
pub struct RequestView {
    #[serde(flatten)]
    pub request: Request,
    pub decisions: Vec<DecisionRecord>,
    /// The grant it made (access) or extended (extension), if any.
    pub grant: Option<Grant>,
    /// Stages of the resource as they stand: name, required, approvals so far.
    pub stages: Vec<StageStatus>,
    /// The index of the stage waiting for approvals; `None` once decided.
    pub current_stage: Option<usize>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StageStatus {
    pub name: String,
    pub approvals_required: u32,
    pub approvals: u32,
}
