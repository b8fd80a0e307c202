//! The inventory sync end to end: okta-sim over HTTP, real Redis, both SQL backends. No event
//! hook is registered, so only the sync can notice out-of-band changes (made through the
//! simulator's admin control, as an admin clicking in the Admin Console would).

use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::grants::GrantService;
use jit_broker::okta::OktaClient;
use jit_broker::policy::{Policy, PolicyHandle};
use jit_broker::redis_conn::RedisConn;
use jit_broker::scheduler::{ExpiryHandler, ExpiryOutcome};
use jit_broker::sync::lock::{fenced, SyncLock};
use jit_broker::sync::{RunRecord, SyncError, SyncOptions, Syncer};
use okta_sim::{FaultConfig, FaultSpec};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::grants::{env_with, id, Env, ALICE, BOB, DAVE, PAYROLL, PRODADMINS};
use crate::helpers::*;

const DBOWNERS: &str = "00g1dbowners00000002";

const POLICY: &str = r#"
[[resource]]
name = "prod-db-admin"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
jit_only = true
drift = "enforce"
on_external_removal = "end"

[[resource]]
name = "db-owners"
kind = "okta_group"
okta_id = "00g1dbowners00000002"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
jit_only = true
drift = "report"

[[resource]]
name = "payroll"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "1h"
max_duration = "8h"
approvals_required = 0
on_external_removal = "restore"

[[resource]]
name = "user-admin"
kind = "okta_role"
okta_id = "USER_ADMIN"
default_duration = "30m"
max_duration = "2h"
approvals_required = 0
"#;

const MEMBER_LIST: &str = "/api/v1/groups/{groupId}/users";

async fn env(db: Db) -> Env {
    env_with(db, POLICY, |_| {}).await
}

/// A sync runner on the app's database, Redis prefix and Okta, like a second replica.
async fn syncer(e: &Env) -> Syncer {
    syncer_with(e, |_| {}).await
}

async fn syncer_with(e: &Env, tweak: impl FnOnce(&mut jit_broker::config::Config)) -> Syncer {
    syncer_at(e, Clock::system(), tweak).await
}

async fn syncer_at(
    e: &Env,
    clock: Clock,
    tweak: impl FnOnce(&mut jit_broker::config::Config),
) -> Syncer {
    let mut cfg = e.app.config.clone();
    tweak(&mut cfg);
    let okta = OktaClient::new(&cfg.okta, clock.clone()).unwrap();
    let _ = okta.probe_capabilities().await;
    let grants = GrantService::new(
        e.app.store().await,
        RedisConn::connect(&cfg.redis).await.unwrap(),
        clock,
        okta,
        PolicyHandle::new(Policy::parse(POLICY).unwrap(), None),
        Duration::from_secs(600),
    );
    Syncer::new(grants, cfg.sync.clone())
}

async fn sync(s: &Syncer) -> RunRecord {
    s.run(SyncOptions::default()).await.unwrap()
}

fn finding<'a>(r: &'a RunRecord, kind: &str, user: &str) -> &'a jit_broker::sync::Finding {
    r.report
        .iter()
        .find(|f| f.finding == kind && f.user_id == user)
        .unwrap_or_else(|| panic!("no {kind} finding for {user} in {:#?}", r.report))
}

async fn audit_actions(e: &Env) -> Vec<Value> {
    let (s, a) = e.get("/v1/audit?limit=1000").await;
    assert_eq!(s, StatusCode::OK);
    a["entries"].as_array().unwrap().clone()
}

fn member_lists(e: &Env) -> u64 {
    e.sim.counter("GET", MEMBER_LIST)
}

fn reads(e: &Env) -> u64 {
    [
        "/api/v1/users",
        "/api/v1/groups",
        MEMBER_LIST,
        "/api/v1/apps/{appId}/users",
        "/api/v1/users/{userId}/roles",
    ]
    .iter()
    .map(|t| e.sim.counter("GET", t))
    .sum()
}

async fn hand_added_member_enforced_or_reported(db: Db) {
    let e = env(db).await;
    let s = syncer(&e).await;
    e.sim
        .admin("it-admin@example.com")
        .add_member(PRODADMINS, DAVE)
        .unwrap();
    let r = sync(&s).await;
    assert_eq!(r.outcome, "succeeded");
    assert_eq!(r.mode, "full");
    // prod-db-admin enforces: dave is removed; db-owners reports: bob stays.
    let f = finding(&r, "unexplained", DAVE);
    assert_eq!(
        (f.action.as_str(), f.outcome.as_deref()),
        ("remove", Some("removed"))
    );
    assert!(!e.sim.is_member(PRODADMINS, DAVE));
    let f = finding(&r, "unexplained", BOB);
    assert_eq!(
        (f.resource.as_str(), f.outcome.as_deref()),
        ("db-owners", Some("reported"))
    );
    assert!(e.sim.is_member(DBOWNERS, BOB));
    assert_eq!(r.counts.changed, 1);
    assert!(r.okta_calls.read.values().sum::<u64>() > 0);
    assert_eq!(r.okta_calls.revoke.get("groups"), Some(&1));
    // Both went through the drift reaction shared with the event hooks, audited with the run.
    let audit = audit_actions(&e).await;
    let reverted: Vec<_> = audit
        .iter()
        .filter(|a| a["action"] == "drift.reverted")
        .collect();
    assert_eq!(reverted.len(), 1);
    assert_eq!(reverted[0]["details"]["user_id"], DAVE);
    assert_eq!(
        reverted[0]["details"]["detected"]["sync_run_id"],
        r.id.as_str()
    );
    let reported: Vec<_> = audit
        .iter()
        .filter(|a| a["action"] == "drift.detected")
        .collect();
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0]["details"]["user_id"], BOB);

    // The run is listed and shown with its report.
    let (st, page) = e.get("/v1/sync/runs").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(page["runs"][0]["id"], r.id.as_str());
    assert_eq!(page["runs"][0]["report"], json!([]));
    let (st, one) = e.get(&format!("/v1/sync/runs/{}", r.id)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(one["report"].as_array().unwrap().len(), r.report.len());

    // The inventory says who holds db-owners and why; bob's view lists it.
    let (st, res) = e.get("/v1/inventory/resources/db-owners").await;
    assert_eq!(st, StatusCode::OK, "{res}");
    assert_eq!(res["holders"][0]["user_id"], BOB);
    assert_eq!(res["holders"][0]["login"], "bob@example.com");
    assert_eq!(res["holders"][0]["why"], "unexplained");
    let (st, u) = e.get("/v1/inventory/users/bob@example.com").await;
    assert_eq!(st, StatusCode::OK, "{u}");
    assert_eq!(u["user"]["user_id"], BOB);
    let g = &u["groups"].as_array().unwrap()[0];
    assert_eq!(
        (g["resource"].as_str(), g["name"].as_str()),
        (Some("db-owners"), Some("db-owners"))
    );
    let (_, res) = e.get("/v1/inventory/resources/prod-db-admin").await;
    assert_eq!(res["holders"], json!([]));

    // A granted member is explained by the grant and left alone.
    let gr = e.grant("alice@example.com", "prod-db-admin", "1h").await;
    let r2 = sync(&s).await;
    assert!(
        r2.report.iter().all(|f| f.user_id != ALICE),
        "{:#?}",
        r2.report
    );
    let (_, res) = e.get("/v1/inventory/resources/prod-db-admin").await;
    assert_eq!(res["holders"][0]["why"], "grant");
    assert_eq!(res["holders"][0]["grant_id"], id(&gr).as_str());
    assert!(e.sim.is_member(PRODADMINS, ALICE));
    e.audit_ok().await;
}

async fn expired_grant_whose_removal_was_lost_is_removed(db: Db) {
    let e = env(db).await;
    let s = syncer(&e).await;
    sync(&s).await;
    let g = e.grant("alice@example.com", "prod-db-admin", "1h").await;
    let late = e.replica(Duration::from_secs(2 * 3600)).await;
    assert_eq!(late.expire(&id(&g), 1).await, ExpiryOutcome::Done);
    // The removal is lost: the membership is back before any sync saw it gone.
    e.sim
        .admin("it-admin@example.com")
        .add_member(PRODADMINS, ALICE)
        .unwrap();
    // The next sync runs on a replica whose clock is as far ahead as the one that expired it.
    let ahead = Clock::tokio_at(chrono::Utc::now().timestamp_millis() + 2 * 3600 * 1000 + 60_000);
    let s = syncer_at(&e, ahead, |_| {}).await;
    let r = sync(&s).await;
    let f = finding(&r, "ended_grant_present", ALICE);
    assert_eq!(f.grant_id.as_deref(), Some(id(&g).as_str()));
    assert_eq!(f.outcome.as_deref(), Some("removed"));
    assert!(!e.sim.is_member(PRODADMINS, ALICE));
    // Nothing re-adds it: the next sync has nothing to do.
    let r = sync(&s).await;
    assert!(
        r.report.iter().all(|f| f.user_id != ALICE),
        "{:#?}",
        r.report
    );
    assert!(!e.sim.is_member(PRODADMINS, ALICE));
    assert_eq!(e.state(&id(&g)).await, "revoked");
}

async fn active_grant_removed_by_hand_is_ended_or_restored(db: Db) {
    let e = env(db).await;
    let s = syncer(&e).await;
    let group = e.grant("alice@example.com", "prod-db-admin", "1h").await;
    let app = e.grant("alice@example.com", "payroll", "1h").await;
    let admin = e.sim.admin("it-admin@example.com");
    admin.remove_member(PRODADMINS, ALICE).unwrap();
    admin.unassign_app(PAYROLL, ALICE).unwrap();
    let r = sync(&s).await;
    // prod-db-admin: on_external_removal = "end".
    let f = finding(&r, "grant_missing", ALICE);
    assert_eq!(f.resource, "prod-db-admin");
    assert_eq!(f.action, "end_grant");
    assert_eq!(f.outcome.as_deref(), Some("ended"));
    assert_eq!(e.state(&id(&group)).await, "removed_externally");
    // payroll: on_external_removal = "restore", and the grant is still live.
    let f = r.report.iter().find(|f| f.resource == "payroll").unwrap();
    assert_eq!(
        (f.action.as_str(), f.outcome.as_deref()),
        ("restore", Some("restored"))
    );
    assert_eq!(
        e.sim.app_assignment_scope(PAYROLL, ALICE).as_deref(),
        Some("USER")
    );
    assert_eq!(e.state(&id(&app)).await, "active");
    let audit = audit_actions(&e).await;
    let ended = audit
        .iter()
        .find(|a| a["action"] == "grant.removed_externally")
        .unwrap();
    assert_eq!(ended["details"]["detected"]["sync_run_id"], r.id.as_str());
    let restored = audit
        .iter()
        .find(|a| a["action"] == "sync.access_restored")
        .unwrap();
    assert_eq!(restored["details"]["run_id"], r.id.as_str());
    e.audit_ok().await;
}

async fn no_change_sync_costs_far_fewer_calls(db: Db) {
    let e = env(db).await;
    let s = syncer(&e).await;
    let (r0, l0) = (reads(&e), member_lists(&e));
    let first = sync(&s).await;
    let (r1, l1) = (reads(&e), member_lists(&e));
    let second = sync(&s).await;
    let (r2, l2) = (reads(&e), member_lists(&e));
    assert_eq!(first.mode, "full");
    assert_eq!(second.mode, "delta");
    assert_eq!(l1 - l0, 2, "both managed groups listed on the first run");
    assert_eq!(
        l2 - l1,
        0,
        "no member list when lastMembershipUpdated did not move"
    );
    assert!(r2 - r1 < r1 - r0, "second {} vs first {}", r2 - r1, r1 - r0);
    assert_eq!(second.counts.objects_unchanged, 2);
    // A change to one group re-lists that group only.
    e.sim
        .admin("it-admin@example.com")
        .add_member(DBOWNERS, DAVE)
        .unwrap();
    let third = sync(&s).await;
    assert_eq!(member_lists(&e) - l2, 1);
    assert!(third
        .report
        .iter()
        .any(|f| f.user_id == DAVE && f.resource == "db-owners"));
    // --full lists everything again.
    s.run(SyncOptions {
        full: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(member_lists(&e) - l2, 3);
}

async fn read_only_token_warns_and_changes_nothing(db: Db) {
    let e = env(db).await;
    let s = syncer_with(&e, |c| {
        c.okta.api_token = Some(secrecy::SecretString::from("sim-read-only-token"))
    })
    .await;
    e.sim
        .admin("it-admin@example.com")
        .add_member(PRODADMINS, DAVE)
        .unwrap();
    let before = audit_actions(&e).await.len();
    let r = sync(&s).await;
    assert_eq!(r.outcome, "succeeded");
    assert!(!r.warnings.is_empty(), "{r:#?}");
    let f = finding(&r, "unexplained", DAVE);
    assert_ne!(f.outcome.as_deref(), Some("removed"));
    assert!(e.sim.is_member(PRODADMINS, DAVE));
    assert_eq!(r.counts.changed, 0);
    // Only reports were written (db-owners' bob); nothing was removed or ended.
    let audit = audit_actions(&e).await;
    assert!(
        audit[before..]
            .iter()
            .all(|a| a["action"] == "drift.detected"),
        "{:#?}",
        &audit[before..]
    );
}

async fn one_replica_at_a_time_and_a_fenced_out_one_stops(db: Db) {
    let e = env(db).await;
    let s = syncer(&e).await;
    let redis = RedisConn::connect(&e.app.config.redis).await.unwrap();
    let store = e.app.store().await;
    let held = SyncLock::acquire(&redis, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(matches!(
        s.run(SyncOptions::default()).await,
        Err(SyncError::Busy)
    ));
    assert!(matches!(
        SyncLock::acquire(&redis, Duration::from_secs(30)).await,
        Err(SyncError::Busy)
    ));
    held.release().await;

    // A run whose lock is taken over mid-run stops before its next write: the member listing is
    // slowed, the lock's key is handed to a newer holder that writes first.
    e.sim.set_faults(FaultConfig::route(
        "GET",
        MEMBER_LIST,
        FaultSpec {
            latency_ms: Some((1500, 1500)),
            ..Default::default()
        },
    ));
    e.sim
        .admin("it-admin@example.com")
        .add_member(PRODADMINS, DAVE)
        .unwrap();
    let slow = syncer_with(&e, |c| c.sync.lock_ttl = Duration::from_secs(3)).await;
    let run = tokio::spawn(async move { slow.run(SyncOptions::default()).await });
    wait_until(Duration::from_secs(20), || {
        let store = store.clone();
        async move {
            jit_broker::sync::runs::page(&store, None, 5)
                .await
                .unwrap()
                .iter()
                .any(|r| r.outcome == "running")
        }
    })
    .await;
    let mut c = redis.conn();
    let _: () = redis::cmd("DEL")
        .arg(redis.key("sync:lock"))
        .query_async(&mut c)
        .await
        .unwrap();
    let newer = SyncLock::acquire(&redis, Duration::from_secs(30))
        .await
        .unwrap();
    fenced(&store, newer.fence())
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    let r = run.await.unwrap();
    assert!(
        matches!(r, Err(SyncError::LostLock)),
        "{:?}",
        r.map(|r| r.id)
    );
    assert!(
        e.sim.is_member(PRODADMINS, DAVE),
        "a fenced-out run changed Okta"
    );
    // A write with the older token is refused outright.
    assert!(matches!(
        fenced(&store, newer.fence() - 1).await,
        Err(SyncError::LostLock)
    ));
    newer.release().await;
    e.sim.set_faults(FaultConfig::default());
    let r = sync(&s).await;
    assert_eq!(
        finding(&r, "unexplained", DAVE).outcome.as_deref(),
        Some("removed")
    );
    let runs = jit_broker::sync::runs::page(&store, None, 10)
        .await
        .unwrap();
    assert!(runs.iter().all(|r| r.outcome != "running"));
}

async fn dry_run_changes_nothing(db: Db) {
    let e = env(db).await;
    let s = syncer(&e).await;
    e.sim
        .admin("it-admin@example.com")
        .add_member(PRODADMINS, DAVE)
        .unwrap();
    let g = e.grant("alice@example.com", "payroll", "1h").await;
    e.sim
        .admin("it-admin@example.com")
        .unassign_app(PAYROLL, ALICE)
        .unwrap();
    let before = audit_actions(&e).await.len();
    let r = s
        .run(SyncOptions {
            dry_run: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(r.dry_run);
    let f = finding(&r, "unexplained", DAVE);
    assert_eq!((f.action.as_str(), f.outcome.as_deref()), ("remove", None));
    assert_eq!(finding(&r, "grant_missing", ALICE).action, "restore");
    assert!(e.sim.is_member(PRODADMINS, DAVE));
    assert_eq!(e.sim.app_assignment_scope(PAYROLL, ALICE), None);
    assert_eq!(e.state(&id(&g)).await, "active");
    assert_eq!(audit_actions(&e).await.len(), before);
    assert_eq!(
        e.sim
            .mutation_count("DELETE", "/api/v1/groups/{groupId}/users/{userId}"),
        0
    );

    // The command line: `sync --dry-run --json` prints the report and changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let cfg = &e.app.config;
    let cmd = |args: &[&str]| {
        broker_cmd()
            .env("JIT_DATABASE__URL", &cfg.database.url)
            .env("JIT_REDIS__URL", &cfg.redis.url)
            .env("JIT_REDIS__KEY_PREFIX", &cfg.redis.key_prefix)
            .env("JIT_OKTA__BASE_URL", &cfg.okta.base_url)
            .env("JIT_OKTA__API_TOKEN", "sim-super-admin-token")
            .env("JIT_POLICY__FILE", &policy)
            .args(args)
            .output()
            .unwrap()
    };
    let out = cmd(&["sync", "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["dry_run"], true);
    assert!(rec["report"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["user_id"] == DAVE && f["action"] == "remove"));
    let out = cmd(&["sync", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("dave@example.com"));
    assert!(e.sim.is_member(PRODADMINS, DAVE));
    assert_eq!(audit_actions(&e).await.len(), before);
    // Bad flags are a usage error.
    assert_eq!(cmd(&["sync", "--dry-rn"]).status.code(), Some(2));
}

async fn interrupted_sync_then_new_run_converges(db: Db) {
    let e = env_with(db, POLICY, |c| c.okta.max_retries = 0).await;
    let s = syncer_with(&e, |c| {
        c.okta.max_retries = 0;
        c.sync.lock_ttl = Duration::from_secs(3);
    })
    .await;
    e.sim
        .admin("it-admin@example.com")
        .add_member(PRODADMINS, DAVE)
        .unwrap();
    // A run that fails half way (member listings answer 500): users and groups are written,
    // no group's members are.
    e.sim.set_faults(FaultConfig::route(
        "GET",
        MEMBER_LIST,
        FaultSpec {
            fail_next: 100,
            error_status: 500,
            ..Default::default()
        },
    ));
    assert!(s.run(SyncOptions::default()).await.is_err());
    assert!(e.sim.is_member(PRODADMINS, DAVE));
    // A run dropped where it stood (a crash): its lock is left to expire.
    e.sim.set_faults(FaultConfig::default());
    let crashed = SyncLock::acquire(
        &RedisConn::connect(&e.app.config.redis).await.unwrap(),
        Duration::from_secs(3),
    )
    .await
    .unwrap();
    drop(crashed);
    // Polled with a deadline until the crashed holder's lock has expired.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let r = loop {
        match s.run(SyncOptions::default()).await {
            Ok(r) => break r,
            Err(SyncError::Busy) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(r.outcome, "succeeded");
    assert_eq!(
        finding(&r, "unexplained", DAVE).outcome.as_deref(),
        Some("removed")
    );
    let store = e.app.store().await;
    let runs = jit_broker::sync::runs::page(&store, None, 10)
        .await
        .unwrap();
    assert_eq!(runs.iter().filter(|r| r.outcome == "failed").count(), 1);
    assert!(runs.iter().all(|r| r.outcome != "running"));
}

async fn sync_during_expiry_takes_no_revocation_slot(db: Db) {
    let e = env(db).await;
    let s = syncer(&e).await;
    let mut ids = Vec::new();
    for u in ["alice@example.com", "bob@example.com", "carol@example.com"] {
        ids.push(id(&e.grant(u, "payroll", "1h").await));
    }
    let late = e.replica(Duration::from_secs(2 * 3600)).await;
    let expiring = async {
        let mut out = Vec::new();
        for i in &ids {
            out.push(late.expire(i, 1).await);
        }
        out
    };
    let (outcomes, r) = tokio::join!(expiring, s.run(SyncOptions::default()));
    assert!(outcomes.iter().all(|o| *o == ExpiryOutcome::Done));
    let r = r.unwrap();
    // Every call the sync made was a read: it took no revocation (or grant) slot.
    assert!(r.okta_calls.revoke.is_empty(), "{:?}", r.okta_calls);
    assert!(r.okta_calls.grant.is_empty(), "{:?}", r.okta_calls);
    for i in &ids {
        assert_eq!(e.state(i).await, "revoked");
    }
}

async fn inventory_and_runs_api_refuse_bad_input(db: Db) {
    let e = env(db).await;
    let s = syncer(&e).await;
    let r = sync(&s).await;
    let app = &e.app;
    let get = |path: &str, token: Option<&str>| {
        let mut req = app.http.get(app.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let r = req.send().await.unwrap();
            let st = r.status();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for path in [
        "/v1/inventory/users/bob@example.com",
        "/v1/inventory/resources/db-owners",
        "/v1/sync/runs",
    ] {
        assert_eq!(get(path, None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            get(path, Some(REQUESTER_TOKEN)).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(get(path, Some(AUDITOR_TOKEN)).await.0, StatusCode::OK);
    }
    let cases = [
        (
            "/v1/inventory/users/nobody@example.com",
            StatusCode::NOT_FOUND,
            "unknown_user",
        ),
        (
            "/v1/inventory/users/a%01b",
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/v1/inventory/resources/nope",
            StatusCode::NOT_FOUND,
            "unknown_resource",
        ),
        (
            "/v1/inventory/resources/db-owners?limit=0",
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        ),
        (
            "/v1/inventory/resources/db-owners?limit=x",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/inventory/resources/db-owners?bogus=1",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/sync/runs?limit=501",
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        ),
        (
            "/v1/sync/runs?before=-1",
            StatusCode::BAD_REQUEST,
            "invalid_before",
        ),
        (
            "/v1/sync/runs/not-a-uuid!",
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/v1/sync/runs/00000000-0000-0000-0000-000000000000",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (path, status, code) in cases {
        let (st, body) = get(path, Some(ADMIN_TOKEN)).await;
        assert_eq!(
            (st, body["code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
    }
    let long = format!("/v1/inventory/users/{}", "a".repeat(300));
    assert_eq!(
        get(&long, Some(ADMIN_TOKEN)).await.0,
        StatusCode::BAD_REQUEST
    );
    // Paging holders: limit 1 on a one-member resource gives a cursor, the next page is empty.
    let (_, p1) = get(
        "/v1/inventory/resources/db-owners?limit=1",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(p1["next_after"], BOB);
    let (_, p2) = get(
        &format!("/v1/inventory/resources/db-owners?limit=1&after={BOB}"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(p2["holders"], json!([]));
    let (_, runs) = get(
        &format!("/v1/sync/runs?before={}", r.started_at),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(runs["runs"], json!([]));
}

both_backends!(
    hand_added_member_enforced_or_reported,
    expired_grant_whose_removal_was_lost_is_removed,
    active_grant_removed_by_hand_is_ended_or_restored,
    no_change_sync_costs_far_fewer_calls,
    read_only_token_warns_and_changes_nothing,
    one_replica_at_a_time_and_a_fenced_out_one_stops,
    dry_run_changes_nothing,
    interrupted_sync_then_new_run_converges,
    sync_during_expiry_takes_no_revocation_slot,
    inventory_and_runs_api_refuse_bad_input,
);
