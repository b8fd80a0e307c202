//! The deliverer and its client against the fake: Slack's failures become `Retry` (with the
//! `Retry-After`) or `Permanent`, posts to one channel are paced, redeliveries post nothing
//! twice, and a Slack outage never holds up a grant.

use super::*;
use jit_broker::notify::{kinds, Deliverer, DeliveryError};
use jit_broker::RunOptions;

async fn failures_map_to_retry_or_permanent(db: Db) {
    let e = env_full(db, false, |_| {}).await;
    let id = e.alice_requests("prod-admins").await;
    e.fake
        .fail("chat.postMessage", fake::Failure::RateLimited(7));
    match e.deliver(kinds::REQUEST_CREATED, Some(&id), None).await {
        Err(DeliveryError::Retry { after, .. }) => assert_eq!(after, Some(Duration::from_secs(7))),
        other => panic!("{other:?}"),
    }
    e.fake.fail("chat.postMessage", fake::Failure::Status(503));
    assert!(matches!(
        e.deliver(kinds::REQUEST_CREATED, Some(&id), None).await,
        Err(DeliveryError::Retry { after: None, .. })
    ));
    e.fake
        .fail("chat.postMessage", fake::Failure::Api("ratelimited"));
    assert!(matches!(
        e.deliver(kinds::REQUEST_CREATED, Some(&id), None).await,
        Err(DeliveryError::Retry { .. })
    ));
    for code in ["channel_not_found", "not_in_channel", "invalid_auth"] {
        e.fake.fail("chat.postMessage", fake::Failure::Api(code));
        match e.deliver(kinds::REQUEST_CREATED, Some(&id), None).await {
            Err(DeliveryError::Permanent(m)) => assert!(m.contains(code), "{m}"),
            other => panic!("{code}: {other:?}"),
        }
    }
    // None of the failures left a record: the next attempt posts.
    assert!(e.slack.message_of(&id).await.unwrap().is_none());
    e.deliver(kinds::REQUEST_CREATED, Some(&id), None)
        .await
        .unwrap();
    assert!(e.slack.message_of(&id).await.unwrap().is_some());
    // A redelivery (a crash after the post) updates the message, never posts a second one.
    let posts = e.fake.calls_of("chat.postMessage").len();
    e.deliver(kinds::REQUEST_CREATED, Some(&id), None)
        .await
        .unwrap();
    assert_eq!(e.fake.calls_of("chat.postMessage").len(), posts);
    assert_eq!(e.fake.calls_of("chat.update").len(), 1);
    // An update that Slack refuses for good (the message was deleted) is permanent too.
    e.fake
        .fail("chat.update", fake::Failure::Api("message_not_found"));
    assert!(matches!(
        e.deliver(kinds::REQUEST_CANCELLED, Some(&id), None).await,
        Err(DeliveryError::Permanent(_))
    ));
    // Unknown ids are permanent: retrying cannot make the request exist.
    let nobody = uuid::Uuid::now_v7().to_string();
    assert!(matches!(
        e.deliver(kinds::REQUEST_CREATED, Some(&nobody), None).await,
        Err(DeliveryError::Permanent(_))
    ));
    let d = e.slack.deliverer();
    assert_eq!(d.channel(), "slack");
    // Every kind for people; audit checkpoints are for other systems.
    assert!(kinds::ALL
        .iter()
        .filter(|k| **k != kinds::AUDIT_CHECKPOINT)
        .all(|k| d.wants(k)));
    assert!(!d.wants(kinds::AUDIT_CHECKPOINT));
    let n = notification(kinds::REQUEST_DECIDED, Some(&id), None);
    assert_eq!(d.partition(&n), format!("request:{id}"));
}

/// Posts to one channel are spaced by `channel_interval`; other channels are not held up.
async fn posts_to_one_channel_are_paced(db: Db) {
    let e = env_full(db, false, |c| {
        c.slack.channel_interval = Duration::from_millis(300)
    })
    .await;
    let client = e.slack.client().clone();
    let t0 = std::time::Instant::now();
    let mut handles = Vec::new();
    for i in 0..4 {
        let c = client.clone();
        handles.push(tokio::spawn(async move {
            c.post_paced(
                "C0PACE",
                &json!({"channel": "C0PACE", "text": format!("m{i}")}),
            )
            .await
            .unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    // Lower bounds only (a loaded machine may delay a post, never speed one up): the k-th post
    // to one channel cannot reach Slack before k intervals have passed.
    let mut at: Vec<_> = e
        .fake
        .calls_of("chat.postMessage")
        .iter()
        .map(|c| c.at)
        .collect();
    at.sort();
    assert_eq!(at.len(), 4);
    for (k, t) in at.iter().enumerate() {
        assert!(
            *t - t0 >= Duration::from_millis(300) * k as u32,
            "post {k} after {:?}",
            *t - t0
        );
    }
    // A 429's Retry-After holds the channel's next post back.
    e.fake
        .fail("chat.postMessage", fake::Failure::RateLimited(1));
    let r = client
        .post_paced("C0LIMIT", &json!({"channel": "C0LIMIT", "text": "a"}))
        .await;
    assert!(r.is_err());
    let t0 = std::time::Instant::now();
    client
        .post_paced("C0LIMIT", &json!({"channel": "C0LIMIT", "text": "b"}))
        .await
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(900));
}

/// Interactive calls (a modal, an answer) retry a 429 and a 5xx by themselves.
async fn interactive_calls_retry(db: Db) {
    let e = env(db).await;
    e.fake.fail("views.open", fake::Failure::RateLimited(1));
    e.fake.fail("views.open", fake::Failure::Status(502));
    e.command(ALICE_S, "request", "form").await;
    wait_until(WAIT, || async { e.fake.calls_of("views.open").len() == 3 }).await;
    // An expired trigger is not retried: the person is told to try again.
    e.fake
        .fail("views.open", fake::Failure::Api("expired_trigger_id"));
    e.command(ALICE_S, "request", "form2").await;
    assert!(e.answer("form2").await.contains("could not be opened"));
}

/// Slack down during a burst of requests: every grant is made on time (nothing waits for
/// Slack), and every notification is delivered once Slack is back.
async fn slack_outage_holds_up_nothing(db: Db) {
    let e = env_full(db, false, |_| {}).await;
    e.fake.set_outage(true);
    let mut grants = Vec::new();
    for _ in 0..5 {
        // engineering needs no approval; the outbox would deliver grant.activated to Slack.
        let c = e
            .requests
            .create(
                &jit_broker::requests::Actor::new(
                    "alice@example.com",
                    jit_broker::requests::Channel::Slack,
                ),
                jit_broker::requests::NewRequest {
                    resource: "engineering".into(),
                    duration: Some("1h".into()),
                    reason: Some("burst".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let g = c.grant.unwrap();
        assert_eq!(g.state.as_str(), "active");
        grants.push(g.id.clone());
        e.requests
            .grants()
            .revoke("test", &g.id, "next")
            .await
            .unwrap();
    }
    let pending: Vec<_> = grants
        .iter()
        .map(|g| notification(kinds::GRANT_ACTIVATED, None, Some(g)))
        .collect();
    for n in &pending {
        assert!(matches!(
            e.slack.deliverer().deliver(n).await,
            Err(DeliveryError::Retry { .. })
        ));
    }
    e.fake.set_outage(false);
    for n in &pending {
        e.slack.deliverer().deliver(n).await.unwrap();
        // A crash after delivery means the outbox delivers again: nothing is posted twice.
        e.slack.deliverer().deliver(n).await.unwrap();
    }
    let dms = e
        .fake
        .calls_of("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["channel"] == ALICE_S)
        .count();
    assert_eq!(dms, grants.len());
}

/// Slack stores a post but its answer is lost on the way back (as after a timeout, or a crash
/// before the broker recorded it): the next attempt finds the message in the conversation's
/// history by the key in its metadata and posts nothing again. For an approval message in a
/// channel, and for a direct message (read through its DM conversation).
async fn lost_answers_post_nothing_twice(db: Db) {
    let e = env_full(db, false, |_| {}).await;
    let id = e.alice_requests("prod-admins").await;
    e.fake.fail("chat.postMessage", fake::Failure::Lost(502));
    assert!(matches!(
        e.deliver(kinds::REQUEST_CREATED, Some(&id), None).await,
        Err(DeliveryError::Retry { .. })
    ));
    assert!(e.slack.message_of(&id).await.unwrap().is_none());
    assert_eq!(e.fake.messages_containing(&id).len(), 1);
    e.deliver(kinds::REQUEST_CREATED, Some(&id), None)
        .await
        .unwrap();
    let posted = e.fake.messages_containing(&id);
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(posted[0]["metadata"]["event_type"], "jit_broker_post");
    assert_eq!(e.fake.calls_of("chat.postMessage").len(), 1);
    assert_eq!(e.fake.calls_of("conversations.history").len(), 1);
    let (channel, _) = e.slack.message_of(&id).await.unwrap().unwrap();
    assert_eq!(channel, APPROVALS);
    // Later updates go to the adopted message.
    e.deliver(kinds::REQUEST_CANCELLED, Some(&id), None)
        .await
        .unwrap();
    assert_eq!(e.fake.calls_of("chat.update").len(), 1);

    // A direct message: alice's access to engineering (no approval needed).
    let c = e
        .requests
        .create(
            &jit_broker::requests::Actor::new(
                "alice@example.com",
                jit_broker::requests::Channel::Slack,
            ),
            jit_broker::requests::NewRequest {
                resource: "engineering".into(),
                duration: Some("1h".into()),
                reason: Some("lost answer".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let g = c.grant.unwrap();
    let n = notification(kinds::GRANT_ACTIVATED, None, Some(&g.id));
    e.fake.fail("chat.postMessage", fake::Failure::Lost(500));
    assert!(matches!(
        e.slack.deliverer().deliver(&n).await,
        Err(DeliveryError::Retry { .. })
    ));
    e.slack.deliverer().deliver(&n).await.unwrap();
    e.slack.deliverer().deliver(&n).await.unwrap();
    let dms = e.fake.messages_containing("You now have engineering");
    assert_eq!(dms.len(), 1, "{dms:?}");
    assert_eq!(e.fake.calls_of("conversations.open").len(), 1);

    // An answer that says Slack posted nothing (rate limited) leaves no history to read: the
    // retry just posts.
    let n = notification(kinds::GRANT_EXTENDED, None, Some(&g.id));
    e.fake
        .fail("chat.postMessage", fake::Failure::RateLimited(1));
    assert!(matches!(
        e.slack.deliverer().deliver(&n).await,
        Err(DeliveryError::Retry { .. })
    ));
    let reads = e.fake.calls_of("conversations.history").len();
    e.slack.deliverer().deliver(&n).await.unwrap();
    assert_eq!(e.fake.calls_of("conversations.history").len(), reads);
    assert_eq!(e.fake.messages_containing("now ends at").len(), 1);
}

both_backends!(
    lost_answers_post_nothing_twice,
    failures_map_to_retry_or_permanent,
    posts_to_one_channel_are_paced,
    interactive_calls_retry,
    slack_outage_holds_up_nothing,
);

/// Slack down while requests are made; the broker stops with their messages queued in the
/// outbox; a new process on the same database delivers every one once Slack is back, none twice.
async fn queued_messages_survive_restart(db: Db) {
    let tweak = |c: &mut jit_broker::Config| {
        c.outbox.backoff_base = Duration::from_millis(100);
        c.outbox.backoff_max = Duration::from_millis(300);
    };
    let mut e = env_with(db, tweak).await;
    e.fake.set_outage(true);
    let mut ids = Vec::new();
    for (who, res) in [
        ("alice@example.com", "prod-admins"),
        ("alice@example.com", "payroll"),
        ("carol@example.com", "prod-admins"),
    ] {
        let c = e
            .requests
            .create(
                &jit_broker::requests::Actor::new(who, jit_broker::requests::Channel::Slack),
                jit_broker::requests::NewRequest {
                    resource: res.into(),
                    duration: Some("1h".into()),
                    reason: Some("queued".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        ids.push(c.request.id);
    }
    // The outbox tried (and failed) before the stop.
    wait_until(WAIT, || async {
        e.fake.calls_of("chat.postMessage").len() >= 3
    })
    .await;
    e.app.signal_shutdown();
    let base = e.app.base.clone();
    wait_until(WAIT, || async {
        e.app
            .http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    })
    .await;
    assert!(e.fake.ok_calls_of("chat.postMessage").is_empty());
    e.fake.set_outage(false);
    let (addr, _stop, _handle) = start_broker(e.app.config.clone(), RunOptions::default()).await;
    wait_healthy(&e.app.http, &format!("http://{addr}"), WAIT).await;
    for id in &ids {
        wait_until(WAIT, || async {
            e.slack.message_of(id).await.unwrap().is_some()
        })
        .await;
    }
    // Let any duplicate that would come arrive before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in &ids {
        let n = e
            .fake
            .ok_calls_of("chat.postMessage")
            .iter()
            .filter(|c| c.body["blocks"].to_string().contains(id.as_str()))
            .count();
        assert_eq!(n, 1, "request {id} posted {n} times");
    }
}

both_backends!(queued_messages_survive_restart);

/// Through the whole broker: Slack is down while a burst of requests is granted and expires.
/// Every grant is made and every expiry happens on time (nothing waits for Slack); once Slack is
/// back, every message arrives, each once.
async fn outage_during_burst_end_to_end(db: Db) {
    let e = env_with(db, |c| {
        c.outbox.backoff_base = Duration::from_millis(100);
        c.outbox.backoff_max = Duration::from_millis(400);
    })
    .await;
    e.fake.set_outage(true);
    let actor =
        |who: &str| jit_broker::requests::Actor::new(who, jit_broker::requests::Channel::Slack);
    let mut grants = Vec::new();
    for who in ["alice@example.com", "bob@example.com", "carol@example.com"] {
        let c = e
            .requests
            .create(
                &actor(who),
                jit_broker::requests::NewRequest {
                    resource: "engineering".into(),
                    duration: Some("2s".into()),
                    reason: Some("burst".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let g = c.grant.unwrap();
        assert_eq!(g.state.as_str(), "active");
        grants.push(g);
    }
    // Expiry with Slack still down: every grant is revoked at its time, not held for Slack.
    for g in &grants {
        wait_until(WAIT, || async {
            e.requests.grants().get(&g.id).await.unwrap().state.as_str() == "revoked"
        })
        .await;
        // Revoked by the scheduler while Slack is still down: nothing waited for Slack.
        let ended = e.requests.grants().get(&g.id).await.unwrap();
        assert!(ended.ended_at.unwrap() >= g.expires_at, "{ended:?}");
    }
    assert!(e.fake.ok_calls_of("chat.postMessage").is_empty());
    // The DM lookups failed: the outbox kept the notifications and retried.
    let (_, ob) = admin_get(
        &e.app.http,
        &e.app.base,
        "/v1/outbox?state=pending&channel=slack",
    )
    .await;
    assert!(!ob["deliveries"].as_array().unwrap().is_empty(), "{ob}");
    assert!(!e.fake.calls().is_empty(), "the outbox kept trying");
    e.fake.set_outage(false);
    // Each holder: "You now have …" and "… has ended", once each.
    for (slack_user, _) in [(ALICE_S, 0), (BOB_S, 1), (CAROL_S, 2)] {
        let texts = || {
            e.fake
                .ok_calls_of("chat.postMessage")
                .into_iter()
                .filter(|c| c.body["channel"] == slack_user)
                .map(|c| c.body["text"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        wait_until(WAIT, || async { texts().len() >= 2 }).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = texts();
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0].starts_with("You now have engineering"), "{t:?}");
        assert!(t[1].ends_with("has ended."), "{t:?}");
    }
}

both_backends!(outage_during_burst_end_to_end);

/// `kill -9` of the broker process with Slack messages queued (Slack was down): after a restart
/// every message is delivered, each once.
async fn queued_messages_survive_kill_9(db: Db) {
    use crate::e2e_faults::child::ChildBroker;
    let fake = fake::FakeSlack::start().await;
    fake.add_user(ALICE_S, "alice@example.com");
    fake.add_user(BOB_S, "bob@example.com");
    fake.add_user(CAROL_S, "carol@example.com");
    fake.set_outage(true);
    let sim = okta_sim::spawn(okta_sim::SimConfig::default())
        .await
        .unwrap();
    let overrides = vec![
        ("JIT_SLACK__BOT_TOKEN", "xoxb-test-token".to_string()),
        ("JIT_SLACK__SIGNING_SECRETS", format!("[\"{SECRET}\"]")),
        ("JIT_SLACK__API_BASE_URL", fake.api_url()),
        ("JIT_SLACK__CHANNEL_INTERVAL", "50ms".to_string()),
        ("JIT_OUTBOX__BACKOFF_BASE", "20ms".to_string()),
        ("JIT_OUTBOX__BACKOFF_MAX", "100ms".to_string()),
        ("JIT_NOTIFY__POLL_INTERVAL", "20ms".to_string()),
    ];
    let mut b = ChildBroker::start(TestDb::new(db).await, &sim.base_url(), overrides).await;
    let users = [
        ("alice@example.com", ALICE_S),
        ("bob@example.com", BOB_S),
        ("carol@example.com", CAROL_S),
    ];
    for (u, _) in users {
        b.grant(u, "prod-db-admin", "1h").await;
    }
    wait_until(Duration::from_secs(15), || async {
        let (_, v) = b.get("/v1/outbox?state=pending&channel=slack").await;
        v["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == users.len())
            && !fake.calls().is_empty()
    })
    .await;
    b.kill9();
    fake.set_outage(false);
    b.restart().await;
    // The dead process's lease on the channel lapses first (10 s), then the queue drains.
    let dms = || {
        fake.ok_calls_of("chat.postMessage")
            .into_iter()
            .map(|c| c.body["channel"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    wait_until(Duration::from_secs(40), || async {
        dms().len() >= users.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = dms();
    got.sort();
    let mut want: Vec<String> = users.iter().map(|(_, s)| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    b.audit_ok().await;
}

both_backends!(queued_messages_survive_kill_9);
