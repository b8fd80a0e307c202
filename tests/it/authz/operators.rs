//! Verbs about no particular object, through every channel that offers them: list everyone's,
//! read and verify the audit log, export, sync runs, dead letters, direct grants, campaigns and
//! the inventory. An auditor tries every write here and is refused, changing nothing.

use jit_broker::authz::table::Kind;
use jit_broker::authz::Verb;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::grants::{console_cell, API_KINDS, CONSOLE_KINDS};
use super::*;

both_backends!(operator_verbs_through_the_api_console_and_cli);

async fn operator_verbs_through_the_api_console_and_cli(db: Db) {
    let e = env(db).await;
    // Something only those who list everything see: carol's request and grant of engineering,
    // a resource nobody approves (asked for by the admin on her behalf, granted at once).
    let (s, b) = e
        .api_post(
            Kind::Admin,
            "/v1/requests",
            json!({"resource": "engineering", "reason": "t", "on_behalf_of": "carol@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let carols = b["grant"].clone();
    // What a refused write must leave as it was (with every count and the audit log length).
    let object = format!("/v1/grants/{}", carols["id"].as_str().unwrap());
    let reads: [(Verb, &str); 10] = [
        (Verb::ReadAudit, "/v1/audit"),
        (Verb::ReadSyncRuns, "/v1/sync/runs"),
        (Verb::SeeDeadLetters, "/v1/outbox"),
        (Verb::SeeDeadLetters, "/v1/events"),
        (Verb::ReadReviews, "/v1/reviews"),
        (Verb::ReadInventory, "/v1/inventory/users/alice@example.com"),
        (
            Verb::Export,
            "/v1/reviews/0190f5d2-7c1a-7000-8000-000000000000/report",
        ),
        (Verb::ListAll, "/v1/grants?limit=500"),
        (Verb::ListAll, "/v1/requests?limit=500"),
        (Verb::ReadAudit, "/v1/audit?limit=1"),
    ];
    let writes: [(Verb, &str, serde_json::Value); 5] = [
        (Verb::RetryDeadLetter, "/v1/outbox/1/retry", json!({})),
        (Verb::RetryDeadLetter, "/v1/events/nope/retry", json!({})),
        (
            Verb::CreateGrant,
            "/v1/grants",
            json!({"user": "alice@example.com", "resource": "payroll", "duration": "1h"}),
        ),
        (Verb::ManageReviews, "/v1/reviews", json!({"name": ""})),
        (
            Verb::ManageReviews,
            "/v1/reviews/0190f5d2-7c1a-7000-8000-000000000000/close",
            json!({}),
        ),
    ];
    for kind in API_KINDS {
        for (verb, path) in reads {
            let (s, b) = e.api_get(kind, path).await;
            let allowed = if verb == Verb::ListAll {
                // Everyone may list; only some see what is not theirs.
                let all = b.to_string();
                all.contains(carols["id"].as_str().unwrap())
                    || all.contains("\"user_login\":\"carol@example.com\"")
            } else {
                s != StatusCode::FORBIDDEN
            };
            assert_cell(verb, kind, &format!("api {path}"), allowed, &b.to_string());
        }
        for (verb, path, body) in &writes {
            let before = e.footprint(&object).await;
            let (s, b) = e.api(Method::POST, kind, path, Some(body.clone())).await;
            let allowed = s != StatusCode::FORBIDDEN;
            assert_cell(*verb, kind, &format!("api {path}"), allowed, &b.to_string());
            if !allowed {
                assert_eq!(b["code"], "forbidden", "{b}");
                assert_eq!(e.footprint(&object).await, before, "{kind:?} {path}");
            }
        }
    }
    let pages: [(Verb, &str); 7] = [
        (Verb::ListAll, "/admin/grants"),
        (Verb::ListAll, "/admin/failed"),
        (Verb::ReadAudit, "/admin/audit"),
        (Verb::Export, "/admin/audit/export"),
        (Verb::ReadSyncRuns, "/admin/sync"),
        (Verb::SeeDeadLetters, "/admin/outbox"),
        (Verb::SeeDeadLetters, "/admin/events"),
    ];
    let forms: [(Verb, &str); 3] = [
        (Verb::ReadAudit, "/admin/audit/verify"),
        (Verb::RetryDeadLetter, "/admin/outbox/1/retry"),
        (Verb::RetryDeadLetter, "/admin/events/nope/retry"),
    ];
    for kind in CONSOLE_KINDS {
        for (verb, path) in pages {
            let (status, body) = e.console_get(kind, path).await.unwrap();
            let allowed = status != StatusCode::FORBIDDEN;
            console_cell(verb, kind, allowed, &format!("{path}: {status} {body}"));
        }
        for (verb, path) in forms {
            let before = e.footprint(&object).await;
            let (_, detail) = e.console_post(kind, path, &[]).await.unwrap();
            // Allowed: done (303), or the retry's own refusal (nothing is dead: 400).
            let allowed = !detail.starts_with("403");
            console_cell(verb, kind, allowed, &format!("{path}: {detail}"));
            if !allowed {
                assert_eq!(e.footprint(&object).await, before, "{kind:?} {path}");
            }
        }
    }
    // The command line is an operator: it reads, verifies, exports and syncs.
    for (verb, args) in [
        (Verb::ReadAudit, vec!["audit", "verify"]),
        (Verb::Export, vec!["audit", "export"]),
        (Verb::RunSync, vec!["sync", "--dry-run"]),
        (Verb::ListAll, vec!["grants", "list"]),
    ] {
        let (code, out, err) = e.cli(&args);
        assert_cell(verb, Kind::Admin, "cli", code == 0, &format!("{out}{err}"));
    }
    e.audit_ok().await;
}
