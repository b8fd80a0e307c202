//! `jit-broker requests list|show|approve|deny|cancel`: requests from the command line, through
//! the same [`RequestService`] as the API (same checks, same audit entries, channel `cli`).
//!
//! The person acting is named with `--as` (their Okta login): the command line is trusted with
//! the broker's own credentials, but a decision is still checked against the approvers the
//! policy names, exactly as for anyone else.

use std::process::ExitCode;

use clap::Subcommand;

use super::Settings;
use crate::clock::ms_to_datetime;
use crate::requests::model::{Actor, RequestState, Verdict};
use crate::requests::repo::ListFilter;
use crate::requests::RequestService;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List requests, oldest first; filters combine.
    List {
        /// Okta login or id of the person the access is for.
        #[arg(long, env = "JIT_REQUESTS_USER")]
        user: Option<String>,
        #[arg(long, env = "JIT_REQUESTS_RESOURCE")]
        resource: Option<String>,
        /// pending|approved|denied|cancelled|expired|failed
        #[arg(long, env = "JIT_REQUESTS_STATE")]
        state: Option<String>,
        #[arg(long, default_value_t = 100, env = "JIT_REQUESTS_LIMIT")]
        limit: i64,
        /// Print requests after this id (the last id of the previous page).
        #[arg(long, env = "JIT_REQUESTS_AFTER")]
        after: Option<String>,
    },
    /// Print one request with its decisions, stages and grant as JSON.
    Show { id: String },
    /// Approve a request as the approver named by `--as`.
    Approve {
        id: String,
        /// The approver's Okta login.
        #[arg(long = "as", env = "JIT_REQUESTS_AS")]
        as_login: String,
        #[arg(long, env = "JIT_REQUESTS_COMMENT")]
        comment: Option<String>,
    },
    /// Deny a request as the approver named by `--as`.
    Deny {
        id: String,
        #[arg(long = "as", env = "JIT_REQUESTS_AS")]
        as_login: String,
        #[arg(long, env = "JIT_REQUESTS_COMMENT")]
        comment: Option<String>,
    },
    /// Cancel a pending request (an operator's cancel: recorded as `cli` by `--as`).
    Cancel {
        id: String,
        #[arg(long = "as", env = "JIT_REQUESTS_AS")]
        as_login: String,
    },
}

pub async fn run(config: Settings, cmd: RequestsCommand) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.database).await?;
    let svc = || async {
        let grants = super::grants::service(&config, store.clone()).await?;
        anyhow::Ok(RequestService::new(grants, &config.requests, None))
    };
    let outcome = match cmd {
        RequestsCommand::List {
            user,
            resource,
            state,
            limit,
            after,
        } => {
            if !(1..=10_000).contains(&limit) {
                anyhow::bail!("--limit must be between 1 and 10000");
            }
            let state = match state {
                Some(s) => Some(RequestState::parse(&s).ok_or_else(|| {
                    anyhow::anyhow!("unknown request state `{s}` (pending, approved, denied, cancelled, expired, failed)")
                })?),
                None => None,
            };
            let list = crate::requests::repo::list(
                &store,
                &ListFilter {
                    user,
                    resource,
                    state,
                    after,
                    limit,
                    requested_by: None,
                },
            )
            .await?;
            println!(
                "{:<36}  {:<9}  {:<28}  {:<20}  {:<9}  {:<25}  reason",
                "id", "state", "user", "resource", "kind", "created_at"
            );
            for r in &list {
                println!(
                    "{:<36}  {:<9}  {:<28}  {:<20}  {:<9}  {:<25}  {}",
                    r.id,
                    r.state.as_str(),
                    r.user_login,
                    r.resource,
                    r.kind.as_str(),
                    ms_to_datetime(r.created_at).to_rfc3339(),
                    r.reason
                );
            }
            eprintln!("{} request(s)", list.len());
            return Ok(ExitCode::SUCCESS);
        }
        RequestsCommand::Show { id } => {
            if crate::requests::repo::get(&store, &id)
                .await
                .ok()
                .flatten()
                .is_none()
            {
                eprintln!("no request `{id}`");
                return Ok(ExitCode::from(1));
            }
            svc()
                .await?
                .get(&id)
                .await
                .map(|v| serde_json::to_value(v).unwrap_or_default())
        }
        RequestsCommand::Approve {
            id,
            as_login,
            comment,
        } => decide(&svc().await?, &id, as_login, Verdict::Approve, comment).await,
        RequestsCommand::Deny {
            id,
            as_login,
            comment,
        } => decide(&svc().await?, &id, as_login, Verdict::Deny, comment).await,
        RequestsCommand::Cancel { id, as_login } => {
            // The command line runs with the broker's own credentials: an operator's cancel.
            svc()
                .await?
                .cancel(&id, &Actor::operator(as_login))
                .await
                .map(|r| serde_json::to_value(r).unwrap_or_default())
        }
    };
    match outcome {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        // A refusal (not an approver, already decided, …) is the command's answer, exit 1;
        // anything else (database down) is an error, exit 2.
        Err(e) if crate::error::ErrorCode::status(&e).is_client_error() => {
            eprintln!("refused ({}): {e}", crate::error::ErrorCode::code(&e));
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(anyhow::Error::new(e)),
    }
}

async fn decide(
    svc: &RequestService,
    id: &str,
    as_login: String,
    verdict: Verdict,
    comment: Option<String>,
) -> Result<serde_json::Value, crate::requests::RequestError> {
    svc.decide(id, &Actor::operator(as_login), verdict, comment.as_deref())
        .await
        .map(|v| serde_json::to_value(v).unwrap_or_default())
}
