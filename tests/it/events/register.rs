//! `jit-broker okta event-hook register|status` against okta-sim, then a drift reverted through
//! the hook it registered (the README's trial, as a test).

use std::time::Duration;

use super::hooks::SECRET;
use crate::helpers::*;

fn cli(e: &crate::helpers::Env, args: &[&str], secret: Option<&str>) -> std::process::Output {
    let mut cmd = broker_cmd();
    cmd.env("JIT_OKTA__BASE_URL", e.sim.base_url())
        .env("JIT_OKTA__API_TOKEN", "sim-super-admin-token")
        .args(args);
    if let Some(s) = secret {
        cmd.env("JIT_EVENTS__SECRET", s);
    }
    cmd.output().unwrap()
}

async fn register_status_and_trial(db: Db) {
    let e = env_with(db, DRIFT_POLICY, super::hooks::events_config).await;
    let url = e.app.url("/hooks/okta");
    let e2 = &e;
    let run = |args: Vec<String>, secret: Option<&'static str>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = e2;
        tokio::task::block_in_place(|| cli(e, &args, secret))
    };
    let reg = |u: &str| {
        vec![
            "okta".into(),
            "event-hook".into(),
            "register".into(),
            "--url".into(),
            u.to_string(),
        ]
    };

    // Bad input reaches nothing.
    let status = vec!["okta".to_string(), "event-hook".into(), "status".into()];
    let out = run(status.clone(), Some(SECRET)).await;
    assert_eq!(out.status.code(), Some(1), "no hook yet");
    for bad in [
        "ftp://x/hooks/okta",
        "http://example.com/hooks/okta",
        "not a url",
        "https://x/h?q=1",
    ] {
        let out = run(reg(bad), Some(SECRET)).await;
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
    let out = run(reg(&url), None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("events.secret"));
    assert_eq!(e.sim.counter("POST", "/api/v1/eventHooks"), 0);

    // Register: created, activated, verified by Okta's challenge to the running broker.
    let out = run(reg(&url), Some(SECRET)).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verification=VERIFIED"), "{stdout}");
    assert!(stdout.contains("group.user_membership.add"), "{stdout}");
    assert!(!stdout.contains(SECRET));
    // Again: the same hook, no second one.
    let out = run(reg(&url), Some(SECRET)).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(e.sim.counter("POST", "/api/v1/eventHooks"), 1);
    let out = run(status, Some(SECRET)).await;
    assert_eq!(out.status.code(), Some(0));

    // The trial: an out-of-band add to a jit_only group is reverted within seconds.
    e.sim
        .admin("admin@example.com")
        .add_member(PROD_ADMINS, BOB)
        .unwrap();
    wait_until(Duration::from_secs(5), || async {
        !e.sim.is_member(PROD_ADMINS, BOB)
    })
    .await;
}

both_backends!(register_status_and_trial);
