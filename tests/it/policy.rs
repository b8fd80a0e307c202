//! The policy file: offline validation (errors name the resource and key), checks against
//! okta-sim at start, refusal of kinds the token cannot change, reload keeping the old policy on
//! error, and `check-config`.

use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::okta::OktaClient;
use jit_broker::policy::{Policy, PolicyError, PolicyHandle};
use jit_broker::{RunError, RunOptions};
use tokio::net::TcpListener;

use crate::helpers::*;

fn resource(extra: &str) -> String {
    format!(
        r#"
[[resource]]
name = "r1"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
{extra}
"#
    )
}

fn errors_of(text: &str) -> Vec<String> {
    Policy::parse(text)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn offline_errors_name_resource_and_key() {
    assert_eq!(Policy::parse(GRANTS_POLICY).unwrap().resources.len(), 7);
    let cases = [
        (resource("drift = \"revert\""), "drift"),
        (resource("jit_onyl = true"), "jit_onyl"),
        (resource("").replace("okta_group", "okta_thing"), "okta_thing"),
        (resource("").replace("00g1prodadmins000001", "0oa1payroll000000001"), "okta_id"),
        (resource("").replace("default_duration = \"1h\"", "default_duration = \"5h\""), "default_duration"),
        (resource("").replace("max_duration = \"4h\"", "max_duration = \"soon\""), "r1"),
        (resource("").replace("approvals_required = 0", "approvals_required = 2"), "approvers"),
        (resource("resource_set = \"iam1resourceset00001\""), "resource_set"),
        (resource("auto_approve = { okta_groups = [\"00g1oncall0000000003\"], max_duration = \"8h\" }"), "auto_approve.max_duration"),
        (resource("").replace("okta_group", "okta_role").replace("00g1prodadmins000001", "GOD_MODE"), "GOD_MODE"),
        (format!("{}{}", resource(""), resource("")), "more than once"),
    ];
    for (text, needle) in cases {
        let errs = errors_of(&text);
        let all = errs.join("\n");
        assert!(all.contains("r1"), "{all}");
        assert!(all.contains(needle), "expected `{needle}` in: {all}");
    }
    let errs = errors_of("[[resources]]\nname = \"x\"\n");
    assert!(errs[0].contains("resources"), "{errs:?}");
}

async fn start(
    db: Db,
    policy: &str,
    token: Option<&str>,
) -> (Result<(), RunError>, okta_sim::SimHandle) {
    let sim = okta_sim::spawn(okta_sim::SimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    let tdb = TestDb::new(db).await;
    let mut config = base_config(&tdb);
    okta_config(&mut config, &sim.base_url());
    if let Some(t) = token {
        config.okta.api_token = Some(secrecy::SecretString::from(t));
    }
    config.policy.file = Some(path);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // A bad policy stops the start at once; a good one serves until the shutdown future fires.
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        jit_broker::run_with(config, listener, async {}, RunOptions::default()),
    )
    .await
    .expect("run_with must return");
    (r, sim)
}

fn policy_errors(r: Result<(), RunError>) -> String {
    match r {
        Err(RunError::Policy(errs)) => errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("expected a policy error, got {other:?}"),
    }
}

async fn start_checks_resources_in_okta(db: Db) {
    let (r, _sim) = start(db, GRANTS_POLICY, None).await;
    assert!(r.is_ok(), "{r:?}");
    for (group, needle) in [
        ("00g1appgroup00000005", "APP_GROUP"),
        ("00g1everyone00000006", "BUILT_IN"),
        ("00g1nosuchgroup00099", "does not exist"),
    ] {
        let text = resource("").replace("00g1prodadmins000001", group);
        let msg = policy_errors(start(db, &text, None).await.0);
        assert!(msg.contains("r1") && msg.contains(needle), "{msg}");
    }
    let text = resource("")
        .replace("okta_group", "okta_app")
        .replace("00g1prodadmins000001", "0oa1nosuchapp0000099");
    let msg = policy_errors(start(db, &text, None).await.0);
    assert!(
        msg.contains("r1") && msg.contains("does not exist"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_the_token_cannot_change_are_refused() {
    let db = Db::Sqlite;
    // The group/app admin token cannot assign admin roles.
    let msg = policy_errors(
        start(db, GRANTS_POLICY, Some("sim-group-app-admin-token"))
            .await
            .0,
    );
    assert!(
        msg.contains("user-admin") && msg.contains("admin roles"),
        "{msg}"
    );
    assert!(!msg.contains("prod-db-admin"), "{msg}");
    let msg = policy_errors(
        start(db, GRANTS_POLICY, Some("sim-read-only-token"))
            .await
            .0,
    );
    assert!(
        msg.contains("prod-db-admin") && msg.contains("group membership"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_old_policy_on_error() {
    let sim = okta_sim::spawn(okta_sim::SimConfig::default())
        .await
        .unwrap();
    let tdb = TestDb::new(Db::Sqlite).await;
    let mut config = base_config(&tdb);
    okta_config(&mut config, &sim.base_url());
    let okta = OktaClient::new(&config.okta, Clock::system()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, resource("")).unwrap();
    let handle = PolicyHandle::new(Policy::load(&path).unwrap(), Some(path.clone()));

    std::fs::write(&path, GRANTS_POLICY).unwrap();
    assert_eq!(handle.reload(Some(&okta)).await.unwrap(), 7);
    assert!(handle.current().get("custom-admin").is_some());

    // Offline error: kept.
    std::fs::write(&path, resource("jit_onyl = true")).unwrap();
    let errs = handle.reload(Some(&okta)).await.unwrap_err();
    assert!(matches!(errs[0], PolicyError::Invalid { .. }));
    assert_eq!(handle.current().resources.len(), 7);
    // Okta error (APP_GROUP): kept.
    std::fs::write(
        &path,
        resource("").replace("00g1prodadmins000001", "00g1appgroup00000005"),
    )
    .unwrap();
    assert!(handle.reload(Some(&okta)).await.is_err());
    assert_eq!(handle.current().resources.len(), 7);
    // Unreadable file: kept.
    std::fs::remove_file(&path).unwrap();
    assert!(handle.reload(None).await.is_err());
    assert_eq!(handle.current().resources.len(), 7);
}

/// A real SIGHUP: the running broker picks up a new resource; a broken file afterwards is
/// refused and the previous policy keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy() {
    // Installed first, so the signal can never hit the default action (terminate) even if the
    // broker's own listener were not registered yet.
    let mut own = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let e = crate::helpers::env_with_policy(Db::Sqlite, &resource("")).await;
    let path = e.app.config.policy.file.clone().unwrap();
    let body = serde_json::json!({"user": crate::helpers::ALICE, "resource": "payroll"});
    let (s, r) = e.post("/v1/grants", body.clone()).await;
    assert_eq!(r["code"], "unknown_resource", "{s} {r}");
    let hup = || {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    std::fs::write(&path, GRANTS_POLICY).unwrap();
    hup();
    own.recv().await;
    wait_until(Duration::from_secs(10), || async {
        e.post("/v1/grants", body.clone()).await.0 == reqwest::StatusCode::CREATED
    })
    .await;
    std::fs::write(&path, "[[resource]]\nname = 1\n").unwrap();
    hup();
    own.recv().await;
    // The refusal is counted; the old policy (with `user-admin`) still serves.
    wait_until(Duration::from_secs(10), || async {
        let m = e.app.metrics().await;
        m.lines()
            .any(|l| l.starts_with("jit_policy_reloads_total{outcome=\"error\"}"))
    })
    .await;
    let body2 = serde_json::json!({"user": crate::helpers::BOB, "resource": "user-admin"});
    assert_eq!(
        e.post("/v1/grants", body2).await.0,
        reqwest::StatusCode::CREATED
    );
}

#[test]
fn check_config_validates_the_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, resource("drift = \"revert\"")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jit-broker"))
        .arg("check-config")
        .env("JIT_POLICY__FILE", &path)
        .env_remove("JIT_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("r1") && stderr.contains("drift"),
        "{stderr}"
    );
    std::fs::write(&path, GRANTS_POLICY).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jit-broker"))
        .arg("check-config")
        .env("JIT_POLICY__FILE", &path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

both_backends!(start_checks_resources_in_okta);
