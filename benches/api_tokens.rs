//! API latency with an Okta access token versus a static token, printed, never asserted.
//!
//! One broker against okta-sim with `[access_tokens]` on; the same read (`GET /v1/requests`)
//! `BENCH_N` times (default 2000) with each credential, interleaved so both see the same
//! database and machine load, after a warm-up that fills the key and person caches. The JWT path
//! adds the RS256 verification and a cache lookup of the person; the JWKS is fetched once (the
//! bench prints how many fetches it saw). `BENCH_DATABASE_URL` as in the other benches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/broker.rs"]
mod broker;

use std::time::{Duration, Instant};

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn get(b: &broker::Broker, bearer: &str) -> f64 {
    let t = Instant::now();
    let r = b
        .http
        .get(format!("{}/v1/requests?limit=10", b.base))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let _ = r.bytes().await.unwrap();
    t.elapsed().as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let (sim, _, _) = broker::sim_with_users("tok", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = broker::config(dir.path(), &sim);
    config.access_tokens.issuer = sim.auth_server_issuer("default");
    config.access_tokens.audience = "api://default".into();
    config.access_tokens.jwks_refresh_min_interval = Duration::from_secs(60);
    config.log.level = "warn".into();
    let b = broker::Broker::start(config).await;
    let jwt = sim
        .mint_access_token(&okta_sim::authz::MintSpec {
            login: "tok0@example.com".into(),
            scopes: vec!["jit.read".into()],
            ..Default::default()
        })
        .unwrap();
    for _ in 0..50 {
        get(&b, "bench-token").await;
        get(&b, &jwt).await;
    }
    let (mut st, mut jw) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        st.push(get(&b, "bench-token").await);
        jw.push(get(&b, &jwt).await);
    }
    println!("api_tokens: GET /v1/requests, n={n} each, interleaved, one client at a time");
    for (name, v) in [("static token", &mut st), ("okta access token", &mut jw)] {
        println!(
            "  {name:<18} p50 {:>7.3} ms   p99 {:>7.3} ms",
            pct(v, 0.50),
            pct(v, 0.99)
        );
    }
    println!("  JWKS fetches during the run: {}", sim.jwks_fetches());
    b.stop().await;
    sim.shutdown().await;
}
