//! The scheduler inside the real application: grants created over HTTP expire in okta-sim on
//! their own, with one replica (both SQL backends) and with two and three replicas sharing
//! PostgreSQL and Redis (each membership removed exactly once).

use std::time::Duration;

use jit_broker::RunOptions;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::grants::env;
use crate::helpers::*;

const MEMBERSHIP: &str = "/api/v1/groups/{groupId}/users/{userId}";

/// Another broker process in all but name: the same config (database, Redis prefix, Okta,
/// policy), its own scheduler, HTTP server and tasks.
struct ExtraReplica {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), jit_broker::RunError>>,
}

impl ExtraReplica {
    async fn start(e: &Env) -> ExtraReplica {
        let (addr, tx, handle) =
            crate::helpers::start_broker(e.app.config.clone(), RunOptions::default()).await;
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        crate::helpers::wait_healthy(&http, &base, Duration::from_secs(30)).await;
        ExtraReplica {
            base,
            stop: Some(tx),
            handle,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.handle.await.unwrap().unwrap();
    }
}

async fn grant_json(e: &Env, gid: &str) -> Value {
    e.get(&format!("/v1/grants/{gid}")).await.1
}

async fn a_grant_expires_in_okta_on_its_own(db: Db) {
    let e = env(db).await;
    let g = e.grant("alice@example.com", "prod-db-admin", "2s").await;
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    let gid = id(&g);
    wait_until(Duration::from_secs(30), || async {
        e.state(&gid).await == "revoked"
    })
    .await;
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
    let g = grant_json(&e, &gid).await;
    assert!(g["ended_at"].as_i64().unwrap() >= g["expires_at"].as_i64().unwrap());
    assert_eq!(e.sim.mutation_count("DELETE", MEMBERSHIP), 1);
    e.audit_ok().await;
}

both_backends!(a_grant_expires_in_okta_on_its_own);

/// `k` whole brokers (this test's app and `k - 1` more) on one PostgreSQL database and one Redis
/// prefix; grants created through all of them expire together. Every grant ends `revoked` with
/// exactly one `grant.revoked` audit entry, and okta-sim saw exactly one membership DELETE per
/// membership, which removed it (I4 across replicas).
async fn replicas_remove_each_membership_exactly_once(k: usize, users_per_group: usize) {
    // Small claims, so the expiries due at once are spread over the replicas rather than taken
    // in one batch by whichever claims first.
    let e = env_with(Db::Postgres, GRANTS_POLICY, |c| {
        c.scheduler.batch_size = 4;
        c.scheduler.concurrency = 4;
    })
    .await;
    let mut others = Vec::new();
    for _ in 1..k {
        others.push(ExtraReplica::start(&e).await);
    }
    let admin = e.sim.admin("it-admin@example.com");
    let mut pairs = Vec::new();
    for i in 0..users_per_group {
        let login = format!("r{k}u{i}@example.com");
        let uid = admin.create_user(&login, "Rep", &format!("U{i}")).unwrap();
        pairs.push((login.clone(), uid.clone(), "prod-db-admin", PROD_ADMINS));
        pairs.push((login, uid, "oncall", ON_CALL));
    }
    // Created concurrently, round-robin over the replicas' APIs, all with the same duration.
    let bases: Vec<String> = std::iter::once(e.app.base.clone())
        .chain(others.iter().map(|o| o.base.clone()))
        .collect();
    let mut creating = tokio::task::JoinSet::new();
    for (i, (login, _, resource, _)) in pairs.iter().enumerate() {
        let (http, base) = (e.app.http.clone(), bases[i % k].clone());
        let body = serde_json::json!({"user": login, "resource": resource, "duration": "4s", "reason": "replicas"});
        creating.spawn(async move {
            let r = http
                .post(format!("{base}/v1/grants"))
                .bearer_auth(crate::helpers::ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::CREATED);
            r.json::<Value>().await.unwrap()
        });
    }
    let mut ids = Vec::new();
    while let Some(g) = creating.join_next().await {
        ids.push(id(&g.unwrap()));
    }
    for (_, uid, _, group) in &pairs {
        assert!(e.sim.is_member(group, uid));
    }
    wait_until(Duration::from_secs(60), || async {
        for gid in &ids {
            if e.state(gid).await != "revoked" {
                return false;
            }
        }
        true
    })
    .await;
    let expected: Vec<(String, String)> = pairs
        .iter()
        .map(|(_, uid, _, g)| (g.to_string(), uid.clone()))
        .collect();
    let removed = crate::e2e_faults::child::removals_of(&e.sim, &expected).await;
    for (login, uid, _, group) in &pairs {
        assert!(!e.sim.is_member(group, uid), "{login} still in {group}");
        assert_eq!(
            removed.get(&(group.to_string(), uid.clone())).copied(),
            Some(1),
            "{login} removed from {group} more than once or never"
        );
    }
    assert_eq!(
        e.sim.counter("DELETE", MEMBERSHIP),
        pairs.len() as u64,
        "a membership DELETE was sent more than once"
    );
    assert_eq!(
        e.sim.mutation_count("DELETE", MEMBERSHIP),
        pairs.len() as u64
    );
    let store = e.app.store().await;
    let revoked: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) FROM audit_log WHERE action = 'grant.revoked'")
            .fetch_one(store.pool())
            .await
            .unwrap(),
        0,
    );
    assert_eq!(
        revoked,
        pairs.len() as i64,
        "one revocation recorded per grant"
    );
    e.audit_ok().await;
    for o in others {
        o.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_replicas_remove_each_membership_exactly_once() {
    replicas_remove_each_membership_exactly_once(2, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_app_replicas_remove_each_membership_exactly_once() {
    replicas_remove_each_membership_exactly_once(3, 15).await;
}
