//! Ending access: expiry (called by the scheduler) and the second half of an early revoke.
//!
//! Why it exists: removal is where I4, I5 and I8 meet. Under the access lock the grant is
//! re-read and the decision re-made on every attempt: standing access and access still needed by
//! another live grant of ours are left alone; otherwise the access is removed, "already gone"
//! counts as success, retryable Okta errors go back to the scheduler, and permanent ones move the
//! grant to `failed` with the error kept, a metric and an `error!` log (the alert).
//!
//! What it must never do: remove access that another live grant or standing access explains, or
//! report `Done` for a grant whose access may still be present.

use serde_json::json;

use super::commit::Change;
use super::error::GrantError;
use super::lock::AccessLock;
use super::model::{Grant, GrantState};
use super::provision::{self, Removed};
use super::repo::{self, Bind};
use super::resume::RESUME_AFTER_MS;
use super::GrantService;
use crate::audit::NewEntry;
use crate::okta::OktaError;
use crate::scheduler::{BoxError, DueEntry, ExpiryHandler, ExpiryItem, ExpiryOutcome};

pub const SCHEDULER_ACTOR: &str = "system:scheduler";

/// The most entries one `due_entries` rebuild returns.
const REBUILD_LIMIT: i64 = 1_000_000;

impl GrantService {
    /// Ends the grant's access if its time has come (or it is being revoked). Idempotent.
    pub(crate) async fn end_access(&self, id: &str, actor: &str, attempt: u32) -> ExpiryOutcome {
        match self.try_end_access(id, actor, attempt).await {
            Ok(o) => o,
            // Our own store or Redis failing is transient: the scheduler backs off and retries.
            Err(e) => ExpiryOutcome::Retry {
                error: crate::error::chain(&e),
            },
        }
    }

    async fn try_end_access(
        &self,
        id: &str,
        actor: &str,
        attempt: u32,
    ) -> Result<ExpiryOutcome, GrantError> {
        let Some(g) = repo::get(self.store(), id).await? else {
            return Ok(ExpiryOutcome::Done);
        };
        match g.state {
            GrantState::Revoked | GrantState::Requested | GrantState::RemovedExternally => {
                return Ok(ExpiryOutcome::Done)
            }
            GrantState::Provisioning | GrantState::Active => {
                let now = self.clock().now_ms();
                if g.expires_at > now {
                    // Due early while provisioning: its activation may have died with a replica.
                    if g.state == GrantState::Provisioning {
                        return self.resume_provisioning(&g).await;
                    }
                    return Ok(ExpiryOutcome::Reschedule {
                        due_ms: g.expires_at,
                    });
                }
            }
            GrantState::Revoking | GrantState::Failed => {}
        }
        let lock = AccessLock::acquire(self.redis(), &g.access_key(), self.clock()).await?;
        let r = lock.hold(self.end_locked(g, actor, attempt)).await;
        lock.release().await;
        r
    }

    /// Under the access lock. `seen` was read before the lock was taken; every decision below
    /// is made on a state that is current under the lock: either a compare-and-set on `seen`'s
    /// version won (so nothing changed since it was read), or the grant is read again.
    async fn end_locked(
        &self,
        seen: Grant,
        actor: &str,
        attempt: u32,
    ) -> Result<ExpiryOutcome, GrantError> {
        let id = seen.id.clone();
        let mut g = seen;
        // The common case of a burst: a live grant that is due. Its `revoking` compare-and-set
        // on the version read before the lock doubles as the re-read: winning proves the row is
        // as read, and saves a query per revocation.
        let current = matches!(g.state, GrantState::Provisioning | GrantState::Active)
            && self.start_revoking(&mut g, actor).await?;
        if !current {
            let Some(cur) = repo::get(self.store(), &id).await? else {
                return Ok(ExpiryOutcome::Done);
            };
            g = cur;
            let now = self.clock().now_ms();
            match g.state {
                GrantState::Revoked | GrantState::Requested | GrantState::RemovedExternally => {
                    return Ok(ExpiryOutcome::Done)
                }
                GrantState::Provisioning | GrantState::Active => {
                    if g.expires_at > now {
                        return Ok(ExpiryOutcome::Reschedule {
                            due_ms: g.expires_at,
                        });
                    }
                    // Conditional on the version we read: an extension that committed first
                    // wins, and we come back with Reschedule on the next call.
                    if !self.start_revoking(&mut g, actor).await? {
                        // Usually an extension that committed first: answer with its new due time.
                        let now_g = self.get(&id).await?;
                        let live =
                            matches!(now_g.state, GrantState::Provisioning | GrantState::Active);
                        if live && now_g.expires_at > self.clock().now_ms() {
                            return Ok(ExpiryOutcome::Reschedule {
                                due_ms: now_g.expires_at,
                            });
                        }
                        return Ok(ExpiryOutcome::Retry {
                            error: "grant changed concurrently".into(),
                        });
                    }
                }
                GrantState::Revoking | GrantState::Failed => {}
            }
        }
        let outcome = match g.standing {
            // Never got as far as Okta: nothing of ours is there.
            None => "never_provisioned",
            Some(true) => "kept_standing",
            Some(false) => {
                let mut conn = self.store().reads().acquire().await?;
                let others = repo::count_ours(
                    &mut conn,
                    &g,
                    &[GrantState::Provisioning, GrantState::Active],
                )
                .await?;
                drop(conn);
                if others > 0 {
                    "kept_shared"
                } else {
                    match self.remove(&g).await {
                        Ok(r) => r.as_str(),
                        Err(e) => return self.on_error(&g, e, attempt).await,
                    }
                }
            }
        };
        if !self.finish_revoked(&g, actor, outcome, attempt).await? {
            return Ok(ExpiryOutcome::Retry {
                error: "grant changed concurrently".into(),
            });
        }
        Ok(ExpiryOutcome::Done)
    }

    /// `active`/`provisioning` → `revoking` on `g`'s version (group-committed with its audit
    /// entry). On success `g` is updated to the committed row without reading it back.
    async fn start_revoking(&self, g: &mut Grant, actor: &str) -> Result<bool, GrantError> {
        let (won, _) = self
            .commits()
            .commit(self.store(), self.clock(), revoking_change(g, actor))
            .await?;
        if won {
            mark_revoking(g, actor);
        }
        Ok(won)
    }

    /// `revoking`/`failed` → `revoked` on `g`'s version, through the group commit, with what
    /// happened in Okta (`outcome`) in the audit entry. Counts the metrics when it wins.
    pub(super) async fn finish_revoked(
        &self,
        g: &Grant,
        actor: &str,
        outcome: &'static str,
        attempt: u32,
    ) -> Result<bool, GrantError> {
        let change = revoked_change(g, actor, outcome, attempt);
        let (won, ended_at) = self
            .commits()
            .commit(self.store(), self.clock(), change)
            .await?;
        if won {
            self.count_revoked(g, outcome, ended_at);
        }
        Ok(won)
    }

    fn count_revoked(&self, g: &Grant, outcome: &'static str, now: i64) {
        self.count("revoked");
        metrics::counter!("jit_grant_okta_changes_total", "kind" => g.kind.as_str(), "change" => outcome)
            .increment(1);
        metrics::histogram!("jit_grant_revoke_lag_seconds")
            .record(((now - g.expires_at).max(0) as f64) / 1000.0);
    }

    pub(super) async fn remove(&self, g: &Grant) -> Result<Removed, OktaError> {
        let r = provision::remove(self.okta(), g).await?;
        if g.end_sessions {
            provision::end_sessions(self.okta(), g).await?;
        }
        Ok(r)
    }

    pub(super) async fn on_error(
        &self,
        g: &Grant,
        e: OktaError,
        attempt: u32,
    ) -> Result<ExpiryOutcome, GrantError> {
        let msg = crate::error::chain(&e);
        if e.is_retryable() {
            let mut conn = self.store().pool().acquire().await?;
            repo::cas(
                &mut conn,
                &g.id,
                g.version,
                "attempts = attempts + 1, last_error = $3",
                vec![Bind::S(msg.clone())],
            )
            .await?;
            tracing::warn!(grant = %g.id, attempt, error = %msg, "revocation failed; will retry");
            return Ok(ExpiryOutcome::Retry { error: msg });
        }
        self.record_failure(g, &msg, e.error_code()).await?;
        Ok(ExpiryOutcome::Failed)
    }

    /// Moves the grant to `failed` (or, if it already is, sets its next retry), keeping `msg`.
    async fn record_failure(
        &self,
        g: &Grant,
        msg: &str,
        code: Option<&str>,
    ) -> Result<(), GrantError> {
        let now = self.clock().now_ms();
        let next = now.saturating_add(self.failed_retry_ms());
        if g.state == GrantState::Failed {
            let mut conn = self.store().pool().acquire().await?;
            repo::cas(
                &mut conn,
                &g.id,
                g.version,
                "attempts = attempts + 1, last_error = $3, next_retry_at = $4",
                vec![Bind::S(msg.to_string()), Bind::I(next)],
            )
            .await?;
            tracing::error!(grant = %g.id, error = %msg, "failed grant still cannot be revoked");
            return Ok(());
        }
        let won = self
            .transition(
                g,
                "state = 'failed', last_error = $3, next_retry_at = $4, attempts = attempts + 1",
                vec![Bind::S(msg.to_string()), Bind::I(next)],
                SCHEDULER_ACTOR,
                "grant.failed",
                json!({ "phase": "revoke", "error": msg, "error_code": code, "next_retry_at": next }),
            )
            .await?;
        if won {
            self.alert_failed(&g.id, msg);
        }
        Ok(())
    }

    pub(crate) fn alert_failed(&self, id: &str, msg: &str) {
        metrics::counter!("jit_grants_failed_total").increment(1);
        self.count("failed");
        tracing::error!(grant = %id, error = %msg, alert = true, "grant FAILED: access may remain in Okta; operator action needed");
    }
}

/// The `revoking` compare-and-set for an expiry by `actor`, with its audit entry.
pub(super) fn revoking_change(g: &Grant, actor: &str) -> Change {
    Change {
        id: g.id.clone(),
        version: g.version,
        set: "state = 'revoking', ended_by = $3, end_reason = $4",
        binds: vec![Bind::S(actor.into()), Bind::S("expired".into())],
        stamp_tx_time: false,
        entry: NewEntry::new(
            actor,
            "grant.revoking",
            g.subject(),
            json!({ "reason": "expired", "was": g.state.as_str(), "expires_at": g.expires_at }),
        ),
    }
}

/// What [`revoking_change`] wrote, applied to `g` without reading it back.
pub(super) fn mark_revoking(g: &mut Grant, actor: &str) {
    g.state = GrantState::Revoking;
    g.ended_by = Some(actor.to_string());
    g.end_reason = Some("expired".into());
    g.version += 1;
}

/// The `revoked` compare-and-set (`ended_at` = its batch's transaction time, so a burst's
/// `revoked` changes share one UPDATE), with what happened in Okta in its audit entry.
fn revoked_change(g: &Grant, actor: &str, outcome: &'static str, attempt: u32) -> Change {
    Change {
        id: g.id.clone(),
        version: g.version,
        set: "state = 'revoked', ended_at = $3, last_error = NULL, next_retry_at = NULL",
        binds: Vec::new(),
        stamp_tx_time: true,
        entry: NewEntry::new(
            actor,
            "grant.revoked",
            g.subject(),
            json!({ "okta_change": outcome, "was": g.state.as_str(), "attempt": attempt }),
        ),
    }
}

#[async_trait::async_trait]
impl ExpiryHandler for GrantService {
    async fn expire(&self, grant_id: &str, attempt: u32) -> ExpiryOutcome {
        self.end_access(grant_id, SCHEDULER_ACTOR, attempt).await
    }

    async fn expire_many(&self, items: &[ExpiryItem]) -> Vec<ExpiryOutcome> {
        self.expire_batch(items).await
    }

    async fn give_up(&self, grant_id: &str, error: &str) -> Result<(), BoxError> {
        let Some(g) = repo::get(self.store(), grant_id).await? else {
            return Ok(());
        };
        if g.state.is_terminal() || g.state == GrantState::Requested {
            return Ok(());
        }
        self.record_failure(&g, &format!("retries exhausted: {error}"), None)
            .await
            .map_err(|e| Box::new(e) as BoxError)
    }

    async fn due_entries(&self) -> Result<Vec<DueEntry>, BoxError> {
        // The periodic rebuild is also when the per-state gauge is refreshed: one cheap query.
        if let Ok(counts) = repo::count_by_state(self.store()).await {
            for st in GrantState::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == st.as_str())
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("jit_grants", "state" => st.as_str()).set(n as f64);
            }
        }
        let rows = repo::due_entries(self.store(), None, REBUILD_LIMIT, RESUME_AFTER_MS).await?;
        Ok(rows
            .into_iter()
            .map(|(grant_id, due_ms)| DueEntry { grant_id, due_ms })
            .collect())
    }

    async fn overdue_early(&self, now_ms: i64, limit: u32) -> Result<Vec<DueEntry>, BoxError> {
        let rows = repo::due_early(self.store(), now_ms, i64::from(limit), RESUME_AFTER_MS).await?;
        Ok(rows
            .into_iter()
            .map(|(grant_id, due_ms)| DueEntry { grant_id, due_ms })
            .collect())
    }

    async fn overdue(&self, now_ms: i64, limit: u32) -> Result<Vec<DueEntry>, BoxError> {
        let rows = repo::due_entries(
            self.store(),
            Some(now_ms),
            i64::from(limit),
            RESUME_AFTER_MS,
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|(grant_id, due_ms)| DueEntry { grant_id, due_ms })
            .collect())
    }
}
