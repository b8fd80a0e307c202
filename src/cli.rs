//! The `jit-broker` command line: the binary's edge, where errors become exit codes.
//!
//! Every verb loads the same configuration as `serve` (defaults, `--config`, `JIT_*`), so an
//! operator's `audit verify` reads the same database the broker writes. Exit codes: 0 success,
//! 1 the check failed (broken chain, invalid config), 2 usage or runtime error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::audit::export::ExportFormat;
use crate::config::Config;
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
    Grants(crate::grants::cli::GrantsCommand),
    /// Requests: list, show, approve, deny, cancel (the same checks as the API).
    #[command(subcommand)]
    Requests(crate::requests::cli::RequestsCommand),
    /// Access reviews: create, list, show, report (the same checks as the API).
    #[command(subcommand)]
    Reviews(crate::reviews::cli::ReviewsCommand),
    /// Okta set-up: `okta event-hook register --url …`, `okta event-hook status`.
    #[command(subcommand)]
    Okta(crate::events::cli::OktaCommand),
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
    Sync(crate::sync::cli::SyncArgs),
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
    /// Recompute the whole hash chain; report the first broken entry and exit 1 if any.
    Verify,
    /// Stream entries to a file or standard output.
    Export {
        /// Earliest entry time to include (RFC 3339), inclusive.
        #[arg(long, env = "JIT_AUDIT_SINCE")]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Latest entry time (RFC 3339), exclusive.
        #[arg(long, env = "JIT_AUDIT_UNTIL")]
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

/// Runs a parsed command line. Returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig => Ok(check_config(cli.config)),
        Command::HashToken => {
            let mut token = String::new();
            std::io::stdin()
                .read_line(&mut token)
                .context("reading the token from standard input")?;
            let token = token.trim_end_matches(['\n', '\r']);
            if token.is_empty() {
                anyhow::bail!("no token on standard input");
            }
            println!("{}", crate::auth::hash_token(token));
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck { timeout } => {
            let config = load(cli.config)?;
            healthcheck(config.server.listen, timeout).await
        }
        Command::Serve => {
            let config = load(cli.config)?;
            crate::telemetry::init_logging(&config.log);
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .with_context(|| format!("binding {}", config.server.listen))?;
            crate::run(config, listener, crate::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "demo")]
        Command::Demo { dir } => {
            let config = load(cli.config)?;
            crate::telemetry::init_logging(&config.log);
            let demo = crate::demo::prepare(config, &dir).await?;
            let listener = tokio::net::TcpListener::bind(demo.config.server.listen)
                .await
                .with_context(|| format!("binding {}", demo.config.server.listen))?;
            println!(
                "{}",
                crate::demo::instructions(&demo, listener.local_addr()?)
            );
            // The simulator lives as long as `demo`, past the broker's shutdown.
            crate::run(demo.config.clone(), listener, crate::shutdown_signal()).await?;
            drop(demo);
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let config = load(cli.config)?;
            crate::telemetry::init_logging(&config.log);
            let store = Store::connect(&config.database).await?;
            store.migrate().await?;
            eprintln!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync(args) => {
            let config = load(cli.config)?;
            crate::telemetry::init_logging(&config.log);
            crate::sync::cli::run(config, args).await
        }
        Command::Grants(cmd) => {
            let config = load(cli.config)?;
            crate::grants::cli::run(config, cmd).await
        }
        Command::Requests(cmd) => {
            let config = load(cli.config)?;
            crate::requests::cli::run(config, cmd).await
        }
        Command::Reviews(cmd) => {
            let config = load(cli.config)?;
            crate::reviews::cli::run(config, cmd).await
        }
        Command::Okta(cmd) => {
            let config = load(cli.config)?;
            crate::events::cli::run(config, cmd).await
        }
        Command::Audit(AuditCommand::Verify) => {
            let config = load(cli.config)?;
            let store = Store::connect(&config.database).await?;
            let report = crate::audit::verify(&store).await?;
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
        Command::Audit(AuditCommand::Export {
            since,
            until,
            format,
            output,
        }) => {
            if let (Some(s), Some(u)) = (since, until) {
                if s >= u {
                    anyhow::bail!("--since must be earlier than --until");
                }
            }
            let config = load(cli.config)?;
            let store = Store::connect(&config.database).await?;
            let since = since.map(|t| t.timestamp_millis());
            let until = until.map(|t| t.timestamp_millis());
            let n = match output {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    crate::audit::export::export(&store, since, until, format, file).await?
                }
                None => {
                    crate::audit::export::export(
                        &store,
                        since,
                        until,
                        format,
                        std::io::stdout().lock(),
                    )
                    .await?
                }
            };
            eprintln!("exported {n} entries");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// GETs `/healthz` on the listen address, turning a wildcard bind into loopback.
async fn healthcheck(
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

fn load(file: Option<PathBuf>) -> anyhow::Result<Config> {
    Config::load(file.as_deref()).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("invalid configuration:\n  {}", lines.join("\n  "))
    })
}

fn check_config(file: Option<PathBuf>) -> ExitCode {
    match Config::load(file.as_deref()) {
        Ok(config) => match config.policy.load() {
            Ok(policy) => {
                for w in config.slack.warnings() {
                    eprintln!("warning: {w}");
                }
                println!(
                    "configuration is valid; policy has {} resource(s)",
                    policy.resources.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("policy has {} problem(s):", errors.len());
                for e in errors {
                    eprintln!("  {e}");
                }
                ExitCode::from(1)
            }
        },
        Err(errors) => {
            eprintln!("configuration has {} problem(s):", errors.len());
            for e in errors {
                eprintln!("  {e}");
            }
            ExitCode::from(1)
        }
    }
}
