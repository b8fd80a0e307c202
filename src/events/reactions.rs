//! What the broker does about one event: the lifecycle reaction, drift, external removals.
//!
//! Why it exists: each event type maps to one domain call, and every call goes through the
//! domain service that owns the decision: grants end only through [`GrantService`], drift is
//! judged only by [`DriftReactor`]. This module only picks the user and the resources out of
//! the event and hands them over.
//!
//! What it must never do: re-implement a policy or grant decision, treat the broker's own
//! changes as someone else's, or restore anything on unsuspend/reactivate (a returning user
//! asks again; documented in docs/events.md).

use std::sync::Arc;

use serde_json::json;

use super::confirm::{Confirmer, Verdict};
use super::envelope::OktaEvent;
use crate::drift::{Detection, DriftError, DriftReactor, Finding, OktaActor};
use crate::error::ErrorCode;
use crate::grants::{Access, GrantError, GrantService, GrantState};
use crate::okta::OktaError;
use crate::policy::{Drift, ResourceKind};

/// Event types that end all of a user's access.
pub const DEPARTURE_TYPES: [&str; 3] = [
    "user.lifecycle.deactivate",
    "user.lifecycle.suspend",
    "user.lifecycle.delete.initiated",
];
pub const LOCK_TYPE: &str = "user.account.lock";
pub const GROUP_ADD: &str = "group.user_membership.add";
pub const GROUP_REMOVE: &str = "group.user_membership.remove";
pub const APP_ADD: &str = "application.user_membership.add";
pub const APP_REMOVE: &str = "application.user_membership.remove";
pub const ROLE_GRANT: &str = "user.account.privilege.grant";
pub const ROLE_REVOKE: &str = "user.account.privilege.revoke";

/// Every event type the broker reacts to (what `event-hook register` subscribes).
pub const SUBSCRIBED: [&str; 10] = [
    DEPARTURE_TYPES[0],
    DEPARTURE_TYPES[1],
    DEPARTURE_TYPES[2],
    LOCK_TYPE,
    GROUP_ADD,
    GROUP_REMOVE,
    APP_ADD,
    APP_REMOVE,
    ROLE_GRANT,
    ROLE_REVOKE,
];

#[derive(Debug, thiserror::Error)]
pub enum ReactionError {
    #[error("event {uuid} ({event_type}) names no {what} target")]
    MissingTarget {
        uuid: String,
        event_type: String,
        what: &'static str,
    },
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error(transparent)]
    Drift(#[from] DriftError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Request(#[from] crate::requests::RequestError),
    /// The confirmation read failed (Okta down, 429): nothing was taken away; retried.
    #[error("cannot confirm the event with Okta: {0}")]
    Okta(#[from] OktaError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// Not a failure: the event waits for the confirmation reads' per-user pace (see
    /// `confirm`) and is processed again at `until_ms` without counting an attempt.
    #[error("the event waits for its confirmation read until {until_ms}")]
    NotYet { until_ms: i64 },
}

impl ErrorCode for ReactionError {
    fn status(&self) -> axum::http::StatusCode {
        match self {
            ReactionError::MissingTarget { .. } => axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            ReactionError::Grant(e) => e.status(),
            ReactionError::Drift(e) => e.status(),
            ReactionError::Store(e) => e.status(),
            ReactionError::Request(e) => e.status(),
            ReactionError::Okta(e) => ErrorCode::status(e),
            ReactionError::Audit(e) => e.status(),
            ReactionError::NotYet { .. } => axum::http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ReactionError::MissingTarget { .. } => "event_missing_target",
            ReactionError::Grant(e) => e.code(),
            ReactionError::Drift(e) => e.code(),
            ReactionError::Store(e) => e.code(),
            ReactionError::Request(e) => e.code(),
            ReactionError::Okta(e) => ErrorCode::code(e),
            ReactionError::Audit(e) => e.code(),
            ReactionError::NotYet { .. } => "event_not_yet",
        }
    }
}

/// The reactions, over the grants service and the drift reaction. Cheap to clone.
#[derive(Clone)]
pub struct Reactions {
    grants: GrantService,
    /// Cancels a departed user's pending requests (absent only in tests of the bare reactions).
    requests: Option<crate::requests::RequestService>,
    drift: DriftReactor,
    revoke_on_lock: bool,
    /// Okta's word before anything is taken away (shared by the worker's concurrent events).
    confirm: Arc<Confirmer>,
}

/// How far after an event a grant may have been activated and still be the one it is about
/// (Okta's clock and ours differ a little). See `drift::CLOCK_SKEW_MS`.
const SKEW_MS: i64 = crate::drift::CLOCK_SKEW_MS;

impl Reactions {
    pub fn new(
        grants: GrantService,
        requests: Option<crate::requests::RequestService>,
        revoke_on_lock: bool,
    ) -> Self {
        let drift = DriftReactor::new(grants.clone());
        let confirm = Arc::new(Confirmer::new(grants.clone(), revoke_on_lock));
        Reactions {
            grants,
            requests,
            drift,
            revoke_on_lock,
            confirm,
        }
    }

    pub fn drift(&self) -> &DriftReactor {
        &self.drift
    }

    /// Handles one event; returns a short outcome for the inbox row and the metrics.
    pub async fn handle(&self, ev: &OktaEvent) -> Result<String, ReactionError> {
        let t = ev.event_type.as_str();
        if DEPARTURE_TYPES.contains(&t) || (t == LOCK_TYPE && self.revoke_on_lock) {
            let user = self.need_user(ev)?;
            return self.departure(ev, &user).await;
        }
        match t {
            GROUP_ADD | APP_ADD | ROLE_GRANT => self.added(ev).await,
            GROUP_REMOVE | APP_REMOVE | ROLE_REVOKE => self.removed(ev).await,
            _ => Ok("ignored".into()),
        }
    }

    /// A departure event: acted on only if Okta confirms the user is gone (see `confirm`), and
    /// audited either way with what the event claimed and what Okta said.
    async fn departure(&self, ev: &OktaEvent, user: &str) -> Result<String, ReactionError> {
        let store = self.grants.store();
        match self.confirm.departure(ev, user).await? {
            Verdict::Wait(until_ms) => Err(ReactionError::NotYet { until_ms }),
            Verdict::Refuted(said) => {
                let status = said.status.clone().unwrap_or_else(|| "NOT_FOUND".into());
                metrics::counter!("jit_events_unconfirmed_total", "type" => super::worker::metric_type(&ev.event_type))
                    .increment(1);
                tracing::warn!(event = %ev.uuid, event_type = %ev.event_type, user = %user,
                    okta_status = %status, "departure event not confirmed by Okta: nothing revoked");
                self.confirm
                    .record(store, "event.unconfirmed", ev, user, said.json())
                    .await?;
                Ok(format!("unconfirmed: okta says {status}"))
            }
            Verdict::Confirmed(said) => {
                self.confirm
                    .record(store, "event.confirmed", ev, user, said.json())
                    .await?;
                let t = &ev.event_type;
                let n = self
                    .user_departed(
                        user,
                        &format!("{t} in Okta (event {})", ev.uuid),
                        &audit_actor(ev),
                    )
                    .await?;
                Ok(format!("revoked {n}"))
            }
        }
    }

    /// The lifecycle reaction: the user left (deactivated, suspended, deleted, or locked with
    /// `revoke_on_lock`). Revokes every live grant through the grants service and cancels the
    /// user's pending requests through the requests service, so both happen for every
    /// departure, whichever detector saw it. Returns how many grants were revoked.
    pub async fn user_departed(
        &self,
        user_id: &str,
        reason: &str,
        actor: &str,
    ) -> Result<usize, ReactionError> {
        let revoked = self
            .grants
            .revoke_all_for_user(actor, user_id, reason)
            .await?;
        if let Some(requests) = &self.requests {
            requests
                .cancel_pending_of_user(user_id, actor, reason)
                .await?;
        }
        Ok(revoked.len())
    }

    fn need_user(&self, ev: &OktaEvent) -> Result<String, ReactionError> {
        ev.user()
            .map(|u| u.id.clone())
            .ok_or_else(|| ReactionError::MissingTarget {
                uuid: ev.uuid.clone(),
                event_type: ev.event_type.clone(),
                what: "User",
            })
    }

    /// The policy resources an add/remove event is about: by the group or app target, or every
    /// role resource for a privilege event (its role is not named in a stable form).
    fn resources_of(&self, ev: &OktaEvent) -> Result<Vec<crate::policy::Resource>, ReactionError> {
        let policy = self.grants.policy().current();
        let (kind, object) = match ev.event_type.as_str() {
            GROUP_ADD | GROUP_REMOVE => {
                (ResourceKind::OktaGroup, Some(self.need(ev, "UserGroup")?))
            }
            APP_ADD | APP_REMOVE => (ResourceKind::OktaApp, Some(self.need(ev, "AppInstance")?)),
            _ => (ResourceKind::OktaRole, None),
        };
        Ok(policy
            .resources
            .iter()
            .filter(|r| r.kind == kind && object.as_deref().is_none_or(|o| r.okta_id == o))
            .cloned()
            .collect())
    }

    fn need(&self, ev: &OktaEvent, kind: &'static str) -> Result<String, ReactionError> {
        ev.target(kind)
            .map(|t| t.id.clone())
            .ok_or_else(|| ReactionError::MissingTarget {
                uuid: ev.uuid.clone(),
                event_type: ev.event_type.clone(),
                what: kind,
            })
    }

    /// Someone gained a managed resource: the drift reaction judges each one.
    async fn added(&self, ev: &OktaEvent) -> Result<String, ReactionError> {
        let user = ev
            .user()
            .cloned()
            .ok_or_else(|| ReactionError::MissingTarget {
                uuid: ev.uuid.clone(),
                event_type: ev.event_type.clone(),
                what: "User",
            })?;
        let own = ev
            .actor
            .as_ref()
            .is_some_and(|a| self.drift.is_own_actor(&a.id));
        let mut outcomes = Vec::new();
        for res in self.resources_of(ev)? {
            // Drift enforcement takes access away: only if Okta shows the user holding it. Our
            // own changes, report mode and allowances take nothing away and need no read.
            let removes = res.jit_only
                && res.drift == Drift::Enforce
                && !own
                && !res.allows_standing(&user.id, user.alternate_id.as_deref());
            if removes
                && !self
                    .confirm
                    .holds(&Access::of_resource(&user.id, &res))
                    .await?
            {
                self.confirm
                    .record(
                        self.grants.store(),
                        "event.unconfirmed",
                        ev,
                        &user.id,
                        json!({"resource": res.name, "holds": false}),
                    )
                    .await?;
                metrics::counter!("jit_events_unconfirmed_total", "type" => super::worker::metric_type(&ev.event_type))
                    .increment(1);
                outcomes.push("unconfirmed");
                continue;
            }
            let f = Finding {
                resource: res.name.clone(),
                user_id: user.id.clone(),
                user_login: user.alternate_id.clone(),
                detected: Detection::Event {
                    uuid: ev.uuid.clone(),
                },
                actor: ev
                    .actor
                    .as_ref()
                    .filter(|a| !a.id.is_empty())
                    .map(|a| OktaActor {
                        id: a.id.clone(),
                        alternate_id: a.alternate_id.clone(),
                    }),
                changed_at: ev.published_ms,
            };
            let o = self.drift.react(&f).await?;
            outcomes.push(o.as_str());
        }
        Ok(summary(&outcomes))
    }

    /// Someone removed access: our `active` grants on it end as `removed_externally`, unless
    /// the broker made the change, the grant began after the event, or the access is back.
    async fn removed(&self, ev: &OktaEvent) -> Result<String, ReactionError> {
        if ev
            .actor
            .as_ref()
            .is_some_and(|a| self.drift.is_own_actor(&a.id))
        {
            return Ok("own_change".into());
        }
        let user = self.need_user(ev)?;
        let mut ended = 0;
        for res in self.resources_of(ev)? {
            let grants = self
                .grants
                .explaining(&Access::of_resource(&user, &res), None)
                .await?;
            for g in grants.into_iter().filter(|g| g.state == GrantState::Active) {
                let after_event = match (g.activated_at, ev.published_ms) {
                    (Some(a), Some(p)) => a > p.saturating_add(SKEW_MS),
                    _ => false,
                };
                if after_event {
                    continue;
                }
                // Out-of-order deliveries: the access may have come back since (our own add
                // of a later grant); only what is really gone is ended.
                // This is also the confirmation: Okta, read on the read lane, must show the
                // access gone before the grant ends on the event's word.
                if self.confirm.holds(&g.access()).await? {
                    continue;
                }
                let details = json!({
                    "source": "event", "event_uuid": ev.uuid, "event_type": ev.event_type,
                    "okta_actor": ev.actor.as_ref().map(|a| json!({"id": a.id, "alternate_id": a.alternate_id})),
                    "claimed": super::confirm::claimed(ev),
                    "okta": {"holds": false},
                });
                let after = self
                    .grants
                    .end_removed_externally(&g.id, &audit_actor(ev), details)
                    .await?;
                if after.state == GrantState::RemovedExternally {
                    ended += 1;
                }
            }
        }
        Ok(format!("removed_externally {ended}"))
    }
}

/// The audit actor of a change someone made in Okta: `okta:<actor id>`.
fn audit_actor(ev: &OktaEvent) -> String {
    match ev.actor.as_ref().filter(|a| !a.id.is_empty()) {
        Some(a) => format!("okta:{}", a.id),
        None => "okta:unknown".into(),
    }
}

fn summary(outcomes: &[&str]) -> String {
    if outcomes.is_empty() {
        return "not_managed".into();
    }
    outcomes.join(",")
}
