//! Figures (printed, never asserted). Run with
//! `cargo test --test it slack::figures -- --ignored --nocapture`; about a minute in all.
//!
//! - Command acknowledgement under 50 concurrent `/jit list` commands (signed, over HTTP):
//!   time from sending to the 200, p50/p99.
//! - Button click to membership in okta-sim: Bob clicks Approve on Alice's pending request; time
//!   until okta-sim reports the membership, p50/p99 over 20 rounds.
//! - Messages per second the client sustains against the fake with Slack's pacing (1 s per
//!   channel): 60 posts over 20 channels, and 5 posts to one channel.

use std::time::Instant;

use super::*;

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures; run on demand"]
async fn figures() {
    let e = env(Db::Sqlite).await;
    // Warm the identity cache and the connection pools, as a running broker would be.
    e.command(ALICE_S, "list", "warm").await;
    e.answer("warm").await;

    let mut tasks = Vec::new();
    for i in 0..50 {
        let body = command_body(ALICE_S, "list", &e.fake.response_url(&format!("ack{i}")));
        let http = e.app.http.clone();
        let url = e.app.url("/hooks/slack/commands");
        tasks.push(tokio::spawn(async move {
            let ts = now_secs().to_string();
            let sig = sign(SECRET, &ts, body.as_bytes());
            let t0 = Instant::now();
            let r = http
                .post(url)
                .header("X-Slack-Request-Timestamp", ts)
                .header("X-Slack-Signature", sig)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            t0.elapsed()
        }));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.push(t.await.unwrap());
    }
    println!(
        "command ack, 50 concurrent: p50 {:?} p99 {:?} max {:?}",
        pct(acks.clone(), 0.5),
        pct(acks.clone(), 0.99),
        acks.iter().max().unwrap()
    );

    let mut lat = Vec::new();
    for round in 0..20 {
        let id = e.alice_requests("prod-admins").await;
        let t0 = Instant::now();
        let r = e
            .click(BOB_S, "approve", &id, &format!("click{round}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        wait_until(WAIT, || async {
            e.sim
                .is_member("00g1prodadmins000001", "00u1alice00000000001")
        })
        .await;
        lat.push(t0.elapsed());
        let g = e.grant_of(&id).await.unwrap();
        e.requests
            .grants()
            .revoke("figures", &g.id, "next round")
            .await
            .unwrap();
        wait_until(WAIT, || async {
            !e.sim
                .is_member("00g1prodadmins000001", "00u1alice00000000001")
        })
        .await;
    }
    println!(
        "button click to okta-sim membership, 20 rounds: p50 {:?} p99 {:?}",
        pct(lat.clone(), 0.5),
        pct(lat, 0.99)
    );

    let mut cfg = e.app.config.slack.clone();
    cfg.channel_interval = Duration::from_secs(1);
    let client = jit_broker::slack::SlackClient::new(&cfg).unwrap();
    let t0 = Instant::now();
    let mut posts = Vec::new();
    for i in 0..60 {
        let c = client.clone();
        let ch = format!("C0FIG{:02}", i % 20);
        posts.push(tokio::spawn(async move {
            c.post_paced(&ch, &json!({"channel": ch, "text": "x"}))
                .await
                .unwrap();
        }));
    }
    for p in posts {
        p.await.unwrap();
    }
    let el = t0.elapsed();
    println!(
        "paced client, 60 posts over 20 channels: {:?}, {:.1} messages/s",
        el,
        60.0 / el.as_secs_f64()
    );
    let t0 = Instant::now();
    for _ in 0..5 {
        client
            .post_paced("C0ONE", &json!({"channel": "C0ONE", "text": "x"}))
            .await
            .unwrap();
    }
    let el = t0.elapsed();
    println!(
        "paced client, 5 posts to one channel: {:?}, {:.2} messages/s",
        el,
        5.0 / el.as_secs_f64()
    );
}
