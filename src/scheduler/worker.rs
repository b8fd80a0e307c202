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
//! `jit_broker::start_scheduler` picks Redis TIME when the broker runs on the system clock and
//! the broker clock otherwise, so an application test on `Clock::tokio_at` gets consistent
//! expiries. (Paused tokio time does not mix with real Redis I/O: the runtime auto-advances
//! while waiting on sockets, so these tests anchor the clock instead and let it run.)

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::scripts::{Claim, Scripts};
use super::shared::Inner;
use super::window::Window;
use super::{
    backoff, maintenance, metrics as m, wake, ExpiryHandler, ExpiryIndex, SchedulerConfig,
    SchedulerError,
};
use crate::clock::Clock;
use crate::redis_conn::RedisConn;
use crate::tasks::Tasks;

/// The longest a worker sleeps without looking at the index, whatever it expects: catches a lost
/// wake-up message. Tied to the lease only loosely (at most 10 leases): a lease held by another
/// replica is itself a score in the index, so the worker already wakes when it ends, and the
/// default short lease (3 s, for a quick hand-over after a crash) must not multiply the idle
/// Redis cost. (It was `min(30 s, lease)`.)
const SAFETY_CAP: Duration = Duration::from_secs(30);

/// The most claims handed to one handler call. Large enough that a chunk's shared costs (one
/// read, one lock script, one commit each way) are spread thin; small enough that a burst is
/// split across several concurrent calls, so one slow Okta call holds back few others.
const CHUNK: usize = 64;

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
                window: AtomicUsize::new(0),
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

    /// How many grants this replica's worker currently lets itself hold claimed at once (0
    /// before the worker starts). No Redis call.
    pub fn claim_window(&self) -> usize {
        self.inner.window.load(Ordering::Relaxed)
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

/// Feeds a finished chunk to the window (a panicked one only logs: its lease runs out).
fn finished(
    inner: &Inner,
    window: &mut Window,
    r: Result<(usize, Duration), tokio::task::JoinError>,
) {
    match r {
        Ok((n, took)) => {
            window.finished(n, took);
            inner.window.store(window.size(), Ordering::Relaxed);
        }
        Err(e) => tracing::error!(error = %e,
            "an expiry task panicked; its lease will run out and it will be retried"),
    }
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
        .min(inner.config.lease * 10)
        .max(Duration::from_millis(50));
    let permits = Arc::new(Semaphore::new(concurrency));
    // How many of the `concurrency` slots may be claimed at once (see `window`): grows while
    // chunks finish quickly, shrinks while Okta's rate limit makes them wait.
    let mut window = Window::new(
        concurrency,
        CHUNK,
        super::expire::renew_every(inner.config.lease),
    );
    inner.window.store(window.size(), Ordering::Relaxed);
    // In-flight expiries are owned by this tracked task (not detached): shutdown waits for them.
    // Each chunk's task returns its size and how long it took, which is what sizes the window.
    let mut inflight: JoinSet<(usize, Duration)> = JoinSet::new();
    let mut redis_failures: u32 = 0;
    let mut backlog = false;
    loop {
        while let Some(r) = inflight.try_join_next() {
            finished(&inner, &mut window, r);
        }
        if cancel.is_cancelled() {
            break;
        }
        // In a backlog (the last claim was full), wait until a quarter of the window is free
        // before claiming again: claiming one grant per freed slot would cost a claim round trip
        // per grant, and the wait is a fraction of one expiry's duration.
        let in_flight = concurrency - permits.available_permits().min(concurrency);
        let free = window.size().saturating_sub(in_flight);
        let want = if backlog {
            (window.size() / 4).clamp(1, batch_size)
        } else {
            1
        };
        if free < want && !inflight.is_empty() {
            // Every claimed grant is in a chunk task, so a free slot means a finished chunk.
            tokio::select! {
                Some(r) = inflight.join_next() => finished(&inner, &mut window, r),
                _ = cancel.cancelled() => break,
            }
            continue;
        }
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
                // Capped by the lease: after a Redis failover the claims must resume within one lease.
                let d = backoff::delay(
                    Duration::from_millis(100),
                    inner.config.lease.min(cap),
                    redis_failures,
                );
                tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "cannot claim due expiries");
                if !pause(&inner, &cancel, d).await {
                    break;
                }
                continue;
            }
        };
        let full = batch.claims.len() >= limit;
        backlog = full;
        // Claims run in chunks, each one handler call (`expire_many`): the grants handler
        // shares its reads, locks and commits across a chunk. Each chunk holds one permit per
        // grant, so `concurrency` still bounds the grants in flight.
        let mut claims = batch.claims;
        while !claims.is_empty() {
            let rest = claims.split_off(claims.len().min(CHUNK));
            let chunk = std::mem::replace(&mut claims, rest);
            let Ok(permit) = permits.clone().try_acquire_many_owned(chunk.len() as u32) else {
                // Cannot happen (we claimed no more than the free permits); never run unlimited.
                tracing::error!(
                    grants = chunk.len(),
                    "no free expiry slot; leaving claims to their leases"
                );
                continue;
            };
            let inner = inner.clone();
            inflight.spawn(async move {
                let (n, started) = (chunk.len(), tokio::time::Instant::now());
                inner.process(chunk).await;
                drop(permit);
                (n, started.elapsed())
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
