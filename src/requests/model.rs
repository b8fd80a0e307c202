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
    pub version: i64,
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

/// Okta logins are case-insensitive.
pub fn same_person(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

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

/// Where a person acts from; recorded with every decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    Api,
    Slack,
    Console,
    Cli,
    /// A signed HTTP callback from a named integration (ServiceNow, Jira, …).
    Callback(String),
    /// The broker itself (pending timeout, auto-approval, offboarding).
    System,
}

impl Channel {
    pub fn as_string(&self) -> String {
        match self {
            Channel::Api => "api".into(),
            Channel::Slack => "slack".into(),
            Channel::Console => "console".into(),
            Channel::Cli => "cli".into(),
            Channel::Callback(name) => format!("callback:{name}"),
            Channel::System => "system".into(),
        }
    }
}

/// A person acting through a channel. `login` is their Okta login (or id): API tokens are named
/// after it, Slack users are mapped to it, console sessions carry it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub login: String,
    pub channel: Channel,
    /// When this person last proved who they are to Okta (Unix ms): the console's `auth_time`.
    /// Approvals of `approval_step_up` resources need it to be recent.
    pub authenticated_at: Option<i64>,
    /// A signed-callback integration configured as trusted for step-up resources.
    pub trusted_for_step_up: bool,
    /// Admins (and `portal` tokens) may request on behalf of someone else and cancel any request.
    pub is_admin: bool,
    pub may_request_for_others: bool,
    /// Reads every request, whoever it concerns (auditors and admins; the API's approver
    /// tokens). Everyone else reads the requests they relate to (see
    /// `RequestService::may_read`).
    pub reads_all: bool,
}

impl Actor {
    pub fn new(login: impl Into<String>, channel: Channel) -> Self {
        Actor {
            login: login.into(),
            channel,
            authenticated_at: None,
            trusted_for_step_up: false,
            is_admin: false,
            may_request_for_others: false,
            reads_all: false,
        }
    }

    /// The audit log's actor: the person, prefixed by channel when it is not the API.
    pub fn audit_name(&self) -> String {
        match &self.channel {
            Channel::Api | Channel::Console | Channel::Cli => self.login.clone(),
            Channel::Slack => format!("slack:{}", self.login),
            Channel::Callback(name) => format!("callback:{name}:{}", self.login),
            Channel::System => self.login.clone(),
        }
    }
}

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
