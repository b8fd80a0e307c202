//! The command line's dispatcher: loads the configuration once, then runs `serve`, `demo` and
//! `check-config` here (they need the whole app) and hands every other verb the sections it
//! needs ([`cli::Settings`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::Config;
use crate::cli::{self, AuditCommand, Cli, Command};
use crate::store::Store;

/// Runs a parsed command line. Returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig => Ok(check_config(cli.config)),
        Command::HashToken => cli::hash_token(),
        Command::Healthcheck { timeout } => {
            let config = load(cli.config)?;
            cli::healthcheck(config.server.listen, timeout).await
        }
        Command::Serve => {
            let config = load(cli.config)?;
            crate::telemetry::init_logging(&config.log);
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .with_context(|| format!("binding {}", config.server.listen))?;
            super::run(config, listener, super::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "demo")]
        Command::Demo { dir } => {
            let config = load(cli.config)?;
            crate::telemetry::init_logging(&config.log);
            let demo = super::demo::prepare(config, &dir).await?;
            let listener = tokio::net::TcpListener::bind(demo.config.server.listen)
                .await
                .with_context(|| format!("binding {}", demo.config.server.listen))?;
            println!(
                "{}",
                super::demo::instructions(&demo, listener.local_addr()?)
            );
            // The simulator lives as long as `demo`, past the broker's shutdown.
            super::run(demo.config.clone(), listener, super::shutdown_signal()).await?;
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
            cli::sync::run(settings(config), args).await
        }
        Command::Grants(cmd) => {
            let config = load(cli.config)?;
            cli::grants::run(settings(config), cmd).await
        }
        Command::Requests(cmd) => {
            let config = load(cli.config)?;
            cli::requests::run(settings(config), cmd).await
        }
        Command::Reviews(cmd) => {
            let config = load(cli.config)?;
            cli::reviews::run(settings(config), cmd).await
        }
        Command::Okta(cmd) => {
            let config = load(cli.config)?;
            cli::events::run(settings(config), cmd).await
        }
        Command::Audit(AuditCommand::Verify(args)) => {
            let config = load(cli.config)?;
            let store = Store::open(&config.database).await?;
            let chain = cli::audit_verify(&store).await?;
            match &args.checkpoint {
                Some(file) if chain == ExitCode::SUCCESS => {
                    cli::audit::verify_checkpoint(&store, &config.audit, &args, file).await
                }
                Some(file) => {
                    // The chain is broken; the checkpoint still says which history was signed.
                    cli::audit::verify_checkpoint(&store, &config.audit, &args, file).await?;
                    Ok(chain)
                }
                None => Ok(chain),
            }
        }
        Command::Audit(AuditCommand::Prove(args)) => {
            let config = load(cli.config)?;
            let store = Store::open(&config.database).await?;
            cli::audit::prove(&store, &args).await
        }
        Command::Audit(AuditCommand::VerifyProof(args)) => {
            // Offline: no database. Keys from `--key`, else from the configuration.
            let keys = if args.keys.is_empty() {
                load(cli.config)?.audit.verifier_keys()
            } else {
                args.keys.clone()
            };
            cli::audit::verify_proof(&keys, &args)
        }
        Command::Audit(AuditCommand::Keygen(args)) => cli::audit::keygen(&args),
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
            let store = Store::open(&config.database).await?;
            cli::audit_export(&store, since, until, format, output).await
        }
    }
}

/// The sections the verbs need, out of the whole configuration.
fn settings(config: Config) -> cli::Settings {
    cli::Settings {
        database: config.database,
        redis: config.redis,
        okta: config.okta,
        policy: config.policy,
        scheduler: config.scheduler,
        requests: config.requests,
        sync: config.sync,
        events: config.events,
        audit: config.audit,
    }
}

fn load(file: Option<PathBuf>) -> anyhow::Result<Config> {
    Config::load(file.as_deref()).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("invalid configuration:\n  {}", lines.join("\n  "))
    })
}

/// Every problem at once: each configuration layer and section, every secret file, and the
/// policy file (whenever the policy section itself could be read), not the first of each.
fn check_config(file: Option<PathBuf>) -> ExitCode {
    let report = Config::load_report(file.as_deref(), std::env::vars());
    let mut ok = true;
    if !report.errors.is_empty() {
        ok = false;
        eprintln!("configuration has {} problem(s):", report.errors.len());
        for e in &report.errors {
            eprintln!("  {e}");
        }
    }
    // On-call rules name configured sources: checked when the configuration itself was read.
    let sources = report
        .config
        .as_ref()
        .map(super::oncall_sources)
        .unwrap_or_default();
    let checked = report.config.is_some();
    let resources = match report.policy.as_ref().map(|p| {
        p.load().and_then(|policy| {
            let unknown = crate::policy::auto::check_sources(&policy, &sources);
            if unknown.is_empty() || !checked {
                Ok(policy)
            } else {
                Err(unknown)
            }
        })
    }) {
        Some(Ok(policy)) => Some(policy.resources.len()),
        Some(Err(errors)) => {
            ok = false;
            eprintln!("policy has {} problem(s):", errors.len());
            for e in errors {
                eprintln!("  {e}");
            }
            None
        }
        None => {
            eprintln!("policy not checked: the [policy] section itself has a problem");
            None
        }
    };
    if let Some(config) = &report.config {
        for w in config.slack.warnings() {
            eprintln!("warning: {w}");
        }
    }
    match (ok, resources) {
        (true, Some(n)) => {
            println!("configuration is valid; policy has {n} resource(s)");
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(1),
    }
}
