//! Test rig for the scheduler: a recording [`ExpiryHandler`] that stands in for the grants
//! domain (it returns scripted outcomes and keeps its pending grants in a map, the way the
//! grants service keeps them in SQL), plus builders for schedulers on a chosen Redis.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::config::RedisConfig;
use jit_broker::redis_conn::RedisConn;
use jit_broker::scheduler::{
    BoxError, DueEntry, ExpiryHandler, ExpiryIndex, ExpiryOutcome, Scheduler, SchedulerConfig,
    TimeSource,
};
use jit_broker::tasks::Tasks;
use tokio::sync::Semaphore;

/// One call to `expire`.
#[derive(Debug, Clone)]
pub struct Call {
    pub grant_id: String,
    pub attempt: u32,
    /// When the call started, on the rig's clock.
    pub at_ms: i64,
    pub outcome: ExpiryOutcome,
    /// Whether this call ended a grant that was still pending (an effective revocation).
    pub effective: bool,
}

#[derive(Default)]
struct State {
    /// The "SQL" stand-in: pending grants and their due times.
    pending: HashMap<String, i64>,
    /// Outcomes to return, per grant, in order; `Done` once exhausted.
    script: HashMap<String, VecDeque<ExpiryOutcome>>,
    /// Grants whose `expire` waits for a permit on this gate before returning.
    gates: HashMap<String, Arc<Semaphore>>,
    calls: Vec<Call>,
    /// `expire` calls begun, per grant (recorded before any gate).
    started: HashMap<String, u32>,
    gave_up: Vec<(String, String)>,
}

pub struct TestHandler {
    clock: Clock,
    state: Mutex<State>,
}

impl TestHandler {
    pub fn new(clock: Clock) -> Arc<TestHandler> {
        Arc::new(TestHandler {
            clock,
            state: Mutex::new(State::default()),
        })
    }

    /// Records a pending grant (as a committed grant row would be).
    pub fn add(&self, id: &str, due_ms: i64) {
        self.state.lock().unwrap().pending.insert(id.into(), due_ms);
    }

    pub fn set_due(&self, id: &str, due_ms: i64) {
        self.add(id, due_ms)
    }

    pub fn script(&self, id: &str, outcomes: Vec<ExpiryOutcome>) {
        self.state
            .lock()
            .unwrap()
            .script
            .insert(id.into(), outcomes.into());
    }

    /// `expire(id)` will block until [`TestHandler::open`] is called.
    pub fn gate(&self, id: &str) -> Arc<Semaphore> {
        let g = Arc::new(Semaphore::new(0));
        self.state
            .lock()
            .unwrap()
            .gates
            .insert(id.into(), g.clone());
        g
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn calls_for(&self, id: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.grant_id == id)
            .collect()
    }

    pub fn started(&self, id: &str) -> u32 {
        self.state
            .lock()
            .unwrap()
            .started
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    pub fn gave_up(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().gave_up.clone()
    }

    pub fn pending_count(&self) -> usize {
        self.state.lock().unwrap().pending.len()
    }
}

#[async_trait::async_trait]
impl ExpiryHandler for TestHandler {
    async fn expire(&self, grant_id: &str, attempt: u32) -> ExpiryOutcome {
        let at_ms = self.clock.now_ms();
        let gate = {
            let mut st = self.state.lock().unwrap();
            *st.started.entry(grant_id.into()).or_default() += 1;
            st.gates.get(grant_id).cloned()
        };
        if let Some(g) = gate {
            g.acquire().await.unwrap().forget();
        }
        let mut st = self.state.lock().unwrap();
        let outcome = st
            .script
            .get_mut(grant_id)
            .and_then(|q| q.pop_front())
            .unwrap_or(ExpiryOutcome::Done);
        let effective = match &outcome {
            ExpiryOutcome::Done => st.pending.remove(grant_id).is_some(),
            ExpiryOutcome::Reschedule { due_ms } => {
                st.pending.insert(grant_id.into(), *due_ms);
                false
            }
            _ => false,
        };
        st.calls.push(Call {
            grant_id: grant_id.into(),
            attempt,
            at_ms,
            outcome: outcome.clone(),
            effective,
        });
        outcome
    }

    async fn give_up(&self, grant_id: &str, error: &str) -> Result<(), BoxError> {
        self.state
            .lock()
            .unwrap()
            .gave_up
            .push((grant_id.into(), error.into()));
        Ok(())
    }

    async fn due_entries(&self) -> Result<Vec<DueEntry>, BoxError> {
        let st = self.state.lock().unwrap();
        Ok(st
            .pending
            .iter()
            .map(|(id, due)| DueEntry {
                grant_id: id.clone(),
                due_ms: *due,
            })
            .collect())
    }

    /// Any of this handler's due times may have moved earlier than the index holds.
    async fn overdue_early(&self, now_ms: i64, limit: u32) -> Result<Vec<DueEntry>, BoxError> {
        self.overdue(now_ms, limit).await
    }

    async fn overdue(&self, now_ms: i64, limit: u32) -> Result<Vec<DueEntry>, BoxError> {
        let st = self.state.lock().unwrap();
        Ok(st
            .pending
            .iter()
            .filter(|(_, due)| **due <= now_ms)
            .take(limit as usize)
            .map(|(id, due)| DueEntry {
                grant_id: id.clone(),
                due_ms: *due,
            })
            .collect())
    }
}

/// Short leases and back-off so tests finish quickly; rebuild and sweep effectively off unless
/// a test turns them on.
pub fn fast_config() -> SchedulerConfig {
    SchedulerConfig {
        lease: Duration::from_secs(1),
        batch_size: 100,
        concurrency: 16,
        max_attempts: 4,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        failed_retry_interval: Duration::from_secs(1),
        rebuild_interval: Duration::from_secs(3600),
        sweep_interval: Duration::from_secs(3600),
    }
}

pub async fn redis_at(url: &str, prefix: &str) -> RedisConn {
    RedisConn::connect(&RedisConfig {
        url: url.into(),
        key_prefix: prefix.into(),
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(5),
    })
    .await
    .unwrap()
}

/// One replica: a scheduler with its tasks.
pub struct Replica {
    pub scheduler: Scheduler,
    pub tasks: Tasks,
}

impl Replica {
    pub fn start(
        redis: RedisConn,
        clock: Clock,
        config: SchedulerConfig,
        handler: Arc<TestHandler>,
        time_source: TimeSource,
    ) -> Replica {
        let scheduler = Scheduler::with_time_source(redis, clock, config, handler, time_source);
        let tasks = Tasks::new();
        scheduler.spawn(&tasks);
        Replica { scheduler, tasks }
    }

    /// Stops the replica and asserts every task finished within the grace period.
    pub async fn stop(self) {
        let left = self.tasks.shutdown(Duration::from_secs(10)).await;
        assert!(
            left.is_empty(),
            "tasks still running after shutdown: {left:?}"
        );
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.tasks.cancel_token().cancel();
    }
}

/// Waits (up to `WAIT`) until `id` has left the expiry index `index_key`.
pub async fn wait_unindexed(redis: &RedisConn, index_key: &str, id: &str) {
    crate::helpers::wait_until(super::WAIT, || async {
        zscore(redis, index_key, id).await.is_none()
    })
    .await;
}

/// A replica on its own Redis `url` (prefix `jit`), fast config, time from `clock`, started
/// and through its first index rebuild.
pub async fn private_replica(
    url: &str,
    clock: &Clock,
    handler: &Arc<TestHandler>,
) -> (Replica, RedisConn) {
    let redis = redis_at(url, "jit").await;
    let r = Replica::start(
        redis.clone(),
        clock.clone(),
        fast_config(),
        handler.clone(),
        TimeSource::Clock,
    );
    crate::helpers::wait_until(super::WAIT, || async { r.scheduler.rebuilds() >= 1 }).await;
    (r, redis)
}

/// Registers and schedules `n` grants `g0..`, the i-th due at `base + i * step_ms`.
pub async fn schedule_spread(
    handler: &TestHandler,
    index: &ExpiryIndex,
    n: usize,
    base: i64,
    step_ms: i64,
) {
    for i in 0..n {
        let id = format!("g{i}");
        let due = base + i as i64 * step_ms;
        handler.add(&id, due);
        index.schedule(&id, due).await.unwrap();
    }
}

pub async fn zscore(redis: &RedisConn, key: &str, id: &str) -> Option<i64> {
    let mut c = redis.conn();
    let s: Option<f64> = redis::cmd("ZSCORE")
        .arg(key)
        .arg(id)
        .query_async(&mut c)
        .await
        .unwrap();
    s.map(|v| v as i64)
}
