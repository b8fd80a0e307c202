//! `POST /hooks/approvals`: Standard Webhooks signed decisions from another system. Every
//! unauthenticated, replayed or malformed delivery gets the right answer and changes nothing.

use jit_broker::webhooks::WebhookSecret;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;

both_backends!(
    signed_callbacks_decide_and_nothing_else_does,
    a_callback_whose_process_died_is_retried_within_seconds,
    limited_integrations_decide_only_within_their_limits,
);

/// Base64 of 24 bytes each: two more integrations' secrets.
const PAYROLL_ONLY: &str = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY";
const CAROL_ONLY: &str = "whsec_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4";

fn integration(name: &str, secret: &str) -> jit_broker::callbacks::IntegrationConfig {
    jit_broker::callbacks::IntegrationConfig {
        name: name.into(),
        secret: Some(secrecy::SecretString::from(secret)),
        secret_file: None,
        trusted_for_step_up: false,
        allowed_resources: None,
        allowed_approvers: None,
    }
}

/// `allowed_resources` and `allowed_approvers`: a callback outside them is refused with
/// `callback_not_allowed` and changes nothing; inside them (approvers compared ignoring case) it
/// decides as usual.
async fn limited_integrations_decide_only_within_their_limits(db: Db) {
    let e = env_with(db, |c| {
        c.callbacks.integrations[0].allowed_resources = Some(vec!["prod-admins".into()]);
        c.callbacks.integrations[0].allowed_approvers = Some(vec!["BOB@example.com".into()]);
        let mut payroll = integration("payroll-portal", PAYROLL_ONLY);
        payroll.allowed_resources = Some(vec!["payroll".into()]);
        let mut carol = integration("carol-bot", CAROL_ONLY);
        carol.allowed_approvers = Some(vec!["carol@example.com".into()]);
        c.callbacks.integrations.push(payroll);
        c.callbacks.integrations.push(carol);
    })
    .await;
    let id = e
        .pending(
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "ticket INC-8"}),
        )
        .await;
    let approve = serde_json::to_vec(&json!({
        "request_id": id, "decision": "approve", "approver": "bob@example.com",
    }))
    .unwrap();
    let before = e.footprint().await;
    for (secret, mid, why) in [
        (PAYROLL_ONLY, "l1", "allowed_resources"),
        (CAROL_ONLY, "l2", "allowed_approvers"),
    ] {
        let (s, b) = post_signed(&e, secret, mid, now_s(), &approve, None).await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::FORBIDDEN, "callback_not_allowed"),
            "{mid}: {b}"
        );
        assert!(b["message"].as_str().unwrap().contains(why), "{b}");
    }
    let (r0, d0, g0, a0) = before;
    let (r1, d1, g1, a1) = e.footprint().await;
    assert_eq!(
        (r1, d1, g1, a1),
        (r0, d0, g0, a0),
        "a refused callback changed state"
    );
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
    // An unknown request under a resource limit: the ordinary not_found.
    let unknown = serde_json::to_vec(&json!({
        "request_id": "0190a0a0-0000-7000-8000-000000000000", "decision": "approve",
        "approver": "bob@example.com",
    }))
    .unwrap();
    let (s, b) = post_signed(&e, PAYROLL_ONLY, "l3", now_s(), &unknown, None).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"), "{b}");
    // Within its limits the first integration decides.
    let (s, v) = post_signed(&e, CALLBACK_SECRET, "l4", now_s(), &approve, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "approved");
    assert_eq!(v["decisions"][0]["channel"], "callback:servicenow");
    e.audit_ok().await;
}

async fn post_signed(
    e: &Env,
    secret: &str,
    id: &str,
    ts: i64,
    body: &[u8],
    tamper: Option<&[u8]>,
) -> (StatusCode, Value) {
    let sig = WebhookSecret::parse(secret).unwrap().sign(id, ts, body);
    let sent = tamper.unwrap_or(body).to_vec();
    let r = e
        .app
        .http
        .post(e.app.url("/hooks/approvals"))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn signed_callbacks_decide_and_nothing_else_does(db: Db) {
    let e = env(db).await;
    let id = e
        .pending(
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "ticket INC-7"}),
        )
        .await;
    let body = |approver: &str, decision: &str, req: &str| {
        serde_json::to_vec(&json!({
            "request_id": req, "decision": decision, "approver": approver,
            "comment": "approved in ServiceNow CHG-1",
        }))
        .unwrap()
    };
    let good = body("bob@example.com", "approve", &id);
    let before = e.footprint().await;
    let wrong = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    // Tampered body, wrong secret, 6 minutes old, 6 minutes ahead: 401, nothing changes.
    let cases: Vec<(&str, &str, i64, Option<Vec<u8>>)> = vec![
        (
            "m1",
            CALLBACK_SECRET,
            now_s(),
            Some(body("bob@example.com", "approve", &format!("{id} "))),
        ),
        ("m2", wrong, now_s(), None),
        ("m3", CALLBACK_SECRET, now_s() - 360, None),
        ("m4", CALLBACK_SECRET, now_s() + 360, None),
    ];
    for (mid, secret, ts, tamper) in cases {
        let (s, b) = post_signed(&e, secret, mid, ts, &good, tamper.as_deref()).await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::UNAUTHORIZED, "invalid_signature"),
            "{mid}: {b}"
        );
    }
    // Missing headers.
    let r = e
        .app
        .http
        .post(e.app.url("/hooks/approvals"))
        .header("content-type", "application/json")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(e.footprint().await, before);
    // Signed but malformed, unknown request, self-approval, non-approver: refused, recorded
    // as answers (a redelivery gets the same), no decision made.
    let (s, b) = post_signed(
        &e,
        CALLBACK_SECRET,
        "m5",
        now_s(),
        b"{\"request_id\": 1",
        None,
    )
    .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_REQUEST, "invalid_json"),
        "{b}"
    );
    let (s, b) = post_signed(
        &e,
        CALLBACK_SECRET,
        "m6",
        now_s(),
        &body(
            "bob@example.com",
            "approve",
            "0190a0a0-0000-7000-8000-000000000000",
        ),
        None,
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"), "{b}");
    let (s, b) = post_signed(
        &e,
        CALLBACK_SECRET,
        "m7",
        now_s(),
        &body("alice@example.com", "approve", &id),
        None,
    )
    .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "self_approval"),
        "{b}"
    );
    let (s, b) = post_signed(
        &e,
        CALLBACK_SECRET,
        "m8",
        now_s(),
        &body("carol@example.com", "approve", &id),
        None,
    )
    .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "not_approver"),
        "{b}"
    );
    let (s, b) = post_signed(
        &e,
        CALLBACK_SECRET,
        "m9",
        now_s(),
        &body("bob@example.com", "maybe", &id),
        None,
    )
    .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_REQUEST, "invalid_decision"),
        "{b}"
    );
    let (r0, d0, g0, _) = before;
    let (r1, d1, g1, _) = e.footprint().await;
    assert_eq!(
        (r1, d1, g1),
        (r0, d0, g0),
        "a refused callback changed state"
    );
    // The valid one decides, through the same rules, recorded as the integration's channel.
    let (s, v) = post_signed(&e, CALLBACK_SECRET, "m10", now_s(), &good, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "approved");
    assert_eq!(v["decisions"][0]["channel"], "callback:servicenow");
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    // A redelivery (same webhook-id, fresh signature) answers the first answer, changes nothing.
    let after = e.footprint().await;
    let (s2, v2) = post_signed(&e, CALLBACK_SECRET, "m10", now_s(), &good, None).await;
    assert_eq!((s2, &v2), (s, &v));
    assert_eq!(e.footprint().await, after);
    // The same for a refused one.
    let (s, b) = post_signed(
        &e,
        CALLBACK_SECRET,
        "m7",
        now_s(),
        &body("alice@example.com", "approve", &id),
        None,
    )
    .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "self_approval"),
        "{b}"
    );
    // A decision after the request was decided is refused cleanly.
    let (s, b) = post_signed(
        &e,
        CALLBACK_SECRET,
        "m11",
        now_s(),
        &body("bob@example.com", "deny", &id),
        None,
    )
    .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "request_not_pending"),
        "{b}"
    );
    e.audit_ok().await;
}

/// A process that died deciding a callback left its receipt `processing`; the sender retries
/// (on 409, every half second): the receipt is a 5 s lease, so the retry is processed within
/// seconds and decides, once. (It used to be refused for a minute.)
async fn a_callback_whose_process_died_is_retried_within_seconds(db: Db) {
    let e = env(db).await;
    let id = e
        .pending(
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "ticket INC-8"}),
        )
        .await;
    let good = serde_json::to_vec(&json!({
        "request_id": id, "decision": "approve", "approver": "bob@example.com",
    }))
    .unwrap();
    // What the dead process left: the receipt claimed a moment ago, never finished.
    let store = e.app.store().await;
    sqlx::query(
        "INSERT INTO webhook_receipts (source, webhook_id, state, created_at) \
         VALUES ('servicenow', 'died-1', 'processing', $1)",
    )
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(store.pool())
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut refused = 0;
    loop {
        let (s, v) = post_signed(&e, CALLBACK_SECRET, "died-1", now_s(), &good, None).await;
        if s == StatusCode::OK {
            assert_eq!(v["state"], "approved", "{v}");
            break;
        }
        assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "in_progress"), "{v}");
        refused += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sender's retry was still refused after 10 s ({refused} tries)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(refused > 0, "the live lease was not respected");
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    // The receipt is now the answer: a later redelivery replays it.
    let (s, v) = post_signed(&e, CALLBACK_SECRET, "died-1", now_s(), &good, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
