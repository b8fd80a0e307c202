//! Sync runs: delta costs, the lock and fence, dry runs and the CLI, interrupted runs, the API.

use std::time::Duration;

use jit_broker::redis_conn::RedisConn;
use jit_broker::sync::lock::{fenced, SyncLock};
use jit_broker::sync::{SyncError, SyncOptions};
use okta_sim::{FaultConfig, FaultSpec};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;

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
        .add_member(DB_OWNERS, DAVE)
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
        .add_member(PROD_ADMINS, DAVE)
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
        e.sim.is_member(PROD_ADMINS, DAVE),
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
        .add_member(PROD_ADMINS, DAVE)
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
    assert!(e.sim.is_member(PROD_ADMINS, DAVE));
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
    std::fs::write(&policy, SYNC_POLICY).unwrap();
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
    assert!(e.sim.is_member(PROD_ADMINS, DAVE));
    assert_eq!(audit_actions(&e).await.len(), before);
    // Bad flags are a usage error.
    assert_eq!(cmd(&["sync", "--dry-rn"]).status.code(), Some(2));
}

async fn interrupted_sync_then_new_run_converges(db: Db) {
    let e = env_with(db, SYNC_POLICY, |c| c.okta.max_retries = 0).await;
    let s = syncer_with(&e, |c| {
        c.okta.max_retries = 0;
        c.sync.lock_ttl = Duration::from_secs(3);
    })
    .await;
    e.sim
        .admin("it-admin@example.com")
        .add_member(PROD_ADMINS, DAVE)
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
    assert!(e.sim.is_member(PROD_ADMINS, DAVE));
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

async fn all_groups_lists_unmanaged_groups_as_standing(db: Db) {
    let e = env(db).await;
    let s = syncer_with(&e, |c| c.sync.all_groups = true).await;
    let r = s.run(SyncOptions::default()).await.unwrap();
    // Managed prod-admins and db-owners, plus on-call, engineering and aws-users; never Everyone.
    assert_eq!(r.counts.objects_listed, 5 + 1, "{:?}", r.counts);
    let (st, u) = e.get("/v1/inventory/users/alice@example.com").await;
    assert_eq!(st, StatusCode::OK, "{u}");
    let groups = u["groups"].as_array().unwrap();
    let eng = groups
        .iter()
        .find(|g| g["name"] == "engineering")
        .unwrap_or_else(|| panic!("{u}"));
    assert_eq!(
        (eng["why"].as_str(), eng["resource"].is_null()),
        (Some("standing"), true)
    );
    assert!(groups.iter().all(|g| g["name"] != "Everyone"));
    // Unmanaged objects are never acted on.
    assert!(
        r.report.iter().all(|f| f.resource == "db-owners"),
        "{:#?}",
        r.report
    );
}

async fn all_apps_lists_unmanaged_apps_as_standing(db: Db) {
    let e = env(db).await;
    let s = syncer_with(&e, |c| c.sync.all_apps = true).await;
    let r = s.run(SyncOptions::default()).await.unwrap();
    // Two managed groups, payroll (managed) and aws-prod (not).
    assert_eq!(r.counts.objects_listed, 4, "{:?}", r.counts);
    let (st, u) = e.get("/v1/inventory/users/dave@example.com").await;
    assert_eq!(st, StatusCode::OK, "{u}");
    let aws = &u["apps"].as_array().unwrap()[0];
    assert_eq!(aws["okta_id"], "0oa1awsprod000000002");
    assert_eq!(
        (aws["why"].as_str(), aws["scope"].as_str()),
        (Some("standing"), Some("GROUP"))
    );
}

both_backends!(
    all_groups_lists_unmanaged_groups_as_standing,
    all_apps_lists_unmanaged_apps_as_standing,
    no_change_sync_costs_far_fewer_calls,
    one_replica_at_a_time_and_a_fenced_out_one_stops,
    dry_run_changes_nothing,
    interrupted_sync_then_new_run_converges,
    inventory_and_runs_api_refuse_bad_input,
);
