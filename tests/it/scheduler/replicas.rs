//! Several replicas, lost Redis data and idle cost: the scheduler's I1/I3/I4 guarantees when
//! more than one process or a misbehaving Redis is involved.

use std::collections::HashMap;
use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::scheduler::{ExpiryOutcome, TimeSource};

use super::private_redis::PrivateRedis;
use super::rig::{
    fast_config, private_replica, redis_at, schedule_spread, wait_unindexed, zscore, Replica,
    TestHandler,
};
use super::WAIT;
use crate::helpers::{redis_url, unique_prefix, wait_until};

/// `k` replicas on one Redis expire `n` grants: each exactly once, nothing missed.
async fn replicas_expire_each_once(k: usize, n: usize) {
    let clock = Clock::system();
    let h = TestHandler::new(clock.clone());
    let prefix = unique_prefix();
    let mut config = fast_config();
    config.batch_size = 10;
    config.concurrency = 4;
    config.lease = Duration::from_secs(10);
    let mut replicas = Vec::new();
    for _ in 0..k {
        let redis = redis_at(&redis_url(), &prefix).await;
        replicas.push(Replica::start(
            redis,
            clock.clone(),
            config.clone(),
            h.clone(),
            TimeSource::RedisTime,
        ));
    }
    // Start-up rebuilds done before anything is due, so none can race a completion.
    for r in &replicas {
        wait_until(WAIT, || async { r.scheduler.rebuilds() >= 1 }).await;
    }
    let index = replicas[0].scheduler.index();
    let base = clock.now_ms() + 300;
    for i in 0..n {
        let id = format!("g{i}");
        let due = base + (i as i64 % 500);
        h.add(&id, due);
        index.schedule(&id, due).await.unwrap();
    }
    wait_until(Duration::from_secs(60), || async { h.pending_count() == 0 }).await;
    let calls = h.calls();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for c in &calls {
        assert_eq!(c.outcome, ExpiryOutcome::Done);
        *per_id.entry(&c.grant_id).or_default() += 1;
    }
    assert_eq!(per_id.len(), n, "some grants were never expired");
    assert!(
        per_id.values().all(|&v| v == 1),
        "a grant was expired twice"
    );
    assert_eq!(calls.len(), n);
    for r in replicas {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_expire_every_grant_exactly_once() {
    replicas_expire_each_once(2, 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_expire_every_grant_exactly_once() {
    replicas_expire_each_once(3, 600).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_mid_run_is_detected_and_rebuilt_without_missing_anything() {
    let server = PrivateRedis::start();
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let (r, redis) = private_replica(&server.url, &clock, &h).await;
    let index = r.scheduler.index();
    let n = 300;
    let base = clock.now_ms() + 200;
    // spread over 1.5 s
    schedule_spread(&h, &index, n, base, 5).await;
    wait_until(WAIT, || async { h.calls().len() >= 20 }).await;
    server.flushall();
    wait_until(Duration::from_secs(30), || async { h.pending_count() == 0 }).await;
    let mut effective: HashMap<String, usize> = HashMap::new();
    for c in h.calls().into_iter().filter(|c| c.effective) {
        *effective.entry(c.grant_id).or_default() += 1;
    }
    assert_eq!(effective.len(), n, "grants lost with the flush");
    assert!(r.scheduler.rebuilds() >= 2, "no rebuild after the flush");
    let mut c = redis.conn();
    let epoch: bool = redis::cmd("EXISTS")
        .arg(redis.key("expiry:epoch"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(epoch, "the sentinel is back");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_with_100k_scheduled_costs_a_few_commands_per_wakeup() {
    let server = PrivateRedis::start();
    let clock = Clock::system();
    let h = TestHandler::new(clock.clone());
    let redis = redis_at(&server.url, "jit").await;
    let index_key = redis.key("expiry:index");
    let far = clock.now_ms() + 30 * 24 * 3_600_000;
    let mut c = redis.conn();
    for chunk in 0..10 {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&index_key);
        for i in 0..10_000 {
            let id = format!("g{}", chunk * 10_000 + i);
            h.add(&id, far + i);
            cmd.arg(far + i).arg(id);
        }
        cmd.query_async::<()>(&mut c).await.unwrap();
    }
    // A 100 ms lease puts the safety cap (at most 10 leases) at 1 s: the worker wakes once a
    // second, the worst idle case. Nothing is due, so the short lease is never used.
    let mut config = fast_config();
    config.lease = Duration::from_millis(100);
    let r = Replica::start(
        redis.clone(),
        clock.clone(),
        config,
        h.clone(),
        TimeSource::RedisTime,
    );
    wait_until(WAIT, || async {
        r.scheduler.rebuilds() >= 1 && r.scheduler.wakeups() >= 2
    })
    .await;
    let w0 = r.scheduler.wakeups();
    let c0 = server.total_commands();
    wait_until(WAIT, || async { r.scheduler.wakeups() >= w0 + 5 }).await;
    let c1 = server.total_commands();
    let w1 = r.scheduler.wakeups();
    // The window also holds our own INFO call; count it as load anyway.
    let per_wake = (c1 - c0) as f64 / (w1 - w0) as f64;
    eprintln!(
        "idle: {} commands over {} wake-ups ({per_wake:.1} per wake-up)",
        c1 - c0,
        w1 - w0
    );
    assert!(
        per_wake <= 20.0,
        "{per_wake} commands per idle wake-up (window {} commands, {} wake-ups)",
        c1 - c0,
        w1 - w0
    );
    assert!(h.calls().is_empty());
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_expiry_keeps_its_lease_and_is_not_run_twice() {
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let prefix = unique_prefix();
    let config = fast_config(); // lease 1 s, renewed every ~333 ms
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let redis = redis_at(&redis_url(), &prefix).await;
        replicas.push(Replica::start(
            redis,
            clock.clone(),
            config.clone(),
            h.clone(),
            TimeSource::Clock,
        ));
    }
    let redis = redis_at(&redis_url(), &prefix).await;
    let index = replicas[0].scheduler.index();
    let gate = h.gate("g1");
    let due = clock.now_ms();
    h.add("g1", due);
    index.schedule("g1", due).await.unwrap();
    wait_until(WAIT, || async { h.started("g1") == 1 }).await;
    let first_lease = zscore(&redis, &index.index_key(), "g1").await.unwrap();
    // Held for more than two whole leases: renewed, never handed to the other replica.
    wait_until(WAIT, || async {
        zscore(&redis, &index.index_key(), "g1")
            .await
            .is_some_and(|s| s >= first_lease + 2 * 1000)
    })
    .await;
    assert_eq!(h.started("g1"), 1, "the other replica took a held lease");
    gate.add_permits(1);
    wait_unindexed(&redis, &index.index_key(), "g1").await;
    assert_eq!(h.started("g1"), 1);
    assert!(h.calls_for("g1")[0].effective);
    for r in replicas {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_without_persistence_loses_nothing() {
    let mut server = PrivateRedis::start();
    let clock = Clock::tokio();
    let h = TestHandler::new(clock.clone());
    let (r, _) = private_replica(&server.url, &clock, &h).await;
    let index = r.scheduler.index();
    let n = 200;
    let base = clock.now_ms() + 200;
    // spread over 2 s
    schedule_spread(&h, &index, n, base, 10).await;
    wait_until(WAIT, || async { h.calls().len() >= 10 }).await;
    // The worker's connection, the wake-up subscription and the whole index go with it.
    tokio::task::block_in_place(|| server.restart_empty());
    wait_until(Duration::from_secs(30), || async { h.pending_count() == 0 }).await;
    let mut effective: HashMap<String, usize> = HashMap::new();
    for c in h.calls().into_iter().filter(|c| c.effective) {
        *effective.entry(c.grant_id).or_default() += 1;
    }
    assert_eq!(effective.len(), n, "grants lost with the restart");
    assert!(r.scheduler.rebuilds() >= 2, "no rebuild after the restart");
    // Still woken by new schedules after the listener reconnected.
    let due = clock.now_ms() + 100;
    h.add("after", due);
    index.schedule("after", due).await.unwrap();
    wait_until(WAIT, || async { !h.calls_for("after").is_empty() }).await;
    r.stop().await;
}
