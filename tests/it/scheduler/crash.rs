//! kill -9 in the middle of an expiry: the broker binary claims a due grant, Okta (okta-sim) is
//! slow to answer, the process is killed with SIGKILL while the call is in flight, and another
//! replica takes the grant over once the lease runs out (I1, I4).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jit_broker::auth::hash_token;
use jit_broker::RunOptions;
use okta_sim::{FaultConfig, FaultSpec};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::grants::{id, okta_config, ALICE, POLICY, PRODADMINS};
use crate::helpers::{base_config, wait_until, Db, TestDb, ADMIN_TOKEN};

const MEMBERSHIP: &str = "/api/v1/groups/{groupId}/users/{userId}";

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_killed_mid_flight_is_finished_by_another_replica() {
    // Every membership removal takes 3 s in the simulator: long enough to kill the caller.
    let slow = FaultSpec {
        latency_ms: Some((3_000, 3_000)),
        ..FaultSpec::default()
    };
    let sim = okta_sim::spawn(okta_sim::SimConfig {
        faults: FaultConfig::route("DELETE", MEMBERSHIP, slow),
        ..okta_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let tdb = TestDb::new(Db::Postgres).await;
    let mut config = base_config(&tdb);
    okta_config(&mut config, &sim.base_url());
    config.policy.file = Some(policy.clone());
    config.scheduler.lease = Duration::from_secs(2);

    // The broker binary, configured like `config`.
    let port = free_port();
    let file = dir.path().join("broker.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\
             [database]\nurl = \"{db}\"\n\
             [redis]\nurl = \"{redis}\"\nkey_prefix = \"{prefix}\"\n\
             [okta]\nbase_url = \"{okta}\"\nauth = \"ssws\"\n\
             [policy]\nfile = \"{policy}\"\n\
             [scheduler]\nlease = \"2s\"\n\
             [[auth.tokens]]\nname = \"admin\"\nroles = [\"admin\"]\nsha256 = \"{sha}\"\n",
            db = config.database.url,
            redis = config.redis.url,
            prefix = config.redis.key_prefix,
            okta = sim.base_url(),
            policy = policy.display(),
            sha = hash_token(ADMIN_TOKEN),
        ),
    )
    .unwrap();
    let mut broker = Broker(
        Command::new(env!("CARGO_BIN_EXE_jit-broker"))
            .arg("--config")
            .arg(&file)
            .arg("serve")
            .env("JIT_OKTA__API_TOKEN", "sim-super-admin-token")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_until(Duration::from_secs(60), || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;

    let r = http
        .post(format!("{base}/v1/grants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"user": "alice@example.com", "resource": "prod-db-admin",
                      "duration": "1s", "reason": "crash test"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let g: Value = r.json().await.unwrap();
    let gid = id(&g);
    assert!(sim.is_member(PRODADMINS, ALICE));

    // The broker's expiry is now waiting on Okta: kill it there.
    wait_until(Duration::from_secs(30), || async {
        sim.counter("DELETE", MEMBERSHIP) >= 1
    })
    .await;
    broker.0.kill().unwrap(); // SIGKILL
    broker.0.wait().unwrap();

    // A fresh replica (in this process) on the same SQL and Redis finishes the job.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(jit_broker::run_with(
        config,
        listener,
        async move {
            let _ = rx.await;
        },
        RunOptions::default(),
    ));
    let state = || async {
        let r = http
            .get(format!("http://{addr}/v1/grants/{gid}"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.unwrap()["state"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        }
    };
    // Bounded by the grants service's access lock: the killed process held it, and it lapses
    // only after `grants::lock::LOCK_TTL` (a few seconds) once the dead holder stops renewing it.
    wait_until(
        jit_broker::grants::lock::LOCK_TTL + Duration::from_secs(90),
        || async { state().await == "revoked" },
    )
    .await;
    let g: Value = http
        .get(format!("http://{addr}/v1/grants/{gid}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    eprintln!(
        "kill -9 mid-expiry: revoked {} ms after expires_at",
        g["ended_at"].as_i64().unwrap() - g["expires_at"].as_i64().unwrap()
    );
    assert!(!sim.is_member(PRODADMINS, ALICE));
    // The killed call may or may not have reached the simulator's state; the removal that
    // counted happened at most twice and the second was harmless (I4).
    let removals = sim.mutation_count("DELETE", MEMBERSHIP);
    assert!((1..=2).contains(&removals), "{removals} removals");
    let store = jit_broker::store::Store::connect(&tdb_config(&tdb))
        .await
        .unwrap();
    let report = jit_broker::audit::verify(&store).await.unwrap();
    assert!(report.ok(), "audit chain broken: {:?}", report.first_broken);
    let _ = tx.send(());
    run.await.unwrap().unwrap();
}

fn tdb_config(tdb: &TestDb) -> jit_broker::config::DatabaseConfig {
    base_config(tdb).database
}
