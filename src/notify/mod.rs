//! Notifications: what people and other systems must be told, produced once by the domain and
//! delivered by every channel (outbound webhooks, Slack).
//!
//! Why it exists: a request waiting for approvers, a decision, a grant that became active, is
//! about to expire, expired or failed — each must reach people even if the process dies the
//! moment after the change. The domain already writes every state change with its audit entry
//! in one transaction (I6), and the audit log is gap-free and committed in order, so it *is* a
//! transactional outbox: [`derive`] reads it from a persisted cursor and turns each entry that
//! matters into a [`Notification`] plus one delivery row per interested channel, in ONE
//! transaction that also moves the cursor. A crash before that transaction re-derives the same
//! entries (their `dedupe_key` is the audit seq, so nothing is produced twice); a crash after it
//! leaves deliveries that the [`crate::outbox`] workers finish. Time-driven notices (a grant
//! about to expire, an approver reminder) are written by [`timed`] with their own dedupe keys.
//!
//! What it must never do: call a channel itself, hold a transaction across a network call, or
//! let the requests or grants code call a channel directly (they only write audit entries).

pub mod derive;
pub mod timed;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Stable notification kinds (outbound event types). Channels match on these strings.
pub mod kinds {
    pub const REQUEST_CREATED: &str = "request.created";
    /// An approval was recorded but stages remain open (Slack updates its message).
    pub const REQUEST_APPROVAL_RECORDED: &str = "request.approval_recorded";
    /// Approved or denied (payload `decision`).
    pub const REQUEST_DECIDED: &str = "request.decided";
    pub const REQUEST_EXPIRED: &str = "request.expired";
    pub const REQUEST_CANCELLED: &str = "request.cancelled";
    pub const REQUEST_FAILED: &str = "request.failed";
    pub const REQUEST_BREAK_GLASS: &str = "request.break_glass";
    /// A break-glass request's after-the-fact review (payload `decision`).
    pub const REQUEST_REVIEWED: &str = "request.reviewed";
    /// A request has waited on its approvers longer than `notify.approver_reminder`.
    pub const REQUEST_REMINDER: &str = "request.reminder";
    pub const GRANT_ACTIVATED: &str = "grant.activated";
    pub const GRANT_EXPIRING: &str = "grant.expiring";
    pub const GRANT_EXTENDED: &str = "grant.extended";
    pub const GRANT_REVOKED: &str = "grant.revoked";
    pub const GRANT_FAILED: &str = "grant.failed";
    /// Drift found (event hook or sync) and reported or reverted.
    pub const DRIFT_DETECTED: &str = "drift.detected";
    /// An access review campaign opened (its reviewers and their item counts in `details`).
    pub const REVIEW_OPENED: &str = "review.opened";
    /// A campaign reached its due date with undecided items (for its owner).
    pub const REVIEW_OVERDUE: &str = "review.overdue";
    /// A reviewer still has undecided items `reviews.remind_before` ahead of the due date (one
    /// per campaign and reviewer; payload `campaign`, `name`, `reviewer`, `undecided`, `due_at`).
    pub const REVIEW_REMINDER: &str = "review.reminder";
    /// A signed checkpoint of the audit log's Merkle tree (payload `tree_size`, `root_hash`,
    /// `note`, `signed`): for SIEMs, auditors' stores and witnesses.
    pub const AUDIT_CHECKPOINT: &str = "audit.checkpoint";

    pub const ALL: &[&str] = &[
        REQUEST_CREATED,
        REQUEST_APPROVAL_RECORDED,
        REQUEST_DECIDED,
        REQUEST_EXPIRED,
        REQUEST_CANCELLED,
        REQUEST_FAILED,
        REQUEST_BREAK_GLASS,
        REQUEST_REVIEWED,
        REQUEST_REMINDER,
        GRANT_ACTIVATED,
        GRANT_EXPIRING,
        GRANT_EXTENDED,
        GRANT_REVOKED,
        GRANT_FAILED,
        DRIFT_DETECTED,
        REVIEW_OPENED,
        REVIEW_OVERDUE,
        REVIEW_REMINDER,
        AUDIT_CHECKPOINT,
    ];
}

/// One thing to tell. `id` is stable across retries: outbound webhooks send it as
/// `webhook-id`, so a receiver drops a redelivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub kind: String,
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    /// The audit entry it was derived from (none for time-driven notices).
    pub audit_seq: Option<i64>,
    /// The event's data: `request` and/or `grant` as they stood when derived, plus
    /// kind-specific fields (`decision`, `by`, `comment`, `reason`, `resource`, `user_login`).
    pub payload: serde_json::Value,
    pub created_at: i64,
}

/// Why a delivery did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// Try again later (after `after` when the other side said so, e.g. `Retry-After`).
    #[error("{message}")]
    Retry {
        message: String,
        after: Option<Duration>,
    },
    /// Trying again will not help (a 4xx, `channel_not_found`): goes to the dead letters.
    #[error("{0}")]
    Permanent(String),
}

/// A channel that delivers notifications: outbound webhook endpoints, Slack.
#[async_trait]
pub trait Deliverer: Send + Sync + 'static {
    /// The channel's stable name (`slack`, `webhook:<endpoint>`); deliveries are keyed by it.
    fn channel(&self) -> &str;
    /// Whether this channel wants notifications of `kind` (checked when deriving).
    fn wants(&self, kind: &str) -> bool;
    /// Deliveries of one channel with the same key are delivered one at a time in order;
    /// different keys may go in parallel (Slack: per conversation; a webhook: one key).
    fn partition(&self, _n: &Notification) -> String {
        String::new()
    }
    /// Delivers one notification. Called again after a crash mid-delivery, so a channel that
    /// can, makes a repeat harmless (webhooks: same `webhook-id`).
    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError>;
}

/// Wakes the delivery workers when new deliveries were committed (instead of waiting a poll).
/// Notify owns it: it writes the deliveries; the outbox's workers wait on it.
#[derive(Clone, Default)]
pub struct Wake(std::sync::Arc<tokio::sync::Notify>);

impl Wake {
    pub fn notify(&self) {
        self.0.notify_waiters();
    }
    pub async fn wait(&self) {
        self.0.notified().await;
    }
}

/// The channels configured in this process, in a fixed order.
#[derive(Clone, Default)]
pub struct Channels {
    list: Vec<Arc<dyn Deliverer>>,
}

impl Channels {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, d: Arc<dyn Deliverer>) {
        self.list.push(d);
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Deliverer>> {
        self.list.iter()
    }
    pub fn get(&self, channel: &str) -> Option<&Arc<dyn Deliverer>> {
        self.list.iter().find(|d| d.channel() == channel)
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// The `[notify]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Tell the holder this long before a grant expires (`grant.expiring`).
    #[serde(with = "humantime_serde")]
    pub expiring_lead: Duration,
    /// Remind approvers when a request has waited on them this long (and every such interval
    /// after); `0s` turns reminders off.
    #[serde(with = "humantime_serde")]
    pub approver_reminder: Duration,
    /// How often the audit log is read for new notifications (a change also wakes it).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}
