//! Review notices reach the outbound events (the channel used when Slack is not configured):
//! `review.opened` with each reviewer's item count, `review.reminder` before the due date,
//! `review.overdue` at the due date; with Slack, reviewers get them by DM.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use jit_broker::clock::Clock;
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
            events: vec![
                "review.opened".into(),
                "review.overdue".into(),
                "review.reminder".into(),
            ],
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
    // Due in an hour, inside the default `reviews.remind_before` (2 days): each reviewer is
    // reminded at once, here as an outbound event since Slack is not configured.
    let reminders = || {
        got.lock()
            .unwrap()
            .iter()
            .filter(|v| v["type"] == "review.reminder")
            .cloned()
            .collect::<Vec<_>>()
    };
    wait_until(Duration::from_secs(10), || async {
        reminders()
            .iter()
            .any(|r| r["data"]["reviewer"] == "carol@example.com")
    })
    .await;
    let to_carol = reminders()
        .into_iter()
        .find(|r| r["data"]["reviewer"] == "carol@example.com")
        .unwrap();
    assert_eq!(to_carol["data"]["undecided"], 3, "{to_carol:#}");
    assert_eq!(to_carol["data"]["campaign"], details["campaign"]);
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

/// With Slack, `review.opened` and `review.reminder` reach each reviewer Slack knows by DM with
/// a link to their items; a reviewer Slack does not know (dave) and the owner's
/// `review.overdue` go to the default channel. Each once, however often delivered.
async fn review_notices_reach_reviewers_by_slack_dm(db: Db) {
    use crate::slack::CAROL_S;
    use jit_broker::notify::{kinds, Deliverer};
    let e = crate::slack::env_full(db, false, |c| {
        c.slack.console_url = "https://broker.example.com/".into();
    })
    .await;
    let d = e.slack.deliverer();
    assert!(
        d.wants(kinds::REVIEW_OPENED)
            && d.wants(kinds::REVIEW_OVERDUE)
            && d.wants(kinds::REVIEW_REMINDER)
    );
    let posts = || -> Vec<Value> {
        e.fake
            .ok_calls_of("chat.postMessage")
            .into_iter()
            .map(|c| c.body)
            .collect()
    };
    let link = "<https://broker.example.com/reviews/0190-c1|review them in the console>";

    let mut opened = crate::slack::notification(kinds::REVIEW_OPENED, None, None);
    opened.payload = serde_json::json!({"details": {
        "campaign": "0190-c1", "name": "Q4 <review>", "items": 5, "due_at": 1_800_000_000_000i64,
        "reviewers": {"carol@example.com": 4, "dave@example.com": 1}
    }});
    d.deliver(&opened).await.unwrap();
    d.deliver(&opened).await.unwrap();
    let p = posts();
    assert_eq!(p.len(), 2, "{p:#?}");
    let dm = p
        .iter()
        .find(|x| x["channel"] == CAROL_S)
        .expect("carol's DM");
    let text = dm["text"].as_str().unwrap();
    assert!(
        text.contains("Q4 &lt;review&gt;") && text.contains("4 item(s)") && text.contains(link),
        "{text}"
    );
    assert!(text.contains("by 2027-01-15 08:00 UTC"), "{text}");
    let ch = p
        .iter()
        .find(|x| x["channel"] == "C0DEFAULT")
        .expect("channel post");
    let text = ch["text"].as_str().unwrap();
    assert!(
        text.contains("dave@example.com") && !text.contains("carol"),
        "only the reviewer without Slack is named in the channel: {text}"
    );

    // Reminders: carol by DM, dave in the channel; each once.
    let reminder = |who: &str, n: i64| {
        let mut r = crate::slack::notification(kinds::REVIEW_REMINDER, None, None);
        r.payload = serde_json::json!({
            "campaign": "0190-c1", "name": "Q4 <review>", "reviewer": who, "undecided": n,
            "due_at": 1_800_000_000_000i64,
        });
        r
    };
    let (rc, rd) = (
        reminder("carol@example.com", 3),
        reminder("dave@example.com", 1),
    );
    for r in [&rc, &rd, &rc, &rd] {
        d.deliver(r).await.unwrap();
    }
    let p = posts();
    assert_eq!(p.len(), 4, "{p:#?}");
    let to_carol: Vec<&Value> = p.iter().filter(|x| x["channel"] == CAROL_S).collect();
    assert_eq!(to_carol.len(), 2);
    let text = to_carol[1]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Reminder:")
            && text.contains("3 undecided item(s)")
            && text.contains(link),
        "{text}"
    );
    let text = p[3]["text"].as_str().unwrap();
    assert_eq!(p[3]["channel"], "C0DEFAULT");
    assert!(
        text.starts_with("dave@example.com: Reminder:") && text.contains("1 undecided"),
        "{text}"
    );

    let mut overdue = crate::slack::notification(kinds::REVIEW_OVERDUE, None, None);
    overdue.payload = serde_json::json!({"details": {
        "name": "Q4 <review>", "undecided": 2, "default": "keep", "owner": "admin"
    }});
    d.deliver(&overdue).await.unwrap();
    let p = posts();
    assert_eq!(p.len(), 5, "{p:#?}");
    assert_eq!(p[4]["channel"], "C0DEFAULT");
    let text = p[4]["text"].as_str().unwrap();
    assert!(
        text.contains("overdue") && text.contains("2 item(s) undecided") && text.contains("&lt;"),
        "{text}"
    );
}

both_backends!(review_notices_reach_reviewers_by_slack_dm);

/// Accepts every `review.reminder` (the timed check writes deliveries only for channels that
/// want the kind); nothing is delivered in this test, the notifications table is read instead.
struct Listener;

#[async_trait::async_trait]
impl jit_broker::notify::Deliverer for Listener {
    fn channel(&self) -> &str {
        "test"
    }
    fn wants(&self, kind: &str) -> bool {
        kind == jit_broker::notify::kinds::REVIEW_REMINDER
    }
    async fn deliver(
        &self,
        _n: &jit_broker::notify::Notification,
    ) -> Result<(), jit_broker::notify::DeliveryError> {
        Ok(())
    }
}

/// `review.reminder` with controlled time: nothing before `remind_before` ahead of the due date,
/// then one per reviewer who still has undecided items (not one who decided everything), never
/// twice, and none once the campaign is due.
async fn review_reminders_once_per_reviewer_before_the_due_date(db: Db) {
    use jit_broker::notify::{timed, Channels};
    let e = env(db).await;
    let c = campaign(&e, "keep").await; // due in 1h
    let id = c["id"].as_str().unwrap().to_string();
    let store = e.app.store().await;
    let mut chans = Channels::new();
    chans.add(std::sync::Arc::new(Listener));
    let cfg = timed::TimedConfig {
        notify: e.app.config.notify.clone(),
        remind_before: Duration::from_secs(30 * 60),
    };
    let at = |ahead: Duration| {
        Clock::tokio_at(chrono::Utc::now().timestamp_millis() + ahead.as_millis() as i64)
    };
    let check = |clock: Clock| {
        let (store, chans, cfg) = (store.clone(), chans.clone(), cfg.clone());
        async move {
            timed::check_once(&store, &clock, &chans, &cfg)
                .await
                .unwrap()
        }
    };

    // An hour before the due date, 30 minutes ahead is too early.
    assert_eq!(check(at(Duration::ZERO)).await, 0);

    // Carol decides all of hers; the other reviewers do not.
    let (_, mine) = e
        .get_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/items?reviewer=me"),
        )
        .await;
    let decisions: Vec<Value> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| json!({"item": i["item_id"], "decision": "keep", "comment": "still needed"}))
        .collect();
    assert!(!decisions.is_empty());
    let (s, v) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/decisions"),
            json!({ "decisions": decisions }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, all) = e.get(&format!("/v1/reviews/{id}/items")).await;
    let mut waiting: Vec<(String, i64)> = Vec::new();
    for i in all["items"].as_array().unwrap() {
        if i["decision"].is_null() {
            let r = i["reviewer"].as_str().unwrap().to_string();
            match waiting.iter_mut().find(|(w, _)| *w == r) {
                Some((_, n)) => *n += 1,
                None => waiting.push((r, 1)),
            }
        }
    }
    waiting.sort();
    assert!(!waiting.is_empty() && waiting.iter().all(|(r, _)| r != "carol@example.com"));

    // 45 minutes on: inside the window. One reminder per waiting reviewer, then none again.
    let in_window = Duration::from_secs(45 * 60);
    assert_eq!(check(at(in_window)).await, waiting.len());
    assert_eq!(check(at(in_window)).await, 0);
    assert_eq!(check(at(Duration::from_secs(2 * 3600))).await, 0);

    let rows = sqlx::query("SELECT payload FROM notifications WHERE kind = 'review.reminder'")
        .fetch_all(store.reads())
        .await
        .unwrap();
    let mut got: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            let p: Value =
                serde_json::from_str(&sqlx::Row::get::<String, _>(r, "payload")).unwrap();
            assert_eq!(p["campaign"], id.as_str());
            assert_eq!(p["name"], "Q4 access review");
            assert_eq!(p["due_at"], c["due_at"]);
            (
                p["reviewer"].as_str().unwrap().to_string(),
                p["undecided"].as_i64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, waiting);
}

both_backends!(review_reminders_once_per_reviewer_before_the_due_date);
