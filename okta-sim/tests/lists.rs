//! Pagination (opaque cursors, Link headers, limits) and list filters on a generated org.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::*;
use okta_sim::seed::{ALICE, PROD_ADMINS};
use okta_sim::SimConfig;
use serde_json::Value;

async fn big() -> okta_sim::SimHandle {
    let cfg = SimConfig {
        seed: okta_sim::generate(1000, 120, 7),
        ..SimConfig::default()
    };
    okta_sim::spawn(cfg).await.unwrap()
}

#[test]
fn generation_is_deterministic() {
    let a = okta_sim::generate(500, 50, 7);
    let b = okta_sim::generate(500, 50, 7);
    let c = okta_sim::generate(500, 50, 8);
    let members = |s: &okta_sim::Seed| {
        s.groups
            .iter()
            .map(|g| g.members.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(members(&a), members(&b));
    assert_ne!(members(&a), members(&c));
}

#[tokio::test]
async fn users_follow_next_links_to_the_end() {
    let sim = big().await;
    let api = Api::new(&sim);
    let mut url = Some(format!("{}/api/v1/users?limit=150", sim.base_url()));
    let mut seen = HashSet::new();
    let mut pages = 0;
    while let Some(u) = url {
        let r = api.get(&u, READ_ONLY).await;
        assert_eq!(r.status(), 200);
        url = next_link(&r);
        if let Some(n) = &url {
            let after = n.split("after=").nth(1).unwrap().split('&').next().unwrap();
            assert!(!after.starts_with("00u"), "cursor must be opaque: {after}");
        }
        let page: Vec<Value> = r.json().await.unwrap();
        assert!(page.len() <= 150);
        for u in page {
            assert!(seen.insert(u["id"].as_str().unwrap().to_string()));
        }
        pages += 1;
    }
    // Generated users: 1% SUSPENDED (listed), none DEPROVISIONED.
    assert_eq!(seen.len(), 1000);
    assert_eq!(pages, 7);
    // limit above the max (200) is clamped.
    let r = api.get("/api/v1/users?limit=5000", READ_ONLY).await;
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_paging_input_is_400() {
    let sim = start().await;
    let api = Api::new(&sim);
    let r = api
        .get("/api/v1/users?after=00u1testcursorvalue&limit=1", SUPER)
        .await;
    let body = expect_error(r, 400, "E0000029").await;
    assert_eq!(body["errorCauses"][0]["errorSummary"], "Invalid cursor.");
    for bad in ["0", "-3", "abc"] {
        let r = api.get(&format!("/api/v1/groups?limit={bad}"), SUPER).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn group_members_paginate_and_groups_filter() {
    let sim = big().await;
    let api = Api::new(&sim);
    let everyone = "00g1everyone00000006";
    let mut url = Some(format!("/api/v1/groups/{everyone}/users?limit=300"));
    let mut n = 0;
    while let Some(u) = url {
        let r = api.get(&u, READ_ONLY).await;
        url = next_link(&r);
        n += r.json::<Vec<Value>>().await.unwrap().len();
    }
    assert_eq!(n, 1000);

    let list = |q: String| {
        let api = &api;
        async move {
            let r = api.get(&format!("/api/v1/groups?{q}"), READ_ONLY).await;
            assert_eq!(r.status(), 200, "{q}");
            r.json::<Vec<Value>>().await.unwrap()
        }
    };
    let app_groups = list("filter=type%20eq%20%22APP_GROUP%22".into()).await;
    assert_eq!(app_groups.len(), 12);
    assert!(app_groups.iter().all(|g| g["type"] == "APP_GROUP"));
    let built_in = list("search=type%20eq%20%22BUILT_IN%22".into()).await;
    assert_eq!(built_in.len(), 1);
    let q = list("q=group-11".into()).await;
    assert!(q.iter().all(|g| g["profile"]["name"]
        .as_str()
        .unwrap()
        .starts_with("group-11")));
    assert_eq!(q.len(), 11); // group-11 and group-110..=group-119
    sim.shutdown().await;
}

#[tokio::test]
async fn last_membership_updated_supports_delta_queries() {
    let sim = start().await;
    let api = Api::new(&sim);
    let c = &api.c;
    let base = sim.base_url();
    let groups: Vec<Value> = api.get_json("/api/v1/groups", READ_ONLY).await;
    let newest = groups
        .iter()
        .map(|g| g["lastMembershipUpdated"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    sim.admin("admin@example.com")
        .add_member(PROD_ADMINS, ALICE)
        .unwrap();
    let f = format!("lastMembershipUpdated gt \"{newest}\" and type eq \"OKTA_GROUP\"");
    let r = c
        .get(format!("{base}/api/v1/groups"))
        .query(&[("filter", f.as_str()), ("expand", "stats")])
        .header("Authorization", ssws(READ_ONLY))
        .send()
        .await
        .unwrap();
    let changed: Vec<Value> = r.json().await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["id"], PROD_ADMINS);
    assert_eq!(changed[0]["_embedded"]["stats"]["usersCount"], 1);
    let r = api.get("/api/v1/groups?filter=nonsense", READ_ONLY).await;
    expect_error(r, 400, "E0000031").await;
    sim.shutdown().await;
}
