//! Property tests through the running broker: Slack commands and interactions, and signed
//! approval callbacks (see the parent module for how cases are counted and scaled).

use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::json;

use super::{draw, header_text, json_bytes, json_value, mutated, report, text};
use crate::helpers::*;

// --- Slack commands and interactions -----------------------------------------------------

both_backends!(slack_requests_through_the_broker);

fn slack_form(hook: String) -> impl Strategy<Value = String> {
    let user = prop_oneof![Just("U0NOBODY".to_string()), "[UW][A-Z0-9]{1,12}", text()];
    let team = prop_oneof![Just("T111".to_string()), "T[A-Z0-9]{1,8}", text()];
    let words = prop_oneof![
        Just("help".to_string()),
        Just("list".to_string()),
        Just("request".to_string()),
        Just("request prod-admins 1h x".to_string()),
        Just("extend 0192 2h".to_string()),
        text(),
    ];
    let url = prop_oneof![Just(hook), text()];
    (user, team, words, url, any::<bool>()).prop_map(|(u, t, w, url, app)| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("team_id", t.as_str()),
                ("user_id", u.as_str()),
                ("command", "/jit"),
                ("text", w.as_str()),
                ("api_app_id", if app { "A111" } else { "A999" }),
                ("response_url", url.as_str()),
                ("trigger_id", "1.2.3"),
            ])
            .finish()
    })
}

fn slack_payload(hook: String) -> impl Strategy<Value = String> {
    let real = crate::slack::click_payload(
        "U0NOBODY",
        "approve",
        &uuid::Uuid::now_v7().to_string(),
        &hook,
    );
    let submission = json!({
        "type": "view_submission", "user": {"id": "U0NOBODY", "team_id": "T111"},
        "team": {"id": "T111"}, "api_app_id": "A111",
        "view": {"callback_id": "jit_request", "private_metadata": "",
                 "state": {"values": {"resource": {"resource": {"type": "static_select",
                   "selected_option": {"value": "prod-admins"}}},
                   "duration": {"duration": {"type": "plain_text_input", "value": "1h"}}}}}
    });
    let payload = prop_oneof![
        3 => mutated(real).prop_map(|v| v.to_string()),
        2 => mutated(submission).prop_map(|v| v.to_string()),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => ".{0,64}",
    ];
    payload.prop_map(|p| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("payload", p.as_str())])
            .finish()
    })
}

async fn slack_requests_through_the_broker(db: Db) {
    let n = AtomicU64::new(0);
    let e = crate::slack::env(db).await;
    let store = e.app.store().await;
    let count = |t: &'static str| {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {t}"))
                .fetch_one(store.pool())
                .await
                .unwrap()
        }
    };
    let hook = e.fake.response_url("fuzz");
    let commands = draw(slack_form(hook.clone()))
        .into_iter()
        .map(|b| ("/hooks/slack/commands", b));
    let clicks = draw(slack_payload(hook))
        .into_iter()
        .map(|b| ("/hooks/slack/interactions", b));
    for (path, body) in commands.chain(clicks) {
        n.fetch_add(1, Ordering::Relaxed);
        let before = (count("requests").await, count("slack_deliveries").await);
        let r = e
            .signed(path, &body, crate::slack::SECRET, crate::slack::now_secs())
            .await;
        let s = r.status();
        assert!(!s.is_server_error(), "{s} for {path} {body}");
        if s != StatusCode::OK {
            let after = (count("requests").await, count("slack_deliveries").await);
            assert_eq!(after, before, "{s} changed something: {path} {body}");
        }
    }
    // Nobody the generated requests name is a Slack user mapped to Okta: nothing was created.
    assert_eq!(count("requests").await, 0);
    report(
        "slack commands and interactions (through /hooks/slack/*)",
        &n,
    );
}

// --- Signed approval callbacks through the broker -------------------------------------------

both_backends!(approval_callbacks_through_the_broker);

async fn approval_callbacks_through_the_broker(db: Db) {
    let n = AtomicU64::new(0);
    let e = crate::requests::env(db).await;
    let secret =
        jit_broker::webhooks::WebhookSecret::parse(crate::requests::CALLBACK_SECRET).unwrap();
    let body = json!({"request_id": uuid::Uuid::now_v7().to_string(), "decision": "approve",
                      "approver": "bob@example.com", "comment": "x"});
    let input = (
        header_text(),
        header_text(),
        header_text(),
        json_bytes(body),
        0..3u8,
    );
    let before = e.footprint().await;
    for (id, ts, sigs, body, mode) in draw(input) {
        n.fetch_add(1, Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp();
        // 0: headers as generated; 1: a valid signature now; 2: signed with a generated time.
        let (ts, sigs) = match (mode, ts.trim().parse::<i64>()) {
            (1, _) => (now.to_string(), secret.sign(&id, now, &body)),
            (2, Ok(t)) => (ts.clone(), secret.sign(&id, t, &body)),
            _ => (ts, sigs),
        };
        let mut r = e
            .app
            .http
            .post(e.app.url("/hooks/approvals"))
            .header("content-type", "application/json")
            .body(body.clone());
        for (k, v) in [
            ("webhook-id", &id),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &sigs),
        ] {
            if let Ok(v) = reqwest::header::HeaderValue::from_str(v) {
                r = r.header(k, v);
            }
        }
        let s = r.send().await.unwrap().status();
        assert!(
            !s.is_server_error(),
            "{s} for id={id:?} ts={ts:?} sig={sigs:?} body={}",
            String::from_utf8_lossy(&body)
        );
    }
    // No generated delivery names a real request: nothing was decided, granted or audited.
    assert_eq!(e.footprint().await, before);
    report("standard webhooks (through /hooks/approvals)", &n);
}
