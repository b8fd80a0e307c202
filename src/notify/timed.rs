//! Notices that time, not a state change, brings: a grant about to expire (`grant.expiring`,
//! `notify.expiring_lead` ahead), a request still waiting on its approvers
//! (`request.reminder`, every `notify.approver_reminder`), and a reviewer with undecided items
//! as their campaign's due date nears (`review.reminder`, `reviews.remind_before` ahead).
//!
//! Each is written with a dedupe key that names what it is about (`expiring:<grant>:<expires_at>`,
//! so an extension earns a new notice; `reminder:<request>:<n>`;
//! `review-reminder:<campaign>:<reviewer>`), so any number of replicas running this check write
//! each notice once.
//!
//! What it must never do: remind about a decided request or warn about a grant that is no
//! longer active (both are read in the same transaction that writes the notice).

use std::time::Duration;

use serde_json::json;
use sqlx::Row;

use super::Wake;
use super::{derive::insert, kinds, Channels, Notification, NotifyConfig};
use crate::clock::Clock;
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;

const BATCH: i64 = 500;

/// What the timed notices read from the configuration: `[notify]`, and `reviews.remind_before`
/// (`0s`: no review reminders).
#[derive(Debug, Clone)]
pub struct TimedConfig {
    pub notify: NotifyConfig,
    pub remind_before: Duration,
}

/// One pass. Returns how many notices it wrote.
pub async fn check_once(
    store: &Store,
    clock: &Clock,
    channels: &Channels,
    timed: &TimedConfig,
) -> Result<usize, StoreError> {
    let (cfg, remind_before) = (&timed.notify, timed.remind_before);
    let mut written = 0;
    let now = clock.now_ms();
    if channels.iter().any(|c| c.wants(kinds::GRANT_EXPIRING)) && !cfg.expiring_lead.is_zero() {
        let lead = i64::try_from(cfg.expiring_lead.as_millis()).unwrap_or(i64::MAX);
        let mut tx = store.begin().await?;
        let rows = sqlx::query(
            "SELECT g.id, g.expires_at FROM grants g WHERE g.state = 'active' \
             AND g.expires_at > $1 AND g.expires_at <= $2 AND NOT EXISTS (SELECT 1 FROM \
             notifications n WHERE \
             n.dedupe_key = 'expiring:' || g.id || ':' || CAST(g.expires_at AS TEXT)) \
             ORDER BY g.expires_at LIMIT $3",
        )
        .bind(now)
        .bind(now.saturating_add(lead))
        .bind(BATCH)
        .fetch_all(tx.conn())
        .await?;
        for r in &rows {
            let id: String = r.try_get("id")?;
            let expires_at: i64 = r.try_get("expires_at")?;
            let Some(g) = crate::grants::repo::get_conn(tx.conn(), &id).await? else {
                continue;
            };
            let n = Notification {
                id: uuid::Uuid::now_v7().to_string(),
                kind: kinds::GRANT_EXPIRING.into(),
                request_id: g.request_id.clone(),
                grant_id: Some(id.clone()),
                audit_seq: None,
                payload: json!({ "grant": g, "expires_at": expires_at, "lead_ms": lead }),
                created_at: now,
            };
            if insert(
                &mut tx,
                channels,
                &n,
                &format!("expiring:{id}:{expires_at}"),
            )
            .await?
            {
                written += 1;
            }
        }
        tx.commit().await?;
    }
    if channels.iter().any(|c| c.wants(kinds::REQUEST_REMINDER)) && !cfg.approver_reminder.is_zero()
    {
        let every = i64::try_from(cfg.approver_reminder.as_millis()).unwrap_or(i64::MAX);
        let mut tx = store.begin().await?;
        let rows = sqlx::query(
            "SELECT id, created_at FROM requests WHERE state = 'pending' AND created_at <= $1 \
             AND expires_at > $2 ORDER BY created_at LIMIT $3",
        )
        .bind(now.saturating_sub(every))
        .bind(now)
        .bind(BATCH)
        .fetch_all(tx.conn())
        .await?;
        for r in &rows {
            let id: String = r.try_get("id")?;
            let created: i64 = r.try_get("created_at")?;
            let nth = (now - created) / every;
            let Some(req) = crate::requests::repo::get_conn(tx.conn(), &id).await? else {
                continue;
            };
            let n = Notification {
                id: uuid::Uuid::now_v7().to_string(),
                kind: kinds::REQUEST_REMINDER.into(),
                request_id: Some(id.clone()),
                grant_id: None,
                audit_seq: None,
                payload: json!({ "request": req, "reminder": nth, "waiting_ms": now - created }),
                created_at: now,
            };
            if insert(&mut tx, channels, &n, &format!("reminder:{id}:{nth}")).await? {
                written += 1;
            }
        }
        tx.commit().await?;
    }
    if channels.iter().any(|c| c.wants(kinds::REVIEW_REMINDER)) && !remind_before.is_zero() {
        written += review_reminders(store, now, channels, remind_before).await?;
    }
    Ok(written)
}

/// One `review.reminder` per (campaign, reviewer) with undecided items, once the campaign is
/// within `remind_before` of its due date and not yet due (after it, `review.overdue` speaks).
/// A reviewer who has decided everything is not reminded; one who decides after the reminder
/// is not reminded again (the dedupe key has no count).
async fn review_reminders(
    store: &Store,
    now: i64,
    channels: &Channels,
    remind_before: Duration,
) -> Result<usize, StoreError> {
    let lead = i64::try_from(remind_before.as_millis()).unwrap_or(i64::MAX);
    let mut written = 0;
    let mut tx = store.begin().await?;
    let rows = sqlx::query(
        "SELECT c.id, c.name, c.due_at, i.reviewer, COUNT(*) AS n FROM review_items i \
         JOIN review_campaigns c ON c.id = i.campaign_id \
         WHERE c.state <> 'closed' AND c.due_at > $1 AND c.due_at <= $2 AND i.decision IS NULL \
         AND NOT EXISTS (SELECT 1 FROM notifications n WHERE \
         n.dedupe_key = 'review-reminder:' || c.id || ':' || i.reviewer) \
         GROUP BY c.id, c.name, c.due_at, i.reviewer ORDER BY c.due_at LIMIT $3",
    )
    .bind(now)
    .bind(now.saturating_add(lead))
    .bind(BATCH)
    .fetch_all(tx.conn())
    .await?;
    for r in &rows {
        let id: String = r.try_get("id")?;
        let reviewer: String = r.try_get("reviewer")?;
        let n = Notification {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kinds::REVIEW_REMINDER.into(),
            request_id: None,
            grant_id: None,
            audit_seq: None,
            payload: json!({
                "campaign": id, "name": r.try_get::<String, _>("name")?,
                "reviewer": reviewer, "undecided": r.try_get::<i64, _>("n")?,
                "due_at": r.try_get::<i64, _>("due_at")?,
            }),
            created_at: now,
        };
        if insert(
            &mut tx,
            channels,
            &n,
            &format!("review-reminder:{id}:{reviewer}"),
        )
        .await?
        {
            written += 1;
        }
    }
    tx.commit().await?;
    Ok(written)
}

/// Starts `notify.timed`: one pass every `interval`.
pub fn spawn(
    tasks: &Tasks,
    store: Store,
    clock: Clock,
    channels: Channels,
    cfg: TimedConfig,
    wake: Wake,
    interval: Duration,
) {
    let cancel = tasks.cancel_token();
    tasks.spawn("notify.timed", async move {
        loop {
            match check_once(&store, &clock, &channels, &cfg).await {
                Ok(n) if n > 0 => wake.notify(),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %crate::error::chain(&e), "timed notices failed; retrying"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    });
}
