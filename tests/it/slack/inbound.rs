//! Verification of every inbound Slack request: signature on the raw bytes, the 5-minute
//! window both ways, several secrets, replays, malformed payloads. Each refusal changes nothing:
//! no request is created and Slack is not called.

use super::*;

async fn nothing_happened(e: &Env) {
    let all = e
        .requests
        .list(&jit_broker::requests::repo::ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.is_empty(), "{all:?}");
    // Give a wrongly spawned task the chance to call Slack before looking.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(e.fake.calls().is_empty(), "{:?}", e.fake.calls());
}

async fn code_of(r: reqwest::Response) -> (StatusCode, String) {
    let s = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (s, v["code"].as_str().unwrap_or("").to_string())
}

async fn refusals_for(e: &Env, path: &str, body: &str) {
    let now = now_secs();
    // Tampered: signed, then one byte changed.
    let sig = sign(SECRET, &now.to_string(), body.as_bytes());
    let tampered = body
        .replacen("prod", "prot", 1)
        .replacen("approve", "apprové", 1);
    assert_ne!(tampered, body);
    let r = e
        .app
        .http
        .post(e.app.url(path))
        .header("X-Slack-Request-Timestamp", now.to_string())
        .header("X-Slack-Signature", &sig)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code_of(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_signature".into())
    );
    // Wrong secret.
    let r = e.signed(path, body, "not-the-secret", now).await;
    assert_eq!(
        code_of(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_signature".into())
    );
    // Missing headers.
    for skip in ["X-Slack-Signature", "X-Slack-Request-Timestamp"] {
        let mut req = e.app.http.post(e.app.url(path)).body(body.to_string());
        if skip != "X-Slack-Signature" {
            req = req.header("X-Slack-Signature", &sig);
        }
        if skip != "X-Slack-Request-Timestamp" {
            req = req.header("X-Slack-Request-Timestamp", now.to_string());
        }
        let r = req.send().await.unwrap();
        assert_eq!(
            code_of(r).await,
            (StatusCode::UNAUTHORIZED, "invalid_signature".into())
        );
    }
    // Six minutes old, six minutes ahead: correctly signed, outside the window.
    for off in [-360, 360] {
        let r = e.signed(path, body, SECRET, now + off).await;
        assert_eq!(
            code_of(r).await,
            (StatusCode::UNAUTHORIZED, "invalid_signature".into())
        );
    }
    // Not a number.
    let r = e
        .app
        .http
        .post(e.app.url(path))
        .header("X-Slack-Request-Timestamp", "soon")
        .header("X-Slack-Signature", &sig)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        code_of(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_signature".into())
    );
    // Oversized: refused before it is read.
    let big = "a".repeat(e.app.config.server.body_limit_bytes + 1);
    let r = e.signed(path, &big, SECRET, now).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

async fn refused_requests_change_nothing(db: Db) {
    let e = env(db).await;
    let cmd = command_body(
        ALICE_S,
        "request prod-admins 1h deploy",
        &e.fake.response_url("x"),
    );
    refusals_for(&e, "/hooks/slack/commands", &cmd).await;
    let click = form(&[(
        "payload",
        &click_payload(
            BOB_S,
            "approve",
            &uuid::Uuid::now_v7().to_string(),
            &e.fake.response_url("y"),
        )
        .to_string(),
    )]);
    refusals_for(&e, "/hooks/slack/interactions", &click).await;
    nothing_happened(&e).await;
}

async fn malformed_payloads_are_400(db: Db) {
    let e = env(db).await;
    let now = now_secs();
    let bad_cmds = [
        form(&[
            ("text", "help"),
            ("response_url", "https://hooks.slack.com/x"),
        ]),
        command_body("not-a-user", "help", "https://hooks.slack.com/x"),
        command_body(ALICE_S, "help", "not a url"),
        command_body(ALICE_S, &"x".repeat(5000), "https://hooks.slack.com/x"),
    ];
    for b in &bad_cmds {
        let r = e.signed("/hooks/slack/commands", b, SECRET, now).await;
        assert_eq!(
            code_of(r).await,
            (StatusCode::BAD_REQUEST, "invalid_payload".into()),
            "{b}"
        );
    }
    let rid = uuid::Uuid::now_v7().to_string();
    let bad_interactions = [
        form(&[("nopayload", "1")]),
        form(&[("payload", "{not json")]),
        form(&[("payload", &json!({"user": {"id": BOB_S}}).to_string())]),
        form(&[(
            "payload",
            &click_payload("bad id", "approve", &rid, "https://hooks.slack.com/x").to_string(),
        )]),
        form(&[(
            "payload",
            &click_payload(
                BOB_S,
                "approve",
                "not-a-request",
                "https://hooks.slack.com/x",
            )
            .to_string(),
        )]),
        form(&[(
            "payload",
            &click_payload(BOB_S, "launch_missiles", &rid, "https://hooks.slack.com/x").to_string(),
        )]),
        // Slack's documentation example: a button this app never made.
        form(&[(
            "payload",
            include_str!("../../fixtures/slack/block_actions-docs-example.json"),
        )]),
    ];
    for b in &bad_interactions {
        let r = e.signed("/hooks/slack/interactions", b, SECRET, now).await;
        assert_eq!(
            code_of(r).await,
            (StatusCode::BAD_REQUEST, "invalid_payload".into()),
            "{b}"
        );
    }
    nothing_happened(&e).await;
}

/// Slack's real form encoding (`+` for spaces, `%2F`) and its documentation example parse, are
/// verified, and answer inline (help / unknown command) without calling Slack.
async fn real_payloads_parse(db: Db) {
    let e = env(db).await;
    let real = include_str!("../../fixtures/slack/slash-command-real-encoding.form.txt").trim();
    let r = e
        .signed("/hooks/slack/commands", real, SECRET, now_secs())
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["response_type"], "ephemeral");
    assert!(v["text"].as_str().unwrap().contains("/jit request"), "{v}");
    let docs = include_str!("../../fixtures/slack/slash-command-docs-example.form.txt").trim();
    let r = e
        .signed("/hooks/slack/commands", docs, OLD_SECRET, now_secs())
        .await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the previous secret is still accepted"
    );
    let v: Value = r.json().await.unwrap();
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .starts_with("Unknown command `94070`"),
        "{v}"
    );
    // `+` and `%20` both decode to a space.
    let plus = command_body(ALICE_S, "help", "https://hooks.slack.com/x")
        .replace("text=help", "text=+help+");
    let r = e
        .signed("/hooks/slack/commands", &plus, SECRET, now_secs())
        .await;
    assert!(r.json::<Value>().await.unwrap()["text"]
        .as_str()
        .unwrap()
        .contains("/jit list"));
    let pct = command_body(ALICE_S, "help", "https://hooks.slack.com/x")
        .replace("text=help", "text=%20help%20");
    let r = e
        .signed("/hooks/slack/commands", &pct, SECRET, now_secs())
        .await;
    assert!(r.json::<Value>().await.unwrap()["text"]
        .as_str()
        .unwrap()
        .contains("/jit list"));
    // The minimal block_actions example (an ephemeral container, no message) with our button.
    let mut p: Value = serde_json::from_str(include_str!(
        "../../fixtures/slack/block_actions-minimal.json"
    ))
    .unwrap();
    p["user"]["id"] = json!(BOB_S);
    p["response_url"] = json!(e.fake.response_url("min"));
    p["actions"][0]["action_id"] = json!("approve");
    p["actions"][0]["value"] = json!(uuid::Uuid::now_v7().to_string());
    let r = e.interaction(&p).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = e.answer("min").await;
    assert!(
        text.contains("does not exist"),
        "unknown request id in a button: {text}"
    );
    nothing_happened_but_lookup(&e).await;
}

async fn nothing_happened_but_lookup(e: &Env) {
    let all = e
        .requests
        .list(&jit_broker::requests::repo::ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.is_empty());
    assert!(e.fake.calls_of("chat.postMessage").is_empty());
}

/// The same delivery twice (same timestamp, same body, same signature) acts once.
async fn replayed_delivery_acts_once(db: Db) {
    let e = env(db).await;
    let body = command_body(
        ALICE_S,
        "request prod-admins 1h deploy",
        &e.fake.response_url("rep"),
    );
    let ts = now_secs();
    let r1 = e.signed("/hooks/slack/commands", &body, SECRET, ts).await;
    assert_eq!(r1.status(), StatusCode::OK);
    let r2 = e.signed("/hooks/slack/commands", &body, SECRET, ts).await;
    assert_eq!(r2.status(), StatusCode::OK);
    let v: Value = r2.json().await.unwrap();
    assert!(
        v["text"].as_str().unwrap().contains("already received"),
        "{v}"
    );
    e.answer("rep").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e.fake.calls_of("hook:rep").len(), 1);
    let all = e
        .requests
        .list(&jit_broker::requests::repo::ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

async fn unconfigured_slack_is_404(db: Db) {
    let app = spawn_app(db).await;
    let r = app
        .http
        .post(app.url("/hooks/slack/commands"))
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code_of(r).await,
        (StatusCode::NOT_FOUND, "slack_not_configured".into())
    );
}

both_backends!(
    refused_requests_change_nothing,
    malformed_payloads_are_400,
    real_payloads_parse,
    replayed_delivery_acts_once,
    unconfigured_slack_is_404,
);
