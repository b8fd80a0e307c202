//! The state the scheduler's tasks share (worker, wake listener, sweep, rebuild): one
//! `Arc<Inner>` per scheduler, so no task module has to reach into another for it.
//!
//! What it must never do: hold a lock across an await (every field is atomic or a handle).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::metrics as m;
use super::scripts::{ClaimBatch, Scripts};
use super::{ExpiryHandler, ExpiryIndex, SchedulerConfig, SchedulerError, TimeSource};
use crate::clock::Clock;
use crate::redis_conn::RedisConn;

pub(crate) struct Inner {
    pub(crate) redis: RedisConn,
    pub(crate) clock: Clock,
    pub(crate) config: SchedulerConfig,
    pub(crate) handler: Arc<dyn ExpiryHandler>,
    pub(crate) index: ExpiryIndex,
    pub(crate) time_source: TimeSource,
    pub(crate) scripts: Scripts,
    /// Wakes the worker (wake-up messages, local re-scores, sweep and rebuild repairs).
    pub(crate) wake: Notify,
    /// Asks the rebuild task for a rebuild now (data loss detected).
    pub(crate) rebuild_now: Notify,
    pub(crate) rebuilding: AtomicBool,
    /// The score the worker will next wake for (`i64::MAX`: none); the listener compares against it.
    pub(crate) next_wake_ms: AtomicI64,
    pub(crate) wakeups: AtomicU64,
    pub(crate) rebuilds: AtomicU64,
    /// The worker's current claim window (see `window`), for operators and tests.
    pub(crate) window: AtomicUsize,
}

impl Inner {
    pub(crate) fn now_arg(&self) -> Option<i64> {
        match self.time_source {
            TimeSource::RedisTime => None,
            TimeSource::Clock => Some(self.clock.now_ms()),
        }
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.lease.as_millis()).unwrap_or(i64::MAX / 4)
    }

    pub(crate) async fn claim(&self, limit: usize) -> Result<ClaimBatch, SchedulerError> {
        let batch = self
            .scripts
            .claim(&self.redis, self.now_arg(), self.lease_ms(), limit)
            .await?;
        ::metrics::gauge!(m::SCHEDULED).set(batch.scheduled as f64);
        if !batch.claims.is_empty() {
            ::metrics::counter!(m::CLAIMS).increment(batch.claims.len() as u64);
        }
        if !batch.epoch_present && !self.rebuilding.load(Ordering::Acquire) {
            tracing::warn!(
                "expiry index sentinel missing: Redis lost its data; rebuilding from SQL"
            );
            self.rebuild_now.notify_one();
        }
        Ok(batch)
    }
}
