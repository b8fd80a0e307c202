//! Review notices reach the outbound events (the channel used when Slack is not configured):
//! `review.opened` with each reviewer's item count, `review.overdue` at the due date.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use jit_broker::outbox::webhook::EndpointConfig;
use jit_broker::webhooks::{verify, Signed, WebhookSecret};
use serde_json::Value;

use super::*;

const SECRET: &str = "whsec_c2lnbmluZy1rZXktZm9yLWV2ZW50cy0xMjM0NTY=";

/// Records each verified delivery's body.
async fn receiver(got: Arc<Mutex<Vec<Value>>>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: HeaderMap, body: Bytes| {
            let got = got.clone();
            async move {
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
                if verify(&[&key], signed, &body, chrono::Utc::now().timestamp(), 300).is_err() {
                    return AxStatus::UNAUTHORIZED;
                }
                got.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                AxStatus::NO_CONTENT
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/hook")
}

async fn review_notices_reach_outbound_events(db: Db) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let url = receiver(got.clone()).await;
    let e = env_tweaked(db, |c| {
        c.notify.poll_interval = Duration::from_millis(20);
        c.outbound.endpoints = vec![EndpointConfig {
            name: "siem".into(),
            url,
            secret: Some(secrecy::SecretString::from(SECRET)),
            secret_file: None,
            events: vec!["review.opened".into(), "review.overdue".into()],
        }];
    })
    .await;
    campaign(&e, "keep").await;
    let of = |kind: &str| {
        got.lock()
            .unwrap()
            .iter()
            .find(|v| v["type"] == kind)
            .cloned()
    };
    wait_until(Duration::from_secs(10), || async {
        of("review.opened").is_some()
    })
    .await;
    let opened = of("review.opened").unwrap();
    let details = &opened["data"]["details"];
    assert_eq!(details["reviewers"]["carol@example.com"], 3, "{opened:#}");
    assert_eq!(details["reviewers"]["dave@example.com"], 1);
    assert_eq!(opened["data"]["action"], "review.created");
    assert!(of("review.overdue").is_none());
    reviews_at(&e, Duration::from_secs(2 * 3600))
        .await
        .check_once()
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        of("review.overdue").is_some()
    })
    .await;
    let overdue = of("review.overdue").unwrap();
    assert_eq!(overdue["data"]["details"]["undecided"], 5, "{overdue:#}");
    assert_eq!(overdue["data"]["details"]["owner"], "admin");
    assert_eq!(overdue["data"]["details"]["name"], "Q4 access review");
}

both_backends!(review_notices_reach_outbound_events);

/// With Slack, the notices go to the default channel, once per notification.
async fn review_notices_reach_the_slack_default_channel(db: Db) {
    use jit_broker::notify::{kinds, Deliverer};
    let e = crate::slack::env_full(db, false, |_| {}).await;
    let d = e.slack.deliverer();
    assert!(d.wants(kinds::REVIEW_OPENED) && d.wants(kinds::REVIEW_OVERDUE));
    let mut opened = crate::slack::notification(kinds::REVIEW_OPENED, None, None);
    opened.payload = serde_json::json!({"details": {
        "name": "Q4 <review>", "items": 5, "reviewers": {"carol@example.com": 4, "dave@example.com": 1}
    }});
    d.deliver(&opened).await.unwrap();
    d.deliver(&opened).await.unwrap();
    let mut overdue = crate::slack::notification(kinds::REVIEW_OVERDUE, None, None);
    overdue.payload = serde_json::json!({"details": {
        "name": "Q4 <review>", "undecided": 2, "default": "keep", "owner": "admin"
    }});
    d.deliver(&overdue).await.unwrap();
    let posts: Vec<Value> = e
        .fake
        .ok_calls_of("chat.postMessage")
        .into_iter()
        .map(|c| c.body)
        .collect();
    assert_eq!(posts.len(), 2, "{posts:#?}");
    assert!(posts.iter().all(|p| p["channel"] == "C0DEFAULT"));
    let first = posts[0]["text"].as_str().unwrap();
    assert!(
        first.contains("Q4 &lt;review&gt;") && first.contains("carol@example.com"),
        "{first}"
    );
    let second = posts[1]["text"].as_str().unwrap();
    assert!(
        second.contains("overdue") && second.contains("2 item(s) undecided"),
        "{second}"
    );
}

both_backends!(review_notices_reach_the_slack_default_channel);
