//! Requests and approvals (flows 1 to 3): the one domain service every channel calls.
//!
//! Why it exists: people ask for access through the API, Slack, the console or another system,
//! and approvers decide through Slack buttons, the console, signed callbacks or the API. Each of
//! those is a thin adapter over [`RequestService`]: eligibility, durations, reasons, tickets,
//! stages, break-glass and the races between deciders are decided here once; who may see,
//! request, decide, cancel or extend is asked of [`crate::authz`] with the facts read here
//! (`access`, `decide`). An approved request becomes a grant only through
//! [`crate::grants::GrantService`] (write-ahead, audited); an approved extension extends one
//! through it.
//!
//! What it must never do: call a channel (Slack, outbound webhooks) directly — what people must
//! be told is derived from the audit entries written here, in the same transaction as the change
//! (see [`crate::notify`]); make a grant by any other path than the grants service; change
//! anything when the input is invalid or the caller may not act.

mod access;
mod auto;
mod decide;
pub mod directory;
pub mod error;
pub mod model;
pub mod people;
mod read;
pub mod repo;
mod service;
pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

pub use error::RequestError;
pub use model::{
    Actor, AutoApproval, Channel, DecisionRecord, Request, RequestKind, RequestState, RequestView,
    Verdict,
};
pub use service::{Created, NewRequest};

use crate::clock::Clock;
use crate::grants::GrantService;
use crate::policy::PolicyHandle;
use crate::store::Store;
use crate::tasks::Tasks;

/// The `[requests]` config section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestsConfig {
    /// How long a requester's Okta group list may be served from memory.
    #[serde(with = "humantime_serde")]
    pub group_cache_ttl: Duration,
    /// How often pending requests are checked for their timeout, and approved requests for the
    /// grant they are owed.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
}

/// Cheap to clone: one shared inner.
#[derive(Clone)]
pub struct RequestService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Clock,
    policy: PolicyHandle,
    grants: GrantService,
    directory: directory::Directory,
    /// The on-call client `auto_approve.on_call` asks; unset: every on-call rule answers
    /// "source not configured" (no auto-approval).
    oncall: std::sync::OnceLock<crate::oncall::Oncall>,
}

impl RequestService {
    pub fn new(grants: GrantService, cfg: &RequestsConfig, tasks: Option<Tasks>) -> Self {
        let directory = directory::Directory::new(
            grants.okta().clone(),
            grants.clock().clone(),
            cfg.group_cache_ttl,
            tasks,
        );
        Self::init_metrics();
        RequestService {
            inner: Arc::new(Inner {
                store: grants.store().clone(),
                clock: grants.clock().clone(),
                policy: grants.policy().clone(),
                grants,
                directory,
                oncall: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Uses `oncall` for `auto_approve.on_call` (set once, when the service is built).
    pub fn with_oncall(self, oncall: crate::oncall::Oncall) -> Self {
        let _ = self.inner.oncall.set(oncall);
        self
    }

    pub fn oncall(&self) -> Option<&crate::oncall::Oncall> {
        self.inner.oncall.get()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }
    pub fn policy(&self) -> &PolicyHandle {
        &self.inner.policy
    }
    pub fn grants(&self) -> &GrantService {
        &self.inner.grants
    }
    pub fn directory(&self) -> &directory::Directory {
        &self.inner.directory
    }

    /// Starts every outcome and every decision series at zero, so a dashboard or a `rate()`
    /// shows a flat line rather than "no data" on a replica that has not yet seen one.
    /// `increment(0)`, not `absolute(0)`: a second service in the same process (tests, the CLI)
    /// must not reset the counts.
    fn init_metrics() {
        for outcome in [
            "pending",
            "auto_approved",
            "break_glass",
            "duplicate",
            "approved",
            "denied",
            "failed",
            "cancelled",
            "expired",
        ] {
            metrics::counter!("jit_requests_total", "outcome" => outcome).increment(0);
        }
        for decision in ["approve", "deny", "break_glass"] {
            for ch in [
                "api", "slack", "console", "cli", "callback", "mcp", "system",
            ] {
                metrics::counter!("jit_request_decisions_total", "decision" => decision, "channel" => ch)
                    .increment(0);
            }
        }
    }

    /// Counts request outcomes (`jit_requests_total{outcome}`).
    fn count(&self, outcome: &'static str) {
        metrics::counter!("jit_requests_total", "outcome" => outcome).increment(1);
    }

    /// Counts decisions (`jit_request_decisions_total{decision, channel}`).
    fn count_decision(&self, decision: &'static str, channel: &Channel) {
        let ch = match channel {
            Channel::Callback(_) => "callback".to_string(),
            c => c.as_string(),
        };
        metrics::counter!("jit_request_decisions_total", "decision" => decision, "channel" => ch)
            .increment(1);
    }
}
