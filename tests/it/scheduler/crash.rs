//! kill -9 of the broker binary while Okta (okta-sim) is slow to answer, so the process dies with
//! calls in flight: mid-expiry with another replica taking over once the lease runs out, and
//! mid-provisioning and mid-revocation with the same broker restarted on the same database and
//! Redis prefix (I1, I2, I4, I5).

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jit_broker::api::auth::hash_token;
use jit_broker::RunOptions;
use okta_sim::{FaultConfig, FaultSpec};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::e2e_faults::child::{
    removals, removals_of, sim_memberships, unexplained_access, ChildBroker, Overrides,
};
use crate::e2e_faults::PAIRS;
use crate::grants::{id, okta_config, ALICE, CAROL, ONCALL, PAYROLL, POLICY, PRODADMINS};
use crate::helpers::{admin_get, base_config, wait_until, Db, TestDb, ADMIN_TOKEN};

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
    crate::helpers::wait_healthy(&http, &base, Duration::from_secs(60)).await;

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
    let (_, g) = admin_get(
        &http,
        &format!("http://{addr}"),
        &format!("/v1/grants/{gid}"),
    )
    .await;
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

fn pairs() -> Vec<(String, String)> {
    PAIRS
        .iter()
        .map(|(u, _, g)| (g.to_string(), u.to_string()))
        .collect()
}

/// Standing membership in the managed groups before any grant: carol is on call.
fn seed_standing() -> BTreeSet<(String, String)> {
    BTreeSet::from([(ONCALL.to_string(), CAROL.to_string())])
}

fn slow(method: &str, ms: u64) -> FaultConfig {
    FaultConfig::route(
        method,
        MEMBERSHIP,
        FaultSpec {
            latency_ms: Some((ms, ms)),
            ..FaultSpec::default()
        },
    )
}

fn crash_overrides() -> Overrides {
    vec![
        ("JIT_SCHEDULER__LEASE", "2s".into()),
        ("JIT_SCHEDULER__BACKOFF_BASE", "200ms".into()),
        ("JIT_SCHEDULER__BACKOFF_MAX", "1s".into()),
    ]
}

async fn states(b: &ChildBroker, ids: &[String]) -> Vec<String> {
    let all = b.grants().await;
    ids.iter()
        .map(|id| {
            all.iter()
                .find(|g| g["id"] == id.as_str())
                .map(|g| g["state"].as_str().unwrap().to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// kill -9 while seven grants wait on okta-sim's slow membership PUT (rows committed, standing
/// recorded, Okta's answer not yet seen), then the same broker again: each grant is expired at its
/// provisional expiry whether or not the killed PUT landed, nothing is left in Okta that no live
/// grant explains, and a grant that was already active keeps its access.
async fn killed_mid_provisioning_then_restarted(db: Db) {
    let sim = okta_sim::spawn(okta_sim::SimConfig::default())
        .await
        .unwrap();
    let mut b = ChildBroker::start(TestDb::new(db).await, &sim.base_url(), crash_overrides()).await;
    // An unrelated grant, active before the crash, that must survive it.
    let keep = b.grant("alice@example.com", "payroll", "1h").await;
    // The PUT takes 2.5 s, well inside the 6 s provisional expiry: a killed PUT that okta-sim
    // still applies lands before the restarted broker removes it.
    sim.set_faults(slow("PUT", 2_500));
    let mut creating = tokio::task::JoinSet::new();
    for (user, resource, _) in PAIRS {
        let (http, base) = (b.http.clone(), b.base.clone());
        // These requests die with the broker: their outcome is read back after the restart.
        creating.spawn(async move {
            let _ = http
                .post(format!("{base}/v1/grants"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"user": user, "resource": resource, "duration": "6s", "reason": "crash"}))
                .send()
                .await;
        });
    }
    wait_until(Duration::from_secs(20), || async {
        sim.counter("PUT", MEMBERSHIP) >= PAIRS.len() as u64
    })
    .await;
    b.kill9();
    creating.abort_all();
    sim.set_faults(FaultConfig::default());
    let at_kill = b.sql_states().await;
    assert_eq!(
        at_kill.len(),
        PAIRS.len() + 1,
        "every row was durable before Okta was called (I2): {at_kill:?}"
    );
    let provisioning = at_kill.values().filter(|s| *s == "provisioning").count();
    assert!(
        provisioning > 0,
        "the kill did not land mid-provisioning: {at_kill:?}"
    );

    b.restart().await;
    let ours: Vec<Value> = b
        .grants()
        .await
        .into_iter()
        .filter(|g| g["id"] != keep["id"])
        .collect();
    // Whatever the killed PUTs did, every membership is explained by a live grant.
    let members = sim_memberships(&sim.base_url()).await;
    let left = unexplained_access(&members, &ours, &[PRODADMINS, ONCALL], &seed_standing());
    assert!(left.is_empty(), "access without a live grant: {left:?}");
    eprintln!(
        "kill -9 mid-provisioning: {provisioning} of {} grants provisioning, {} memberships added",
        ours.len(),
        sim.mutation_count("PUT", MEMBERSHIP),
    );
    let ids: Vec<String> = ours.iter().map(id).collect();
    wait_until(Duration::from_secs(40), || async {
        states(&b, &ids).await.iter().all(|s| s == "revoked")
    })
    .await;

    let grants = b.grants().await;
    let members = sim_memberships(&sim.base_url()).await;
    let left = unexplained_access(&members, &grants, &[PRODADMINS, ONCALL], &seed_standing());
    assert!(left.is_empty(), "access without a live grant: {left:?}");
    for (user, _, group) in PAIRS {
        assert!(!sim.is_member(group, user), "{user} still in {group}");
    }
    assert!(
        sim.is_member(ONCALL, CAROL),
        "standing membership survives (I5)"
    );
    for ((group, user), n) in removals(&sim) {
        assert_eq!(n, 1, "{user} removed from {group} {n} times");
    }
    // The grant active before the crash is untouched.
    let k = b.get(&format!("/v1/grants/{}", id(&keep))).await.1;
    assert_eq!(k["state"], "active");
    assert_eq!(
        sim.app_assignment_scope(PAYROLL, ALICE).as_deref(),
        Some("USER")
    );
    b.audit_ok().await;
}

/// kill -9 while seven expiries wait on okta-sim's slow membership DELETE (grants `revoking`,
/// claims and access locks held by the dead process), then the same broker again: every grant ends
/// `revoked`, each membership is removed exactly once in effect, and the sessions the policy asks
/// to end are ended.
async fn killed_mid_revocation_then_restarted(db: Db) {
    let sim = okta_sim::spawn(okta_sim::SimConfig::default())
        .await
        .unwrap();
    let mut b = ChildBroker::start(TestDb::new(db).await, &sim.base_url(), crash_overrides()).await;
    let keep = b.grant("alice@example.com", "payroll", "1h").await;
    sim.set_faults(slow("DELETE", 3_000));
    let mut ids = Vec::new();
    for (user, resource, _) in PAIRS {
        ids.push(id(&b.grant(user, resource, "2s").await));
    }
    wait_until(Duration::from_secs(20), || async {
        sim.counter("DELETE", MEMBERSHIP) >= PAIRS.len() as u64
    })
    .await;
    b.kill9();
    sim.set_faults(FaultConfig::default());
    let at_kill = b.sql_states().await;
    let revoking = ids.iter().filter(|i| at_kill[*i] == "revoking").count();
    assert!(
        revoking > 0,
        "the kill did not land mid-revocation: {at_kill:?}"
    );
    eprintln!(
        "kill -9 mid-revocation: {revoking} of {} grants revoking",
        ids.len()
    );

    b.restart().await;
    wait_until(Duration::from_secs(40), || async {
        states(&b, &ids).await.iter().all(|s| s == "revoked")
    })
    .await;
    for (user, _, group) in PAIRS {
        assert!(!sim.is_member(group, user), "{user} still in {group}");
    }
    let removed = removals_of(&sim, &pairs()).await;
    for (user, _, group) in PAIRS {
        let n = removed[&(group.to_string(), user.to_string())];
        assert_eq!(n, 1, "{user} removed from {group} {n} times (I4)");
    }
    for (user, resource, _) in PAIRS {
        if resource == "oncall" {
            assert!(
                sim.sessions_cleared(user) >= 1,
                "{user}'s sessions not ended"
            );
        }
    }
    for g in b.grants().await {
        if g["id"] == keep["id"] {
            assert_eq!(g["state"], "active");
            continue;
        }
        assert!(g["ended_at"].as_i64().unwrap() >= g["expires_at"].as_i64().unwrap());
    }
    let members = sim_memberships(&sim.base_url()).await;
    let left = unexplained_access(
        &members,
        &b.grants().await,
        &[PRODADMINS, ONCALL],
        &seed_standing(),
    );
    assert!(left.is_empty(), "access without a live grant: {left:?}");
    assert_eq!(
        sim.app_assignment_scope(PAYROLL, ALICE).as_deref(),
        Some("USER")
    );
    b.audit_ok().await;
}

both_backends!(
    killed_mid_provisioning_then_restarted,
    killed_mid_revocation_then_restarted
);
