//! Requests and approvals through the whole broker, printed, never asserted:
//!
//! - request → active grant through the API (a portal asks on behalf of a user, an approver
//!   approves) and through a signed callback, p50/p99 per step, okta-sim with no latency;
//! - decisions per second (first approvals of two-approval requests: pure decision work, no
//!   grant), with `BENCH_CONCURRENCY` deciders at once;
//! - outbox throughput to one healthy endpoint, and the healthy endpoint's delivery lag with and
//!   without a second endpoint that accepts connections and never answers.
//!
//! `BENCH_DATABASE_URL=postgres://…` runs it on PostgreSQL (a fresh database); SQLite otherwise.
//! `BENCH_N` (default 300) requests per measurement.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/broker.rs"]
mod broker;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jit_broker::api::auth::TokenConfig;
use jit_broker::api::auth::{hash_token, Role};
use jit_broker::webhooks::WebhookSecret;
use serde_json::{json, Value};

const POLICY: &str = r#"
[[resource]]
name = "one"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com", "carol@example.com"] }
approvals_required = 1

[[resource]]
name = "two"
kind = "okta_group"
okta_id = "00g1oncall0000000003"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com", "carol@example.com"] }
approvals_required = 2
"#;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn token(name: &str, roles: &[Role]) -> TokenConfig {
    TokenConfig {
        name: name.into(),
        roles: roles.to_vec(),
        sha256: hash_token(&format!("tok-{name}")),
    }
}

async fn post(b: &broker::Broker, who: &str, path: &str, body: Value) -> (u16, Value) {
    let r = b
        .http
        .post(format!("{}{path}", b.base))
        .bearer_auth(format!("tok-{who}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn ask(b: &broker::Broker, resource: &str, user: &str) -> String {
    let (s, v) = post(
        b,
        "portal",
        "/v1/requests",
        json!({"resource": resource, "on_behalf_of": user, "reason": "bench"}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    v["request"]["id"].as_str().unwrap().to_string()
}

/// A receiver counting deliveries (and their lag from the event's timestamp).
#[derive(Clone, Default)]
struct Sink {
    n: Arc<AtomicUsize>,
    lags: Arc<Mutex<Vec<f64>>>,
}

async fn sink() -> (Sink, String) {
    let s = Sink::default();
    let me = s.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let me = me.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Some(ts) = v["timestamp"].as_str() {
                    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) {
                        let lag = (chrono::Utc::now().timestamp_millis() - t.timestamp_millis())
                            as f64
                            / 1000.0;
                        me.lags.lock().unwrap().push(lag);
                    }
                }
                me.n.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (s, url)
}

/// Accepts connections and never answers: the worst kind of dead endpoint.
async fn black_hole() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = l.accept().await {
            held.push(c);
        }
    });
    url
}

fn endpoint(name: &str, url: &str) -> jit_broker::outbox::webhook::EndpointConfig {
    jit_broker::outbox::webhook::EndpointConfig {
        name: name.into(),
        url: url.into(),
        secret: Some(secrecy::SecretString::from(SECRET)),
        secret_file: None,
        events: vec!["request.created".into()],
    }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let conc: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let (sim, _, users) = broker::sim_with_users("req", 4 * n).await;
    let _ = users;
    let dir = tempfile::tempdir().unwrap();
    let (healthy, url) = sink().await;
    let hole = black_hole().await;
    let mut config = broker::config(dir.path(), &sim);
    std::fs::write(config.policy.file.as_ref().unwrap(), POLICY).unwrap();
    config.redis.key_prefix = format!("bench{}", uuid::Uuid::new_v4().simple());
    config.auth.tokens = vec![
        token("portal", &[Role::Portal]),
        token("bob@example.com", &[Role::Approver]),
        token("carol@example.com", &[Role::Approver]),
    ];
    config.callbacks.integrations = vec![jit_broker::callbacks::IntegrationConfig {
        name: "itsm".into(),
        secret: Some(secrecy::SecretString::from(SECRET)),
        secret_file: None,
        trusted_for_step_up: false,
        allowed_resources: None,
        allowed_approvers: None,
    }];
    config.outbound.endpoints = vec![endpoint("healthy", &url), endpoint("hole", &hole)];
    config.outbound.timeout = Duration::from_secs(10);
    config.notify.poll_interval = Duration::from_millis(20);
    let b = broker::Broker::start(config).await;
    let backend = if std::env::var("BENCH_DATABASE_URL").is_ok() {
        "postgres"
    } else {
        "sqlite"
    };
    println!("requests bench: backend {backend}, n {n}, concurrency {conc}");

    // 1. API: ask (portal) then approve (bob); one at a time, latency per step.
    let (mut ask_ms, mut approve_ms, mut total_ms) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let user = format!("req{i}@example.com");
        let t0 = Instant::now();
        let id = ask(&b, "one", &user).await;
        let t1 = Instant::now();
        let (s, v) = post(
            &b,
            "bob@example.com",
            &format!("/v1/requests/{id}/approve"),
            json!({}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["grant"]["state"], "active", "{v}");
        let t2 = Instant::now();
        ask_ms.push((t1 - t0).as_secs_f64() * 1e3);
        approve_ms.push((t2 - t1).as_secs_f64() * 1e3);
        total_ms.push((t2 - t0).as_secs_f64() * 1e3);
    }
    println!(
        "api: request p50 {:.1} ms p99 {:.1} ms; approve->active grant p50 {:.1} ms p99 {:.1} ms; request->active p50 {:.1} ms p99 {:.1} ms",
        pct(&mut ask_ms, 0.5), pct(&mut ask_ms, 0.99), pct(&mut approve_ms, 0.5),
        pct(&mut approve_ms, 0.99), pct(&mut total_ms, 0.5), pct(&mut total_ms, 0.99)
    );

    // 2. Signed callback approvals.
    let key = WebhookSecret::parse(SECRET).unwrap();
    let mut cb_ms = Vec::new();
    for i in n..2 * n {
        let id = ask(&b, "one", &format!("req{i}@example.com")).await;
        let body = serde_json::to_vec(
            &json!({"request_id": id, "decision": "approve", "approver": "carol@example.com"}),
        )
        .unwrap();
        let ts = chrono::Utc::now().timestamp();
        let wid = format!("msg_{i}");
        let t0 = Instant::now();
        let r = b
            .http
            .post(format!("{}/hooks/approvals", b.base))
            .header("webhook-id", &wid)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", key.sign(&wid, ts, &body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        cb_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "callback: approve->active grant p50 {:.1} ms p99 {:.1} ms",
        pct(&mut cb_ms, 0.5),
        pct(&mut cb_ms, 0.99)
    );

    // 3. Decisions per second: first approvals of two-approval requests, `conc` at once.
    let mut ids = Vec::new();
    for i in 2 * n..3 * n {
        ids.push(ask(&b, "two", &format!("req{i}@example.com")).await);
    }
    let b = Arc::new(b);
    let queue = Arc::new(Mutex::new(ids));
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let (b, q) = (b.clone(), queue.clone());
        set.spawn(async move {
            loop {
                let Some(id) = q.lock().unwrap().pop() else {
                    return;
                };
                let (s, v) = post(
                    &b,
                    "bob@example.com",
                    &format!("/v1/requests/{id}/approve"),
                    json!({}),
                )
                .await;
                assert_eq!(s, 200, "{v}");
            }
        });
    }
    while set.join_next().await.is_some() {}
    let secs = t0.elapsed().as_secs_f64();
    println!("decisions: {n} in {secs:.2} s = {:.0}/s", n as f64 / secs);

    // 4. Outbox: every request above made a request.created event for both endpoints; the
    // healthy one must get all of them while the black hole holds its worker.
    let expected = 3 * n;
    let t0 = Instant::now();
    while healthy.n.load(Ordering::SeqCst) < expected && t0.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lags = healthy.lags.lock().unwrap().clone();
    println!(
        "outbox: healthy endpoint got {}/{expected}; its delivery lag with a never-answering endpoint beside it p50 {:.3} s p99 {:.3} s",
        healthy.n.load(Ordering::SeqCst),
        pct(&mut lags, 0.5),
        pct(&mut lags, 0.99)
    );

    // 5. Outbox throughput: a burst of events written at once, drained by the one worker.
    let before = healthy.n.load(Ordering::SeqCst);
    let burst = n;
    let mut set = tokio::task::JoinSet::new();
    let users = Arc::new(Mutex::new((3 * n..3 * n + burst).collect::<Vec<_>>()));
    let t0 = Instant::now();
    for _ in 0..conc {
        let (b, u) = (b.clone(), users.clone());
        set.spawn(async move {
            loop {
                let Some(i) = u.lock().unwrap().pop() else {
                    return;
                };
                ask(&b, "one", &format!("req{i}@example.com")).await;
            }
        });
    }
    while set.join_next().await.is_some() {}
    let written = t0.elapsed().as_secs_f64();
    while healthy.n.load(Ordering::SeqCst) < before + burst
        && t0.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "outbox: {burst} events written in {written:.2} s, all delivered {secs:.2} s after the first: {:.0} events/s end to end",
        burst as f64 / secs
    );
    if let Ok(b) = Arc::try_unwrap(b) {
        b.stop().await;
    }
}
