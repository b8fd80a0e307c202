//! The drift reaction: access to a managed `jit_only` resource that no grant explains.
//!
//! Why it exists: two detectors find such access (an Okta event hook saying someone added a
//! member, and the periodic sync seeing a member), and they must reach the same verdict and do
//! the same thing with it ("one code path, two detectors"). Given a [`Finding`], [`DriftReactor`]
//! decides whether it is drift at all: a change made by the broker's own Okta principal is not,
//! nor is access covered by `allow_standing` or by one of our grants (including the write-ahead
//! `provisioning` row of an add whose event arrived before the broker recorded it, and a grant
//! that was live when the change happened). Drift is then reported (`drift = "report"`: the
//! audit entry `drift.detected`) or removed (`drift = "enforce"`: audited as `drift.reverted`),
//! both through the grants service's [`GrantService::remove_unexplained`] /
//! [`GrantService::report_unexplained`], which re-judge the grants and `allow_standing` under
//! the per-(user, access) lock. Alerts are derived from those audit entries by the notification
//! layer; this module calls no channel itself.
//!
//! What it must never do: call Okta to change access itself (only the grants service does),
//! remove access that a grant or `allow_standing` explains, or act on a resource that is not
//! `jit_only`.

use serde_json::json;

use crate::audit::{self, NewEntry};
use crate::error::ErrorCode;
use crate::grants::{Access, AuditNote, GrantError, GrantService, Removed, Settled, Unexplained};
use crate::policy::{Drift, Resource};
use crate::store::StoreError;

/// The audit actor of drift entries: the broker noticed; the Okta actor is in the details.
pub const DRIFT_ACTOR: &str = "system:drift";

/// How far before a change's Okta timestamp a grant may have ended and still explain it. Okta's
/// clock and ours differ a little; a larger allowance would let an out-of-band add that follows
/// an expiry closely pass unnoticed by the event hook (the sync still sees it).
pub const CLOCK_SKEW_MS: i64 = 5_000;

/// How the access was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// An Okta event hook delivered this event (its `uuid`).
    Event { uuid: String },
    /// The sync run `run_id` saw the access in Okta.
    Sync { run_id: String },
}

impl Detection {
    fn source(&self) -> &'static str {
        match self {
            Detection::Event { .. } => "event",
            Detection::Sync { .. } => "sync",
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Detection::Event { uuid } => json!({ "source": "event", "event_uuid": uuid }),
            Detection::Sync { run_id } => json!({ "source": "sync", "sync_run_id": run_id }),
        }
    }
}

/// Who made the change in Okta, when known (an event's `actor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OktaActor {
    pub id: String,
    /// Login or client id (`alternateId`), for people reading the audit log.
    pub alternate_id: Option<String>,
}

/// One user holding one managed resource, as a detector saw it.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The policy resource's name.
    pub resource: String,
    /// Okta user id (`00u…`).
    pub user_id: String,
    pub user_login: Option<String>,
    pub detected: Detection,
    pub actor: Option<OktaActor>,
    /// When the change happened in Okta (Unix ms; an event's `published`). A grant that ended
    /// after it was live at the time and explains it.
    pub changed_at: Option<i64>,
}

/// What the reaction concluded (and did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not a policy resource, or not `jit_only`: nothing to judge.
    NotManaged,
    /// The broker's own Okta principal made the change.
    OwnChange,
    /// The user is in the resource's `allow_standing`.
    AllowedStanding,
    /// A grant explains the access.
    Explained { grant_id: String },
    /// A role finding whose role the user does not hold (any more).
    NotPresent,
    /// `drift = "report"`: recorded as `drift.detected`.
    Reported,
    /// `drift = "enforce"`: removed (or found already gone) and recorded as `drift.reverted`.
    Reverted { okta_change: &'static str },
    /// `drift = "enforce"` but Okta refused the removal for good: `drift.revert_failed`.
    RevertFailed { error: String },
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::NotManaged => "not_managed",
            Outcome::OwnChange => "own_change",
            Outcome::AllowedStanding => "allowed_standing",
            Outcome::Explained { .. } => "explained",
            Outcome::NotPresent => "not_present",
            Outcome::Reported => "reported",
            Outcome::Reverted { .. } => "reverted",
            Outcome::RevertFailed { .. } => "revert_failed",
        }
    }

    /// Whether the finding was drift (reported, reverted or not revertible).
    pub fn is_drift(&self) -> bool {
        matches!(
            self,
            Outcome::Reported | Outcome::Reverted { .. } | Outcome::RevertFailed { .. }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// The lock, Redis, or a retryable Okta failure (the caller tries again later).
    #[error(transparent)]
    Grant(#[from] GrantError),
}

impl From<sqlx::Error> for DriftError {
    fn from(e: sqlx::Error) -> Self {
        DriftError::Store(StoreError::Query(e))
    }
}

impl ErrorCode for DriftError {
    fn status(&self) -> axum::http::StatusCode {
        match self {
            DriftError::Store(e) => e.status(),
            DriftError::Audit(e) => e.status(),
            DriftError::Grant(e) => e.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            DriftError::Store(e) => e.code(),
            DriftError::Audit(e) => e.code(),
            DriftError::Grant(e) => e.code(),
        }
    }
}

/// The drift reaction. Cheap to clone.
#[derive(Clone)]
pub struct DriftReactor {
    grants: GrantService,
}

impl DriftReactor {
    pub fn new(grants: GrantService) -> Self {
        DriftReactor { grants }
    }

    /// The Okta principal the broker's credential acts as (the SSWS token's admin user, or the
    /// OAuth service app's client id), learnt by the capability probe; `None` until it ran.
    pub fn principal_id(&self) -> Option<String> {
        self.grants
            .okta()
            .capabilities()
            .and_then(|c| c.principal_id)
    }

    /// Whether an Okta event actor is the broker itself.
    pub fn is_own_actor(&self, actor_id: &str) -> bool {
        !actor_id.is_empty() && self.principal_id().as_deref() == Some(actor_id)
    }

    /// Judges `f` and, if it is drift, reports or removes it per the resource's `drift` mode.
    /// Idempotent in effect: a second call for the same access finds it gone (enforce) or
    /// reports it again (report). Retryable failures (Okta, Redis, SQL) are returned as errors.
    pub async fn react(&self, f: &Finding) -> Result<Outcome, DriftError> {
        let policy = self.grants.policy().current();
        let outcome = match policy.get(&f.resource).filter(|r| r.jit_only) {
            None => Outcome::NotManaged,
            Some(_) if f.actor.as_ref().is_some_and(|a| self.is_own_actor(&a.id)) => {
                Outcome::OwnChange
            }
            Some(res) if res.allows_standing(&f.user_id, f.user_login.as_deref()) => {
                Outcome::AllowedStanding
            }
            Some(res) => self.settle(res, f).await?,
        };
        metrics::counter!("jit_drift_findings_total",
            "source" => f.detected.source(), "outcome" => outcome.as_str())
        .increment(1);
        Ok(outcome)
    }

    /// Hands the finding to the grants service, which re-judges it under the access lock (a
    /// grant or an allowance since the detector looked explains it) and reports or removes it.
    async fn settle(&self, res: &Resource, f: &Finding) -> Result<Outcome, DriftError> {
        let enforce = res.drift == Drift::Enforce;
        let base = json!({
            "resource": res.name, "kind": res.kind.as_str(), "okta_id": res.okta_id,
            "user_id": f.user_id, "user_login": f.user_login,
            "detected": f.detected.json(),
            "okta_actor": f.actor.as_ref().map(|a| json!({ "id": a.id, "alternate_id": a.alternate_id })),
            "changed_at": f.changed_at, "mode": if enforce { "enforce" } else { "report" },
        });
        let u = Unexplained {
            access: Access::of_resource(&f.user_id, res),
            user_login: f.user_login.clone(),
            resource: Some(res.name.clone()),
            ended_since: f.changed_at.map(|t| t.saturating_sub(CLOCK_SKEW_MS)),
            role_assignment: None,
            note: AuditNote {
                actor: DRIFT_ACTOR.into(),
                action: if enforce {
                    "drift.reverted"
                } else {
                    "drift.detected"
                }
                .into(),
                subject: format!("user:{}", f.user_id),
                details: base.clone(),
            },
        };
        let settled = if enforce {
            self.grants.remove_unexplained(&u).await
        } else {
            self.grants.report_unexplained(&u).await
        };
        match settled {
            Ok(Settled::Explained { grant_id }) => Ok(Outcome::Explained { grant_id }),
            Ok(Settled::AllowedStanding) => Ok(Outcome::AllowedStanding),
            Ok(Settled::NotPresent) => Ok(Outcome::NotPresent),
            Ok(Settled::Reported) => {
                tracing::warn!(resource = %res.name, user = %f.user_id, "drift reported");
                Ok(Outcome::Reported)
            }
            Ok(Settled::Removed(r)) => {
                tracing::warn!(resource = %res.name, user = %f.user_id, change = r.as_str(), "drift reverted");
                Ok(Outcome::Reverted {
                    okta_change: match r {
                        Removed::Removed => "removed",
                        Removed::AlreadyGone => "already_gone",
                    },
                })
            }
            Err(GrantError::Okta(e)) if !e.is_retryable() => {
                let msg = crate::error::chain(&e);
                let mut d = base;
                d["error"] = json!(msg);
                d["error_code"] = json!(e.error_code());
                self.record("drift.revert_failed", &f.user_id, d).await?;
                tracing::error!(resource = %res.name, user = %f.user_id, error = %msg, alert = true,
                    "drift could not be reverted: access remains in Okta");
                Ok(Outcome::RevertFailed { error: msg })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn record(
        &self,
        action: &str,
        user_id: &str,
        details: serde_json::Value,
    ) -> Result<(), DriftError> {
        let mut tx = self.grants.store().begin().await?;
        audit::append(
            &mut tx,
            self.grants.clock(),
            NewEntry::new(DRIFT_ACTOR, action, format!("user:{user_id}"), details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
