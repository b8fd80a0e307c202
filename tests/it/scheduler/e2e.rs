//! The scheduler inside the real application: grants created over HTTP expire in okta-sim on
//! their own, with one replica (both SQL backends) and with two replicas sharing PostgreSQL and
//! Redis (each membership removed exactly once).

use std::time::Duration;

use jit_broker::RunOptions;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::grants::{env, id, Env, ALICE, ONCALL, PRODADMINS};
use crate::helpers::{wait_until, Db};

const MEMBERSHIP: &str = "/api/v1/groups/{groupId}/users/{userId}";

/// Another broker process in all but name: the same config (database, Redis prefix, Okta,
/// policy), its own scheduler, HTTP server and tasks.
struct ExtraReplica {
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), jit_broker::RunError>>,
}

impl ExtraReplica {
    async fn start(e: &Env) -> ExtraReplica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let config = e.app.config.clone();
        let handle = tokio::spawn(async move {
            jit_broker::run_with(
                config,
                listener,
                async move {
                    let _ = rx.await;
                },
                RunOptions::default(),
            )
            .await
        });
        let http = reqwest::Client::new();
        wait_until(Duration::from_secs(30), || async {
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        ExtraReplica {
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
    assert!(e.sim.is_member(PRODADMINS, ALICE));
    let gid = id(&g);
    wait_until(Duration::from_secs(30), || async {
        e.state(&gid).await == "revoked"
    })
    .await;
    assert!(!e.sim.is_member(PRODADMINS, ALICE));
    let g = grant_json(&e, &gid).await;
    assert!(g["ended_at"].as_i64().unwrap() >= g["expires_at"].as_i64().unwrap());
    assert_eq!(e.sim.mutation_count("DELETE", MEMBERSHIP), 1);
    e.audit_ok().await;
}

both_backends!(a_grant_expires_in_okta_on_its_own);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_replicas_remove_each_membership_exactly_once() {
    let e = env(Db::Postgres).await;
    let other = ExtraReplica::start(&e).await;
    // Every (user, group) pair without standing membership in the default seed.
    let pairs = [
        ("alice", "prod-db-admin", PRODADMINS),
        ("bob", "prod-db-admin", PRODADMINS),
        ("carol", "prod-db-admin", PRODADMINS),
        ("dave", "prod-db-admin", PRODADMINS),
        ("alice", "oncall", ONCALL),
        ("bob", "oncall", ONCALL),
        ("dave", "oncall", ONCALL),
    ];
    let mut ids = Vec::new();
    for (user, resource, _) in pairs {
        let g = e
            .grant(&format!("{user}@example.com"), resource, "3s")
            .await;
        ids.push((id(&g), g["user_id"].as_str().unwrap().to_string()));
    }
    wait_until(Duration::from_secs(60), || async {
        for (gid, _) in &ids {
            if e.state(gid).await != "revoked" {
                return false;
            }
        }
        true
    })
    .await;
    for ((_, uid), (_, _, group)) in ids.iter().zip(pairs) {
        assert!(!e.sim.is_member(group, uid), "{uid} still in {group}");
    }
    assert_eq!(
        e.sim.mutation_count("DELETE", MEMBERSHIP),
        pairs.len() as u64,
        "a membership was removed more than once"
    );
    e.audit_ok().await;
    other.stop().await;
}
