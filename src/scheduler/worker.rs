//! The scheduler proper: the claim loop that runs due expiries under a concurrency limit.
//!
//! Why it exists: flow 5. Each replica sleeps until the next due time (or a wake-up message, or
//! a safety cap), claims a batch of due grants atomically with a lease, runs the handler for
//! each, and settles each claim with a compare-and-set. Any number of replicas can do this on one
//! Redis: a claim moves the member's score to the lease end, so no other replica sees it due
//! until the lease runs out, and a replica that died mid-expiry loses its claims by itself.
//!
//! What it must never do: poll in a loop (idle cost is one claim per safety cap), claim more
//! than it has capacity to run (leases would run out while grants wait in memory), or drop
//! in-flight expiries on shutdown.
//!
//! ## Time
//! Two clocks meet here. Due times are written by the broker's [`Clock`] (grant expiry); lease
//! and back-off scores are written by whoever claims. With [`TimeSource::RedisTime`]
//! (production) the scripts read Redis `TIME`, so every replica measures leases against one
//! clock and a replica with a skewed clock cannot steal or extend leases; due times then compare
//! against Redis time, which NTP keeps within milliseconds of the broker clocks. With
//! [`TimeSource::Clock`] the scripts are given `clock.now_ms()`: tests use it with a clock they
//! chose, so due times, leases and back-off are all in the test's time base. The worker never
//! compares times across bases: it sleeps for `next_score - now` as returned by the same script.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::scripts::{Claim, ClaimBatch, Scripts, Settle};
use super::{
    backoff, maintenance, metrics as m, wake, ExpiryHandler, ExpiryIndex, ExpiryOutcome,
    SchedulerConfig, SchedulerError,
};
use crate::clock::Clock;
use crate::redis_conn::RedisConn;
use crate::tasks::Tasks;

/// The longest a worker sleeps without looking at the index, whatever it expects: catches a lost
/// wake-up message or a lease that ran out on another replica. Also capped by the lease.
const SAFETY_CAP: Duration = Duration::from_secs(30);

/// Which clock the claim and settle scripts read "now" from (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// Redis `TIME`: one clock for every replica. Production.
    RedisTime,
    /// The broker [`Clock`] given to the scheduler: tests that control time.
    Clock,
}

/// What an operator or readiness check wants to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Members in the Redis index.
    pub scheduled: u64,
    /// Grants SQL says are past due by more than the sweep grace.
    pub overdue: u64,
    /// Times this replica's worker woke and claimed (a measure of idle cost).
    pub wakeups: u64,
    /// Rebuilds from SQL this replica completed.
    pub rebuilds: u64,
}

/// The expiry scheduler. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("prefix", &self.inner.redis.prefix())
            .field("time_source", &self.inner.time_source)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) redis: RedisConn,
    pub(crate) clock: Clock,
    pub(crate) config: SchedulerConfig,
    pub(crate) handler: Arc<dyn ExpiryHandler>,
    pub(crate) index: ExpiryIndex,
    pub(crate) time_source: TimeSource,
    scripts: Scripts,
    /// Wakes the worker (wake-up messages, local re-scores, sweep and rebuild repairs).
    pub(crate) wake: Notify,
    /// Asks the rebuild task for a rebuild now (data loss detected).
    pub(crate) rebuild_now: Notify,
    pub(crate) rebuilding: AtomicBool,
    /// The score the worker will next wake for (`i64::MAX`: none); the listener compares against it.
    pub(crate) next_wake_ms: AtomicI64,
    wakeups: AtomicU64,
    pub(crate) rebuilds: AtomicU64,
}

impl Scheduler {
    /// A production scheduler: leases on Redis `TIME`.
    pub fn new(
        redis: RedisConn,
        clock: Clock,
        config: SchedulerConfig,
        handler: Arc<dyn ExpiryHandler>,
    ) -> Scheduler {
        Self::with_time_source(redis, clock, config, handler, TimeSource::RedisTime)
    }

    /// As [`Scheduler::new`], choosing the time base (tests pass [`TimeSource::Clock`]).
    pub fn with_time_source(
        redis: RedisConn,
        clock: Clock,
        config: SchedulerConfig,
        handler: Arc<dyn ExpiryHandler>,
        time_source: TimeSource,
    ) -> Scheduler {
        m::describe();
        Scheduler {
            inner: Arc::new(Inner {
                index: ExpiryIndex::new(redis.clone()),
                redis,
                clock,
                config,
                handler,
                time_source,
                scripts: Scripts::new(),
                wake: Notify::new(),
                rebuild_now: Notify::new(),
                rebuilding: AtomicBool::new(false),
                next_wake_ms: AtomicI64::new(i64::MAX),
                wakeups: AtomicU64::new(0),
                rebuilds: AtomicU64::new(0),
            }),
        }
    }

    /// The index handle the grants service schedules with.
    pub fn index(&self) -> ExpiryIndex {
        self.inner.index.clone()
    }

    /// Starts `scheduler.worker`, `scheduler.wake`, `scheduler.sweep` and `scheduler.rebuild`
    /// (which rebuilds the index from SQL first thing).
    pub fn spawn(&self, tasks: &Tasks) {
        let cancel = tasks.cancel_token();
        tasks.spawn(
            "scheduler.worker",
            run_worker(self.inner.clone(), cancel.clone()),
        );
        tasks.spawn(
            "scheduler.wake",
            wake::run(self.inner.clone(), cancel.clone()),
        );
        tasks.spawn(
            "scheduler.sweep",
            maintenance::run_sweep(self.inner.clone(), cancel.clone()),
        );
        tasks.spawn(
            "scheduler.rebuild",
            maintenance::run_rebuild(self.inner.clone(), cancel),
        );
    }

    /// Adds every grant SQL says belongs in the index and is missing from it (ZADD NX: claims
    /// and back-off in progress are left alone), after writing the rebuild sentinel. Returns how
    /// many were missing.
    pub async fn rebuild(&self) -> Result<u64, SchedulerError> {
        maintenance::rebuild(&self.inner, "explicit").await
    }

    /// Puts back any grant SQL says is overdue but the index lacks. Returns how many.
    pub async fn sweep(&self) -> Result<u64, SchedulerError> {
        maintenance::sweep(&self.inner).await
    }

    /// Times the worker has woken and claimed (no Redis call: safe to poll when counting
    /// Redis commands).
    pub fn wakeups(&self) -> u64 {
        self.inner.wakeups.load(Ordering::Relaxed)
    }

    /// Rebuilds from SQL completed by this replica (no Redis call).
    pub fn rebuilds(&self) -> u64 {
        self.inner.rebuilds.load(Ordering::Relaxed)
    }

    pub async fn stats(&self) -> Result<SchedulerStats, SchedulerError> {
        let mut c = self.inner.redis.conn();
        let scheduled: u64 = redis::cmd("ZCARD")
            .arg(self.inner.index.index_key())
            .query_async(&mut c)
            .await?;
        let overdue = maintenance::overdue_count(&self.inner).await?;
        Ok(SchedulerStats {
            scheduled,
            overdue,
            wakeups: self.inner.wakeups.load(Ordering::Relaxed),
            rebuilds: self.inner.rebuilds.load(Ordering::Relaxed),
        })
    }

    /// Claims up to `limit` due grants with a lease, exactly as the worker does, without running
    /// them. The worker's primitive, public for tools and for tests that play a replica which
    /// claims and then dies.
    pub async fn claim(&self, limit: usize) -> Result<Vec<Claim>, SchedulerError> {
        Ok(self.inner.claim(limit).await?.claims)
    }
}

impl Inner {
    pub(crate) fn now_arg(&self) -> Option<i64> {
        match self.time_source {
            TimeSource::RedisTime => None,
            TimeSource::Clock => Some(self.clock.now_ms()),
        }
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.lease.as_millis()).unwrap_or(i64::MAX / 4)
    }

    async fn claim(&self, limit: usize) -> Result<ClaimBatch, SchedulerError> {
        let batch = self
            .scripts
            .claim(&self.redis, self.now_arg(), self.lease_ms(), limit)
            .await?;
        ::metrics::gauge!(m::SCHEDULED).set(batch.scheduled as f64);
        if !batch.claims.is_empty() {
            ::metrics::counter!(m::CLAIMS).increment(batch.claims.len() as u64);
        }
        if !batch.epoch_present && !self.rebuilding.load(Ordering::Acquire) {
            tracing::warn!(
                "expiry index sentinel missing: Redis lost its data; rebuilding from SQL"
            );
            self.rebuild_now.notify_one();
        }
        Ok(batch)
    }

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

    /// Runs the handler for one claim and settles it.
    async fn process(self: Arc<Self>, claim: Claim) {
        let cfg = &self.config;
        // The handler must finish inside the lease or another replica takes the grant over; a
        // call that runs past 80% of it is abandoned and counted as a retryable failure.
        let limit = cfg.lease.mul_f64(0.8).max(Duration::from_millis(100));
        let outcome =
            match tokio::time::timeout(limit, self.handler.expire(&claim.grant_id, claim.attempt))
                .await
            {
                Ok(o) => o,
                Err(_) => ExpiryOutcome::Retry {
                    error: format!("expiry did not finish within {limit:?}"),
                },
            };
        let id = claim.grant_id.as_str();
        match outcome {
            ExpiryOutcome::Done => {
                if let Some((applied, _)) = self.settle(&claim, Settle::Done).await {
                    if applied {
                        let late = self.clock.now_ms().saturating_sub(claim.original_due_ms);
                        ::metrics::histogram!(m::LATENESS).record(late.max(0) as f64 / 1000.0);
                        tracing::debug!(grant_id = id, lateness_ms = late, "expiry done");
                    } else {
                        // Re-scheduled (an extension) or re-claimed while we worked: theirs wins.
                        tracing::info!(grant_id = id, "expiry done but the grant was re-scheduled meanwhile; keeping the new time");
                    }
                }
            }
            ExpiryOutcome::Reschedule { due_ms } => {
                self.settle(&claim, Settle::Reschedule { due_ms }).await;
            }
            ExpiryOutcome::Retry { error } => {
                ::metrics::counter!(m::RETRIES).increment(1);
                let max = cfg.max_attempts.max(1);
                if claim.attempt < max {
                    let d = backoff::delay(cfg.backoff_base, cfg.backoff_max, claim.attempt);
                    tracing::warn!(grant_id = id, attempt = claim.attempt, retry_in_ms = Self::ms(d), %error,
                        "expiry failed; retrying");
                    self.settle(
                        &claim,
                        Settle::Retry {
                            delay_ms: Self::ms(d),
                            attempt: claim.attempt,
                        },
                    )
                    .await;
                } else if claim.attempt == max {
                    self.give_up(&claim, &error).await;
                } else {
                    // Already `failed`: this was a periodic retry and it failed again.
                    tracing::warn!(grant_id = id, attempt = claim.attempt, %error,
                        "retry of a failed expiry failed again");
                    self.retry_failed_later(&claim, claim.attempt).await;
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
                self.retry_failed_later(&claim, claim.attempt.max(max_attempts(cfg)))
                    .await;
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

/// Sleeps for `d` unless woken or cancelled first. Returns false when cancelled.
async fn pause(inner: &Inner, cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = inner.wake.notified() => true,
        _ = cancel.cancelled() => false,
    }
}

pub(crate) async fn run_worker(inner: Arc<Inner>, cancel: CancellationToken) {
    let concurrency = usize::try_from(inner.config.concurrency.max(1)).unwrap_or(1);
    let batch_size = usize::try_from(inner.config.batch_size.max(1)).unwrap_or(1);
    let cap = SAFETY_CAP
        .min(inner.config.lease)
        .max(Duration::from_millis(50));
    let permits = Arc::new(Semaphore::new(concurrency));
    // In-flight expiries are owned by this tracked task (not detached): shutdown waits for them.
    let mut inflight: JoinSet<()> = JoinSet::new();
    let mut redis_failures: u32 = 0;
    let refill = (concurrency / 4).clamp(1, batch_size);
    let mut backlog = false;
    loop {
        while let Some(r) = inflight.try_join_next() {
            if let Err(e) = r {
                tracing::error!(error = %e, "an expiry task panicked; its lease will run out and it will be retried");
            }
        }
        if cancel.is_cancelled() {
            break;
        }
        // In a backlog (the last claim was full), wait until a quarter of the slots are free
        // before claiming again: claiming one grant per freed slot would cost a claim round trip
        // per grant, and the wait is a fraction of one expiry's duration.
        let want = if backlog { refill } else { 1 };
        if permits.available_permits() < want {
            tokio::select! {
                p = permits.clone().acquire_many_owned(want as u32) => drop(p),
                _ = cancel.cancelled() => break,
            }
            continue;
        }
        let free = permits.available_permits();
        let limit = free.min(batch_size);
        inner.wakeups.fetch_add(1, Ordering::Relaxed);
        let batch = match inner.claim(limit).await {
            Ok(b) => {
                redis_failures = 0;
                b
            }
            Err(e) => {
                backlog = false;
                redis_failures = redis_failures.saturating_add(1);
                let d = backoff::delay(Duration::from_millis(100), cap, redis_failures);
                tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "cannot claim due expiries");
                if !pause(&inner, &cancel, d).await {
                    break;
                }
                continue;
            }
        };
        let full = batch.claims.len() >= limit;
        backlog = full;
        for claim in batch.claims {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                // Cannot happen (we claimed no more than the free permits); never run unlimited.
                tracing::error!(grant_id = %claim.grant_id, "no free expiry slot; leaving claim to its lease");
                continue;
            };
            let inner = inner.clone();
            inflight.spawn(async move {
                inner.process(claim).await;
                drop(permit);
            });
        }
        if full {
            continue; // More may be due right now.
        }
        let next = batch.next_score_ms.unwrap_or(i64::MAX);
        inner.next_wake_ms.store(next, Ordering::Release);
        let wait = match batch.next_score_ms {
            Some(s) => Duration::from_millis(
                u64::try_from(s.saturating_sub(batch.now_ms))
                    .unwrap_or(0)
                    .max(1),
            ),
            None => cap,
        }
        .min(cap);
        if !pause(&inner, &cancel, wait).await {
            break;
        }
    }
    // Shutdown: no more claims; let in-flight expiries finish (they are bounded by the lease).
    let n = inflight.len();
    if n > 0 {
        tracing::info!(
            in_flight = n,
            "scheduler stopping: finishing in-flight expiries"
        );
    }
    while let Some(r) = inflight.join_next().await {
        if let Err(e) = r {
            tracing::error!(error = %e, "an expiry task panicked during shutdown");
        }
    }
    inner.next_wake_ms.store(i64::MAX, Ordering::Release);
}
