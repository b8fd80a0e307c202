//! `jit-broker grants list|show|revoke`: operator access to grants without the HTTP API.
//!
//! `list` and `show` read SQL directly (like `audit verify`); `revoke` builds the same
//! [`GrantService`] the server uses (store, Redis, Okta client, policy), so a revocation from the
//! command line goes through the same lock, audit and Okta path as one from the API.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::Settings;
use crate::clock::{ms_to_datetime, Clock};
use crate::grants::ListFilter;
use crate::grants::{GrantService, GrantState};
use crate::okta::OktaClient;
use crate::policy::PolicyHandle;
use crate::redis_conn::RedisConn;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// List grants, newest last; filters combine.
    List {
        /// Okta user id or login.
        #[arg(long, env = "JIT_GRANTS_USER")]
        user: Option<String>,
        /// Policy resource name.
        #[arg(long, env = "JIT_GRANTS_RESOURCE")]
        resource: Option<String>,
        /// requested|provisioning|active|revoking|revoked|failed
        #[arg(long, env = "JIT_GRANTS_STATE")]
        state: Option<String>,
        /// Most grants to print.
        #[arg(long, default_value_t = 100, env = "JIT_GRANTS_LIMIT")]
        limit: i64,
        /// Print grants after this id (the last id of the previous page).
        #[arg(long, env = "JIT_GRANTS_AFTER")]
        after: Option<String>,
    },
    /// Print one grant as JSON.
    Show { id: String },
    /// End a grant now: remove its access from Okta (unless standing or shared) and record it.
    Revoke {
        id: String,
        /// Why; recorded in the audit log.
        #[arg(long, env = "JIT_GRANTS_REASON")]
        reason: String,
    },
}

pub async fn run(config: Settings, cmd: GrantsCommand) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.database).await?;
    match cmd {
        GrantsCommand::List {
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
                Some(s) => Some(
                    GrantState::parse(&s).with_context(|| format!("unknown grant state `{s}`"))?,
                ),
                None => None,
            };
            let grants = crate::grants::list(
                &store,
                &ListFilter {
                    user,
                    resource,
                    state,
                    after,
                    limit,
                },
            )
            .await?;
            println!(
                "{:<36}  {:<12}  {:<28}  {:<20}  {:<25}  standing",
                "id", "state", "user", "resource", "expires_at"
            );
            for g in &grants {
                println!(
                    "{:<36}  {:<12}  {:<28}  {:<20}  {:<25}  {}",
                    g.id,
                    g.state.as_str(),
                    g.user_login,
                    g.resource,
                    ms_to_datetime(g.expires_at).to_rfc3339(),
                    match g.standing {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "-",
                    }
                );
            }
            eprintln!("{} grant(s)", grants.len());
            Ok(ExitCode::SUCCESS)
        }
        GrantsCommand::Show { id } => match crate::grants::find(&store, &id).await? {
            Some(g) => {
                println!("{}", serde_json::to_string_pretty(&g)?);
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("no grant `{id}`");
                Ok(ExitCode::from(1))
            }
        },
        GrantsCommand::Revoke { id, reason } => {
            let svc = service(&config, store).await?;
            // The command line runs with the broker's own credentials: an operator's revoke.
            let g = svc
                .end_early_as(&crate::authz::Actor::operator("cli"), &id, reason.trim())
                .await?;
            println!("{}", serde_json::to_string_pretty(&g)?);
            Ok(if g.state == GrantState::Revoked {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "grant is {}: {}",
                    g.state.as_str(),
                    g.last_error
                        .as_deref()
                        .unwrap_or("the scheduler will retry")
                );
                ExitCode::from(1)
            })
        }
    }
}

/// The grants service as `serve` builds it (store, Redis, Okta client with its capabilities
/// probed, policy), for verbs that change access from the command line.
pub(crate) async fn service(config: &Settings, store: Store) -> anyhow::Result<GrantService> {
    if !config.okta.is_configured() {
        anyhow::bail!("okta.base_url is empty: cannot change access without Okta");
    }
    let clock = Clock::system();
    let redis = RedisConn::connect(&config.redis).await?;
    let okta = OktaClient::new(&config.okta, clock.clone())?;
    // Learn the credential's capabilities, as `serve` does at start.
    if let Err(e) = okta.probe_capabilities().await {
        eprintln!("warning: cannot probe Okta capabilities: {e}");
    }
    let policy = config
        .policy
        .load()
        .map_err(|errs| anyhow::anyhow!("invalid policy: {errs:?}"))?;
    Ok(GrantService::new(
        store,
        redis,
        clock,
        okta,
        PolicyHandle::new(policy, config.policy.file.clone()),
        config.scheduler.failed_retry_interval,
    ))
}
