//! The Redis expiry scheduler (flow 5, invariants I1, I3, I4, I8).
//!
//! Why it exists: access must be removed on the minute, whatever crashed. A Redis sorted set is
//! the expiry index (member: grant id, score: due time in Unix ms). SQL remains the record: the
//! index can be rebuilt from it at any time through [`ExpiryHandler::due_entries`].
//!
//! This module knows nothing about Okta or grant states: it decides *when*, and the
//! [`ExpiryHandler`] (the grants service) decides *what*. That split keeps the timing logic
//! testable on its own and keeps state transitions in one place.
//!
//! What it must never do: treat Redis as the record, busy-poll, or run a grant's expiry without
//! a lease (two replicas would both act).
//!
//! Layout: this file is the contract (config, errors, the handler trait, [`ExpiryIndex`]);
//! [`Scheduler`] in `worker.rs` runs the claim loop; `expire.rs` runs one claimed expiry and
//! settles it; `scripts.rs` holds the Lua; `wake.rs` the
//! pub/sub wake-up listener; `maintenance.rs` the rebuild from SQL and the overdue sweep;
//! `backoff.rs` retry delays; `metrics.rs` metric names.
//!
//! Keys (all under `RedisConn::key`): `expiry:index` (ZSET grant id → due ms, or lease/backoff
//! time while claimed), `expiry:claims` (HASH of per-grant claim state, see `scripts.rs`),
//! `expiry:epoch` (the rebuild sentinel: written by every rebuild; its absence means Redis lost
//! its data), channel `expiry:wake` (due times of newly scheduled grants).

mod backoff;
mod expire;
mod maintenance;
pub mod metrics;
mod scripts;
mod shared;
mod wake;
mod window;
mod worker;

pub use scripts::Claim;
pub use worker::{Scheduler, SchedulerStats, TimeSource};

pub(crate) const INDEX_KEY: &str = "expiry:index";
pub(crate) const STATE_KEY: &str = "expiry:claims";
pub(crate) const EPOCH_KEY: &str = "expiry:epoch";
pub(crate) const WAKE_CHANNEL: &str = "expiry:wake";

use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;

use crate::error::ErrorCode;
use crate::redis_conn::RedisConn;

/// Boxed error from the handler, kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How long a claim is held before another replica may take the grant over.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Grants claimed per Lua call.
    pub batch_size: u32,
    /// Expiries carried out at once per replica.
    pub concurrency: u32,
    /// Retryable failures before a grant moves to `failed`.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// How often `failed` grants are tried again until an operator resolves them (I8).
    #[serde(with = "humantime_serde")]
    pub failed_retry_interval: Duration,
    /// Full rebuild of the index from SQL.
    #[serde(with = "humantime_serde")]
    pub rebuild_interval: Duration,
    /// SQL sweep for anything overdue that the index missed.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl SchedulerConfig {
    /// Errors name the key (`scheduler.lease`), as `Config::validate` expects.
    pub fn validate(&self) -> Vec<crate::config::ConfigError> {
        use crate::config::ConfigError;
        let mut errors = Vec::new();
        let mut need = |ok: bool, key: &str, msg: &str| {
            if !ok {
                errors.push(ConfigError::invalid(format!("scheduler.{key}"), msg));
            }
        };
        need(
            self.lease >= Duration::from_millis(500),
            "lease",
            "must be at least 500ms (an expiry must fit inside it)",
        );
        need(
            (1..=10_000).contains(&self.batch_size),
            "batch_size",
            "must be between 1 and 10000",
        );
        need(
            (1..=10_000).contains(&self.concurrency),
            "concurrency",
            "must be between 1 and 10000",
        );
        need(self.max_attempts >= 1, "max_attempts", "must be at least 1");
        need(
            !self.backoff_base.is_zero(),
            "backoff_base",
            "must be greater than zero",
        );
        need(
            self.backoff_max >= self.backoff_base,
            "backoff_max",
            "must be at least scheduler.backoff_base",
        );
        need(
            self.failed_retry_interval >= Duration::from_secs(1),
            "failed_retry_interval",
            "must be at least 1s",
        );
        need(
            self.rebuild_interval >= Duration::from_secs(1),
            "rebuild_interval",
            "must be at least 1s",
        );
        need(
            self.sweep_interval >= Duration::from_millis(100),
            "sweep_interval",
            "must be at least 100ms",
        );
        errors
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("the expiry index in Redis is unavailable")]
    Redis(#[from] redis::RedisError),
    #[error("the expiry handler failed")]
    Handler(#[source] BoxError),
}

impl ErrorCode for SchedulerError {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }
    fn code(&self) -> &'static str {
        "scheduler_unavailable"
    }
}

/// A grant that should be in the index, and when it falls due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEntry {
    pub grant_id: String,
    pub due_ms: i64,
}

/// What the handler did with one due grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiryOutcome {
    /// Access removed, already gone, or the grant no longer needs expiring: drop it from the index.
    Done,
    /// The grant's due time moved (an extension): index it at this time instead.
    Reschedule { due_ms: i64 },
    /// A retryable failure: back off (capped, jittered, exponential) and try again.
    Retry { error: String },
    /// A permanent failure: the handler has moved the grant to `failed` with its error. The
    /// scheduler tries it again every `failed_retry_interval` until an operator resolves it.
    Failed,
}

/// One claimed grant handed to [`ExpiryHandler::expire_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryItem {
    pub grant_id: String,
    /// As `expire`'s `attempt`.
    pub attempt: u32,
}

/// The grants service, as the scheduler sees it.
#[async_trait::async_trait]
pub trait ExpiryHandler: Send + Sync + 'static {
    /// Expires one grant. Called at or after its due time, possibly more than once (after a
    /// crash, or a lease that ran out): it must be idempotent. `attempt` is 1 on the first claim
    /// since the grant was (re)scheduled and counts claims, so a replica that died mid-call
    /// counts too. The call is never cancelled by the scheduler; its lease is renewed while it
    /// runs (up to 10 leases, then another replica may run it concurrently).
    async fn expire(&self, grant_id: &str, attempt: u32) -> ExpiryOutcome;

    /// Expires grants claimed together, one outcome per item in order, with `expire`'s
    /// contract for each. A handler that can share work across a batch (one read, one lock
    /// round trip, one commit) overrides this; the default runs `expire` for each concurrently.
    async fn expire_many(&self, items: &[ExpiryItem]) -> Vec<ExpiryOutcome> {
        futures::future::join_all(items.iter().map(|i| self.expire(&i.grant_id, i.attempt))).await
    }
    /// Retries were exhausted: move the grant to `failed`, keeping `error` (I8).
    async fn give_up(&self, grant_id: &str, error: &str) -> Result<(), BoxError>;
    /// Every grant that belongs in the index and its due time, read from SQL (for rebuilds),
    /// including `failed` grants (due at their next retry). Rebuilds only add what the index
    /// lacks (ZADD NX), so a grant finished a moment ago may be added back and fire once more:
    /// `expire` answers `Done` for it.
    async fn due_entries(&self) -> Result<Vec<DueEntry>, BoxError>;
    /// Grants due at or before `now_ms` according to SQL, at most `limit` (the overdue sweep).
    async fn overdue(&self, now_ms: i64, limit: u32) -> Result<Vec<DueEntry>, BoxError>;
    /// Of the overdue grants, those whose due time may have moved *earlier* than the index holds
    /// (a state change whose index update died with its replica: a `revoking` commit, a
    /// `provisioning` grant's resume time), at most `limit`. The sweep moves such a grant's
    /// score earlier when no claim wrote it (`scripts::PULL_DUE`); everything else it only adds
    /// when missing. The default (none) suits a handler whose due times only move later.
    async fn overdue_early(&self, _now_ms: i64, _limit: u32) -> Result<Vec<DueEntry>, BoxError> {
        Ok(Vec::new())
    }
}

/// The index, as the grants service sees it: schedule after the grant row commits and before
/// Okta is called (I2); unschedule when a grant ends early.
#[derive(Clone, Debug)]
pub struct ExpiryIndex {
    redis: RedisConn,
}

impl ExpiryIndex {
    pub fn new(redis: RedisConn) -> Self {
        ExpiryIndex { redis }
    }

    /// The sorted set holding every scheduled grant.
    pub fn index_key(&self) -> String {
        self.redis.key(INDEX_KEY)
    }

    /// The channel replicas listen on to wake early when an earlier expiry is scheduled.
    pub fn wake_channel(&self) -> String {
        self.redis.key(WAKE_CHANNEL)
    }

    /// Adds or moves a grant's due time and wakes sleeping replicas.
    pub async fn schedule(&self, grant_id: &str, due_ms: i64) -> Result<(), SchedulerError> {
        let mut c = self.redis.conn();
        redis::pipe()
            .atomic()
            .zadd(self.index_key(), grant_id, due_ms)
            .ignore()
            .publish(self.wake_channel(), due_ms)
            .ignore()
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    /// Removes a grant from the index (it ended early). Harmless if absent. Its claim state
    /// (attempt count) goes too, so nothing is left behind; an expiry in flight for it then
    /// finds its lease score gone and settles nothing.
    pub async fn unschedule(&self, grant_id: &str) -> Result<(), SchedulerError> {
        let mut c = self.redis.conn();
        redis::pipe()
            .atomic()
            .zrem(self.index_key(), grant_id)
            .ignore()
            .hdel(self.redis.key(STATE_KEY), grant_id)
            .ignore()
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }
}
