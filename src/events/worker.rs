//! The inbox worker: claims due events with a lease, runs their reactions, records the result.
//!
//! Why it exists: a delivery is answered as soon as its events are stored; the work happens
//! here, with retries, so an Okta or Redis hiccup delays a reaction instead of losing it. Any
//! number of replicas run it on one inbox: the claim (see `inbox`) gives each event to one of
//! them, one user's events in `published` order. Leases are short (`events.lease`, 5 s) and
//! renewed every third of a lease while the reactions run, as the scheduler's are: a replica
//! that dies loses its leases within seconds and another one takes the events over, re-running
//! the reaction (reactions finish what an earlier attempt started, see `reactions`).
//!
//! What it must never do: drop an event after a failed attempt (it is retried with capped,
//! jittered backoff, then dead-lettered and counted; an event waiting on a confirmation read
//! that Okta cannot answer now is retried without a limit, since dead-lettering it would drop a
//! real departure on an Okta outage), or stop between a reaction and its
//! record without the lease making the event claimable again.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::envelope::OktaEvent;
use super::inbox::{self, Claimed};
use super::reactions::{ReactionError, Reactions};
use super::EventsConfig;
use crate::clock::Clock;
use crate::store::Store;

pub struct Worker {
    pub store: Store,
    pub clock: Clock,
    pub config: EventsConfig,
    pub reactions: Reactions,
    pub wake: Arc<Notify>,
}

impl Worker {
    /// Runs until `cancel` fires; the batch in hand is finished first.
    pub async fn run(self, cancel: CancellationToken) {
        let mut last_gauge = 0_i64;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let worked = match self.tick().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(&e), "event inbox claim failed");
                    false
                }
            };
            let now = self.clock.now_ms();
            if now - last_gauge > 10_000 {
                last_gauge = now;
                self.refresh_gauge().await;
            }
            if !worked {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                }
            }
        }
    }

    /// One claim and its events, processed concurrently (they are of different users).
    pub async fn tick(&self) -> Result<usize, crate::store::StoreError> {
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let now = self.clock.now_ms();
        let lease = i64::try_from(self.config.lease.as_millis()).unwrap_or(i64::MAX);
        let claimed = inbox::claim(
            &self.store,
            &owner,
            now,
            now.saturating_add(lease),
            i64::from(self.config.concurrency),
        )
        .await?;
        let n = claimed.len();
        if n == 0 {
            return Ok(0);
        }
        let work = futures::stream::iter(claimed).for_each_concurrent(None, |c| {
            let owner = owner.as_str();
            async move { self.process(c, owner).await }
        });
        self.renewing(&owner, work).await;
        Ok(n)
    }

    /// Runs `work` while renewing the claim's leases every third of `events.lease`, in the same
    /// task (a `select!`), so the renewal stops the moment the work ends or the process dies: a
    /// dead replica's events come back after one short lease, a slow reaction keeps its own.
    async fn renewing(&self, owner: &str, work: impl std::future::Future<Output = ()>) {
        let lease = i64::try_from(self.config.lease.as_millis()).unwrap_or(i64::MAX);
        let period = (self.config.lease / 3).max(std::time::Duration::from_millis(100));
        crate::tasks::while_renewing(work, period, || async move {
            let until = self.clock.now_ms().saturating_add(lease);
            if let Err(e) = inbox::renew(&self.store, owner, until).await {
                tracing::warn!(error = %e, "cannot renew event leases; they may be taken over");
            }
            true
        })
        .await
    }

    async fn process(&self, c: Claimed, owner: &str) {
        crate::crash::point(crate::crash::EVENT_PROCESSING);
        let result = match serde_json::from_str::<serde_json::Value>(&c.body)
            .ok()
            .and_then(|v| OktaEvent::from_value(&v))
        {
            Some(ev) => match self.reactions.handle(&ev).await {
                Err(ReactionError::NotYet { until_ms }) => {
                    if let Err(e) = inbox::defer(&self.store, &c.uuid, owner, until_ms).await {
                        // The lease runs out and the event is claimed again.
                        tracing::warn!(event = %c.uuid, error = %e, "cannot defer event");
                    }
                    return;
                }
                // A confirmation read that failed for a while (5xx, 429, timeout) is retried for as long as it takes (capped
                // backoff): dead-lettering it would drop a real departure on an Okta outage.
                // A permanent refusal (no permission to read) is dead-lettered as usual.
                Err(ReactionError::Okta(e)) => {
                    let keep = e.is_retryable();
                    Err((crate::error::chain(&ReactionError::Okta(e)), keep))
                }
                r => r.map_err(|e| (crate::error::chain(&e), false)),
            },
            None => Err(("the stored event cannot be read".to_string(), false)),
        };
        let now = self.clock.now_ms();
        let ty = metric_type(&c.event_type);
        match result {
            Ok(outcome) => {
                match inbox::complete(&self.store, &c.uuid, owner, now, &outcome).await {
                    Ok(true) => {
                        metrics::counter!("jit_events_processed_total", "type" => ty).increment(1);
                        metrics::histogram!("jit_events_processing_lag_seconds")
                            .record(((now - c.published).max(0) as f64) / 1000.0);
                    }
                    Ok(false) => {
                        tracing::warn!(event = %c.uuid, "event lease lost before its result was recorded")
                    }
                    // The lease runs out and the event is processed again; reactions are
                    // idempotent in effect.
                    Err(e) => {
                        tracing::warn!(event = %c.uuid, error = %e, "cannot record processed event")
                    }
                }
            }
            Err((error, keep)) => {
                metrics::counter!("jit_events_failed_total", "type" => ty).increment(1);
                let attempts = u32::try_from(c.attempts).unwrap_or(u32::MAX);
                let retry_at = (keep || attempts < self.config.max_attempts)
                    .then(|| now.saturating_add(self.backoff_ms(attempts)));
                match inbox::fail(&self.store, &self.clock, &c, owner, &error, retry_at).await {
                    Ok(true) if retry_at.is_none() => {
                        metrics::counter!("jit_events_dead_total", "type" => ty).increment(1);
                        tracing::error!(event = %c.uuid, event_type = %c.event_type, error = %error,
                            alert = true, "Okta event dead-lettered after {attempts} attempts");
                    }
                    Ok(_) => {
                        tracing::warn!(event = %c.uuid, attempt = attempts, error = %error, "event processing failed; will retry")
                    }
                    Err(e) => {
                        tracing::warn!(event = %c.uuid, error = %e, "cannot record failed event")
                    }
                }
            }
        }
    }

    /// Capped exponential backoff with full jitter over its upper half.
    fn backoff_ms(&self, attempts: u32) -> i64 {
        let base = self.config.backoff_base.as_millis() as f64;
        let max = self.config.backoff_max.as_millis() as f64;
        let exp = (base * 2f64.powi(attempts.saturating_sub(1).min(30) as i32)).min(max);
        let jitter = rand::random::<f64>() * exp / 2.0;
        (exp / 2.0 + jitter) as i64
    }

    async fn refresh_gauge(&self) {
        if let Ok(counts) = inbox::count_by_state(&self.store).await {
            for st in inbox::STATES {
                let n = counts.iter().find(|(s, _)| s == st).map_or(0, |(_, n)| *n);
                metrics::gauge!("jit_events", "state" => st).set(n as f64);
            }
        }
    }
}

/// Event types as a metric label: the ones we know, else `other` (Okta's catalogue is long).
pub fn metric_type(t: &str) -> &'static str {
    super::reactions::SUBSCRIBED
        .iter()
        .find(|s| **s == t)
        .copied()
        .unwrap_or("other")
}
