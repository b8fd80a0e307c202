//! `jit-broker okta event-hook register|status` against okta-sim, then a drift reverted through
//! the hook it registered (the README's trial, as a test).

use std::time::Duration;

use super::hooks::SECRET;
use crate::helpers::*;

fn cli(e: &crate::helpers::Env, args: &[&str], secret: Option<&str>) -> std::process::Output {
    let mut cmd = broker_cmd();
    cmd.env("JIT_OKTA__BASE_URL", e.sim.base_url())
        .env("JIT_OKTA__API_TOKEN", "sim-super-admin-token")
        .env("JIT_DATABASE__URL", &e.app.config.database.url)
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

async fn run_cli(e: &crate::helpers::Env, args: &[&str], secret: Option<&str>) -> Out {
    let out = tokio::task::block_in_place(|| cli(e, args, secret));
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

const STATUS: &[&str] = &["okta", "event-hook", "status"];

/// `event-hook status` once its output shows `needle` (the broker writes its refusal counts
/// within a second), within a deadline.
async fn status_showing(e: &crate::helpers::Env, needle: &str) -> Out {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = run_cli(e, STATUS, Some(SECRET)).await;
        if out.stdout.contains(needle) {
            return out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{needle}` never shown: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 22: a broker started without the hook secret refused every delivery, yet `register`
/// printed `verification=VERIFIED` and exited 0. Now Okta's verification request (which carries
/// the auth header) is refused, registration exits 1 naming the fix, and `status` says the
/// broker is refusing and why.
async fn register_refused_when_broker_lacks_secret(db: Db) {
    let e = env_with(db, DRIFT_POLICY, |c| {
        super::hooks::events_config(c);
        c.events.secret = None;
    })
    .await;
    let url = e.app.url("/hooks/okta");
    let out = run_cli(
        &e,
        &["okta", "event-hook", "register", "--url", &url],
        Some(SECRET),
    )
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(!out.stdout.contains("verification=VERIFIED"), "{out:?}");
    assert!(out.stderr.contains("JIT_EVENTS__SECRET"), "{out:?}");
    assert!(!out.stderr.contains(SECRET) && !out.stdout.contains(SECRET));

    // The refusal is counted by reason (written within a second) and `status` tells.
    let out = status_showing(&e, "reason=not_configured").await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("WARNING"), "{out:?}");
    assert!(out.stdout.contains("verification=UNVERIFIED"), "{out:?}");
    let (s, b) = e.get("/v1/events/refusals").await;
    assert_eq!(s, reqwest::StatusCode::OK);
    let r = &b["refusals"][0];
    assert_eq!(r["reason"], "not_configured", "{b}");
    assert!(r["count"].as_i64().unwrap() >= 1, "{b}");
    // Not for everyone.
    let (s, _) = e.get_as("alice", "/v1/events/refusals").await;
    assert!(s == reqwest::StatusCode::FORBIDDEN || s == reqwest::StatusCode::UNAUTHORIZED);
}

/// A hook registered earlier holds the broker's secret, but this command's secret differs:
/// Okta still verifies (it sends the hook's secret), and the test delivery with the command's
/// secret is what catches it.
async fn register_refused_when_command_secret_differs(db: Db) {
    let e = env_with(db, DRIFT_POLICY, super::hooks::events_config).await;
    let url = e.app.url("/hooks/okta");
    let reg = ["okta", "event-hook", "register", "--url", url.as_str()];
    let out = run_cli(&e, &reg, Some(SECRET)).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let other = "another-secret-than-the-brokers";
    let out = run_cli(&e, &reg, Some(other)).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("test delivery"), "{out:?}");
    assert!(!out.stdout.contains("verification=VERIFIED"), "{out:?}");
    assert!(!out.stderr.contains(other));
    // Counted as a wrong secret; status warns but the hook itself works (exit 0).
    let out = status_showing(&e, "reason=wrong_secret").await;
    assert!(out.stdout.contains("WARNING"), "{out:?}");
    assert_eq!(out.code, Some(0), "{out:?}");
}

both_backends!(
    register_status_and_trial,
    register_refused_when_broker_lacks_secret,
    register_refused_when_command_secret_differs
);
