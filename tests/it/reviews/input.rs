//! Bad input to the review API gets a clear error and changes nothing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;

async fn items_of(e: &Env, id: &str) -> Value {
    let (s, v) = e.get(&format!("/v1/reviews/{id}/items")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["items"].clone()
}

async fn audit_len(e: &Env) -> usize {
    let (_, a) = e.get("/v1/audit?limit=1000").await;
    a["entries"].as_array().unwrap().len()
}

async fn bad_input_changes_nothing(db: Db) {
    let e = env(db).await;
    let c = campaign(&e, "keep").await;
    let id = c["id"].as_str().unwrap().to_string();
    let before = items_of(&e, &id).await;
    let audit_before = audit_len(&e).await;
    let all = json!({ "items": before.clone() });
    let bob_no = item_no(&all, BOB, "db-owners");
    let dave_no = item_no(&all, DAVE, "aws-prod");
    let decide = format!("/v1/reviews/{id}/items/{bob_no}/decide");
    let bulk = format!("/v1/reviews/{id}/decisions");

    let cases: Vec<(&str, String, Value, StatusCode, &str)> = vec![
        // Unknown campaign and item.
        (
            "carol@example.com",
            format!("/v1/reviews/{}/items/1/decide", uuid::Uuid::now_v7()),
            json!({"decision": "keep", "comment": "x"}),
            StatusCode::NOT_FOUND,
            "unknown_campaign",
        ),
        (
            "carol@example.com",
            format!("/v1/reviews/{id}/items/999/decide"),
            json!({"decision": "revoke"}),
            StatusCode::NOT_FOUND,
            "unknown_item",
        ),
        (
            "carol@example.com",
            format!("/v1/reviews/{id}/items/0/decide"),
            json!({"decision": "revoke"}),
            StatusCode::NOT_FOUND,
            "unknown_item",
        ),
        (
            "carol@example.com",
            "/v1/reviews/not%20an%20id/items/1/decide".into(),
            json!({"decision": "revoke"}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        // Someone else's item, through either form.
        (
            "alice@example.com",
            decide.clone(),
            json!({"decision": "revoke"}),
            StatusCode::FORBIDDEN,
            "not_your_item",
        ),
        (
            "bob@example.com",
            decide.clone(),
            json!({"decision": "keep", "comment": "I need it"}),
            StatusCode::FORBIDDEN,
            "self_review",
        ),
        (
            "alice@example.com",
            bulk.clone(),
            json!({"decisions": [{"item": bob_no, "decision": "revoke"}]}),
            StatusCode::FORBIDDEN,
            "not_your_item",
        ),
        // One bad item in a bulk body rejects the whole body.
        (
            "carol@example.com",
            bulk.clone(),
            json!({"decisions": [{"item": dave_no, "decision": "revoke"}, {"item": 999, "decision": "revoke"}]}),
            StatusCode::NOT_FOUND,
            "unknown_item",
        ),
        (
            "carol@example.com",
            bulk.clone(),
            json!({"decisions": [{"item": dave_no, "decision": "revoke"}, {"item": dave_no, "decision": "keep"}]}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        // Keeping unexplained access needs a comment.
        (
            "carol@example.com",
            decide.clone(),
            json!({"decision": "keep"}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "carol@example.com",
            decide.clone(),
            json!({"decision": "keep", "comment": "   "}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        // Malformed bodies.
        (
            "carol@example.com",
            decide.clone(),
            json!({"decision": "maybe"}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "carol@example.com",
            decide.clone(),
            json!({"decision": "revoke", "extra": 1}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "carol@example.com",
            bulk.clone(),
            json!({"decisions": "all"}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "carol@example.com",
            bulk.clone(),
            json!({"decisions": []}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "carol@example.com",
            bulk.clone(),
            json!({"decisions": [{"item": "one", "decision": "revoke"}]}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        // Oversized comment and bulk.
        (
            "carol@example.com",
            decide.clone(),
            json!({"decision": "revoke", "comment": "x".repeat(2001)}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "carol@example.com",
            bulk.clone(),
            json!({"decisions": (0..1001).map(|i| json!({"item": i + 1, "decision": "revoke"})).collect::<Vec<_>>()}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        // A reviewer cannot create or close campaigns.
        (
            "carol@example.com",
            "/v1/reviews".into(),
            json!({"name": "x", "resources": ["*"], "reviewer": {"rule": "approvers"}, "fallback": "dave@example.com", "due_at": due_in(Duration::from_secs(60)), "default": "keep"}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "carol@example.com",
            format!("/v1/reviews/{id}/close"),
            json!({}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
    ];
    for (who, path, body, status, code) in cases {
        let (s, v) = e.post_as(who, &path, body.clone()).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (status, Some(code)),
            "{who} {path} {body}: {v}"
        );
    }
    // The reviewer filter is the caller's only, unless admin or auditor.
    let (s, v) = e
        .get_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/items?reviewer=bob@example.com"),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (s, v) = e.get(&format!("/v1/reviews/{id}/items?who=me")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    let (s, v) = e.get(&format!("/v1/reviews/{id}/report?format=xls")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    let (s, v) = e
        .get(&format!("/v1/reviews/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_campaign"))
    );

    // Bad campaigns are refused and create nothing.
    let ok = json!({"name": "x", "resources": ["db-owners"], "reviewer": {"rule": "approvers"}, "fallback": "dave@example.com", "due_at": due_in(Duration::from_secs(60)), "default": "keep"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    for (body, code) in [
        (with("name", json!("")), "invalid_input"),
        (with("name", json!("x".repeat(201))), "invalid_input"),
        (with("resources", json!([])), "invalid_input"),
        (with("resources", json!(["nope"])), "unknown_resource"),
        (with("due_at", json!("tomorrow")), "invalid_input"),
        (
            with("due_at", json!("2001-01-01T00:00:00Z")),
            "invalid_input",
        ),
        (with("default", json!("delete")), "invalid_json"),
        (
            with("reviewer", json!({"rule": "department"})),
            "invalid_json",
        ),
        (
            with(
                "reviewer",
                json!({"rule": "manager", "login": "x@example.com"}),
            ),
            "invalid_json",
        ),
        (with("fallback", json!("")), "invalid_input"),
        (with("extra", json!(1)), "invalid_json"),
    ] {
        let (s, v) = e.post("/v1/reviews", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["code"], code, "{body}: {v}");
    }
    let (_, list) = e.get("/v1/reviews").await;
    assert_eq!(list["campaigns"].as_array().unwrap().len(), 1);
    assert_eq!(items_of(&e, &id).await, before);
    assert_eq!(audit_len(&e).await, audit_before);

    // After the close, nothing can be decided; the decision is refused and nothing changes.
    reviews_at(&e, Duration::from_secs(2 * 3600))
        .await
        .check_once()
        .await
        .unwrap();
    let closed = items_of(&e, &id).await;
    let audit_closed = audit_len(&e).await;
    let (s, v) = e
        .post_as(
            "carol@example.com",
            &bulk,
            json!({"decisions": [{"item": dave_no, "decision": "revoke"}]}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("campaign_closed"))
    );
    let (s, v) = e.post(&format!("/v1/reviews/{id}/close"), json!({})).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("campaign_closed"))
    );
    assert_eq!(items_of(&e, &id).await, closed);
    assert_eq!(audit_len(&e).await, audit_closed);
    assert!(e.sim.is_member(DB_OWNERS, BOB));
}

both_backends!(bad_input_changes_nothing);
