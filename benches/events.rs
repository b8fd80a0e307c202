//! Okta event hook figures: intake against a bare axum handler, processing lag under a steady
//! rate, and out-of-band add → removal under `drift = "enforce"`.
//!
//! `cargo bench --bench events` prints:
//! 1. Intake: `POST /hooks/okta` deliveries of 1 and of 50 events (every event durably stored
//!    before the 204; the broker runs without Okta so no worker competes) side by side with a
//!    bare axum handler that reads the body and answers 204, at `BENCH_CONCURRENCY` (default
//!    16) clients for `BENCH_SECS` (default 3) seconds each: requests/s, events/s, p50/p99
//!    latency, the process's CPU, the ratio of requests/s, and from the broker's metrics how
//!    many deliveries shared each write and how busy the writer was.
//! 2. Processing lag (`published` → processed, from the inbox rows) of drift events on a
//!    `report` resource sent at `BENCH_RATE` events/s (default 200) for `BENCH_LAG_SECS`
//!    (default 15) seconds, in deliveries every 50 ms, to a broker with okta-sim.
//! 3. Out-of-band add → removal: `BENCH_DRIFT_SAMPLES` (default 30) users added by an okta-sim
//!    admin to an `enforce` group one after the other; the time until okta-sim no longer has
//!    the member (polled every 2 ms), through the simulator's real hook delivery.
//!
//! `BENCH_DATABASE_URL` picks the database (default: a temp SQLite; give a fresh one per run,
//! the phases share it). `BENCH_EVENT_TYPE` replaces the events' type (for example
//! `user.lifecycle.create`, which the broker drops after deduplication) to separate the cost of
//! storing bodies from the rest of the intake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;

#[path = "support/broker.rs"]
mod broker;

const SECRET: &str = "bench-hook-secret";
const REPORT_GROUP: &str = "00g1oncall0000000003";
const POLICY: &str = r#"
[[resource]]
name = "prod-db-admin"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
jit_only = true
drift = "enforce"

[[resource]]
name = "oncall"
kind = "okta_group"
okta_id = "00g1oncall0000000003"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
jit_only = true
drift = "report"
"#;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn event(user: &str) -> Value {
    json!({
        "uuid": uuid::Uuid::new_v4().to_string(),
        "published": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "eventType": std::env::var("BENCH_EVENT_TYPE").unwrap_or_else(|_| "group.user_membership.add".into()),
        "actor": {"id": "00ubenchadmin", "type": "User", "alternateId": "admin@example.com"},
        "target": [{"id": user, "type": "User"}, {"id": REPORT_GROUP, "type": "UserGroup"}],
    })
}

fn delivery(n: usize, seq: u64) -> String {
    let events: Vec<Value> = (0..n)
        .map(|i| event(&format!("00ubench{:06}{:06}", seq % 1_000_000, i)))
        .collect();
    json!({"eventType": "com.okta.event_hook", "data": {"events": events}}).to_string()
}

struct Load {
    reqs: usize,
    lat_ms: Vec<f64>,
    wall: Duration,
    /// The whole process's CPU time over the run (load generator and server alike).
    cpu: Duration,
}

/// This process's user + system CPU time, from `/proc/self/stat` (clock ticks of 10 ms: runs of
/// seconds make that fine enough). Zero where there is no procfs.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) end in `)`.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// `conc` clients POSTing deliveries of `n` events to `url` for `secs`. Bodies (unique event
/// uuids) are built before the clock starts, so the load generator's JSON work, which shares
/// the machine's cores, weighs on neither side.
async fn load(url: &str, n: usize, conc: usize, secs: u64) -> Load {
    let http = reqwest::Client::new();
    let cap = (40_000 / n).max(200);
    let bodies: Arc<Vec<String>> = Arc::new((0..cap).map(|i| delivery(n, i as u64)).collect());
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let cpu0 = process_cpu();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (http, url, next, bodies) =
            (http.clone(), url.to_string(), next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .header("authorization", SECRET)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 204);
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            lat
        }));
    }
    let mut lat_ms = Vec::new();
    for t in tasks {
        lat_ms.extend(t.await.unwrap());
    }
    let wall = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    lat_ms.sort_by(|a, b| a.total_cmp(b));
    Load {
        reqs: lat_ms.len(),
        lat_ms,
        wall,
        cpu,
    }
}

fn show(label: &str, n: usize, l: &Load) -> f64 {
    let rps = l.reqs as f64 / l.wall.as_secs_f64();
    println!(
        "{label:<22} {rps:>8.0} req/s {:>9.0} events/s   p50 {:>6.2} ms   p99 {:>6.2} ms   \
         cores {:.2}, {:.0} µs CPU/req",
        rps * n as f64,
        pct(&l.lat_ms, 0.5),
        pct(&l.lat_ms, 0.99),
        l.cpu.as_secs_f64() / l.wall.as_secs_f64(),
        l.cpu.as_secs_f64() * 1e6 / l.reqs.max(1) as f64,
    );
    rps
}

/// The intake's group-commit counters from the broker's `/metrics`: deliveries written, writes,
/// and seconds spent writing.
async fn intake_counters(base: &str) -> (f64, f64, f64) {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("jit_events_intake_deliveries_total"),
        value("jit_events_intake_write_seconds_count"),
        value("jit_events_intake_write_seconds_sum"),
    )
}

async fn bare_server() -> String {
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(|_b: axum::body::Bytes| async { axum::http::StatusCode::NO_CONTENT }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn base_config(dir: &std::path::Path, sim: &okta_sim::SimHandle) -> jit_broker::Config {
    let mut config = broker::config(dir, sim);
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    config.redis.key_prefix = format!("bench{}", uuid::Uuid::new_v4().simple());
    config.log.level = "warn".into();
    config.events.secret = Some(secrecy::SecretString::from(SECRET));
    config.events.poll_interval = Duration::from_millis(50);
    config
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let conc = env_num("BENCH_CONCURRENCY", 16);
    let secs = env_num("BENCH_SECS", 3) as u64;
    let rate = env_num("BENCH_RATE", 200);
    let lag_secs = env_num("BENCH_LAG_SECS", 15);
    let samples = env_num("BENCH_DRIFT_SAMPLES", 30);
    let (sim, _, users) = broker::sim_with_users("ev", samples).await;

    // 1. Intake, without Okta (no worker): only authentication, parsing and durable storage.
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path(), &sim);
    config.okta.base_url = String::new();
    let db_url = config.database.url.clone();
    let intake_db = config.database.clone();
    let app = broker::Broker::start(config).await;
    let hook = format!("{}/hooks/okta", app.base);
    let bare = bare_server().await;
    println!(
        "intake: {conc} clients, {secs} s per run (db: {})",
        db_url.split(':').next().unwrap_or("?")
    );
    for n in [1usize, 50] {
        let b = load(&bare, n, conc, secs).await;
        let before = intake_counters(&app.base).await;
        let h = load(&hook, n, conc, secs).await;
        let after = intake_counters(&app.base).await;
        let rb = show(&format!("bare axum, {n} ev"), n, &b);
        let rh = show(&format!("/hooks/okta, {n} ev"), n, &h);
        let (deliveries, writes, write_secs) = (
            after.0 - before.0,
            (after.1 - before.1).max(1.0),
            after.2 - before.2,
        );
        println!(
            "  ratio hook/bare (req/s): {:.2}   group commit: {:.1} deliveries per write, \
             {:.0} µs per write, writer busy {:.0} %",
            rh / rb,
            deliveries / writes,
            write_secs * 1e6 / writes,
            write_secs * 100.0 / h.wall.as_secs_f64()
        );
    }
    app.stop().await;
    // With `BENCH_DATABASE_URL` the phases share one database, and the intake's events (no
    // worker ran) would sit ahead of the lag phase's own as a backlog of tens of thousands:
    // the lag phase would measure draining that backlog. Clear them.
    if std::env::var("BENCH_DATABASE_URL").is_ok() {
        let store = jit_broker::store::Store::connect(&intake_db).await.unwrap();
        sqlx::query("DELETE FROM okta_events")
            .execute(store.pool())
            .await
            .unwrap();
    }

    // 2. Processing lag at a steady rate, with Okta and the worker.
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path(), &sim);
    let store_cfg = config.database.clone();
    let app = broker::Broker::start(config).await;
    let hook = format!("{}/hooks/okta", app.base);
    let http = reqwest::Client::new();
    let per_tick = (rate / 20).max(1);
    let ticks = lag_secs * 20;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut sent = 0usize;
    let mut inflight = Vec::new();
    for t in 0..ticks {
        tick.tick().await;
        let body = delivery(per_tick, 10_000 + t as u64);
        let (http, hook) = (http.clone(), hook.clone());
        inflight.push(tokio::spawn(async move {
            http.post(&hook)
                .header("authorization", SECRET)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
        sent += per_tick;
    }
    for f in inflight {
        assert_eq!(f.await.unwrap(), 204);
    }
    let store = jit_broker::store::Store::connect(&store_cfg).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = sqlx::query("SELECT COUNT(*) FROM okta_events WHERE state = 'done'")
            .fetch_one(store.reads())
            .await
            .unwrap();
        if row.get::<i64, _>(0) as usize >= sent || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = sqlx::query("SELECT processed_at - published FROM okta_events WHERE state = 'done'")
        .fetch_all(store.reads())
        .await
        .unwrap();
    let mut lag: Vec<f64> = rows.iter().map(|r| r.get::<i64, _>(0) as f64).collect();
    lag.sort_by(|a, b| a.total_cmp(b));
    println!(
        "lag at {} events/s for {lag_secs} s: processed {}/{sent}   p50 {:.0} ms   p99 {:.0} ms   max {:.0} ms",
        per_tick * 20,
        lag.len(),
        pct(&lag, 0.5),
        pct(&lag, 0.99),
        lag.last().copied().unwrap_or(f64::NAN)
    );

    // 3. Out-of-band add → removal under enforce, through okta-sim's hook delivery.
    let hook_id = sim.register_hook(&hook, "Authorization", SECRET);
    sim.verify_hook(&hook_id).await.unwrap();
    let admin = sim.admin("someone@example.com");
    let mut took = Vec::new();
    for u in &users {
        let t = Instant::now();
        admin.add_member(broker::GROUP, u).unwrap();
        while sim.is_member(broker::GROUP, u) {
            if t.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        took.push(t.elapsed().as_secs_f64() * 1e3);
    }
    took.sort_by(|a, b| a.total_cmp(b));
    println!(
        "out-of-band add → removal (enforce), n={}: p50 {:.0} ms   p99 {:.0} ms   max {:.0} ms (includes okta-sim's 50 ms batch window)",
        took.len(),
        pct(&took, 0.5),
        pct(&took, 0.99),
        took.last().copied().unwrap_or(f64::NAN)
    );
    app.stop().await;
    sim.shutdown().await;
}
