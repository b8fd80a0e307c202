//! Expiry throughput and lateness: many grants falling due in the same second.
//!
//! `cargo bench --bench expiry` prints, for 10,000 and 100,000 simultaneous expiries:
//! revocations/s, lateness p50/p99/max (completed-at minus due), Redis commands per revocation,
//! the bench process's RSS, and the idle Redis command rate with 100,000 grants scheduled far in
//! the future. Redis is a private `redis-server` on a free port, so its command counter is ours.
//!
//! Each revocation is real work over HTTP: a group membership DELETE against okta-sim (seeded
//! with one group holding every bench user, default generous rate limits), or with
//! `BENCH_TARGET=local` against a minimal Okta-shaped server that isolates the scheduler's own
//! cost. The handler is an `ExpiryHandler` that only revokes; swapping in the grants service
//! needs only a different handler and a way to seed grants.
//!
//! Environment: `BENCH_SIZES` (default `10000,100000`), `BENCH_CONCURRENCY` (default: the
//! config default), `BENCH_IDLE_SECS` (default 35: longer than the 30 s safety cap),
//! `BENCH_HANDLER=grants` to run the burst through the whole broker and its grants service
//! (`expiry/grants.rs`; `BENCH_CREATE_CONCURRENCY`, `BENCH_DATABASE_URL`; `BENCH_CONCURRENCY`
//! then sets the broker's `scheduler.concurrency`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/broker.rs"]
mod broker;
#[path = "expiry/grants.rs"]
mod grants_mode;
#[path = "../tests/it/scheduler/private_redis.rs"]
mod private_redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::delete;
use jit_broker::clock::Clock;
use jit_broker::config::RedisConfig;
use jit_broker::redis_conn::RedisConn;
use jit_broker::scheduler::{
    BoxError, DueEntry, ExpiryHandler, ExpiryOutcome, Scheduler, SchedulerConfig, TimeSource,
};
use jit_broker::tasks::Tasks;
use jit_broker::Config;
use private_redis::PrivateRedis;

/// Where the DELETEs go, and how to ask it whether a member is still there.
enum Target {
    /// okta-sim (the default): a faithful, stateful Okta with generous rate limits.
    Sim(okta_sim::SimHandle),
    /// A minimal Okta-shaped server (`BENCH_TARGET=local`): isolates the scheduler's own cost.
    Local(Members),
}

const GROUP: &str = "00g1benchgroup000001";

impl Target {
    async fn start(user_ids: &[String]) -> (String, Target) {
        if std::env::var("BENCH_TARGET").as_deref() == Ok("local") {
            let (base, m) = local_server().await;
            m.0.lock()
                .unwrap()
                .extend(user_ids.iter().map(|u| (u.clone(), ())));
            return (base, Target::Local(m));
        }
        let mut seed = okta_sim::Seed::default();
        for id in user_ids {
            seed.users.push(okta_sim::seed::SeedUser {
                id: id.clone(),
                login: format!("{id}@example.com"),
                first_name: "Bench".into(),
                last_name: "User".into(),
                email: None,
                status: "ACTIVE".into(),
            });
        }
        seed.groups.push(okta_sim::seed::SeedGroup {
            id: GROUP.into(),
            name: "bench-jit".into(),
            description: None,
            kind: "OKTA_GROUP".into(),
            members: user_ids.to_vec(),
        });
        let sim = okta_sim::spawn(okta_sim::SimConfig {
            seed,
            ..okta_sim::SimConfig::default()
        })
        .await
        .unwrap();
        (sim.base_url(), Target::Sim(sim))
    }

    fn members_left(&self, user_ids: &[String]) -> usize {
        match self {
            Target::Sim(sim) => user_ids.iter().filter(|u| sim.is_member(GROUP, u)).count(),
            Target::Local(m) => m.0.lock().unwrap().len(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Sim(_) => "okta-sim",
            Target::Local(_) => "local",
        }
    }
}

/// A stand-in for Okta's membership API: removes the member if present (204 either way, as
/// Okta does for an absent member).
#[derive(Clone, Default)]
struct Members(Arc<Mutex<HashMap<String, ()>>>);

async fn remove_member(
    State(m): State<Members>,
    Path((_gid, uid)): Path<(String, String)>,
) -> StatusCode {
    m.0.lock().unwrap().remove(&uid);
    StatusCode::NO_CONTENT
}

async fn local_server() -> (String, Members) {
    let members = Members::default();
    let app = axum::Router::new()
        .route("/api/v1/groups/{gid}/users/{uid}", delete(remove_member))
        .with_state(members.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), members)
}

/// The handler: one HTTP DELETE per expiry, recording lateness against the due time it was
/// seeded with ("SQL" is the `due` map).
struct HttpRevoker {
    http: reqwest::Client,
    base: String,
    clock: Clock,
    due: Mutex<HashMap<String, i64>>,
    lateness_ms: Mutex<Vec<i64>>,
    last_done_ms: AtomicU64,
}

#[async_trait::async_trait]
impl ExpiryHandler for HttpRevoker {
    async fn expire(&self, grant_id: &str, _attempt: u32) -> ExpiryOutcome {
        let url = format!("{}/api/v1/groups/{GROUP}/users/{grant_id}", self.base);
        match self
            .http
            .delete(url)
            .header("Authorization", "SSWS sim-super-admin-token")
            .send()
            .await
        {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {
                let now = self.clock.now_ms();
                if let Some(due) = self.due.lock().unwrap().remove(grant_id) {
                    self.lateness_ms.lock().unwrap().push(now - due);
                }
                self.last_done_ms.fetch_max(now as u64, Ordering::Relaxed);
                ExpiryOutcome::Done
            }
            Ok(r) => ExpiryOutcome::Retry {
                error: format!("HTTP {}", r.status()),
            },
            Err(e) => ExpiryOutcome::Retry {
                error: e.to_string(),
            },
        }
    }
    async fn give_up(&self, _grant_id: &str, _error: &str) -> Result<(), BoxError> {
        Ok(())
    }
    async fn due_entries(&self) -> Result<Vec<DueEntry>, BoxError> {
        Ok(self
            .due
            .lock()
            .unwrap()
            .iter()
            .map(|(id, d)| DueEntry {
                grant_id: id.clone(),
                due_ms: *d,
            })
            .collect())
    }
    async fn overdue(&self, now_ms: i64, limit: u32) -> Result<Vec<DueEntry>, BoxError> {
        Ok(self
            .due
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, d)| **d <= now_ms)
            .take(limit as usize)
            .map(|(id, d)| DueEntry {
                grant_id: id.clone(),
                due_ms: *d,
            })
            .collect())
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn redis(server: &PrivateRedis, prefix: &str) -> RedisConn {
    RedisConn::connect(&RedisConfig {
        url: server.url.clone(),
        key_prefix: prefix.into(),
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(5),
    })
    .await
    .unwrap()
}

/// Seeds the index with ZADD in chunks and PUBLISHes the earliest due time on the wake channel,
/// as `ExpiryIndex::schedule` does one grant at a time (without the message a sleeping worker
/// would only notice at its safety cap).
async fn seed(redis: &RedisConn, entries: &[(String, i64)]) {
    let index = jit_broker::scheduler::ExpiryIndex::new(redis.clone());
    let mut c = redis.conn();
    for chunk in entries.chunks(5_000) {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(index.index_key());
        for (id, due) in chunk {
            cmd.arg(*due).arg(id);
        }
        cmd.query_async::<()>(&mut c).await.unwrap();
        if let Some(first) = chunk.iter().map(|(_, d)| *d).min() {
            redis::cmd("PUBLISH")
                .arg(index.wake_channel())
                .arg(first)
                .query_async::<()>(&mut c)
                .await
                .unwrap();
        }
    }
}

async fn burst(server: &PrivateRedis, config: &SchedulerConfig, n: usize) {
    // Grant ids are the user ids whose membership each grant removes.
    let user_ids: Vec<String> = (0..n).map(|i| format!("00u{:017}", i + 1)).collect();
    let (base, target) = Target::start(&user_ids).await;
    let clock = Clock::system();
    let prefix = format!("bench{n}");
    let redis = redis(server, &prefix).await;
    let handler = Arc::new(HttpRevoker {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .unwrap(),
        base,
        clock: clock.clone(),
        due: Mutex::new(HashMap::new()),
        lateness_ms: Mutex::new(Vec::with_capacity(n)),
        last_done_ms: AtomicU64::new(0),
    });
    let scheduler = Scheduler::with_time_source(
        redis.clone(),
        clock.clone(),
        config.clone(),
        handler.clone(),
        TimeSource::RedisTime,
    );
    let tasks = Tasks::new();
    scheduler.spawn(&tasks);
    while scheduler.rebuilds() < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Everything falls due within one second, starting 2 s from now.
    let t0 = clock.now_ms() + 2_000;
    let entries: Vec<(String, i64)> = user_ids
        .iter()
        .enumerate()
        .map(|(i, u)| (u.clone(), t0 + (i as i64 * 1000 / n as i64)))
        .collect();
    {
        let mut d = handler.due.lock().unwrap();
        for (id, due) in &entries {
            d.insert(id.clone(), *due);
        }
    }
    seed(&redis, &entries).await;
    let seeded_at = clock.now_ms();
    let c0 = server.total_commands();
    let started = Instant::now();
    while handler.lateness_ms.lock().unwrap().len() < n {
        if started.elapsed() > Duration::from_secs(600) {
            eprintln!("timed out");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the last settles land before counting commands.
    while scheduler.stats().await.unwrap().scheduled > 0
        && started.elapsed() < Duration::from_secs(620)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c1 = server.total_commands();
    let mut late = handler.lateness_ms.lock().unwrap().clone();
    late.sort_unstable();
    let last = handler.last_done_ms.load(Ordering::Relaxed) as i64;
    let span_ms = (last - t0).max(1);
    let left = target.members_left(&user_ids);
    println!(
        "burst n={n} target={} concurrency={} batch={}: {:.0} revocations/s (first due to last done {} ms); \
         lateness p50={} ms p99={} ms max={} ms; redis commands/revocation={:.2}; \
         members left={left}; bench RSS={} MiB; redis RSS={} MiB{}",
        target.name(),
        config.concurrency,
        config.batch_size,
        n as f64 * 1000.0 / span_ms as f64,
        span_ms,
        pct(&late, 0.5),
        pct(&late, 0.99),
        late.last().copied().unwrap_or(0),
        (c1 - c0) as f64 / n as f64,
        rss_kib() / 1024,
        server.rss_kib().unwrap_or(0) / 1024,
        if seeded_at > t0 {
            " (WARNING: seeding overran the due time)"
        } else {
            ""
        },
    );
    tasks.shutdown(Duration::from_secs(30)).await;
}

async fn idle(server: &PrivateRedis, config: &SchedulerConfig, secs: u64) {
    let clock = Clock::system();
    let redis = redis(server, "benchidle").await;
    let (base, _target) = Target::start(&[]).await;
    let handler = Arc::new(HttpRevoker {
        http: reqwest::Client::new(),
        base,
        clock: clock.clone(),
        due: Mutex::new(HashMap::new()),
        lateness_ms: Mutex::new(Vec::new()),
        last_done_ms: AtomicU64::new(0),
    });
    let far = clock.now_ms() + 30 * 24 * 3_600_000;
    let entries: Vec<(String, i64)> = (0..100_000)
        .map(|i| (format!("idle{i}"), far + i as i64))
        .collect();
    {
        let mut d = handler.due.lock().unwrap();
        for (id, due) in &entries {
            d.insert(id.clone(), *due);
        }
    }
    seed(&redis, &entries).await;
    let scheduler =
        Scheduler::with_time_source(redis, clock, config.clone(), handler, TimeSource::RedisTime);
    let tasks = Tasks::new();
    scheduler.spawn(&tasks);
    while scheduler.rebuilds() < 1 || scheduler.wakeups() < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let c0 = server.total_commands();
    let w0 = scheduler.wakeups();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let c1 = server.total_commands();
    let w1 = scheduler.wakeups();
    println!(
        "idle: 100000 scheduled, lease={:?}: {} commands in {secs} s ({:.2}/s, incl. 1 INFO), {} wake-ups",
        config.lease,
        c1 - c0,
        (c1 - c0) as f64 / secs as f64,
        w1 - w0
    );
    tasks.shutdown(Duration::from_secs(10)).await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut config = Config::load_with_env(None, Vec::new()).unwrap().scheduler;
        if let Some(c) = std::env::var("BENCH_CONCURRENCY")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            config.concurrency = c;
        }
        if let Some(b) = std::env::var("BENCH_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            config.batch_size = b;
        }
        let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
            .unwrap_or_else(|_| "10000,100000".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let idle_secs: u64 = std::env::var("BENCH_IDLE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(35);
        let server = PrivateRedis::start();
        let grants = std::env::var("BENCH_HANDLER").as_deref() == Ok("grants");
        for n in sizes {
            if grants {
                let conc = std::env::var("BENCH_CREATE_CONCURRENCY")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(16);
                grants_mode::burst(&server, n, conc).await;
            } else {
                burst(&server, &config, n).await;
            }
        }
        if idle_secs > 0 {
            idle(&server, &config, idle_secs).await;
        }
    });
}
