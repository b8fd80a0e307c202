//! The app wiring, the top layer: builds every service from the configuration, starts the
//! background tasks, hands each channel its state, and serves until shutdown.
//!
//! Why it exists: it is the only module that knows every other one, so none of them has to
//! know each other. The aggregate [`Config`] lives here for the same reason.
//!
//! What it must never do: decide anything (who may do what is the domain's; how to answer is
//! the channels'). It wires, starts and stops.

pub mod checkpoints;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod http;

pub use config::Config;

use std::future::{Future, IntoFuture};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::auth::Authenticator;
use crate::clock::Clock;
use crate::redis_conn::{RedisConn, RedisError};
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;
use crate::{
    api, callbacks, console, events, grants, notify, okta, oncall, outbox, policy, requests,
    reviews, scheduler, slack, store, sync, telemetry,
};

/// Why the application could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("the policy is invalid:\n  {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
    Policy(Vec<policy::PolicyError>),
    #[error("the Okta client cannot be built")]
    Okta(#[from] crate::okta::OktaError),
    #[error("the console cannot start")]
    Console(#[from] console::ConsoleError),
    #[error("the Slack client cannot be built")]
    Slack(#[from] crate::slack::SlackError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
    #[error("the audit log's Merkle tree cannot be completed")]
    Audit(#[from] crate::audit::AuditError),
}

/// Options a test (or an embedding program) may change; `Default` is production.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub clock: Clock,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            clock: Clock::system(),
        }
    }
}

/// Builds the application and serves on `listener` until `shutdown` resolves, then stops
/// accepting, drains in-flight requests and stops background tasks within the grace period.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with(config, listener, shutdown, RunOptions::default()).await
}

pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: RunOptions,
) -> Result<(), RunError> {
    let config = Arc::new(config);
    // Install the metrics recorder before anything can record: counters emitted earlier (the
    // Okta capability probe at start) would go to the no-op recorder and be lost.
    let metrics = telemetry::metrics_handle();
    let store = Store::connect(&config.database).await?;
    if config.database.migrate_on_start {
        store.migrate().await?;
    } else {
        // Fail at start, naming the fix, instead of at the first request with "no such table".
        store.check_migrated(&config.database.url).await?;
    }
    // Entries from before the Merkle tree existed join it once, before anything is served.
    let added = crate::audit::merkle::catch_up(&store).await?;
    if added > 0 {
        tracing::info!(entries = added, "audit entries added to the Merkle tree");
    }
    let redis = RedisConn::connect(&config.redis).await?;
    let tasks = Tasks::new();
    store::spawn_checkpointer(&store, &tasks);
    let okta = if config.okta.is_configured() {
        Some(okta::OktaClient::new(&config.okta, options.clock.clone())?)
    } else {
        tracing::warn!("[okta] is not configured: grants and revocations cannot reach Okta");
        None
    };
    let clock = options.clock;
    // The policy check probes the credential's capabilities once; when Okta did not answer it,
    // a background task keeps trying (an Okta outage must not keep the broker, and its expiry of
    // existing grants, from starting). One probe at start, not two racing each other.
    let policy = match start_policy(&config, okta.as_ref()).await {
        Ok(p) => p,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    if let Some(client) = okta.clone() {
        if client.capabilities().is_none() {
            let cancel = tasks.cancel_token();
            tasks.spawn("okta-capability-probe", async move {
                client.probe_until_known(cancel).await;
            });
        }
    }
    policy::reload::spawn_sighup_listener(&tasks, policy.clone(), okta.clone());
    let oncall = oncall::Oncall::new(&config.oncall, clock.clone())
        .map_err(|e| RunError::Config(e.to_string()))?;
    let grants = okta.clone().map(|okta| {
        grants::GrantService::new(
            store.clone(),
            redis.clone(),
            clock.clone(),
            okta,
            policy.clone(),
            config.scheduler.failed_retry_interval,
        )
        .with_tasks(tasks.clone())
    });
    // The expiry worker runs only when there is a grants service to hand due grants to; without
    // Okta nothing could be revoked, and /readyz says so.
    let scheduler = grants.as_ref().map(|g| {
        start_scheduler(
            &config,
            redis.clone(),
            clock.clone(),
            Arc::new(g.clone()),
            &tasks,
        )
    });
    let requests = grants.clone().map(|g| {
        let svc = requests::RequestService::new(g, &config.requests, Some(tasks.clone()))
            .with_oncall(oncall.clone());
        svc.spawn_checks(&tasks, config.requests.check_interval);
        svc
    });
    let addr = listener.local_addr().map_err(RunError::Serve)?;
    let console = console::start(&config.console, addr, clock.clone(), store.clone(), &tasks)?;
    // Slack is a channel over the requests service: off without Okta or without `[slack]`.
    let slack = slack::start(&config.slack, requests.as_ref(), &tasks)?;
    let mut channels = notify_channels(&config, &clock)?;
    if let Some(s) = &slack {
        channels.add(Arc::new(s.deliverer()));
    }
    let wake = start_notifications(&config, &store, &clock, &channels, &tasks);
    checkpoints::Checkpointer {
        store: store.clone(),
        clock: clock.clone(),
        origin: config.audit.origin.clone(),
        signer: checkpoints::signer(&config.audit),
        channels: channels.clone(),
        wake,
    }
    .spawn(&tasks, config.audit.checkpoint_interval);
    let events = events::Events::new(
        store.clone(),
        clock.clone(),
        config.events.clone(),
        policy.clone(),
    );
    events.start_retention(&tasks);
    // Replay-protection rows past their windows, on every replica.
    callbacks::spawn_purge(store.clone(), clock.clone(), &tasks);
    store::purge::spawn(
        store.clone(),
        clock.clone(),
        slack::verify::DELIVERIES,
        &tasks,
    );
    if let Some(g) = &grants {
        events.start(g.clone(), requests.clone(), &tasks);
    }
    if let Some(g) = &grants {
        sync::spawn(&tasks, sync::Syncer::new(g.clone(), config.sync.clone()));
    }
    if let Some(g) = &grants {
        reviews::spawn(
            &tasks,
            reviews::ReviewService::new(g.clone()),
            reviews::CHECK_INTERVAL,
        );
    }
    let auth = api_authenticator(&config, &clock, requests.as_ref())?;
    let resource_metadata = config.access_tokens.is_enabled().then(|| {
        let url = if config.console.public_url.trim().is_empty() {
            format!("http://{addr}")
        } else {
            config.console.public_url.clone()
        };
        Arc::new(api::metadata::ResourceMetadata::new(
            &url,
            &config.access_tokens.issuer,
        ))
    });
    let channels = http::Channels {
        console: console::ConsoleState {
            config: Arc::new(config.console.clone()),
            store: store.clone(),
            clock: clock.clone(),
            requests: requests.clone(),
            grants: grants.clone(),
            console,
        },
        callbacks: callbacks::CallbacksState {
            store: store.clone(),
            clock: clock.clone(),
            requests: requests.clone(),
            callbacks: Arc::new(callbacks::Verifier::new(&config.callbacks)),
        },
        slack: slack::SlackState { slack },
        api: api::ApiState {
            auth: Arc::new(auth),
            store: store.clone(),
            redis,
            clock,
            metrics,
            tasks: tasks.clone(),
            policy,
            grants,
            requests,
            okta,
            scheduler,
            events,
            resource_metadata,
        },
    };
    if let Some(maddr) = config.server.metrics_listen {
        serve_metrics(maddr, channels.api.clone(), &tasks).await?;
    }
    let app = http::router(&config.server, channels);
    tracing::info!(%addr, database = %store::redact_url(&config.database.url), "jit-broker listening");

    // Shutdown order: the signal cancels background tasks and tells axum to stop accepting;
    // axum drains in-flight requests; then tracked tasks get what is left of the grace period.
    let cancel = tasks.cancel_token();
    let grace = config.server.shutdown_grace;
    let fired_at = Arc::new(std::sync::OnceLock::<tokio::time::Instant>::new());
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = {
        let fired_at = fired_at.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown requested: draining");
            let _ = fired_at.set(tokio::time::Instant::now());
            cancel.cancel();
            let _ = fired_tx.send(());
        }
    };
    let serve = axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(signal)
        .into_future();
    // In-flight requests get the grace period, counted from the signal; a request that hangs
    // longer must not keep the process (and its replacement's rollout) waiting.
    let deadline = async move {
        match fired_rx.await {
            Ok(()) => tokio::time::sleep(grace).await,
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let result = tokio::select! {
        r = serve => r.map_err(RunError::Serve),
        _ = deadline => {
            tracing::warn!("in-flight requests did not finish within the grace period");
            Ok(())
        }
    };
    // Background tasks were cancelled with the signal and have been finishing alongside the
    // requests; they get what is left of the same grace period, not a second one.
    let left_of_grace = fired_at
        .get()
        .map(|t| grace.saturating_sub(t.elapsed()))
        .unwrap_or(grace);
    let left = tasks.shutdown(left_of_grace).await;
    // `close` waits for every borrowed connection; a request or task abandoned at the end of the
    // grace period may still hold one, and must not keep the process from exiting.
    if tokio::time::timeout(std::time::Duration::from_secs(2), store.close())
        .await
        .is_err()
    {
        tracing::warn!("database connections still in use at exit");
    }
    if left.is_empty() {
        tracing::info!("stopped cleanly");
    }
    result
}

/// The API's static tokens and, when `[access_tokens]` is on, the Okta access token verifier
/// with the people behind tokens (roles from the console's groups: one mapping for both).
fn api_authenticator(
    config: &Config,
    clock: &Clock,
    requests: Option<&requests::RequestService>,
) -> Result<Authenticator, RunError> {
    let auth = Authenticator::from_config(&config.auth.tokens);
    if !config.access_tokens.is_enabled() {
        return Ok(auth);
    }
    // Config validation requires `[okta]` with access tokens, so there is a requests service.
    let Some(requests) = requests else {
        return Err(RunError::Config(
            "access_tokens needs [okta] to read the person behind a token".into(),
        ));
    };
    let verifier = okta::jwt::AccessTokenVerifier::new(config.access_tokens.clone(), clock.clone())
        .map_err(|e| RunError::Config(format!("access_tokens: {e}")))?;
    let people = requests::people::People::new(
        requests.directory().clone(),
        config.console.group_roles(),
        clock.clone(),
        config.access_tokens.person_cache_ttl,
    );
    Ok(auth.with_okta(api::auth::OktaTokens { verifier, people }))
}

/// Builds the expiry scheduler from the configuration and starts its background tasks
/// (`scheduler.worker`, `.wake`, `.sweep`, `.rebuild`) on `tasks`. The grants service supplies
/// the handler; keep the returned [`scheduler::Scheduler`] for `index()` and `stats()`.
pub fn start_scheduler(
    config: &Config,
    redis: RedisConn,
    clock: Clock,
    handler: Arc<dyn scheduler::ExpiryHandler>,
    tasks: &Tasks,
) -> scheduler::Scheduler {
    // Leases on Redis TIME in production; a test clock (tokio_at, paused time) means due times
    // are in the test's time base, so the scheduler must read the same clock.
    let time_source = if clock.is_system() {
        scheduler::TimeSource::RedisTime
    } else {
        scheduler::TimeSource::Clock
    };
    let s = scheduler::Scheduler::with_time_source(
        redis,
        clock,
        config.scheduler.clone(),
        handler,
        time_source,
    );
    s.spawn(tasks);
    s
}

/// The channels notifications are delivered to: one per outbound endpoint (Slack adds its own).
fn notify_channels(config: &Config, clock: &Clock) -> Result<notify::Channels, RunError> {
    let mut channels = notify::Channels::new();
    for e in &config.outbound.endpoints {
        let secret = e.secret.clone().ok_or_else(|| {
            RunError::Config(format!("outbound endpoint `{}` has no secret", e.name))
        })?;
        let ep = outbox::webhook::WebhookEndpoint::new(
            e,
            &secret,
            config.outbound.timeout,
            clock.clone(),
        )
        .map_err(|err| RunError::Config(err.to_string()))?;
        channels.add(Arc::new(ep));
    }
    for (i, url) in config.audit.witness_urls.iter().enumerate() {
        let w = outbox::witness::Witness::new(i, url, config.outbound.timeout)
            .map_err(|e| RunError::Config(format!("audit.witness_urls[{i}]: {e}")))?;
        channels.add(Arc::new(w));
    }
    Ok(channels)
}

/// Starts deriving notifications from the audit log (`notify.derive`, `notify.timed`) and one
/// delivery worker per channel (`outbox.<channel>`). Returns what wakes those workers.
fn start_notifications(
    config: &Config,
    store: &Store,
    clock: &Clock,
    channels: &notify::Channels,
    tasks: &Tasks,
) -> notify::Wake {
    let wake = notify::Wake::default();
    notify::derive::spawn(
        tasks,
        store.clone(),
        clock.clone(),
        channels.clone(),
        wake.clone(),
        config.notify.poll_interval,
    );
    notify::timed::spawn(
        tasks,
        store.clone(),
        clock.clone(),
        channels.clone(),
        notify::timed::TimedConfig {
            notify: config.notify.clone(),
            remind_before: config.reviews.remind_before,
        },
        wake.clone(),
        std::time::Duration::from_secs(5).min(config.notify.poll_interval * 20),
    );
    outbox::spawn(
        tasks,
        store.clone(),
        clock.clone(),
        channels,
        config.outbox.clone(),
        wake.clone(),
    );
    outbox::spawn_gauges(tasks, store.clone(), channels);
    wake
}

/// The configured on-call sources' names and vendors, for the policy's cross-check.
pub(crate) fn oncall_sources(config: &Config) -> Vec<(String, oncall::Vendor)> {
    config
        .oncall
        .sources
        .iter()
        .map(|s| (s.name.clone(), s.kind))
        .collect()
}

/// How long the start waits for the policy's check against Okta before going on without it.
const POLICY_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Loads the policy (offline checks) and, when Okta is configured, checks each resource there.
/// A definite problem (a resource that does not exist, an `APP_GROUP`, a kind our credentials
/// cannot change) stops the start; Okta being unreachable or slow only warns, so a flaky Okta
/// never keeps the expiry worker from running (I1).
async fn start_policy(
    config: &Config,
    okta: Option<&okta::OktaClient>,
) -> Result<policy::PolicyHandle, RunError> {
    let loaded = config.policy.load().map_err(RunError::Policy)?;
    let sources = oncall_sources(config);
    let unknown = policy::auto::check_sources(&loaded, &sources);
    if !unknown.is_empty() {
        return Err(RunError::Policy(unknown));
    }
    if let Some(client) = okta {
        match tokio::time::timeout(POLICY_CHECK_TIMEOUT, policy::online::check(&loaded, client))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(errors)) => {
                let definite: Vec<_> = errors
                    .iter()
                    .filter(|e| !matches!(e, policy::PolicyError::Unchecked { .. }))
                    .cloned()
                    .collect();
                if !definite.is_empty() {
                    return Err(RunError::Policy(definite));
                }
                for e in &errors {
                    tracing::warn!(error = %e, "policy not fully checked against Okta; starting anyway");
                }
            }
            Err(_) => {
                tracing::warn!("Okta did not answer the policy check in time; starting anyway")
            }
        }
    }
    tracing::info!(resources = loaded.resources.len(), "policy loaded");
    Ok(policy::PolicyHandle::new(
        loaded,
        config.policy.file.clone(),
    ))
}

/// Serves `/metrics` alone on `addr` (`server.metrics_listen`) as the tracked task
/// `server.metrics`, which stops accepting when shutdown starts and drains what is in flight.
/// Bound before the main listener serves, so a taken address fails the start.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    api: api::ApiState,
    tasks: &Tasks,
) -> Result<(), RunError> {
    let listener = TcpListener::bind(addr).await.map_err(RunError::Serve)?;
    let bound = listener.local_addr().map_err(RunError::Serve)?;
    tracing::info!(addr = %bound, "metrics listening");
    let cancel = tasks.cancel_token();
    let router = api::metrics_routes(api);
    tasks.spawn("server.metrics", async move {
        let r = axum::serve(listener, router.into_make_service())
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    });
    Ok(())
}

/// Resolves on SIGTERM or SIGINT: what `serve` passes as the shutdown future.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
