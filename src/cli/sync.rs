//! `jit-broker sync [--dry-run] [--full] [--json]`: one sync now, from the command line, through
//! the same [`Syncer`] (lock, fence, lanes, grants service) as the scheduled runs.
//!
//! Progress goes to stderr: one rewritten line on a terminal, plain lines otherwise. The drift
//! report goes to stdout as a table, or JSON with `--json`. Exit codes: 0 the run succeeded, 1
//! another replica is syncing, 2 error.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Args;

use super::Settings;
use crate::clock::Clock;
use crate::grants::GrantService;
use crate::okta::OktaClient;
use crate::policy::PolicyHandle;
use crate::redis_conn::RedisConn;
use crate::store::Store;
use crate::sync::{Progress, RunRecord, SyncError, SyncOptions, Syncer};

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Read and plan only: change nothing in Okta or grants; print what would be done.
    #[arg(long, env = "JIT_SYNC_DRY_RUN")]
    pub dry_run: bool,
    /// List everything, ignoring the delta keys.
    #[arg(long, env = "JIT_SYNC_FULL")]
    pub full: bool,
    /// Print the run record (with its drift report) as JSON instead of a table.
    #[arg(long, env = "JIT_SYNC_JSON")]
    pub json: bool,
}

pub async fn run(config: Settings, args: SyncArgs) -> anyhow::Result<ExitCode> {
    if !config.okta.is_configured() {
        anyhow::bail!("okta.base_url is empty: there is no Okta to sync with");
    }
    let store = Store::open(&config.database).await?;
    let clock = Clock::system();
    let redis = RedisConn::connect(&config.redis).await?;
    let okta = OktaClient::new(&config.okta, clock.clone())?;
    if let Err(e) = okta.probe_capabilities().await {
        eprintln!("warning: cannot probe Okta capabilities: {e}");
    }
    let policy = config
        .policy
        .load()
        .map_err(|errs| anyhow::anyhow!("invalid policy: {errs:?}"))?;
    let grants = GrantService::new(
        store,
        redis,
        clock,
        okta,
        PolicyHandle::new(policy, config.policy.file.clone()),
        config.scheduler.failed_retry_interval,
    );
    let syncer = Syncer::new(grants, config.sync.clone());
    let tty = std::io::stderr().is_terminal();
    let last_phase = Arc::new(Mutex::new(""));
    let progress = move |p: &Progress| {
        if tty {
            eprint!(
                "\r{:<16} objects {:>8}  Okta calls {:>7}",
                p.phase, p.objects, p.okta_calls
            );
        } else if let Ok(mut last) = last_phase.lock() {
            // Plain lines: one per phase change, not per page.
            if *last != p.phase {
                eprintln!("sync: {} (Okta calls so far: {})", p.phase, p.okta_calls);
                *last = p.phase;
            }
        }
    };
    let opts = SyncOptions {
        dry_run: args.dry_run,
        full: args.full,
        progress: Some(Arc::new(progress)),
    };
    let r = syncer.run(opts).await;
    if tty {
        eprintln!();
    }
    match r {
        Ok(rec) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rec)?);
            } else {
                print_table(&rec);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(SyncError::Busy) => {
            eprintln!("another replica is syncing; try again later");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

fn print_table(r: &RunRecord) {
    println!(
        "{:<20}  {:<20}  {:<30}  {:<10}  {:<10}  outcome",
        "finding", "resource", "user", "action", "grant"
    );
    for f in &r.report {
        println!(
            "{:<20}  {:<20}  {:<30}  {:<10}  {:<10}  {}",
            f.finding,
            f.resource,
            f.login.as_deref().unwrap_or(&f.user_id),
            f.action,
            f.grant_id
                .as_deref()
                .map(|g| g.get(..8).unwrap_or(g))
                .unwrap_or("-"),
            f.outcome
                .as_deref()
                .unwrap_or(if r.dry_run { "dry run" } else { "-" })
        );
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "sync {} ({}{}): {} finding(s), {} change(s), {} users and {} groups read, {} objects listed, {} unchanged, {} Okta calls",
        r.id,
        r.mode,
        if r.dry_run { ", dry run" } else { "" },
        r.counts.findings,
        r.counts.changed,
        r.counts.users_read,
        r.counts.groups_read,
        r.counts.objects_listed,
        r.counts.objects_unchanged,
        r.okta_calls.total()
    );
}
