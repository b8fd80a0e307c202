//! Refused Okta event hook requests: counted per reason, logged (rate-limited), persisted.
//!
//! Why it exists: a broker started without `events.secret`, or with another secret than the
//! hook was registered with, refuses every delivery; Okta retries once and gives up, so the
//! events are lost and nobody notices. Each refusal is counted here (`jit_events_rejected_total`
//! by reason), logged with its reason at most once a minute per reason (with how many were not
//! logged), and added to a per-reason row (`event_hook_refusals`) that `jit-broker okta
//! event-hook status` reads, across replicas. The rows are written by the tracked task
//! `events.refusals` at most once per [`FLUSH_EVERY`], so a flood of unauthenticated requests
//! costs one upsert per second and replica, never a write per request.
//!
//! What it must never do: log or store the secret, a header's value or a body (only the
//! reason), write to SQL on the request path, or tell the caller which part failed (the HTTP
//! answer stays one 401 for every authentication failure).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;

use crate::clock::Clock;
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;

/// How often pending counts are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// At most one log line per reason this often (milliseconds).
const LOG_EVERY_MS: i64 = 60_000;

/// Why a hook request was refused. `code` is the metric label and the row's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The broker has no `events.secret`: it refuses every hook request.
    NotConfigured,
    /// The request did not carry `events.auth_header`.
    MissingHeader,
    /// The header's value is neither `events.secret` nor `events.previous_secret`.
    WrongSecret,
    /// An authenticated delivery that is not `application/json`.
    ContentType,
    /// An authenticated delivery whose body is not an event hook delivery.
    Malformed,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NotConfigured => "not_configured",
            Refusal::MissingHeader => "missing_header",
            Refusal::WrongSecret => "wrong_secret",
            Refusal::ContentType => "content_type",
            Refusal::Malformed => "malformed",
        }
    }

    /// What an operator reads in the log and in `event-hook status`.
    pub fn explain(code: &str) -> &'static str {
        match code {
            "not_configured" => {
                "the broker has no events.secret (JIT_EVENTS__SECRET or events.secret_file), \
                 so it refuses every hook request"
            }
            "missing_header" => "the request did not carry the auth header (events.auth_header)",
            "wrong_secret" => {
                "the auth header's value is neither events.secret nor events.previous_secret"
            }
            "content_type" => "an authenticated delivery was not application/json",
            "malformed" => "an authenticated delivery was not an Okta event hook delivery",
            _ => "unknown reason",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Tally {
    count: u64,
    first_at: i64,
    last_at: i64,
}

#[derive(Debug, Default)]
struct Logged {
    at: i64,
    suppressed: u64,
}

/// The per-replica tally of refusals not yet written. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Refusals {
    clock: Clock,
    pending: Mutex<HashMap<&'static str, Tally>>,
    logged: Mutex<HashMap<&'static str, Logged>>,
}

impl Refusals {
    pub fn new(clock: Clock) -> Self {
        Refusals {
            clock,
            pending: Mutex::default(),
            logged: Mutex::default(),
        }
    }

    /// Counts one refused request; `request` is `verification` or `delivery`.
    pub fn record(&self, request: &'static str, r: Refusal) {
        let code = r.code();
        metrics::counter!("jit_events_rejected_total", "reason" => code).increment(1);
        let now = self.clock.now_ms();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let t = pending.entry(code).or_insert(Tally {
                count: 0,
                first_at: now,
                last_at: now,
            });
            t.count += 1;
            t.last_at = now;
        }
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let l = logged.entry(code).or_insert(Logged {
            at: i64::MIN,
            suppressed: 0,
        });
        if now.saturating_sub(l.at) >= LOG_EVERY_MS {
            tracing::warn!(
                reason = code,
                request,
                not_logged_since_last = l.suppressed,
                "refused an Okta event hook request: {}",
                Refusal::explain(code)
            );
            l.at = now;
            l.suppressed = 0;
        } else {
            l.suppressed += 1;
        }
    }

    /// Adds the pending counts to the rows; on failure they stay pending for the next round.
    pub async fn flush(&self, store: &Store) -> Result<(), StoreError> {
        let taken: Vec<(&'static str, Tally)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.drain().collect()
        };
        for (i, (code, t)) in taken.iter().enumerate() {
            let r = sqlx::query(
                "INSERT INTO event_hook_refusals (reason, count, first_at, last_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (reason) DO UPDATE SET \
                   count = event_hook_refusals.count + excluded.count, \
                   last_at = CASE WHEN excluded.last_at > event_hook_refusals.last_at \
                     THEN excluded.last_at ELSE event_hook_refusals.last_at END",
            )
            .bind(*code)
            .bind(i64::try_from(t.count).unwrap_or(i64::MAX))
            .bind(t.first_at)
            .bind(t.last_at)
            .execute(store.pool())
            .await;
            if let Err(e) = r {
                // Put back what was not written, merged with what arrived meanwhile.
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (code, t) in &taken[i..] {
                    let p = pending.entry(*code).or_insert(Tally {
                        count: 0,
                        first_at: t.first_at,
                        last_at: t.last_at,
                    });
                    p.count += t.count;
                    p.first_at = p.first_at.min(t.first_at);
                    p.last_at = p.last_at.max(t.last_at);
                }
                return Err(e.into());
            }
        }
        Ok(())
    }
}

/// Starts `events.refusals`: writes pending counts every [`FLUSH_EVERY`] and once more on
/// shutdown.
pub fn spawn(refusals: Arc<Refusals>, store: Store, tasks: &Tasks) {
    let cancel = tasks.cancel_token();
    tasks.spawn("events.refusals", async move {
        loop {
            let stop = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = tokio::time::sleep(FLUSH_EVERY) => false,
            };
            if let Err(e) = refusals.flush(&store).await {
                tracing::warn!(error = %crate::error::chain(&e), "writing hook refusal counts failed");
            }
            if stop {
                return;
            }
        }
    });
}

/// One reason's row, for `event-hook status` and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalRow {
    pub reason: String,
    pub count: i64,
    pub first_at: i64,
    pub last_at: i64,
}

/// Every reason's row, most recent first.
pub async fn list(store: &Store) -> Result<Vec<RefusalRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT reason, count, first_at, last_at FROM event_hook_refusals \
         ORDER BY last_at DESC, reason",
    )
    .fetch_all(store.reads())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RefusalRow {
                reason: r.try_get(0)?,
                count: r.try_get(1)?,
                first_at: r.try_get(2)?,
                last_at: r.try_get(3)?,
            })
        })
        .collect()
}
