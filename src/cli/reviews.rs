//! `jit-broker reviews create|list|show|report|stop-recurring` (report as JSON, CSV or PDF):
//! access review campaigns from the command line, through the same [`ReviewService`] as the API
//! (same checks, same audit entries).
//!
//! Exit codes: 0 done, 1 refused (unknown campaign, invalid campaign), 2 usage or error. The
//! report goes to stdout (or `--output`), so it can be piped to an auditor's tooling.

use std::io::Write;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::Settings;
use crate::reviews::service::CreateCampaign;
use crate::reviews::{report, DefaultAction, ReviewService, ReviewerRule};
use crate::store::Store;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Csv,
    /// For people: a title page with the counts and audit range, then a table per resource.
    Pdf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DefaultArg {
    Keep,
    Revoke,
    Escalate,
}

#[derive(Debug, Subcommand)]
pub enum ReviewsCommand {
    /// Create a campaign; its items are snapshotted from the inventory now.
    Create {
        #[arg(long)]
        name: String,
        /// Policy resource names, comma-separated, or `*` for every managed resource.
        #[arg(long, value_delimiter = ',', required = true)]
        resources: Vec<String>,
        /// Also review Okta groups and apps the policy does not manage (as the inventory lists
        /// them with `sync.all_groups` / `sync.all_apps`).
        #[arg(long)]
        include_unmanaged: bool,
        /// Leave out access a live grant explains.
        #[arg(long)]
        standing_only: bool,
        /// Let reviewers review their own access (default: never; it goes to the fallback).
        #[arg(long)]
        allow_self_review: bool,
        /// `approvers` (the resource's approvers), `manager` (the holder's manager from the
        /// Okta profile) or one person's Okta login.
        #[arg(long, default_value = "approvers")]
        reviewer: String,
        /// Reviews what the rule cannot assign, and every reviewer's own access.
        #[arg(long)]
        fallback: String,
        /// The due date: a date (`2026-01-31`, midnight UTC) or an RFC 3339 time
        /// (`2026-01-31T17:00:00Z`).
        #[arg(long)]
        due: String,
        /// What happens to items nobody decided by the due date.
        #[arg(long, value_enum)]
        default: DefaultArg,
        /// Recurring: a cron expression with seconds (`0 0 9 1 */3 *`, UTC); each run is a new
        /// campaign with the same scope and rules.
        #[arg(long)]
        recur: Option<String>,
        /// Recorded as the campaign's owner in the audit log.
        #[arg(long = "as", default_value = "cli")]
        as_login: String,
    },
    /// List campaigns, newest first.
    List,
    /// Print one campaign with its counts and audit range as JSON.
    Show { id: String },
    /// Stop a recurring campaign's schedule: no further runs (idempotent).
    StopRecurring {
        id: String,
        /// Recorded as the actor in the audit log.
        #[arg(long = "as", default_value = "cli")]
        as_login: String,
    },
    /// Hand an item to another reviewer. The CLI runs with the database's credentials, so it
    /// acts as an admin; `--as` names the operator in the audit log.
    Delegate {
        id: String,
        #[arg(long)]
        item: i64,
        /// The new reviewer's Okta login.
        #[arg(long)]
        to: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long = "as", default_value = "cli")]
        as_login: String,
    },
    /// Print a campaign's evidence report.
    Report {
        id: String,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

pub async fn run(config: Settings, cmd: ReviewsCommand) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.database).await?;
    let grants = super::grants::service(&config, store).await?;
    let svc = ReviewService::new(grants);
    let r = run_with(&svc, cmd).await;
    svc.grants().store().close().await;
    r
}

async fn run_with(svc: &ReviewService, cmd: ReviewsCommand) -> anyhow::Result<ExitCode> {
    let out = match cmd {
        ReviewsCommand::Create {
            name,
            resources,
            include_unmanaged,
            standing_only,
            allow_self_review,
            reviewer,
            fallback,
            due,
            default,
            recur,
            as_login,
        } => {
            let reviewer = match reviewer.as_str() {
                "approvers" => ReviewerRule::Approvers,
                "manager" => ReviewerRule::Manager {},
                _ => ReviewerRule::Person { login: reviewer },
            };
            let default = match default {
                DefaultArg::Keep => DefaultAction::Keep,
                DefaultArg::Revoke => DefaultAction::Revoke,
                DefaultArg::Escalate => DefaultAction::Escalate,
            };
            let req = CreateCampaign {
                name,
                resources,
                include_unmanaged,
                standing_only,
                allow_self_review,
                reviewer,
                fallback,
                due_at: due,
                default,
                recur,
            };
            svc.create(&as_login, req)
                .await
                .map(|c| serde_json::to_vec_pretty(&c))
        }
        ReviewsCommand::List => svc.list().await.map(|l| {
            let mut s = String::new();
            for c in &l {
                s.push_str(&format!(
                    "{}  {:<10}  due {}  {}\n",
                    c.id,
                    c.state,
                    crate::clock::ms_to_datetime(c.due_at).to_rfc3339(),
                    c.name
                ));
            }
            Ok(s.into_bytes())
        }),
        ReviewsCommand::StopRecurring { id, as_login } => svc
            .stop_recurring(&as_login, &id)
            .await
            .map(|c| serde_json::to_vec_pretty(&c)),
        ReviewsCommand::Delegate {
            id,
            item,
            to,
            comment,
            as_login,
        } => svc
            .delegate(
                &crate::authz::Actor::operator(as_login),
                &id,
                &[crate::reviews::delegate::DelegateItem { item, to, comment }],
            )
            .await
            .map(|items| serde_json::to_vec_pretty(&items)),
        ReviewsCommand::Show { id } => svc.report(&id).await.map(|mut r| {
            r.items.clear();
            serde_json::to_vec_pretty(&r)
        }),
        ReviewsCommand::Report { id, format, output } => {
            let r = match svc.report(&id).await {
                Ok(r) => r,
                Err(e) => return refused(e),
            };
            let bytes = match format {
                Format::Json => serde_json::to_vec_pretty(&r)?,
                Format::Csv => report::to_csv(&r)?,
                Format::Pdf => crate::reviews::pdf::to_pdf(&r),
            };
            match output {
                Some(p) => std::fs::write(&p, &bytes)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?,
                None => std::io::stdout().write_all(&bytes)?,
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    match out {
        Ok(bytes) => {
            std::io::stdout().write_all(&bytes?)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => refused(e),
    }
}

fn refused(e: crate::reviews::ReviewError) -> anyhow::Result<ExitCode> {
    if crate::error::ErrorCode::status(&e).is_client_error() {
        eprintln!("refused ({}): {e}", crate::error::ErrorCode::code(&e));
        Ok(ExitCode::from(1))
    } else {
        Err(anyhow::Error::new(e))
    }
}
