//! The grants API refuses bad input with a stable code and changes nothing: no row, no audit
//! entry, no Okta write. Also: listing with filters and paging, roles, and a broker without Okta.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;

use crate::grants::env;
use crate::helpers::*;

async fn count(e: &Env, table: &str) -> i64 {
    let store = e.app.store().await;
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

fn okta_writes(e: &Env) -> u64 {
    [
        ("PUT", "/api/v1/groups/{groupId}/users/{userId}"),
        ("DELETE", "/api/v1/groups/{groupId}/users/{userId}"),
        ("POST", "/api/v1/apps/{appId}/users"),
        ("DELETE", "/api/v1/apps/{appId}/users/{userId}"),
        ("POST", "/api/v1/users/{id}/roles"),
        ("DELETE", "/api/v1/users/{id}/roles/{roleAssignmentId}"),
    ]
    .iter()
    .map(|(m, t)| e.sim.counter(m, t))
    .sum()
}

async fn bad_input_changes_nothing(db: Db) {
    let e = env(db).await;
    e.sim
        .admin("admin@example.com")
        .deactivate_user(DAVE)
        .unwrap();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"user": ALICE, "resource": "nope", "reason": "x"}),
            "unknown_resource",
        ),
        (
            json!({"user": ALICE, "resource": "prod-db-admin", "duration": "5h", "reason": "x"}),
            "duration_exceeds_max",
        ),
        (
            json!({"user": ALICE, "resource": "prod-db-admin", "duration": "0s", "reason": "x"}),
            "invalid_duration",
        ),
        (
            json!({"user": ALICE, "resource": "prod-db-admin", "duration": "-1h", "reason": "x"}),
            "invalid_duration",
        ),
        (
            json!({"user": ALICE, "resource": "prod-db-admin", "duration": "soon", "reason": "x"}),
            "invalid_duration",
        ),
        (
            json!({"user": ALICE, "resource": "prod-db-admin", "duration": "", "reason": "x"}),
            "invalid_duration",
        ),
        (
            json!({"user": "nobody@example.com", "resource": "prod-db-admin", "reason": "x"}),
            "unknown_user",
        ),
        (
            json!({"user": DAVE, "resource": "payroll"}),
            "user_not_active",
        ),
        (json!({"user": "", "resource": "payroll"}), "invalid_input"),
        (
            json!({"user": ALICE, "resource": "prod-db-admin"}),
            "reason_required",
        ),
        (
            json!({"user": ALICE, "resource": "prod-db-admin", "reason": "   "}),
            "reason_required",
        ),
        (
            json!({"user": ALICE, "resource": "payroll", "extra": 1}),
            "invalid_json",
        ),
        (
            json!({"user": ALICE, "resource": "payroll", "duration": 3600}),
            "invalid_json",
        ),
        (json!({"resource": "payroll"}), "invalid_json"),
        (json!([1, 2]), "invalid_json"),
    ];
    for (body, code) in cases {
        let (s, r) = e.post("/v1/grants", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {r}");
        assert_eq!(r["code"], code, "{body} → {r}");
    }
    // Issue 22: each duration error quotes the input as written and gives an example (`99h`
    // was echoed as `4days 3h`, `-5m` as "expected number at 0").
    for (asked, code, says) in [
        ("-5m", "invalid_duration", "`-5m` is negative"),
        (
            "1 fortnight",
            "invalid_duration",
            "unknown unit `fortnight`",
        ),
        ("99h", "duration_exceeds_max", "`99h`"),
    ] {
        let body =
            json!({"user": ALICE, "resource": "prod-db-admin", "duration": asked, "reason": "x"});
        let (s, r) = e.post("/v1/grants", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{asked} → {r}");
        assert_eq!(r["code"], code, "{asked} → {r}");
        let msg = r["message"].as_str().unwrap();
        assert!(msg.contains(says), "{asked} → {msg}");
        assert!(msg.contains(&format!("`{asked}`")), "{asked} → {msg}");
        if code == "invalid_duration" {
            assert!(msg.contains("`30m`"), "{asked} → {msg}");
        }
    }
    let raw = |body: Vec<u8>| {
        e.app
            .http
            .post(e.app.url("/v1/grants"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = raw(b"{\"user\": ".to_vec()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_json");
    let big = format!(
        "{{\"user\":\"{ALICE}\",\"resource\":\"payroll\",\"reason\":\"{}\"}}",
        "x".repeat(300 * 1024)
    );
    let r = raw(big.into_bytes()).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The unread rest of the body ends the connection, and the answer says so: a pooled
    // client must not send its next request on it.
    assert_eq!(r.headers()["connection"], "close");
    // A reason over 1000 bytes fits the body limit but not the field.
    let (s, r) = e
        .post(
            "/v1/grants",
            json!({"user": ALICE, "resource": "payroll", "reason": "y".repeat(2000)}),
        )
        .await;
    assert_eq!(
        (s, r["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_input"))
    );
    // Wrong role: only admins grant directly.
    let r = e
        .app
        .http
        .post(e.app.url("/v1/grants"))
        .bearer_auth(REQUESTER_TOKEN)
        .json(&json!({"user": ALICE, "resource": "payroll"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = e
        .app
        .http
        .post(e.app.url("/v1/grants"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Unknown grant ids.
    let (s, _) = e
        .post("/v1/grants/not-a-uuid/extend", json!({"duration": "1h"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = e
        .post(
            "/v1/grants/0190f5d2-7c1a-7000-8000-000000000000/revoke",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    assert_eq!(count(&e, "grants").await, 0);
    assert_eq!(count(&e, "audit_log").await, 0);
    assert_eq!(okta_writes(&e), 0);
}

async fn bad_extension_changes_nothing(db: Db) {
    let e = env(db).await;
    let g = e.grant(ALICE, "prod-db-admin", "1h").await;
    let gid = id(&g);
    let audit_before = count(&e, "audit_log").await;
    for (body, code) in [
        (json!({"duration": "0s"}), "invalid_duration"),
        (json!({"duration": "4h"}), "extension_exceeds_max"),
        (json!({"duration": "1h", "x": 1}), "invalid_json"),
        (json!({}), "invalid_json"),
    ] {
        let (s, r) = e
            .post(&format!("/v1/grants/{gid}/extend"), body.clone())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {r}");
        assert_eq!(r["code"], code);
    }
    let (_, now) = e.get(&format!("/v1/grants/{gid}")).await;
    assert_eq!(now["expires_at"], g["expires_at"]);
    assert_eq!(count(&e, "audit_log").await, audit_before);
    // A revoked grant cannot be extended.
    e.post(&format!("/v1/grants/{gid}/revoke"), json!({"reason": "r"}))
        .await;
    let (s, r) = e
        .post(
            &format!("/v1/grants/{gid}/extend"),
            json!({"duration": "1h"}),
        )
        .await;
    assert_eq!(
        (s, r["code"].as_str()),
        (StatusCode::CONFLICT, Some("grant_not_active"))
    );
}

async fn list_filters_and_pages(db: Db) {
    let e = env(db).await;
    let a = e.grant(ALICE, "payroll", "1h").await;
    let b = e.grant(BOB, "payroll", "1h").await;
    let c = e.grant(CAROL, "user-admin", "30m").await;
    e.post(&format!("/v1/grants/{}/revoke", id(&c)), json!({}))
        .await;

    let (s, p1) = e.get("/v1/grants?limit=2").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p1["grants"].as_array().unwrap().len(), 2);
    assert_eq!(p1["grants"][0]["id"], a["id"]);
    let after = p1["next_after"].as_str().unwrap();
    let (_, p2) = e.get(&format!("/v1/grants?limit=2&after={after}")).await;
    assert_eq!(p2["grants"].as_array().unwrap().len(), 1);
    assert_eq!(p2["grants"][0]["id"], c["id"]);
    assert!(p2["next_after"].is_null());

    let (_, f) = e.get("/v1/grants?state=active&resource=payroll").await;
    assert_eq!(f["grants"].as_array().unwrap().len(), 2);
    let (_, f) = e.get(&format!("/v1/grants?user={BOB}")).await;
    assert_eq!(f["grants"][0]["id"], b["id"]);
    let (_, f) = e.get("/v1/grants?user=alice@example.com").await;
    assert_eq!(f["grants"].as_array().unwrap().len(), 1);
    for q in ["state=bogus", "limit=0", "limit=100000", "unknown=1"] {
        let (s, r) = e.get(&format!("/v1/grants?{q}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q} → {r}");
    }
    // A requester sees only their own grants (token name = login).
    let r: Value = e
        .app
        .http
        .get(e.app.url("/v1/grants"))
        .bearer_auth(REQUESTER_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["grants"].as_array().unwrap().len(), 0);
    // ... and cannot revoke someone else's.
    let r = e
        .app
        .http
        .post(e.app.url(&format!("/v1/grants/{}/revoke", id(&a))))
        .bearer_auth(REQUESTER_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(e.sim.app_assignment_scope(PAYROLL, ALICE).is_some());
}

async fn without_okta_grants_answer_503(db: Db) {
    let app = spawn_app(db).await;
    let r = app
        .http
        .post(app.url("/v1/grants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"user": ALICE, "resource": "payroll"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "okta_not_configured"
    );
    let r = app
        .http
        .get(app.url("/readyz"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["okta"], "not configured");
}

both_backends!(
    bad_input_changes_nothing,
    bad_extension_changes_nothing,
    list_filters_and_pages,
    without_okta_grants_answer_503,
);
