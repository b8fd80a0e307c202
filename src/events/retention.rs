//! Retention of the event inbox: processed (`done`) and `dropped` events are deleted once
//! `events.retention` has passed since their last attempt was due (or their receipt).
//!
//! Why it exists: every event of a busy org about something unmanaged stays as a `dropped` row
//! for deduplication, so without this the inbox, and the indexes every intake insert pays for,
//! would grow without bound. It runs on every replica, Okta configured or not (an intake without
//! a worker still stores dropped rows), as its own task so that a first purge of a large inbox
//! never holds up the worker's claims.
//!
//! What it must never do: delete an event that is pending, in process or dead, or hold SQLite's
//! one writer for long (one statement deletes at most [`inbox::PURGE_CHUNK`] rows).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::inbox;
use crate::clock::Clock;
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;

/// How often a replica purges.
const EVERY: Duration = Duration::from_secs(10 * 60);
/// Statements per round; a round that reaches it goes on after [`AGAIN`], so deliveries and
/// grants get the writer in between.
const CHUNKS_PER_ROUND: usize = 20;
const AGAIN: Duration = Duration::from_secs(1);

/// Starts `events.purge`: a round at start-up, then every [`EVERY`].
pub fn spawn(store: Store, clock: Clock, retention: Duration, tasks: &Tasks) {
    let cancel = tasks.cancel_token();
    tasks.spawn("events.purge", async move {
        loop {
            let more = match round(&store, &clock, retention, &cancel).await {
                Ok(more) => more,
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(&e), "event inbox purge failed");
                    false
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(if more { AGAIN } else { EVERY }) => {}
            }
        }
    });
}

/// One round of at most [`CHUNKS_PER_ROUND`] statements; returns whether more may be due.
async fn round(
    store: &Store,
    clock: &Clock,
    retention: Duration,
    cancel: &CancellationToken,
) -> Result<bool, StoreError> {
    let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = clock.now_ms().saturating_sub(retention);
    let (mut total, mut more) = (0, false);
    for _ in 0..CHUNKS_PER_ROUND {
        if cancel.is_cancelled() {
            break;
        }
        let n = inbox::purge(store, cutoff).await?;
        total += n;
        more = n == inbox::PURGE_CHUNK;
        if !more {
            break;
        }
    }
    if total > 0 {
        metrics::counter!("jit_events_purged_total").increment(total);
        tracing::info!(
            deleted = total,
            "purged processed and dropped events past retention"
        );
    }
    Ok(more)
}
