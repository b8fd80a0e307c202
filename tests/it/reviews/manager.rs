//! The manager rule: each item goes to the holder's manager from the Okta profile as the sync
//! stored it (`managerId` resolved to a login through the inventory, or a login-like `manager`);
//! no manager known, an unresolvable one, or the holder themselves goes to the fallback.

use super::*;

async fn the_manager_rule_follows_the_okta_profile(db: Db) {
    let e = env(db).await;
    let admin = e.sim.admin("it-admin@example.com");
    // alice: managerId is carol's Okta id. bob: only a login-like `manager`. carol: her own
    // login (self-review). dave: an id nobody has and a display name.
    admin
        .set_manager(ALICE, Some(CAROL), Some("Carol Example"))
        .unwrap();
    admin
        .set_manager(BOB, None, Some("DAVE@example.com"))
        .unwrap();
    admin
        .set_manager(CAROL, Some("carol@example.com"), None)
        .unwrap();
    admin
        .set_manager(DAVE, Some("00u9nobody0000000009"), Some("Some Boss"))
        .unwrap();
    let r = syncer(&e, Duration::ZERO)
        .await
        .run(SyncOptions {
            full: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.outcome, "succeeded", "{r:?}");

    let (s, c) = e
        .post(
            "/v1/reviews",
            json!({
                "name": "Managers' review",
                "resources": ["*"],
                "reviewer": { "rule": "manager" },
                "fallback": "secops@example.com",
                "due_at": due_in(Duration::from_secs(3600)),
                "default": "keep",
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["reviewer"], json!({"rule": "manager"}));
    let id = c["id"].as_str().unwrap();
    let (_, all) = e.get(&format!("/v1/reviews/{id}/items")).await;
    assert_eq!(
        item(&all, ALICE, "db-owners")["reviewer"],
        "carol@example.com"
    );
    assert_eq!(
        item(&all, ALICE, "payroll")["reviewer"],
        "carol@example.com"
    );
    assert_eq!(item(&all, BOB, "db-owners")["reviewer"], "dave@example.com");
    assert_eq!(
        item(&all, CAROL, "user-admin")["reviewer"],
        "secops@example.com"
    );
    assert_eq!(
        item(&all, DAVE, "aws-prod")["reviewer"],
        "secops@example.com"
    );

    // The manager decides; someone else (bob, alice's db-owners approver) cannot.
    let pay = item_no(&all, ALICE, "payroll");
    let (s, err) = e
        .post_as(
            "bob@example.com",
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
            "carol@example.com",
            &format!("/v1/reviews/{id}/items/{pay}/decide"),
            json!({"decision": "keep"}),
        )
        .await;
    assert_eq!(
        (s, d["decided_by"].as_str()),
        (StatusCode::OK, Some("carol@example.com"))
    );
    e.audit_ok().await;
}

async fn the_manager_rule_without_profiles_goes_to_the_fallback(db: Db) {
    let e = env(db).await;
    let (s, c) = e
        .post(
            "/v1/reviews",
            json!({
                "name": "No managers",
                "resources": ["db-owners"],
                "reviewer": { "rule": "manager" },
                "fallback": "dave@example.com",
                "due_at": due_in(Duration::from_secs(3600)),
                "default": "keep",
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let id = c["id"].as_str().unwrap();
    let (_, all) = e.get(&format!("/v1/reviews/{id}/items")).await;
    let items = all["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items.iter().all(|i| i["reviewer"] == "dave@example.com"),
        "{all:#}"
    );
}

both_backends!(
    the_manager_rule_follows_the_okta_profile,
    the_manager_rule_without_profiles_goes_to_the_fallback
);
