//! Rate limits (per bucket, headers, 429 body, concurrency) and injected faults.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use okta_sim::seed::{ALICE, BOB, PROD_ADMINS};
use okta_sim::{FaultConfig, FaultSpec, RateLimitConfig, SimConfig};
use serde_json::Value;

fn header_i64(r: &reqwest::Response, name: &str) -> i64 {
    r.headers()
        .get(name)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn bucket_limit_gives_okta_429_then_recovers_after_reset() {
    let sim = okta_sim::spawn(SimConfig {
        rate_limits: RateLimitConfig::uniform(3, Duration::from_secs(1)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let api = Api::new(&sim);
    let url = "/api/v1/groups";
    for i in 0..3 {
        let r = api.get(url, READ_ONLY).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header_i64(&r, "x-rate-limit-limit"), 3);
        assert_eq!(header_i64(&r, "x-rate-limit-remaining"), 2 - i);
    }
    let r = api.get(url, READ_ONLY).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header_i64(&r, "x-rate-limit-remaining"), 0);
    assert!(r.headers().get("retry-after").is_none());
    assert!(r.headers().get("date").is_some());
    assert!(r.headers().get("x-okta-request-id").is_some());
    let reset = header_i64(&r, "x-rate-limit-reset");
    assert!(reset > 0);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "E0000047");
    assert_eq!(
        body["errorSummary"],
        "API call exceeded rate limit due to too many requests."
    );
    // Another bucket is unaffected.
    let r = api.get(&format!("/api/v1/users/{ALICE}"), READ_ONLY).await;
    assert_eq!(r.status(), 200);
    // After the window the bucket answers again.
    let ok = wait_until(Duration::from_secs(5), || async {
        api.get(url, READ_ONLY).await.status() == 200
    })
    .await;
    assert!(ok);
    assert!(sim.counter("GET", "/api/v1/groups") >= 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn concurrency_cap_answers_429() {
    let sim = start().await;
    sim.set_rate_limits(RateLimitConfig {
        concurrency: 1,
        ..RateLimitConfig::generous()
    });
    sim.set_faults(FaultConfig {
        global: FaultSpec {
            latency_ms: Some((300, 300)),
            ..Default::default()
        },
        ..Default::default()
    });
    let c = client();
    let url = format!("{}/api/v1/users/{ALICE}", sim.base_url());
    let a = c.get(&url).header("Authorization", ssws(READ_ONLY)).send();
    let b = c.get(&url).header("Authorization", ssws(READ_ONLY)).send();
    let (a, b) = tokio::join!(a, b);
    let mut statuses = vec![a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, vec![200, 429]);
    sim.shutdown().await;
}

#[tokio::test]
async fn fail_next_and_forced_429_window() {
    let sim = start().await;
    let api = Api::new(&sim);
    let c = &api.c;
    let tpl = "/api/v1/groups/{groupId}/users/{userId}";
    sim.set_faults(FaultConfig::route(
        "PUT",
        tpl,
        FaultSpec {
            fail_next: 2,
            error_status: 503,
            ..Default::default()
        },
    ));
    let url = format!(
        "{}/api/v1/groups/{PROD_ADMINS}/users/{ALICE}",
        sim.base_url()
    );
    let put = || {
        c.put(&url)
            .header("Authorization", ssws(SUPER))
            .header("Content-Length", "0")
            .send()
    };
    assert_eq!(put().await.unwrap().status(), 503);
    assert!(!sim.is_member(PROD_ADMINS, ALICE));
    assert_eq!(put().await.unwrap().status(), 503);
    assert_eq!(put().await.unwrap().status(), 204);
    assert_eq!(sim.counter("PUT", tpl), 3);
    assert_eq!(sim.mutation_count("PUT", tpl), 1);
    // Other routes are not affected by a per-route fault.
    let r = api.get("/api/v1/groups", SUPER).await;
    assert_eq!(r.status(), 200);

    sim.set_faults(FaultConfig {
        global: FaultSpec {
            force_429_for_ms: Some(300),
            ..Default::default()
        },
        ..Default::default()
    });
    let r = api.get("/api/v1/groups", SUPER).await;
    expect_error(r, 429, "E0000047").await;
    let ok = wait_until(Duration::from_secs(5), || async {
        api.get("/api/v1/groups", SUPER).await.status() == 200
    })
    .await;
    assert!(ok);
    sim.shutdown().await;
}

async fn error_pattern(seed: u64) -> Vec<u16> {
    let sim = okta_sim::spawn(SimConfig {
        rng_seed: seed,
        faults: FaultConfig {
            global: FaultSpec {
                error_rate: 0.5,
                ..Default::default()
            },
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let api = Api::new(&sim);
    let mut out = Vec::new();
    for _ in 0..40 {
        let r = api.get(&format!("/api/v1/users/{BOB}"), SUPER).await;
        out.push(r.status().as_u16());
    }
    sim.shutdown().await;
    out
}

#[tokio::test]
async fn random_faults_are_deterministic_under_a_seed() {
    let a = error_pattern(11).await;
    let b = error_pattern(11).await;
    assert_eq!(a, b);
    assert!(a.contains(&500) && a.contains(&200));
}

#[tokio::test]
async fn hang_after_apply_times_the_client_out_but_changes_state() {
    let sim = start().await;
    let tpl = "/api/v1/groups/{groupId}/users/{userId}";
    sim.set_faults(FaultConfig::route(
        "PUT",
        tpl,
        FaultSpec {
            timeout_rate: 1.0,
            hang_ms: 60_000,
            timeout_after_apply: true,
            ..Default::default()
        },
    ));
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = c
        .put(format!(
            "{}/api/v1/groups/{PROD_ADMINS}/users/{ALICE}",
            sim.base_url()
        ))
        .header("Authorization", ssws(SUPER))
        .header("Content-Length", "0")
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    assert!(sim.is_member(PROD_ADMINS, ALICE));
    // Shutdown ends the hung request instead of waiting a minute.
    tokio::time::timeout(Duration::from_secs(10), sim.shutdown())
        .await
        .unwrap();
}
