//! What confirming Okta event hooks with Okta costs: the latency the confirmation read adds to a
//! real deactivation, and the Okta reads a flood of forged departures causes.
//!
//! `cargo bench --bench confirm --features test-hooks` prints:
//! 1. Real deactivations through okta-sim's hook delivery, `BENCH_SAMPLES` (default 40) users
//!    one after the other, alternating between the confirmation read skipped (the switch exists
//!    only with `test-hooks`) and done, in the same run against the same broker: p50/p99 of
//!    event received → grant revoked (from the inbox row's `received_at` and the grant's
//!    `ended_at`, the broker's clock), and of deactivation → access gone in okta-sim (wall).
//! 2. Forged deactivations (fresh `published`, Okta says ACTIVE), `BENCH_FORGED` (default 200)
//!    events in one delivery, for one user and for as many users as events: okta-sim's
//!    `GET /api/v1/users/{id}` count per event, and the time until all are processed.
//!
//! `BENCH_DATABASE_URL` picks the database (default: a temp SQLite).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;

#[path = "support/broker.rs"]
mod broker;

const SECRET: &str = "bench-hook-secret";
const GET_USER: (&str, &str) = ("GET", "/api/v1/users/{id}");

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

fn line(label: &str, v: &mut [f64]) {
    v.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  {label:<44} n={:<3} p50 {:>6.1} ms   p99 {:>6.1} ms   max {:>6.1} ms",
        v.len(),
        pct(v, 0.5),
        pct(v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    );
}

fn forged(uuid: &str, user: &str) -> Value {
    json!({
        "uuid": uuid, "eventType": "user.lifecycle.deactivate",
        "published": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "actor": {"id": "00unobody", "type": "User", "alternateId": "nobody@example.com"},
        "target": [{"id": user, "type": "User"}],
    })
}

async fn done_count(store: &jit_broker::store::Store, prefix: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM okta_events WHERE state = 'done' AND uuid LIKE $1")
        .bind(format!("{prefix}%"))
        .fetch_one(store.reads())
        .await
        .unwrap()
        .get(0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let samples = env_num("BENCH_SAMPLES", 40);
    let n_forged = env_num("BENCH_FORGED", 200);
    let (sim, _, users) = broker::sim_with_users("cf", samples + n_forged + 1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = broker::config(dir.path(), &sim);
    config.redis.key_prefix = format!("bench{}", uuid::Uuid::new_v4().simple());
    config.log.level = "warn".into();
    config.events.secret = Some(secrecy::SecretString::from(SECRET));
    config.events.poll_interval = Duration::from_millis(50);
    let store_cfg = config.database.clone();
    let app = broker::Broker::start(config).await;
    let store = jit_broker::store::Store::connect(&store_cfg).await.unwrap();
    let hook = format!("{}/hooks/okta", app.base);
    let hook_id = sim.register_hook(&hook, "Authorization", SECRET);
    sim.verify_hook(&hook_id).await.unwrap();

    // 1. Real deactivations, the read skipped and done alternately.
    let admin = sim.admin("hr@example.com");
    let (mut off_db, mut on_db, mut off_wall, mut on_wall) = (vec![], vec![], vec![], vec![]);
    // okta-sim's user reads in each mode: the switch really skips the read.
    let (mut off_reads, mut on_reads) = (0, 0);
    for (i, u) in users[..samples].iter().enumerate() {
        let confirm = i % 2 == 1;
        jit_broker::events::confirm::SKIP_READS_FOR_BENCH.store(!confirm, Ordering::Relaxed);
        let r = app
            .http
            .post(format!("{}/v1/grants", app.base))
            .bearer_auth("bench-token")
            .json(&json!({"user": u, "resource": "prod-db-admin", "duration": "1h", "reason": "bench"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let g: Value = r.json().await.unwrap();
        let gid = g["id"].as_str().unwrap().to_string();
        let reads_before = sim.counter(GET_USER.0, GET_USER.1);
        let t = Instant::now();
        admin.deactivate_user(u).unwrap();
        while sim.is_member(broker::GROUP, u) && t.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let wall = t.elapsed().as_secs_f64() * 1e3;
        // The grant is `revoked` with its `ended_at` once the removal is recorded.
        let deadline = Instant::now() + Duration::from_secs(30);
        let ended = loop {
            let row =
                sqlx::query("SELECT ended_at FROM grants WHERE id = $1 AND state = 'revoked'")
                    .bind(&gid)
                    .fetch_optional(store.reads())
                    .await
                    .unwrap();
            if let Some(r) = row {
                break r.get::<Option<i64>, _>(0).unwrap_or(0);
            }
            assert!(Instant::now() < deadline, "grant {gid} not revoked");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let received: i64 = sqlx::query(
            "SELECT MIN(received_at) FROM okta_events \
             WHERE user_key = $1 AND event_type = 'user.lifecycle.deactivate'",
        )
        .bind(u)
        .fetch_one(store.reads())
        .await
        .unwrap()
        .get(0);
        let db = (ended - received) as f64;
        let reads = sim.counter(GET_USER.0, GET_USER.1) - reads_before;
        if confirm {
            on_reads += reads;
        } else {
            off_reads += reads;
        }
        if confirm {
            on_db.push(db);
            on_wall.push(wall);
        } else {
            off_db.push(db);
            off_wall.push(wall);
        }
    }
    jit_broker::events::confirm::SKIP_READS_FOR_BENCH.store(false, Ordering::Relaxed);
    println!("real deactivation (okta-sim hook delivery, one user at a time):");
    line("event received → revoked, no read (before)", &mut off_db);
    line("event received → revoked, confirmed (after)", &mut on_db);
    line("deactivate → gone in okta-sim, no read", &mut off_wall);
    line("deactivate → gone in okta-sim, confirmed", &mut on_wall);
    println!("  okta-sim user reads: {off_reads} without the read, {on_reads} confirmed");

    // 2. Forged floods: Okta reads per forged event.
    let rest = &users[samples..];
    for (label, prefix, targets) in [
        ("one user", "forged-one-", &rest[..1]),
        ("distinct users", "forged-many-", &rest[1..]),
    ] {
        let n = n_forged.min(if targets.len() == 1 {
            n_forged
        } else {
            targets.len()
        });
        let events: Vec<Value> = (0..n)
            .map(|i| forged(&format!("{prefix}{i}"), &targets[i % targets.len()]))
            .collect();
        let before = sim.counter(GET_USER.0, GET_USER.1);
        let t = Instant::now();
        let r = app
            .http
            .post(&hook)
            .header("authorization", SECRET)
            .header("content-type", "application/json")
            .body(json!({"data": {"events": events}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        while done_count(&store, prefix).await < n as i64 && t.elapsed() < Duration::from_secs(120)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reads = sim.counter(GET_USER.0, GET_USER.1) - before;
        let revoked: i64 = sqlx::query(
            "SELECT COUNT(*) FROM okta_events WHERE uuid LIKE $1 AND outcome LIKE 'revoked%'",
        )
        .bind(format!("{prefix}%"))
        .fetch_one(store.reads())
        .await
        .unwrap()
        .get(0);
        println!(
            "forged deactivations, {label}: {n} events, {reads} Okta user reads ({:.3} per event), \
             {revoked} acted on, all processed in {:.1} s",
            reads as f64 / n as f64,
            t.elapsed().as_secs_f64()
        );
    }
    app.stop().await;
    sim.shutdown().await;
}
