//! Group routes: membership add/remove, listing with filters, pagination, refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use okta_sim::seed::{ALICE, AWS_USERS, BOB, DB_OWNERS, EVERYONE, PROD_ADMINS};
use serde_json::Value;

#[tokio::test]
async fn add_and_remove_member_round_trip() {
    let sim = start().await;
    let api = Api::new(&sim);
    let url = format!("/api/v1/groups/{PROD_ADMINS}/users/{ALICE}");
    let before = sim.last_membership_updated(PROD_ADMINS).unwrap();
    let r = api.put_empty(&url, SUPER).await;
    assert_eq!(r.status(), 204);
    assert!(r.headers().contains_key("x-okta-request-id"));
    assert!(r.headers().contains_key("x-rate-limit-remaining"));
    assert!(r.headers().contains_key("date"));
    assert!(sim.is_member(PROD_ADMINS, ALICE));
    let after = sim.last_membership_updated(PROD_ADMINS).unwrap();
    assert!(after > before);

    let list: Vec<Value> = api
        .get_json(&format!("/api/v1/groups/{PROD_ADMINS}/users"), READ_ONLY)
        .await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], ALICE);

    let r = api.delete(&url, GROUP_APP).await;
    assert_eq!(r.status(), 204);
    assert!(!sim.is_member(PROD_ADMINS, ALICE));
    assert!(sim.last_membership_updated(PROD_ADMINS).unwrap() > after);
    assert_eq!(
        sim.counter("DELETE", "/api/v1/groups/{groupId}/users/{userId}"),
        1
    );
    assert_eq!(
        sim.mutation_count("PUT", "/api/v1/groups/{groupId}/users/{userId}"),
        1
    );
    // Removing again: still 204 (already gone), no membership change.
    let r = api.delete(&url, SUPER).await;
    assert_eq!(r.status(), 204);
    sim.shutdown().await;
}

#[tokio::test]
async fn read_only_and_bad_tokens_are_refused() {
    let sim = start().await;
    let api = Api::new(&sim);
    let c = &api.c;
    let url = format!(
        "{}/api/v1/groups/{PROD_ADMINS}/users/{ALICE}",
        sim.base_url()
    );
    let r = api.put_empty(&url, READ_ONLY).await;
    let body = expect_error(r, 403, "E0000006").await;
    for k in ["errorSummary", "errorLink", "errorId", "errorCauses"] {
        assert!(body.get(k).is_some(), "missing {k}");
    }
    let r = api.put_empty(&url, "nope").await;
    expect_error(r, 401, "E0000011").await;
    let r = c
        .get(url.replace(&format!("/users/{ALICE}"), "/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!sim.is_member(PROD_ADMINS, ALICE));
    sim.shutdown().await;
}

#[tokio::test]
async fn app_group_and_built_in_membership_cannot_change() {
    let sim = start().await;
    let api = Api::new(&sim);
    for g in [AWS_USERS, EVERYONE] {
        let url = format!("/api/v1/groups/{g}/users/{BOB}");
        let r = api.put_empty(&url, SUPER).await;
        assert_eq!(r.status(), 403, "{g}");
    }
    assert!(!sim.is_member(AWS_USERS, BOB));
    assert!(sim.is_member(EVERYONE, BOB));
    let r = api
        .put_empty(
            &format!("/api/v1/groups/00gmissing0000000000/users/{BOB}"),
            SUPER,
        )
        .await;
    let body = expect_error(r, 404, "E0000007").await;
    assert_eq!(
        body["errorSummary"],
        "Not found: Resource not found: 00gmissing0000000000 (UserGroup)"
    );
    let r = api
        .put_empty(
            &format!("/api/v1/groups/{DB_OWNERS}/users/00umissing0000000000"),
            SUPER,
        )
        .await;
    assert_eq!(r.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn put_without_content_length_is_411() {
    let sim = start().await;
    // reqwest always sends Content-Length for PUT; speak raw HTTP to omit it.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let req = format!(
        "PUT /api/v1/groups/{PROD_ADMINS}/users/{ALICE} HTTP/1.1\r\nHost: x\r\nAuthorization: SSWS {SUPER}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 411"), "{out}");
    assert!(!sim.is_member(PROD_ADMINS, ALICE));
    sim.shutdown().await;
}

#[tokio::test]
async fn reqwest_empty_put_lacks_content_length_and_gets_411() {
    // reqwest sends no Content-Length for an empty PUT; real Okta answers 411, so clients must
    // set `Content-Length: 0` explicitly. The simulator can be told to be lenient.
    let sim = start().await;
    let path = format!("/api/v1/groups/{PROD_ADMINS}/users/{ALICE}");
    let r = Api::new(&sim).put_no_length(&path, SUPER).await;
    assert_eq!(r.status(), 411);
    assert!(!sim.is_member(PROD_ADMINS, ALICE));
    sim.shutdown().await;

    let cfg = okta_sim::SimConfig {
        require_content_length: false,
        ..Default::default()
    };
    let sim = okta_sim::spawn(cfg).await.unwrap();
    let r = Api::new(&sim).put_no_length(&path, SUPER).await;
    assert_eq!(r.status(), 204);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_get_okta_errors_and_headers() {
    let sim = start().await;
    let api = Api::new(&sim);
    let c = &api.c;
    let r = api.get("/api/v1/nothing", SUPER).await;
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-rate-limit-reset"));
    assert!(r.headers().contains_key("x-okta-request-id"));
    assert_eq!(r.json::<Value>().await.unwrap()["errorCode"], "E0000007");
    let r = c
        .patch(format!(
            "{}/api/v1/groups/{PROD_ADMINS}/users/{ALICE}",
            sim.base_url()
        ))
        .header("Authorization", ssws(SUPER))
        .send()
        .await
        .unwrap();
    expect_error(r, 405, "E0000022").await;
    sim.shutdown().await;
}
