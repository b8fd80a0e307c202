//! Running one claimed expiry: the handler call, lease renewal while it runs, and settling
//! the claim according to the outcome (done, reschedule, back-off, give up, failed retry).
//!
//! Why it exists: this is where I8 lives (capped, jittered back-off; give-up to `failed` with a
//! metric and an alert; periodic retries of failed grants) and where an extension made while
//! an expiry was in flight must survive (every write is a compare-and-set on the lease score).
//!
//! What it must never do: cancel a running handler, write a score that is no longer ours, or
//! retry a permanent failure on the fast back-off path.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use super::scripts::{Claim, Settle};
use super::shared::Inner;
use super::{backoff, metrics as m, ExpiryItem, ExpiryOutcome, SchedulerConfig};

/// How long a single handler call may hold its claims (see `Inner::run_handler`): at least
/// [`MIN_HOLD`], and at least [`MIN_HOLD_LEASES`] leases. Five minutes covers a chunk queued
/// behind Okta's one-minute rate-limit windows; the lease itself stays short, because it is
/// what a killed replica's claims wait for.
const MIN_HOLD: Duration = Duration::from_secs(300);
const MIN_HOLD_LEASES: u32 = 10;

pub(crate) fn hold_limit(lease: Duration) -> Duration {
    MIN_HOLD.max(lease * MIN_HOLD_LEASES)
}

/// How often a running chunk's leases are renewed: every third of a lease, so two renewals can
/// fail before the lease runs out.
pub(crate) fn renew_every(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(50))
}

impl Inner {
    /// Settles a claim; a Redis error is logged, not retried: the lease runs out and the grant
    /// comes back to be expired again (the handler is idempotent).
    async fn settle(&self, claim: &Claim, how: Settle) -> Option<(bool, Option<i64>)> {
        match self
            .scripts
            .settle(&self.redis, claim, self.now_arg(), how)
            .await
        {
            Ok(r) => {
                if let (true, Some(score)) = r {
                    if score < self.next_wake_ms.load(Ordering::Acquire) {
                        self.wake.notify_one();
                    }
                }
                Some(r)
            }
            Err(e) => {
                tracing::warn!(grant_id = %claim.grant_id, error = %e,
                    "cannot settle expiry claim; it will come back when its lease ends");
                None
            }
        }
    }

    fn ms(d: Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// Runs the handler for claims taken together, keeping their leases alive while it works,
    /// and settles each by its outcome.
    pub(crate) async fn process(self: Arc<Self>, mut claims: Vec<Claim>) {
        let outcomes = self.run_handler(&mut claims).await;
        if outcomes.len() != claims.len() {
            // A handler bug; the leases run out and the grants are claimed again.
            tracing::error!(claims = claims.len(), outcomes = outcomes.len(),
                "expiry handler returned the wrong number of outcomes; leaving the claims to their leases");
            return;
        }
        // The common case, `Done`, is settled for the whole chunk in one script call.
        let (done, rest): (Vec<_>, Vec<_>) = claims
            .iter()
            .zip(outcomes)
            .partition(|(_, o)| *o == ExpiryOutcome::Done);
        let done: Vec<&Claim> = done.into_iter().map(|(c, _)| c).collect();
        tokio::join!(
            self.settle_done(&done),
            join_all(
                rest.into_iter()
                    .map(|(claim, outcome)| self.settle_outcome(claim, outcome)),
            )
        );
    }

    async fn settle_done(&self, claims: &[&Claim]) {
        match self.scripts.settle_done_many(&self.redis, claims).await {
            Ok(applied) => {
                for (claim, applied) in claims.iter().zip(applied) {
                    self.record_done(claim, applied);
                }
            }
            Err(e) => {
                tracing::warn!(grants = claims.len(), error = %e,
                    "cannot settle finished expiries; they will come back when their leases end");
            }
        }
    }

    fn record_done(&self, claim: &Claim, applied: bool) {
        let id = claim.grant_id.as_str();
        if applied {
            let late = self.clock.now_ms().saturating_sub(claim.original_due_ms);
            ::metrics::histogram!(m::LATENESS).record(late.max(0) as f64 / 1000.0);
            tracing::debug!(grant_id = id, lateness_ms = late, "expiry done");
        } else {
            // Re-scheduled (an extension) or re-claimed while we worked: theirs wins.
            tracing::info!(
                grant_id = id,
                "expiry done but the grant was re-scheduled meanwhile; keeping the new time"
            );
        }
    }

    async fn settle_outcome(&self, claim: &Claim, outcome: ExpiryOutcome) {
        let cfg = &self.config;
        let id = claim.grant_id.as_str();
        match outcome {
            ExpiryOutcome::Done => {
                if let Some((applied, _)) = self.settle(claim, Settle::Done).await {
                    self.record_done(claim, applied);
                }
            }
            ExpiryOutcome::Reschedule { due_ms } => {
                self.settle(claim, Settle::Reschedule { due_ms }).await;
            }
            ExpiryOutcome::Retry { error } => {
                ::metrics::counter!(m::RETRIES).increment(1);
                let max = cfg.max_attempts.max(1);
                if claim.attempt < max {
                    let d = backoff::delay(cfg.backoff_base, cfg.backoff_max, claim.attempt);
                    tracing::warn!(grant_id = id, attempt = claim.attempt, retry_in_ms = Self::ms(d), %error,
                        "expiry failed; retrying");
                    self.settle(
                        claim,
                        Settle::Retry {
                            delay_ms: Self::ms(d),
                            attempt: claim.attempt,
                        },
                    )
                    .await;
                } else if claim.attempt == max {
                    self.give_up(claim, &error).await;
                } else {
                    // Already `failed`: this was a periodic retry and it failed again.
                    tracing::warn!(grant_id = id, attempt = claim.attempt, %error,
                        "retry of a failed expiry failed again");
                    self.retry_failed_later(claim, claim.attempt).await;
                }
            }
            ExpiryOutcome::Failed => {
                // The handler has recorded `failed` itself (a permanent error).
                if claim.attempt <= max_attempts(cfg) {
                    ::metrics::counter!(m::FAILED).increment(1);
                    tracing::error!(grant_id = id, attempt = claim.attempt, alert = true,
                        "expiry failed permanently; grant is now failed and will be retried every {:?}",
                        cfg.failed_retry_interval);
                }
                self.retry_failed_later(claim, claim.attempt.max(max_attempts(cfg)))
                    .await;
            }
        }
    }

    /// Calls the handler without ever cancelling it: a revocation cut off mid-way could leave a
    /// lock or an Okta call half done (the grants handler holds Redis locks across the call).
    /// Instead the chunk's leases are renewed every third of their length while the handler
    /// works (one script call for the whole chunk), so a slow Okta (429 with a long reset) does
    /// not hand the grants to another replica, while a replica killed mid-expiry loses them
    /// within one lease. Renewal stops after [`hold_limit`]: a handler stuck that long is
    /// presumed hung, and letting the leases run out lets another replica do the expiries (I1),
    /// which is harmless if this one wakes up later (I4). A claim also stops being renewed as
    /// soon as its score is no longer ours (an extension or early revoke re-scheduled the grant).
    async fn run_handler(&self, claims: &mut [Claim]) -> Vec<ExpiryOutcome> {
        let every = renew_every(self.config.lease);
        let limit = hold_limit(self.config.lease);
        let started = tokio::time::Instant::now();
        let items: Vec<ExpiryItem> = claims
            .iter()
            .map(|c| ExpiryItem {
                grant_id: c.grant_id.clone(),
                attempt: c.attempt,
            })
            .collect();
        let fut = self.handler.expire_many(&items);
        tokio::pin!(fut);
        let mut renewing = vec![true; claims.len()];
        let mut gave_up = false;
        loop {
            tokio::select! {
                outcomes = &mut fut => return outcomes,
                _ = tokio::time::sleep(every), if !gave_up && renewing.contains(&true) => {
                    if started.elapsed() > limit {
                        gave_up = true;
                        tracing::error!(grants = claims.len(), first = %claims[0].grant_id, alert = true,
                            "expiry handler has run for {:?}; letting the leases lapse so another replica can take over",
                            limit);
                        continue;
                    }
                    self.renew(claims, &mut renewing).await;
                }
            }
        }
    }

    /// One renewal round for the claims still `renewing`: a single script call.
    async fn renew(&self, claims: &mut [Claim], renewing: &mut [bool]) {
        let live: Vec<usize> = (0..claims.len()).filter(|&i| renewing[i]).collect();
        let refs: Vec<&Claim> = live.iter().map(|&i| &claims[i]).collect();
        ::metrics::counter!(m::RENEWALS).increment(1);
        match self
            .scripts
            .renew_many(&self.redis, &refs, self.now_arg(), self.lease_ms())
            .await
        {
            Ok(scores) => {
                for (i, score) in live.into_iter().zip(scores) {
                    match score {
                        Some(s) => claims[i].lease_until_ms = s,
                        // Not ours any more: the settle after the handler will be a no-op too.
                        None => renewing[i] = false,
                    }
                }
            }
            // A Redis hiccup: try again next round; the lease still covers us until then.
            Err(e) => {
                tracing::warn!(grants = refs.len(), error = %e, "cannot renew expiry leases")
            }
        }
    }

    async fn give_up(&self, claim: &Claim, error: &str) {
        let id = claim.grant_id.as_str();
        match self.handler.give_up(id, error).await {
            Ok(()) => {
                ::metrics::counter!(m::FAILED).increment(1);
                tracing::error!(grant_id = id, attempt = claim.attempt, alert = true, %error,
                    "expiry retries exhausted; grant is now failed and will be retried every {:?}",
                    self.config.failed_retry_interval);
                self.retry_failed_later(claim, claim.attempt).await;
            }
            Err(e) => {
                // Could not record `failed` (SQL down?): keep the attempt below the limit so the
                // next try ends in give_up again.
                tracing::error!(grant_id = id, error = %e, "cannot move grant to failed; will try again");
                let d = backoff::delay(
                    self.config.backoff_base,
                    self.config.backoff_max,
                    claim.attempt,
                );
                self.settle(
                    claim,
                    Settle::Retry {
                        delay_ms: Self::ms(d),
                        attempt: claim.attempt.saturating_sub(1),
                    },
                )
                .await;
            }
        }
    }

    async fn retry_failed_later(&self, claim: &Claim, attempt: u32) {
        self.settle(
            claim,
            Settle::Retry {
                delay_ms: Self::ms(self.config.failed_retry_interval),
                attempt,
            },
        )
        .await;
    }
}

fn max_attempts(cfg: &SchedulerConfig) -> u32 {
    cfg.max_attempts.max(1)
}
