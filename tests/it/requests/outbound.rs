//! Outbound events: signed, durable, per endpoint, surviving a restart; a dead endpoint delays
//! no other; dead letters are visible and can be retried.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use jit_broker::outbox::webhook::EndpointConfig;
use jit_broker::webhooks::{verify, Signed, WebhookSecret};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;

both_backends!(
    events_reach_endpoints_signed_and_a_dead_one_delays_none,
    queued_events_survive_a_restart,
    expiring_grants_and_waiting_requests_are_announced_once,
    queued_events_survive_kill_9,
);

const SECRET: &str = "whsec_c2lnbmluZy1rZXktZm9yLWV2ZW50cy0xMjM0NTY=";

/// A webhook receiver: verifies each delivery like a customer's library would, records it.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, Value)>>>,
    failing: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |h: HeaderMap, body: Bytes| {
                let me = me.clone();
                async move {
                    if me.failing.load(Ordering::SeqCst) {
                        return AxStatus::SERVICE_UNAVAILABLE;
                    }
                    let key = WebhookSecret::parse(SECRET).unwrap();
                    let hv = |n: &str| h.get(n).unwrap().to_str().unwrap().to_string();
                    let (id, ts, sig) = (
                        hv("webhook-id"),
                        hv("webhook-timestamp"),
                        hv("webhook-signature"),
                    );
                    let signed = Signed {
                        id: &id,
                        timestamp: &ts,
                        signatures: &sig,
                    };
                    if verify(&[&key], signed, &body, chrono::Utc::now().timestamp(), 300).is_err()
                    {
                        return AxStatus::UNAUTHORIZED;
                    }
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    me.got.lock().unwrap().push((id, v));
                    AxStatus::NO_CONTENT
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        format!("http://{addr}/hook")
    }

    fn types(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, v)| v["type"].as_str().unwrap().to_string())
            .collect()
    }

    fn ids(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn endpoint(name: &str, url: &str) -> EndpointConfig {
    EndpointConfig {
        name: name.into(),
        url: url.into(),
        secret: Some(secrecy::SecretString::from(SECRET)),
        secret_file: None,
        events: vec![],
    }
}

/// A loopback port with nothing listening.
async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/hook")
}

async fn events_reach_endpoints_signed_and_a_dead_one_delays_none(db: Db) {
    let rx = Receiver::default();
    let url = rx.start().await;
    let dead = dead_url().await;
    let e = env_with(db, |c| {
        c.outbound.endpoints = vec![endpoint("siem", &url), endpoint("gone", &dead)];
        c.outbox.max_attempts = 3;
        c.outbox.backoff_base = Duration::from_millis(20);
        c.outbox.backoff_max = Duration::from_millis(50);
    })
    .await;
    let id = e
        .pending(
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "x"}),
        )
        .await;
    let (s, _) = e.decide("bob@example.com", &id, "approve", "").await;
    assert_eq!(s, StatusCode::OK);
    wait_until(Duration::from_secs(10), || async {
        let t = rx.types();
        ["request.created", "request.decided", "grant.activated"]
            .iter()
            .all(|k| t.iter().any(|x| x == k))
    })
    .await;
    // In order, for this endpoint.
    let t = rx.types();
    let pos = |k: &str| t.iter().position(|x| x == k).unwrap();
    assert!(pos("request.created") < pos("request.decided"), "{t:?}");
    assert!(pos("request.decided") < pos("grant.activated"), "{t:?}");
    let (_, first) = rx.got.lock().unwrap()[0].clone();
    assert_eq!(first["data"]["request"]["id"], id.as_str());
    // The dead endpoint's deliveries end as dead letters, visible to admins only.
    wait_until(Duration::from_secs(10), || async {
        let (_, b) = admin_get(
            &e.app.http,
            &e.app.base,
            "/v1/outbox?state=dead&channel=webhook:gone",
        )
        .await;
        b["deliveries"].as_array().is_some_and(|d| d.len() >= 3)
    })
    .await;
    let (s, _) = e.get_as("bob@example.com", "/v1/outbox?state=dead").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, b) = admin_get(&e.app.http, &e.app.base, "/v1/outbox?state=dead").await;
    let d = &b["deliveries"][0];
    assert!(d["last_error"].as_str().unwrap().contains("gave up"), "{d}");
    let did = d["id"].as_i64().unwrap();
    let (s, r) = admin_post(
        &e.app.http,
        &e.app.base,
        &format!("/v1/outbox/{did}/retry"),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, r) = admin_post(
        &e.app.http,
        &e.app.base,
        "/v1/outbox/999999/retry",
        json!({}),
    )
    .await;
    assert_eq!((s, code(&r)), (StatusCode::CONFLICT, "not_dead"));
    let (s, _) = admin_get(&e.app.http, &e.app.base, "/v1/outbox?state=bogus").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e
        .app
        .metrics()
        .await
        .contains("jit_outbox_deliveries_total"));
}

async fn queued_events_survive_a_restart(db: Db) {
    let rx = Receiver::default();
    let url = rx.start().await;
    rx.failing.store(true, Ordering::SeqCst);
    let e = env_with(db, |c| {
        // Requests only: the clean stop below also publishes an `audit.checkpoint`.
        let mut siem = endpoint("siem", &url);
        siem.events = vec!["request.*".into()];
        c.outbound.endpoints = vec![siem];
        c.outbox.backoff_base = Duration::from_millis(20);
        c.outbox.backoff_max = Duration::from_millis(100);
    })
    .await;
    for i in 1..=3 {
        e.pending(
            &format!("eng{i}@example.com"),
            json!({"resource": "any-one"}),
        )
        .await;
    }
    // Queued, not delivered: the endpoint answers 503.
    wait_until(Duration::from_secs(10), || async {
        let (_, b) = admin_get(&e.app.http, &e.app.base, "/v1/outbox?state=pending").await;
        b["deliveries"].as_array().is_some_and(|d| d.len() == 3)
    })
    .await;
    let Env { app, sim, _dir } = e;
    let (db_, config) = app.stop_keep().await;
    rx.failing.store(false, Ordering::SeqCst);
    let app = spawn_app_with(db_, config, jit_broker::RunOptions::default()).await;
    wait_until(Duration::from_secs(15), || async { rx.ids().len() >= 3 }).await;
    let mut ids = rx.ids();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each event once by id: {:?}", rx.ids());
    assert!(rx.types().iter().all(|t| t == "request.created"));
    drop(sim);
    app.stop().await.unwrap();
}

async fn expiring_grants_and_waiting_requests_are_announced_once(db: Db) {
    let rx = Receiver::default();
    let url = rx.start().await;
    let e = env_with(db, |c| {
        let mut ep = endpoint("siem", &url);
        ep.events = vec!["grant.expiring".into(), "request.reminder".into()];
        c.outbound.endpoints = vec![ep];
        // Every grant is within the lead at once; reminders come every second.
        c.notify.expiring_lead = Duration::from_secs(2 * 3600);
        c.notify.approver_reminder = Duration::from_secs(1);
    })
    .await;
    let (s, b) = e
        .request(
            "carol@example.com",
            json!({"resource": "prod-admins", "duration": "30m", "reason": "page"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let gid = b["grant"]["id"].as_str().unwrap().to_string();
    let rid = e
        .pending(
            "alice@example.com",
            json!({"resource": "payroll", "ticket": "SEC-9"}),
        )
        .await;
    wait_until(Duration::from_secs(10), || async {
        let t = rx.types();
        t.iter().any(|k| k == "grant.expiring") && t.iter().any(|k| k == "request.reminder")
    })
    .await;
    let got = rx.got.lock().unwrap().clone();
    let expiring: Vec<_> = got
        .iter()
        .filter(|(_, v)| v["type"] == "grant.expiring")
        .collect();
    assert_eq!(
        expiring.len(),
        1,
        "one notice per grant and expiry: {got:?}"
    );
    assert_eq!(expiring[0].1["data"]["grant"]["id"], gid.as_str());
    let reminder = got
        .iter()
        .find(|(_, v)| v["type"] == "request.reminder")
        .unwrap();
    assert_eq!(reminder.1["data"]["request"]["id"], rid.as_str());
    // Only the event types the endpoint asked for.
    assert!(got.iter().all(
        |(_, v)| ["grant.expiring", "request.reminder"].contains(&v["type"].as_str().unwrap())
    ));
    // An extension moves the expiry: it earns a new notice.
    let (s, b) = admin_post(
        &e.app.http,
        &e.app.base,
        &format!("/v1/grants/{gid}/extend"),
        json!({"duration": "10m"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    wait_until(Duration::from_secs(10), || async {
        rx.types().iter().filter(|k| *k == "grant.expiring").count() == 2
    })
    .await;
}

/// `kill -9` with events queued (the endpoint was failing): after a restart every event is
/// delivered, each notification once by its `webhook-id`.
async fn queued_events_survive_kill_9(db: Db) {
    use crate::e2e_faults::child::ChildBroker;
    let rx = Receiver::default();
    let url = rx.start().await;
    rx.failing.store(true, Ordering::SeqCst);
    let sim = okta_sim::spawn(okta_sim::SimConfig::default())
        .await
        .unwrap();
    let overrides = vec![
        (
            "JIT_OUTBOUND__ENDPOINTS",
            format!("[{{name=\"siem\", url=\"{url}\", secret=\"{SECRET}\", events=[\"grant.activated\"]}}]"),
        ),
        ("JIT_OUTBOX__BACKOFF_BASE", "20ms".to_string()),
        ("JIT_OUTBOX__BACKOFF_MAX", "100ms".to_string()),
        ("JIT_NOTIFY__POLL_INTERVAL", "20ms".to_string()),
    ];
    let mut b = ChildBroker::start(TestDb::new(db).await, &sim.base_url(), overrides).await;
    let users = ["alice@example.com", "bob@example.com", "carol@example.com"];
    for u in users {
        b.grant(u, "prod-db-admin", "1h").await;
    }
    wait_until(Duration::from_secs(15), || async {
        let (_, v) = b.get("/v1/outbox?state=pending").await;
        v["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == users.len())
    })
    .await;
    b.kill9();
    rx.failing.store(false, Ordering::SeqCst);
    b.restart().await;
    // The dead process's lease on the channel lapses first (10 s), then the queue drains.
    wait_until(Duration::from_secs(40), || async {
        rx.ids().len() >= users.len()
    })
    .await;
    let mut ids = rx.ids();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), users.len(), "{:?}", rx.ids());
    // The receiver records a delivery when it arrives; the broker marks it delivered after the
    // answer, a moment later.
    wait_until(Duration::from_secs(10), || async {
        let (_, v) = b.get("/v1/outbox?state=delivered").await;
        v["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() >= users.len())
    })
    .await;
    let (_, v) = b.get("/v1/outbox?state=delivered").await;
    assert_eq!(
        v["deliveries"].as_array().unwrap().len(),
        users.len(),
        "{v}"
    );
    b.audit_ok().await;
}
