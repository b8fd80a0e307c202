//! Event hooks end to end: okta-sim registers and verifies the hook and delivers real batches
//! to the running broker; deliveries built by hand cover what the simulator cannot send.

use std::time::Duration;

use jit_broker::RunOptions;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

pub const SECRET: &str = "hook-secret-for-tests";

pub fn events_config(c: &mut jit_broker::Config) {
    c.events.secret = Some(secrecy::SecretString::from(SECRET));
    c.events.max_attempts = 2;
    c.events.backoff_base = Duration::from_millis(20);
    c.events.backoff_max = Duration::from_millis(50);
    c.events.poll_interval = Duration::from_millis(50);
}

/// The app with the drift policy and a hook secret; the simulator delivers to it.
pub async fn hooked(db: Db) -> Env {
    let e = env_with(db, DRIFT_POLICY, events_config).await;
    let hook = e
        .sim
        .register_hook(&e.app.url("/hooks/okta"), "Authorization", SECRET);
    e.sim.verify_hook(&hook).await.unwrap();
    e
}

pub async fn post_raw(
    e: &Env,
    secret: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> StatusCode {
    let mut r = e
        .app
        .http
        .post(e.app.url("/hooks/okta"))
        .header("content-type", content_type);
    if let Some(s) = secret {
        r = r.header("authorization", s);
    }
    r.body(body).send().await.unwrap().status()
}

pub fn log_event(uuid: &str, ty: &str, actor: Option<&str>, targets: Value) -> Value {
    json!({
        "uuid": uuid, "eventType": ty, "published": chrono::Utc::now().to_rfc3339(),
        "actor": actor.map(|a| json!({"id": a, "type": "User", "alternateId": "someone@example.com"})),
        "target": targets,
    })
}

pub fn delivery(events: Vec<Value>) -> Value {
    json!({"eventType": "com.okta.event_hook", "eventId": uuid::Uuid::new_v4().to_string(),
           "data": {"events": events}})
}

pub fn group_add(uuid: &str, group: &str, user: &str, actor: Option<&str>) -> Value {
    log_event(
        uuid,
        "group.user_membership.add",
        actor,
        json!([{"id": group, "type": "UserGroup"}, {"id": user, "type": "User"}]),
    )
}

pub async fn deliver(e: &Env, d: &Value) -> StatusCode {
    post_raw(e, Some(SECRET), "application/json", d.to_string()).await
}

/// Events in `state` (admin view).
pub async fn events_in(e: &Env, state: &str) -> Vec<Value> {
    let (s, v) = e.get(&format!("/v1/events?state={state}&limit=500")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["events"].as_array().unwrap().clone()
}

pub async fn count_all(e: &Env) -> usize {
    let (_, v) = e.get("/v1/events?limit=500").await;
    v["events"].as_array().unwrap().len()
}

pub async fn audit_count(e: &Env, action: &str) -> usize {
    let (_, a) = e.get("/v1/audit?limit=1000").await;
    a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["action"] == action)
        .count()
}

pub async fn settled(e: &Env) {
    wait_until(Duration::from_secs(20), || async {
        events_in(e, "pending").await.is_empty() && events_in(e, "processing").await.is_empty()
    })
    .await;
}

async fn verification_challenge(db: Db) {
    let e = hooked(db).await;
    let r = e
        .app
        .http
        .get(e.app.url("/hooks/okta"))
        .header("X-Okta-Verification-Challenge", "abc123")
        .header("Authorization", SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"verification": "abc123"})
    );
    let r = e
        .app
        .http
        .get(e.app.url("/hooks/okta"))
        .header("Authorization", SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Without the secret the challenge is not answered: Okta sends the auth header on its
    // verification request, so a broker that would refuse deliveries fails verification.
    for secret in [None, Some("not-the-secret")] {
        let mut req = e
            .app
            .http
            .get(e.app.url("/hooks/okta"))
            .header("X-Okta-Verification-Challenge", "abc123");
        if let Some(s) = secret {
            req = req.header("Authorization", s);
        }
        assert_eq!(req.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
}

async fn drift_enforced_and_reported(db: Db) {
    let e = hooked(db).await;
    let admin = e.sim.admin("admin@example.com");
    admin.add_member(PROD_ADMINS, BOB).unwrap();
    admin.add_member(ON_CALL, BOB).unwrap();
    // Enforce: removed within 5 s of the out-of-band add.
    wait_until(Duration::from_secs(5), || async {
        !e.sim.is_member(PROD_ADMINS, BOB)
    })
    .await;
    // Report: left in place, recorded.
    wait_until(Duration::from_secs(5), || async {
        audit_count(&e, "drift.detected").await == 1
    })
    .await;
    assert!(e.sim.is_member(ON_CALL, BOB));
    // The broker's own removal comes back as an event, recognised as ours.
    wait_until(Duration::from_secs(5), || async {
        events_in(&e, "done").await.iter().any(|v| {
            v["event_type"] == "group.user_membership.remove" && v["outcome"] == "own_change"
        })
    })
    .await;
    settled(&e).await;
    assert_eq!(audit_count(&e, "drift.reverted").await, 1);
    assert_eq!(audit_count(&e, "grant.removed_externally").await, 0);
    let m = e.app.metrics().await;
    assert!(m.contains("jit_drift_findings_total"), "{m}");
    assert!(m.contains("jit_events_processed_total"), "{m}");
    e.audit_ok().await;
}

async fn departure_revokes_everything(db: Db) {
    let e = hooked(db).await;
    let g1 = e.grant("bob@example.com", "prod-db-admin", "1h").await;
    let g2 = e.grant("bob@example.com", "payroll", "1h").await;
    let g3 = e.grant("bob@example.com", "user-admin", "30m").await;
    let keep = e.grant("alice@example.com", "payroll", "1h").await;
    // A pending request of Bob's is cancelled by the same departure.
    let (s, pending) = e
        .post(
            "/v1/requests",
            json!({"resource": "needs-approval", "on_behalf_of": "bob@example.com", "reason": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{pending}");
    let rid = pending["request"]["id"].as_str().unwrap().to_string();
    let hr = e.sim.admin("hr@example.com");
    let hr_id = hr.actor().id.clone();
    hr.deactivate_user(BOB).unwrap();
    wait_until(Duration::from_secs(10), || async {
        for g in [&g1, &g2, &g3] {
            if e.state(&id(g)).await != "revoked" {
                return false;
            }
        }
        true
    })
    .await;
    assert_eq!(e.state(&id(&keep)).await, "active");
    assert!(!e.sim.is_member(PROD_ADMINS, BOB));
    assert!(e.sim.app_assignment_scope(PAYROLL, BOB).is_none());
    let (_, g) = e.get(&format!("/v1/grants/{}", id(&g1))).await;
    assert!(
        g["end_reason"]
            .as_str()
            .unwrap()
            .contains("user.lifecycle.deactivate"),
        "{g}"
    );
    assert_eq!(g["ended_by"], format!("okta:{hr_id}"), "{g}");
    wait_until(Duration::from_secs(10), || async {
        let (_, r) = e.get(&format!("/v1/requests/{rid}")).await;
        r["state"] == "cancelled"
    })
    .await;
    settled(&e).await;
    // Our own grants and revocations were never drift.
    assert_eq!(audit_count(&e, "drift.detected").await, 0);
    assert_eq!(audit_count(&e, "drift.reverted").await, 0);
    e.audit_ok().await;
}

async fn external_removal_ends_grant(db: Db) {
    let e = hooked(db).await;
    let g = e.grant("alice@example.com", "prod-db-admin", "1h").await;
    e.sim
        .admin("admin@example.com")
        .remove_member(PROD_ADMINS, ALICE)
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        e.state(&id(&g)).await == "removed_externally"
    })
    .await;
    settled(&e).await;
    // Not re-added.
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
    assert_eq!(audit_count(&e, "grant.removed_externally").await, 1);
}

async fn duplicates_processed_once(db: Db) {
    let e = hooked(db).await;
    e.sim
        .admin("admin@example.com")
        .add_member(ON_CALL, DAVE)
        .unwrap();
    settled(&e).await;
    wait_until(Duration::from_secs(5), || async {
        audit_count(&e, "drift.detected").await == 1
    })
    .await;
    let d = delivery(vec![
        group_add("dup-1", ON_CALL, CAROL, Some("00uother")),
        group_add("dup-1", ON_CALL, CAROL, Some("00uother")),
    ]);
    for _ in 0..3 {
        assert_eq!(deliver(&e, &d).await, StatusCode::NO_CONTENT);
    }
    settled(&e).await;
    assert_eq!(audit_count(&e, "drift.detected").await, 2);
    let m = e.app.metrics().await;
    assert!(m.contains("jit_events_duplicates_total"), "{m}");
}

async fn own_changes_are_not_drift_even_early(db: Db) {
    let e = hooked(db).await;
    // A burst of our own grants and revocations, delivered by the simulator as they happen.
    let mut ids = Vec::new();
    for u in [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
    ] {
        ids.push(id(&e.grant(u, "prod-db-admin", "1h").await));
        ids.push(id(&e.grant(u, "payroll", "1h").await));
    }
    for g in ids.iter().step_by(2) {
        let (s, _) = e
            .post(
                &format!("/v1/grants/{g}/revoke"),
                json!({"reason": "burst"}),
            )
            .await;
        assert!(s.is_success());
    }
    settled(&e).await;
    assert_eq!(audit_count(&e, "drift.detected").await, 0);
    assert_eq!(audit_count(&e, "drift.reverted").await, 0);
    assert_eq!(audit_count(&e, "grant.removed_externally").await, 0);
    for (i, g) in ids.iter().enumerate() {
        let want = if i % 2 == 0 { "revoked" } else { "active" };
        assert_eq!(e.state(g).await, want);
    }
    // An add whose event arrives before the broker recorded it, from an actor the broker does
    // not recognise: the write-ahead `provisioning` row explains it. The row is written the
    // way the grants service writes it before calling Okta; the add then happens.
    let store = e.app.store().await;
    sqlx::query(
        "INSERT INTO grants (id, user_id, user_login, resource, kind, okta_id, state, \
         duration_ms, reason, requested_by, end_sessions, created_at, expires_at) \
         VALUES ($1, $2, 'dave@example.com', 'prod-db-admin', 'okta_group', $3, \
         'provisioning', 3600000, 'test', 'admin', 0, $4, $5)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(DAVE)
    .bind(PROD_ADMINS)
    .bind(chrono::Utc::now().timestamp_millis())
    .bind(chrono::Utc::now().timestamp_millis() + 3_600_000)
    .execute(store.pool())
    .await
    .unwrap();
    e.sim
        .admin("replica-b")
        .add_member(PROD_ADMINS, DAVE)
        .unwrap();
    settled(&e).await;
    assert!(e.sim.is_member(PROD_ADMINS, DAVE));
    assert_eq!(audit_count(&e, "drift.reverted").await, 0);
}

async fn fixtures_parse(db: Db) {
    let e = hooked(db).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/okta");
    for name in [
        "event-hook-delivery-sample.json",
        "event-hook-delivery-sample-2019.json",
    ] {
        let body = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(
            post_raw(&e, Some(SECRET), "application/json", body).await,
            StatusCode::NO_CONTENT,
            "{name}"
        );
    }
    let one: Value = serde_json::from_slice(
        &std::fs::read(dir.join("log-event-user.lifecycle.deactivate.json")).unwrap(),
    )
    .unwrap();
    let ev = jit_broker::events::envelope::OktaEvent::from_value(&one).unwrap();
    assert_eq!(ev.event_type, "user.lifecycle.deactivate");
    assert!(ev.user().is_some());
    assert_eq!(
        deliver(&e, &delivery(vec![one])).await,
        StatusCode::NO_CONTENT
    );
    // A preview delivery: null actor and target.
    let preview = delivery(vec![
        json!({"uuid": "preview-1", "eventType": "user.lifecycle.create",
        "published": null, "actor": null, "target": null}),
    ]);
    assert_eq!(deliver(&e, &preview).await, StatusCode::NO_CONTENT);
    settled(&e).await;
    assert!(events_in(&e, "dead").await.is_empty());
}

async fn bad_input_changes_nothing(db: Db) {
    let e = hooked(db).await;
    let good = delivery(vec![group_add("bad-1", ON_CALL, CAROL, None)]).to_string();
    let json = "application/json";
    assert_eq!(
        post_raw(&e, None, json, good.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_raw(&e, Some("wrong"), json, good.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_raw(&e, Some(""), json, good.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_raw(&e, Some(SECRET), "text/plain", good.clone()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        post_raw(&e, Some(SECRET), json, "{not json").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post_raw(&e, Some(SECRET), json, good[..good.len() / 2].to_string()).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post_raw(&e, Some(SECRET), json, "{\"data\": 1}").await,
        StatusCode::BAD_REQUEST
    );
    let huge = format!(
        "{{\"pad\": \"{}\"}}",
        "x".repeat(e.app.config.server.body_limit_bytes + 1)
    );
    assert_eq!(
        post_raw(&e, Some(SECRET), json, huge).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(count_all(&e).await, 0);
    assert_eq!(audit_count(&e, "drift.detected").await, 0);
    // The admin view refuses bad parameters and non-admins.
    let (s, _) = e.get("/v1/events?state=bogus").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = e.get("/v1/events?limit=0").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let r = e
        .app
        .http
        .get(e.app.url("/v1/events"))
        .bearer_auth(REQUESTER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (s, _) = e.post("/v1/events/nope/retry", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn poison_is_dead_lettered_and_retryable(db: Db) {
    let e = hooked(db).await;
    // A departure without a User target cannot be acted on; the event behind it (another
    // user's drift) must not wait for it.
    let poison = log_event(
        "poison-1",
        "user.lifecycle.deactivate",
        Some("00uhr"),
        json!([]),
    );
    let next = group_add("after-poison", ON_CALL, CAROL, Some("00uother"));
    assert_eq!(
        deliver(&e, &delivery(vec![poison, next])).await,
        StatusCode::NO_CONTENT
    );
    wait_until(Duration::from_secs(10), || async {
        events_in(&e, "dead").await.len() == 1
    })
    .await;
    let dead = events_in(&e, "dead").await;
    assert_eq!(dead[0]["uuid"], "poison-1");
    assert_eq!(dead[0]["attempts"], 2);
    assert!(dead[0]["last_error"].as_str().unwrap().contains("User"));
    settled(&e).await;
    assert_eq!(audit_count(&e, "drift.detected").await, 1);
    assert_eq!(audit_count(&e, "event.dead").await, 1);
    assert!(e.app.metrics().await.contains("jit_events_dead_total"));
    // An admin sends it back; it fails again and is dead again.
    let (s, _) = e.post("/v1/events/poison-1/retry", json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    wait_until(Duration::from_secs(10), || async {
        audit_count(&e, "event.dead").await == 2
    })
    .await;
    assert_eq!(audit_count(&e, "event.retried").await, 1);
}

async fn stored_events_survive_a_crash(db: Db) {
    // A broker without Okta stores deliveries but cannot process them: as if it were killed
    // right after answering. The next broker on the same database processes them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, DRIFT_POLICY).unwrap();
    let tdb = TestDb::new(db).await;
    let mut config = base_config(&tdb);
    events_config(&mut config);
    config.policy.file = Some(path.clone());
    let mut first = spawn_app_with(tdb, config, RunOptions::default()).await;
    let d = delivery(vec![group_add(
        "crash-1",
        PROD_ADMINS,
        BOB,
        Some("00uother"),
    )]);
    let r = first
        .http
        .post(first.url("/hooks/okta"))
        .header("authorization", SECRET)
        .header("content-type", "application/json")
        .body(d.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Stopped, but kept in scope: its SQLite file lives as long as it does.
    first.signal_shutdown();
    let tdb = first.db.shared();

    let sim = okta_sim::spawn(okta_sim::SimConfig::default())
        .await
        .unwrap();
    sim.admin("admin@example.com")
        .add_member(PROD_ADMINS, BOB)
        .unwrap();
    let mut config = base_config(&tdb);
    events_config(&mut config);
    crate::helpers::okta_config(&mut config, &sim.base_url());
    config.policy.file = Some(path);
    let second = spawn_app_with(tdb, config, RunOptions::default()).await;
    wait_until(Duration::from_secs(10), || async {
        !sim.is_member(PROD_ADMINS, BOB)
    })
    .await;
    wait_until(Duration::from_secs(10), || async {
        let (_, v) = admin_get(&second.http, &second.base, "/v1/events?state=done").await;
        v["events"][0]["uuid"] == "crash-1"
    })
    .await;
}

async fn two_replicas_process_each_event_once(db: Db) {
    let e = hooked(db).await;
    // A second broker on the same database and Redis prefix.
    let other = spawn_app_with(
        e.app.db.shared(),
        e.app.config.clone(),
        RunOptions::default(),
    )
    .await;
    let n = 40;
    for i in 0..n {
        let user = [ALICE, BOB, CAROL, DAVE][i % 4];
        let d = delivery(vec![group_add(
            &format!("rep-{i}"),
            ON_CALL,
            user,
            Some("00uother"),
        )]);
        let base = if i % 2 == 0 { &e.app.base } else { &other.base };
        let r = e
            .app
            .http
            .post(format!("{base}/hooks/okta"))
            .header("authorization", SECRET)
            .header("content-type", "application/json")
            .body(d.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    settled(&e).await;
    assert_eq!(events_in(&e, "done").await.len(), n);
    // Report mode writes one entry per processing: exactly one per event.
    assert_eq!(audit_count(&e, "drift.detected").await, n);
    e.audit_ok().await;
}

both_backends!(
    verification_challenge,
    drift_enforced_and_reported,
    departure_revokes_everything,
    external_removal_ends_grant,
    duplicates_processed_once,
    own_changes_are_not_drift_even_early,
    fixtures_parse,
    bad_input_changes_nothing,
    poison_is_dead_lettered_and_retryable,
    stored_events_survive_a_crash,
    two_replicas_process_each_event_once,
);
