//! Only our workspace, only our people: requests signed for another workspace or app, clicks by
//! Slack Connect users, strangers, guests and unconfirmed emails change nothing, even when the
//! person's Slack email is an approver's Okta login.

use super::*;

both_backends!(
    foreign_workspace_requests_change_nothing,
    people_who_are_not_ours_change_nothing,
);

async fn deliveries(e: &Env) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM slack_deliveries")
        .fetch_one(e.app.store().await.pool())
        .await
        .unwrap()
}

async fn refused(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "foreign_workspace", "{v}");
}

async fn foreign_workspace_requests_change_nothing(db: Db) {
    let e = env_with(db, |c| {
        c.slack.team_ids = vec![fake::TEAM.into()];
        c.slack.app_id = "A111".into();
    })
    .await;
    let id = e.alice_requests_prod().await;
    // The approval message is posted first, so the count below moves only if a refused
    // request makes the broker call Slack.
    e.posted(&id).await;
    let (calls, recorded) = (e.fake.calls().len(), deliveries(&e).await);

    // Commands run in another workspace, or for another app.
    for (from, to) in [
        ("team_id=T111", "team_id=T999"),
        ("api_app_id=A111", "api_app_id=A999"),
    ] {
        let body = command_body(
            BOB_S,
            "request engineering 1h x",
            &e.fake.response_url("cmd"),
        )
        .replace(from, to);
        assert_ne!(
            body,
            command_body(
                BOB_S,
                "request engineering 1h x",
                &e.fake.response_url("cmd")
            )
        );
        refused(
            e.signed("/hooks/slack/commands", &body, SECRET, now_secs())
                .await,
        )
        .await;
    }
    // Bob's Approve click from another workspace, from a Slack Connect user of another
    // workspace in our channel, and for another app.
    let tweaks: [fn(&mut Value); 3] = [
        |p| {
            p["team"]["id"] = json!("T999");
            p["user"]["team_id"] = json!("T999");
        },
        |p| p["user"]["team_id"] = json!("T999"),
        |p| p["api_app_id"] = json!("A999"),
    ];
    for tweak in tweaks {
        let mut p = click_payload(BOB_S, "approve", &id, &e.fake.response_url("click"));
        tweak(&mut p);
        refused(e.interaction(&p).await).await;
    }
    // Nothing changed: no request, no decision, no Slack call, not even a recorded delivery.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(e.fake.calls().len(), calls, "{:?}", e.fake.calls());
    assert_eq!(deliveries(&e).await, recorded);
    assert_eq!(e.request_state(&id).await, "pending");
    assert!(e.requests.get(&id).await.unwrap().decisions.is_empty());
    let all = e
        .requests
        .list(&jit_broker::requests::repo::ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    let m = e.app.metrics().await;
    assert!(
        m.contains("jit_slack_inbound_total{outcome=\"foreign\"}"),
        "{m}"
    );

    // The same click from our workspace counts.
    e.click(BOB_S, "approve", &id, "ours").await;
    wait_until(WAIT, || async { e.request_state(&id).await == "approved" }).await;
}

/// A Slack user id, how the fake's user differs from one of ours, and the refusal's words.
type Person = (&'static str, fn(&mut fake::FakeUser), &'static str);

async fn people_who_are_not_ours_change_nothing(db: Db) {
    // No workspace configured: the checks on the person still hold.
    let e = env(db).await;
    let id = e.alice_requests_prod().await;
    // Each of them has bob's email, bob being the approver of prod-admins.
    let people: [Person; 5] = [
        (
            "U0OTHERTEAM",
            |u| u.team_id = "T999".into(),
            "another workspace",
        ),
        ("U0STRANGER", |u| u.stranger = true, "another workspace"),
        ("U0GUEST", |u| u.restricted = true, "guest"),
        ("U0SCGUEST", |u| u.ultra_restricted = true, "guest"),
        (
            "U0UNCONFIRMED",
            |u| u.email_confirmed = Some(false),
            "no confirmed email",
        ),
    ];
    for (user, tweak, why) in people {
        e.fake.add_user_with(user, "bob@example.com", tweak);
        let hook = format!("h-{user}");
        e.click(user, "approve", &id, &hook).await;
        let t = e.answer(&hook).await;
        assert!(
            t.contains(why) && t.contains("Nothing was done"),
            "{user}: {t}"
        );
    }
    // An answer without `is_email_confirmed` counts as unconfirmed, for commands too.
    e.fake.add_user_with("U0NOFIELD", "carol@example.com", |u| {
        u.email_confirmed = None
    });
    e.command("U0NOFIELD", "request engineering 1h x", "nofield")
        .await;
    let t = e.answer("nofield").await;
    assert!(t.contains("no confirmed email"), "{t}");

    assert_eq!(e.request_state(&id).await, "pending");
    assert!(e.requests.get(&id).await.unwrap().decisions.is_empty());
    let all = e
        .requests
        .list(&jit_broker::requests::repo::ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
}

/// `check-config` warns while no workspace or app is named, and not once they are.
#[test]
fn check_config_warns_until_the_workspace_is_named() {
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = broker_cmd();
        cmd.env("JIT_SLACK__BOT_TOKEN", "xoxb-test")
            .env("JIT_SLACK__SIGNING_SECRETS", "[\"s\"]");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.arg("check-config").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = run(&[]);
    assert!(err.contains("warning: `slack.team_ids` is empty"), "{err}");
    assert!(err.contains("warning: `slack.app_id` is empty"), "{err}");
    let err = run(&[
        ("JIT_SLACK__TEAM_IDS", "[\"T0123ABCD\"]"),
        ("JIT_SLACK__APP_ID", "A0123ABCD"),
    ]);
    assert!(!err.contains("warning"), "{err}");
    let out = broker_cmd()
        .env("JIT_SLACK__TEAM_IDS", "[\"not-a-team\"]")
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`slack.team_ids`"));
}
