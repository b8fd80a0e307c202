//! Turning audit entries into notifications, exactly once.
//!
//! One transaction reads the cursor (locked), the next audit entries after it, writes a
//! notification and its deliveries for each entry that matters, and moves the cursor. The
//! audit log is gap-free and committed in `seq` order (appends serialize on its head row), so
//! reading "everything after the cursor" never skips an entry that commits later. A notification's
//! `dedupe_key` is `audit:<seq>`: a second deriver (another replica) can neither duplicate nor
//! lose one.
//!
//! What it must never do: derive anything when no channel listens (the cursor is moved to the
//! head instead, so an expiry burst pays nothing for notifications nobody wants), or read an
//! entry outside the transaction that moves the cursor.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;

use super::Wake;
use super::{kinds, Channels, Notification};
use crate::clock::Clock;
use crate::store::for_update;
use crate::store::{Store, StoreError, Tx};
use crate::tasks::Tasks;

/// The notification kind an audit action produces, if any.
pub fn kind_of(action: &str) -> Option<&'static str> {
    Some(match action {
        "request.created" => kinds::REQUEST_CREATED,
        "request.approval_recorded" => kinds::REQUEST_APPROVAL_RECORDED,
        "request.approved" | "request.denied" => kinds::REQUEST_DECIDED,
        "request.expired" => kinds::REQUEST_EXPIRED,
        "request.cancelled" => kinds::REQUEST_CANCELLED,
        "request.failed" => kinds::REQUEST_FAILED,
        "request.break_glass" => kinds::REQUEST_BREAK_GLASS,
        "request.break_glass_confirmed" | "request.break_glass_denied" => kinds::REQUEST_REVIEWED,
        "grant.activated" => kinds::GRANT_ACTIVATED,
        "grant.extended" => kinds::GRANT_EXTENDED,
        "grant.revoked" | "grant.removed_externally" => kinds::GRANT_REVOKED,
        "grant.failed" | "grant.aborted" => kinds::GRANT_FAILED,
        a if a.starts_with("drift.") => kinds::DRIFT_DETECTED,
        "review.created" => kinds::REVIEW_OPENED,
        "review.overdue" => kinds::REVIEW_OVERDUE,
        _ => return None,
    })
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Derived {
    /// Audit entries read past the cursor.
    pub read: usize,
    /// Notifications written.
    pub written: usize,
}

/// Derives from at most `max` audit entries.
pub async fn derive_once(
    store: &Store,
    clock: &Clock,
    channels: &Channels,
    max: i64,
) -> Result<Derived, StoreError> {
    let mut tx = store.begin().await?;
    let cursor: i64 = sqlx::query(&format!(
        "SELECT seq FROM notify_cursor WHERE id = 1{}",
        for_update(tx.backend())
    ))
    .fetch_one(tx.conn())
    .await?
    .try_get("seq")?;
    if channels.is_empty() {
        sqlx::query(
            "UPDATE notify_cursor SET seq = (SELECT seq FROM audit_head WHERE id = 1) WHERE id = 1",
        )
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        return Ok(Derived::default());
    }
    let rows = sqlx::query(
        "SELECT seq, at_ms, actor, action, subject, details FROM audit_log \
         WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(cursor)
    .bind(max)
    .fetch_all(tx.conn())
    .await?;
    let Some(last) = rows
        .last()
        .map(|r| r.try_get::<i64, _>("seq"))
        .transpose()?
    else {
        tx.rollback().await?;
        return Ok(Derived::default());
    };
    let now = clock.now_ms();
    let mut written = 0;
    for r in &rows {
        let action: String = r.try_get("action")?;
        let Some(kind) = kind_of(&action) else {
            continue;
        };
        if !channels.iter().any(|c| c.wants(kind)) {
            continue;
        }
        let seq: i64 = r.try_get("seq")?;
        let subject: String = r.try_get("subject")?;
        let details: Value =
            serde_json::from_str(&r.try_get::<String, _>("details")?).unwrap_or(Value::Null);
        let (request_id, grant_id, request, grant) = subject_state(&mut tx, &subject).await?;
        let payload = json!({
            "action": action,
            "actor": r.try_get::<String, _>("actor")?,
            "at": r.try_get::<i64, _>("at_ms")?,
            "audit_seq": seq,
            "details": details,
            "request": request,
            "grant": grant,
        });
        let n = Notification {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kind.to_string(),
            request_id,
            grant_id,
            audit_seq: Some(seq),
            payload,
            created_at: now,
        };
        if insert(&mut tx, channels, &n, &format!("audit:{seq}")).await? {
            written += 1;
        }
    }
    sqlx::query("UPDATE notify_cursor SET seq = $1 WHERE id = 1")
        .bind(last)
        .execute(tx.conn())
        .await?;
    tx.commit().await?;
    if written > 0 {
        metrics::counter!("jit_notifications_total").increment(written as u64);
    }
    Ok(Derived {
        read: rows.len(),
        written,
    })
}

/// The request and grant an audit subject names, as they stand now.
async fn subject_state(
    tx: &mut Tx,
    subject: &str,
) -> Result<(Option<String>, Option<String>, Value, Value), StoreError> {
    if let Some(id) = subject.strip_prefix("request:") {
        let r = crate::requests::repo::get_conn(tx.conn(), id).await?;
        let grant_row = sqlx::query("SELECT id FROM grants WHERE request_id = $1")
            .bind(id)
            .fetch_optional(tx.conn())
            .await?;
        let gid: Option<String> = match (&r, grant_row) {
            (_, Some(row)) => Some(row.try_get("id")?),
            (Some(r), None) => r.grant_id.clone(),
            _ => None,
        };
        let g = match &gid {
            Some(g) => crate::grants::repo::get_conn(tx.conn(), g).await?,
            None => None,
        };
        return Ok((
            Some(id.to_string()),
            gid,
            serde_json::to_value(&r).unwrap_or(Value::Null),
            serde_json::to_value(&g).unwrap_or(Value::Null),
        ));
    }
    if let Some(id) = subject.strip_prefix("grant:") {
        let g = crate::grants::repo::get_conn(tx.conn(), id).await?;
        let rid = g.as_ref().and_then(|g| g.request_id.clone());
        let r = match &rid {
            Some(r) => crate::requests::repo::get_conn(tx.conn(), r).await?,
            None => None,
        };
        return Ok((
            rid,
            Some(id.to_string()),
            serde_json::to_value(&r).unwrap_or(Value::Null),
            serde_json::to_value(&g).unwrap_or(Value::Null),
        ));
    }
    Ok((None, None, Value::Null, Value::Null))
}

/// Writes a notification and one delivery per channel that wants it, unless `dedupe_key` was
/// used before. Returns whether it was new.
pub async fn insert(
    tx: &mut Tx,
    channels: &Channels,
    n: &Notification,
    dedupe_key: &str,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "INSERT INTO notifications (id, kind, dedupe_key, request_id, grant_id, audit_seq, \
         payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(&n.id)
    .bind(&n.kind)
    .bind(dedupe_key)
    .bind(&n.request_id)
    .bind(&n.grant_id)
    .bind(n.audit_seq)
    .bind(n.payload.to_string())
    .bind(n.created_at)
    .execute(tx.conn())
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    for c in channels.iter().filter(|c| c.wants(&n.kind)) {
        sqlx::query(
            "INSERT INTO deliveries (notification_id, channel, partition_key, state, attempts, \
             next_attempt_at, created_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
        )
        .bind(&n.id)
        .bind(c.channel())
        .bind(c.partition(n))
        .bind(n.created_at)
        .execute(tx.conn())
        .await?;
    }
    Ok(true)
}

/// Starts `notify.derive`: derive whatever the audit log gained, every `poll` (and at once
/// after a round that hit its batch limit), waking the outbox workers when it wrote anything.
pub fn spawn(
    tasks: &Tasks,
    store: Store,
    clock: Clock,
    channels: Channels,
    wake: Wake,
    poll: Duration,
) {
    const BATCH: i64 = 500;
    let cancel = tasks.cancel_token();
    tasks.spawn("notify.derive", async move {
        loop {
            let mut pause = poll;
            match derive_once(&store, &clock, &channels, BATCH).await {
                Ok(d) => {
                    if d.written > 0 {
                        wake.notify();
                    }
                    if d.read as i64 >= BATCH {
                        pause = Duration::ZERO;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(&e), "deriving notifications failed; retrying");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    });
}
