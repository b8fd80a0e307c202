//! Keeping the index honest against SQL: rebuilds and the overdue sweep (I3).
//!
//! Why it exists: Redis is an index, not the record. It can lose everything (a restart without
//! persistence, FLUSHALL, a failover to a replica that was behind) or miss one grant (a
//! `schedule` call that failed after the grant row committed). The rebuild re-adds every grant
//! SQL says is pending, at start, periodically, and as soon as the worker notices the sentinel
//! key is gone; the sweep asks SQL for anything overdue and puts back what the index lacks.
//!
//! What it must never do: overwrite a claim's score, or let a due grant hide behind a later one.
//! The rebuild and the sweep add what the index lacks with `ZADD NX`: a claimed grant's lease
//! score, a back-off time or an extension already in Redis is newer than what a rebuild read
//! from SQL a moment ago, and overwriting a lease would let a second replica run a grant that is
//! in flight. For the overdue grants whose due time moves *earlier* (`revoking`, and
//! `provisioning` at its resume time: `ExpiryHandler::overdue_early`) the sweep goes further
//! (`scripts::PULL_DUE`): a member held at a later score that is not a claim's (the claim
//! state's `ours`) is moved to SQL's due time. That is the grant committed `revoking` whose index
//! update died with its replica, or a `provisioning` grant indexed at its provisional expiry; a
//! lease or back-off is left alone, so the lease rule still holds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::shared::Inner;
use super::{metrics as m, DueEntry, SchedulerError, EPOCH_KEY};

/// Members per ZADD during a rebuild: bounds one command's size and Redis's pause.
const CHUNK: usize = 1000;
/// The most overdue grants one sweep repairs (it runs again soon).
const SWEEP_LIMIT: u32 = 1000;

/// A grant is "overdue" for the sweep only once it is this late: younger ones are normally in
/// flight, and re-adding a grant between its ZREM and SQL's commit would run it twice (harmless,
/// I4, but noise).
pub(crate) fn sweep_grace(inner: &Inner) -> Duration {
    inner.config.lease.min(Duration::from_secs(5))
}

fn grace_ms(inner: &Inner) -> i64 {
    i64::try_from(sweep_grace(inner).as_millis()).unwrap_or(5_000)
}

/// ZADD NX in chunks; returns how many members were added.
async fn add_missing(inner: &Inner, entries: &[DueEntry]) -> Result<u64, SchedulerError> {
    let key = inner.index.index_key();
    let mut c = inner.redis.conn();
    let mut added = 0u64;
    for chunk in entries.chunks(CHUNK) {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&key).arg("NX");
        for e in chunk {
            cmd.arg(e.due_ms).arg(&e.grant_id);
        }
        let n: u64 = cmd.query_async(&mut c).await?;
        added += n;
    }
    Ok(added)
}

pub(crate) async fn rebuild(inner: &Inner, reason: &'static str) -> Result<u64, SchedulerError> {
    inner.rebuilding.store(true, Ordering::Release);
    let result = rebuild_inner(inner, reason).await;
    inner.rebuilding.store(false, Ordering::Release);
    result
}

async fn rebuild_inner(inner: &Inner, reason: &'static str) -> Result<u64, SchedulerError> {
    // Read SQL first: if that fails, no sentinel is written and data loss stays detectable.
    let entries = inner
        .handler
        .due_entries()
        .await
        .map_err(SchedulerError::Handler)?;
    // Sentinel before the members: a flush after this point removes it too and is noticed; a
    // flush before it is repaired by the adds that follow.
    let mut c = inner.redis.conn();
    redis::cmd("SET")
        .arg(inner.redis.key(EPOCH_KEY))
        .arg(inner.clock.now_ms())
        .query_async::<()>(&mut c)
        .await?;
    let added = add_missing(inner, &entries).await?;
    ::metrics::counter!(m::REBUILDS, "reason" => reason).increment(1);
    inner.rebuilds.fetch_add(1, Ordering::Relaxed);
    if added > 0 {
        inner.wake.notify_one();
        let level_warn = reason != "start";
        if level_warn {
            tracing::warn!(
                reason,
                added,
                total = entries.len(),
                "expiry index rebuild re-added missing grants"
            );
        } else {
            tracing::info!(reason, added, total = entries.len(), "expiry index rebuilt");
        }
    } else {
        tracing::debug!(
            reason,
            total = entries.len(),
            "expiry index rebuild: nothing missing"
        );
    }
    Ok(added)
}

pub(crate) async fn sweep(inner: &Inner) -> Result<u64, SchedulerError> {
    let cutoff = inner.clock.now_ms().saturating_sub(grace_ms(inner));
    let overdue = inner
        .handler
        .overdue(cutoff, SWEEP_LIMIT)
        .await
        .map_err(SchedulerError::Handler)?;
    ::metrics::gauge!(m::OVERDUE).set(overdue.len() as f64);
    if overdue.is_empty() {
        return Ok(0);
    }
    let mut added = add_missing(inner, &overdue).await?;
    // Only the states whose due time moves earlier need the compare with the claim state: the
    // others' index entries are never later than SQL, and a burst's overdue grants (claimed,
    // leased) then cost one ZADD NX per sweep, not a script call per grant.
    let early = inner
        .handler
        .overdue_early(cutoff, SWEEP_LIMIT)
        .await
        .map_err(SchedulerError::Handler)?;
    for chunk in early.chunks(CHUNK) {
        added += inner.scripts.pull_due(&inner.redis, chunk).await?;
    }
    if added > 0 {
        ::metrics::counter!(m::SWEEP_REPAIRED).increment(added);
        tracing::warn!(
            added,
            "overdue sweep found grants missing from the expiry index or held there later than due; put back"
        );
        inner.wake.notify_one();
    }
    Ok(added)
}

pub(crate) async fn overdue_count(inner: &Inner) -> Result<u64, SchedulerError> {
    let cutoff = inner.clock.now_ms().saturating_sub(grace_ms(inner));
    let overdue = inner
        .handler
        .overdue(cutoff, 10_000)
        .await
        .map_err(SchedulerError::Handler)?;
    Ok(overdue.len() as u64)
}

/// `scheduler.rebuild`: once at start, then every `rebuild_interval`, and at once when the worker
/// reports data loss. A failed rebuild is tried again after a short back-off.
pub(crate) async fn run_rebuild(inner: Arc<Inner>, cancel: CancellationToken) {
    let mut reason = "start";
    let mut failures: u32 = 0;
    loop {
        let outcome = tokio::select! {
            r = rebuild(&inner, reason) => Some(r),
            _ = cancel.cancelled() => None,
        };
        let wait = match outcome {
            None => return,
            Some(Ok(_)) => {
                failures = 0;
                inner.config.rebuild_interval
            }
            Some(Err(e)) => {
                failures = failures.saturating_add(1);
                tracing::error!(error = %e, reason, "expiry index rebuild failed; will retry");
                super::backoff::delay(
                    Duration::from_secs(1),
                    Duration::from_secs(30).min(inner.config.rebuild_interval),
                    failures,
                )
            }
        };
        reason = tokio::select! {
            _ = tokio::time::sleep(wait) => if failures > 0 { "retry" } else { "periodic" },
            _ = inner.rebuild_now.notified() => "data_loss",
            _ = cancel.cancelled() => return,
        };
    }
}

/// `scheduler.sweep`: every `sweep_interval`.
pub(crate) async fn run_sweep(inner: Arc<Inner>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(inner.config.sweep_interval) => {},
            _ = cancel.cancelled() => return,
        }
        let r = tokio::select! {
            r = sweep(&inner) => r,
            _ = cancel.cancelled() => return,
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "overdue sweep failed");
        }
    }
}
