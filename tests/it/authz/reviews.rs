//! Review verbs through every channel that offers them: decide an item (API, console), delegate
//! it (API, console, CLI), read every campaign (API, console, CLI).

use std::time::Duration;

use jit_broker::authz::table::Kind;
use jit_broker::authz::Verb;
use jit_broker::sync::{SyncOptions, Syncer};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::grants::{console_cell, console_expects, API_KINDS, CONSOLE_KINDS};
use super::*;

both_backends!(deciding_and_delegating_review_items);

/// The kinds as review verbs see them: bob is the item's named reviewer.
fn review_kinds(kinds: &[Kind]) -> Vec<Kind> {
    kinds
        .iter()
        .map(|k| match k {
            Kind::ApproverOfThis => Kind::Reviewer,
            k => *k,
        })
        .collect()
}

async fn reviewer_of(e: &Env, items: &str) -> String {
    let (_, v) = e.api_get(Kind::Admin, items).await;
    v["items"][0]["reviewer"].as_str().unwrap().to_string()
}

/// Gives the item back to bob (as the admin), after an allowed delegation moved it.
async fn back_to_bob(e: &Env, id: &str, n: i64) {
    let (s, b) = e
        .api_post(
            Kind::Admin,
            &format!("/v1/reviews/{id}/items/{n}/delegate"),
            json!({"to": "bob@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn deciding_and_delegating_review_items(db: Db) {
    let e = env(db).await;
    e.alice_grant().await;
    let grants = crate::helpers::Env::replica_of(&e.app, Duration::ZERO).await;
    let run = Syncer::new(grants, e.app.config.sync.clone())
        .run(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(run.outcome, "succeeded", "{run:?}");
    let due = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (s, c) = e
        .api_post(
            Kind::Admin,
            "/v1/reviews",
            json!({"name": "authz table review", "resources": ["prod-admins"],
                   "reviewer": {"rule": "approvers"}, "fallback": "olivia@example.com",
                   "due_at": due, "default": "keep"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    let items = format!("/v1/reviews/{id}/items");
    let (_, all) = e.api_get(Kind::Admin, &items).await;
    let item: &Value = &all["items"][0];
    assert_eq!(
        (item["user_login"].as_str(), item["reviewer"].as_str()),
        (Some("alice@example.com"), Some("bob@example.com")),
        "{all}"
    );
    let n = item["item_id"].as_i64().unwrap();

    for kind in review_kinds(&API_KINDS) {
        let before = e.footprint(&items).await;
        let (s, b) = e
            .api_post(
                kind,
                &format!("/v1/reviews/{id}/items/{n}/decide"),
                json!({"decision": "keep", "comment": "needed"}),
            )
            .await;
        let allowed = s == StatusCode::OK;
        assert_cell(Verb::DecideReviewItem, kind, "api", allowed, &b.to_string());
        if !allowed {
            assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
            assert_eq!(e.footprint(&items).await, before);
        }
        let before = e.footprint(&items).await;
        let (s, b) = e
            .api_post(
                kind,
                &format!("/v1/reviews/{id}/items/{n}/delegate"),
                json!({"to": "carol@example.com"}),
            )
            .await;
        let allowed = s == StatusCode::OK;
        assert_cell(
            Verb::DelegateReviewItem,
            kind,
            "api",
            allowed,
            &b.to_string(),
        );
        if allowed {
            assert_eq!(reviewer_of(&e, &items).await, "carol@example.com");
            back_to_bob(&e, &id, n).await;
        } else {
            assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
            assert_eq!(e.footprint(&items).await, before);
        }
        let (s, b) = e.api_get(kind, "/v1/reviews").await;
        assert_cell(
            Verb::ReadReviews,
            kind,
            "api",
            s == StatusCode::OK,
            &b.to_string(),
        );
    }

    for kind in review_kinds(&CONSOLE_KINDS) {
        let before = e.footprint(&items).await;
        let (allowed, detail) = e
            .console_post(
                kind,
                &format!("/reviews/{id}/items/{n}/decide"),
                &[("decision", "keep"), ("comment", "needed")],
            )
            .await
            .unwrap();
        console_cell(Verb::DecideReviewItem, kind, allowed, &detail);
        if !allowed {
            assert_eq!(e.footprint(&items).await, before);
        }
        let before = e.footprint(&items).await;
        let (allowed, detail) = e
            .console_post(
                kind,
                &format!("/reviews/{id}/items/{n}/delegate"),
                &[("to", "carol@example.com")],
            )
            .await
            .unwrap();
        console_cell(Verb::DelegateReviewItem, kind, allowed, &detail);
        if allowed {
            back_to_bob(&e, &id, n).await;
        } else {
            assert_eq!(e.footprint(&items).await, before);
        }
        // Every campaign is listed to those who read them all (bob sees it as its reviewer).
        if kind != Kind::Reviewer {
            let (_, body) = e.console_get(kind, "/reviews").await.unwrap();
            console_cell(
                Verb::ReadReviews,
                kind,
                body.contains("authz table review"),
                "/reviews",
            );
        }
    }
    assert!(console_expects(Verb::DelegateReviewItem, Kind::Admin));

    // The command line delegates as an operator.
    let (code, out, err) = e.cli(&[
        "reviews",
        "delegate",
        &id,
        "--item",
        &n.to_string(),
        "--to",
        "carol@example.com",
    ]);
    assert_cell(
        Verb::DelegateReviewItem,
        Kind::Admin,
        "cli",
        code == 0,
        &format!("{out}{err}"),
    );
    assert_eq!(reviewer_of(&e, &items).await, "carol@example.com");
    let (code, _, err) = e.cli(&["reviews", "list"]);
    assert_cell(Verb::ReadReviews, Kind::Admin, "cli", code == 0, &err);
    e.audit_ok().await;
}
