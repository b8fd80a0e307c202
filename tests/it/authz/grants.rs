//! Grant verbs through every channel that offers them: end early (API, console, CLI), retry a
//! failed grant (API, console, CLI), extend (API, console, Slack), see (API, CLI).

use jit_broker::authz::table::{expected, Kind};
use jit_broker::authz::Verb;
use okta_sim::faults::{FaultConfig, FaultSpec};
use reqwest::StatusCode;
use serde_json::json;

use super::*;

both_backends!(
    ending_a_grant_early,
    retrying_a_failed_grant,
    extending_a_grant,
    seeing_a_grant
);

/// The kinds an API token can be.
pub const API_KINDS: [Kind; 7] = [
    Kind::Admin,
    Kind::Auditor,
    Kind::ApproverOfThis,
    Kind::ApproverOfOther,
    Kind::Requester,
    Kind::Holder,
    Kind::Portal,
];

/// The kinds a console person can be.
pub const CONSOLE_KINDS: [Kind; 7] = [
    Kind::Admin,
    Kind::Auditor,
    Kind::ApproverOfThis,
    Kind::ApproverOfOther,
    Kind::Requester,
    Kind::Holder,
    Kind::ConsoleUser,
];

/// A console auditor is a person too: their own access is theirs to ask for and end.
pub fn console_expects(verb: Verb, kind: Kind) -> bool {
    match kind {
        Kind::Auditor => expected(verb, Kind::Auditor) || expected(verb, Kind::ConsoleUser),
        k => expected(verb, k),
    }
}

pub fn console_cell(verb: Verb, kind: Kind, allowed: bool, detail: &str) {
    assert_eq!(
        allowed,
        console_expects(verb, kind),
        "{verb:?} × {kind:?} through the console ({detail})"
    );
}

async fn ending_a_grant_early(db: Db) {
    let e = env(db).await;
    let mut gid = e.alice_grant().await;
    for kind in API_KINDS {
        let before = e.footprint(&format!("/v1/grants/{gid}")).await;
        let (s, b) = e
            .api_post(
                kind,
                &format!("/v1/grants/{gid}/revoke"),
                json!({"reason": "t"}),
            )
            .await;
        let allowed = s == StatusCode::OK;
        assert_cell(Verb::EndEarly, kind, "api", allowed, &b.to_string());
        if allowed {
            assert!(
                matches!(b["state"].as_str(), Some("revoking" | "revoked")),
                "{b}"
            );
            gid = e.alice_grant().await;
        } else {
            assert_eq!(
                (s, b["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("forbidden"))
            );
            assert_eq!(e.footprint(&format!("/v1/grants/{gid}")).await, before);
        }
    }
    for kind in CONSOLE_KINDS {
        let before = e.footprint(&format!("/v1/grants/{gid}")).await;
        let (allowed, detail) = e
            .console_post(kind, &format!("/access/grants/{gid}/revoke"), &[])
            .await
            .unwrap();
        console_cell(Verb::EndEarly, kind, allowed, &detail);
        if allowed {
            assert!(e.grant_state(&gid).await.starts_with("revok"));
            gid = e.alice_grant().await;
        } else {
            assert!(detail.starts_with("403"), "{detail}");
            assert_eq!(e.footprint(&format!("/v1/grants/{gid}")).await, before);
        }
    }
    // The command line is an operator.
    let (code, out, err) = e.cli(&["grants", "revoke", &gid, "--reason", "operator"]);
    assert_cell(
        Verb::EndEarly,
        Kind::Admin,
        "cli",
        code == 0,
        &format!("{out}{err}"),
    );
    assert_eq!(e.grant_state(&gid).await, "revoked");

    // The dave case: refused as an approver of prod-admins, refused ending alice's grant of it.
    let rid = e.alice_pending(Kind::Holder).await;
    let gid = e.alice_grant().await;
    let (s, b) = e
        .api_post(
            Kind::ApproverOfOther,
            &format!("/v1/requests/{rid}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_approver"))
    );
    let before = e.footprint(&format!("/v1/grants/{gid}")).await;
    let (s, b) = e
        .api_post(
            Kind::ApproverOfOther,
            &format!("/v1/grants/{gid}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{b}"
    );
    assert_eq!(e.footprint(&format!("/v1/grants/{gid}")).await, before);
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    // A portal ending a grant it asked for on alice's behalf: refused too.
    let rid = e.alice_pending(Kind::Portal).await;
    let (s, v) = e
        .api_post(
            Kind::ApproverOfThis,
            &format!("/v1/requests/{rid}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let pg = v["grant"]["id"].as_str().unwrap().to_string();
    let before = e.footprint(&format!("/v1/grants/{pg}")).await;
    let (s, _) = e
        .api_post(
            Kind::PortalSubmitter,
            &format!("/v1/grants/{pg}/revoke"),
            json!({}),
        )
        .await;
    assert_cell(
        Verb::EndEarly,
        Kind::PortalSubmitter,
        "api",
        s == StatusCode::OK,
        "",
    );
    assert_eq!(e.footprint(&format!("/v1/grants/{pg}")).await, before);
    e.audit_ok().await;
}

/// A grant whose removal Okta refuses (403 on the membership DELETE): `failed`.
async fn failed_grant(e: &Env) -> String {
    e.clear_alice().await;
    let gid = e.alice_grant().await;
    e.sim.set_faults(FaultConfig::route(
        "DELETE",
        "/api/v1/groups/{groupId}/users/{userId}",
        FaultSpec {
            error_rate: 1.0,
            error_status: 403,
            ..Default::default()
        },
    ));
    let (s, b) = e
        .api_post(Kind::Admin, &format!("/v1/grants/{gid}/revoke"), json!({}))
        .await;
    assert_eq!(
        (s, b["state"].as_str()),
        (StatusCode::OK, Some("failed")),
        "{b}"
    );
    // The revoke left the grant due in the expiry index: the scheduler tries once more (and
    // fails) before waiting `failed_retry_interval`. Wait for that, so no background attempt
    // runs during the cells.
    wait_until(WAIT, || async {
        let (_, g) = e.api_get(Kind::Admin, &format!("/v1/grants/{gid}")).await;
        g["attempts"].as_i64().unwrap_or(0) >= 2
    })
    .await;
    gid
}

async fn retrying_a_failed_grant(db: Db) {
    let e = env(db).await;
    // Okta keeps refusing while the refused cells run, so nothing could remove the access even
    // if a cell were wrongly allowed: the footprint (audit log included) shows any attempt.
    let gid = failed_grant(&e).await;
    let mut allowed_cells = Vec::new();
    for kind in API_KINDS {
        if expected(Verb::RetryFailed, kind) {
            allowed_cells.push(("api", kind));
            continue;
        }
        let before = e.footprint(&format!("/v1/grants/{gid}")).await;
        let (s, b) = e
            .api_post(kind, &format!("/v1/grants/{gid}/revoke"), json!({}))
            .await;
        assert_cell(
            Verb::RetryFailed,
            kind,
            "api",
            s == StatusCode::OK,
            &b.to_string(),
        );
        assert_eq!(e.footprint(&format!("/v1/grants/{gid}")).await, before);
    }
    for kind in CONSOLE_KINDS {
        if console_expects(Verb::RetryFailed, kind) {
            allowed_cells.push(("console", kind));
            continue;
        }
        let before = e.footprint(&format!("/v1/grants/{gid}")).await;
        let (allowed, detail) = e
            .console_post(kind, &format!("/admin/grants/{gid}/retry"), &[])
            .await
            .unwrap();
        console_cell(Verb::RetryFailed, kind, allowed, &detail);
        assert_eq!(e.footprint(&format!("/v1/grants/{gid}")).await, before);
    }
    allowed_cells.push(("cli", Kind::Admin));
    // Each allowed cell retries its own failed grant once Okta accepts again.
    let mut gid = gid;
    for (i, (channel, kind)) in allowed_cells.iter().enumerate() {
        if i > 0 {
            gid = failed_grant(&e).await;
        }
        e.sim.set_faults(FaultConfig::default());
        let allowed = match *channel {
            "api" => {
                let (s, _) = e
                    .api_post(*kind, &format!("/v1/grants/{gid}/revoke"), json!({}))
                    .await;
                s == StatusCode::OK
            }
            "console" => {
                let (ok, _) = e
                    .console_post(*kind, &format!("/admin/grants/{gid}/retry"), &[])
                    .await
                    .unwrap();
                ok
            }
            _ => e.cli(&["grants", "revoke", &gid, "--reason", "retry"]).0 == 0,
        };
        assert_cell(Verb::RetryFailed, *kind, channel, allowed, "");
        wait_until(WAIT, || async { e.grant_state(&gid).await == "revoked" }).await;
    }
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
    e.audit_ok().await;
}

async fn extending_a_grant(db: Db) {
    let e = env(db).await;
    let gid = e.alice_grant().await;
    let path = format!("/v1/grants/{gid}");
    for kind in API_KINDS {
        let before = e.footprint(&path).await;
        let (s, b) = e
            .api_post(
                kind,
                &format!("/v1/grants/{gid}/extend"),
                json!({"duration": "10m", "reason": "t"}),
            )
            .await;
        let allowed = s.is_success();
        assert_cell(Verb::Extend, kind, "api", allowed, &b.to_string());
        if !allowed {
            assert_eq!(
                (s, b["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("forbidden"))
            );
            assert_eq!(e.footprint(&path).await, before);
        }
        cancel_extensions(&e).await;
    }
    for kind in CONSOLE_KINDS {
        let before = e.footprint(&path).await;
        let (allowed, detail) = e
            .console_post(
                kind,
                &format!("/access/grants/{gid}/extend"),
                &[("duration", "10m"), ("reason", "t")],
            )
            .await
            .unwrap();
        console_cell(Verb::Extend, kind, allowed, &detail);
        if !allowed {
            assert_eq!(e.footprint(&path).await, before);
        }
        cancel_extensions(&e).await;
    }
    for kind in [
        Kind::ApproverOfThis,
        Kind::ApproverOfOther,
        Kind::Requester,
        Kind::Holder,
    ] {
        let before = e.footprint(&path).await;
        let text = e
            .slack_command(slack_id(kind).unwrap(), &format!("extend {gid} 10m more"))
            .await;
        let allowed = e.footprint(&path).await != before;
        assert_cell(Verb::Extend, kind, "slack", allowed, &text);
        if allowed {
            assert!(text.contains("waiting for approval"), "{text}");
        } else {
            assert!(text.contains("only extend your own"), "{text}");
        }
        cancel_extensions(&e).await;
    }
    e.audit_ok().await;
}

/// Cancels alice's pending extension requests (one may wait at a time).
async fn cancel_extensions(e: &Env) {
    let (_, r) = e
        .api_get(
            Kind::Admin,
            "/v1/requests?requester=alice@example.com&state=pending",
        )
        .await;
    for r in r["requests"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        e.api_post(Kind::Admin, &format!("/v1/requests/{id}/cancel"), json!({}))
            .await;
    }
}

async fn seeing_a_grant(db: Db) {
    let e = env(db).await;
    let gid = e.alice_grant().await;
    for kind in API_KINDS {
        let (s, b) = e.api_get(kind, &format!("/v1/grants/{gid}")).await;
        assert_cell(Verb::See, kind, "api", s == StatusCode::OK, &b.to_string());
        if s != StatusCode::OK {
            assert_eq!(
                (s, b["code"].as_str()),
                (StatusCode::NOT_FOUND, Some("not_found"))
            );
        }
    }
    // The lists agree with the rule: bob (approver of prod-admins) lists alice's grant of it,
    // dave (approver of payroll) and erin do not.
    for kind in API_KINDS {
        let (s, b) = e.api_get(kind, "/v1/grants?limit=500").await;
        let listed = s == StatusCode::OK
            && b["grants"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["id"] == gid.as_str());
        assert_cell(Verb::See, kind, "api list", listed, &b.to_string());
    }
    let (code, out, err) = e.cli(&["grants", "show", &gid]);
    assert_cell(
        Verb::See,
        Kind::Admin,
        "cli",
        code == 0,
        &format!("{out}{err}"),
    );
}
