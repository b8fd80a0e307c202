//! Highly available Redis (`redis.url` in Sentinel and Cluster modes) against real
//! `redis-server` processes: the primary killed in the middle of an expiry burst (the broker
//! follows the promoted replica; every grant still expires, each access is removed once in
//! effect), a three-node cluster running the scheduler and the access locks unchanged, and
//! malformed or unknown Sentinel settings refused naming `redis.url`.

mod servers;

use std::time::Duration;

use jit_broker::config::RedisConfig;
use jit_broker::redis_conn::RedisConn;
use jit_broker::Config;
use okta_sim::{FaultConfig, FaultSpec};
use serde_json::Value;
use servers::{Cluster, SentinelSet};

use crate::e2e_faults::child::{removals, MEMBERSHIP};
use crate::e2e_faults::PAIRS;
use crate::grants::{env_with, id, Env, POLICY};
use crate::helpers::{unique_prefix, wait_until, Db};

/// Every PAIRS grant, created through the API with `duration`.
async fn grant_all(env: &Env, duration: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (user, resource, _) in PAIRS {
        ids.push(id(&env.grant(user, resource, duration).await));
    }
    ids
}

async fn wait_revoked(env: &Env, ids: &[String]) -> Vec<Value> {
    wait_until(Duration::from_secs(90), || async {
        let mut all = true;
        for i in ids {
            all &= env.state(i).await == "revoked";
        }
        all
    })
    .await;
    let mut out = Vec::new();
    for i in ids {
        out.push(env.get(&format!("/v1/grants/{i}")).await.1);
    }
    out
}

fn lateness_ms(grants: &[Value]) -> Vec<i64> {
    let mut l: Vec<i64> = grants
        .iter()
        .map(|g| g["ended_at"].as_i64().unwrap() - g["expires_at"].as_i64().unwrap())
        .collect();
    l.sort_unstable();
    l
}

/// `round` times each PAIRS membership has been removed so far, exactly.
async fn removed_each(env: &Env, round: usize) {
    let pairs: Vec<(String, String)> = PAIRS
        .iter()
        .map(|(u, _, g)| (g.to_string(), u.to_string()))
        .collect();
    // okta-sim logs events a moment after the change: wait for this round's.
    wait_until(Duration::from_secs(10), || async {
        let r = removals(&env.sim);
        pairs
            .iter()
            .all(|p| r.get(p).copied().unwrap_or(0) >= round)
    })
    .await;
    let removed = removals(&env.sim);
    for p in &pairs {
        assert_eq!(removed[p], round, "{p:?} removed {} times", removed[p]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_mid_burst_loses_nothing() {
    let set = SentinelSet::start("jit");
    let url = set.url();
    // The sweep is what finds a grant whose index entry the promoted replica never received
    // (asynchronous replication); 2 s instead of 30 s keeps the test short.
    let env = env_with(Db::Postgres, POLICY, |c| {
        c.redis.url = url.clone();
        c.scheduler.sweep_interval = Duration::from_secs(2);
    })
    .await;
    // Removals take 1.5 s, so the burst is in flight when the primary dies.
    env.sim.set_faults(FaultConfig::route(
        "DELETE",
        MEMBERSHIP,
        FaultSpec {
            latency_ms: Some((1_500, 1_500)),
            ..FaultSpec::default()
        },
    ));
    let ids = grant_all(&env, "3s").await;
    let before = set.primary_port();
    wait_until(Duration::from_secs(30), || async {
        env.sim.counter("DELETE", MEMBERSHIP) >= 1
    })
    .await;
    let mut set = set;
    set.primary.kill();
    wait_until(Duration::from_secs(60), || async {
        set.primary_port() != before
    })
    .await;
    assert_eq!(set.primary_port(), set.replica.port);
    let grants = wait_revoked(&env, &ids).await;
    let late = lateness_ms(&grants);
    eprintln!(
        "sentinel failover mid-burst: lateness p50 {} ms, max {} ms",
        late[late.len() / 2],
        late[late.len() - 1]
    );
    for (user, _, group) in PAIRS {
        assert!(!env.sim.is_member(group, user), "{user} still in {group}");
    }
    removed_each(&env, 1).await;

    // The broker now works on the promoted replica alone: a new round comes and goes.
    env.sim.set_faults(FaultConfig::default());
    let ids = grant_all(&env, "2s").await;
    wait_revoked(&env, &ids).await;
    removed_each(&env, 2).await;
    env.audit_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_runs_the_scheduler_and_locks_unchanged() {
    let cluster = Cluster::start();
    let url = cluster.url();
    let env = env_with(Db::Sqlite, POLICY, |c| c.redis.url = url.clone()).await;
    let ids = grant_all(&env, "2s").await;
    let grants = wait_revoked(&env, &ids).await;
    let late = lateness_ms(&grants);
    eprintln!(
        "cluster: lateness p50 {} ms, max {} ms",
        late[late.len() / 2],
        late[late.len() - 1]
    );
    removed_each(&env, 1).await;
    // Every key is in one slot: exactly one node holds the broker's keys.
    let prefix = env.app.config.redis.key_prefix.clone();
    let holding = cluster
        .nodes
        .iter()
        .filter(|n| {
            let keys: Vec<String> = n.cmd(redis::cmd("KEYS").arg(format!("{{{prefix}}}:*")));
            !keys.is_empty()
        })
        .count();
    assert_eq!(holding, 1);
    env.audit_ok().await;
}

fn redis_config(url: &str) -> RedisConfig {
    RedisConfig {
        url: url.to_string(),
        key_prefix: unique_prefix(),
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_master_name_is_an_error_naming_the_key() {
    let set = SentinelSet::start("jit");
    let bad = format!(
        "redis+sentinel://127.0.0.1:{}/nosuchmaster",
        set.sentinel.port
    );
    let e = RedisConn::connect(&redis_config(&bad)).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("redis.url") && text.contains("nosuchmaster"),
        "{text}"
    );
    // The right name connects and serves commands.
    let ok = RedisConn::connect(&redis_config(&set.url())).await.unwrap();
    ok.ping().await.unwrap();
}

#[test]
fn malformed_redis_urls_are_refused_naming_the_key() {
    for bad in [
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:notaport/jit",
        "redis+sentinel://127.0.0.1:26379/jit/notadb",
        "redis+cluster://127.0.0.1:7000/0",
        "memcached://127.0.0.1",
    ] {
        let errors =
            Config::load_with_env(None, vec![("JIT_REDIS__URL".into(), bad.into())]).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter().any(|t| t.contains("redis.url")),
            "{bad}: {text:?}"
        );
    }
    for good in [
        "redis+sentinel://s1:26379,s2:26379/jit",
        "redis+cluster://n1:7000,n2:7001,n3:7002",
    ] {
        assert!(
            Config::load_with_env(None, vec![("JIT_REDIS__URL".into(), good.into())]).is_ok(),
            "{good} refused"
        );
    }
}
