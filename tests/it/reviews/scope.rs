//! Campaign scope options: `include_unmanaged` snapshots the inventory's Okta groups and apps
//! the policy does not manage (listed by `sync.all_groups` / `sync.all_apps`), their revokes go
//! through the same removal path as managed ones (group-inherited app assignments flagged), and
//! `standing_only` leaves out access a live grant explains.

use super::*;

fn find<'a>(items: &'a Value, user: &str, resource: &str) -> Option<&'a Value> {
    items["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["user_id"] == user && i["resource"] == resource)
}

async fn unmanaged_groups_and_apps_are_reviewed_and_revoked(db: Db) {
    let e = env_tweaked(db, |c| {
        c.sync.all_groups = true;
        c.sync.all_apps = true;
    })
    .await;
    // Two apps no policy resource names: wiki assigned to bob directly, crm to the group
    // aws-users (dave inherits it).
    let admin = e.sim.admin("it-admin@example.com");
    let wiki = admin.create_app("wiki").unwrap();
    admin.assign_app(&wiki, BOB).unwrap();
    let crm = admin.create_app("crm").unwrap();
    admin.assign_app_group(&crm, APP_GROUP).unwrap();
    let r = syncer(&e, Duration::ZERO)
        .await
        .run(SyncOptions {
            full: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.outcome, "succeeded", "{r:?}");

    // Without the option only the named managed resource is snapshotted.
    let mut body = json!({
        "name": "Unmanaged review",
        "resources": ["db-owners"],
        "reviewer": { "rule": "approvers" },
        "fallback": "carol@example.com",
        "due_at": due_in(Duration::from_secs(3600)),
        "default": "keep",
    });
    let (s, plain) = e.post("/v1/reviews", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{plain}");
    assert_eq!(plain["include_unmanaged"], false);
    let (_, pi) = e
        .get(&format!(
            "/v1/reviews/{}/items",
            plain["id"].as_str().unwrap()
        ))
        .await;
    assert!(pi["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["resource"] == "db-owners"));

    body["include_unmanaged"] = json!(true);
    let (s, c) = e.post("/v1/reviews", body).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["include_unmanaged"], true);
    let id = c["id"].as_str().unwrap().to_string();
    let (_, all) = e.get(&format!("/v1/reviews/{id}/items")).await;
    let bob_wiki = item(&all, BOB, "wiki");
    assert_eq!(
        (
            bob_wiki["kind"].as_str(),
            bob_wiki["why"].as_str(),
            bob_wiki["scope"].as_str()
        ),
        (Some("okta_app"), Some("standing"), Some("USER"))
    );
    // No approvers for an unmanaged resource: the fallback reviews it.
    assert_eq!(bob_wiki["reviewer"], "carol@example.com");
    assert_eq!(item(&all, DAVE, "crm")["scope"], "GROUP");
    let alice_eng = item(&all, ALICE, "engineering");
    assert_eq!(
        (alice_eng["kind"].as_str(), alice_eng["okta_id"].as_str()),
        (Some("okta_group"), Some(ENGINEERING))
    );
    assert!(find(&all, DAVE, "aws-users").is_some());
    // Managed resources not named stay out; Everyone never appears.
    assert!(find(&all, DAVE, "aws-prod").is_none());
    assert!(all["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["resource"] != "Everyone" && i["resource"] != "payroll"));

    let decisions: Vec<Value> = [(BOB, "wiki"), (DAVE, "crm"), (ALICE, "engineering")]
        .iter()
        .map(|(u, r)| json!({"item": item_no(&all, u, r), "decision": "revoke"}))
        .collect();
    let (s, d) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{id}/decisions"),
            json!({ "decisions": decisions }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let (s, closed) = e.post(&format!("/v1/reviews/{id}/close"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{closed}");
    reviews_at(&e, Duration::ZERO)
        .await
        .check_once()
        .await
        .unwrap();

    assert_eq!(e.sim.app_assignment_scope(&wiki, BOB), None);
    assert!(!e.sim.is_member(ENGINEERING, ALICE));
    // The inherited assignment cannot be removed per user: flagged, still there.
    assert_eq!(
        e.sim.app_assignment_scope(&crm, DAVE).as_deref(),
        Some("GROUP")
    );
    let (_, after) = e.get(&format!("/v1/reviews/{id}/items")).await;
    let w = item(&after, BOB, "wiki");
    assert_eq!(
        (w["remediation"].as_str(), w["read_back"].as_str()),
        (Some("done"), Some("gone"))
    );
    let g = item(&after, ALICE, "engineering");
    assert_eq!(
        (g["remediation"].as_str(), g["read_back"].as_str()),
        (Some("done"), Some("gone"))
    );
    let f = item(&after, DAVE, "crm");
    assert_eq!(
        (f["remediation"].as_str(), f["read_back"].as_str()),
        (Some("flagged"), Some("present"))
    );
    e.audit_ok().await;
}

async fn standing_only_leaves_out_granted_access(db: Db) {
    let e = env(db).await;
    let (s, c) = e
        .post(
            "/v1/reviews",
            json!({
                "name": "Standing only",
                "resources": ["*"],
                "standing_only": true,
                "reviewer": { "rule": "approvers" },
                "fallback": "dave@example.com",
                "due_at": due_in(Duration::from_secs(3600)),
                "default": "keep",
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["standing_only"], true);
    let id = c["id"].as_str().unwrap();
    let (_, all) = e.get(&format!("/v1/reviews/{id}/items")).await;
    // alice's payroll is explained by her grant: left out. Standing and unexplained stay.
    assert!(find(&all, ALICE, "payroll").is_none(), "{all:#}");
    assert!(all["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["why"] != "grant"));
    assert_eq!(item(&all, BOB, "db-owners")["why"], "unexplained");
    assert_eq!(item(&all, ALICE, "db-owners")["why"], "standing");
    assert_eq!(all["items"].as_array().unwrap().len(), 4);

    // A bad option value is refused and stores nothing.
    let (s, v) = e
        .post(
            "/v1/reviews",
            json!({
                "name": "Bad", "resources": ["*"], "standing_only": "yes",
                "reviewer": { "rule": "approvers" }, "fallback": "dave@example.com",
                "due_at": due_in(Duration::from_secs(3600)), "default": "keep",
            }),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    let (_, list) = e.get("/v1/reviews").await;
    assert_eq!(list["campaigns"].as_array().unwrap().len(), 1);
}

both_backends!(
    unmanaged_groups_and_apps_are_reviewed_and_revoked,
    standing_only_leaves_out_granted_access
);
