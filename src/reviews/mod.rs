//! User access reviews: campaigns over the inventory, reviewers' decisions, remediation that
//! takes effect, and evidence tied to the audit chain.
//!
//! Why it exists: auditors ask every quarter who can reach what, who confirmed it, and whether
//! what they rejected was really removed. A campaign snapshots its items from the inventory the
//! sync keeps (so later syncs do not move the list under the reviewers); a `revoke` ends a grant
//! through the grants service or removes standing access through the same Okta removal path the
//! drift reaction uses, then reads Okta back.
//!
//! What it must never do: let anyone decide an item that is not theirs or their own access,
//! change a decision after the campaign closed, remove access through a second removal path, or
//! mark an access that cannot be removed per user (inherited from a group) as done.

pub mod delegate;
pub mod pdf;
pub mod recur;
pub mod remediation;
pub mod repo;
pub mod report;
pub mod service;
mod snapshot;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::store::StoreError;

pub use service::ReviewService;

/// The audit actor of what the broker does on its own (defaults at the due date, remediation).
pub const SYSTEM_ACTOR: &str = "system:review";

/// What happens to items nobody decided by the due date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    Keep,
    Revoke,
    /// Reassigned to the fallback reviewer; the campaign stays open for them.
    Escalate,
}

impl DefaultAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultAction::Keep => "keep",
            DefaultAction::Revoke => "revoke",
            DefaultAction::Escalate => "escalate",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "keep" => Some(DefaultAction::Keep),
            "revoke" => Some(DefaultAction::Revoke),
            "escalate" => Some(DefaultAction::Escalate),
            _ => None,
        }
    }
}

/// A reviewer's verdict on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Keep,
    Revoke,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Keep => "keep",
            Decision::Revoke => "revoke",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "keep" => Some(Decision::Keep),
            "revoke" => Some(Decision::Revoke),
            _ => None,
        }
    }
}

/// Who reviews an item: the resource's approvers (named users; approver groups are not
/// expanded, their items go to the fallback), one named person, or the holder's manager from
/// the Okta profile as the sync stored it (none known: the fallback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReviewerRule {
    Approvers,
    Person { login: String },
    // A struct variant, not a unit one: serde refuses unknown fields only for struct variants
    // of an internally tagged enum, so `{"rule": "manager", "login": …}` is an error.
    Manager {},
}

/// A campaign as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub owner: String,
    /// Policy resource names under review.
    pub resources: Vec<String>,
    /// Also Okta groups and apps the policy does not manage, as the inventory lists them
    /// (`sync.all_groups` / `sync.all_apps`).
    #[serde(default)]
    pub include_unmanaged: bool,
    /// Only access no live grant explains (`standing` and `unexplained`).
    #[serde(default)]
    pub standing_only: bool,
    /// Whether a reviewer may review their own access. Never by default: such items go to the
    /// fallback, and the holder can neither decide nor delegate them.
    #[serde(default)]
    pub allow_self_review: bool,
    pub reviewer: ReviewerRule,
    pub fallback: String,
    pub default: DefaultAction,
    pub due_at: i64,
    /// `open`, `escalated` (undecided items went to the fallback) or `closed`.
    pub state: String,
    pub created_at: i64,
    pub closed_at: Option<i64>,
    pub audit_seq_start: i64,
    /// A recurring campaign's schedule (cron with seconds, UTC); only the template has one.
    #[serde(default)]
    pub recur: Option<String>,
    /// When the template's next run is created.
    #[serde(default)]
    pub next_run_at: Option<i64>,
    /// A run's template.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// The scheduled time a run was made for (unique per template).
    #[serde(default)]
    pub run_at: Option<i64>,
}

/// One (user, access) under review.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Item {
    pub item_id: i64,
    pub user_id: String,
    pub user_login: String,
    pub resource: String,
    pub kind: String,
    pub okta_id: String,
    pub resource_set: String,
    pub scope: Option<String>,
    /// `grant`, `standing` or `unexplained`, as the inventory said at the snapshot.
    pub why: String,
    pub grant_id: Option<String>,
    pub grants_90d: i64,
    pub last_granted_at: Option<i64>,
    pub reviewer: String,
    pub decision: Option<String>,
    pub comment: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// `pending`, `done`, `flagged` or `failed`; `None` when nothing is to be removed.
    pub remediation: Option<String>,
    pub remediation_detail: Option<String>,
    pub remediated_at: Option<i64>,
    /// `gone` or `present` after Okta was read back.
    pub read_back: Option<String>,
    pub read_back_at: Option<i64>,
    /// The reviewer this item was last delegated from (`None`: never delegated).
    #[serde(default)]
    pub delegated_from: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    InvalidInput(String),
    #[error("no review campaign `{0}`")]
    UnknownCampaign(String),
    #[error("campaign `{0}` has no item {1}")]
    UnknownItem(String, i64),
    #[error("unknown resource `{0}` (not in the policy)")]
    UnknownResource(String),
    #[error("item {0} is not yours to decide")]
    NotYourItem(i64),
    #[error("item {0} is your own access: its fallback reviewer decides it")]
    SelfReview(i64),
    #[error("campaign `{0}` is closed: decisions can no longer change")]
    Closed(String),
    #[error("the inventory is empty: run a sync before creating a campaign")]
    NoInventory,
    #[error("campaign `{0}` does not recur")]
    NotRecurring(String),
}

impl From<sqlx::Error> for ReviewError {
    fn from(e: sqlx::Error) -> Self {
        ReviewError::Store(StoreError::Query(e))
    }
}

impl ErrorCode for ReviewError {
    fn status(&self) -> StatusCode {
        match self {
            ReviewError::Store(e) => e.status(),
            ReviewError::Audit(e) => e.status(),
            ReviewError::InvalidInput(_) | ReviewError::UnknownResource(_) => {
                StatusCode::BAD_REQUEST
            }
            ReviewError::UnknownCampaign(_) | ReviewError::UnknownItem(..) => StatusCode::NOT_FOUND,
            ReviewError::NotYourItem(_) | ReviewError::SelfReview(_) => StatusCode::FORBIDDEN,
            ReviewError::Closed(_) | ReviewError::NoInventory | ReviewError::NotRecurring(_) => {
                StatusCode::CONFLICT
            }
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ReviewError::Store(e) => e.code(),
            ReviewError::Audit(e) => e.code(),
            ReviewError::InvalidInput(_) => "invalid_input",
            ReviewError::UnknownCampaign(_) => "unknown_campaign",
            ReviewError::UnknownItem(..) => "unknown_item",
            ReviewError::UnknownResource(_) => "unknown_resource",
            ReviewError::NotYourItem(_) => "not_your_item",
            ReviewError::SelfReview(_) => "self_review",
            ReviewError::Closed(_) => "campaign_closed",
            ReviewError::NoInventory => "no_inventory",
            ReviewError::NotRecurring(_) => "not_recurring",
        }
    }
}

/// The `[reviews]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewsConfig {
    /// Remind reviewers with undecided items this long before the due date (`review.reminder`,
    /// once per campaign and reviewer); `0s` turns reminders off.
    #[serde(with = "humantime_serde")]
    pub remind_before: std::time::Duration,
}

/// Longest `reviews.remind_before`: a reminder months ahead is not a reminder.
pub const MAX_REMIND_BEFORE: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

impl ReviewsConfig {
    pub fn validate(&self) -> Vec<crate::config::ConfigError> {
        if self.remind_before > MAX_REMIND_BEFORE {
            return vec![crate::config::ConfigError::invalid(
                "reviews.remind_before",
                "must be at most 90 days (`0s` turns reminders off)",
            )];
        }
        Vec::new()
    }
}

/// How often the broker closes due campaigns and carries out pending revokes. A minute is well
/// inside any due date's precision; remediation of a closed campaign starts within it.
pub const CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts the tracked task `reviews.check`: [`ReviewService::check_once`] every `interval` until
/// shutdown. Failures are logged and retried on the next tick (the work is durable in SQL).
pub fn spawn(tasks: &crate::tasks::Tasks, svc: ReviewService, interval: std::time::Duration) {
    let cancel = tasks.cancel_token();
    tasks.spawn("reviews.check", async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = svc.check_once().await {
                tracing::warn!(error = %e, "review check failed; retrying on the next tick");
            }
        }
    });
}
