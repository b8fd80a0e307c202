//! Expiring a claimed batch of grants together: the fast path of an expiry burst.
//!
//! Why it exists: one revocation done alone costs a read, a lock round trip, two commits, a
//! count of the other grants holding the access, the Okta call and an unlock. Under a burst of
//! thousands those fixed costs, not Okta, bounded how fast access was removed (I1). Here a batch
//! the scheduler claimed together shares them: one read of every row, one script taking every
//! free access lock, one commit moving them all to `revoking`, one count query, the Okta calls
//! concurrently (each grant's `revoked` queued to the group commit as soon as its own call is
//! done), one unlock.
//!
//! It makes exactly the decisions `handler` makes for one grant, under the same locks, with the
//! same compare-and-sets and audit entries (I4, I5, I6). Only the plain case goes this way: a
//! live grant that is due and whose lock is free. Everything else (not yet due, already ended,
//! `revoking` or `failed` retries, a lock held elsewhere, a compare-and-set lost to a concurrent
//! change, an Okta error) takes the one-at-a-time path, which re-reads and waits for the lock.
//!
//! What it must never do: hold a batch's locks while a grant of the batch waits for one of them
//! (the one-at-a-time path runs after they are released), or answer `Done` for a grant whose
//! `revoked` state did not commit.

use std::collections::HashMap;

use futures::future::join_all;

use super::error::GrantError;
use super::handler::{mark_revoking, revoking_change, SCHEDULER_ACTOR};
use super::lock::AccessLock;
use super::model::{Grant, GrantState};
use super::repo;
use super::GrantService;
use crate::scheduler::{ExpiryItem, ExpiryOutcome};

/// A grant of the batch that is taking the fast path.
struct Item {
    /// Index in the caller's slice.
    at: usize,
    grant: Grant,
    attempt: u32,
}

impl GrantService {
    /// Expires `items` (as [`crate::scheduler::ExpiryHandler::expire_many`]): one outcome per
    /// item, in order.
    pub(crate) async fn expire_batch(&self, items: &[ExpiryItem]) -> Vec<ExpiryOutcome> {
        let mut out: Vec<Option<ExpiryOutcome>> = vec![None; items.len()];
        let mut slow = Vec::new();
        match self.expire_fast(items, &mut out, &mut slow).await {
            Ok(()) => {}
            Err(e) => {
                // Our store or Redis failed part-way: whatever has no outcome yet is retried
                // (every step is idempotent, and a grant left `revoking` is finished next time).
                let error = crate::error::chain(&e);
                tracing::warn!(%error, "batched expiry failed; retrying its grants");
                for o in out.iter_mut().filter(|o| o.is_none()) {
                    *o = Some(ExpiryOutcome::Retry {
                        error: error.clone(),
                    });
                }
            }
        }
        // The batch's locks are released: the one-at-a-time path may wait for them now.
        let singles = join_all(slow.iter().map(|&i: &usize| {
            self.end_access(&items[i].grant_id, SCHEDULER_ACTOR, items[i].attempt)
        }))
        .await;
        for (&i, o) in slow.iter().zip(singles) {
            out[i] = Some(o);
        }
        out.into_iter()
            .map(|o| {
                o.unwrap_or_else(|| ExpiryOutcome::Retry {
                    error: "expiry produced no outcome".into(),
                })
            })
            .collect()
    }

    /// Settles what it can in `out`; pushes the indices that need the one-at-a-time path to
    /// `slow`.
    async fn expire_fast(
        &self,
        items: &[ExpiryItem],
        out: &mut [Option<ExpiryOutcome>],
        slow: &mut Vec<usize>,
    ) -> Result<(), GrantError> {
        let ids: Vec<&str> = items.iter().map(|i| i.grant_id.as_str()).collect();
        let mut rows: HashMap<String, Grant> = repo::get_many(self.store(), &ids)
            .await?
            .into_iter()
            .map(|g| (g.id.clone(), g))
            .collect();
        let now = self.clock().now_ms();
        let mut fast = Vec::new();
        for (at, it) in items.iter().enumerate() {
            let Some(g) = rows.remove(&it.grant_id) else {
                // No row (or the same id twice in one batch: its first copy is handled).
                if ids[..at].contains(&it.grant_id.as_str()) {
                    slow.push(at);
                } else {
                    out[at] = Some(ExpiryOutcome::Done);
                }
                continue;
            };
            match g.state {
                GrantState::Revoked | GrantState::Requested | GrantState::RemovedExternally => {
                    out[at] = Some(ExpiryOutcome::Done)
                }
                // Early while provisioning: the resume path (one at a time, it takes the lock).
                GrantState::Provisioning if g.expires_at > now => slow.push(at),
                GrantState::Active if g.expires_at > now => {
                    out[at] = Some(ExpiryOutcome::Reschedule {
                        due_ms: g.expires_at,
                    })
                }
                GrantState::Provisioning | GrantState::Active => fast.push(Item {
                    at,
                    grant: g,
                    attempt: it.attempt,
                }),
                GrantState::Revoking | GrantState::Failed => slow.push(at),
            }
        }
        if fast.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = fast.iter().map(|i| i.grant.access_key()).collect();
        let names: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (lock, taken) = AccessLock::try_acquire_many(self.redis(), &names).await?;
        let mut locked = Vec::with_capacity(fast.len());
        for (item, got) in fast.into_iter().zip(taken) {
            if got {
                locked.push(item);
            } else {
                slow.push(item.at);
            }
        }
        let r = lock.hold(self.revoke_locked(locked, out, slow)).await;
        lock.release().await;
        r
    }

    /// Under the batch's locks: `revoking`, the decision, Okta, `revoked`.
    async fn revoke_locked(
        &self,
        items: Vec<Item>,
        out: &mut [Option<ExpiryOutcome>],
        slow: &mut Vec<usize>,
    ) -> Result<(), GrantError> {
        let actor = SCHEDULER_ACTOR;
        let changes = items
            .iter()
            .map(|i| revoking_change(&i.grant, actor))
            .collect();
        let won = self
            .commits()
            .commit_many(self.store(), self.clock(), changes)
            .await?
            .won;
        // A lost compare-and-set means the row changed since it was read (an extension, an
        // early revoke): the one-at-a-time path re-reads it and decides again.
        let mut live = Vec::with_capacity(items.len());
        for (mut item, w) in items.into_iter().zip(won) {
            if w {
                mark_revoking(&mut item.grant, actor);
                live.push(item);
            } else {
                slow.push(item.at);
            }
        }
        // Everyone's "other live grants on this access" in one query: the batch's own grants
        // are `revoking` now, so they no longer count (as `count_ours` excludes the grant itself).
        let ours: Vec<&Grant> = live
            .iter()
            .filter(|i| i.grant.standing == Some(false))
            .map(|i| &i.grant)
            .collect();
        let counts = if ours.is_empty() {
            HashMap::new()
        } else {
            let mut conn = self.store().reads().acquire().await?;
            repo::live_counts(&mut conn, &ours).await?
        };
        // Each grant records `revoked` as soon as its own Okta call is done (the group commit
        // still merges the concurrent ones): one slow call, such as a 429 waiting for its reset,
        // must not keep the rest of the chunk `revoking`.
        let counts = &counts;
        let results = join_all(live.into_iter().map(|item| async move {
            let o = self.finish_one(&item, counts, actor).await;
            (item.at, o)
        }))
        .await;
        for (at, o) in results {
            out[at] = Some(o);
        }
        Ok(())
    }

    /// One `revoking` grant of the chunk: decide, remove if it is ours alone, record `revoked`.
    /// Errors stay with this grant.
    async fn finish_one(
        &self,
        item: &Item,
        counts: &HashMap<String, i64>,
        actor: &str,
    ) -> ExpiryOutcome {
        let g = &item.grant;
        let decided = match g.standing {
            None => Ok("never_provisioned"),
            Some(true) => Ok("kept_standing"),
            Some(false) if counts.get(&g.access_key()).copied().unwrap_or(0) > 0 => {
                Ok("kept_shared")
            }
            Some(false) => self.remove(g).await.map(|r| r.as_str()),
        };
        let r = match decided {
            Ok(outcome) => self
                .finish_revoked(g, actor, outcome, item.attempt)
                .await
                .map(|won| {
                    if won {
                        ExpiryOutcome::Done
                    } else {
                        ExpiryOutcome::Retry {
                            error: "grant changed concurrently".into(),
                        }
                    }
                }),
            Err(e) => self.on_error(g, e, item.attempt).await,
        };
        r.unwrap_or_else(|e| ExpiryOutcome::Retry {
            error: crate::error::chain(&e),
        })
    }
}
