//! The Okta client's behaviour under pressure, against okta-sim over real HTTP: 429s honoured
//! until the server's reset, 5xx and timeouts retried, permanent errors not, the in-flight cap,
//! and revocations ahead of sync reads (both for slots and for a paced bucket's budget).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use jit_broker::okta::{OktaError, Priority, Removal};
use okta_sim::{FaultConfig, FaultSpec, RateLimitConfig, SimConfig};

use crate::helpers::wait_until;
use crate::okta_client::*;

/// Another replica spends the bucket; our call is refused with 429, waits for the reset the
/// server announced, and then succeeds on the first try after it.
#[tokio::test]
async fn rate_limited_call_waits_for_reset_then_succeeds() {
    let sim = sim_with(SimConfig::default()).await;
    sim.set_rate_limits(RateLimitConfig::uniform(5, Duration::from_secs(1)));
    let mut cfg = okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN);
    // Generous: an early retry would show up as extra refused requests, not as a failure.
    cfg.max_retries = 10;
    let c = client(&cfg);
    let other = reqwest::Client::new();
    let mut spent = 0;
    loop {
        let r = other
            .get(format!("{}/api/v1/groups/{PROD_ADMINS}", sim.base_url()))
            .header(
                "Authorization",
                format!("SSWS {}", okta_sim::SUPER_ADMIN_TOKEN),
            )
            .send()
            .await
            .unwrap();
        spent += 1;
        if r.status() == 429 {
            break;
        }
        assert!(spent < 10);
    }
    let before = sim.counter("GET", T_GROUP);
    let g = c
        .get_group(PROD_ADMINS, Priority::Read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.id, PROD_ADMINS);
    // One refusal, one success: the client did not retry before the reset.
    assert_eq!(sim.counter("GET", T_GROUP) - before, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_retried() {
    let sim = sim_with(SimConfig::default()).await;
    sim.set_faults(FaultConfig::route(
        "GET",
        T_GROUP,
        FaultSpec {
            fail_next: 2,
            error_status: 503,
            ..FaultSpec::default()
        },
    ));
    let c = client(&okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN));
    assert!(c
        .get_group(PROD_ADMINS, Priority::Read)
        .await
        .unwrap()
        .is_some());
    assert_eq!(sim.counter("GET", T_GROUP), 3);

    // Exhausted retries surface the last 5xx as a retryable error.
    sim.set_faults(FaultConfig::route(
        "GET",
        T_GROUP,
        FaultSpec {
            fail_next: 10,
            error_status: 500,
            ..FaultSpec::default()
        },
    ));
    let mut cfg = okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN);
    cfg.max_retries = 2;
    let err = client(&cfg)
        .get_group(PROD_ADMINS, Priority::Read)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert!(err.is_retryable());
    assert_eq!(sim.counter("GET", T_GROUP), 6);
    sim.shutdown().await;
}

/// A write whose answer never comes (Okta applied it) times out, is retried, and the retry
/// succeeds because adding an existing member is a success.
#[tokio::test]
async fn timed_out_write_is_retried_idempotently() {
    let sim = sim_with(SimConfig::default()).await;
    sim.set_faults(FaultConfig::route(
        "PUT",
        T_MEMBER,
        FaultSpec {
            timeout_rate: 1.0,
            hang_ms: 30_000,
            timeout_after_apply: true,
            ..FaultSpec::default()
        },
    ));
    let mut cfg = okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.backoff_base = Duration::from_millis(300);
    let c = client(&cfg);
    let call = {
        let c = c.clone();
        tokio::spawn(async move { c.add_group_member(DB_OWNERS, CAROL, Priority::Grant).await })
    };
    wait_until(Duration::from_secs(5), || async {
        sim.counter("PUT", T_MEMBER) >= 1
    })
    .await;
    sim.set_faults(FaultConfig::default());
    call.await.unwrap().unwrap();
    assert!(sim.is_member(DB_OWNERS, CAROL));
    assert_eq!(sim.counter("PUT", T_MEMBER), 2);

    // Every attempt timing out ends in a retryable Timeout.
    sim.set_faults(FaultConfig::route(
        "GET",
        T_USER,
        FaultSpec {
            timeout_rate: 1.0,
            hang_ms: 30_000,
            ..FaultSpec::default()
        },
    ));
    cfg.max_retries = 1;
    cfg.backoff_base = Duration::from_millis(20);
    let err = client(&cfg)
        .get_user(ALICE, Priority::Read)
        .await
        .unwrap_err();
    assert!(matches!(err, OktaError::Timeout), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(sim.counter("GET", T_USER), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn permanent_error_is_not_retried() {
    let sim = sim_with(SimConfig::default()).await;
    // Unprobed, so Okta itself refuses the read-only token.
    let c = client(&okta_config(&sim.base_url(), okta_sim::READ_ONLY_TOKEN));
    let err = c
        .add_group_member(PROD_ADMINS, CAROL, Priority::Grant)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(err.error_code(), Some("E0000006"));
    assert!(!err.is_retryable());
    match &err {
        OktaError::Api {
            request_id,
            error_summary,
            ..
        } => {
            assert!(request_id.is_some());
            assert!(!error_summary.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.counter("PUT", T_MEMBER), 1);
    // A bad token: 401, permanent.
    let bad = client(&okta_config(&sim.base_url(), "not-a-token"));
    let err = bad.get_user(ALICE, Priority::Read).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_retryable());
    sim.shutdown().await;
}

/// 200 concurrent calls through a client capped at 8 in flight, against an Okta that refuses
/// (429) anything above 8 concurrent: all succeed, none refused.
#[tokio::test]
async fn in_flight_cap_holds_under_200_concurrent_calls() {
    let sim = sim_with(SimConfig::default()).await;
    let mut limits = RateLimitConfig::generous();
    limits.concurrency = 8;
    sim.set_rate_limits(limits);
    sim.set_faults(FaultConfig::route(
        "GET",
        T_USER,
        FaultSpec {
            latency_ms: Some((5, 20)),
            ..FaultSpec::default()
        },
    ));
    let mut cfg = okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN);
    cfg.max_in_flight = 8;
    cfg.max_retries = 0;
    let c = client(&cfg);
    let peak = Arc::new(AtomicUsize::new(0));
    let mut calls = Vec::new();
    for i in 0..200 {
        let c = c.clone();
        let peak = peak.clone();
        calls.push(tokio::spawn(async move {
            let id = [ALICE, BOB, CAROL, DAVE][i % 4];
            let r = c.get_user(id, Priority::Read).await;
            peak.fetch_max(c.in_flight(), Ordering::SeqCst);
            r
        }));
    }
    for call in calls {
        assert!(call.await.unwrap().unwrap().is_some());
    }
    assert_eq!(
        sim.counter("GET", T_USER),
        200,
        "no call was refused and retried"
    );
    assert!(peak.load(Ordering::SeqCst) <= 8);
    assert_eq!(c.in_flight(), 0);
    sim.shutdown().await;
}

/// With one slot and a queue of slow sync reads, a revocation is served next, not last.
#[tokio::test]
async fn revocations_jump_queued_sync_reads() {
    let sim = sim_with(SimConfig::default()).await;
    sim.set_faults(FaultConfig::route(
        "GET",
        T_USER,
        FaultSpec {
            latency_ms: Some((30, 30)),
            ..FaultSpec::default()
        },
    ));
    let mut cfg = okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN);
    cfg.max_in_flight = 1;
    let c = client(&cfg);
    let done = Arc::new(AtomicUsize::new(0));
    let mut reads = Vec::new();
    for _ in 0..30 {
        let (c, done) = (c.clone(), done.clone());
        reads.push(tokio::spawn(async move {
            c.get_user(ALICE, Priority::Read).await.unwrap();
            done.fetch_add(1, Ordering::SeqCst)
        }));
    }
    wait_until(Duration::from_secs(5), || async { c.queued() >= 25 }).await;
    let before = done.load(Ordering::SeqCst);
    let revoke = {
        let (c, done) = (c.clone(), done.clone());
        tokio::spawn(async move {
            let r = c
                .remove_group_member(PROD_ADMINS, ALICE, Priority::Revoke)
                .await
                .unwrap();
            (r, done.fetch_add(1, Ordering::SeqCst))
        })
    };
    let (removal, position) = revoke.await.unwrap();
    assert_eq!(removal, Removal::Removed);
    // Only the read already in flight (and at most one racing our enqueue) went first.
    let overtaken_by = position - before;
    assert!(
        overtaken_by <= 2,
        "{overtaken_by} queued reads went before the revocation"
    );
    for r in reads {
        r.await.unwrap();
    }
    sim.shutdown().await;
}

/// Under pacing (the bucket's budget spread over its window), a revocation takes the bucket's
/// next send slot ahead of sync reads queued on the same bucket, and nothing is refused.
#[tokio::test]
async fn revocation_goes_first_within_a_paced_bucket() {
    let sim = sim_with(SimConfig::default()).await;
    sim.set_rate_limits(RateLimitConfig::uniform(10, Duration::from_secs(2)));
    let c = client(&okta_config(&sim.base_url(), okta_sim::SUPER_ADMIN_TOKEN));
    let done = Arc::new(AtomicUsize::new(0));
    let mut reads = Vec::new();
    for _ in 0..16 {
        let (c, done) = (c.clone(), done.clone());
        reads.push(tokio::spawn(async move {
            let n = c
                .list_group_members(DB_OWNERS, Priority::Read)
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
                .len();
            done.fetch_add(1, Ordering::SeqCst);
            n
        }));
    }
    wait_until(Duration::from_secs(5), || async {
        done.load(Ordering::SeqCst) >= 2 && c.queued() >= 8
    })
    .await;
    let before = done.load(Ordering::SeqCst);
    let (removal, position) = {
        let (c, done) = (c.clone(), done.clone());
        tokio::spawn(async move {
            let r = c
                .remove_group_member(PROD_ADMINS, ALICE, Priority::Revoke)
                .await
                .unwrap();
            (r, done.fetch_add(1, Ordering::SeqCst))
        })
        .await
        .unwrap()
    };
    assert_eq!(removal, Removal::Removed);
    let overtaken_by = position - before;
    assert!(
        overtaken_by <= 2,
        "{overtaken_by} queued reads went before the revocation"
    );
    for r in reads {
        r.await.unwrap();
    }
    let sent =
        sim.counter("GET", "/api/v1/groups/{groupId}/users") + sim.counter("DELETE", T_MEMBER);
    assert_eq!(sent, 17, "no request was refused with 429");
    sim.shutdown().await;
}
