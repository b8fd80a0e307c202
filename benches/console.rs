//! Console figures: page render time (p50/p99, server round trip over loopback HTTP) of the
//! busiest pages with 10,000 grants and 100,000 audit entries on SQLite, and the sign-in round
//! trip against okta-sim (console /login → okta-sim authorize and sign-in form → callback with
//! code exchange and ID token check → first page).
//!
//! Run: `cargo bench --bench console` (needs Redis on 127.0.0.1:6379 like the tests;
//! `BENCH_GRANTS`, `BENCH_AUDIT`, `BENCH_SAMPLES` change the sizes). It prints figures; it
//! asserts nothing about speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use jit_broker::audit::{self, NewEntry};
use jit_broker::clock::Clock;
use jit_broker::grants::{repo, Grant, GrantState};
use jit_broker::policy::ResourceKind;
use jit_broker::store::Store;
use jit_broker::Config;

const ALICE: &str = "00u1alice00000000001";
const POLICY: &str = r#"
[[resource]]
name = "prod-admins"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com"] }
"#;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99))
}

async fn seed(store: &Store, grants: usize, entries: usize) {
    let now = Clock::system().now_ms();
    let mut tx = store.begin().await.unwrap();
    for i in 0..grants {
        // One grant in fifty is alice's, so her "My access" page has a realistic few hundred.
        let (uid, login) = if i % 50 == 0 {
            (ALICE.to_string(), "alice@example.com".to_string())
        } else {
            (format!("00ubench{i:012}"), format!("user{i}@example.com"))
        };
        let g = Grant {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: uid,
            user_login: login,
            resource: "prod-admins".into(),
            kind: ResourceKind::OktaGroup,
            okta_id: "00g1prodadmins000001".into(),
            resource_set: None,
            state: if i % 100 == 7 {
                GrantState::Failed
            } else {
                GrantState::Active
            },
            standing: Some(false),
            duration_ms: 3_600_000,
            reason: "bench seed".into(),
            requested_by: "bench".into(),
            request_id: None,
            end_sessions: false,
            created_at: now,
            activated_at: Some(now),
            expires_at: now + 86_400_000,
            ended_at: None,
            role_assignment_id: None,
            last_error: (i % 100 == 7).then(|| "E0000047 rate limited".to_string()),
            next_retry_at: None,
            attempts: 0,
            ended_by: None,
            end_reason: None,
            version: 0,
        };
        repo::insert(&mut tx, &g).await.unwrap();
        if i % 1000 == 999 {
            tx.commit().await.unwrap();
            tx = store.begin().await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    let clock = Clock::system();
    let mut left = entries;
    while left > 0 {
        let n = left.min(1000);
        let batch = (0..n)
            .map(|i| {
                NewEntry::new(
                    "bench",
                    if i % 3 == 0 {
                        "grant.activated"
                    } else {
                        "grant.revoked"
                    },
                    format!("grant:{i}"),
                    serde_json::json!({"resource": "prod-admins", "reason": "bench"}),
                )
            })
            .collect();
        let mut tx = store.begin().await.unwrap();
        audit::append_many(&mut tx, &clock, batch).await.unwrap();
        tx.commit().await.unwrap();
        left -= n;
    }
}

struct Browser(reqwest::Client, String);

impl Browser {
    fn new(base: &str) -> Browser {
        Browser(
            reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base.to_string(),
        )
    }

    /// The full sign-in, each hop as a browser makes it; a fresh Okta sign-in each time.
    async fn sign_in(&self, login: &str) {
        let r = self
            .0
            .get(format!("{}/login", self.1))
            .send()
            .await
            .unwrap();
        let authorize = r.headers()["location"].to_str().unwrap().to_string();
        let page = self.0.get(&authorize).send().await.unwrap();
        assert_eq!(page.status(), 200, "okta-sim must show its sign-in page");
        let _ = page.text().await.unwrap();
        let u = url::Url::parse(&authorize).unwrap();
        let mut form: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        form.push(("login".into(), login.into()));
        let r = self
            .0
            .post(format!("{}://{}{}", u.scheme(), u.authority(), u.path()))
            .form(&form)
            .send()
            .await
            .unwrap();
        let callback = r.headers()["location"].to_str().unwrap().to_string();
        let r = self.0.get(&callback).send().await.unwrap();
        assert_eq!(r.status(), 303);
        let landing = r.headers()["location"].to_str().unwrap().to_string();
        let r = self
            .0
            .get(format!("{}{landing}", self.1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.text().await.unwrap();
    }
}

#[tokio::main]
async fn main() {
    let grants = env_n("BENCH_GRANTS", 10_000);
    let entries = env_n("BENCH_AUDIT", 100_000);
    let samples = env_n("BENCH_SAMPLES", 200);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::load_with_env(None, Vec::new()).unwrap();
    config.database.url = format!("sqlite://{}", dir.path().join("console.db").display());
    config.redis.key_prefix = format!("bench{}", uuid::Uuid::new_v4().simple());
    let t = Instant::now();
    let store = Store::connect(&config.database).await.unwrap();
    store.migrate().await.unwrap();
    seed(&store, grants, entries).await;
    store.close().await;
    println!(
        "seeded {grants} grants and {entries} audit entries in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let sim = okta_sim::spawn(okta_sim::SimConfig::default())
        .await
        .unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    config.policy.file = Some(policy);
    config.okta.base_url = sim.base_url();
    config.okta.api_token = Some(secrecy::SecretString::from("sim-super-admin-token"));
    config.console.issuer = sim.base_url();
    config.console.client_id = okta_sim::oidc::DEFAULT_CLIENT_ID.into();
    config.console.client_secret = Some(secrecy::SecretString::from(
        okta_sim::oidc::DEFAULT_CLIENT_SECRET,
    ));
    config.console.admin_groups = vec!["00g1dbowners00000002".into()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = tokio::spawn(jit_broker::run(config, listener, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "broker did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The first sign-in also fetches discovery and keys (cached for an hour afterwards).
    let t = Instant::now();
    Browser::new(&base).sign_in("bob@example.com").await;
    println!(
        "first sign-in (with discovery and JWKS fetch): {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    // Sign-in round trips: new browsers, so okta-sim shows its page every time.
    let mut times = Vec::new();
    for _ in 0..samples.min(50) {
        let b = Browser::new(&base);
        let t = Instant::now();
        b.sign_in("bob@example.com").await;
        times.push(t.elapsed());
    }
    let (p50, p99) = pct(times);
    println!("sign-in round trip (5 hops, ID token verified): p50 {p50:.1} ms  p99 {p99:.1} ms");

    let bob = Browser::new(&base);
    bob.sign_in("bob@example.com").await;
    let alice = Browser::new(&base);
    alice.sign_in("alice@example.com").await;
    let pages: [(&Browser, &str); 6] = [
        (&alice, "/access"),
        (&bob, "/admin/grants"),
        (&bob, "/admin/grants?state=active&resource=prod-admins"),
        (&bob, "/admin/failed"),
        (&bob, "/admin/audit"),
        (&bob, "/admin/audit?action=grant.activated"),
    ];
    for (b, path) in pages {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..samples {
            let t = Instant::now();
            let r = b.0.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            bytes = r.bytes().await.unwrap().len();
            times.push(t.elapsed());
        }
        let (p50, p99) = pct(times);
        println!("{path:<50} p50 {p50:7.1} ms  p99 {p99:7.1} ms  ({bytes} bytes)");
    }
    let _ = tx.send(());
    let _ = app.await;
    sim.shutdown().await;
}
