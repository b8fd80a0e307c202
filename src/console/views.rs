//! Template structs and the small view models they show.
//!
//! Why it exists: templates are checked at compile time (askama) against these structs, and
//! everything a template shows is prepared here as plain text (times, durations, sentences), so
//! the templates hold no logic beyond loops and conditions. askama escapes every value.
//!
//! What it must never do: carry a secret, a token or a cookie into a template (the CSRF token
//! is the one exception, and it is bound to the session that sees it).

use askama::Template;

use super::session::Viewer;
use crate::clock::ms_to_datetime;

/// What every page's frame needs.
pub struct Layout {
    pub title: String,
    pub nav: &'static str,
    pub signed_in: bool,
    pub name: String,
    pub login: String,
    pub admin: bool,
    pub auditor: bool,
    pub csrf: String,
    pub notice: Option<String>,
}

impl Layout {
    pub fn new(title: impl Into<String>, nav: &'static str, v: Option<&Viewer>) -> Layout {
        Layout {
            title: title.into(),
            nav,
            signed_in: v.is_some(),
            name: v.map(|v| v.name.clone()).unwrap_or_default(),
            login: v.map(|v| v.login.clone()).unwrap_or_default(),
            // What the navigation offers follows the rules: operator pages, then read-only ones.
            admin: v.is_some_and(|v| {
                crate::authz::require(crate::authz::Verb::SeeDeadLetters, &v.actor()).is_ok()
            }),
            auditor: v.is_some_and(|v| {
                crate::authz::require(crate::authz::Verb::ReadAudit, &v.actor()).is_ok()
            }),
            csrf: v.map(|v| v.csrf.clone()).unwrap_or_default(),
            notice: None,
        }
    }

    pub fn with_notice(mut self, n: Option<&'static str>) -> Layout {
        self.notice = n.map(str::to_string);
        self
    }
}

/// A time as shown: UTC text (the script rewrites it in the viewer's zone) and its ISO form.
#[derive(Clone)]
pub struct Time {
    pub iso: String,
    pub utc: String,
}

pub fn time(ms: i64) -> Time {
    let t = ms_to_datetime(ms);
    Time {
        iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        utc: t.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

/// `1h 5m`, `42s`: a duration for people.
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

pub struct GrantRow {
    pub id: String,
    pub user: String,
    pub resource: String,
    pub state: String,
    pub expires: Time,
    pub left: String,
    pub reason: String,
    pub error: String,
    pub attempts: i64,
}

pub struct RequestRow {
    pub id: String,
    pub user: String,
    pub resource: String,
    pub kind: String,
    pub state: String,
    pub duration: String,
    pub reason: String,
    pub created: Time,
}

#[derive(Template)]
#[template(path = "landing.html")]
pub struct Landing {
    pub l: Layout,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub l: Layout,
    pub code: String,
    pub sentence: String,
    pub detail: String,
    pub back: String,
}

#[derive(Template)]
#[template(path = "access.html")]
pub struct Access {
    pub l: Layout,
    pub grants: Vec<GrantRow>,
    pub pending: Vec<RequestRow>,
}

pub struct ResourceRow {
    pub name: String,
    pub description: String,
    pub default_duration: String,
    pub max_duration: String,
    pub approvers: String,
    pub needs_reason: bool,
    pub ticket_pattern: String,
}

#[derive(Template)]
#[template(path = "request.html")]
pub struct RequestForm {
    pub l: Layout,
    pub resources: Vec<ResourceRow>,
}

pub struct DecidedRow {
    pub id: String,
    pub resource: String,
    pub user: String,
    pub decision: String,
    pub at: Time,
}

#[derive(Template)]
#[template(path = "approvals.html")]
pub struct Approvals {
    pub l: Layout,
    pub inbox: Vec<RequestRow>,
    pub decided: Vec<DecidedRow>,
}

pub struct DecisionRow {
    pub approver: String,
    pub decision: String,
    pub comment: String,
    pub at: Time,
}

#[derive(Template)]
#[template(path = "approval.html")]
pub struct Approval {
    pub l: Layout,
    /// A comment typed before a step-up sign-in, put back in the form.
    pub comment: String,
    pub r: RequestRow,
    pub ticket: String,
    pub stages: Vec<String>,
    pub step_up: String,
    pub decisions: Vec<DecisionRow>,
    pub may_decide: bool,
    pub current: Vec<GrantRow>,
    pub history: Vec<RequestRow>,
}

pub struct Filter {
    pub user: String,
    pub resource: String,
    pub state: String,
}

#[derive(Template)]
#[template(path = "admin_grants.html")]
pub struct AdminGrants {
    pub l: Layout,
    pub failed_view: bool,
    pub f: Filter,
    pub states: Vec<&'static str>,
    pub grants: Vec<GrantRow>,
    pub next: String,
}

pub struct AuditRow {
    pub seq: i64,
    pub at: Time,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// The entry's details as fields a person reads (see [`detail_fields`]).
    pub fields: Vec<DetailField>,
}

/// One field of an audit entry's details: a time shown as a time, a duration as a duration.
pub struct DetailField {
    pub key: String,
    pub value: String,
    pub time: Option<Time>,
}

/// An audit entry's details (a JSON object) as fields, sorted by key: keys ending in
/// `_at` (or `_at_ms`) holding epoch milliseconds become times, keys ending in `duration_ms`
/// become durations, strings lose their quotes, nested values stay compact JSON. Details that
/// are not an object are one field `details`.
pub fn detail_fields(details: &str) -> Vec<DetailField> {
    let field = |key: &str, v: &serde_json::Value| {
        let ms = v.as_i64();
        let is_time = key.ends_with("_at") || key.ends_with("_at_ms") || key == "published";
        match (ms, v) {
            (Some(ms), _) if is_time && ms > 0 => DetailField {
                key: key.to_string(),
                value: String::new(),
                time: Some(time(ms)),
            },
            (Some(ms), _) if key.ends_with("duration_ms") => DetailField {
                key: key.to_string(),
                value: span(ms),
                time: None,
            },
            (_, serde_json::Value::String(s)) => DetailField {
                key: key.to_string(),
                value: s.clone(),
                time: None,
            },
            (_, serde_json::Value::Null) => DetailField {
                key: key.to_string(),
                value: "–".into(),
                time: None,
            },
            (_, other) => DetailField {
                key: key.to_string(),
                value: other.to_string(),
                time: None,
            },
        }
    };
    match serde_json::from_str::<serde_json::Value>(details) {
        Ok(serde_json::Value::Object(m)) => m.iter().map(|(k, v)| field(k, v)).collect(),
        Ok(v) => vec![field("details", &v)],
        Err(_) => vec![DetailField {
            key: "details".into(),
            value: details.to_string(),
            time: None,
        }],
    }
}

pub struct AuditFilter {
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub since: String,
    pub until: String,
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
pub struct AdminAudit {
    pub l: Layout,
    pub f: AuditFilter,
    pub rows: Vec<AuditRow>,
    pub older: String,
    /// "verified up to #N" or what broke, and when it was checked.
    pub chain: String,
    pub chain_ok: bool,
    pub checked: Option<Time>,
    /// Entries written since the last verification, if any.
    pub pending: String,
}

pub struct DeadRow {
    pub id: i64,
    pub channel: String,
    pub kind: String,
    pub subject: String,
    pub attempts: i64,
    pub error: String,
    pub created: Time,
}

#[derive(Template)]
#[template(path = "admin_outbox.html")]
pub struct DeadLetters {
    pub l: Layout,
    pub rows: Vec<DeadRow>,
    pub next: String,
}

pub struct EventRow {
    pub uuid: String,
    pub event_type: String,
    pub user: String,
    pub attempts: i64,
    pub error: String,
    pub published: Time,
}

#[derive(Template)]
#[template(path = "admin_events.html")]
pub struct EventsDead {
    pub l: Layout,
    pub rows: Vec<EventRow>,
}

pub struct RunRow {
    pub id: String,
    pub started: Time,
    pub mode: String,
    pub dry_run: bool,
    pub outcome: String,
    pub findings: u64,
    pub changed: u64,
    pub errors: u64,
    pub error: String,
}

pub struct FindingRow {
    pub finding: String,
    pub resource: String,
    pub user: String,
    pub grant: String,
    pub action: String,
    pub outcome: String,
}

#[derive(Template)]
#[template(path = "admin_sync.html")]
pub struct SyncRuns {
    pub l: Layout,
    pub runs: Vec<RunRow>,
    pub older: String,
}

#[derive(Template)]
#[template(path = "admin_sync_run.html")]
pub struct SyncRun {
    pub l: Layout,
    pub r: RunRow,
    pub warnings: Vec<String>,
    pub findings: Vec<FindingRow>,
}

pub struct CampaignRow {
    pub id: String,
    pub name: String,
    pub state: String,
    pub due: Time,
    pub items: usize,
    pub undecided: usize,
}

#[derive(Template)]
#[template(path = "reviews.html")]
pub struct Reviews {
    pub l: Layout,
    /// Campaigns with items for the viewer.
    pub mine: Vec<CampaignRow>,
    /// Every campaign (auditors and admins; empty for others).
    pub all: Vec<CampaignRow>,
}

pub struct ReviewItemRow {
    pub item: i64,
    pub user: String,
    pub resource: String,
    /// `grant`, `standing` or `unexplained`.
    pub why: String,
    pub grants_90d: i64,
    pub last_granted: Option<Time>,
    pub decision: String,
    pub comment: String,
    pub remediation: String,
}

#[derive(Template)]
#[template(path = "review.html")]
pub struct Review {
    pub l: Layout,
    pub id: String,
    pub name: String,
    pub state: String,
    pub due: Time,
    /// Decisions can still be made or changed.
    pub open: bool,
    pub items: Vec<ReviewItemRow>,
}
