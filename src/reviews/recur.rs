//! Recurring campaigns. A campaign created with `recur` (a cron expression with seconds, as
//! `sync.schedule`, read in UTC) is the template of its runs: when its `next_run_at` comes, the
//! periodic check creates a new campaign with the same resources, reviewer rule, fallback and
//! default, a fresh snapshot of the inventory, and a due date as far after its creation as the
//! template's was. Runs do not recur themselves; the template keeps the schedule.
//!
//! Exactly once with any number of replicas: the run is created in the transaction that moves
//! the template's `next_run_at` from the time it read to the next one (a compare-and-set: the
//! replica that loses the race updates no row and creates nothing), and `(parent_id, run_at)` is
//! unique, so even a bug there could not store a run twice. Times missed while no broker ran
//! collapse into one run: the next time is computed after now, not after the missed time.
//!
//! Stopping: `stop_recurring` clears the template's `next_run_at` (keeping `recur` for the
//! record), audited once as `review.recur_stopped`; calling it again changes nothing. A check
//! that read the old time before the stop loses the compare-and-set and creates nothing.
//!
//! What it must never do: create a run without its audit entries, or keep retrying a run that
//! cannot be made (a resource gone from the policy, an empty inventory): it is skipped, audited
//! as `review.run_skipped`, and the schedule moves on.

use std::str::FromStr;

use serde_json::json;

use super::service::Spec;
use super::{repo, Campaign, ReviewError, ReviewService, SYSTEM_ACTOR};
use crate::audit::{self, NewEntry};
use crate::error::ErrorCode;

/// Longest `recur` expression accepted.
const MAX_RECUR: usize = 200;
/// Runs at most this often: a run snapshots the inventory and notifies every reviewer, so an
/// expression firing every minute is a mistake, not a schedule.
const MIN_PERIOD_MS: i64 = 3_600_000;

/// Parses and checks a `recur` expression; `now` is when the campaign is created.
pub fn schedule(expr: &str, now: i64) -> Result<(cron::Schedule, i64), ReviewError> {
    let bad = |why: String| ReviewError::InvalidInput(format!("recur: {why}"));
    if expr.len() > MAX_RECUR {
        return Err(bad(format!("at most {MAX_RECUR} characters")));
    }
    let s = cron::Schedule::from_str(expr.trim()).map_err(|e| {
        bad(format!(
            "not a cron expression with seconds (`0 0 9 1 */3 *`): {e}"
        ))
    })?;
    let mut upcoming = s.after(&crate::clock::ms_to_datetime(now));
    let (Some(first), Some(second)) = (upcoming.next(), upcoming.next()) else {
        return Err(bad("the expression never fires again".into()));
    };
    let (first, second) = (first.timestamp_millis(), second.timestamp_millis());
    if second - first < MIN_PERIOD_MS {
        return Err(bad("runs must be at least an hour apart".into()));
    }
    Ok((s, first))
}

/// The first time of `s` strictly after `ms`.
pub fn next_after(s: &cron::Schedule, ms: i64) -> Option<i64> {
    s.after(&crate::clock::ms_to_datetime(ms))
        .next()
        .map(|t| t.timestamp_millis())
}

impl ReviewService {
    /// Stops a recurring campaign's schedule: no further runs are created (runs already made
    /// are untouched). Idempotent: a stopped schedule is returned as is, without a new entry.
    pub async fn stop_recurring(&self, actor: &str, id: &str) -> Result<Campaign, ReviewError> {
        let mut tx = self.grants().store().begin().await?;
        let c = repo::get_campaign(tx.conn(), id)
            .await?
            .ok_or_else(|| ReviewError::UnknownCampaign(id.into()))?;
        if c.recur.is_none() {
            return Err(ReviewError::NotRecurring(id.into()));
        }
        // Conditional on a time being set, so two concurrent stops write one entry: on
        // PostgreSQL the second waits for the first's row lock, then matches no row.
        if repo::stop_runs(&mut tx, id).await? {
            audit::append(
                &mut tx,
                self.grants().clock(),
                NewEntry::new(
                    actor,
                    "review.recur_stopped",
                    format!("review:{id}"),
                    json!({ "recur": c.recur, "next_run_at": c.next_run_at }),
                ),
            )
            .await?;
        }
        tx.commit().await?;
        self.get(id).await
    }

    /// Creates the runs of every recurring campaign whose time has come. The periodic check
    /// calls it; returns the ids of the campaigns created.
    pub async fn run_recurring(&self) -> Result<Vec<String>, ReviewError> {
        let now = self.grants().clock().now_ms();
        let due = {
            let mut conn = self
                .grants()
                .store()
                .reads()
                .acquire()
                .await
                .map_err(crate::store::StoreError::Query)?;
            repo::due_runs(&mut conn, now).await?
        };
        let mut made = Vec::new();
        for (id, at) in due {
            // One template's failure (a database error mid-snapshot) must not hold up the
            // others, nor the closing of due campaigns after this: it is retried next check.
            match self.run_one(&id, at, now).await {
                Ok(Some(run)) => made.push(run),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(campaign = %id, error = %e, "recurring run failed; retrying on the next check")
                }
            }
        }
        Ok(made)
    }

    async fn run_one(&self, id: &str, at: i64, now: i64) -> Result<Option<String>, ReviewError> {
        let mut tx = self.grants().store().begin().await?;
        let Some(tpl) = repo::get_campaign(tx.conn(), id).await? else {
            return Ok(None);
        };
        let Some(expr) = tpl.recur.as_deref() else {
            return Ok(None);
        };
        // Stored expressions were checked at creation; one that no longer parses (a cron crate
        // upgrade) stops its schedule rather than failing every check.
        let next = cron::Schedule::from_str(expr.trim())
            .ok()
            .and_then(|s| next_after(&s, now.max(at)));
        if !repo::advance_run(&mut tx, id, at, next).await? {
            return Ok(None); // another replica made this run
        }
        let resources = self.resolve(&tpl.resources);
        let spec = resources.map(|resources| Spec {
            name: format!(
                "{} ({})",
                tpl.name,
                crate::clock::ms_to_datetime(at).format("%Y-%m-%d")
            ),
            resources,
            include_unmanaged: tpl.include_unmanaged,
            standing_only: tpl.standing_only,
            allow_self_review: tpl.allow_self_review,
            reviewer: tpl.reviewer.clone(),
            fallback: tpl.fallback.clone(),
            default: tpl.default,
            due_at: now + (tpl.due_at - tpl.created_at).max(0),
            recur: None,
            parent_id: Some(id.to_string()),
            run_at: Some(at),
        });
        let made = match spec {
            Ok(spec) => self.open_in(&mut tx, &tpl.owner, spec, now).await,
            Err(e) => Err(e),
        };
        let (action, details) = match &made {
            Ok((c, n)) => (
                "review.recurred",
                json!({ "run": c.id, "run_at": at, "items": n, "next_run_at": next }),
            ),
            Err(e) if e.status().is_client_error() => (
                "review.run_skipped",
                json!({ "run_at": at, "reason": e.to_string(), "next_run_at": next }),
            ),
            Err(_) => return made.map(|(c, _)| Some(c.id)),
        };
        if made.is_err() {
            // The failed snapshot may have written part of the run: start over with only the
            // schedule's move and the skip's audit entry.
            drop(tx);
            tx = self.grants().store().begin().await?;
            if !repo::advance_run(&mut tx, id, at, next).await? {
                return Ok(None);
            }
        }
        audit::append(
            &mut tx,
            self.grants().clock(),
            NewEntry::new(SYSTEM_ACTOR, action, format!("review:{id}"), details),
        )
        .await?;
        tx.commit().await?;
        Ok(made.ok().map(|(c, n)| {
            metrics::counter!("jit_review_items_total", "state" => "created").increment(n as u64);
            c.id
        }))
    }
}
