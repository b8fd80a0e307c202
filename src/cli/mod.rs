//! The command line channel: the verbs of `jit-broker` and their arguments, one file per area.
//!
//! Why it exists: operators and scripts act through the same domain services as the API; a verb
//! parses its arguments, calls the domain, and turns the outcome into output and an exit code
//! (0 success, 1 the check failed or was refused, 2 usage or runtime error).
//!
//! What it must never do: decide who may do what (the domain does), or import another channel.
//! The app (`crate::app::cli`) loads the configuration and hands each verb the [`Settings`] it
//! needs, so every verb reads the same configuration as `serve`.

pub mod audit;
pub mod events;
pub mod grants;
pub mod requests;
pub mod reviews;
pub mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::audit::export::ExportFormat;
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "jit-broker",
    version,
    about = "Just-in-time access broker for Okta"
)]
pub struct Cli {
    /// TOML file layered over the built-in defaults; `JIT_*` variables override both.
    #[arg(long, global = true, env = "JIT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker: HTTP API, scheduler and background tasks.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Load and validate the configuration, print every problem, exit 1 if there is one.
    CheckConfig,
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Grants: list, show, revoke.
    #[command(subcommand)]
    Grants(grants::GrantsCommand),
    /// Requests: list, show, approve, deny, cancel (the same checks as the API).
    #[command(subcommand)]
    Requests(requests::RequestsCommand),
    /// Access reviews: create, list, show, report (the same checks as the API).
    #[command(subcommand)]
    Reviews(reviews::ReviewsCommand),
    /// Okta set-up: `okta event-hook register --url …`, `okta event-hook status`.
    #[command(subcommand)]
    Okta(events::OktaCommand),
    /// Print the SHA-256 of a token read from standard input, for `auth.tokens[].sha256`.
    HashToken,
    /// A local demo: a simulated Okta org in process, SQLite in DIR, the configured (local)
    /// Redis, a ready policy and a fresh admin token; prints what to try. Only in builds with
    /// the cargo feature `demo`.
    #[cfg(feature = "demo")]
    Demo {
        /// Where the demo keeps its database and policy file.
        #[arg(
            long,
            default_value = "jit-demo",
            env = "JIT_DEMO_DIR",
            value_name = "DIR"
        )]
        dir: PathBuf,
    },
    /// Run one inventory sync now and print its drift report.
    Sync(sync::SyncArgs),
    /// Probe `GET /healthz` on the configured listen address; exit 0 when it answers 200.
    /// For container HEALTHCHECKs: the runtime image has no curl.
    Healthcheck {
        /// Give up after this long.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration, env = "JIT_HEALTHCHECK_TIMEOUT")]
        timeout: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the whole hash chain; report the first broken entry and exit 1 if any. With
    /// `--checkpoint FILE`, also check the log against that signed checkpoint (its root at its
    /// size, and consistency of the current tree) and name the first entry that differs.
    Verify(audit::VerifyArgs),
    /// Print the inclusion proof of entry SEQ in the newest checkpoint (or `--checkpoint FILE`).
    Prove(audit::ProveArgs),
    /// Check an inclusion proof offline: the checkpoint's signature, the entry, the path.
    VerifyProof(audit::VerifyProofArgs),
    /// Generate an Ed25519 key pair for signing checkpoints (signed-note form).
    Keygen(audit::KeygenArgs),
    /// Stream entries to a file or standard output.
    Export {
        /// Earliest entry time to include, inclusive: a date (`2026-01-31`, midnight UTC) or an
        /// RFC 3339 time (`2026-01-31T14:30:00Z`).
        #[arg(long, env = "JIT_AUDIT_SINCE", value_parser = crate::clock::parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Latest entry time, exclusive: a date or an RFC 3339 time.
        #[arg(long, env = "JIT_AUDIT_UNTIL", value_parser = crate::clock::parse_time)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value = "jsonl", env = "JIT_AUDIT_FORMAT")]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(long, env = "JIT_AUDIT_OUTPUT", value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Environment variables that belong to the command line, not to the configuration.
pub const CLI_ENV_VARS: &[&str] = &[
    "JIT_REQUESTS_USER",
    "JIT_REQUESTS_RESOURCE",
    "JIT_REQUESTS_STATE",
    "JIT_REQUESTS_LIMIT",
    "JIT_REQUESTS_AFTER",
    "JIT_REQUESTS_AS",
    "JIT_REQUESTS_COMMENT",
    "JIT_CONFIG",
    "JIT_AUDIT_SINCE",
    "JIT_AUDIT_UNTIL",
    "JIT_AUDIT_FORMAT",
    "JIT_AUDIT_OUTPUT",
    "JIT_HEALTHCHECK_TIMEOUT",
    "JIT_DEMO_DIR",
    "JIT_GRANTS_USER",
    "JIT_GRANTS_RESOURCE",
    "JIT_GRANTS_STATE",
    "JIT_GRANTS_LIMIT",
    "JIT_GRANTS_AFTER",
    "JIT_GRANTS_REASON",
    "JIT_SYNC_DRY_RUN",
    "JIT_SYNC_FULL",
    "JIT_SYNC_JSON",
];

/// The sections of the configuration the verbs need, handed over by the app.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: crate::config::DatabaseConfig,
    pub redis: crate::config::RedisConfig,
    pub okta: crate::okta::OktaConfig,
    pub policy: crate::policy::PolicyConfig,
    pub scheduler: crate::scheduler::SchedulerConfig,
    pub requests: crate::requests::RequestsConfig,
    pub sync: crate::sync::SyncConfig,
    pub events: crate::events::EventsConfig,
    pub audit: crate::audit::checkpoint::AuditConfig,
}

/// `hash-token`: the SHA-256 of a token read from standard input.
pub fn hash_token() -> anyhow::Result<ExitCode> {
    let mut token = String::new();
    std::io::stdin()
        .read_line(&mut token)
        .context("reading the token from standard input")?;
    let token = token.trim_end_matches(['\n', '\r']);
    if token.is_empty() {
        anyhow::bail!("no token on standard input");
    }
    println!("{}", crate::config::hash_token(token));
    Ok(ExitCode::SUCCESS)
}

/// `audit verify`: recomputes the chain, names the first broken entry.
pub async fn audit_verify(store: &Store) -> anyhow::Result<ExitCode> {
    let report = crate::audit::verify(store).await?;
    match &report.first_broken {
        None => {
            println!(
                "audit log intact: {} entries, head {} {}",
                report.entries, report.head_seq, report.head_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(b) => {
            println!("audit log BROKEN at entry {}: {}", b.seq, b.reason);
            Ok(ExitCode::from(1))
        }
    }
}

/// `audit export`: entries with `since <= time < until` as JSON lines or CSV.
pub async fn audit_export(
    store: &Store,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    format: ExportFormat,
    output: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let since = since.map(|t| t.timestamp_millis());
    let until = until.map(|t| t.timestamp_millis());
    let n = match output {
        Some(path) => {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            crate::audit::export::export(store, since, until, format, file).await?
        }
        None => {
            crate::audit::export::export(store, since, until, format, std::io::stdout().lock())
                .await?
        }
    };
    eprintln!("exported {n} entries");
    Ok(ExitCode::SUCCESS)
}

/// GETs `/healthz` on the listen address, turning a wildcard bind into loopback.
pub async fn healthcheck(
    listen: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("building the HTTP client")?;
    let url = format!("http://{addr}/healthz");
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => {
            println!("ok: {url} answered {}", r.status());
            Ok(ExitCode::SUCCESS)
        }
        Ok(r) => {
            eprintln!("unhealthy: {url} answered {}", r.status());
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
