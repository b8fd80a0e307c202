//! Grants ended from outside the broker's own expiry: access someone else removed in Okta, and
//! every grant of a user who left.
//!
//! Why it exists: the event hooks and the sync are two detectors of the same facts, and they
//! must end grants through one code path. [`GrantService::end_removed_externally`] records that
//! the access is already gone (a terminal `removed_externally` state, audited, unscheduled);
//! [`GrantService::revoke_all_for_user`] revokes through the ordinary early-revoke path, so a
//! departure is subject to the same standing-access and overlap rules (I5) as any revoke.
//!
//! What it must never do: re-add access someone removed, call Okta for a grant it ends as
//! `removed_externally` (the access is gone; removing "again" could take a new grant's access),
//! or end a grant as `removed_externally` that is not `active` (a provisioning grant's add may
//! still be on its way, and a revoking or failed one is finished by the expiry path, which counts
//! "already gone" as done).

use serde_json::json;

use super::error::GrantError;
use super::model::{Grant, GrantState};
use super::repo::{self, Bind};
use super::service::Holder;
use super::GrantService;

/// How many of one user's grants are revoked at once: a departure with many grants should not
/// take every Okta slot of the revocation lane for itself.
const REVOKE_ALL_CONCURRENCY: usize = 8;

impl GrantService {
    /// Ends an `active` grant whose access someone other than the broker removed in Okta: state
    /// `removed_externally`, `ended_at` now, the audit entry `grant.removed_externally` with
    /// `details` (what saw it: event uuid or sync run, the Okta actor). Nothing is called in
    /// Okta and the grant leaves the expiry index. Idempotent: a grant in any other state is
    /// returned unchanged (check `state` to know whether this call ended it).
    pub async fn end_removed_externally(
        &self,
        id: &str,
        actor: &str,
        details: serde_json::Value,
    ) -> Result<Grant, GrantError> {
        for _ in 0..5 {
            let g = self.get(id).await?;
            if g.state != GrantState::Active {
                return Ok(g);
            }
            let now = self.clock().now_ms();
            let won = self
                .transition(
                    &g,
                    "state = 'removed_externally', ended_at = $3, ended_by = $4, end_reason = $5",
                    vec![
                        Bind::I(now),
                        Bind::S(actor.into()),
                        Bind::S("removed externally".into()),
                    ],
                    actor,
                    "grant.removed_externally",
                    json!({
                        "user_id": g.user_id, "user_login": g.user_login,
                        "resource": g.resource, "kind": g.kind.as_str(), "okta_id": g.okta_id,
                        "expires_at": g.expires_at, "detected": details,
                    }),
                )
                .await?;
            if won {
                self.count("removed_externally");
                // A stale index entry is harmless (the handler answers Done for a terminal
                // grant); removing it only saves the scheduler a wake-up.
                if let Err(e) = self.index().unschedule(id).await {
                    tracing::warn!(grant = %id, error = %e, "cannot unschedule an externally removed grant");
                }
                return self.get(id).await;
            }
        }
        Err(GrantError::Conflict)
    }

    /// Revokes every grant of the Okta user `user_id` that may hold access (`provisioning`,
    /// `active`, and those already ending: `revoking`, `failed`) through the early-revoke path,
    /// with `reason` recorded on each. The ending ones are included so that a departure
    /// processed again after a crash finishes what the first attempt started: a grant it had
    /// committed `revoking` is removed now, not at whatever time the index still held for it.
    /// Returns the grants as they stand afterwards; each is at least durably `revoking` (the
    /// expiry path finishes any whose Okta call failed). Every grant is attempted; the first
    /// error is returned after all ran.
    pub async fn revoke_all_for_user(
        &self,
        actor: &str,
        user_id: &str,
        reason: &str,
    ) -> Result<Vec<Grant>, GrantError> {
        use futures::StreamExt;
        let live = repo::live_of(self.store(), Holder::Id(user_id), None, true).await?;
        let results: Vec<Result<Grant, GrantError>> = futures::stream::iter(live)
            .map(|g| async move { self.revoke(actor, &g.id, reason).await })
            .buffer_unordered(REVOKE_ALL_CONCURRENCY)
            .collect()
            .await;
        let mut out = Vec::with_capacity(results.len());
        let mut first_err = None;
        for r in results {
            match r {
                Ok(g) => out.push(g),
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}
