//! Grant and revocation cost end to end: the real broker (`run_with`, SQLite or PostgreSQL,
//! shared Redis under a unique prefix) against okta-sim over HTTP with its rate limits lifted.
//!
//! `cargo bench --bench grants` prints, for `BENCH_GRANTS` users (default 300) at
//! `BENCH_CONCURRENCY` (default 8): grant creation over HTTP (write-ahead row + audit, schedule,
//! lock, Okta read + add, activation + audit, reschedule) and expiry through
//! `ExpiryHandler::expire` (lock, Okta remove, revoke + audit): ops/s, p50/p99/max latency, and
//! Okta calls per operation; then the same users get 3 s grants and the broker's own scheduler
//! expires them: lateness from `expires_at` until the membership is gone from okta-sim.
//! `BENCH_DATABASE_URL` picks the database (default: a temp SQLite).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jit_broker::clock::Clock;
use jit_broker::grants::GrantService;
use jit_broker::okta::OktaClient;
use jit_broker::policy::{Policy, PolicyHandle};
use jit_broker::redis_conn::RedisConn;
use jit_broker::scheduler::{ExpiryHandler, ExpiryOutcome};
use jit_broker::store::Store;

#[path = "support/broker.rs"]
mod broker;
use broker::{GROUP, POLICY};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn summary(label: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{label:<8} n={:<5} {:>7.1} ops/s   p50 {:>6.1} ms   p99 {:>6.1} ms   max {:>6.1} ms",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n = env_num("BENCH_GRANTS", 300);
    let conc = env_num("BENCH_CONCURRENCY", 8);
    let (sim, _, users) = broker::sim_with_users("bench", n).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = broker::config(dir.path(), &sim);
    config.redis.key_prefix = format!("bench{}", uuid::Uuid::new_v4().simple());
    config.log.level = "warn".into();
    let app = broker::Broker::start(config.clone()).await;
    let (http, base) = (app.http.clone(), app.base.clone());
    let store_kind = if config.database.url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    println!("grants bench: {n} grants, concurrency {conc}, {store_kind}, okta-sim over HTTP");

    let before = sim.counter("PUT", "/api/v1/groups/{groupId}/users/{userId}");
    let t0 = Instant::now();
    let created: Vec<(String, Duration)> = futures::stream::iter(users.clone())
        .map(|u| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/v1/grants"))
                    .bearer_auth("bench-token")
                    .json(&serde_json::json!({"user": u, "resource": "prod-db-admin"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let g: serde_json::Value = r.json().await.unwrap();
                (g["id"].as_str().unwrap().to_string(), t.elapsed())
            }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    summary("grant", created.iter().map(|c| c.1).collect(), t0.elapsed());
    let puts = sim.counter("PUT", "/api/v1/groups/{groupId}/users/{userId}") - before;

    // A second "replica" whose clock is two hours ahead: every grant is due.
    let clock = Clock::tokio_at(chrono::Utc::now().timestamp_millis() + 2 * 3_600_000);
    let okta = OktaClient::new(&config.okta, clock.clone()).unwrap();
    let svc = Arc::new(GrantService::new(
        Store::connect(&config.database).await.unwrap(),
        RedisConn::connect(&config.redis).await.unwrap(),
        clock,
        okta,
        PolicyHandle::new(Policy::parse(POLICY).unwrap(), None),
        Duration::from_secs(600),
    ));
    let t0 = Instant::now();
    let expired: Vec<Duration> = futures::stream::iter(created.iter().map(|c| c.0.clone()))
        .map(|id| {
            let svc = svc.clone();
            async move {
                let t = Instant::now();
                assert_eq!(svc.expire(&id, 1).await, ExpiryOutcome::Done);
                t.elapsed()
            }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    summary("expire", expired, t0.elapsed());
    let deletes = sim.counter("DELETE", "/api/v1/groups/{groupId}/users/{userId}");
    println!(
        "okta writes: {:.2} PUT per grant, {:.2} DELETE per expiry; members left: {}",
        puts as f64 / n as f64,
        deletes as f64 / n as f64,
        users.iter().filter(|u| sim.is_member(GROUP, u)).count()
    );

    // End to end through the broker's own scheduler: short grants, then how late after
    // `expires_at` each membership actually disappears from Okta (sampled every 5 ms).
    let short: Vec<(String, i64)> = futures::stream::iter(users.clone())
        .map(|u| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let r = http
                    .post(format!("{base}/v1/grants"))
                    .bearer_auth("bench-token")
                    .json(&serde_json::json!({"user": u, "resource": "prod-db-admin", "duration": "3s"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let g: serde_json::Value = r.json().await.unwrap();
                (u, g["expires_at"].as_i64().unwrap())
            }
        })
        .buffer_unordered(conc)
        .collect()
        .await;
    let mut pending: Vec<(String, i64)> = short;
    let mut lateness = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() && Instant::now() < deadline {
        let now = chrono::Utc::now().timestamp_millis();
        pending.retain(|(u, exp)| {
            if sim.is_member(GROUP, u) {
                true
            } else {
                lateness.push(Duration::from_millis((now - exp).max(0) as u64));
                false
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lateness.sort();
    let pct = |p: f64| lateness[((lateness.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "lateness n={} (not removed within 60 s: {})   p50 {:.0} ms   p99 {:.0} ms   max {:.0} ms  (expires_at → gone from okta-sim, via the scheduler)",
        lateness.len(),
        pending.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lateness.last().unwrap().as_secs_f64() * 1e3,
    );
    app.stop().await;
}
