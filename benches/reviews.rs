//! Figures for access reviews: creating a campaign over `REVIEWS_ITEMS` items (default 20,000:
//! time and the process's peak RSS growth), one bulk decision of 1,000 items, the remediation
//! of `REVIEWS_REVOKES` revokes (default 400 group removals) against okta-sim with Okta's
//! published per-minute rate limits (the share of the allowed rate it reached), and the report
//! of the big campaign as JSON, CSV and PDF.
//!
//! The inventory is written directly (one managed group per 1,000 holders, as a sync would
//! leave it): this measures the reviews, not the sync (see `benches/sync.rs` for that). SQLite
//! in a temporary directory, Redis on 127.0.0.1:6379 (`TEST_REDIS_URL`) under a unique prefix.
//!
//! Run: `cargo bench --profile dev --bench reviews`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use jit_broker::clock::Clock;
use jit_broker::grants::GrantService;
use jit_broker::okta::OktaClient;
use jit_broker::policy::{Policy, PolicyHandle};
use jit_broker::redis_conn::RedisConn;
use jit_broker::reviews::service::{CreateCampaign, DecideItem};
use jit_broker::reviews::{report, Decision, DefaultAction, ReviewService, ReviewerRule};
use jit_broker::store::Store;
use jit_broker::Config;
use okta_sim::seed::{Seed, SeedGroup, SeedUser};
use okta_sim::{RateLimitConfig, SimConfig};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set (VmHWM) in MiB, Linux only.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn service(store: &Store, cfg: &Config, clock: Clock, policy: &Policy) -> ReviewService {
    let okta = OktaClient::new(&cfg.okta, clock.clone()).unwrap();
    let redis = RedisConn::connect(&cfg.redis).await.unwrap();
    ReviewService::new(GrantService::new(
        store.clone(),
        redis,
        clock,
        okta,
        PolicyHandle::new(policy.clone(), None),
        Duration::from_secs(600),
    ))
}

#[tokio::main]
async fn main() {
    let items = env_u64("REVIEWS_ITEMS", 20_000) as usize;
    // 1,000 revokes plus their read-backs take over 5 minutes at Okta's limits; 400 keep the
    // bench near 2 (rates are what is reported).
    let revokes = env_u64("REVIEWS_REVOKES", 400) as usize;
    let per_group = 1_000usize;
    let groups = items.div_ceil(per_group).max(1);

    let mut seed = Seed::default();
    for i in 0..items.max(revokes) {
        seed.users.push(SeedUser {
            id: format!("00u{:017}", i + 1),
            login: format!("user{}@example.com", i + 1),
            first_name: format!("User{}", i + 1),
            last_name: "Bench".into(),
            email: None,
            status: "ACTIVE".into(),
        });
    }
    let mut policy_text = String::new();
    for g in 0..groups {
        let members: Vec<String> = (g * per_group..((g + 1) * per_group).min(items.max(revokes)))
            .map(|i| format!("00u{:017}", i + 1))
            .collect();
        let id = format!("00g{:017}", g + 1);
        seed.groups.push(SeedGroup {
            id: id.clone(),
            name: format!("group-{}", g + 1),
            description: None,
            kind: "OKTA_GROUP".into(),
            members,
        });
        policy_text.push_str(&format!(
            "[[resource]]\nname = \"g{g}\"\nkind = \"okta_group\"\nokta_id = \"{id}\"\n\
             default_duration = \"1h\"\nmax_duration = \"4h\"\napprovals_required = 0\n\n"
        ));
    }
    let policy = Policy::parse(&policy_text).unwrap();
    let sim = okta_sim::spawn(SimConfig {
        seed: seed.clone(),
        rate_limits: RateLimitConfig::okta(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redis_url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let env = vec![
        ("JIT_OKTA__BASE_URL".to_string(), sim.base_url()),
        (
            "JIT_OKTA__API_TOKEN".to_string(),
            okta_sim::SUPER_ADMIN_TOKEN.to_string(),
        ),
        (
            "JIT_DATABASE__URL".to_string(),
            format!("sqlite://{}", dir.path().join("reviews.db").display()),
        ),
        ("JIT_REDIS__URL".to_string(), redis_url),
        (
            "JIT_REDIS__KEY_PREFIX".to_string(),
            format!("bench{}", uuid::Uuid::new_v4().simple()),
        ),
    ];
    let cfg = Config::load_with_env(None, env).unwrap();
    let store = Store::connect(&cfg.database).await.unwrap();
    store.migrate().await.unwrap();

    // The inventory as a sync would leave it: every member `standing`.
    let mut tx = store.begin().await.unwrap();
    for u in &seed.users {
        sqlx::query(
            "INSERT INTO inventory_users (user_id, login, status, first_seen, last_seen) \
             VALUES ($1, $2, 'ACTIVE', 0, 0)",
        )
        .bind(u.id.clone())
        .bind(u.login.clone())
        .execute(tx.conn())
        .await
        .unwrap();
    }
    for g in &seed.groups {
        for m in &g.members {
            sqlx::query(
                "INSERT INTO inventory_access (user_id, kind, okta_id, resource_set, why, \
                 first_seen, last_seen) VALUES ($1, 'okta_group', $2, '', 'standing', 0, 0)",
            )
            .bind(m.clone())
            .bind(g.id.clone())
            .execute(tx.conn())
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();

    let svc = service(&store, &cfg, Clock::system(), &policy).await;
    let due = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let create = |resources: Vec<String>| CreateCampaign {
        name: "bench".into(),
        resources,
        include_unmanaged: false,
        standing_only: false,
        allow_self_review: false,
        reviewer: ReviewerRule::Person {
            login: "reviewer@example.com".into(),
        },
        fallback: "fallback@example.com".into(),
        due_at: due.clone(),
        default: DefaultAction::Keep,
        recur: None,
    };
    println!("access reviews: {items} items in {groups} groups, SQLite, dev profile");

    let rss0 = peak_rss_mib();
    let t = Instant::now();
    let big = svc.create("bench", create(vec!["*".into()])).await.unwrap();
    let took = t.elapsed();
    let (_, all) = svc.items(&big.id, None).await.unwrap();
    println!(
        "  create campaign        {:>8.2} s  {} items  peak RSS {:.0} -> {:.0} MiB",
        took.as_secs_f64(),
        all.len(),
        rss0,
        peak_rss_mib()
    );

    let t = Instant::now();
    let r = svc.report(&big.id).await.unwrap();
    let json = serde_json::to_vec(&r).unwrap();
    let jt = t.elapsed();
    let t = Instant::now();
    let csv = report::to_csv(&r).unwrap();
    let ct = t.elapsed();
    println!(
        "  report                 {:>8.2} s  JSON ({} KiB, read + serialize); CSV {:.2} s more ({} KiB)",
        jt.as_secs_f64(),
        json.len() / 1024,
        ct.as_secs_f64(),
        csv.len() / 1024
    );
    let t = Instant::now();
    let pdf = jit_broker::reviews::pdf::to_pdf(&r);
    println!(
        "  report PDF             {:>8.2} s  ({} KiB, from the same report value)",
        t.elapsed().as_secs_f64(),
        pdf.len() / 1024
    );

    // One bulk decision of 1,000 items on the big campaign.
    let decisions: Vec<DecideItem> = all
        .iter()
        .take(1_000)
        .map(|i| DecideItem {
            item: i.item_id,
            decision: Decision::Keep,
            comment: Some("confirmed with the team lead".into()),
        })
        .collect();
    let t = Instant::now();
    svc.decide("reviewer@example.com", &big.id, &decisions)
        .await
        .unwrap();
    println!(
        "  bulk decision          {:>8.2} s  {} items (campaign of {})",
        t.elapsed().as_secs_f64(),
        decisions.len(),
        all.len()
    );

    // A campaign over the first group with `revokes` of its items revoked.
    let small = svc
        .create("bench", create(vec!["g0".into()]))
        .await
        .unwrap();
    let (_, first) = svc.items(&small.id, None).await.unwrap();
    let decisions: Vec<DecideItem> = first
        .iter()
        .take(revokes)
        .map(|i| DecideItem {
            item: i.item_id,
            decision: Decision::Revoke,
            comment: None,
        })
        .collect();
    svc.decide("reviewer@example.com", &small.id, &decisions)
        .await
        .unwrap();

    // Close at the due date (a clock two hours ahead) and carry out the revokes.
    let late = service(
        &store,
        &cfg,
        Clock::tokio_at(chrono::Utc::now().timestamp_millis() + 2 * 3_600_000),
        &policy,
    )
    .await;
    let before_calls = sim.counter("DELETE", "/api/v1/groups/{groupId}/users/{userId}");
    // check_once closes the campaign and runs one pass of each; the rest is driven here.
    let t = Instant::now();
    late.check_once().await.unwrap();
    let pending = |its: &[jit_broker::reviews::Item]| {
        its.iter()
            .filter(|i| i.remediation.as_deref() == Some("pending"))
            .count()
    };
    loop {
        let (_, its) = late.items(&small.id, None).await.unwrap();
        if pending(&its) == 0 {
            break;
        }
        if late.remediate_pending().await.unwrap() == 0 {
            // Retryable failures (rate limits) wait for the next pass, as the task would.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let removal_wall = t.elapsed().as_secs_f64();
    let removals = sim.counter("DELETE", "/api/v1/groups/{groupId}/users/{userId}") - before_calls;
    let t = Instant::now();
    let confirmed = loop {
        let (_, its) = late.items(&small.id, None).await.unwrap();
        let unread = its
            .iter()
            .filter(|i| i.remediation.as_deref() == Some("done") && i.read_back.is_none())
            .count();
        if unread == 0 {
            break its
                .iter()
                .filter(|i| i.read_back.as_deref() == Some("gone"))
                .count();
        }
        if late.read_back_pending().await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let read_wall = t.elapsed().as_secs_f64();
    let rate = removals as f64 / removal_wall * 60.0;
    let allowed = f64::from(RateLimitConfig::okta().groups);
    let users_read = f64::from(RateLimitConfig::okta().users) * cfg.okta.read_share as f64 / 100.0;
    println!(
        "  remediation            {removal_wall:>8.2} s  {removals} Okta removals = {rate:.0}/min \
         against the groups bucket's {allowed:.0}/min ({:.0}% of the allowed rate)",
        100.0 * rate / allowed
    );
    println!(
        "  read-back              {read_wall:>8.2} s  {confirmed} confirmed gone = {:.0}/min \
         (read lane: {users_read:.0}/min of the users bucket)",
        confirmed as f64 / read_wall * 60.0
    );
}
