//! Figure: how fast the Okta client drains a backlog of group removals under a rate limit, and
//! whether it stays under the limit doing so.
//!
//! Okta allows ~600 group-membership calls per 60 s window. To keep the run short in wall time
//! *per window*, the simulator is set to the same rate over a shorter window (default 60 per
//! 6 s; `DRAIN_WINDOW_S=20` gives 200 per 20 s). 2,000 removals (`DRAIN_N`) are queued at once
//! as revocations; the client must pace itself from the rate-limit headers.
//!
//! Prints: elapsed, achieved rate as a share of the allowed rate (goal ≥ 0.9), and the number
//! of 429s received after the first window (goal: none).
//!
//! Run: `cargo bench --profile dev --bench okta_drain` (the drain is bound by the rate limit,
//! not by CPU, so a dev build measures the same thing).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jit_broker::clock::Clock;
use jit_broker::okta::{OktaClient, Priority, Removal};
use jit_broker::Config;
use okta_sim::seed::{SeedGroup, SeedUser};
use okta_sim::{RateLimitConfig, SimConfig};

const TEMPLATE: &str = "/api/v1/groups/{groupId}/users/{userId}";
const GROUP: &str = "00g1drainbench000001";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let n = env_u64("DRAIN_N", 2000) as usize;
    let window_s = env_u64("DRAIN_WINDOW_S", 6);
    // Okta's 600 per 60 s, scaled to the window.
    let limit = (10 * window_s) as u32;

    let mut seed = okta_sim::default_seed();
    let users: Vec<String> = (0..n).map(|i| format!("00u9drain{:011}", i)).collect();
    for (i, id) in users.iter().enumerate() {
        seed.users.push(SeedUser {
            id: id.clone(),
            login: format!("drain{i}@example.com"),
            first_name: "Drain".into(),
            last_name: format!("{i}"),
            email: None,
            status: "ACTIVE".into(),
        });
    }
    seed.groups.push(SeedGroup {
        id: GROUP.into(),
        name: "drain-bench".into(),
        description: None,
        kind: "OKTA_GROUP".into(),
        members: users.clone(),
    });
    let mut limits = RateLimitConfig::generous();
    limits.window_ms = window_s * 1000;
    limits.groups = limit;
    let sim = okta_sim::spawn(SimConfig {
        seed,
        rate_limits: limits,
        ..SimConfig::default()
    })
    .await
    .unwrap();

    // Production defaults; only the URL and token are given.
    let env = vec![
        ("JIT_OKTA__BASE_URL".to_string(), sim.base_url()),
        (
            "JIT_OKTA__API_TOKEN".to_string(),
            okta_sim::SUPER_ADMIN_TOKEN.to_string(),
        ),
    ];
    let cfg = Config::load_with_env(None, env).unwrap().okta;
    let client = OktaClient::new(&cfg, Clock::system()).unwrap();

    let done = Arc::new(AtomicU64::new(0));
    let refused_in_first_window = Arc::new(AtomicU64::new(u64::MAX));
    let start = Instant::now();
    {
        // Snapshot the refusals at the end of the first window (sim windows start at the
        // first request, which is ours, at `start`).
        let (sim_ref, done_w, first) = (&sim, done.clone(), refused_in_first_window.clone());
        let watcher = async move {
            tokio::time::sleep(Duration::from_secs(window_s) + Duration::from_millis(900)).await;
            // Every request is either a success (a mutation) or a refusal.
            let sent = sim_ref.counter("DELETE", TEMPLATE);
            let ok = sim_ref.mutation_count("DELETE", TEMPLATE);
            let _ = done_w.load(Ordering::SeqCst);
            first.store(sent.saturating_sub(ok), Ordering::SeqCst);
        };
        let drain = futures::stream::iter(users.iter())
            .map(|u| {
                let (client, done) = (&client, done.clone());
                async move {
                    let r = client.remove_group_member(GROUP, u, Priority::Revoke).await;
                    done.fetch_add(1, Ordering::SeqCst);
                    r
                }
            })
            .buffer_unordered(n)
            .collect::<Vec<_>>();
        let (results, ()) = tokio::join!(drain, watcher);
        let elapsed = start.elapsed();
        let removed = results
            .iter()
            .filter(|r| matches!(r, Ok(Removal::Removed)))
            .count();
        let failed = results.iter().filter(|r| r.is_err()).count();
        let sent = sim.counter("DELETE", TEMPLATE);
        let refused_total = sent.saturating_sub(sim.mutation_count("DELETE", TEMPLATE));
        let first = refused_in_first_window.load(Ordering::SeqCst);
        let after_first = refused_total.saturating_sub(first.min(refused_total));
        let allowed = f64::from(limit) / window_s as f64;
        let achieved = n as f64 / elapsed.as_secs_f64();
        let still_members = users.iter().filter(|u| sim.is_member(GROUP, u)).count();
        println!("okta_drain: {n} group removals, sim limit {limit} per {window_s} s (= Okta's 600/60 s rate), client defaults (max_in_flight {})", cfg.max_in_flight);
        println!("  elapsed            {:.1} s", elapsed.as_secs_f64());
        println!("  removed            {removed} (failed {failed}, still members {still_members})");
        println!("  achieved rate      {achieved:.2}/s of allowed {allowed:.2}/s = share {:.3} (goal >= 0.9)", achieved / allowed);
        println!("  429s total         {refused_total} (first window {first}, after it {after_first}; goal 0 after the first window)");
    }
    sim.shutdown().await;
}
