//! Sync run records (`sync_runs`) and the sync's named state (`sync_state`); the API's
//! `/v1/sync/runs` reads them through [`page`] and [`fetch`].
//!
//! What it must never do: write outside a fenced transaction (a replica that lost the lock
//! must not overwrite the new holder's records), or list a run's full drift report in the list
//! (only `GET /v1/sync/runs/{id}` carries it; reports can be large).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::lock::fenced;
use super::{CallCounts, Counts, Finding, SyncError};
use crate::store::{Store, StoreError};

/// One run, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// `full` or `delta`.
    pub mode: String,
    pub dry_run: bool,
    /// `running`, `succeeded`, `failed`, `lost_lock`, `abandoned` (its replica died or lost the
    /// lock; the next run marks it).
    pub outcome: String,
    pub fence: i64,
    pub counts: Counts,
    pub okta_calls: CallCounts,
    pub warnings: Vec<String>,
    /// The drift report: every finding and what was done about it.
    pub report: Vec<Finding>,
    pub error: Option<String>,
}

pub(crate) struct State0 {
    pub users_since: i64,
    pub runs_since_full: i64,
}

pub(crate) async fn state(store: &Store) -> Result<State0, SyncError> {
    let rows = sqlx::query("SELECT name, value FROM sync_state")
        .fetch_all(store.pool())
        .await?;
    let mut st = State0 {
        users_since: 0,
        runs_since_full: 0,
    };
    for r in rows {
        let name: String = r.try_get("name")?;
        let value: i64 = r.try_get("value")?;
        match name.as_str() {
            "users_since" => st.users_since = value,
            "runs_since_full" => st.runs_since_full = value,
            _ => {}
        }
    }
    Ok(st)
}

/// Records a new run as `running`, marking runs left `running` by a dead or fenced-out
/// replica `abandoned` (we hold the lock: nobody else is running).
pub(crate) async fn start(
    store: &Store,
    fence: i64,
    id: &str,
    now: i64,
    full: bool,
    dry_run: bool,
) -> Result<(), SyncError> {
    let mut tx = fenced(store, fence).await?;
    sqlx::query(
        "UPDATE sync_runs SET outcome = 'abandoned', ended_at = $1 WHERE outcome = 'running'",
    )
    .bind(now)
    .execute(tx.conn())
    .await?;
    sqlx::query(
        "INSERT INTO sync_runs (id, started_at, mode, dry_run, outcome, fence) \
         VALUES ($1, $2, $3, $4, 'running', $5)",
    )
    .bind(id)
    .bind(now)
    .bind(if full { "full" } else { "delta" })
    .bind(i64::from(dry_run))
    .bind(fence)
    .execute(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Writes the run's end; `cursor` (`(users_since, was_full)`) moves the delta state for a run
/// that succeeded.
pub(crate) async fn finish(
    store: &Store,
    fence: i64,
    r: &RunRecord,
    cursor: Option<(i64, bool)>,
) -> Result<(), SyncError> {
    let json = |v: serde_json::Result<String>| {
        v.map_err(|e| SyncError::Store(StoreError::Corrupt(format!("run record: {e}"))))
    };
    let mut tx = fenced(store, fence).await?;
    sqlx::query(
        "UPDATE sync_runs SET ended_at = $2, outcome = $3, counts = $4, okta_calls = $5, \
         warnings = $6, report = $7, error = $8 WHERE id = $1",
    )
    .bind(&r.id)
    .bind(r.ended_at)
    .bind(&r.outcome)
    .bind(json(serde_json::to_string(&r.counts))?)
    .bind(json(serde_json::to_string(&r.okta_calls))?)
    .bind(json(serde_json::to_string(&r.warnings))?)
    .bind(json(serde_json::to_string(&r.report))?)
    .bind(r.error.clone())
    .execute(tx.conn())
    .await?;
    if let Some((users_since, full)) = cursor {
        sqlx::query("UPDATE sync_state SET value = $1 WHERE name = 'users_since'")
            .bind(users_since)
            .execute(tx.conn())
            .await?;
        let sql = if full {
            "UPDATE sync_state SET value = 0 WHERE name = 'runs_since_full'"
        } else {
            "UPDATE sync_state SET value = value + 1 WHERE name = 'runs_since_full'"
        };
        sqlx::query(sql).execute(tx.conn()).await?;
    }
    tx.commit().await?;
    Ok(())
}

const COLUMNS: &str = "id, started_at, ended_at, mode, dry_run, outcome, fence, counts, \
    okta_calls, warnings, report, error";

fn from_row(r: &AnyRow, with_report: bool) -> Result<RunRecord, StoreError> {
    fn parse<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StoreError> {
        serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("sync run {what}: {e}")))
    }
    let counts: String = r.try_get("counts")?;
    let calls: String = r.try_get("okta_calls")?;
    let warnings: String = r.try_get("warnings")?;
    let report: String = r.try_get("report")?;
    let dry: i64 = r.try_get("dry_run")?;
    Ok(RunRecord {
        id: r.try_get("id")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        mode: r.try_get("mode")?,
        dry_run: dry != 0,
        outcome: r.try_get("outcome")?,
        fence: r.try_get("fence")?,
        counts: parse(&counts, "counts")?,
        okta_calls: parse(&calls, "okta_calls")?,
        warnings: parse(&warnings, "warnings")?,
        report: if with_report {
            parse(&report, "report")?
        } else {
            Vec::new()
        },
        error: r.try_get("error")?,
    })
}

/// Runs newest first, started before `before` (ms) when given; reports left out.
pub async fn page(
    store: &Store,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<RunRecord>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sync_runs WHERE started_at < $1 \
         ORDER BY started_at DESC, id DESC LIMIT $2"
    ))
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(store.reads())
    .await?;
    rows.iter().map(|r| from_row(r, false)).collect()
}

pub async fn fetch(store: &Store, id: &str) -> Result<Option<RunRecord>, StoreError> {
    let r = sqlx::query(&format!("SELECT {COLUMNS} FROM sync_runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.reads())
        .await?;
    r.map(|r| from_row(&r, true)).transpose()
}
