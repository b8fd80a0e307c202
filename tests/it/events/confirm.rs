//! Okta event hooks are hints, Okta is the truth: a departure or a drift removal happens only
//! when Okta confirms it, events outside the freshness window are stored as `stale` and never
//! acted on, and a flood of forged departures costs a bounded number of Okta reads.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::hooks::{audit_count, deliver, delivery, events_in, group_add, hooked, settled};
use crate::helpers::*;

/// okta-sim's route for reading one user (the confirmation read of a departure).
const GET_USER: (&str, &str) = ("GET", "/api/v1/users/{id}");
const REMOVE_MEMBER: (&str, &str) = ("DELETE", "/api/v1/groups/{groupId}/users/{userId}");

fn deactivation(uuid: &str, user: &str, actor: &str, published: &str) -> Value {
    json!({
        "uuid": uuid, "eventType": "user.lifecycle.deactivate", "published": published,
        "actor": {"id": actor, "type": "User", "alternateId": "nobody@example.com"},
        "target": [{"id": user, "type": "User", "alternateId": "alice@example.com"}],
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// Alice with a grant and a pending request: what a forged departure would take from her.
async fn alice_with_access(e: &Env) -> (String, String) {
    let g = id(&e.grant("alice@example.com", "prod-db-admin", "1h").await);
    let (s, r) = e
        .post(
            "/v1/requests",
            json!({"resource": "needs-approval", "on_behalf_of": "alice@example.com", "reason": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    (g, r["request"]["id"].as_str().unwrap().to_string())
}

async fn request_state(e: &Env, rid: &str) -> String {
    let (_, r) = e.get(&format!("/v1/requests/{rid}")).await;
    r["state"].as_str().unwrap().to_string()
}

async fn audit_entries(e: &Env, action: &str) -> Vec<Value> {
    let (_, a) = e.get("/v1/audit?limit=1000").await;
    a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["action"] == action)
        .cloned()
        .collect()
}

async fn event_outcome(e: &Env, uuid: &str) -> Option<String> {
    events_in(e, "done")
        .await
        .iter()
        .find(|v| v["uuid"] == uuid)
        .and_then(|v| v["outcome"].as_str().map(str::to_string))
}

/// The review's forgery: alice deactivated in 2001 by an actor that does not exist, while Okta
/// shows her ACTIVE. Stored as stale, visible to admins, acted on never.
async fn forged_2001_deactivation_is_stale(db: Db) {
    let e = hooked(db).await;
    let (g, rid) = alice_with_access(&e).await;
    let reads = e.sim.counter(GET_USER.0, GET_USER.1);
    let d = delivery(vec![deactivation(
        "forged-2001",
        ALICE,
        "00unobody0000000000",
        "2001-09-09T01:46:40Z",
    )]);
    assert_eq!(deliver(&e, &d).await, StatusCode::NO_CONTENT);
    let stale = events_in(&e, "stale").await;
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0]["uuid"], "forged-2001");
    assert!(
        stale[0]["outcome"].as_str().unwrap().contains("max_age"),
        "{stale:?}"
    );
    // Something fresh behind it is processed: the worker ran and still left alice alone.
    let marker = group_add("after-forgery", ON_CALL, CAROL, Some("00uother"));
    assert_eq!(
        deliver(&e, &delivery(vec![marker])).await,
        StatusCode::NO_CONTENT
    );
    settled(&e).await;
    wait_until(Duration::from_secs(10), || async {
        event_outcome(&e, "after-forgery").await.is_some()
    })
    .await;
    assert_eq!(e.state(&g).await, "active");
    assert_eq!(request_state(&e, &rid).await, "pending");
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    assert_eq!(events_in(&e, "stale").await.len(), 1);
    // Nothing about it was even read from Okta.
    assert_eq!(e.sim.counter(GET_USER.0, GET_USER.1), reads);
    assert!(e
        .app
        .metrics()
        .await
        .contains("jit_events_stale_total{reason=\"too_old\"}"));
    // In the future beyond the skew, or undated: stale too.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut undated = deactivation("forged-undated", ALICE, "00unobody", "x");
    undated["published"] = Value::Null;
    let d = delivery(vec![
        deactivation("forged-future", ALICE, "00unobody", &future),
        undated,
    ]);
    assert_eq!(deliver(&e, &d).await, StatusCode::NO_CONTENT);
    assert_eq!(events_in(&e, "stale").await.len(), 3);
    assert_eq!(e.state(&g).await, "active");
    e.audit_ok().await;
}

/// A fresh forgery: in the window, but Okta says ACTIVE. Nothing revoked or cancelled; the
/// audit entry holds the claim and Okta's answer.
async fn fresh_forged_deactivation_is_refuted(db: Db) {
    let e = hooked(db).await;
    let (g, rid) = alice_with_access(&e).await;
    let d = delivery(vec![deactivation(
        "forged-fresh",
        ALICE,
        "00unobody0000000000",
        &now(),
    )]);
    assert_eq!(deliver(&e, &d).await, StatusCode::NO_CONTENT);
    wait_until(Duration::from_secs(10), || async {
        event_outcome(&e, "forged-fresh").await.is_some()
    })
    .await;
    assert_eq!(
        event_outcome(&e, "forged-fresh").await.unwrap(),
        "unconfirmed: okta says ACTIVE"
    );
    assert_eq!(e.state(&g).await, "active");
    assert_eq!(request_state(&e, &rid).await, "pending");
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    let entries = audit_entries(&e, "event.unconfirmed").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let d = &entries[0]["details"];
    assert_eq!(d["okta"]["user_status"], "ACTIVE", "{d}");
    assert_eq!(d["claimed"]["actor"]["id"], "00unobody0000000000", "{d}");
    assert!(d["claimed"]["published_ms"].is_i64(), "{d}");
    assert_eq!(audit_count(&e, "grant.revoked").await, 0);
    e.audit_ok().await;
}

/// A real deactivation (Okta shows the user deprovisioned) still revokes within seconds, and
/// the confirmation is audited.
async fn real_deactivation_still_revokes(db: Db) {
    let e = hooked(db).await;
    let (g, rid) = alice_with_access(&e).await;
    e.sim
        .admin("hr@example.com")
        .deactivate_user(ALICE)
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        e.state(&g).await == "revoked"
    })
    .await;
    wait_until(Duration::from_secs(10), || async {
        request_state(&e, &rid).await == "cancelled"
    })
    .await;
    let entries = audit_entries(&e, "event.confirmed").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        entries[0]["details"]["okta"]["user_status"],
        "DEPROVISIONED"
    );
    assert_eq!(audit_count(&e, "event.unconfirmed").await, 0);
}

/// A real deactivation replayed after the user came back (its duplicate row purged, as after
/// `events.retention`): Okta says ACTIVE, so the new grant stays.
async fn replayed_deactivation_of_reactivated_user(db: Db) {
    let e = hooked(db).await;
    let g = id(&e.grant("alice@example.com", "prod-db-admin", "1h").await);
    let hr = e.sim.admin("hr@example.com");
    hr.deactivate_user(ALICE).unwrap();
    wait_until(Duration::from_secs(10), || async {
        e.state(&g).await == "revoked"
    })
    .await;
    settled(&e).await;
    let real = e
        .sim
        .events()
        .into_iter()
        .find(|v| {
            v["eventType"] == "user.lifecycle.deactivate"
                && v["target"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|x| x["id"] == ALICE))
        })
        .expect("okta-sim logged the deactivation");
    let uuid = real["uuid"].as_str().unwrap().to_string();
    hr.activate_user(ALICE).unwrap();
    let g2 = id(&e.grant("alice@example.com", "prod-db-admin", "1h").await);
    // The duplicate row is gone, as after retention.
    let store = e.app.store().await;
    sqlx::query("DELETE FROM okta_events WHERE uuid = $1")
        .bind(&uuid)
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(
        deliver(&e, &delivery(vec![real])).await,
        StatusCode::NO_CONTENT
    );
    wait_until(Duration::from_secs(15), || async {
        event_outcome(&e, &uuid).await.is_some()
    })
    .await;
    assert_eq!(
        event_outcome(&e, &uuid).await.unwrap(),
        "unconfirmed: okta says ACTIVE"
    );
    assert_eq!(e.state(&g2).await, "active");
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
}

/// A forged "someone added bob" for an enforced resource bob does not hold: no removal call,
/// no drift entry.
async fn drift_removal_needs_okta_membership(db: Db) {
    let e = hooked(db).await;
    assert!(!e.sim.is_member(PROD_ADMINS, BOB));
    let removals = e.sim.counter(REMOVE_MEMBER.0, REMOVE_MEMBER.1);
    let d = delivery(vec![group_add(
        "forged-add",
        PROD_ADMINS,
        BOB,
        Some("00uother"),
    )]);
    assert_eq!(deliver(&e, &d).await, StatusCode::NO_CONTENT);
    wait_until(Duration::from_secs(10), || async {
        event_outcome(&e, "forged-add").await.is_some()
    })
    .await;
    assert_eq!(
        event_outcome(&e, "forged-add").await.unwrap(),
        "unconfirmed"
    );
    assert_eq!(e.sim.counter(REMOVE_MEMBER.0, REMOVE_MEMBER.1), removals);
    assert_eq!(audit_count(&e, "drift.reverted").await, 0);
    let entries = audit_entries(&e, "event.unconfirmed").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["details"]["okta"]["holds"], false);
}

/// Okta unreadable (every user read fails): nothing is revoked, the event waits and is retried; once Okta
/// answers, the real departure goes through.
async fn unreadable_okta_defers_departure(db: Db) {
    let e = hooked(db).await;
    let (g, _) = alice_with_access(&e).await;
    e.sim.set_faults(okta_sim::faults::FaultConfig::route(
        GET_USER.0,
        GET_USER.1,
        okta_sim::faults::FaultSpec {
            error_rate: 1.0,
            error_status: 503,
            ..Default::default()
        },
    ));
    e.sim
        .admin("hr@example.com")
        .deactivate_user(ALICE)
        .unwrap();
    // Attempts are made and fail; the grant stays and the event is not dead.
    wait_until(Duration::from_secs(20), || async {
        let (_, v) = e.get("/v1/events?limit=500").await;
        v["events"].as_array().unwrap().iter().any(|x| {
            x["event_type"] == "user.lifecycle.deactivate" && x["attempts"].as_i64() >= Some(2)
        })
    })
    .await;
    assert_eq!(e.state(&g).await, "active");
    assert!(events_in(&e, "dead").await.is_empty());
    e.sim.set_faults(Default::default());
    wait_until(Duration::from_secs(20), || async {
        e.state(&g).await == "revoked"
    })
    .await;
}

/// A flood of forged departures for two people: nothing revoked, and Okta read a bounded number
/// of times (one read per user per confirmation pace, not one per event).
async fn forged_flood_costs_bounded_reads(db: Db) {
    let e = hooked(db).await;
    let (g, _) = alice_with_access(&e).await;
    let reads = e.sim.counter(GET_USER.0, GET_USER.1);
    let n = 60;
    let published = now();
    let events: Vec<Value> = (0..n)
        .map(|i| {
            let user = if i % 2 == 0 { ALICE } else { BOB };
            deactivation(&format!("flood-{i}"), user, "00unobody", &published)
        })
        .collect();
    assert_eq!(deliver(&e, &delivery(events)).await, StatusCode::NO_CONTENT);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while events_in(&e, "done").await.len() < n {
        if std::time::Instant::now() > deadline {
            let (_, v) = e.get("/v1/events?limit=500").await;
            panic!("not all processed: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(e.state(&g).await, "active");
    assert_eq!(audit_count(&e, "grant.revoked").await, 0);
    let used = e.sim.counter(GET_USER.0, GET_USER.1) - reads;
    // Two users, each read once, then at most once more after the pace (the events were all
    // published before the second read).
    assert!(used <= 4, "{used} Okta reads for {n} forged events");
    assert!(used >= 2, "{used}");
}

both_backends!(
    forged_2001_deactivation_is_stale,
    fresh_forged_deactivation_is_refuted,
    real_deactivation_still_revokes,
    replayed_deactivation_of_reactivated_user,
    drift_removal_needs_okta_membership,
    unreadable_okta_defers_departure,
    forged_flood_costs_bounded_reads,
);
