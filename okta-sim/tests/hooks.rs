//! Event hooks: verification, batched delivery with Okta's envelope, actors, retries,
//! duplicates, and the `/_sim/` control API driving out-of-band changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use common::*;
use okta_sim::seed::{ALICE, BOB, BROKER, CAROL, DB_OWNERS, PAYROLL, PROD_ADMINS};
use okta_sim::{HookConfig, SimConfig, SimHandle};
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    auth: Arc<Mutex<Vec<String>>>,
    /// Answer 500 to this many POSTs first.
    fail_first: Arc<AtomicU32>,
    /// Echo a wrong verification value.
    wrong_echo: bool,
}

async fn verify(State(r): State<Receiver>, h: HeaderMap) -> Json<Value> {
    let v = h
        .get("x-okta-verification-challenge")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    Json(json!({ "verification": if r.wrong_echo { "nope".to_string() } else { v } }))
}

async fn deliver(State(r): State<Receiver>, h: HeaderMap, Json(body): Json<Value>) -> StatusCode {
    r.auth.lock().unwrap().push(
        h.get("authorization")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
    );
    if r.fail_first.load(Ordering::SeqCst) > 0 {
        r.fail_first.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.bodies.lock().unwrap().push(body);
    StatusCode::NO_CONTENT
}

async fn receiver(r: Receiver) -> String {
    let app = Router::new()
        .route("/hook", get(verify).post(deliver))
        .with_state(r);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

/// Starts `r` and registers it as a verified hook sending `Authorization: <secret>`.
async fn hook_to(sim: &SimHandle, r: &Receiver, secret: &str) {
    let url = receiver(r.clone()).await;
    let id = sim.register_hook(&url, "Authorization", secret);
    sim.verify_hook(&id).await.unwrap();
}

fn events(r: &Receiver) -> Vec<Value> {
    r.bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b["data"]["events"].as_array().unwrap().clone())
        .collect()
}

fn target<'a>(ev: &'a Value, kind: &str) -> &'a Value {
    ev["target"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == kind)
        .unwrap()
}

/// Waits (up to 5 s) until the simulator has recorded at least `n` delivery attempts.
async fn deliveries_reach(sim: &SimHandle, n: usize) -> bool {
    wait_until(Duration::from_secs(5), || async {
        sim.hook_deliveries().len() >= n
    })
    .await
}

#[tokio::test]
async fn api_and_out_of_band_changes_are_delivered_with_actor_and_targets() {
    let sim = start().await;
    let r = Receiver::default();
    hook_to(&sim, &r, "hook-secret").await;

    let api = Api::new(&sim);
    let put = api
        .put_empty(
            &format!("/api/v1/groups/{PROD_ADMINS}/users/{ALICE}"),
            SUPER,
        )
        .await;
    assert_eq!(put.status(), 204);
    sim.admin("it-admin@example.com")
        .add_member(DB_OWNERS, CAROL)
        .unwrap();
    sim.admin("it-admin@example.com")
        .deactivate_user(BOB)
        .unwrap();

    assert!(wait_until(Duration::from_secs(5), || async { events(&r).len() >= 3 }).await);
    let evs = events(&r);
    let body = r.bodies.lock().unwrap()[0].clone();
    assert_eq!(body["eventType"], "com.okta.event_hook");
    for k in [
        "eventTypeVersion",
        "cloudEventsVersion",
        "source",
        "eventId",
        "eventTime",
        "contentType",
    ] {
        assert!(body.get(k).is_some(), "envelope misses {k}");
    }
    assert!(r.auth.lock().unwrap().iter().all(|a| a == "hook-secret"));

    let api = evs
        .iter()
        .find(|e| {
            e["eventType"] == "group.user_membership.add"
                && target(e, "UserGroup")["id"] == PROD_ADMINS
        })
        .unwrap();
    assert_eq!(api["actor"]["id"], BROKER);
    assert_eq!(target(api, "User")["id"], ALICE);
    for k in [
        "uuid",
        "published",
        "version",
        "displayMessage",
        "severity",
        "client",
        "outcome",
        "transaction",
        "debugContext",
        "legacyEventType",
    ] {
        assert!(api.get(k).is_some(), "event misses {k}");
    }
    let oob = evs
        .iter()
        .find(|e| {
            e["eventType"] == "group.user_membership.add"
                && target(e, "UserGroup")["id"] == DB_OWNERS
        })
        .unwrap();
    assert_eq!(oob["actor"]["alternateId"], "it-admin@example.com");
    assert_ne!(oob["actor"]["id"], BROKER);
    let deact = evs
        .iter()
        .find(|e| e["eventType"] == "user.lifecycle.deactivate")
        .unwrap();
    assert_eq!(target(deact, "User")["id"], BOB);
    // Events close in time were batched.
    assert!(r.bodies.lock().unwrap().len() < 3 || evs.len() >= 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn app_and_role_events_have_typed_targets() {
    let sim = start().await;
    let r = Receiver::default();
    hook_to(&sim, &r, "s").await;
    let admin = sim.admin("admin@example.com");
    admin.assign_app(PAYROLL, ALICE).unwrap();
    let rid = admin.assign_role(ALICE, "APP_ADMIN").unwrap();
    admin.unassign_role(ALICE, &rid).unwrap();
    admin.unassign_app(PAYROLL, ALICE).unwrap();
    assert!(wait_until(Duration::from_secs(5), || async { events(&r).len() >= 4 }).await);
    let evs = events(&r);
    let add = evs
        .iter()
        .find(|e| e["eventType"] == "application.user_membership.add")
        .unwrap();
    assert!(target(add, "AppUser")["id"]
        .as_str()
        .unwrap()
        .starts_with("0ua"));
    assert_eq!(target(add, "AppInstance")["id"], PAYROLL);
    assert_eq!(target(add, "User")["id"], ALICE);
    let grant = evs
        .iter()
        .find(|e| e["eventType"] == "user.account.privilege.grant")
        .unwrap();
    assert_eq!(target(grant, "User")["id"], ALICE);
    assert_eq!(
        grant["debugContext"]["debugData"]["privilegeGranted"],
        "Application Administrator"
    );
    assert!(evs
        .iter()
        .any(|e| e["eventType"] == "user.account.privilege.revoke"));
    assert!(evs
        .iter()
        .any(|e| e["eventType"] == "application.user_membership.remove"));
    sim.shutdown().await;
}

#[tokio::test]
async fn delivery_is_retried_once_on_5xx_and_can_duplicate() {
    let sim = okta_sim::spawn(SimConfig {
        hooks: HookConfig {
            duplicate_rate: 1.0,
            ..HookConfig::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let r = Receiver {
        fail_first: Arc::new(AtomicU32::new(1)),
        ..Receiver::default()
    };
    hook_to(&sim, &r, "s").await;
    sim.admin("admin@example.com")
        .add_member(PROD_ADMINS, BOB)
        .unwrap();
    // First attempt 500, retry 204, deliberate duplicate 204: the same uuid arrives twice.
    assert!(
        wait_until(Duration::from_secs(5), || async {
            r.bodies.lock().unwrap().len() >= 2
        })
        .await
    );
    let evs = events(&r);
    assert_eq!(evs[0]["uuid"], evs[1]["uuid"]);
    let d = sim.hook_deliveries();
    assert_eq!(d[0].status, Some(500));
    assert_eq!(d[1].attempt, 2);
    assert!(d.iter().any(|x| x.duplicate));
    sim.shutdown().await;
}

#[tokio::test]
async fn unverified_hooks_get_nothing_and_bad_echo_fails_verification() {
    let sim = start().await;
    let bad = Receiver {
        wrong_echo: true,
        ..Receiver::default()
    };
    let url = receiver(bad.clone()).await;
    let id = sim.register_hook(&url, "Authorization", "s");
    assert!(sim.verify_hook(&id).await.is_err());
    sim.admin("admin@example.com")
        .add_member(PROD_ADMINS, BOB)
        .unwrap();
    // The event is produced (System Log) but never delivered.
    assert!(
        wait_until(Duration::from_secs(5), || async {
            !sim.events().is_empty()
        })
        .await
    );
    assert!(bad.bodies.lock().unwrap().is_empty());
    assert!(sim.hook_deliveries().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn control_http_api_drives_changes_hooks_and_counters() {
    let sim = start().await;
    let r = Receiver::default();
    let url = receiver(r.clone()).await;
    let api = Api::new(&sim);
    let c = &api.c;
    let base = sim.base_url();
    let resp = api
        .ctl_post(
            "/_sim/hooks",
            Some(&json!({"url": url, "authHeader": "Authorization", "authValue": "secret"})),
        )
        .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.json::<Value>().await.unwrap()["verified"], true);
    let resp = c
        .post(format!(
            "{base}/_sim/admin/groups/{PROD_ADMINS}/users/{CAROL}"
        ))
        .header("X-Sim-Actor", "someone@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(sim.is_member(PROD_ADMINS, CAROL));
    let resp = api
        .ctl_post(
            &format!("/_sim/admin/users/{CAROL}/lifecycle/suspend"),
            None,
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(sim.user_status(CAROL).as_deref(), Some("SUSPENDED"));
    let resp = api
        .ctl_post(
            &format!("/_sim/admin/users/{CAROL}/roles"),
            Some(&json!({"type": "HELP_DESK_ADMIN"})),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let resp = api
        .ctl_post(&format!("/_sim/admin/groups/00gnope/users/{CAROL}"), None)
        .await;
    assert_eq!(resp.status(), 404);
    let resp = api
        .ctl_post(
            "/_sim/admin/users",
            Some(&json!({"login": "frank@example.com", "firstName": "Frank"})),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let resp = api
        .ctl_post("/_sim/admin/groups", Some(&json!({"name": "new-group"})))
        .await;
    assert_eq!(resp.status(), 201);
    let resp = api
        .ctl_post("/_sim/admin/apps", Some(&json!({"label": "new-app"})))
        .await;
    assert_eq!(resp.status(), 201);
    assert!(
        wait_until(Duration::from_secs(5), || async {
            events(&r)
                .iter()
                .any(|e| e["eventType"] == "user.account.privilege.grant")
        })
        .await
    );
    let ev = events(&r);
    let add = ev
        .iter()
        .find(|e| e["eventType"] == "group.user_membership.add")
        .unwrap();
    assert_eq!(add["actor"]["alternateId"], "someone@example.com");

    api.get("/api/v1/groups", SUPER).await;
    let counters: Value = api.ctl_get_json("/_sim/counters").await;
    assert_eq!(counters["requests"]["GET /api/v1/groups"], 1);
    assert_eq!(counters["buckets"]["groups"], 1);
    let state: Value = api.ctl_get_json("/_sim/state").await;
    let pa = state["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == PROD_ADMINS)
        .unwrap();
    assert_eq!(pa["members"], json!([CAROL]));
    let resp = api
        .ctl_put(
            "/_sim/faults",
            &json!({"global": {"fail_next": 1, "error_status": 502}}),
        )
        .await;
    assert_eq!(resp.status(), 204);
    let resp = api.get("/api/v1/groups", SUPER).await;
    assert_eq!(resp.status(), 502);
    let resp = api.ctl_put("/_sim/faults", &json!({"bogus": 1})).await;
    assert!(resp.status().is_client_error());
    sim.shutdown().await;
}

#[tokio::test]
async fn delivery_is_retried_once_after_a_timeout_and_never_on_4xx() {
    let sim = okta_sim::spawn(SimConfig {
        hooks: HookConfig {
            delivery_timeout: Duration::from_millis(200),
            ..HookConfig::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = calls.clone();
    let app = Router::new().route(
        "/hook",
        get(|h: HeaderMap| async move {
            let v = h
                .get("x-okta-verification-challenge")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            Json(json!({ "verification": v }))
        })
        .post(move || {
            let calls = c2.clone();
            async move {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        StatusCode::NO_CONTENT
                    }
                    1 => StatusCode::NO_CONTENT,
                    _ => StatusCode::BAD_REQUEST,
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let id = sim.register_hook(&url, "Authorization", "s");
    sim.verify_hook(&id).await.unwrap();
    sim.admin("admin@example.com")
        .add_member(PROD_ADMINS, BOB)
        .unwrap();
    assert!(deliveries_reach(&sim, 2).await);
    let d = sim.hook_deliveries();
    assert_eq!(d[0].error.as_deref(), Some("timeout"));
    assert_eq!((d[1].attempt, d[1].status), (2, Some(204)));
    // A 4xx answer is final: one attempt only.
    sim.admin("admin@example.com")
        .remove_member(PROD_ADMINS, BOB)
        .unwrap();
    assert!(deliveries_reach(&sim, 3).await);
    // A later change gets the next delivery; a retry of the 400 would have come before it.
    sim.admin("admin@example.com")
        .add_member(PROD_ADMINS, ALICE)
        .unwrap();
    assert!(deliveries_reach(&sim, 4).await);
    let d = sim.hook_deliveries();
    assert_eq!((d[2].attempt, d[2].status), (1, Some(400)));
    assert_eq!(d[3].attempt, 1);
    assert_ne!(d[3].event_uuids, d[2].event_uuids);
    sim.shutdown().await;
}

/// The management API's event hooks: `createdBy`, custom headers kept and echoed (never the
/// secret), a custom header named like the auth header refused, and DELETE only once INACTIVE.
#[tokio::test]
async fn event_hook_management_keeps_headers_and_deletes_only_inactive_hooks() {
    let sim = start().await;
    let api = Api::new(&sim);
    let body = |headers: Value| {
        json!({
            "name": "h", "events": { "type": "EVENT_TYPE", "items": ["user.lifecycle.create"] },
            "channel": { "type": "HTTP", "version": "1.0.0", "config": {
                "uri": "https://example.com/hook", "headers": headers,
                "authScheme": { "type": "HEADER", "key": "Authorization", "value": "s3cret" } } },
        })
    };
    let r = api
        .post(
            "/api/v1/eventHooks",
            SUPER,
            &body(json!([{ "key": "X-Other", "value": "v" }])),
        )
        .await;
    assert_eq!(r.status(), 200);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["createdBy"], BROKER);
    assert_eq!(h["status"], "ACTIVE");
    assert_eq!(
        h["channel"]["config"]["headers"],
        json!([{ "key": "X-Other", "value": "v" }])
    );
    assert!(!h.to_string().contains("s3cret"), "the secret was echoed");
    let id = h["id"].as_str().unwrap().to_string();
    let r = api
        .post(
            "/api/v1/eventHooks",
            SUPER,
            &body(json!([{ "key": "authorization", "value": "other" }])),
        )
        .await;
    expect_error(r, 400, "E0000001").await;
    let r = api.delete(&format!("/api/v1/eventHooks/{id}"), SUPER).await;
    expect_error(r, 403, "E0000006").await;
    let r = api
        .post_empty(
            &format!("/api/v1/eventHooks/{id}/lifecycle/deactivate"),
            SUPER,
        )
        .await;
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["status"], "INACTIVE");
    assert!(h["_links"]["delete"].is_object() && h["_links"]["activate"].is_object());
    let r = api
        .delete(&format!("/api/v1/eventHooks/{id}"), READ_ONLY)
        .await;
    expect_error(r, 403, "E0000006").await;
    let r = api.delete(&format!("/api/v1/eventHooks/{id}"), SUPER).await;
    assert_eq!(r.status(), 204);
    let r = api.get(&format!("/api/v1/eventHooks/{id}"), SUPER).await;
    expect_error(r, 404, "E0000007").await;
    sim.shutdown().await;
}
