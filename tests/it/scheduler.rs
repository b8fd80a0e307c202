//! The expiry scheduler against real Redis (flow 5; I1, I3, I4, I8).
//!
//! The handler here is an in-test stand-in for the grants domain (see `scheduler/rig.rs`); Redis
//! is real: the shared one under a unique prefix, or a private `redis-server` for the tests that
//! FLUSHALL or count commands. Tests that control time give the scheduler the test's [`Clock`]
//! as its time source; none asserts on wall-clock speed, only on order and lower bounds
//! ("never before it was due", "not before the lease ended").

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crash;
mod e2e;
mod handover;
mod private_redis;
mod replicas;
mod rig;
mod throttle;

use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::scheduler::{ExpiryOutcome, Scheduler, TimeSource};
use rig::{fast_config, redis_at, wait_unindexed, zscore, Replica, TestHandler};

use crate::helpers::{redis_url, unique_prefix, wait_until};

pub(crate) const WAIT: Duration = Duration::from_secs(20);

async fn shared_replica(
    handler: &std::sync::Arc<TestHandler>,
    clock: &Clock,
    config: jit_broker::scheduler::SchedulerConfig,
) -> (Replica, jit_broker::redis_conn::RedisConn) {
    let redis = redis_at(&redis_url(), &unique_prefix()).await;
    let r = Replica::start(
        redis.clone(),
        clock.clone(),
        config,
        handler.clone(),
        TimeSource::Clock,
    );
    (r, redis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fires_at_due_time_and_never_before() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let (r, redis) = shared_replica(&h, &clock, fast_config()).await;
    let index = r.scheduler.index();
    let due = clock.now_ms() + 300;
    h.add("g1", due);
    index.schedule("g1", due).await.unwrap();
    wait_until(WAIT, || async { !h.calls_for("g1").is_empty() }).await;
    let calls = h.calls_for("g1");
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].at_ms >= due,
        "fired {} ms early",
        due - calls[0].at_ms
    );
    assert_eq!(calls[0].attempt, 1);
    assert!(calls[0].effective);
    wait_unindexed(&redis, &index.index_key(), "g1").await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fires_on_redis_time_in_production_mode() {
    let clock = Clock::system();
    let h = TestHandler::new(clock.clone());
    let redis = redis_at(&redis_url(), &unique_prefix()).await;
    let r = Replica::start(
        redis.clone(),
        clock.clone(),
        fast_config(),
        h.clone(),
        TimeSource::RedisTime,
    );
    let due = clock.now_ms() + 200;
    h.add("g1", due);
    r.scheduler.index().schedule("g1", due).await.unwrap();
    wait_until(WAIT, || async { h.calls_for("g1").len() == 1 }).await;
    wait_until(WAIT, || async {
        r.scheduler.stats().await.unwrap().scheduled == 0
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn woken_early_when_an_earlier_expiry_is_scheduled() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    // A long lease puts the safety cap at 30 s: only the wake-up message can explain a call
    // that arrives well within it.
    let mut config = fast_config();
    config.lease = Duration::from_secs(600);
    let (r, _redis) = shared_replica(&h, &clock, config).await;
    let index = r.scheduler.index();
    let late = clock.now_ms() + 3_600_000;
    h.add("late", late);
    index.schedule("late", late).await.unwrap();
    // Let the worker see "late" and go to sleep on it.
    wait_until(WAIT, || async { r.scheduler.wakeups() >= 2 }).await;
    let early = clock.now_ms() + 100;
    h.add("early", early);
    index.schedule("early", early).await.unwrap();
    wait_until(Duration::from_secs(10), || async {
        !h.calls_for("early").is_empty()
    })
    .await;
    assert!(h.calls_for("late").is_empty());
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_worker_died_comes_back_after_the_lease() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let redis = redis_at(&redis_url(), &unique_prefix()).await;
    let config = fast_config();
    // The replica that dies: claims, never settles, never runs.
    let dead = Scheduler::with_time_source(
        redis.clone(),
        clock.clone(),
        config.clone(),
        h.clone(),
        TimeSource::Clock,
    );
    let due = clock.now_ms() - 10;
    h.add("g1", due);
    dead.index().schedule("g1", due).await.unwrap();
    let claims = dead.claim(10).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].attempt, 1);
    assert_eq!(claims[0].original_due_ms, due);
    // A second claim right away gets nothing: the lease holds.
    assert!(dead.claim(10).await.unwrap().is_empty());

    let r = Replica::start(
        redis.clone(),
        clock.clone(),
        config,
        h.clone(),
        TimeSource::Clock,
    );
    wait_until(WAIT, || async { !h.calls_for("g1").is_empty() }).await;
    let calls = h.calls_for("g1");
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].at_ms >= claims[0].lease_until_ms,
        "taken before the lease ended"
    );
    assert_eq!(calls[0].attempt, 2, "the dead claim counts as an attempt");
    assert!(calls[0].effective);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_during_an_in_flight_expiry_is_not_lost() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let (r, redis) = shared_replica(&h, &clock, fast_config()).await;
    let index = r.scheduler.index();
    let due = clock.now_ms() + 50;
    h.add("g1", due);
    // First call: the handler read SQL before the extension, so it answers Done.
    h.script("g1", vec![ExpiryOutcome::Done]);
    let gate = h.gate("g1");
    index.schedule("g1", due).await.unwrap();
    // Wait until the expiry is in flight (claimed: its score is the lease, not `due`).
    wait_until(WAIT, || async {
        zscore(&redis, &index.index_key(), "g1")
            .await
            .is_some_and(|s| s > due)
    })
    .await;
    // The extension lands while the handler is working.
    let extended = clock.now_ms() + 700;
    index.schedule("g1", extended).await.unwrap();
    gate.add_permits(1);
    wait_until(WAIT, || async { h.calls_for("g1").len() == 1 }).await;
    // The Done did not remove the re-scheduled member.
    assert_eq!(
        zscore(&redis, &index.index_key(), "g1").await,
        Some(extended)
    );
    // The grants side records the extension (the stand-in's "SQL" row is pending again).
    h.set_due("g1", extended);
    gate.add_permits(1);
    wait_until(WAIT, || async { h.calls_for("g1").len() == 2 }).await;
    let second = &h.calls_for("g1")[1];
    assert!(second.at_ms >= extended, "the extension was cut short");
    assert_eq!(
        second.attempt, 1,
        "an extension starts a fresh attempt count"
    );
    assert!(second.effective);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reschedule_moves_the_due_time() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let (r, redis) = shared_replica(&h, &clock, fast_config()).await;
    let index = r.scheduler.index();
    let due = clock.now_ms() + 20;
    let later = due + 400;
    h.add("g1", due);
    h.script("g1", vec![ExpiryOutcome::Reschedule { due_ms: later }]);
    index.schedule("g1", due).await.unwrap();
    wait_until(WAIT, || async { h.calls_for("g1").len() == 2 }).await;
    let calls = h.calls_for("g1");
    assert!(calls[1].at_ms >= later);
    assert!(calls[1].effective);
    wait_unindexed(&redis, &index.index_key(), "g1").await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_with_growing_gaps() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let mut config = fast_config();
    config.max_attempts = 6;
    config.backoff_base = Duration::from_millis(100);
    config.backoff_max = Duration::from_secs(5);
    let (r, _redis) = shared_replica(&h, &clock, config.clone()).await;
    let retry = || ExpiryOutcome::Retry {
        error: "okta 503".into(),
    };
    let due = clock.now_ms();
    h.add("g1", due);
    h.script("g1", vec![retry(), retry(), retry()]);
    r.scheduler.index().schedule("g1", due).await.unwrap();
    wait_until(WAIT, || async { h.calls_for("g1").len() == 4 }).await;
    let calls = h.calls_for("g1");
    let attempts: Vec<u32> = calls.iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3, 4]);
    // Equal jitter: the gap after attempt n is at least half of base·2^(n-1).
    for n in 1..4usize {
        let gap = calls[n].at_ms - calls[n - 1].at_ms;
        let floor = (100i64 << (n - 1)) / 2;
        assert!(
            gap >= floor,
            "gap after attempt {n} was {gap} ms < {floor} ms"
        );
    }
    assert!(calls[3].effective);
    assert!(h.gave_up().is_empty());
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_give_up_then_retry_every_failed_interval() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let mut config = fast_config();
    config.max_attempts = 3;
    config.backoff_base = Duration::from_millis(20);
    config.failed_retry_interval = Duration::from_millis(600);
    let (r, redis) = shared_replica(&h, &clock, config).await;
    let retry = || ExpiryOutcome::Retry {
        error: "okta 500".into(),
    };
    let due = clock.now_ms();
    h.add("g1", due);
    h.script("g1", vec![retry(), retry(), retry(), retry(), retry()]);
    r.scheduler.index().schedule("g1", due).await.unwrap();
    wait_until(WAIT, || async { h.calls_for("g1").len() == 6 }).await;
    let calls = h.calls_for("g1");
    assert_eq!(
        h.gave_up(),
        vec![("g1".to_string(), "okta 500".to_string())],
        "give_up exactly once, with the error kept"
    );
    // Attempts 4 and 5 are the periodic retries of a failed grant, then it succeeds.
    for n in 3..5usize {
        assert!(
            calls[n].at_ms - calls[n - 1].at_ms >= 600,
            "failed retry {n} came early"
        );
    }
    assert_eq!(
        calls.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert!(calls[5].effective);
    wait_until(WAIT, || async {
        zscore(&redis, &r.scheduler.index().index_key(), "g1")
            .await
            .is_none()
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_is_retried_every_failed_interval_without_give_up() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let mut config = fast_config();
    config.max_attempts = 5;
    config.failed_retry_interval = Duration::from_millis(500);
    let (r, _redis) = shared_replica(&h, &clock, config).await;
    let due = clock.now_ms();
    h.add("g1", due);
    h.script("g1", vec![ExpiryOutcome::Failed, ExpiryOutcome::Failed]);
    r.scheduler.index().schedule("g1", due).await.unwrap();
    wait_until(WAIT, || async { h.calls_for("g1").len() == 3 }).await;
    let calls = h.calls_for("g1");
    assert!(calls[1].at_ms - calls[0].at_ms >= 500);
    assert!(calls[2].at_ms - calls[1].at_ms >= 500);
    // The handler records `failed` itself for a permanent error.
    assert!(h.gave_up().is_empty());
    assert!(calls[2].effective);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_catches_a_grant_missing_from_the_index() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let mut config = fast_config();
    config.sweep_interval = Duration::from_millis(200);
    let (r, _redis) = shared_replica(&h, &clock, config).await;
    // Committed in SQL, overdue, but its `schedule` call never reached Redis, and it arrives
    // after the start-up rebuild.
    wait_until(WAIT, || async { r.scheduler.rebuilds() >= 1 }).await;
    h.add("lost", clock.now_ms() - 60_000);
    wait_until(WAIT, || async { !h.calls_for("lost").is_empty() }).await;
    assert!(h.calls_for("lost")[0].effective);
    assert_eq!(
        r.scheduler.sweep().await.unwrap(),
        0,
        "nothing left to repair"
    );
    r.stop().await;
}

/// A replica died between a state change that made a grant due now (an early revoke's
/// `revoking` commit) and the index update: the index still holds the old, later score. The
/// sweep moves it to SQL's due time (and adds one missing altogether), but never moves a score
/// a claim wrote: a leased grant is not handed to a second replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_moves_a_stale_later_score_to_the_due_time_but_never_a_lease() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let redis = redis_at(&redis_url(), &unique_prefix()).await;
    let s = Scheduler::with_time_source(
        redis.clone(),
        clock.clone(),
        fast_config(),
        h.clone(),
        TimeSource::Clock,
    );
    let index = s.index();
    let key = index.index_key();
    let due = clock.now_ms() - 60_000;
    h.add("stale", due);
    index
        .schedule("stale", clock.now_ms() + 3_600_000)
        .await
        .unwrap();
    h.add("lost", due);
    assert_eq!(s.sweep().await.unwrap(), 2);
    assert_eq!(zscore(&redis, &key, "stale").await, Some(due));
    assert_eq!(zscore(&redis, &key, "lost").await, Some(due));
    let claims = s.claim(10).await.unwrap();
    assert_eq!(claims.len(), 2);
    assert_eq!(s.sweep().await.unwrap(), 0, "a lease is never moved");
    for c in &claims {
        assert_eq!(
            zscore(&redis, &key, &c.grant_id).await,
            Some(c.lease_until_ms)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_expiries() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let (r, redis) = shared_replica(&h, &clock, fast_config()).await;
    let index = r.scheduler.index();
    let gate = h.gate("g1");
    let due = clock.now_ms();
    h.add("g1", due);
    index.schedule("g1", due).await.unwrap();
    wait_until(WAIT, || async {
        zscore(&redis, &index.index_key(), "g1")
            .await
            .is_some_and(|s| s > due)
    })
    .await;
    let tasks = r.tasks.clone();
    let stopping = tokio::spawn(async move { tasks.shutdown(Duration::from_secs(10)).await });
    gate.add_permits(1);
    assert!(stopping.await.unwrap().is_empty());
    let calls = h.calls_for("g1");
    assert_eq!(calls.len(), 1);
    assert!(calls[0].effective);
    assert_eq!(zscore(&redis, &index.index_key(), "g1").await, None);
}

#[test]
fn out_of_range_scheduler_settings_are_refused_naming_the_key() {
    use jit_broker::Config;
    let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    for (key, value, named) in [
        ("JIT_SCHEDULER__LEASE", "100ms", "scheduler.lease"),
        ("JIT_SCHEDULER__BATCH_SIZE", "0", "scheduler.batch_size"),
        ("JIT_SCHEDULER__CONCURRENCY", "0", "scheduler.concurrency"),
        ("JIT_SCHEDULER__MAX_ATTEMPTS", "0", "scheduler.max_attempts"),
        ("JIT_SCHEDULER__BACKOFF_MAX", "1ms", "scheduler.backoff_max"),
        (
            "JIT_SCHEDULER__FAILED_RETRY_INTERVAL",
            "0s",
            "scheduler.failed_retry_interval",
        ),
    ] {
        let errors = Config::load_with_env(None, env(key, value)).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter().any(|t| t.contains(named)),
            "{key}={value}: expected an error naming {named}, got {text:?}"
        );
    }
    assert!(Config::load_with_env(None, Vec::new()).is_ok());
    let e = Config::load_with_env(None, env("JIT_SCHEDULER__LEASE", "soon")).unwrap_err();
    assert!(!e.is_empty(), "a malformed duration is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedule_removes_the_grant_and_its_claim_state() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let mut config = fast_config();
    config.backoff_base = Duration::from_secs(60);
    let (r, redis) = shared_replica(&h, &clock, config).await;
    let index = r.scheduler.index();
    let due = clock.now_ms();
    h.add("g1", due);
    h.script(
        "g1",
        vec![ExpiryOutcome::Retry {
            error: "503".into(),
        }],
    );
    index.schedule("g1", due).await.unwrap();
    // In back-off after one failure: claim state exists.
    let state_key = redis.key("expiry:claims");
    let state = |redis: jit_broker::redis_conn::RedisConn, key: String| async move {
        let mut c = redis.conn();
        redis::cmd("HGET")
            .arg(&key)
            .arg("g1")
            .query_async::<Option<String>>(&mut c)
            .await
            .unwrap()
    };
    wait_until(WAIT, || async {
        !h.calls_for("g1").is_empty()
            && state(redis.clone(), state_key.clone())
                .await
                .is_some_and(|v| v.ends_with(":1"))
    })
    .await;
    index.unschedule("g1").await.unwrap();
    assert_eq!(zscore(&redis, &index.index_key(), "g1").await, None);
    assert_eq!(state(redis.clone(), state_key.clone()).await, None);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_rebuilds_the_index_from_sql() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    // Committed while no scheduler ran and never indexed (say Redis was replaced meanwhile).
    let due = clock.now_ms() + 300;
    h.add("g1", due);
    h.add("g2", clock.now_ms() - 5_000);
    let (r, _redis) = shared_replica(&h, &clock, fast_config()).await;
    wait_until(WAIT, || async { h.pending_count() == 0 }).await;
    assert!(h.calls_for("g1")[0].at_ms >= due);
    assert_eq!(h.calls().len(), 2);
    assert!(r.scheduler.rebuilds() >= 1);
    r.stop().await;
}
