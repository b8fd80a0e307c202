//! `okta-sim` binary: runs the simulator until Ctrl-C and prints its URL.
//!
//! Why it exists: demos and manual testing of the broker against a fake Okta, and benches
//! against a separate process.
//!
//! What it must never do: listen on a non-loopback address unless asked to explicitly.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use okta_sim::{OAuthConfig, PermissionLevel, RateLimitConfig, Seed, SimConfig};

#[derive(Debug, Parser)]
#[command(name = "okta-sim", about = "A stateful Okta management API simulator")]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// JSON seed file (see README); conflicts with --users/--groups.
    #[arg(long, conflicts_with_all = ["users", "groups"])]
    seed_file: Option<PathBuf>,
    /// Generate an org with this many users.
    #[arg(long)]
    users: Option<usize>,
    /// Generate an org with this many groups.
    #[arg(long)]
    groups: Option<usize>,
    /// Seed for generated orgs, new ids and fault draws.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Use Okta's published per-minute rate limits instead of generous ones.
    #[arg(long)]
    okta_rate_limits: bool,
    /// Rate-limit window in seconds (with --okta-rate-limits).
    #[arg(long)]
    window_secs: Option<u64>,
    /// Enable OAuth client credentials for this client id.
    #[arg(long, requires = "oauth_public_key")]
    oauth_client_id: Option<String>,
    /// PEM file with the client's RSA public key.
    #[arg(long)]
    oauth_public_key: Option<PathBuf>,
    /// Event hook batching window in milliseconds.
    #[arg(long, default_value_t = 50)]
    hook_batch_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let mut cfg = SimConfig {
        rng_seed: args.seed,
        ..SimConfig::default()
    };
    if let Some(path) = &args.seed_file {
        cfg.seed =
            Seed::from_json_file(path).with_context(|| format!("seed file {}", path.display()))?;
    } else if args.users.is_some() || args.groups.is_some() {
        cfg.seed = okta_sim::generate(args.users.unwrap_or(0), args.groups.unwrap_or(0), args.seed);
    }
    if args.okta_rate_limits {
        cfg.rate_limits = RateLimitConfig::okta();
    }
    if let Some(w) = args.window_secs {
        cfg.rate_limits.window_ms = w * 1000;
    }
    if let (Some(id), Some(key)) = (&args.oauth_client_id, &args.oauth_public_key) {
        let pem = std::fs::read_to_string(key)
            .with_context(|| format!("public key {}", key.display()))?;
        cfg.oauth = Some(OAuthConfig::new(id, &pem, PermissionLevel::SuperAdmin));
    }
    cfg.hooks.batch_window = Duration::from_millis(args.hook_batch_ms);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let handle = okta_sim::spawn_on(cfg, listener).await?;
    println!("{}", handle.base_url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    handle.shutdown().await;
    Ok(())
}
