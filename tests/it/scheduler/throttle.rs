//! The claim window against a throttled handler (Okta holding removals to its rate limit): the
//! worker stops holding hundreds of claims that only wait (each one renewed every second), and
//! opens up again once the handler is fast. Every grant is still expired exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::scheduler::{
    BoxError, DueEntry, ExpiryHandler, ExpiryOutcome, Scheduler, SchedulerConfig, TimeSource,
};
use jit_broker::tasks::Tasks;

use super::rig::{fast_config, redis_at};
use crate::helpers::{redis_url, unique_prefix, wait_until};

/// Expires one grant at a time, `PER_CALL` each while throttled (100/s, as an Okta bucket of
/// 6,000 per minute), at once otherwise.
struct Throttled {
    slow: AtomicBool,
    turn: tokio::sync::Mutex<()>,
    done: Mutex<HashMap<String, u32>>,
    /// Most `expire` calls waiting or running at once (what the worker had claimed).
    waiting: AtomicUsize,
    max_waiting: AtomicUsize,
}

const PER_CALL: Duration = Duration::from_millis(10);

#[async_trait::async_trait]
impl ExpiryHandler for Throttled {
    async fn expire(&self, grant_id: &str, _attempt: u32) -> ExpiryOutcome {
        let w = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_waiting.fetch_max(w, Ordering::SeqCst);
        if self.slow.load(Ordering::SeqCst) {
            let _turn = self.turn.lock().await;
            tokio::time::sleep(PER_CALL).await;
        }
        *self
            .done
            .lock()
            .unwrap()
            .entry(grant_id.to_string())
            .or_default() += 1;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        ExpiryOutcome::Done
    }
    async fn give_up(&self, _: &str, _: &str) -> Result<(), BoxError> {
        Ok(())
    }
    async fn due_entries(&self) -> Result<Vec<DueEntry>, BoxError> {
        Ok(Vec::new())
    }
    async fn overdue(&self, _: i64, _: u32) -> Result<Vec<DueEntry>, BoxError> {
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_window_shrinks_while_throttled_and_reopens() {
    let clock = Clock::tokio();
    let h = Arc::new(Throttled {
        slow: AtomicBool::new(true),
        turn: tokio::sync::Mutex::new(()),
        done: Mutex::new(HashMap::new()),
        waiting: AtomicUsize::new(0),
        max_waiting: AtomicUsize::new(0),
    });
    // The shipped lease and concurrency: 3 s, renewed every second; 512 in flight at most.
    let config = SchedulerConfig {
        lease: Duration::from_secs(3),
        batch_size: 256,
        concurrency: 512,
        ..fast_config()
    };
    let redis = redis_at(&redis_url(), &unique_prefix()).await;
    let s = Scheduler::with_time_source(redis, clock.clone(), config, h.clone(), TimeSource::Clock);
    let tasks = Tasks::new();
    s.spawn(&tasks);
    wait_until(super::WAIT, || async { s.claim_window() > 0 }).await;
    let start = s.claim_window();
    assert!(start < 512, "starts below the concurrency: {start}");

    // 300 grants due at one instant against 100 expiries/s: three seconds of work. Due a
    // moment ahead so that the worker sees them all at once (grants trickling in one by one
    // make one-grant chunks, which finish fast even when throttled).
    let index = s.index();
    let due = clock.now_ms() + 1_500;
    for i in 0..300 {
        index.schedule(&format!("slow{i}"), due).await.unwrap();
    }
    let done = |prefix: &'static str, n: usize| {
        let h = h.clone();
        move || {
            let h = h.clone();
            async move {
                let d = h.done.lock().unwrap();
                d.keys().filter(|k| k.starts_with(prefix)).count() >= n
            }
        }
    };
    wait_until(super::WAIT, done("slow", 300)).await;
    let throttled = s.claim_window();
    assert!(
        throttled < start,
        "the window shrank while every chunk took longer than a renewal interval: {throttled}"
    );
    assert!(
        h.max_waiting.load(Ordering::SeqCst) <= start,
        "never more claimed than the window"
    );

    // Fast again: a burst opens the window to the full concurrency.
    h.slow.store(false, Ordering::SeqCst);
    let due = clock.now_ms() + 1_000;
    for i in 0..3000 {
        index.schedule(&format!("fast{i}"), due).await.unwrap();
    }
    wait_until(super::WAIT, done("fast", 3000)).await;
    assert_eq!(s.claim_window(), 512, "reopened to the concurrency");
    let d = h.done.lock().unwrap().clone();
    assert_eq!(d.len(), 3300);
    assert!(
        d.values().all(|&n| n == 1),
        "each grant expired exactly once"
    );
    let left = tasks.shutdown(Duration::from_secs(10)).await;
    assert!(left.is_empty(), "{left:?}");
}
