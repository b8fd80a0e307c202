//! Chunked purges of replay-protection tables once their replay window has passed: the rows
//! that only exist so a replayed delivery is recognised (`webhook_receipts` of signed callbacks,
//! `slack_deliveries` of Slack requests).
//!
//! Why it exists: every inbound delivery writes such a row, and a row older than the delivery's
//! timestamp window protects nothing (a replay that old is refused by its timestamp first), yet
//! without a purge the tables grow with every delivery forever. Each table gets a tracked task
//! (`callbacks.purge`, `slack.purge`) that runs a round at start-up and then periodically, like
//! `events.purge`.
//!
//! What it must never do: delete a row younger than its `keep` (the clock is the one clock, so
//! tests control it), or hold SQLite's one writer for long: one statement deletes at most
//! [`CHUNK`] rows, and a round that finds more goes on after a pause.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Backend, Store, StoreError};
use crate::clock::Clock;
use crate::tasks::Tasks;

/// Rows one statement deletes at most.
pub const CHUNK: u64 = 1_000;
/// Statements per round.
const CHUNKS_PER_ROUND: usize = 20;
/// How often a replica purges, and the pause before the rest of a large backlog.
const EVERY: Duration = Duration::from_secs(10 * 60);
const AGAIN: Duration = Duration::from_secs(1);

/// One replay-protection table.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// The tracked task's name (`callbacks.purge`).
    pub task: &'static str,
    pub table: &'static str,
    /// The primary key's columns, comma-separated.
    pub key: &'static str,
    /// The column holding the row's receipt time (Unix ms).
    pub time: &'static str,
    /// How long a row is kept after its receipt.
    pub keep: Duration,
}

/// Deletes up to [`CHUNK`] rows of `t` received before `cutoff`; returns how many. On
/// PostgreSQL rows another replica's purge holds are skipped instead of waited for.
pub async fn chunk(store: &Store, t: &Table, cutoff: i64) -> Result<u64, StoreError> {
    let skip_locked = match store.backend() {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    let sql = format!(
        "DELETE FROM {table} WHERE ({key}) IN ( \
           SELECT {key} FROM {table} WHERE {time} < $1 LIMIT {CHUNK}{skip_locked})",
        table = t.table,
        key = t.key,
        time = t.time,
    );
    let r = sqlx::query(&sql).bind(cutoff).execute(store.pool()).await?;
    Ok(r.rows_affected())
}

/// One round of at most [`CHUNKS_PER_ROUND`] statements, with the cutoff `keep` before the
/// clock's now; returns (rows deleted, whether more may be due).
pub async fn round(
    store: &Store,
    clock: &Clock,
    t: &Table,
    cancel: &CancellationToken,
) -> Result<(u64, bool), StoreError> {
    let keep = i64::try_from(t.keep.as_millis()).unwrap_or(i64::MAX);
    let cutoff = clock.now_ms().saturating_sub(keep);
    let (mut total, mut more) = (0, false);
    for _ in 0..CHUNKS_PER_ROUND {
        if cancel.is_cancelled() {
            break;
        }
        let n = chunk(store, t, cutoff).await?;
        total += n;
        more = n == CHUNK;
        if !more {
            break;
        }
    }
    if total > 0 {
        metrics::counter!("jit_replay_rows_purged_total", "table" => t.table).increment(total);
        tracing::info!(
            table = t.table,
            deleted = total,
            "purged rows past their replay window"
        );
    }
    Ok((total, more))
}

/// Starts `t.task` on `tasks`: a round now, then every [`EVERY`] (after [`AGAIN`] while a
/// backlog lasts); it stops between statements when shutdown starts.
pub fn spawn(store: Store, clock: Clock, t: Table, tasks: &Tasks) {
    let cancel = tasks.cancel_token();
    tasks.spawn(t.task, async move {
        loop {
            let more = match round(&store, &clock, &t, &cancel).await {
                Ok((_, more)) => more,
                Err(e) => {
                    tracing::warn!(table = t.table, error = %crate::error::chain(&e), "purge failed");
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
