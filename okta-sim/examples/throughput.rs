//! Measures simulator throughput: 64 concurrent reqwest tasks over loopback for a fixed time,
//! a read-heavy mix like the broker's (GET user, GET group members page, PUT/DELETE member).
//!
//! Run: `cargo run --release -p okta-sim --example throughput -- [seconds] [tasks]`.
//! Prints requests/s and the status histogram; it measures, it asserts nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use okta_sim::SimConfig;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let tasks: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let cfg = SimConfig {
        seed: okta_sim::generate(5_000, 200, 7),
        ..SimConfig::default()
    };
    let sim = okta_sim::spawn(cfg).await.unwrap();
    let base = sim.base_url();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(tasks)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (c, base, stop) = (client.clone(), base.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut hist: BTreeMap<u16, u64> = BTreeMap::new();
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let user = format!("00u{:017}", (t as u64 * 7919 + i) % 5000 + 1);
                let group = format!("00g{:017}", (t as u64 + i) % 199 + 1);
                let req = match i % 4 {
                    0 => c.get(format!("{base}/api/v1/users/{user}")),
                    1 => c.get(format!("{base}/api/v1/groups/{group}/users?limit=50")),
                    2 => c
                        .put(format!("{base}/api/v1/groups/{group}/users/{user}"))
                        .header("Content-Length", "0"),
                    _ => c.delete(format!("{base}/api/v1/groups/{group}/users/{user}")),
                };
                let st = req
                    .header("Authorization", "SSWS sim-super-admin-token")
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                *hist.entry(st).or_default() += 1;
                i += 1;
            }
            hist
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total: BTreeMap<u16, u64> = BTreeMap::new();
    for h in handles {
        for (k, v) in h.await.unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n: u64 = total.values().sum();
    println!(
        "requests: {n} in {elapsed:.1} s with {tasks} tasks = {:.0} req/s; statuses {total:?}",
        n as f64 / elapsed
    );
    sim.shutdown().await;
}
