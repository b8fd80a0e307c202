//! Finishing a grant a crash left `provisioning`.
//!
//! Why it exists: a grant's row (and its standing decision) is durable before Okta is called
//! (I2), so a replica that dies between the row and its activation leaves a grant nobody is
//! working on. It used to wait for its provisional expiry (the whole duration): the user might
//! hold the access without an `active` grant, or not hold it at all, and could not ask again
//! (`already_granted`). A provisioning grant is therefore indexed at [`resume_due`] (a few
//! seconds after its creation, never later than its provisional expiry), and when the scheduler
//! hands it over early, [`GrantService::resume_provisioning`] finishes it on whichever replica
//! claimed it: under the access lock, read Okta; with the access present and a decision already
//! recorded, activate; otherwise decide again and retry the add. A definite Okta refusal ends
//! the grant `failed` (visible, alerted) and the user may ask again.
//!
//! What it must never do: resume a grant whose activation is still running (the live activation
//! holds the access lock; the resume only *tries* the lock and looks again later), or remove
//! anything (resuming only adds; the expiry path removes).

use super::error::GrantError;
use super::handler::SCHEDULER_ACTOR;
use super::lock::AccessLock;
use super::model::{Grant, GrantState};
use super::provision;
use super::GrantService;
use crate::okta::Priority;
use crate::scheduler::ExpiryOutcome;

/// How long after its creation a `provisioning` grant is handed to the resume path. A normal
/// activation is one Okta read and one add; one that takes longer holds the access lock, so an
/// early look only costs a lock attempt. Matches the default `scheduler.lease` (3 s) and the
/// access lock's TTL, the time a dead replica's lock takes to lapse.
pub const RESUME_AFTER_MS: i64 = 3_000;

/// When a `provisioning` grant created at `created_at` is due in the index.
pub fn resume_due(created_at: i64, provisional_expiry: i64) -> i64 {
    created_at
        .saturating_add(RESUME_AFTER_MS)
        .min(provisional_expiry)
}

impl GrantService {
    /// The scheduler found `g` `provisioning` before its provisional expiry: finish it if no one
    /// else is (see the module docs). Returns what the scheduler should do with the entry next.
    pub(super) async fn resume_provisioning(&self, g: &Grant) -> Result<ExpiryOutcome, GrantError> {
        let now = self.clock().now_ms();
        if now < g.created_at.saturating_add(RESUME_AFTER_MS) {
            // Young: its activation is normally still running.
            return Ok(ExpiryOutcome::Reschedule {
                due_ms: resume_due(g.created_at, g.expires_at),
            });
        }
        let key = g.access_key();
        let (lock, taken) = AccessLock::try_acquire_many(self.redis(), &[key.as_str()]).await?;
        if taken.first() != Some(&true) {
            // A live activation (or another change to this access) holds it: look again later.
            return Ok(ExpiryOutcome::Reschedule {
                due_ms: now.saturating_add(RESUME_AFTER_MS).min(g.expires_at),
            });
        }
        let r = lock.hold(self.resume_locked(&g.id)).await;
        lock.release().await;
        let after = r?;
        if after.state == GrantState::Active {
            metrics::counter!("jit_grants_resumed_total").increment(1);
            tracing::warn!(grant = %after.id, "provisioning interrupted by a crash was finished");
        }
        Ok(self.next_after_resume(&after))
    }

    async fn resume_locked(&self, id: &str) -> Result<Grant, GrantError> {
        let g = self.get(id).await?;
        if g.state != GrantState::Provisioning {
            return Ok(g);
        }
        // An Okta failure here is retried by the scheduler (the grant stays provisioning and
        // is due again after a back-off); it does not abort the grant as a first attempt does.
        let holding = provision::current(self.okta(), &g.access(), None, Priority::Grant).await?;
        self.provision_locked(g, holding, SCHEDULER_ACTOR).await
    }

    /// Where the grant's index entry goes once the resume is over, from its state.
    fn next_after_resume(&self, g: &Grant) -> ExpiryOutcome {
        match g.state {
            GrantState::Active => ExpiryOutcome::Reschedule {
                due_ms: g.expires_at,
            },
            GrantState::Provisioning => ExpiryOutcome::Reschedule {
                due_ms: self
                    .clock()
                    .now_ms()
                    .saturating_add(RESUME_AFTER_MS)
                    .min(g.expires_at),
            },
            GrantState::Revoking => ExpiryOutcome::Reschedule {
                due_ms: g.expires_at.min(self.clock().now_ms()),
            },
            GrantState::Failed => match g.next_retry_at {
                Some(t) => ExpiryOutcome::Reschedule { due_ms: t },
                None => ExpiryOutcome::Done,
            },
            GrantState::Revoked | GrantState::Requested | GrantState::RemovedExternally => {
                ExpiryOutcome::Done
            }
        }
    }
}
