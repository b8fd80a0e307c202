//! Delegation: a reviewer (or an admin) hands items to another login, singly or in bulk; the
//! item keeps `delegated_from` and each is audited. The new reviewer decides, the old one cannot.
//! Bad input (unknown item or campaign, delegating to the holder, someone else's item, a bulk
//! body with one bad entry, a closed campaign) changes nothing.

use super::*;

async fn delegated(e: &Env) -> Vec<Value> {
    let (_, a) = e.get("/v1/audit?limit=1000").await;
    a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["action"] == "review.delegated")
        .cloned()
        .collect()
}

async fn delegation_moves_the_item_and_is_audited(db: Db) {
    let e = env(db).await;
    let c = campaign(&e, "keep").await;
    let id = c["id"].as_str().unwrap().to_string();
    let (_, all) = e.get(&format!("/v1/reviews/{id}/items")).await;
    let pay = item_no(&all, ALICE, "payroll");
    let bob_db = item_no(&all, BOB, "db-owners");
    let dave_aws = item_no(&all, DAVE, "aws-prod");
    let carol_ua = item_no(&all, CAROL, "user-admin");

    // carol hands alice's payroll item to bob.
    let (s, d) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/items/{pay}/delegate"),
            json!({"to": "bob@example.com", "comment": "bob runs finance now"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(
        (d["reviewer"].as_str(), d["delegated_from"].as_str()),
        (Some("bob@example.com"), Some("carol@example.com"))
    );
    // The old reviewer cannot decide it any more; the new one can.
    let (s, err) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/items/{pay}/decide"),
            json!({"decision": "keep"}),
        )
        .await;
    assert_eq!(
        (s, err["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_your_item"))
    );
    let (s, d) = e
        .post_as(
            "bob@example.com",
            &format!("/v1/reviews/{id}/items/{pay}/decide"),
            json!({"decision": "keep"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let (_, bobs) = e
        .get_as(
            "bob@example.com",
            &format!("/v1/reviews/{id}/items?reviewer=me"),
        )
        .await;
    assert!(bobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["item_id"] == pay));

    // In bulk: carol's other two to alice.
    let (s, d) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/delegations"),
            json!({"delegations": [
                {"item": bob_db, "to": "alice@example.com"},
                {"item": dave_aws, "to": "alice@example.com", "comment": "owns aws"},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["items"].as_array().unwrap().len(), 2);

    // An admin may delegate any item (carol's own access, reviewed by dave).
    let (s, d) = e
        .post(
            &format!("/v1/reviews/{id}/items/{carol_ua}/delegate"),
            json!({"to": "bob@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["delegated_from"], "dave@example.com");

    let entries = delegated(&e).await;
    assert_eq!(entries.len(), 4, "{entries:#?}");
    let first = entries
        .iter()
        .find(|x| x["details"]["item"] == pay)
        .unwrap();
    assert_eq!(first["actor"], "carol@example.com");
    assert_eq!(first["details"]["from"], "carol@example.com");
    assert_eq!(first["details"]["to"], "bob@example.com");
    assert_eq!(first["details"]["comment"], "bob runs finance now");
    let (_, after) = e.get(&format!("/v1/reviews/{id}/items")).await;
    assert_eq!(
        item(&after, BOB, "db-owners")["reviewer"],
        "alice@example.com"
    );
    assert_eq!(
        item(&after, BOB, "db-owners")["delegated_from"],
        "carol@example.com"
    );
    // The report carries it.
    let (_, rep) = e.get(&format!("/v1/reviews/{id}/report")).await;
    assert_eq!(
        item(&rep, ALICE, "payroll")["delegated_from"],
        "carol@example.com"
    );
    e.audit_ok().await;
}

async fn bad_delegations_change_nothing(db: Db) {
    let e = env(db).await;
    let c = campaign(&e, "keep").await;
    let id = c["id"].as_str().unwrap().to_string();
    let (_, before) = e.get(&format!("/v1/reviews/{id}/items")).await;
    let alice_db = item_no(&before, ALICE, "db-owners"); // reviewer bob
    let bob_db = item_no(&before, BOB, "db-owners"); // reviewer carol
    let one = |item: i64, to: &str| json!({"to": to, "comment": null, "item": item});
    let cases: Vec<(&str, String, Value, StatusCode, &str)> = vec![
        (
            "carol@example.com",
            format!("/v1/reviews/{id}/items/999/delegate"),
            json!({"to": "bob@example.com"}),
            StatusCode::NOT_FOUND,
            "unknown_item",
        ),
        (
            "carol@example.com",
            "/v1/reviews/01900000-0000-7000-8000-000000000000/items/1/delegate".into(),
            json!({"to": "bob@example.com"}),
            StatusCode::NOT_FOUND,
            "unknown_campaign",
        ),
        // To the holder: self-review.
        (
            "bob@example.com",
            format!("/v1/reviews/{id}/items/{alice_db}/delegate"),
            json!({"to": "ALICE@example.com"}),
            StatusCode::FORBIDDEN,
            "self_review",
        ),
        // Not the caller's item.
        (
            "dave@example.com",
            format!("/v1/reviews/{id}/items/{bob_db}/delegate"),
            json!({"to": "dave@example.com"}),
            StatusCode::FORBIDDEN,
            "not_your_item",
        ),
        // The holder may not pass their own item on.
        (
            "alice@example.com",
            format!("/v1/reviews/{id}/items/{alice_db}/delegate"),
            json!({"to": "dave@example.com"}),
            StatusCode::FORBIDDEN,
            "self_review",
        ),
        (
            "carol@example.com",
            format!("/v1/reviews/{id}/items/{bob_db}/delegate"),
            json!({"to": ""}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "carol@example.com",
            format!("/v1/reviews/{id}/items/{bob_db}/delegate"),
            json!({"to": 5}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "carol@example.com",
            format!("/v1/reviews/{id}/items/{bob_db}/delegate"),
            json!({"to": "carol@example.com"}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        // All or none: a good entry with a bad one (to the holder) changes nothing.
        (
            "carol@example.com",
            format!("/v1/reviews/{id}/delegations"),
            json!({"delegations": [one(bob_db, "dave@example.com"),
                one(item_no(&before, ALICE, "payroll"), "alice@example.com")]}),
            StatusCode::FORBIDDEN,
            "self_review",
        ),
        (
            "carol@example.com",
            format!("/v1/reviews/{id}/delegations"),
            json!({"delegations": []}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "carol@example.com",
            format!("/v1/reviews/{id}/delegations"),
            json!({"delegations": [one(bob_db, "dave@example.com"), one(bob_db, "alice@example.com")]}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
    ];
    for (who, path, body, status, code) in &cases {
        let (s, v) = e.post_as(who, path, body.clone()).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (*status, Some(*code)),
            "{path} {body}: {v}"
        );
    }
    let (_, after) = e.get(&format!("/v1/reviews/{id}/items")).await;
    assert_eq!(after["items"], before["items"]);
    assert!(delegated(&e).await.is_empty());

    // Closed: refused, nothing changes.
    let (s, _) = e.post(&format!("/v1/reviews/{id}/close"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, closed) = e.get(&format!("/v1/reviews/{id}/items")).await;
    let (s, v) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/items/{bob_db}/delegate"),
            json!({"to": "dave@example.com"}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("campaign_closed"))
    );
    let (s, v) = e
        .post(
            &format!("/v1/reviews/{id}/items/{bob_db}/delegate"),
            json!({"to": "dave@example.com"}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("campaign_closed"))
    );
    let (_, still) = e.get(&format!("/v1/reviews/{id}/items")).await;
    assert_eq!(still["items"], closed["items"]);
    assert!(delegated(&e).await.is_empty());
    e.audit_ok().await;
}

both_backends!(
    delegation_moves_the_item_and_is_audited,
    bad_delegations_change_nothing
);
