//! Figures for the inventory sync: a generated org (default 50,000 users, 2,000 groups, 200 of
//! them managed) in okta-sim with Okta's published per-minute rate limits.
//!
//! Prints, for a first sync (full) and a no-change sync (delta) right after it: wall time, Okta
//! calls by bucket, and the minimum number of calls the pages require (every list read at
//! Okta's largest page: users 200, groups 10,000, members `okta.page_size` capped at 1,000).
//! With `SYNC_MODE=burst`, the revocation lane under a sync instead: a burst of
//! group-membership removals (default 200, all due at once) timed alone and, one rate-limit
//! window later, while a first (full) sync reads flat out on the same client; it prints each
//! burst's lateness (completion minus the burst's start) p50/p99/max.
//!
//! Environment: `SYNC_USERS`, `SYNC_GROUPS`, `SYNC_MANAGED`, `SYNC_BURST` (removals),
//! `SYNC_WINDOW_S` (the simulator's rate-limit window; Okta's is 60 s, and a shorter one scales
//! every per-minute limit down in proportion). SQLite in a temporary directory, Redis on
//! 127.0.0.1:6379 (`TEST_REDIS_URL`) under a unique prefix.
//!
//! Run: `cargo bench --profile dev --bench sync` (the sync is bound by Okta's rate limits and
//! SQL writes; a dev build measures the same shape).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jit_broker::clock::Clock;
use jit_broker::grants::GrantService;
use jit_broker::okta::{OktaClient, Priority};
use jit_broker::policy::{Policy, PolicyHandle};
use jit_broker::redis_conn::RedisConn;
use jit_broker::store::Store;
use jit_broker::sync::{RunRecord, SyncOptions, Syncer};
use jit_broker::Config;
use okta_sim::{RateLimitConfig, SimConfig};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn print_run(label: &str, r: &RunRecord, wall: Duration, minimum: u64) {
    let calls: BTreeMap<_, _> = r.okta_calls.read.clone();
    println!(
        "  {label:<16} {:>7.1} s  Okta calls {:>5} {:?}  minimum {:>5}  ({} users, {} groups read; {} objects listed, {} unchanged; {} memberships)",
        wall.as_secs_f64(),
        r.okta_calls.total(),
        calls,
        minimum,
        r.counts.users_read,
        r.counts.groups_read,
        r.counts.objects_listed,
        r.counts.objects_unchanged,
        r.counts.memberships_seen,
    );
}

#[tokio::main]
async fn main() {
    let users = env_u64("SYNC_USERS", 50_000) as usize;
    let groups = env_u64("SYNC_GROUPS", 2_000) as usize;
    let managed = env_u64("SYNC_MANAGED", 200) as usize;
    let burst = env_u64("SYNC_BURST", 200) as usize;
    let window_s = env_u64("SYNC_WINDOW_S", 60);

    let seed = okta_sim::generate(users, groups, 7);
    // Managed: the first `managed` OKTA_GROUPs.
    let managed_ids: Vec<(String, usize)> = seed
        .groups
        .iter()
        .filter(|g| g.kind == "OKTA_GROUP")
        .take(managed)
        .map(|g| (g.id.clone(), g.members.len()))
        .collect();
    let memberships: usize = managed_ids.iter().map(|(_, n)| n).sum();
    let mut policy = String::new();
    for (i, (id, _)) in managed_ids.iter().enumerate() {
        policy.push_str(&format!(
            "[[resource]]\nname = \"g{i}\"\nkind = \"okta_group\"\nokta_id = \"{id}\"\n\
             default_duration = \"1h\"\nmax_duration = \"4h\"\napprovals_required = 0\n\n"
        ));
    }
    let mut limits = RateLimitConfig::okta();
    let scale = |per_min: u32| ((u64::from(per_min) * window_s) / 60).max(1) as u32;
    limits.window_ms = window_s * 1000;
    limits.groups = scale(limits.groups);
    limits.group_by_id = scale(limits.group_by_id);
    limits.apps = scale(limits.apps);
    limits.users = scale(limits.users);
    limits.other = scale(limits.other);
    let sim = okta_sim::spawn(SimConfig {
        seed,
        rate_limits: limits.clone(),
        ..SimConfig::default()
    })
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let redis_url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let env = vec![
        ("JIT_OKTA__BASE_URL".to_string(), sim.base_url()),
        (
            "JIT_OKTA__API_TOKEN".to_string(),
            okta_sim::SUPER_ADMIN_TOKEN.to_string(),
        ),
        (
            "JIT_DATABASE__URL".to_string(),
            format!("sqlite://{}", dir.path().join("sync.db").display()),
        ),
        ("JIT_REDIS__URL".to_string(), redis_url),
        (
            "JIT_REDIS__KEY_PREFIX".to_string(),
            format!("bench{}", uuid::Uuid::new_v4().simple()),
        ),
    ];
    let cfg = Config::load_with_env(None, env).unwrap();
    let store = Store::connect(&cfg.database).await.unwrap();
    store.migrate().await.unwrap();
    let redis = RedisConn::connect(&cfg.redis).await.unwrap();
    let clock = Clock::system();
    let okta = OktaClient::new(&cfg.okta, clock.clone()).unwrap();
    // A generated org has no user for the token's principal: the probe fails, and an unprobed
    // client lets Okta decide each call (what the sync needs here).
    let _ = okta.probe_capabilities().await;
    let grants = GrantService::new(
        store.clone(),
        redis,
        clock,
        okta.clone(),
        PolicyHandle::new(Policy::parse(&policy).unwrap(), None),
        Duration::from_secs(600),
    );
    let syncer = Syncer::new(grants, cfg.sync.clone());

    let min_first = (users as u64).div_ceil(200)
        + ((groups + 1) as u64).div_ceil(10_000)
        + managed_ids
            .iter()
            .map(|(_, n)| (*n as u64).div_ceil(1000).max(1))
            .sum::<u64>();
    // A no-change delta: one (empty) users page with the lastUpdated filter, one groups page.
    let min_delta = 1 + ((groups + 1) as u64).div_ceil(10_000);
    println!(
        "sync bench: {users} users, {groups} groups, {managed} managed groups holding {memberships} memberships; okta-sim with Okta's published limits per {window_s} s window (users {}, groups {}), okta.read_share {} %",
        limits.users, limits.groups, cfg.okta.read_share
    );
    if std::env::var("SYNC_MODE").as_deref() != Ok("burst") {
        let t = Instant::now();
        let first = syncer.run(SyncOptions::default()).await.unwrap();
        print_run("first (full)", &first, t.elapsed(), min_first);
        let t = Instant::now();
        let second = syncer.run(SyncOptions::default()).await.unwrap();
        print_run("no-change", &second, t.elapsed(), min_delta);
        sim.shutdown().await;
        store.close().await;
        return;
    }

    // SYNC_MODE=burst: the revocation lane with and without a sync reading on the same client.
    // Each removal takes a real member out of a managed group.
    let victims: Vec<(String, String)> = okta_sim::generate(users, groups, 7)
        .groups
        .iter()
        .filter(|g| managed_ids.iter().any(|(id, _)| *id == g.id))
        .flat_map(|g| g.members.iter().map(move |u| (g.id.clone(), u.clone())))
        .take(2 * burst)
        .collect();
    let run_burst = |batch: Vec<(String, String)>| {
        let okta = okta.clone();
        async move {
            let start = Instant::now();
            let mut lat: Vec<f64> = futures::stream::iter(batch)
                .map(|(g, u)| {
                    let okta = okta.clone();
                    async move {
                        okta.remove_group_member(&g, &u, Priority::Revoke)
                            .await
                            .unwrap();
                        start.elapsed().as_secs_f64()
                    }
                })
                .buffer_unordered(usize::MAX)
                .collect()
                .await;
            lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
            lat
        }
    };
    // Both bursts start on a fresh rate-limit window: the first on the new simulator, the
    // second after waiting one window out.
    let t0 = Instant::now();
    let alone = run_burst(victims[..burst].to_vec()).await;
    tokio::time::sleep(Duration::from_secs(window_s + 1).saturating_sub(t0.elapsed())).await;
    let sync_task = {
        let syncer = syncer.clone();
        tokio::spawn(async move { syncer.run(SyncOptions::default()).await })
    };
    // Let the sync get going: it reads users first, then lists members in the removals' bucket.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = run_burst(victims[burst..].to_vec()).await;
    let t = Instant::now();
    let r = sync_task.await.unwrap().unwrap();
    for (label, l) in [("burst alone", &alone), ("burst + sync", &during)] {
        println!(
            "  {label:<16} {} removals: lateness p50 {:.3} s  p99 {:.3} s  max {:.3} s",
            l.len(),
            pct(l, 0.5),
            pct(l, 0.99),
            l.last().copied().unwrap_or(0.0)
        );
    }
    println!(
        "  the concurrent first sync: {} read calls, finished {:.1} s after the burst",
        r.okta_calls.read.values().sum::<u64>(),
        t.elapsed().as_secs_f64()
    );
    sim.shutdown().await;
    store.close().await;
}
