//! The console's main flows over HTTP: request, approve, see, revoke; step-up; role pages.

use reqwest::StatusCode;

use super::*;
use crate::helpers::*;

both_backends!(
    request_approve_and_revoke_through_the_console,
    step_up_approval_sends_the_approver_back_to_okta,
    auditors_see_grants_and_the_verified_audit_chain,
);

async fn request_approve_and_revoke_through_the_console(db: Db) {
    let env = console_env(db, |_| {}).await;
    let alice = Browser::new(&env.app.base);
    let landing = alice.sign_in("alice@example.com").await;
    assert_eq!(landing.status, StatusCode::OK);
    assert!(
        landing.body.contains("You hold no access"),
        "{}",
        landing.body
    );

    let form = alice.get("/request").await;
    assert!(form.body.contains("Administer production"));
    assert!(form.body.contains("Approved by"));
    let done = alice
        .post(
            "/request",
            &[
                ("csrf", &form.csrf()),
                ("resource", "prod-admins"),
                ("duration", "2h"),
                ("reason", "deploy hotfix"),
                ("ticket", ""),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location, "/access?done=requested");
    let access = alice.get(&done.location).await;
    assert!(access.body.contains("sent to its approvers"));
    let id = request_id_in(&access.body);

    let bob = Browser::new(&env.app.base);
    bob.sign_in("bob@example.com").await;
    let inbox = bob.get("/approvals").await;
    assert!(inbox.body.contains(&id), "{}", inbox.body);
    let detail = bob.get(&format!("/approvals/{id}")).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(detail.body.contains("deploy hotfix"));
    let decided = bob
        .post(
            &format!("/approvals/{id}/decide"),
            &[
                ("csrf", &detail.csrf()),
                ("verdict", "approve"),
                ("comment", "ok"),
            ],
        )
        .await;
    assert_eq!(decided.status, StatusCode::SEE_OTHER, "{}", decided.body);
    assert_eq!(decided.location, "/approvals?done=approved");
    wait_until(WAIT, || async { env.sim.is_member(PROD_ADMINS, ALICE) }).await;

    let access = alice.get("/access").await;
    assert!(access.body.contains("state-active"), "{}", access.body);
    let gid = {
        let i = access.body.find("id=\"grant-").unwrap() + "id=\"grant-".len();
        access.body[i..i + 36].to_string()
    };
    let revoked = alice
        .post(
            &format!("/access/grants/{gid}/revoke"),
            &[("csrf", &access.csrf())],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    wait_until(WAIT, || async { !env.sim.is_member(PROD_ADMINS, ALICE) }).await;
    // Bob's decision history shows it.
    assert!(bob.get("/approvals").await.body.contains("approve"));
}

async fn step_up_approval_sends_the_approver_back_to_okta(db: Db) {
    let env = console_env(db, |_| {}).await;
    let alice = Browser::new(&env.app.base);
    let form = alice.sign_in("alice@example.com").await;
    let done = alice
        .post(
            "/request",
            &[
                ("csrf", &form.csrf()),
                ("resource", "on-call"),
                ("duration", "30m"),
                ("reason", "incident 42"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let id = request_id_in(&alice.get("/access").await.body);

    // Bob signed in to Okta 20 minutes ago: his new console session carries that auth_time.
    let bob = Browser::new(&env.app.base);
    bob.sign_in("bob@example.com").await;
    env.sim
        .oidc_age_sessions(std::time::Duration::from_secs(20 * 60));
    let authorize = bob.start_sign_in("/login").await;
    let callback = bob.okta_sign_in(&authorize, "unused: SSO answers").await;
    assert_eq!(bob.get(&callback).await.status, StatusCode::SEE_OTHER);

    // Slack's "Approve in console" link.
    let link = bob.get(&format!("/requests/{id}")).await;
    assert_eq!(link.location, format!("/approvals/{id}"));
    assert_eq!(
        bob.get("/requests/not-an-id").await.status,
        StatusCode::NOT_FOUND
    );
    let detail = bob.get(&format!("/approvals/{id}")).await;
    assert!(detail.body.contains("Step-up"), "{}", detail.body);
    let first = bob
        .post(
            &format!("/approvals/{id}/decide"),
            &[
                ("csrf", &detail.csrf()),
                ("verdict", "approve"),
                ("comment", "ok for the <incident> call"),
            ],
        )
        .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    assert!(
        first.location.starts_with("/login?max_age=300&"),
        "{}",
        first.location
    );
    // Nothing was decided.
    let (_, r) = admin_get(&env.app.http, &env.app.base, &format!("/v1/requests/{id}")).await;
    assert_eq!(r["state"], "pending", "{r}");

    // Okta asks again (the SSO session is older than max_age), then back to the request.
    let authorize = bob.start_sign_in(&first.location).await;
    assert!(authorize.contains("max_age=300"));
    let page = bob.get(&authorize).await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "Okta must show its sign-in page again"
    );
    let callback = bob.okta_sign_in(&authorize, "bob@example.com").await;
    let back = bob.get(&callback).await;
    assert!(
        back.location.starts_with(&format!("/approvals/{id}")),
        "{}",
        back.location
    );
    let detail = bob.get(&back.location).await;
    assert!(detail.body.contains("You signed in again"));
    // Issue 22: the comment typed before the step-up is back in the form (escaped), once.
    assert!(
        detail
            .body
            .contains(">ok for the &#60;incident&#62; call</textarea>"),
        "{}",
        detail.body
    );
    assert!(!detail.body.contains("<incident>"));
    let again = bob.get(&back.location).await;
    assert!(!again.body.contains("call</textarea>"), "{}", again.body);
    let second = bob
        .post(
            &format!("/approvals/{id}/decide"),
            &[
                ("csrf", &detail.csrf()),
                ("verdict", "approve"),
                ("comment", "ok for the <incident> call"),
            ],
        )
        .await;
    assert_eq!(
        second.location, "/approvals?done=approved",
        "{}",
        second.body
    );
    wait_until(WAIT, || async { env.sim.is_member(ON_CALL, ALICE) }).await;
    let (_, r) = admin_get(&env.app.http, &env.app.base, &format!("/v1/requests/{id}")).await;
    assert_eq!(
        r["decisions"][0]["comment"], "ok for the <incident> call",
        "{r}"
    );

    // Sign-ins and sign-outs are in the audit log (issue 22).
    let page = bob.get("/access").await;
    let out = bob.post("/logout", &[("csrf", &page.csrf())]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let (_, audit) = admin_get(&env.app.http, &env.app.base, "/v1/audit?limit=500").await;
    let by = |action: &str| {
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action && e["actor"] == "bob@example.com")
            .count()
    };
    assert_eq!(by("console.sign_in"), 3, "{audit}");
    assert_eq!(by("console.sign_out"), 1, "{audit}");
}

async fn auditors_see_grants_and_the_verified_audit_chain(db: Db) {
    let env = console_env(db, |_| {}).await;
    create_active_grant(
        &env.app.http,
        &env.app.base,
        "dave@example.com",
        "engineering",
        "1h",
        "setup",
    )
    .await;
    let carol = Browser::new(&env.app.base);
    carol.sign_in("carol@example.com").await;
    let grants = carol.get("/admin/grants?state=active").await;
    assert_eq!(grants.status, StatusCode::OK, "{}", grants.body);
    assert!(grants.body.contains("dave@example.com"));
    let none = carol.get("/admin/grants?resource=prod-admins").await;
    assert!(none.body.contains("No grants match"));
    let audit = carol.get("/admin/audit?action=grant.").await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(audit.body.contains("grant.active") || audit.body.contains("grant."));
    // Issue 22: details are fields, with times as times and durations as durations, not JSON.
    assert!(
        audit
            .body
            .contains("<dt>provisional_expires_at</dt><dd><time datetime=\""),
        "{}",
        audit.body
    );
    assert!(
        audit.body.contains("<dt>duration_ms</dt><dd>1h</dd>"),
        "{}",
        audit.body
    );
    assert!(!audit.body.contains("{&quot;"), "{}", audit.body);
    // A date or an RFC 3339 time filters; anything else names both formats.
    let dated = carol.get("/admin/audit?since=2000-01-01T00:00:00Z").await;
    assert_eq!(dated.status, StatusCode::OK, "{}", dated.body);
    let bad = carol.get("/admin/audit?since=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("RFC 3339"), "{}", bad.body);
    // An error page keeps the navigation and the sign-out button (issue 22).
    assert!(
        bad.body.contains(r#"<nav aria-label="Main">"#),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("Sign out"), "{}", bad.body);
    let verified = carol
        .post("/admin/audit/verify", &[("csrf", &audit.csrf())])
        .await;
    assert_eq!(verified.status, StatusCode::SEE_OTHER);
    let audit = carol.get("/admin/audit").await;
    assert!(audit.body.contains("verified up to #"), "{}", audit.body);
    let export = carol.get("/admin/audit/export?format=csv").await;
    assert_eq!(export.status, StatusCode::OK);
    assert!(
        export.body.starts_with("seq,"),
        "{}",
        &export.body[..80.min(export.body.len())]
    );
    // An auditor reads but does not retry.
    let failed = carol.get("/admin/failed").await;
    assert!(failed.body.contains("No failed grants"));
    let sync = carol.get("/admin/sync").await;
    assert_eq!(sync.status, StatusCode::OK, "{}", sync.body);
    assert!(sync.body.contains("No sync has run yet") || sync.body.contains("/admin/sync/"));
    assert_eq!(
        carol.get("/admin/sync/nope").await.status,
        StatusCode::NOT_FOUND
    );
    // Dead letters are for admins (bob), not auditors.
    assert_eq!(
        carol.get("/admin/outbox").await.status,
        StatusCode::FORBIDDEN
    );
    let bob = Browser::new(&env.app.base);
    let page = bob.sign_in("bob@example.com").await;
    let dead = bob.get("/admin/outbox").await;
    assert_eq!(dead.status, StatusCode::OK, "{}", dead.body);
    assert!(dead.body.contains("No dead letters"));
    let events = bob.get("/admin/events").await;
    assert_eq!(events.status, StatusCode::OK, "{}", events.body);
    assert!(events.body.contains("No dead events"));
    let bad = bob
        .post(
            "/admin/events/no-such-event/retry",
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::BAD_REQUEST,
        "an event that is not dead"
    );
    let bad = bob
        .post("/admin/outbox/12345/retry", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(
        bad.status,
        StatusCode::BAD_REQUEST,
        "a delivery that is not dead"
    );
    // Dates that are not dates change nothing and say why.
    let bad = carol.get("/admin/audit?since=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
