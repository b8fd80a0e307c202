//! App assignments (incl. the group-scope refusal), admin roles, users and lifecycle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use okta_sim::seed::{
    ALICE, AWS_PROD, AWS_USERS, BOB, CUSTOM_ROLE, DAVE, ENGINEERING, PAYROLL, RESOURCE_SET,
};
use serde_json::{json, Value};

#[tokio::test]
async fn assign_and_unassign_app_user() {
    let sim = start().await;
    let api = Api::new(&sim);
    let r = api
        .post(
            &format!("/api/v1/apps/{PAYROLL}/users"),
            GROUP_APP,
            &json!({"id": ALICE, "scope": "USER"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], ALICE);
    assert_eq!(body["scope"], "USER");
    for k in ["status", "syncState", "credentials", "profile", "_links"] {
        assert!(body.get(k).is_some(), "missing {k}");
    }
    assert_eq!(
        sim.app_assignment_scope(PAYROLL, ALICE).as_deref(),
        Some("USER")
    );
    // Assigning again is idempotent (200, same AppUser).
    let r = api
        .post(
            &format!("/api/v1/apps/{PAYROLL}/users"),
            SUPER,
            &json!({"id": ALICE, "scope": "USER"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let list: Vec<Value> = api
        .get_json(&format!("/api/v1/apps/{PAYROLL}/users"), READ_ONLY)
        .await;
    assert_eq!(list.len(), 1);
    let r = api
        .delete(&format!("/api/v1/apps/{PAYROLL}/users/{ALICE}"), SUPER)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(sim.app_assignment_scope(PAYROLL, ALICE), None);
    let r = api
        .get(&format!("/api/v1/apps/{PAYROLL}/users/{ALICE}"), SUPER)
        .await;
    assert_eq!(r.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn group_scoped_assignment_cannot_be_removed_per_user() {
    let sim = start().await;
    let api = Api::new(&sim);
    assert_eq!(
        sim.app_assignment_scope(AWS_PROD, DAVE).as_deref(),
        Some("GROUP")
    );
    let r = api
        .delete(&format!("/api/v1/apps/{AWS_PROD}/users/{DAVE}"), SUPER)
        .await;
    let body = expect_error(r, 403, "E0000046").await;
    assert!(body["errorCauses"][0]["errorSummary"]
        .as_str()
        .unwrap()
        .contains("group memberships"));
    assert_eq!(
        sim.app_assignment_scope(AWS_PROD, DAVE).as_deref(),
        Some("GROUP")
    );
    // A direct assignment on top of the group one still cannot be removed.
    let r = api
        .post(
            &format!("/api/v1/apps/{AWS_PROD}/users"),
            SUPER,
            &json!({"id": DAVE, "scope": "USER"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = api
        .delete(&format!("/api/v1/apps/{AWS_PROD}/users/{DAVE}"), SUPER)
        .await;
    assert_eq!(r.status(), 403);
    // Out-of-band: assigning a group to the app gives its members GROUP scope; unassigning
    // the group removes the assignments it alone granted.
    sim.admin("it-admin@example.com")
        .assign_app_group(AWS_PROD, ENGINEERING)
        .unwrap();
    assert!(sim.is_member(ENGINEERING, BOB));
    assert_eq!(
        sim.app_assignment_scope(AWS_PROD, BOB).as_deref(),
        Some("GROUP")
    );
    sim.admin("it-admin@example.com")
        .unassign_app_group(AWS_PROD, ENGINEERING)
        .unwrap();
    assert_eq!(sim.app_assignment_scope(AWS_PROD, BOB), None);
    let _ = AWS_USERS;
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_app_assignment_input_is_400_without_change() {
    let sim = start().await;
    let api = Api::new(&sim);
    let c = &api.c;
    let base = sim.base_url();
    for body in [
        json!({}),
        json!({"id": ALICE, "scope": "GROUP"}),
        json!({"id": ""}),
    ] {
        let r = api
            .post(&format!("/api/v1/apps/{PAYROLL}/users"), SUPER, &body)
            .await;
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap()["errorCode"], "E0000001");
    }
    let r = c
        .post(format!("{base}/api/v1/apps/{PAYROLL}/users"))
        .header("Authorization", ssws(SUPER))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "E0000003").await;
    assert_eq!(sim.app_assignment_scope(PAYROLL, ALICE), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn roles_assign_duplicate_unassign_and_permissions() {
    let sim = start().await;
    let api = Api::new(&sim);
    let base = sim.base_url();
    let url = format!("{base}/api/v1/users/{ALICE}/roles");
    // GroupAppAdmin may not assign roles.
    let r = api
        .post(&url, GROUP_APP, &json!({"type": "USER_ADMIN"}))
        .await;
    expect_error(r, 403, "E0000006").await;
    let r = api.post(&url, SUPER, &json!({"type": "USER_ADMIN"})).await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    for k in ["id", "label", "type", "status", "assignmentType", "_links"] {
        assert!(body.get(k).is_some(), "missing {k}");
    }
    assert_eq!(body["label"], "User Administrator");
    let rid = body["id"].as_str().unwrap().to_string();
    assert_eq!(
        sim.user_roles(ALICE),
        vec![(rid.clone(), "USER_ADMIN".to_string())]
    );
    let r = api.post(&url, SUPER, &json!({"type": "USER_ADMIN"})).await;
    expect_error(r, 409, "E0000090").await;
    // Custom role with its resource set.
    let custom = json!({"type": "CUSTOM", "role": CUSTOM_ROLE, "resource-set": RESOURCE_SET});
    let r = api.post(&url, SUPER, &custom).await;
    assert_eq!(r.status(), 201);
    let cbody: Value = r.json().await.unwrap();
    assert_eq!(cbody["type"], "CUSTOM");
    assert_eq!(cbody["resource-set"], RESOURCE_SET);
    // Unknown types and custom roles: 400 E0000001, no change.
    for bad in [
        json!({"type": "NOT_A_ROLE"}),
        json!({"type": "CUSTOM", "role": "cr0unknown0000000000", "resource-set": RESOURCE_SET}),
        json!({"type": "CUSTOM", "role": CUSTOM_ROLE}),
        json!({}),
    ] {
        let r = api.post(&url, SUPER, &bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.json::<Value>().await.unwrap()["errorCode"], "E0000001");
    }
    assert_eq!(sim.user_roles(ALICE).len(), 2);
    let list: Vec<Value> = api.get_json(&url, READ_ONLY).await;
    assert_eq!(list.len(), 2);
    let r = api.delete(&format!("{url}/{rid}"), SUPER).await;
    assert_eq!(r.status(), 204);
    let r = api.delete(&format!("{url}/{rid}"), SUPER).await;
    assert_eq!(r.status(), 404);
    assert_eq!(sim.user_roles(ALICE).len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn users_get_by_id_or_login_groups_and_sessions() {
    let sim = start().await;
    let api = Api::new(&sim);
    for key in [ALICE, "alice@example.com", "ALICE@example.com"] {
        let r = api.get(&format!("/api/v1/users/{key}"), READ_ONLY).await;
        assert_eq!(r.status(), 200, "{key}");
        assert_eq!(r.json::<Value>().await.unwrap()["id"], ALICE);
    }
    let groups: Vec<Value> = api
        .get_json(&format!("/api/v1/users/{BOB}/groups"), READ_ONLY)
        .await;
    let names: Vec<&str> = groups
        .iter()
        .map(|g| g["profile"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"db-owners")
            && names.contains(&"engineering")
            && names.contains(&"Everyone"),
        "{names:?}"
    );
    let r = api
        .delete(&format!("/api/v1/users/{BOB}/sessions"), READ_ONLY)
        .await;
    assert_eq!(r.status(), 403);
    let r = api
        .delete(&format!("/api/v1/users/{BOB}/sessions"), GROUP_APP)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(sim.sessions_cleared(BOB), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn user_lifecycle_and_delete_flow() {
    let sim = start().await;
    let api = Api::new(&sim);
    let r = api.post("/api/v1/users?activate=false", SUPER, &json!({"profile": {"firstName": "Eve", "lastName": "E", "email": "eve@example.com", "login": "eve@example.com"}})).await;
    assert_eq!(r.status(), 200);
    let u: Value = r.json().await.unwrap();
    assert_eq!(u["status"], "STAGED");
    let id = u["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("00u") && id.len() == 20);
    let r = api
        .post_empty(&format!("/api/v1/users/{id}/lifecycle/activate"), SUPER)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(sim.user_status(&id).as_deref(), Some("ACTIVE"));
    let r = api
        .post_empty(&format!("/api/v1/users/{id}/lifecycle/suspend"), SUPER)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(sim.user_status(&id).as_deref(), Some("SUSPENDED"));
    // DELETE twice: deactivate, then delete (as recorded).
    for _ in 0..2 {
        let r = api.delete(&format!("/api/v1/users/{id}"), SUPER).await;
        assert_eq!(r.status(), 204);
    }
    assert_eq!(sim.user_status(&id), None);
    let r = api.get(&format!("/api/v1/users/{id}"), SUPER).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errorSummary"],
        format!("Not found: Resource not found: {id} (User)")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_users_manager_shows_in_the_profile_only_when_set() {
    let sim = start().await;
    let api = Api::new(&sim);
    let before: Value = api
        .get_json(&format!("/api/v1/users/{ALICE}"), READ_ONLY)
        .await;
    assert!(before["profile"].get("managerId").is_none(), "{before}");
    assert!(before["profile"].get("manager").is_none(), "{before}");
    sim.admin("admin@example.com")
        .set_manager(ALICE, Some(BOB), Some("Bob Example"))
        .unwrap();
    let after: Value = api
        .get_json(&format!("/api/v1/users/{ALICE}"), READ_ONLY)
        .await;
    assert_eq!(after["profile"]["managerId"], BOB);
    assert_eq!(after["profile"]["manager"], "Bob Example");
    assert!(after["lastUpdated"].as_str() > before["lastUpdated"].as_str());
    sim.admin("admin@example.com")
        .set_manager(ALICE, None, None)
        .unwrap();
    let cleared: Value = api
        .get_json(&format!("/api/v1/users/{ALICE}"), READ_ONLY)
        .await;
    assert!(cleared["profile"].get("managerId").is_none(), "{cleared}");
    sim.shutdown().await;
}
