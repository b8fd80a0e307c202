//! The whole broker against a misbehaving Okta and a Redis that loses its data (I1, I3, I4, I8):
//! grants created over HTTP, expiring through the real scheduler, okta-sim over HTTP injecting
//! 429s, 5xx, timeouts and permanent refusals, a private `redis-server` flushed mid-run. Where
//! `/metrics` figures are asserted exactly, the broker runs as a child process (the metrics
//! recorder is global to a process, and the other tests' apps share this one).

pub(crate) mod child;
// The scheduler tests' private redis-server, compiled here too (that module is private to them).
#[allow(clippy::duplicate_mod)]
#[path = "scheduler/private_redis.rs"]
mod private_redis;

use std::time::Duration;

use okta_sim::faults::{FaultConfig, FaultSpec};
use okta_sim::RateLimitConfig;
use serde_json::Value;

use self::child::{metric, removals_of, sim_memberships, ChildBroker, MEMBERSHIP};
use self::private_redis::PrivateRedis;
use crate::helpers::*;

const SESSIONS: &str = "/api/v1/users/{userId}/sessions";

/// The (user, resource, group) triples the default seed has no standing membership for
/// (also used by `scheduler::crash`).
pub(crate) const PAIRS: [(&str, &str, &str); 7] = [
    (ALICE, "prod-db-admin", PROD_ADMINS),
    (BOB, "prod-db-admin", PROD_ADMINS),
    (CAROL, "prod-db-admin", PROD_ADMINS),
    (DAVE, "prod-db-admin", PROD_ADMINS),
    (ALICE, "oncall", ON_CALL),
    (BOB, "oncall", ON_CALL),
    (DAVE, "oncall", ON_CALL),
];

fn faults(routes: Vec<(&str, &str, FaultSpec)>) -> FaultConfig {
    let mut f = FaultConfig::default();
    for (method, template, spec) in routes {
        f.routes.insert(format!("{method} {template}"), spec);
    }
    f
}

async fn state_of(b: &ChildBroker, gid: &str) -> Value {
    b.get(&format!("/v1/grants/{gid}")).await.1
}

/// Expiries through 429s, 503s, 500s and timeouts (some applied by Okta before the answer was
/// lost), then a permanent refusal (app access now inherited through a group): every retryable
/// failure is retried with back-off until the access is gone and the grant `revoked`, each
/// membership removed once in effect; the permanent one ends `failed` with its error kept, an
/// alert metric, periodic retries, and `revoked` once an operator removes the cause.
async fn okta_faults_are_retried_until_revoked_and_permanent_ones_fail(db: Db) {
    let sim = okta_sim::spawn(okta_sim::SimConfig::default())
        .await
        .unwrap();
    // One-second windows: a 429's announced reset is at most a second away.
    sim.set_rate_limits(RateLimitConfig::uniform(1_000_000, Duration::from_secs(1)));
    let overrides = vec![
        ("JIT_SCHEDULER__LEASE", "2s".to_string()),
        ("JIT_SCHEDULER__BACKOFF_BASE", "200ms".into()),
        ("JIT_SCHEDULER__BACKOFF_MAX", "1s".into()),
        ("JIT_SCHEDULER__MAX_ATTEMPTS", "50".into()),
        ("JIT_SCHEDULER__FAILED_RETRY_INTERVAL", "1s".into()),
        ("JIT_OKTA__REQUEST_TIMEOUT", "300ms".into()),
        ("JIT_OKTA__MAX_RETRIES", "1".into()),
        ("JIT_OKTA__BACKOFF_BASE", "20ms".into()),
        ("JIT_OKTA__BACKOFF_MAX", "100ms".into()),
        ("JIT_OKTA__RATE_LIMIT_JITTER", "100ms".into()),
    ];
    let b = ChildBroker::start(TestDb::new(db).await, &sim.base_url(), overrides).await;
    let n = PAIRS.len() as u64;
    let mut ids = Vec::new();
    for (user, resource, _) in PAIRS {
        ids.push(id(&b.grant(user, resource, "2s").await));
    }
    let payroll = id(&b.grant("alice@example.com", "payroll", "2s").await);
    // Out of band, payroll is assigned to engineering: alice now holds it through the group and
    // Okta refuses the per-user removal (403 E0000046) — a permanent error.
    sim.admin("it-admin@example.com")
        .assign_app_group(PAYROLL, ENGINEERING)
        .unwrap();

    // Okta misbehaves on every removal: the first 2 requests answer 429 (each pauses the bucket
    // until the window's reset), the next 4n answer 503, and every later one is applied but its
    // answer hangs past the client's 300 ms timeout. A call makes at most two requests
    // (max_retries = 1), nothing can succeed before the tokens are spent, and at most n calls
    // straddle the last token, so at least (2 + 4n - n)/2 > n calls fail: some grant fails twice.
    sim.set_faults(faults(vec![(
        "DELETE",
        MEMBERSHIP,
        FaultSpec {
            force_429_next: 2,
            fail_next: 4 * n as u32,
            error_status: 503,
            timeout_rate: 1.0,
            hang_ms: 1_500,
            timeout_after_apply: true,
            ..FaultSpec::default()
        },
    )]));
    wait_until(Duration::from_secs(40), || async {
        sim.counter("DELETE", MEMBERSHIP) >= 6 * n + 2
            && PAIRS.iter().all(|(u, _, g)| !sim.is_member(g, u))
    })
    .await;
    for gid in &ids {
        let g = state_of(&b, gid).await;
        assert_eq!(
            g["state"], "revoking",
            "Done without an answer from Okta: {g}"
        );
    }

    // Okta answers removals again (those already applied count as done, I4); ending the on-call
    // sessions fails twice with 500 first.
    sim.set_faults(faults(vec![(
        "DELETE",
        SESSIONS,
        FaultSpec {
            fail_next: 2,
            error_status: 500,
            ..FaultSpec::default()
        },
    )]));
    wait_until(Duration::from_secs(30), || async {
        for gid in &ids {
            if state_of(&b, gid).await["state"] != "revoked" {
                return false;
            }
        }
        state_of(&b, &payroll).await["state"] == "failed"
    })
    .await;

    let rows: Vec<Value> = b.grants().await;
    let attempts: Vec<i64> = rows
        .iter()
        .filter(|g| ids.contains(&id(g)))
        .map(|g| g["attempts"].as_i64().unwrap())
        .collect();
    assert!(
        attempts.iter().any(|a| *a >= 2),
        "no grant was retried twice: {attempts:?}"
    );
    let expected: Vec<(String, String)> = PAIRS
        .iter()
        .map(|(u, _, g)| (g.to_string(), u.to_string()))
        .collect();
    let removed = removals_of(&sim, &expected).await;
    for m in &expected {
        assert_eq!(removed[m], 1, "{m:?} removed more than once in effect");
    }
    for user in [ALICE, BOB, DAVE] {
        assert!(
            sim.sessions_cleared(user) >= 1,
            "{user}: on-call sessions not ended"
        );
    }
    let f = state_of(&b, &payroll).await;
    let err = f["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("group assignment"), "last_error kept: {f}");
    assert!(f["next_retry_at"].is_i64(), "{f}");
    assert_eq!(
        sim.app_assignment_scope(PAYROLL, ALICE).as_deref(),
        Some("GROUP")
    );

    let m = b.metrics().await;
    eprintln!(
        "okta faults: attempts {attempts:?}; okta retries rate_limited {} server_error {} timeout {}; \
         expiry retries {}",
        metric(&m, "jit_okta_retries_total", &["reason=\"rate_limited\""]),
        metric(&m, "jit_okta_retries_total", &["reason=\"server_error\""]),
        metric(&m, "jit_okta_retries_total", &["reason=\"timeout\""]),
        metric(&m, "jit_expiry_retries_total", &[]),
    );
    assert!(
        metric(&m, "jit_okta_retries_total", &["reason=\"rate_limited\""]) >= 1.0,
        "{m}"
    );
    assert!(metric(&m, "jit_okta_retries_total", &["reason=\"server_error\""]) >= 1.0);
    assert!(metric(&m, "jit_okta_retries_total", &["reason=\"timeout\""]) >= 1.0);
    assert!(metric(&m, "jit_expiry_retries_total", &[]) >= 2.0 * n as f64);
    assert_eq!(
        metric(&m, "jit_grants_failed_total", &[]),
        1.0,
        "one alert, not one per retry"
    );
    assert!(metric(&m, "jit_expiry_failed_total", &[]) >= 1.0);

    // Failed grants keep being retried; once an operator removes the group assignment, the
    // direct one is removed and the grant ends revoked.
    let tries = sim.counter("DELETE", "/api/v1/apps/{appId}/users/{userId}");
    wait_until(Duration::from_secs(20), || async {
        sim.counter("DELETE", "/api/v1/apps/{appId}/users/{userId}") > tries
    })
    .await;
    sim.admin("it-admin@example.com")
        .unassign_app_group(PAYROLL, ENGINEERING)
        .unwrap();
    wait_until(Duration::from_secs(20), || async {
        state_of(&b, &payroll).await["state"] == "revoked"
    })
    .await;
    assert_eq!(sim.app_assignment_scope(PAYROLL, ALICE), None);
    assert_eq!(
        metric(&b.metrics().await, "jit_grants_failed_total", &[]),
        1.0
    );
    b.audit_ok().await;
}

/// A removal Okta refuses for good (a persistent 403): the grant ends `failed` with the error
/// kept and visible over the API, access still flagged in Okta, `jit_grants_failed_total` rises,
/// it is retried periodically rather than forgotten, and ends `revoked` once Okta accepts.
async fn a_persistent_403_on_removal_ends_failed_with_its_error(db: Db) {
    let e = env_with(db, GRANTS_POLICY, |c| {
        c.scheduler.failed_retry_interval = Duration::from_secs(1);
    })
    .await;
    let failed_before = metric(&e.app.metrics().await, "jit_grants_failed_total", &[]);
    e.sim.set_faults(FaultConfig::route(
        "DELETE",
        MEMBERSHIP,
        FaultSpec {
            error_rate: 1.0,
            error_status: 403,
            ..FaultSpec::default()
        },
    ));
    let gid = id(&e.grant("bob@example.com", "prod-db-admin", "1s").await);
    wait_until(Duration::from_secs(20), || async {
        e.state(&gid).await == "failed"
    })
    .await;
    let (_, g) = e.get(&format!("/v1/grants/{gid}")).await;
    let err = g["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("403"), "last_error kept: {g}");
    assert!(g["next_retry_at"].is_i64(), "{g}");
    assert!(e.sim.is_member(PROD_ADMINS, BOB));
    let failed_after = metric(&e.app.metrics().await, "jit_grants_failed_total", &[]);
    assert!(
        failed_after >= failed_before + 1.0,
        "{failed_before} -> {failed_after}"
    );
    // Retried every failed_retry_interval, not given up on.
    let tries = e.sim.counter("DELETE", MEMBERSHIP);
    wait_until(Duration::from_secs(20), || async {
        e.sim.counter("DELETE", MEMBERSHIP) >= tries + 2
    })
    .await;
    assert_eq!(e.state(&gid).await, "failed");
    e.sim.set_faults(FaultConfig::default());
    wait_until(Duration::from_secs(20), || async {
        e.state(&gid).await == "revoked"
    })
    .await;
    assert!(!e.sim.is_member(PROD_ADMINS, BOB));
    e.audit_ok().await;
}

async fn revoked(e: &crate::helpers::Env, ids: &[String]) -> usize {
    let mut n = 0;
    for gid in ids {
        if e.state(gid).await == "revoked" {
            n += 1;
        }
    }
    n
}

/// FLUSHALL of a private Redis while grants are expiring (some in flight on a slow Okta): the
/// index, claims and access locks vanish; the scheduler notices the missing sentinel, rebuilds
/// from SQL, and every grant — before, during and after the flush — is revoked with its
/// membership removed exactly once (I3, I4).
async fn flushall_mid_run_misses_nothing(db: Db) {
    let server = PrivateRedis::start();
    let url = server.url.clone();
    let e = env_with(db, GRANTS_POLICY, move |c| {
        c.redis.url = url;
        c.scheduler.lease = Duration::from_secs(2);
    })
    .await;
    let admin = e.sim.admin("it-admin@example.com");
    let users: Vec<String> = (0..15)
        .map(|i| {
            admin
                .create_user(&format!("flush{i}@example.com"), "Flush", &format!("U{i}"))
                .unwrap()
        })
        .collect();
    e.sim.set_faults(FaultConfig::route(
        "DELETE",
        MEMBERSHIP,
        FaultSpec {
            latency_ms: Some((100, 400)),
            ..FaultSpec::default()
        },
    ));
    let mut ids = Vec::new();
    for (i, u) in users[..12].iter().enumerate() {
        let d = format!("{}ms", 1000 + 500 * (i % 4));
        ids.push(id(&e.grant(u, "prod-db-admin", &d).await));
    }
    wait_until(Duration::from_secs(20), || async {
        revoked(&e, &ids).await >= 3
    })
    .await;
    tokio::task::block_in_place(|| server.flushall());
    let pending = ids.len() - revoked(&e, &ids).await;
    assert!(
        pending > 0,
        "the flush came after every expiry: nothing was at stake"
    );
    eprintln!(
        "FLUSHALL with {pending} of {} grants not yet revoked",
        ids.len()
    );
    for u in &users[12..] {
        ids.push(id(&e.grant(u, "prod-db-admin", "1s").await));
    }
    wait_until(Duration::from_secs(30), || async {
        revoked(&e, &ids).await == ids.len()
    })
    .await;
    let members = sim_memberships(&e.sim.base_url()).await;
    let expected: Vec<(String, String)> = users
        .iter()
        .map(|u| (PROD_ADMINS.to_string(), u.clone()))
        .collect();
    let removed = removals_of(&e.sim, &expected).await;
    for u in &users {
        assert!(
            !members.contains(&(PROD_ADMINS.to_string(), u.clone())),
            "{u} kept access"
        );
        assert_eq!(
            removed.get(&(PROD_ADMINS.to_string(), u.clone())).copied(),
            Some(1),
            "{u} removed more than once or never"
        );
    }
    // Only a rebuild writes the sentinel: its presence shows the index came back from SQL.
    let client = redis::Client::open(server.url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let epoch: bool = redis::cmd("EXISTS")
        .arg(format!(
            "{{{}}}:expiry:epoch",
            e.app.config.redis.key_prefix
        ))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(epoch, "no rebuild after the flush");
    e.audit_ok().await;
}

both_backends!(
    okta_faults_are_retried_until_revoked_and_permanent_ones_fail,
    a_persistent_403_on_removal_ends_failed_with_its_error,
    flushall_mid_run_misses_nothing,
);
