//! The Okta client against okta-sim over real HTTP: every call, idempotency and pagination.
//! Rate limits, retries and priorities are in `okta_limits`; credentials, the capability probe
//! and `/readyz` in `okta_auth`. Shared fixtures (seed ids, configs) live here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::TryStreamExt;
use jit_broker::clock::Clock;
use jit_broker::okta::{
    GroupQuery, OktaClient, OktaConfig, OktaError, Priority, Removal, RoleSpec,
};
use jit_broker::Config;
use okta_sim::{SimConfig, SimHandle};

pub const ALICE: &str = "00u1alice00000000001";
pub const BOB: &str = "00u1bob0000000000002";
pub const CAROL: &str = "00u1carol00000000003";
pub const DAVE: &str = "00u1dave000000000004";
pub const PROD_ADMINS: &str = "00g1prodadmins000001";
pub const DB_OWNERS: &str = "00g1dbowners00000002";
pub const APP_GROUP: &str = "00g1appgroup00000005";
pub const PAYROLL: &str = "0oa1payroll000000001";
pub const AWS_PROD: &str = "0oa1awsprod000000002";
pub const CUSTOM_ROLE: &str = "cr0custom00000000001";
pub const RESOURCE_SET: &str = "iam1resourceset00001";

pub const T_MEMBER: &str = "/api/v1/groups/{groupId}/users/{userId}";
pub const T_GROUP: &str = "/api/v1/groups/{groupId}";
pub const T_USER: &str = "/api/v1/users/{id}";
pub const T_APP_USER: &str = "/api/v1/apps/{appId}/users/{userId}";

/// The `[okta]` section as an operator would give it: defaults plus environment overrides,
/// then tightened for fast tests (short timeouts and backoffs, small jitter).
pub fn okta_config(base_url: &str, token: &str) -> OktaConfig {
    let env = vec![
        ("JIT_OKTA__BASE_URL".to_string(), base_url.to_string()),
        ("JIT_OKTA__API_TOKEN".to_string(), token.to_string()),
    ];
    let mut cfg = Config::load_with_env(None, env).unwrap().okta;
    cfg.request_timeout = Duration::from_secs(5);
    cfg.backoff_base = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(200);
    cfg.rate_limit_jitter = Duration::from_millis(50);
    cfg.rate_limit_reset_margin = Duration::ZERO;
    cfg
}

pub async fn sim_with(cfg: SimConfig) -> SimHandle {
    okta_sim::spawn(cfg).await.unwrap()
}

pub fn client(cfg: &OktaConfig) -> OktaClient {
    OktaClient::new(cfg, Clock::system()).unwrap()
}

#[tokio::test]
async fn reads_users_groups_apps() {
    let sim = sim_with(SimConfig::default()).await;
    let c = client(&okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN));
    let p = Priority::Read;

    let alice = c.get_user(ALICE, p).await.unwrap().unwrap();
    assert_eq!(alice.login, "alice@example.com");
    assert_eq!(alice.status, "ACTIVE");
    let by_login = c.get_user("alice@example.com", p).await.unwrap().unwrap();
    assert_eq!(by_login.id, ALICE);
    assert!(c
        .get_user("00u0nobody0000000000", p)
        .await
        .unwrap()
        .is_none());

    let g = c.get_group(PROD_ADMINS, p).await.unwrap().unwrap();
    assert_eq!(g.group_type, "OKTA_GROUP");
    assert!(g.membership_is_writable());
    assert!(g.last_membership_updated.is_some());
    let ag = c.get_group(APP_GROUP, p).await.unwrap().unwrap();
    assert!(!ag.membership_is_writable());
    assert!(c
        .get_group("00g0nothing000000000", p)
        .await
        .unwrap()
        .is_none());

    let app = c.get_app(PAYROLL, p).await.unwrap().unwrap();
    assert_eq!(app.id, PAYROLL);
    assert!(c
        .get_app("0oa0nothing000000000", p)
        .await
        .unwrap()
        .is_none());

    let users: Vec<_> = c.list_users(p).try_collect().await.unwrap();
    assert!(users.iter().any(|u| u.id == BOB));
    let groups: Vec<_> = c
        .list_groups(&GroupQuery::default(), p)
        .try_collect()
        .await
        .unwrap();
    assert!(groups.iter().any(|g| g.id == DB_OWNERS));
    let q = GroupQuery {
        search: Some("type eq \"OKTA_GROUP\"".into()),
        ..GroupQuery::default()
    };
    let okta_groups: Vec<_> = c.list_groups(&q, p).try_collect().await.unwrap();
    assert!(!okta_groups.is_empty());
    assert!(okta_groups.iter().all(|g| g.group_type == "OKTA_GROUP"));
    let app_users: Vec<_> = c.list_app_users(AWS_PROD, p).try_collect().await.unwrap();
    assert!(app_users.iter().any(|a| a.id == DAVE && a.scope == "GROUP"));
    // Ids cannot smuggle path segments.
    assert!(matches!(
        c.get_user("..", p).await,
        Err(OktaError::InvalidId(_))
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn group_membership_is_idempotent() {
    let sim = sim_with(SimConfig::default()).await;
    let c = client(&okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN));
    let p = Priority::Grant;
    assert!(!c.is_group_member(PROD_ADMINS, CAROL, p).await.unwrap());
    c.add_group_member(PROD_ADMINS, CAROL, p).await.unwrap();
    assert!(sim.is_member(PROD_ADMINS, CAROL));
    assert!(c.is_group_member(PROD_ADMINS, CAROL, p).await.unwrap());
    // Adding again is a success, not an error.
    c.add_group_member(PROD_ADMINS, CAROL, p).await.unwrap();
    let members: Vec<_> = c
        .list_group_members(PROD_ADMINS, Priority::Read)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(members.iter().filter(|u| u.id == CAROL).count(), 1);

    let p = Priority::Revoke;
    assert_eq!(
        c.remove_group_member(PROD_ADMINS, CAROL, p).await.unwrap(),
        Removal::Removed
    );
    assert!(!sim.is_member(PROD_ADMINS, CAROL));
    // Removing a non-member succeeds; Okta answers 204 here (the sim follows the unverified
    // FACTS), so whether it reports Removed or AlreadyGone is Okta's call.
    c.remove_group_member(PROD_ADMINS, CAROL, p).await.unwrap();
    // A deleted user or group is a 404: already gone.
    assert_eq!(
        c.remove_group_member(PROD_ADMINS, "00u0nobody0000000000", p)
            .await
            .unwrap(),
        Removal::AlreadyGone
    );
    // A user that does not exist is not a member of anything.
    assert!(!c
        .is_group_member(PROD_ADMINS, "00u0nobody0000000000", p)
        .await
        .unwrap());
    sim.shutdown().await;
}

#[tokio::test]
async fn app_assignment_is_idempotent_and_inherited_access_is_permanent() {
    let sim = sim_with(SimConfig::default()).await;
    let c = client(&okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN));
    let p = Priority::Grant;
    assert!(c.get_app_user(PAYROLL, CAROL, p).await.unwrap().is_none());
    let au = c.assign_app_user(PAYROLL, CAROL, p).await.unwrap();
    assert_eq!((au.id.as_str(), au.scope.as_str()), (CAROL, "USER"));
    assert_eq!(
        sim.app_assignment_scope(PAYROLL, CAROL).as_deref(),
        Some("USER")
    );
    let again = c.assign_app_user(PAYROLL, CAROL, p).await.unwrap();
    assert_eq!(again.scope, "USER");
    assert_eq!(
        c.get_app_user(PAYROLL, CAROL, p)
            .await
            .unwrap()
            .unwrap()
            .scope,
        "USER"
    );

    let p = Priority::Revoke;
    assert_eq!(
        c.unassign_app_user(PAYROLL, CAROL, p).await.unwrap(),
        Removal::Removed
    );
    assert!(sim.app_assignment_scope(PAYROLL, CAROL).is_none());
    assert_eq!(
        c.unassign_app_user(PAYROLL, CAROL, p).await.unwrap(),
        Removal::AlreadyGone
    );

    // Dave holds aws-prod through a group: Okta refuses per-user removal, and so do we,
    // once, with a permanent error that names the cause.
    let err = c.unassign_app_user(AWS_PROD, DAVE, p).await.unwrap_err();
    assert!(matches!(err, OktaError::InheritedAccess { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(sim.counter("DELETE", T_APP_USER), 3);
    assert_eq!(
        sim.app_assignment_scope(AWS_PROD, DAVE).as_deref(),
        Some("GROUP")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn roles_and_sessions() {
    let sim = sim_with(SimConfig::default()).await;
    let c = client(&okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN));
    let p = Priority::Grant;
    let spec = RoleSpec::Standard {
        role_type: "USER_ADMIN".into(),
    };
    let a = c.assign_role(BOB, &spec, p).await.unwrap();
    assert_eq!(a.role_type, "USER_ADMIN");
    assert!(!a.already_assigned);
    // Duplicate: Okta's 409 E0000090 becomes the existing assignment.
    let again = c.assign_role(BOB, &spec, p).await.unwrap();
    assert!(again.already_assigned);
    assert_eq!(again.id, a.id);

    let custom = RoleSpec::Custom {
        role_id: CUSTOM_ROLE.into(),
        resource_set: RESOURCE_SET.into(),
    };
    let ca = c.assign_role(BOB, &custom, p).await.unwrap();
    assert_eq!(ca.role_type, "CUSTOM");
    assert_eq!(ca.role_id.as_deref(), Some(CUSTOM_ROLE));
    assert_eq!(ca.resource_set.as_deref(), Some(RESOURCE_SET));
    assert!(
        c.assign_role(BOB, &custom, p)
            .await
            .unwrap()
            .already_assigned
    );

    let roles = c.list_user_roles(BOB, Priority::Read).await.unwrap();
    assert_eq!(roles.len(), 2);
    assert_eq!(sim.user_roles(BOB).len(), 2);

    let p = Priority::Revoke;
    assert_eq!(
        c.unassign_role(BOB, &a.id, p).await.unwrap(),
        Removal::Removed
    );
    assert_eq!(
        c.unassign_role(BOB, &a.id, p).await.unwrap(),
        Removal::AlreadyGone
    );
    assert_eq!(sim.user_roles(BOB).len(), 1);

    c.end_sessions(ALICE, p).await.unwrap();
    assert_eq!(sim.sessions_cleared(ALICE), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn pagination_follows_next_links_across_pages() {
    let seed = okta_sim::generate(23, 3, 11);
    let sim = sim_with(SimConfig {
        seed: seed.clone(),
        ..SimConfig::default()
    })
    .await;
    let mut cfg = okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN);
    cfg.page_size = 4;
    let c = client(&cfg);
    let users: Vec<_> = c.list_users(Priority::Read).try_collect().await.unwrap();
    let mut ids: Vec<_> = users.iter().map(|u| u.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), users.len(), "no user twice");
    assert_eq!(users.len(), seed.users.len());
    // 23+ users at 4 a page: at least 6 pages, each a request.
    assert!(sim.counter("GET", "/api/v1/users") >= 6);

    let big = seed.groups.iter().max_by_key(|g| g.members.len()).unwrap();
    assert!(big.members.len() > 4, "the seed has a group spanning pages");
    let members: Vec<_> = c
        .list_group_members(&big.id, Priority::Read)
        .try_collect()
        .await
        .unwrap();
    let mut got: Vec<_> = members.into_iter().map(|u| u.id).collect();
    let mut want = big.members.clone();
    got.sort();
    want.sort();
    want.dedup();
    assert_eq!(got, want);

    // A missing group ends the stream with the error.
    let err = c
        .list_group_members("00g0nothing000000000", Priority::Read)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    sim.shutdown().await;
}
