//! Shared set-up for the benches that drive the whole broker: okta-sim with its rate limits
//! lifted and `n` users, a broker `Config` pointed at it (temp SQLite or `BENCH_DATABASE_URL`,
//! the `prod-db-admin` policy, one admin token `bench-token`), and `run_with` started on a
//! loopback port. Benches are separate crates, so each pulls this in with
//! `#[path = "support/broker.rs"] mod broker;`. It must never tune the broker beyond what both
//! benches need: bench-specific knobs stay in the bench, on the returned `Config`.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use jit_broker::api::auth::TokenConfig;
use jit_broker::api::auth::{hash_token, Role};
use jit_broker::okta::OktaAuthMethod;
use jit_broker::Config;
use jit_broker::RunOptions;

/// The Okta group behind `prod-db-admin`.
pub const GROUP: &str = "00g1prodadmins000001";
pub const POLICY: &str = r#"
[[resource]]
name = "prod-db-admin"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
"#;

/// okta-sim with every bucket lifted far beyond what a bench can send, and `n` users named
/// `{login_prefix}{i}@example.com`. Returns the sim, its (unlimited) rate limits and the user ids.
pub async fn sim_with_users(
    login_prefix: &str,
    n: usize,
) -> (okta_sim::SimHandle, okta_sim::RateLimitConfig, Vec<String>) {
    let mut sim_cfg = okta_sim::SimConfig::default();
    for b in [
        &mut sim_cfg.rate_limits.groups,
        &mut sim_cfg.rate_limits.group_by_id,
        &mut sim_cfg.rate_limits.apps,
        &mut sim_cfg.rate_limits.users,
        &mut sim_cfg.rate_limits.other,
    ] {
        *b = 100_000_000;
    }
    let unlimited = sim_cfg.rate_limits.clone();
    let sim = okta_sim::spawn(sim_cfg).await.unwrap();
    let admin = sim.admin("bench@example.com");
    let users: Vec<String> = (0..n)
        .map(|i| {
            admin
                .create_user(
                    &format!("{login_prefix}{i}@example.com"),
                    "Bench",
                    &format!("U{i}"),
                )
                .unwrap()
        })
        .collect();
    (sim, unlimited, users)
}

/// A broker config against `sim`: database `BENCH_DATABASE_URL` or a SQLite file in `dir`, the
/// policy written into `dir`, SSWS to okta-sim, and the admin token `bench-token`.
pub fn config(dir: &Path, sim: &okta_sim::SimHandle) -> Config {
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, POLICY).unwrap();
    let mut config = Config::load_with_env(None, Vec::new()).unwrap();
    config.database.url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.join("bench.db").display()));
    config.okta.base_url = sim.base_url();
    config.okta.auth = OktaAuthMethod::Ssws;
    config.okta.api_token = Some(secrecy::SecretString::from("sim-super-admin-token"));
    config.policy.file = Some(policy_path);
    // No scheduled inventory sync beside the measured burst.
    config.sync.schedule = String::new();
    config.auth.tokens = vec![TokenConfig {
        name: "bench".into(),
        roles: vec![Role::Admin],
        sha256: hash_token("bench-token"),
    }];
    config
}

/// A broker running under `run_with` on a loopback port.
pub struct Broker {
    pub base: String,
    pub http: reqwest::Client,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    app: tokio::task::JoinHandle<Result<(), jit_broker::RunError>>,
}

impl Broker {
    /// Starts the broker and waits (up to 30 s) until `/healthz` answers.
    pub async fn start(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = tokio::spawn(async move {
            jit_broker::run_with(
                config,
                listener,
                async move {
                    let _ = stop_rx.await;
                },
                RunOptions::default(),
            )
            .await
        });
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Broker {
            base,
            http,
            stop_tx,
            app,
        }
    }

    /// Graceful shutdown; waits for `run_with` to return.
    pub async fn stop(self) {
        let _ = self.stop_tx.send(());
        let _ = self.app.await;
    }
}
