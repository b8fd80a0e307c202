//! Grants under failure and concurrency: a crash mid-provisioning, retryable Okta errors, two
//! replicas expiring the same grant at once, revoke racing expiry, the real scheduler expiring a
//! short grant, and the `grants` CLI verbs.

use std::time::Duration;

use jit_broker::grants::GrantState;
use jit_broker::scheduler::{ExpiryHandler, ExpiryOutcome};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::grants::env;
use crate::helpers::*;

const GROUP_USER: &str = "/api/v1/groups/{groupId}/users/{userId}";

async fn crashed_provisioning_is_still_expired(db: Db) {
    // A grant left in `provisioning` (the process died after Okta added access but before it
    // recorded activation) is expired at its provisional expiry.
    let e = env(db).await;
    let g = e.grant(ALICE, "prod-db-admin", "1h").await;
    let store = e.app.store().await;
    sqlx::query("UPDATE grants SET state = 'provisioning', activated_at = NULL WHERE id = $1")
        .bind(id(&g))
        .execute(store.pool())
        .await
        .unwrap();
    let r = e.replica(Duration::from_secs(2 * 3600)).await;
    let due = r
        .overdue(chrono::Utc::now().timestamp_millis() + 2 * 3_600_000, 10)
        .await
        .unwrap();
    assert!(due.iter().any(|d| d.grant_id == id(&g)));
    assert_eq!(r.expire(&id(&g), 1).await, ExpiryOutcome::Done);
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
    assert_eq!(e.state(&id(&g)).await, GrantState::Revoked.as_str());
}

async fn retryable_okta_errors_are_retried(db: Db) {
    let e = env(db).await;
    let g = e.grant(ALICE, "prod-db-admin", "1h").await;
    e.sim.set_faults(okta_sim::faults::FaultConfig::route(
        "DELETE",
        GROUP_USER,
        okta_sim::faults::FaultSpec {
            error_rate: 1.0,
            error_status: 503,
            ..Default::default()
        },
    ));
    let r = e.replica(Duration::from_secs(2 * 3600)).await;
    assert!(matches!(
        r.expire(&id(&g), 1).await,
        ExpiryOutcome::Retry { .. }
    ));
    assert_eq!(e.state(&id(&g)).await, "revoking");
    e.sim.set_faults(okta_sim::faults::FaultConfig::default());
    assert_eq!(r.expire(&id(&g), 2).await, ExpiryOutcome::Done);
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
}

async fn concurrent_expiries_remove_once(db: Db) {
    let e = env(db).await;
    let g = e.grant(ALICE, "prod-db-admin", "1h").await;
    let (r1, r2) = (
        e.replica(Duration::from_secs(2 * 3600)).await,
        e.replica(Duration::from_secs(2 * 3600)).await,
    );
    let gid = id(&g);
    let (a, b) = tokio::join!(r1.expire(&gid, 1), r2.expire(&gid, 1));
    assert_eq!((a, b), (ExpiryOutcome::Done, ExpiryOutcome::Done));
    assert_eq!(
        e.sim.counter("DELETE", GROUP_USER),
        1,
        "exactly one removal"
    );
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
    e.audit_ok().await;
    let store = e.app.store().await;
    let revoked: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) FROM audit_log WHERE action = 'grant.revoked'")
            .fetch_one(store.pool())
            .await
            .unwrap(),
        0,
    );
    assert_eq!(revoked, 1, "one transition wins");
}

async fn revoke_racing_expiry_and_a_new_grant(db: Db) {
    let e = env(db).await;
    let a = e.grant(ALICE, "prod-db-admin", "1h").await;
    let r = e.replica(Duration::from_secs(2 * 3600)).await;
    let aid = id(&a);
    let path = format!("/v1/grants/{aid}/revoke");
    let (http, exp, b) = tokio::join!(
        e.post(&path, json!({"reason": "race"})),
        r.expire(&aid, 1),
        e.post(
            "/v1/grants",
            json!({"user": ALICE, "resource": "prod-db-admin", "duration": "2h", "reason": "new"})
        ),
    );
    assert_eq!(http.0, StatusCode::OK, "{}", http.1);
    assert!(
        matches!(exp, ExpiryOutcome::Done | ExpiryOutcome::Retry { .. }),
        "{exp:?}"
    );
    assert_eq!(b.0, StatusCode::CREATED, "{}", b.1);
    assert_eq!(e.state(&id(&a)).await, "revoked");
    // Whatever the interleaving, the live grant b keeps its access.
    assert_eq!(e.state(&id(&b.1)).await, "active");
    assert!(
        e.sim.is_member(PROD_ADMINS, ALICE),
        "grant b must keep access"
    );
    e.audit_ok().await;
}

async fn scheduler_expires_a_short_grant(db: Db) {
    let e = env(db).await;
    let g = e.grant(BOB, "prod-db-admin", "1s").await;
    assert!(e.sim.is_member(PROD_ADMINS, BOB));
    wait_until(Duration::from_secs(15), || async {
        !e.sim.is_member(PROD_ADMINS, BOB)
    })
    .await;
    wait_until(Duration::from_secs(5), || async {
        e.state(&id(&g)).await == "revoked"
    })
    .await;
    e.audit_ok().await;
}

async fn cli_lists_shows_and_revokes(db: Db) {
    let e = env(db).await;
    let g = e.grant(CAROL, "payroll", "1h").await;
    let cfg = &e.app.config;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_jit-broker"))
            .args(args)
            .env_remove("JIT_CONFIG")
            .env("JIT_DATABASE__URL", &cfg.database.url)
            .env("JIT_DATABASE__MIGRATE_ON_START", "false")
            .env("JIT_REDIS__KEY_PREFIX", &cfg.redis.key_prefix)
            .env("JIT_OKTA__BASE_URL", &cfg.okta.base_url)
            .env("JIT_OKTA__API_TOKEN", "sim-super-admin-token")
            .env("JIT_POLICY__FILE", cfg.policy.file.as_ref().unwrap())
            .output()
            .unwrap()
    };
    let out = run(&["grants", "list", "--state", "active"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&id(&g)) && stdout.contains("payroll"),
        "{stdout}"
    );
    let out = run(&["grants", "show", &id(&g)]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["user_id"], CAROL);
    let out = run(&["grants", "list", "--state", "bogus"]);
    assert!(!out.status.success());
    let out = run(&["grants", "revoke", &id(&g), "--reason", "offboarding"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(e.state(&id(&g)).await, "revoked");
    assert_eq!(e.sim.app_assignment_scope(PAYROLL, CAROL), None);
    let (_, audit) = e.get("/v1/audit?limit=100").await;
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["actor"] == "cli" && a["action"] == "grant.revoking"));
}

async fn failed_provisioning(db: Db) {
    let e = env(db).await;
    let fault = |status: u16| {
        okta_sim::faults::FaultConfig::route(
            "PUT",
            GROUP_USER,
            okta_sim::faults::FaultSpec {
                error_rate: 1.0,
                error_status: status,
                ..Default::default()
            },
        )
    };
    // A definite refusal: failed, nothing to clean up, not scheduled for retries.
    e.sim.set_faults(fault(403));
    let (s, r) = e
        .post(
            "/v1/grants",
            json!({"user": ALICE, "resource": "prod-db-admin", "reason": "x"}),
        )
        .await;
    assert!(s.is_server_error() || s.is_client_error(), "{s} {r}");
    let (_, list) = e.get("/v1/grants?state=failed").await;
    let g = list["grants"][0].clone();
    assert!(g["last_error"].is_string(), "{list}");
    assert!(g["next_retry_at"].is_null(), "{g}");
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
    // Ambiguous failures (5xx after the client's retries): failed, cleanup runs at once through
    // the scheduler and ends the grant revoked.
    e.sim.set_faults(fault(503));
    let (s, r) = e
        .post(
            "/v1/grants",
            json!({"user": BOB, "resource": "prod-db-admin", "reason": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{r}");
    e.sim.set_faults(okta_sim::faults::FaultConfig::default());
    wait_until(Duration::from_secs(20), || async {
        let (_, l) = e.get(&format!("/v1/grants?user={BOB}")).await;
        l["grants"][0]["state"] == "revoked"
    })
    .await;
    assert!(!e.sim.is_member(PROD_ADMINS, BOB));
    e.audit_ok().await;
}

async fn provisioning_survives_the_request_timing_out(db: Db) {
    let e = env_with(db, GRANTS_POLICY, |c| {
        c.server.request_timeout = Duration::from_millis(500);
    })
    .await;
    e.sim.set_faults(okta_sim::faults::FaultConfig::route(
        "PUT",
        GROUP_USER,
        okta_sim::faults::FaultSpec {
            latency_ms: Some((1500, 1500)),
            ..Default::default()
        },
    ));
    let (s, r) = e
        .post(
            "/v1/grants",
            json!({"user": ALICE, "resource": "prod-db-admin", "reason": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::REQUEST_TIMEOUT, "{r}");
    // The request was dropped mid-add; provisioning carried on and recorded the activation.
    wait_until(Duration::from_secs(10), || async {
        let (_, l) = e.get(&format!("/v1/grants?user={ALICE}")).await;
        l["grants"][0]["state"] == "active"
    })
    .await;
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    e.audit_ok().await;
}

async fn redis_losing_its_keys_loses_no_expiry(db: Db) {
    // I3: every key under our prefix vanishes (a failover without persistence); SQL is the
    // record, and the scheduler's sweep finds the overdue grant through `overdue`.
    let e = env_with(db, GRANTS_POLICY, |c| {
        c.scheduler.sweep_interval = Duration::from_millis(500);
    })
    .await;
    let g = e.grant(BOB, "prod-db-admin", "1s").await;
    let cfg = &e.app.config.redis;
    let client = redis::Client::open(cfg.url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}}}:*", cfg.key_prefix))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut c)
        .await
        .unwrap();
    wait_until(Duration::from_secs(20), || async {
        !e.sim.is_member(PROD_ADMINS, BOB)
    })
    .await;
    wait_until(Duration::from_secs(5), || async {
        e.state(&id(&g)).await == "revoked"
    })
    .await;
}

both_backends!(
    crashed_provisioning_is_still_expired,
    retryable_okta_errors_are_retried,
    concurrent_expiries_remove_once,
    revoke_racing_expiry_and_a_new_grant,
    scheduler_expires_a_short_grant,
    cli_lists_shows_and_revokes,
    failed_provisioning,
    provisioning_survives_the_request_timing_out,
    redis_losing_its_keys_loses_no_expiry,
);
