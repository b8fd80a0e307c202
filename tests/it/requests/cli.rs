//! `jit-broker requests …`: the same service as the API, from the command line, with clear
//! refusals and exit codes for bad input.

use serde_json::json;

use super::*;

both_backends!(requests_cli_lists_shows_decides_and_refuses);

fn cli(e: &Env, args: &[&str]) -> (i32, String, String) {
    let c = &e.app.config;
    let out = broker_cmd()
        .args(["requests"])
        .args(args)
        .env("JIT_DATABASE__URL", &c.database.url)
        .env("JIT_REDIS__URL", &c.redis.url)
        .env("JIT_REDIS__KEY_PREFIX", &c.redis.key_prefix)
        .env("JIT_OKTA__BASE_URL", &c.okta.base_url)
        .env("JIT_OKTA__API_TOKEN", "sim-super-admin-token")
        .env(
            "JIT_POLICY__FILE",
            c.policy.file.as_ref().unwrap().to_str().unwrap(),
        )
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn requests_cli_lists_shows_decides_and_refuses(db: Db) {
    let e = env(db).await;
    let id = e
        .pending(
            "alice@example.com",
            json!({"resource": "prod-admins", "reason": "cli trial"}),
        )
        .await;
    let (code_, out, _) = cli(&e, &["list", "--state", "pending"]);
    assert_eq!(code_, 0);
    assert!(out.contains(&id) && out.contains("cli trial"), "{out}");
    let (code_, out, _) = cli(&e, &["show", &id]);
    assert_eq!(code_, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "pending");
    // Bad input: a clear message, exit 2 (usage) or 1 (refused), nothing changed.
    let before = e.footprint().await;
    let (c1, _, err) = cli(&e, &["list", "--state", "bogus"]);
    assert_eq!(c1, 2, "{err}");
    assert!(err.contains("unknown request state"), "{err}");
    let (c2, _, err) = cli(&e, &["list", "--limit", "0"]);
    assert_eq!(c2, 2, "{err}");
    let (c3, _, err) = cli(&e, &["show", "not-a-uuid"]);
    assert_eq!(c3, 1, "{err}");
    let (c4, _, err) = cli(&e, &["approve", &id, "--as", "carol@example.com"]);
    assert_eq!(c4, 1, "{err}");
    assert!(err.contains("not_approver"), "{err}");
    let (c5, _, err) = cli(&e, &["approve", &id, "--as", "alice@example.com"]);
    assert_eq!(c5, 1, "{err}");
    assert!(err.contains("self_approval"), "{err}");
    let (c6, _, err) = cli(&e, &["approve", &id]);
    assert_eq!(c6, 2, "--as is required: {err}");
    assert_eq!(e.footprint().await, before);
    // The approver decides from the command line: recorded with channel `cli`.
    let (c7, out, err) = cli(
        &e,
        &[
            "approve",
            &id,
            "--as",
            "bob@example.com",
            "--comment",
            "ok from cli",
        ],
    );
    assert_eq!(c7, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "approved");
    assert_eq!(v["decisions"][0]["channel"], "cli");
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    let (c8, _, err) = cli(&e, &["cancel", &id, "--as", "alice@example.com"]);
    assert_eq!(c8, 1, "{err}");
    assert!(err.contains("request_not_pending"), "{err}");
    e.audit_ok().await;
}
