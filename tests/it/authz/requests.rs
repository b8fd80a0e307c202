//! Request verbs through every channel that offers them: request (API, console, Slack), request
//! on behalf (API), approve and deny (API, console, Slack, CLI, callback), cancel (API, console,
//! CLI), see (API, console, CLI); and break-glass grants.

use jit_broker::authz::table::Kind;
use jit_broker::authz::Verb;
use reqwest::StatusCode;
use serde_json::json;

use super::grants::{console_cell, API_KINDS, CONSOLE_KINDS};
use super::*;

both_backends!(
    requesting_for_oneself_and_for_others,
    approving_and_denying,
    cancelling_and_seeing_a_request,
    break_glass_grants
);

const SLACK_KINDS: [Kind; 4] = [
    Kind::ApproverOfThis,
    Kind::ApproverOfOther,
    Kind::Requester,
    Kind::Holder,
];

async fn requesting_for_oneself_and_for_others(db: Db) {
    let e = env(db).await;
    for kind in API_KINDS {
        let before = e.footprint("/v1/requests").await;
        let (s, b) = e
            .api_post(
                kind,
                "/v1/requests",
                json!({"resource": "payroll", "reason": "t"}),
            )
            .await;
        // Allowed means the rules let it through: the admin token names no Okta user.
        let allowed = s != StatusCode::FORBIDDEN;
        assert_cell(Verb::Request, kind, "api", allowed, &b.to_string());
        if !allowed {
            assert_eq!(e.footprint("/v1/requests").await, before);
        }
    }
    for kind in CONSOLE_KINDS {
        let before = e.footprint("/v1/requests").await;
        let (allowed, detail) = e
            .console_post(
                kind,
                "/request",
                &[
                    ("resource", "aws-prod"),
                    ("reason", "t"),
                    ("duration", "1h"),
                ],
            )
            .await
            .unwrap();
        let allowed = allowed || detail.contains("request_already_pending");
        console_cell(Verb::Request, kind, allowed, &detail);
        if !allowed {
            assert_eq!(e.footprint("/v1/requests").await, before);
        }
    }
    for kind in SLACK_KINDS.into_iter().chain([Kind::SlackUser]) {
        let text = e
            .slack_command(slack_id(kind).unwrap(), "request prod-admins 1h t")
            .await;
        let allowed =
            text.contains("waiting for approval") || text.contains("already have a pending");
        assert_cell(Verb::Request, kind, "slack", allowed, &text);
    }
    // On behalf of alice: admins and portals only, never break-glass.
    for kind in API_KINDS.into_iter().filter(|k| *k != Kind::Holder) {
        e.clear_alice().await;
        let before = e.footprint("/v1/requests").await;
        let (s, b) = e
            .api_post(
                kind,
                "/v1/requests",
                json!({"resource": "prod-admins", "reason": "t", "on_behalf_of": "alice@example.com"}),
            )
            .await;
        let allowed = s == StatusCode::ACCEPTED;
        assert_cell(Verb::RequestOnBehalf, kind, "api", allowed, &b.to_string());
        if allowed {
            assert_eq!(b["request"]["user_login"], "alice@example.com");
        } else {
            assert_eq!(
                (s, b["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("on_behalf_forbidden"))
            );
            assert_eq!(e.footprint("/v1/requests").await, before);
        }
        let before = e.footprint("/v1/requests").await;
        let (s, b) = e
            .api_post(
                kind,
                "/v1/requests",
                json!({"resource": "aws-prod", "reason": "t", "break_glass": true,
                       "on_behalf_of": "alice@example.com"}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{kind:?}: {b}");
        assert_eq!(e.footprint("/v1/requests").await, before);
    }
    e.audit_ok().await;
}

/// One decision through one channel by `kind`: whether it was carried out.
async fn decide(e: &Env, channel: &str, kind: Kind, id: &str, verdict: &str) -> Option<bool> {
    let done = || async { e.request_state(id).await != "pending" };
    Some(match channel {
        "api" => {
            let (s, _) = e
                .api_post(
                    kind,
                    &format!("/v1/requests/{id}/{verdict}"),
                    json!({"comment": "c"}),
                )
                .await;
            s == StatusCode::OK
        }
        "console" => {
            e.console_post(
                kind,
                &format!("/approvals/{id}/decide"),
                &[("verdict", verdict), ("comment", "c")],
            )
            .await?
            .0
        }
        "slack" => {
            let user = slack_id(kind)?;
            if verdict == "approve" {
                e.slack_click(user, "approve", id, done).await.is_none()
            } else {
                e.slack_deny(user, id).await.is_none()
            }
        }
        "cli" => {
            let login = login_of(kind)?;
            e.cli(&["requests", verdict, id, "--as", login]).0 == 0
        }
        _ => {
            let login = login_of(kind)?;
            e.callback(login, id, verdict).await.0 == StatusCode::OK
        }
    })
}

async fn approving_and_denying(db: Db) {
    let e = env(db).await;
    let mut id = e.alice_pending(Kind::Holder).await;
    let channels: [(&str, &[Kind]); 5] = [
        ("api", &API_KINDS),
        ("console", &CONSOLE_KINDS),
        ("slack", &SLACK_KINDS),
        (
            "cli",
            &[
                Kind::ApproverOfThis,
                Kind::ApproverOfOther,
                Kind::Requester,
                Kind::Holder,
            ],
        ),
        (
            "callback",
            &[
                Kind::Callback,
                Kind::ApproverOfOther,
                Kind::Requester,
                Kind::Holder,
            ],
        ),
    ];
    for (verb, word) in [(Verb::Approve, "approve"), (Verb::Deny, "deny")] {
        for (channel, kinds) in channels {
            for kind in kinds.iter().copied() {
                let before = e.footprint(&format!("/v1/requests/{id}")).await;
                let Some(allowed) = decide(&e, channel, kind, &id, word).await else {
                    continue;
                };
                if channel == "console" {
                    console_cell(verb, kind, allowed, channel);
                } else {
                    assert_cell(verb, kind, channel, allowed, "");
                }
                if allowed {
                    let want = if verb == Verb::Approve {
                        "approved"
                    } else {
                        "denied"
                    };
                    wait_until(WAIT, || async { e.request_state(&id).await == want }).await;
                    id = e.alice_pending(Kind::Holder).await;
                } else {
                    assert_eq!(
                        e.footprint(&format!("/v1/requests/{id}")).await,
                        before,
                        "{verb:?} × {kind:?} through {channel} changed something"
                    );
                }
            }
        }
    }
    e.audit_ok().await;
}

async fn cancelling_and_seeing_a_request(db: Db) {
    let e = env(db).await;
    let mut id = e.alice_pending(Kind::Holder).await;
    let api = API_KINDS.into_iter().chain([Kind::PortalSubmitter]);
    for kind in api {
        if kind == Kind::PortalSubmitter {
            id = e.alice_pending(Kind::Portal).await;
        }
        let path = format!("/v1/requests/{id}");
        let (s, b) = e.api_get(kind, &path).await;
        assert_cell(Verb::See, kind, "api", s == StatusCode::OK, &b.to_string());
        let before = e.footprint(&path).await;
        let (s, b) = e.api_post(kind, &format!("{path}/cancel"), json!({})).await;
        let allowed = s == StatusCode::OK;
        assert_cell(Verb::Cancel, kind, "api", allowed, &b.to_string());
        if allowed {
            assert_eq!(b["state"], "cancelled");
            id = e.alice_pending(Kind::Holder).await;
        } else {
            assert_eq!(e.footprint(&path).await, before);
        }
    }
    for kind in CONSOLE_KINDS {
        let (status, body) = e
            .console_get(kind, &format!("/approvals/{id}"))
            .await
            .unwrap();
        console_cell(Verb::See, kind, status == StatusCode::OK, &body);
        let path = format!("/v1/requests/{id}");
        let before = e.footprint(&path).await;
        let (allowed, detail) = e
            .console_post(kind, &format!("/access/requests/{id}/cancel"), &[])
            .await
            .unwrap();
        console_cell(Verb::Cancel, kind, allowed, &detail);
        if allowed {
            assert_eq!(e.request_state(&id).await, "cancelled");
            id = e.alice_pending(Kind::Holder).await;
        } else {
            assert_eq!(e.footprint(&path).await, before);
        }
    }
    let (code, _, err) = e.cli(&["requests", "show", &id]);
    assert_cell(Verb::See, Kind::Admin, "cli", code == 0, &err);
    let (code, _, err) = e.cli(&["requests", "cancel", &id, "--as", "olivia@example.com"]);
    assert_cell(Verb::Cancel, Kind::Admin, "cli", code == 0, &err);
    assert_eq!(e.request_state(&id).await, "cancelled");
    e.audit_ok().await;
}

async fn break_glass_grants(db: Db) {
    let e = env(db).await;
    let emergency = || async {
        let (s, b) = e
            .api_post(
                Kind::Holder,
                "/v1/requests",
                json!({"resource": "aws-prod", "reason": "incident", "break_glass": true}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(b["grant"]["state"], "active", "{b}");
        (
            b["request"]["id"].as_str().unwrap().to_string(),
            b["grant"]["id"].as_str().unwrap().to_string(),
        )
    };
    let (rid, gid) = emergency().await;
    assert!(e.sim.app_assignment_scope(AWS_PROD, ALICE).is_some());
    // Nobody but its holder, an admin or an approver of aws-prod ends it; only its approvers
    // review it.
    for kind in [
        Kind::ApproverOfOther,
        Kind::Requester,
        Kind::Portal,
        Kind::Auditor,
    ] {
        let before = e.footprint(&format!("/v1/grants/{gid}")).await;
        let (s, _) = e
            .api_post(kind, &format!("/v1/grants/{gid}/revoke"), json!({}))
            .await;
        assert_cell(
            Verb::EndEarly,
            kind,
            "api",
            s == StatusCode::OK,
            "break-glass",
        );
        let (s, _) = e
            .api_post(kind, &format!("/v1/requests/{rid}/deny"), json!({}))
            .await;
        assert_cell(
            Verb::Deny,
            kind,
            "api",
            s == StatusCode::OK,
            "break-glass review",
        );
        assert_eq!(e.footprint(&format!("/v1/grants/{gid}")).await, before);
        assert!(e.sim.app_assignment_scope(AWS_PROD, ALICE).is_some());
    }
    // Its approver denies it on review (through Slack): the grant ends.
    let text = e.slack_deny("U0BOB", &rid).await;
    assert!(text.is_none(), "{text:?}");
    wait_until(WAIT, || async { e.grant_state(&gid).await == "revoked" }).await;
    // Another emergency: its approver ends it early in the console.
    let (_, gid) = emergency().await;
    let (allowed, detail) = e
        .console_post(
            Kind::ApproverOfThis,
            &format!("/access/grants/{gid}/revoke"),
            &[],
        )
        .await
        .unwrap();
    console_cell(Verb::EndEarly, Kind::ApproverOfThis, allowed, &detail);
    wait_until(WAIT, || async { e.grant_state(&gid).await == "revoked" }).await;
    assert!(e.sim.app_assignment_scope(AWS_PROD, ALICE).is_none());
    e.audit_ok().await;
}
