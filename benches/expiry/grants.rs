//! The expiry burst through the real broker: `run_with` (its own scheduler with the grants
//! service as handler), okta-sim with rate limits lifted, SQLite (or `BENCH_DATABASE_URL`), and
//! a private redis-server. A module of `expiry.rs`, run with `BENCH_HANDLER=grants`.
//!
//! Grants are created over HTTP, each with the duration that makes it expire at one common
//! instant T (so they fall due within the same second), then the broker expires them itself.
//! Lateness is `ended_at − expires_at` from SQL (the revoke commit, after Okta answered).

use std::time::{Duration, Instant};

use futures::StreamExt;
use jit_broker::store::Store;
use sqlx::Row;

use super::broker::{self, GROUP};
use super::private_redis::PrivateRedis;
use super::{pct, rss_kib};

pub async fn burst(server: &PrivateRedis, n: usize, create_concurrency: usize) {
    let (sim, unlimited, users) = broker::sim_with_users("burst", n).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = broker::config(dir.path(), &sim);
    config.redis.url = server.url.clone();
    if let Some(c) = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.scheduler.concurrency = c;
    }
    // The simulator has no concurrency limit; `BENCH_OKTA_IN_FLIGHT` lifts the broker's own
    // cap (`okta.max_in_flight`, default 16, sized for a real org's concurrency limit).
    if let Some(c) = std::env::var("BENCH_OKTA_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.okta.max_in_flight = c;
    }
    config.redis.key_prefix = format!("grants{n}");
    let app = broker::Broker::start(config.clone()).await;
    let (http, base) = (app.http.clone(), app.base.clone());

    // Creation rate from a first slice, then T far enough ahead for the rest.
    let create = |u: String, expire_at: Option<i64>| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let duration = match expire_at {
                Some(t) => format!(
                    "{}ms",
                    (t - chrono::Utc::now().timestamp_millis()).max(1_000)
                ),
                None => "4h".into(),
            };
            let r = http
                .post(format!("{base}/v1/grants"))
                .bearer_auth("bench-token")
                .json(&serde_json::json!({"user": u, "resource": "prod-db-admin", "duration": duration}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        }
    };
    let probe = (n / 20).clamp(20, 500).min(n);
    let t_probe = Instant::now();
    let now = chrono::Utc::now().timestamp_millis();
    // The probe slice expires at `provisional_t`, after every measured grant: an hour out (the
    // bench policy allows 4 h), since creating 100,000 grants here can take over ten minutes.
    let est_ms = |rate: f64| ((n as f64 / rate) * 1000.0 * 1.5) as i64 + 5_000;
    let provisional_t = now + 3_600_000;
    futures::stream::iter(users[..probe].to_vec())
        .map(|u| create(u, Some(provisional_t)))
        .buffer_unordered(create_concurrency)
        .collect::<Vec<_>>()
        .await;
    let rate = probe as f64 / t_probe.elapsed().as_secs_f64();
    let t = chrono::Utc::now().timestamp_millis() + est_ms(rate);
    assert!(
        t + 60_000 < provisional_t,
        "creating {n} grants would take longer than the probe slice's placeholder expiry"
    );
    // The probe slice expires at `provisional_t`, after the bench ends: it is left out of the
    // figures (extension can only lengthen a grant, so it cannot be moved to T).
    // Spread over one second from T, as "falling due in the same second" (and as the
    // scheduler-only burst); `BENCH_SPREAD_MS=0` puts every expiry on the same instant, the
    // default when rate-limited (the share of the allowed rate is measured from T, so every
    // grant must be due from T).
    let default_spread = if std::env::var("BENCH_OKTA_LIMIT").is_ok() {
        0
    } else {
        1_000
    };
    let spread = std::env::var("BENCH_SPREAD_MS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(default_spread);
    let rest = users[probe..].to_vec();
    let m = rest.len().max(1) as i64;
    futures::stream::iter(rest.into_iter().enumerate())
        .map(|(i, u)| create(u, Some(t + spread * i as i64 / m)))
        .buffer_unordered(create_concurrency)
        .collect::<Vec<_>>()
        .await;
    let created_by = chrono::Utc::now().timestamp_millis();
    let c0 = server.total_commands();
    let measured = n - probe;
    println!(
        "grants burst: created {} grants at {:.0}/s (concurrency {create_concurrency}); {} fall due from T (in {} ms) over {spread} ms{}",
        n,
        n as f64 / (t_probe.elapsed().as_secs_f64()),
        measured,
        t - created_by,
        if created_by > t { " (WARNING: creation overran T)" } else { "" }
    );
    // Rate-limited mode (`BENCH_OKTA_LIMIT` requests per `BENCH_OKTA_WINDOW_MS` on the group
    // membership bucket): applied once every grant exists, so only the expiry burst is limited.
    let limited = std::env::var("BENCH_OKTA_LIMIT")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map(|limit| {
            let window_ms = std::env::var("BENCH_OKTA_WINDOW_MS")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(60_000);
            let mut rl = unlimited.clone();
            rl.groups = limit;
            rl.window_ms = window_ms;
            sim.set_rate_limits(rl);
            (limit, window_ms)
        });
    let rate_limited_before = okta_429s(&http, &base).await;
    let store = Store::connect(&config.database).await.unwrap();
    let started = Instant::now();
    // Poll with a count the (state, expires_at) index answers alone: the bench shares the CPU
    // with the broker, and fetching every revoked row each time would compete with it.
    loop {
        let done: i64 =
            sqlx::query("SELECT COUNT(*) FROM grants WHERE state = 'revoked' AND expires_at < $1")
                .bind(provisional_t)
                .fetch_one(store.pool())
                .await
                .unwrap()
                .try_get(0)
                .unwrap();
        if done >= measured as i64 || started.elapsed() > Duration::from_secs(900) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // (expires_at, ended_at) of every measured grant, in one read.
    let rows: Vec<(i64, i64)> = sqlx::query(
        "SELECT expires_at, ended_at FROM grants WHERE state = 'revoked' AND expires_at < $1",
    )
    .bind(provisional_t)
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.try_get::<i64, _>(0).unwrap(),
            r.try_get::<i64, _>(1).unwrap(),
        )
    })
    .collect();
    let c1 = server.total_commands();
    let mut late: Vec<i64> = rows.iter().map(|(due, end)| end - due).collect();
    late.sort_unstable();
    let left = users[probe..]
        .iter()
        .filter(|u| sim.is_member(GROUP, u))
        .count();
    let ends: Vec<i64> = rows.iter().map(|(_, end)| *end).collect();
    let span = ends.iter().max().copied().unwrap_or(t) - t;
    // `BENCH_TIMELINE_MS=500`: revocations per interval from T, to see where a burst slows
    // (a rate-limit window boundary, a stall) rather than only its average.
    if let Some(step) = std::env::var("BENCH_TIMELINE_MS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|s| *s > 0)
    {
        let mut bins = vec![0u32; (span.max(0) / step + 1) as usize];
        for e in &ends {
            bins[((e - t).max(0) / step) as usize] += 1;
        }
        let line: Vec<String> = bins.iter().map(u32::to_string).collect();
        println!("revoked per {step} ms from T: {}", line.join(" "));
    }
    println!(
        "grants burst n={measured}: {:.0} revocations/s (T to last revoked {} ms); lateness p50={} ms p99={} ms max={} ms; \
         redis commands/revocation={:.2} (scheduler + locks); members left={left}; bench RSS={} MiB",
        measured as f64 * 1000.0 / span.max(1) as f64,
        span,
        pct(&late, 0.5),
        pct(&late, 0.99),
        late.last().copied().unwrap_or(0),
        (c1 - c0) as f64 / measured as f64,
        rss_kib() / 1024,
    );
    if let Some((limit, window_ms)) = limited {
        let allowed = f64::from(limit) * 1000.0 / window_ms as f64;
        let achieved = measured as f64 * 1000.0 / span.max(1) as f64;
        println!(
            "rate-limited to {limit} per {window_ms} ms ({allowed:.1}/s): achieved {achieved:.1}/s = {:.3} of the allowed rate; \
             429s received by the broker during the burst: {}",
            achieved / allowed,
            okta_429s(&http, &base).await - rate_limited_before,
        );
    }
    store.close().await;
    app.stop().await;
}

/// The broker's count of 429s from Okta, read from its own `/metrics`.
async fn okta_429s(http: &reqwest::Client, base: &str) -> u64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("jit_okta_rate_limited_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
