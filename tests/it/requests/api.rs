//! The requests API: the happy paths and every refusal, each of which must change nothing.

use reqwest::StatusCode;
use serde_json::json;

use super::*;

both_backends!(
    request_approve_grant_and_history,
    refusals_change_nothing,
    stages_are_decided_in_order,
    break_glass_grants_at_once_and_a_later_deny_revokes,
    auto_approval_and_step_up,
    holder_extension_goes_through_approval,
    pending_requests_expire_and_cannot_be_decided,
    cancel_and_on_behalf,
);

async fn request_approve_grant_and_history(db: Db) {
    let e = env(db).await;
    let id = e
        .pending(
            "alice@example.com",
            json!({"resource": "prod-admins", "duration": "2h", "reason": "incident 42"}),
        )
        .await;
    // One pending request per person and resource: the second answers with the first's id.
    let (s, b) = e
        .request(
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "again"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(code(&b), "request_already_pending");
    assert_eq!(b["details"]["request_id"], id.as_str());
    // Bob (db-owners) sees it in his inbox; Carol (not an approver of it) does not.
    let (s, inbox) = e
        .get_as("bob@example.com", "/v1/requests?mine_to_approve=true")
        .await;
    assert_eq!(s, StatusCode::OK, "{inbox}");
    assert_eq!(inbox["requests"][0]["id"], id.as_str(), "{inbox}");
    let (_, inbox) = e
        .get_as("carol@example.com", "/v1/requests?mine_to_approve=true")
        .await;
    assert_eq!(inbox["requests"].as_array().unwrap().len(), 0, "{inbox}");
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
    let (s, v) = e.decide("bob@example.com", &id, "approve", "ok").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "approved", "{v}");
    assert_eq!(v["grant"]["state"], "active", "{v}");
    assert_eq!(v["grant"]["request_id"], id.as_str());
    // The grant was asked for by alice; bob's approval made it (issue 22: it said bob).
    assert_eq!(v["grant"]["requested_by"], "alice@example.com", "{v}");
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    // The clock started at activation and the duration is the one asked for.
    assert_eq!(v["grant"]["duration_ms"], 2 * 3600 * 1000);
    let v = e.show(&id).await;
    assert_eq!(v["decisions"][0]["approver"], "bob@example.com");
    assert_eq!(v["decisions"][0]["channel"], "api");
    assert_eq!(v["decisions"][0]["comment"], "ok");
    // Holding it now: a new request offers extension instead.
    let (s, b) = e
        .request(
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "more"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(code(&b), "already_granted");
    assert_eq!(b["details"]["grant_id"], v["grant"]["id"]);
    // A requester sees only their own requests.
    let (_, mine) = e.get_as("alice@example.com", "/v1/requests").await;
    assert_eq!(mine["requests"].as_array().unwrap().len(), 1);
    let (_, theirs) = e.get_as("eng1@example.com", "/v1/requests").await;
    assert_eq!(theirs["requests"].as_array().unwrap().len(), 0);
    let (s, _) = e
        .get_as("eng1@example.com", &format!("/v1/requests/{id}"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The audit log tells the story with who, through which channel.
    let (_, audit) = admin_get(&e.app.http, &e.app.base, "/v1/audit?limit=500").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for a in [
        "request.created",
        "request.approved",
        "grant.provisioning",
        "grant.activated",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    e.audit_ok().await;
}

async fn refusals_change_nothing(db: Db) {
    let e = env(db).await;
    let before = e.footprint().await;
    let cases = [
        (
            "alice@example.com",
            json!({"resource": "nope", "reason": "x"}),
            StatusCode::BAD_REQUEST,
            "unknown_resource",
        ),
        (
            "alice@example.com",
            json!({"resource": "prod-admins", "duration": "5h", "reason": "x"}),
            StatusCode::BAD_REQUEST,
            "duration_exceeds_max",
        ),
        (
            "alice@example.com",
            json!({"resource": "prod-admins", "duration": "-1h", "reason": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_duration",
        ),
        (
            "alice@example.com",
            json!({"resource": "prod-admins"}),
            StatusCode::BAD_REQUEST,
            "reason_required",
        ),
        (
            "alice@example.com",
            json!({"resource": "payroll"}),
            StatusCode::BAD_REQUEST,
            "ticket_required",
        ),
        (
            "alice@example.com",
            json!({"resource": "payroll", "ticket": "abc 1"}),
            StatusCode::BAD_REQUEST,
            "invalid_ticket",
        ),
        (
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "x".repeat(5000)}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "x", "on_behalf_of": "bob@example.com"}),
            StatusCode::FORBIDDEN,
            "on_behalf_forbidden",
        ),
        (
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "x", "break_glass": true}),
            StatusCode::BAD_REQUEST,
            "break_glass_not_allowed",
        ),
        (
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "x", "extra": 1}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "portal",
            json!({"resource": "prod-admins", "reason": "x", "on_behalf_of": "nobody@example.com"}),
            StatusCode::BAD_REQUEST,
            "unknown_user",
        ),
    ];
    for (who, body, status, c) in cases {
        let (s, b) = e.request(who, body.clone()).await;
        assert_eq!((s, code(&b)), (status, c), "{body} -> {b}");
    }
    // Malformed JSON and an unauthenticated call.
    let r = e
        .app
        .http
        .post(e.app.url("/v1/requests"))
        .bearer_auth(token_of("alice@example.com"))
        .header("content-type", "application/json")
        .body("{\"resource\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = e
        .app
        .http
        .post(e.app.url("/v1/requests"))
        .json(&json!({"resource": "prod-admins", "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        e.footprint().await,
        before,
        "a refused request wrote something"
    );

    // Decisions that must be refused.
    let id = e
        .pending(
            "dave@example.com",
            json!({"resource": "payroll", "ticket": "SEC-1"}),
        )
        .await;
    let before = e.footprint().await;
    let (s, b) = e.decide("dave@example.com", &id, "approve", "").await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "self_approval"),
        "{b}"
    );
    let (s, b) = e.decide("alice@example.com", &id, "approve", "").await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "forbidden"), "{b}");
    let (s, b) = e
        .decide(
            "bob@example.com",
            "0190a0a0-0000-7000-8000-000000000000",
            "approve",
            "",
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"), "{b}");
    let (s, b) = e
        .decide("bob@example.com", "not-a-uuid", "approve", "")
        .await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"), "{b}");
    let (s, _) = e
        .post_as(
            "bob@example.com",
            &format!("/v1/requests/{id}/approve"),
            json!({"comment": 5}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        e.footprint().await,
        before,
        "a refused decision wrote something"
    );
    // A duplicate decision counts once.
    let (s, b) = e.decide("bob@example.com", &id, "approve", "one").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "pending", "two of three needed: {b}");
    let before = e.footprint().await;
    let (s, b) = e.decide("bob@example.com", &id, "approve", "two").await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "already_decided"),
        "{b}"
    );
    assert_eq!(e.footprint().await, before);
    // A non-approver of prod-admins, and an approver removed from the approver group after the
    // request was made.
    let id2 = e
        .pending(
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "x"}),
        )
        .await;
    let (s, b) = e.decide("carol@example.com", &id2, "approve", "").await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "not_approver"),
        "{b}"
    );
    e.sim
        .admin("admin@example.com")
        .remove_member(DB_OWNERS, BOB)
        .unwrap();
    let before = e.footprint().await;
    let (s, b) = e.decide("bob@example.com", &id2, "approve", "").await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "not_approver"),
        "{b}"
    );
    assert_eq!(e.footprint().await, before);
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
    // One deny ends it; a decision after it is refused cleanly.
    let (s, b) = e.decide("carol@example.com", &id, "deny", "not now").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "denied");
    assert!(b["end_reason"].as_str().unwrap().contains("not now"));
    let (s, b) = e.decide("bob@example.com", &id, "deny", "").await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "request_not_pending"),
        "{b}"
    );
    let (s, b) = e.decide("dave@example.com", &id, "approve", "").await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "self_approval"),
        "{b}"
    );
    assert!(e.sim.app_assignment_scope(PAYROLL, DAVE).is_none());
    e.audit_ok().await;
}

async fn stages_are_decided_in_order(db: Db) {
    let e = env(db).await;
    let id = e
        .pending("alice@example.com", json!({"resource": "user-admin"}))
        .await;
    // Security (stage 2) cannot go first.
    let (s, b) = e.decide("carol@example.com", &id, "approve", "").await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "not_approver"),
        "{b}"
    );
    let (s, b) = e
        .decide("bob@example.com", &id, "approve", "owner ok")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "pending");
    assert_eq!(b["current_stage"], 1, "{b}");
    assert_eq!(b["stages"][0]["approvals"], 1);
    assert!(e.sim.user_roles(ALICE).is_empty());
    let (s, b) = e
        .decide("carol@example.com", &id, "approve", "security ok")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "approved");
    assert_eq!(b["grant"]["state"], "active");
    assert!(e
        .sim
        .user_roles(ALICE)
        .iter()
        .any(|(_, t)| t == "USER_ADMIN"));
    e.audit_ok().await;
}

async fn break_glass_grants_at_once_and_a_later_deny_revokes(db: Db) {
    let e = env(db).await;
    let (s, b) = e
        .request(
            "alice@example.com",
            json!({"resource": "user-admin", "break_glass": true, "duration": "1h", "reason": "prod down"}),
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_REQUEST, "break_glass_duration_exceeds_max"),
        "{b}"
    );
    let (s, b) = e
        .request(
            "alice@example.com",
            json!({"resource": "user-admin", "break_glass": true}),
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_REQUEST, "reason_required"),
        "{b}"
    );
    let (s, b) = e
        .request(
            "alice@example.com",
            json!({"resource": "user-admin", "break_glass": true, "reason": "prod down"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["request"]["state"], "approved");
    assert_eq!(b["request"]["review_pending"], true);
    assert_eq!(b["grant"]["state"], "active");
    assert_eq!(
        b["grant"]["duration_ms"],
        15 * 60 * 1000,
        "capped at break_glass_max_duration"
    );
    assert!(e
        .sim
        .user_roles(ALICE)
        .iter()
        .any(|(_, t)| t == "USER_ADMIN"));
    let id = b["request"]["id"].as_str().unwrap().to_string();
    // It stays open for an after-the-fact review by the approvers.
    let (_, inbox) = e
        .get_as("bob@example.com", "/v1/requests?state=approved")
        .await;
    assert_eq!(inbox["requests"][0]["id"], id.as_str());
    let (s, v) = e
        .decide("bob@example.com", &id, "deny", "not an emergency")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "denied");
    assert_eq!(v["review_pending"], false);
    assert_eq!(v["grant"]["state"], "revoked", "{v}");
    assert!(!e
        .sim
        .user_roles(ALICE)
        .iter()
        .any(|(_, t)| t == "USER_ADMIN"));
    let (_, audit) = admin_get(&e.app.http, &e.app.base, "/v1/audit?limit=500").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"request.break_glass"), "{actions:?}");
    assert!(
        actions.contains(&"request.break_glass_denied"),
        "{actions:?}"
    );
    e.audit_ok().await;
}

async fn auto_approval_and_step_up(db: Db) {
    let e = env(db).await;
    // Carol is on call: auto-approved within the auto-approval's maximum ...
    let (s, b) = e
        .request(
            "carol@example.com",
            json!({"resource": "prod-admins", "duration": "30m", "reason": "page"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["grant"]["state"], "active");
    assert!(e.sim.is_member(PROD_ADMINS, CAROL));
    let v = e.show(b["request"]["id"].as_str().unwrap()).await;
    assert_eq!(
        v["decisions"].as_array().unwrap().len(),
        0,
        "approved by policy, not a person"
    );
    // ... but not beyond it.
    let (s, b) = e
        .request(
            "dave@example.com",
            json!({"resource": "prod-admins", "duration": "2h", "reason": "long"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    // A step-up resource cannot be approved through the API.
    let id = e
        .pending("alice@example.com", json!({"resource": "aws-prod"}))
        .await;
    let before = e.footprint().await;
    let (s, b) = e.decide("bob@example.com", &id, "approve", "").await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "step_up_required"),
        "{b}"
    );
    assert_eq!(e.footprint().await, before);
    // Deny still works.
    let (s, b) = e.decide("bob@example.com", &id, "deny", "no").await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn holder_extension_goes_through_approval(db: Db) {
    let e = env(db).await;
    let id = e
        .pending(
            "alice@example.com",
            json!({"resource": "prod-admins", "duration": "1h", "reason": "x"}),
        )
        .await;
    let (_, v) = e.decide("bob@example.com", &id, "approve", "").await;
    let gid = v["grant"]["id"].as_str().unwrap().to_string();
    let expires = v["grant"]["expires_at"].as_i64().unwrap();
    // Someone else cannot extend Alice's grant.
    let (s, b) = e
        .post_as(
            "eng1@example.com",
            &format!("/v1/grants/{gid}/extend"),
            json!({"duration": "30m"}),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "forbidden"), "{b}");
    let (s, b) = e
        .post_as(
            "alice@example.com",
            &format!("/v1/grants/{gid}/extend"),
            json!({"duration": "30m", "reason": "still on it"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["request"]["kind"], "extension");
    let rid = b["request"]["id"].as_str().unwrap().to_string();
    let (s, v) = e.decide("bob@example.com", &rid, "approve", "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "approved");
    assert_eq!(v["grant"]["id"], gid.as_str());
    assert_eq!(
        v["grant"]["expires_at"].as_i64().unwrap(),
        expires + 30 * 60 * 1000
    );
    assert!(
        e.sim.is_member(PROD_ADMINS, ALICE),
        "extension never flaps access"
    );
    // Carol (on call) extends within the auto-approval's total: approved at once.
    let (s, b) = e
        .request(
            "carol@example.com",
            json!({"resource": "prod-admins", "duration": "20m", "reason": "page"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let cg = b["grant"]["id"].as_str().unwrap().to_string();
    let (s, b) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/grants/{cg}/extend"),
            json!({"duration": "20m", "reason": "still paging"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["request"]["state"], "approved");
    e.audit_ok().await;
}

async fn pending_requests_expire_and_cannot_be_decided(db: Db) {
    let e = env(db).await;
    let id = e
        .pending(
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "x"}),
        )
        .await;
    // Another replica whose clock is a day and a minute ahead runs the pending-timeout check.
    let g = crate::helpers::Env::replica_of(&e.app, std::time::Duration::from_secs(24 * 3600 + 60))
        .await;
    let svc = jit_broker::requests::RequestService::new(g, &e.app.config.requests, None);
    let (expired, _) = svc.check_once().await.unwrap();
    assert_eq!(expired, 1);
    let v = e.show(&id).await;
    assert_eq!(v["state"], "expired");
    let (s, b) = e.decide("bob@example.com", &id, "approve", "").await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "request_not_pending"),
        "{b}"
    );
    // A new request is possible again.
    e.pending(
        "alice@example.com",
        json!({"resource": "prod-admins", "reason": "again"}),
    )
    .await;
}

async fn cancel_and_on_behalf(db: Db) {
    let e = env(db).await;
    let (s, b) = e
        .request(
            "portal",
            json!({"resource": "prod-admins", "reason": "via portal", "on_behalf_of": "alice@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["request"]["user_login"], "alice@example.com");
    assert_eq!(b["request"]["requested_by"], "portal");
    let id = b["request"]["id"].as_str().unwrap().to_string();
    // Someone else may not cancel it; Alice may.
    let (s, b) = e
        .post_as(
            "eng1@example.com",
            &format!("/v1/requests/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "forbidden"), "{b}");
    let (s, b) = e
        .post_as(
            "alice@example.com",
            &format!("/v1/requests/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "cancelled");
    let (s, b) = e.decide("bob@example.com", &id, "approve", "").await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "request_not_pending"),
        "{b}"
    );
    let (s, b) = e
        .post_as(
            "alice@example.com",
            &format!("/v1/requests/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "request_not_pending"),
        "{b}"
    );
    e.audit_ok().await;
}
