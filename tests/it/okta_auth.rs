//! The Okta client's credentials and what they allow, against okta-sim over real HTTP: OAuth
//! `private_key_jwt` fetch and refresh, secrets kept out of `Debug`, `[okta]` validation, the
//! capability probe, and the `okta` section of `/readyz`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use jit_broker::okta::{OktaAuthMethod, OktaConfig, OktaError, Priority, RoleSpec};
use jit_broker::Config;
use okta_sim::SimConfig;

use crate::helpers::wait_until;
use crate::okta_client::*;

const OAUTH_CLIENT_ID: &str = "0oa1jitbrokersvc0001";
const TEST_KEY: &str = include_str!("../fixtures/okta-oauth-test-key.pem");
const TEST_PUBLIC_KEY: &str = include_str!("../fixtures/okta-oauth-test-key.pub.pem");

fn oauth_config(base_url: &str) -> OktaConfig {
    let env = vec![
        ("JIT_OKTA__BASE_URL".to_string(), base_url.to_string()),
        ("JIT_OKTA__AUTH".to_string(), "oauth".to_string()),
        (
            "JIT_OKTA__CLIENT_ID".to_string(),
            OAUTH_CLIENT_ID.to_string(),
        ),
        ("JIT_OKTA__PRIVATE_KEY".to_string(), TEST_KEY.to_string()),
    ];
    let mut cfg = Config::load_with_env(None, env).unwrap().okta;
    assert_eq!(cfg.auth, OktaAuthMethod::Oauth);
    cfg.backoff_base = Duration::from_millis(20);
    cfg.rate_limit_reset_margin = Duration::ZERO;
    cfg
}

/// `private_key_jwt`: one token fetch serves many calls; a new one is fetched before the old
/// one expires (at half its lifetime when that is shorter than the refresh margin).
#[tokio::test]
async fn oauth_token_is_fetched_cached_and_refreshed() {
    let mut oauth = okta_sim::OAuthConfig::new(
        OAUTH_CLIENT_ID,
        TEST_PUBLIC_KEY,
        okta_sim::PermissionLevel::SuperAdmin,
    );
    oauth.token_ttl = Duration::from_secs(2);
    let sim = sim_with(SimConfig {
        oauth: Some(oauth),
        ..SimConfig::default()
    })
    .await;
    let cfg = oauth_config(&sim.base_url());
    let c = client(&cfg);
    for _ in 0..3 {
        assert!(c.get_user(ALICE, Priority::Read).await.unwrap().is_some());
    }
    assert_eq!(sim.counter("POST", "/oauth2/v1/token"), 1);
    c.add_group_member(DB_OWNERS, BOB, Priority::Grant)
        .await
        .unwrap();
    assert!(sim.is_member(DB_OWNERS, BOB));
    // Keep calling: the token is replaced after ~1 s, and no call ever fails on an expired one.
    wait_until(Duration::from_secs(10), || async {
        c.get_user(ALICE, Priority::Read).await.unwrap();
        sim.counter("POST", "/oauth2/v1/token") >= 2
    })
    .await;
    // The credentials appear nowhere in Debug output.
    let dbg = format!("{cfg:?} {c:?}");
    assert!(!dbg.contains("BEGIN PRIVATE KEY"));
    assert!(!dbg.contains(&TEST_KEY[40..80]));
    sim.shutdown().await;
}

#[tokio::test]
async fn oauth_with_unknown_key_is_a_permanent_token_error() {
    let sim = sim_with(SimConfig::default()).await; // no OAuth app configured
    let c = client(&oauth_config(&sim.base_url()));
    let err = c.get_user(ALICE, Priority::Read).await.unwrap_err();
    assert!(matches!(err, OktaError::TokenEndpoint { .. }), "{err:?}");
    assert!(!err.is_retryable());
    sim.shutdown().await;
}

#[tokio::test]
async fn ssws_token_never_in_debug_output() {
    let cfg = okta_config("http://127.0.0.1:9", "super-secret-okta-token");
    let c = client(&cfg);
    let dbg = format!("{cfg:?} {c:?}");
    assert!(!dbg.contains("super-secret-okta-token"), "{dbg}");
}

#[test]
fn config_is_validated_with_key_names() {
    let load = |env: Vec<(&str, &str)>| {
        Config::load_with_env(
            None,
            env.into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
    };
    // Not configured is valid: the broker runs without Okta.
    assert!(!load(vec![]).unwrap().okta.is_configured());
    let msg = |r: Result<Config, Vec<jit_broker::config::ConfigError>>| {
        r.unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let m = msg(load(vec![(
        "JIT_OKTA__BASE_URL",
        "https://example.okta.com",
    )]));
    assert!(m.contains("okta.api_token"), "{m}");
    let m = msg(load(vec![
        ("JIT_OKTA__BASE_URL", "http://example.okta.com"),
        ("JIT_OKTA__API_TOKEN", "t"),
    ]));
    assert!(m.contains("okta.base_url"), "{m}");
    let m = msg(load(vec![
        ("JIT_OKTA__BASE_URL", "https://example.okta.com"),
        ("JIT_OKTA__AUTH", "oauth"),
        ("JIT_OKTA__PRIVATE_KEY", "not a key"),
    ]));
    assert!(
        m.contains("okta.client_id") && m.contains("okta.private_key"),
        "{m}"
    );
    assert!(
        !m.contains("not a key"),
        "the key's value is never echoed: {m}"
    );
    let m = msg(load(vec![("JIT_OKTA__MAX_IN_FLIGHT", "0")]));
    assert!(m.contains("okta.max_in_flight"), "{m}");
    // Secret from a file (the Kubernetes way), trailing newline trimmed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "file-token\n").unwrap();
    let c = load(vec![
        ("JIT_OKTA__BASE_URL", "https://example.okta.com"),
        ("JIT_OKTA__API_TOKEN_FILE", path.to_str().unwrap()),
    ])
    .unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(c.okta.api_token.unwrap().expose_secret(), "file-token");
}

/// Each token level yields its capabilities, read from the principal's own admin roles (no
/// write is made to find out); writes the credential cannot make are then refused locally.
#[tokio::test]
async fn capability_probe_per_token_level() {
    let sim = sim_with(SimConfig::default()).await;
    let cases = [
        (okta_sim::SUPER_ADMIN_TOKEN, (true, true, true, true)),
        (okta_sim::GROUP_APP_ADMIN_TOKEN, (true, true, true, false)),
        (okta_sim::READ_ONLY_TOKEN, (true, false, false, false)),
    ];
    for (token, (read, groups, apps, roles)) in cases {
        let c = client(&okta_config(&sim.base_url(), token));
        let caps = c.probe_capabilities().await.unwrap();
        assert_eq!(
            (
                caps.read,
                caps.provision_groups,
                caps.provision_apps,
                caps.manage_roles
            ),
            (read, groups, apps, roles),
            "{token}"
        );
        assert!(caps.principal_id.is_some());
        assert_eq!(c.capabilities(), Some(caps));
    }
    // Read-only: refused before reaching Okta.
    let c = client(&okta_config(&sim.base_url(), okta_sim::READ_ONLY_TOKEN));
    c.probe_capabilities().await.unwrap();
    let before = sim.counter("PUT", T_MEMBER);
    let err = c
        .add_group_member(PROD_ADMINS, CAROL, Priority::Grant)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            OktaError::NotPermitted {
                capability: "provision_groups"
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(matches!(
        c.unassign_app_user(PAYROLL, ALICE, Priority::Revoke).await,
        Err(OktaError::NotPermitted { .. })
    ));
    assert!(matches!(
        c.assign_role(
            BOB,
            &RoleSpec::Standard {
                role_type: "USER_ADMIN".into()
            },
            Priority::Grant
        )
        .await,
        Err(OktaError::NotPermitted { .. })
    ));
    assert_eq!(sim.counter("PUT", T_MEMBER), before);
    // Reads still work.
    assert!(c.get_user(ALICE, Priority::Read).await.unwrap().is_some());
    sim.shutdown().await;
}

/// The probe makes no change in Okta, whatever the token.
#[tokio::test]
async fn capability_probe_makes_no_change() {
    let sim = sim_with(SimConfig::default()).await;
    let c = client(&okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN));
    let before = format!("{:?}", sim.events());
    let _ = c.probe_capabilities().await;
    assert_eq!(format!("{:?}", sim.events()), before);
    // A failed probe leaves capabilities unknown (Okta decides per call) and says why.
    if c.capabilities().is_none() {
        assert!(c.probe_error().is_some());
        c.add_group_member(DB_OWNERS, CAROL, Priority::Grant)
            .await
            .unwrap();
    }
    sim.shutdown().await;
}

/// `/readyz` carries an `okta` section (capabilities once probed, or the probe's error), and
/// Okta's state does not decide readiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_okta() {
    use crate::helpers::{base_config, spawn_app_with, Db, TestDb};
    let sim = sim_with(SimConfig::default()).await;
    let db = TestDb::new(Db::Sqlite).await;
    let mut config = base_config(&db);
    config.okta = okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN);
    let app = spawn_app_with(db, config, jit_broker::RunOptions::default()).await;
    let body = std::sync::Mutex::new(serde_json::Value::Null);
    wait_until(Duration::from_secs(10), || async {
        let r = app
            .http
            .get(app.url("/readyz"))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        let known = !v["okta"]["capabilities"].is_null() || !v["okta"]["probe_error"].is_null();
        *body.lock().unwrap() = v;
        known
    })
    .await;
    let v = body.into_inner().unwrap();
    assert!(v["okta"].is_object(), "{v}");
    // One probe at start (the policy check's); the background retry only runs when it failed.
    assert_eq!(sim.counter("GET", "/api/v1/users/{id}"), 1, "{v}");
    assert!(!v.to_string().contains(okta_sim::SUPER_ADMIN_TOKEN));
    // The probe's calls are counted by operation and outcome.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("jit_okta_requests_total{op=\"probe_me\""),
        "{metrics}"
    );
    app.stop().await.unwrap();
    sim.shutdown().await;
}
