//! The outbox: durable, per-channel delivery of notifications with retries and dead letters.
//!
//! Why it exists: a Slack outage or a slow SIEM endpoint must never block a grant or an expiry,
//! and a crash must lose no message. [`crate::notify`] writes one `deliveries` row per
//! notification and interested channel in the same transaction as the notification; here one
//! tracked task per channel (`outbox.<channel>`) delivers them. Channels never wait on each
//! other (a dead endpoint delays only itself). Within a channel, deliveries with the same
//! partition key go one at a time in `id` order (per-endpoint ordering); different keys go in
//! parallel. Retryable failures back off (capped, jittered, or the other side's `Retry-After`);
//! permanent failures and exhausted attempts move the delivery to `dead`, counted in metrics and
//! listed at `GET /v1/outbox?state=dead`, from where an admin can retry it.
//!
//! Several replicas: a channel is delivered by the replica holding its SQL lease
//! (`channel_leases`, 3 s), renewed every round and every second while deliveries are in
//! flight; a dead replica's lease lapses within seconds and another takes over. Delivery is at least once: a crash after the other side accepted but before `delivered`
//! was recorded sends it again, with the same notification id (`webhook-id`), so receivers drop
//! the repeat.
//!
//! What it must never do: hold a transaction across a delivery, let one channel's failures
//! delay another, or retry forever without making the failure visible.

pub mod webhook;
pub mod witness;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::clock::Clock;
use crate::notify::Wake;
use crate::notify::{Channels, Deliverer, DeliveryError, Notification};
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;

/// The `[outbox]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Attempts before a delivery is dead.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Partitions of one channel delivered at once (Slack conversations; a webhook has one).
    pub concurrency: usize,
}

/// One delivery, as listed for admins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: i64,
    pub channel: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub notification: Notification,
}

/// A channel's lease: renewed every round (at most a second apart while idle) and every third of
/// it while a round's deliveries are in flight, released on a clean shutdown, and lapsing this
/// long after a replica died: a dead replica's channel is taken over within seconds, as the
/// scheduler's grants are (it was 10 s, renewed only between rounds, so a slow delivery could
/// also outlive it and be sent by two replicas).
const LEASE_MS: i64 = 3_000;
const PAGE: i64 = 200;

/// Starts one `outbox.<channel>` task per configured channel.
pub fn spawn(
    tasks: &Tasks,
    store: Store,
    clock: Clock,
    channels: &Channels,
    cfg: OutboxConfig,
    wake: Wake,
) {
    let holder = uuid::Uuid::new_v4().to_string();
    for d in channels.iter() {
        let w = Worker {
            store: store.clone(),
            clock: clock.clone(),
            deliverer: d.clone(),
            cfg: cfg.clone(),
            holder: holder.clone(),
            wake: wake.clone(),
        };
        let cancel = tasks.cancel_token();
        tasks.spawn(&format!("outbox.{}", d.channel()), async move {
            w.run(cancel).await;
        });
    }
}

struct Worker {
    store: Store,
    clock: Clock,
    deliverer: Arc<dyn Deliverer>,
    cfg: OutboxConfig,
    holder: String,
    wake: Wake,
}

struct Due {
    id: i64,
    attempts: i64,
    partition: String,
    notification: Notification,
}

impl Worker {
    async fn run(self, cancel: tokio_util::sync::CancellationToken) {
        let channel = self.deliverer.channel().to_string();
        loop {
            let pause = match self.round().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(channel = %channel, error = %crate::error::chain(&e), "outbox round failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.wait() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        // A clean stop hands the channel over at once instead of after the lease.
        let released = sqlx::query("DELETE FROM channel_leases WHERE channel = $1 AND holder = $2")
            .bind(&channel)
            .bind(&self.holder)
            .execute(self.store.pool())
            .await;
        if let Err(e) = released {
            tracing::debug!(channel = %channel, error = %e, "cannot release the channel lease");
        }
    }

    /// One round: hold the lease, deliver what is due (one per partition, in order), and say
    /// how long to wait before the next round.
    async fn round(&self) -> Result<Duration, StoreError> {
        let channel = self.deliverer.channel();
        if !self.lease(channel).await? {
            return Ok(Duration::from_millis(LEASE_MS as u64 / 3));
        }
        let now = self.clock.now_ms();
        let rows = pending(&self.store, channel, PAGE).await?;
        let mut seen = HashSet::new();
        let mut due = Vec::new();
        let mut next_at: Option<i64> = None;
        for (d, next) in rows {
            // Only the first pending delivery of a partition may go: its order is kept.
            if !seen.insert(d.partition.clone()) {
                continue;
            }
            if next <= now {
                due.push(d);
            } else {
                next_at = Some(next_at.map_or(next, |n: i64| n.min(next)));
            }
        }
        if due.is_empty() {
            let wait = next_at.map_or(1000, |n| (n - now).clamp(10, 1000));
            return Ok(Duration::from_millis(wait as u64));
        }
        let limit = self.cfg.concurrency.max(1);
        // Set when a renewal finds the lease taken: the replica that holds it now delivers what
        // this round has not started, so nothing more is sent from here (a second send is a
        // duplicate message in Slack, which has no idempotency key). Sends already under way
        // finish and are settled.
        let lost = std::sync::atomic::AtomicBool::new(false);
        let lost = &lost;
        let sends = futures::stream::iter(due)
            .map(|d| async move {
                if lost.load(std::sync::atomic::Ordering::Relaxed) {
                    return (d, None);
                }
                let r = self.deliverer.deliver(&d.notification).await;
                (d, Some(r))
            })
            .buffer_unordered(limit)
            .collect::<Vec<_>>();
        let results = self.renewing(channel, lost, sends).await;
        for (d, r) in results {
            if let Some(r) = r {
                self.settle(channel, d, r).await?;
            }
        }
        Ok(Duration::ZERO)
    }

    async fn settle(
        &self,
        channel: &str,
        d: Due,
        r: Result<(), DeliveryError>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let attempts = d.attempts + 1;
        let (state, next, error, outcome) = match r {
            Ok(()) => ("delivered", now, None, "delivered"),
            Err(DeliveryError::Permanent(m)) => ("dead", now, Some(m), "dead"),
            Err(DeliveryError::Retry { message, .. })
                if attempts >= i64::from(self.cfg.max_attempts) =>
            {
                (
                    "dead",
                    now,
                    Some(format!("gave up after {attempts} attempts: {message}")),
                    "dead",
                )
            }
            Err(DeliveryError::Retry { message, after }) => {
                let delay = after.unwrap_or_else(|| self.backoff(attempts));
                let next = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                ("pending", next, Some(message), "retry")
            }
        };
        if outcome == "dead" {
            tracing::error!(channel, delivery = d.id, kind = %d.notification.kind, error = ?error, "delivery is dead: see GET /v1/outbox?state=dead");
        }
        metrics::counter!("jit_outbox_deliveries_total", "channel" => channel.to_string(), "outcome" => outcome)
            .increment(1);
        if outcome == "delivered" {
            let lag = (now - d.notification.created_at).max(0) as f64 / 1000.0;
            metrics::histogram!("jit_outbox_delivery_lag_seconds", "channel" => channel.to_string())
                .record(lag);
        }
        sqlx::query(
            "UPDATE deliveries SET state = $1, attempts = $2, next_attempt_at = $3, \
             last_error = $4, delivered_at = $5 WHERE id = $6 AND state = 'pending'",
        )
        .bind(state)
        .bind(attempts)
        .bind(next)
        .bind(error)
        .bind((state == "delivered").then_some(now))
        .bind(d.id)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Exponential from `backoff_base`, capped at `backoff_max`, with full jitter on the upper
    /// half so a recovering endpoint is not hit by every replica at once.
    fn backoff(&self, attempts: i64) -> Duration {
        let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
        let d = self
            .cfg
            .backoff_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.cfg.backoff_max);
        let half = d / 2;
        half + half.mul_f64(rand::thread_rng().gen_range(0.0..1.0))
    }

    /// Runs `work` (a round's deliveries) while renewing the channel's lease every third of
    /// [`LEASE_MS`], in the same task: the renewal ends with the work or with the process.
    /// A renewal that finds the lease taken sets `lost`.
    async fn renewing<T>(
        &self,
        channel: &str,
        lost: &std::sync::atomic::AtomicBool,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let period = Duration::from_millis(LEASE_MS as u64 / 3);
        crate::tasks::while_renewing(work, period, || async move {
            match self.lease(channel).await {
                Ok(true) => {}
                Ok(false) => {
                    lost.store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        channel,
                        "outbox lease lost mid-round: no more sends this round"
                    );
                }
                Err(e) => tracing::warn!(channel, error = %e, "cannot renew the outbox lease"),
            }
            true
        })
        .await
    }

    /// Takes or renews this replica's lease on the channel.
    async fn lease(&self, channel: &str) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let r = sqlx::query(
            "INSERT INTO channel_leases (channel, holder, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (channel) DO UPDATE SET holder = $2, until_ms = $3 \
             WHERE channel_leases.holder = $2 OR channel_leases.until_ms < $4",
        )
        .bind(channel)
        .bind(&self.holder)
        .bind(now + LEASE_MS)
        .bind(now)
        .execute(self.store.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }
}

use futures::StreamExt;

const NOTIFICATION_COLUMNS: &str =
    "n.id, n.kind, n.request_id, n.grant_id, n.audit_seq, n.payload, n.created_at";

fn notification(r: &sqlx::any::AnyRow) -> Result<Notification, StoreError> {
    let payload: String = r.try_get("payload")?;
    Ok(Notification {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        request_id: r.try_get("request_id")?,
        grant_id: r.try_get("grant_id")?,
        audit_seq: r.try_get("audit_seq")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("notification payload: {e}")))?,
        created_at: r.try_get("created_at")?,
    })
}

/// The head (oldest pending delivery) of each partition of a channel, with its due time: only a
/// head may be delivered, so a partition stuck on retries never hides the others.
async fn pending(store: &Store, channel: &str, limit: i64) -> Result<Vec<(Due, i64)>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT d.id AS delivery_id, d.attempts, d.partition_key, d.next_attempt_at, \
         {NOTIFICATION_COLUMNS} \
         FROM deliveries d JOIN notifications n ON n.id = d.notification_id \
         WHERE d.id IN (SELECT MIN(id) FROM deliveries WHERE channel = $1 AND state = 'pending' \
         GROUP BY partition_key) ORDER BY d.id LIMIT $2"
    ))
    .bind(channel)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                Due {
                    id: r.try_get("delivery_id")?,
                    attempts: r.try_get("attempts")?,
                    partition: r.try_get("partition_key")?,
                    notification: notification(r)?,
                },
                r.try_get::<i64, _>("next_attempt_at")?,
            ))
        })
        .collect()
}

/// Lists deliveries for admins, oldest first.
pub async fn list(
    store: &Store,
    state: Option<&str>,
    channel: Option<&str>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let mut sql = format!(
        "SELECT d.id AS delivery_id, d.channel, d.state, d.attempts, d.next_attempt_at, \
         d.last_error, d.created_at AS delivery_created_at, d.delivered_at, {NOTIFICATION_COLUMNS} \
         FROM deliveries d JOIN notifications n ON n.id = d.notification_id WHERE d.id > $1"
    );
    let mut binds = Vec::new();
    if let Some(s) = state {
        binds.push(s.to_string());
        sql.push_str(&format!(" AND d.state = ${}", binds.len() + 1));
    }
    if let Some(c) = channel {
        binds.push(c.to_string());
        sql.push_str(&format!(" AND d.channel = ${}", binds.len() + 1));
    }
    sql.push_str(&format!(" ORDER BY d.id LIMIT {}", limit.clamp(1, 1000)));
    let mut q = sqlx::query(&sql).bind(after.unwrap_or(0));
    for b in &binds {
        q = q.bind(b);
    }
    let rows = q.fetch_all(store.reads()).await?;
    rows.iter()
        .map(|r| {
            Ok(Delivery {
                id: r.try_get("delivery_id")?,
                channel: r.try_get("channel")?,
                state: r.try_get("state")?,
                attempts: r.try_get("attempts")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
                last_error: r.try_get("last_error")?,
                created_at: r.try_get("delivery_created_at")?,
                delivered_at: r.try_get("delivered_at")?,
                notification: notification(r)?,
            })
        })
        .collect()
}

/// Puts a dead delivery back in its queue (an admin's retry), audited as `outbox.retried` in
/// the same transaction, so a retry is never made without its audit entry (I8). `false`, and
/// nothing written, when the delivery does not exist or is not dead. The API and the console
/// both call this.
pub async fn retry(
    store: &Store,
    clock: &Clock,
    id: i64,
    actor: &str,
) -> Result<bool, crate::audit::AuditError> {
    let mut tx = store.begin().await?;
    let r = sqlx::query(
        "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1 \
         WHERE id = $2 AND state = 'dead'",
    )
    .bind(clock.now_ms())
    .bind(id)
    .execute(tx.conn())
    .await?;
    let won = r.rows_affected() == 1;
    if won {
        crate::audit::append(
            &mut tx,
            clock,
            crate::audit::NewEntry::new(
                actor,
                "outbox.retried",
                format!("delivery:{id}"),
                serde_json::json!({ "delivery": id }),
            ),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(won)
}

/// Deliveries by channel and state, for the `jit_outbox_deliveries` gauge.
pub async fn counts(store: &Store) -> Result<Vec<(String, String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT channel, state, COUNT(*) AS n FROM deliveries WHERE state <> 'delivered' \
         GROUP BY channel, state",
    )
    .fetch_all(store.reads())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("channel")?, r.try_get("state")?, r.try_get("n")?)))
        .collect()
}

/// Keeps `jit_outbox_deliveries{channel,state}` (pending and dead) current.
pub fn spawn_gauges(tasks: &Tasks, store: Store, channels: &Channels) {
    let names: Vec<String> = channels.iter().map(|d| d.channel().to_string()).collect();
    let cancel = tasks.cancel_token();
    tasks.spawn("outbox.gauges", async move {
        loop {
            if let Ok(c) = counts(&store).await {
                for name in &names {
                    for st in ["pending", "dead"] {
                        let n = c
                            .iter()
                            .find(|(ch, s, _)| ch == name && s == st)
                            .map_or(0, |x| x.2);
                        metrics::gauge!("jit_outbox_deliveries", "channel" => name.clone(), "state" => st)
                            .set(n as f64);
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
    });
}
