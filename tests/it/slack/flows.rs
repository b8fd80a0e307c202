//! People's flows through Slack: request by command and by modal, the approval message and its
//! updates, approve, deny with a reason, step-up, self-approval, a non-approver, a double click,
//! an unmapped user, list and extend.

use super::*;
use jit_broker::notify::kinds;

/// The last approval message posted or updated in `channel`: (text, blocks).
fn last_message(e: &Env, channel: &str) -> Value {
    e.fake
        .calls()
        .into_iter()
        .rev()
        .find(|c| {
            (c.method == "chat.postMessage" || c.method == "chat.update")
                && c.body["channel"] == channel
        })
        .map(|c| c.body)
        .unwrap()
}

async fn command_request_approve_by_button(db: Db) {
    let e = env(db).await;
    let id = e.alice_requests_prod().await;
    assert_eq!(e.request_state(&id).await, "pending");
    // The domain's notification, through the outbox, posts the approval message in the
    // resource's channel.
    let m = e.posted(&id).await;
    assert_eq!(m["channel"], APPROVALS);
    let post = e
        .fake
        .calls_of("chat.postMessage")
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(post.auth.as_deref(), Some("Bearer xoxb-test-token"));
    let all = m["blocks"].to_string();
    for want in [
        "alice@example.com",
        "prod-admins",
        "1h",
        "deploy hotfix",
        "Current access: none",
    ] {
        assert!(all.contains(want), "{want} missing from {all}");
    }
    assert_eq!(buttons(&m["blocks"]), vec!["approve", "deny"]);

    // Bob approves with the button: membership in okta-sim, message updated without buttons.
    let r = e.click(BOB_S, "approve", &id, "bob").await;
    assert_eq!(r.status(), StatusCode::OK);
    wait_until(WAIT, || async { e.sim.is_member(PROD_ADMINS, ALICE) }).await;
    assert_eq!(e.request_state(&id).await, "approved");
    wait_until(WAIT, || async {
        let m = last_message(&e, APPROVALS);
        m.get("ts").is_some() && buttons(&m["blocks"]).is_empty()
    })
    .await;
    let m = last_message(&e, APPROVALS);
    assert!(
        m["blocks"].to_string().contains("bob@example.com approved"),
        "{m}"
    );
    assert!(m["blocks"].to_string().contains("Approved"), "{m}");
    // The requester is told by direct message (approved, then granted).
    let dm_texts = || {
        e.fake
            .calls_of("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["channel"] == ALICE_S)
            .map(|c| c.body["text"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    wait_until(WAIT, || async { dm_texts().len() >= 2 }).await;
    let dms = dm_texts();
    assert!(dms.iter().any(|t| t.contains("was approved")), "{dms:?}");
    assert!(
        dms.iter()
            .any(|t| t.starts_with("You now have prod-admins")),
        "{dms:?}"
    );
    // A second click after the decision: told, nothing changes.
    e.click(BOB_S, "approve", &id, "late").await;
    let t = e.answer("late").await;
    assert!(
        t.contains("already approved") || t.contains("already decided"),
        "{t}"
    );
    let g = e.grant_of(&id).await.unwrap();
    assert_eq!(g.state.as_str(), "active");
}

async fn refused_clicks_change_nothing(db: Db) {
    let e = env(db).await;
    let id = e.alice_requests_prod().await;
    // Self-approval by button.
    e.click(ALICE_S, "approve", &id, "self").await;
    assert!(e.answer("self").await.contains("your own request"));
    // Someone who is not an approver.
    e.click(CAROL_S, "approve", &id, "carol").await;
    assert!(e.answer("carol").await.contains("not an approver"));
    e.click(CAROL_S, "deny", &id, "carol-deny").await;
    assert!(e.answer("carol-deny").await.contains("not an approver"));
    // A user Slack knows but whose account is deactivated.
    e.fake.deactivate_user("U0GONE");
    e.fake.add_user("U0GONE", "dave@example.com");
    e.fake.deactivate_user("U0GONE");
    e.click("U0GONE", "approve", &id, "gone").await;
    assert!(e.answer("gone").await.contains("deactivated"));
    // A Slack user with no Okta account.
    e.fake.add_user("U0STRANGER", "stranger@elsewhere.example");
    e.command("U0STRANGER", "request prod-admins 1h x", "stranger")
        .await;
    let t = e.answer("stranger").await;
    assert!(
        t.contains("no Okta user") && t.contains("Nothing was done"),
        "{t}"
    );
    assert_eq!(e.request_state(&id).await, "pending");
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
    assert!(e.requests.get(&id).await.unwrap().decisions.is_empty());
}

/// Two clicks of Approve arriving together make one decision and one grant.
async fn double_click_makes_one_grant(db: Db) {
    let e = env(db).await;
    let id = e.alice_requests_prod().await;
    let (a, b) = tokio::join!(
        e.click(BOB_S, "approve", &id, "c1"),
        e.click(BOB_S, "approve", &id, "c2")
    );
    assert_eq!(a.status(), StatusCode::OK);
    assert_eq!(b.status(), StatusCode::OK);
    wait_until(WAIT, || async { e.sim.is_member(PROD_ADMINS, ALICE) }).await;
    // One of the two clicks is told it already counted (or that the request is decided).
    let t = e.answer_any(&["c1", "c2"]).await;
    assert!(t.contains("already"), "{t}");
    let v = e.requests.get(&id).await.unwrap();
    assert_eq!(v.decisions.len(), 1);
    let grants = e
        .requests
        .grants()
        .list(&jit_broker::grants::ListFilter {
            user: Some(ALICE.into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(grants.len(), 1);
}

async fn deny_asks_for_a_reason(db: Db) {
    let e = env(db).await;
    let id = e.alice_requests_prod().await;
    e.posted(&id).await;
    e.click(BOB_S, "deny", &id, "deny").await;
    wait_until(WAIT, || async { !e.fake.calls_of("views.open").is_empty() }).await;
    let view = e.fake.calls_of("views.open")[0].body["view"].clone();
    assert_eq!(view["callback_id"], "jit_deny");
    assert_eq!(view["private_metadata"], id.as_str());
    // No reason: the field shows the error, nothing changes.
    let sub = submission(BOB_S, &view, json!({}));
    let r = e.interaction(&sub).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["response_action"], "errors");
    assert!(v["errors"]["reason"].is_string());
    assert_eq!(e.request_state(&id).await, "pending");
    // Carol forging a submission of Bob's modal is refused by the domain.
    let sub = submission(
        CAROL_S,
        &view,
        json!({"reason": {"value": {"type": "plain_text_input", "value": "no"}}}),
    );
    let v: Value = e.interaction(&sub).await.json().await.unwrap();
    assert!(
        v["errors"]["reason"]
            .as_str()
            .unwrap()
            .contains("not an approver"),
        "{v}"
    );
    // With a reason: denied, the message shows it, the requester is told why.
    let sub = submission(
        BOB_S,
        &view,
        json!({"reason": {"value": {"type": "plain_text_input", "value": "not during the freeze"}}}),
    );
    let r = e.interaction(&sub).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(e.request_state(&id).await, "denied");
    wait_until(WAIT, || async {
        let m = last_message(&e, APPROVALS);
        buttons(&m["blocks"]).is_empty()
            && m["blocks"].to_string().contains("not during the freeze")
    })
    .await;
    wait_until(WAIT, || async {
        e.fake
            .calls_of("chat.postMessage")
            .iter()
            .any(|c| c.body["channel"] == ALICE_S)
    })
    .await;
    let dm = last_message(&e, ALICE_S);
    let t = dm["text"].as_str().unwrap();
    assert!(
        t.contains("was denied by bob@example.com: not during the freeze"),
        "{dm}"
    );
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
}

pub fn submission(user: &str, view: &Value, values: Value) -> Value {
    json!({
        "type": "view_submission",
        "user": {"id": user, "name": "x", "team_id": "T111"},
        "team": null, "api_app_id": "A111", "trigger_id": "1.2.3",
        "view": {"id": "V0001", "callback_id": view["callback_id"], "private_metadata": view["private_metadata"],
                 "state": {"values": values}},
    })
}

async fn modal_request_validated_field_by_field(db: Db) {
    let e = env(db).await;
    let r = e.command(ALICE_S, "request", "form").await;
    assert_eq!(r.status(), StatusCode::OK);
    wait_until(WAIT, || async { !e.fake.calls_of("views.open").is_empty() }).await;
    let call = e.fake.calls_of("views.open")[0].body.clone();
    assert_eq!(call["trigger_id"], "111.222.xxx");
    let view = call["view"].clone();
    assert_eq!(view["callback_id"], "jit_request");
    let opts = view["blocks"][0]["element"]["options"].to_string();
    assert!(
        opts.contains("prod-admins") && opts.contains("engineering"),
        "{opts}"
    );
    let val = |v: &str| json!({"type": "plain_text_input", "value": v});
    let sel = |v: &str| json!({"type": "static_select", "selected_option": {"value": v, "text": {"type": "plain_text", "text": v}}});
    // Duration too long: the error is under the duration field.
    let sub = submission(
        ALICE_S,
        &view,
        json!({
        "resource": {"value": sel("prod-admins")}, "duration": {"value": val("9h")}, "reason": {"value": val("x")}}),
    );
    let v: Value = e.interaction(&sub).await.json().await.unwrap();
    assert_eq!(v["response_action"], "errors", "{v}");
    assert!(
        v["errors"]["duration"]
            .as_str()
            .unwrap()
            .contains("maximum"),
        "{v}"
    );
    // Reason missing for a resource that requires one.
    let sub = submission(
        ALICE_S,
        &view,
        json!({
        "resource": {"value": sel("prod-admins")}, "duration": {"value": val("1h")}}),
    );
    let v: Value = e.interaction(&sub).await.json().await.unwrap();
    assert!(
        v["errors"]["reason"]
            .as_str()
            .unwrap()
            .contains("requires a reason"),
        "{v}"
    );
    // An unknown resource (a forged option).
    let sub = submission(ALICE_S, &view, json!({"resource": {"value": sel("nope")}}));
    let v: Value = e.interaction(&sub).await.json().await.unwrap();
    assert!(v["errors"]["resource"].is_string(), "{v}");
    let none = e
        .requests
        .list(&jit_broker::requests::repo::ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    // Valid: the modal closes and the request exists.
    let sub = submission(
        ALICE_S,
        &view,
        json!({
        "resource": {"value": sel("prod-admins")}, "duration": {"value": val("2h")}, "reason": {"value": val("incident 42")}}),
    );
    let r = e.interaction(&sub).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "");
    let one = e
        .requests
        .list(&jit_broker::requests::repo::ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].duration_ms, 2 * 3600 * 1000);
    assert_eq!(one[0].channel, "slack");
    assert_eq!(one[0].requested_by, "alice@example.com");
}

async fn step_up_resource_shows_console_button(db: Db) {
    let e = env_with(db, |c| {
        c.slack.console_url = "https://jit.example.com".into()
    })
    .await;
    e.command(ALICE_S, "request payroll 1h payroll run", "pay")
        .await;
    let text = e.answer("pay").await;
    let id = text.split('`').nth(1).unwrap().to_string();
    let m = e.posted(&id).await;
    assert_eq!(m["channel"], "C0DEFAULT");
    assert_eq!(buttons(&m["blocks"]), vec!["approve_in_console", "deny"]);
    assert!(m["blocks"]
        .to_string()
        .contains(&format!("https://jit.example.com/requests/{id}")));
    // A forged Approve click is refused by the domain's step-up rule.
    e.click(BOB_S, "approve", &id, "forged").await;
    assert!(e.answer("forged").await.contains("fresh Okta sign-in"));
    assert_eq!(e.request_state(&id).await, "pending");
}

async fn list_extend_resources(db: Db) {
    let e = env(db).await;
    // engineering needs no approval: granted at once.
    e.command(ALICE_S, "request engineering 30m onboarding", "eng")
        .await;
    let t = e.answer("eng").await;
    assert!(t.starts_with("Granted: engineering"), "{t}");
    let gid = t.split('`').nth(1).unwrap().to_string();
    e.command(ALICE_S, "list", "list").await;
    let t = e.answer("list").await;
    assert!(t.contains(&gid) && t.contains("left"), "{t}");
    e.command(ALICE_S, "resources", "res").await;
    let t = e.answer("res").await;
    assert!(
        t.contains("`prod-admins`") && t.contains("`payroll`"),
        "{t}"
    );
    e.command(ALICE_S, &format!("extend {gid} 30m more time"), "ext")
        .await;
    let t = e.answer("ext").await;
    assert!(t.starts_with("Granted: engineering"), "{t}");
    // Someone else's grant.
    e.command(BOB_S, &format!("extend {gid} 30m"), "bobext")
        .await;
    assert!(e.answer("bobext").await.contains("your own grants"));
    // The expiring DM carries an Extend button; clicking it extends.
    e.deliver(kinds::GRANT_EXPIRING, None, Some(&gid))
        .await
        .unwrap();
    let dm = e
        .fake
        .calls_of("chat.postMessage")
        .into_iter()
        .rev()
        .find(|c| {
            c.body["channel"] == ALICE_S && c.body["text"].as_str().unwrap().contains("ends in")
        })
        .unwrap()
        .body;
    assert_eq!(buttons(&dm["blocks"]), vec!["extend"]);
    let before = e.requests.grants().get(&gid).await.unwrap().expires_at;
    e.click(ALICE_S, "extend", &gid, "extbtn").await;
    assert!(e.answer("extbtn").await.starts_with("Granted"));
    let after = e.requests.grants().get(&gid).await.unwrap().expires_at;
    assert!(after > before);
}

impl Env {
    /// The first `response_url` answer on any of `hooks`.
    pub async fn answer_any(&self, hooks: &[&str]) -> String {
        wait_until(WAIT, || async {
            hooks
                .iter()
                .any(|h| !self.fake.calls_of(&format!("hook:{h}")).is_empty())
        })
        .await;
        let h = hooks
            .iter()
            .find(|h| !self.fake.calls_of(&format!("hook:{h}")).is_empty())
            .unwrap();
        self.fake.calls_of(&format!("hook:{h}"))[0].body["text"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

both_backends!(
    command_request_approve_by_button,
    refused_clicks_change_nothing,
    double_click_makes_one_grant,
    deny_asks_for_a_reason,
    modal_request_validated_field_by_field,
    step_up_resource_shows_console_button,
    list_extend_resources,
);

/// Break-glass: granted at once, an alert in the channel with Confirm / Deny for the review.
async fn break_glass_alerts_and_review(db: Db) {
    let e = env(db).await;
    e.command(ALICE_S, "breakglass oncall 30m prod is down", "bg")
        .await;
    let t = e.answer("bg").await;
    assert!(t.starts_with("Granted: oncall"), "{t}");
    assert!(e.sim.is_member("00g1oncall0000000003", ALICE));
    let id = e
        .requests
        .list(&jit_broker::requests::repo::ListFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()[0]
        .id
        .clone();
    let m = e.posted(&id).await;
    let all = m["blocks"].to_string();
    assert!(
        all.contains("Break-glass access used") && all.contains("Confirm"),
        "{all}"
    );
    assert_eq!(buttons(&m["blocks"]), vec!["approve", "deny"]);
    e.click(BOB_S, "approve", &id, "review").await;
    wait_until(WAIT, || async {
        buttons(&last_message(&e, APPROVALS)["blocks"]).is_empty()
    })
    .await;
    assert!(e.sim.is_member("00g1oncall0000000003", ALICE));
}

/// A request waiting on its approvers gets a reminder in its message's thread, once per
/// notification; a person Slack does not know is told so.
async fn reminders_and_unknown_users(db: Db) {
    let e = env(db).await;
    let id = e.alice_requests_prod().await;
    e.posted(&id).await;
    let n = notification(kinds::REQUEST_REMINDER, Some(&id), None);
    use jit_broker::notify::Deliverer;
    e.slack.deliverer().deliver(&n).await.unwrap();
    e.slack.deliverer().deliver(&n).await.unwrap();
    let replies: Vec<_> = e
        .fake
        .ok_calls_of("chat.postMessage")
        .into_iter()
        .filter(|c| c.body.get("thread_ts").is_some())
        .collect();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].body["channel"], APPROVALS);
    assert!(replies[0].body["text"]
        .as_str()
        .unwrap()
        .contains("Still waiting"));
    e.click("U0NOBODY", "approve", &id, "nobody").await;
    assert!(e.answer("nobody").await.contains("does not know your user"));
    assert_eq!(e.request_state(&id).await, "pending");
}

both_backends!(break_glass_alerts_and_review, reminders_and_unknown_users);

/// Identity when a person's Okta login is not their email: Slack's verified email finds the one
/// Okta user whose profile has it; an email two Okta users share maps to nobody.
async fn email_that_is_not_the_login(db: Db) {
    let e = env(db).await;
    let admin = e.sim.admin("admin@example.com");
    admin
        .create_user_with_email("ehughes", "erin@example.com", "Erin", "Hughes")
        .unwrap();
    e.fake.add_user("U0ERIN", "erin@example.com");
    e.command("U0ERIN", "request prod-admins 1h deploy hotfix", "erin")
        .await;
    let text = e.answer("erin").await;
    assert!(text.contains("waiting for approval"), "{text}");
    let id = text.split('`').nth(1).unwrap();
    let v = e.requests.get(id).await.unwrap();
    assert_eq!(v.request.user_login, "ehughes");

    // Two Okta users with one email: ambiguous, so nobody; nothing is requested.
    admin
        .create_user_with_email("fhughes", "shared@example.com", "Finn", "Hughes")
        .unwrap();
    admin
        .create_user_with_email("ghughes", "shared@example.com", "Gina", "Hughes")
        .unwrap();
    e.fake.add_user("U0SHARED", "shared@example.com");
    e.command("U0SHARED", "request prod-admins 1h deploy hotfix", "shared")
        .await;
    let text = e.answer("shared").await;
    assert!(!text.contains("waiting for approval"), "{text}");
    assert!(text.contains("shared@example.com"), "{text}");
}

both_backends!(email_that_is_not_the_login);
