//! The broker's Okta client: typed calls for users, groups, memberships, apps, app users,
//! admin roles and sessions, with pagination, rate-limit pacing, priorities, retries and a
//! capability probe.
//!
//! Why it exists: every grant and every revocation ends in an Okta call, and Okta is a shared,
//! rate-limited dependency. This module is the one place that knows how Okta answers, so the
//! grants service sees only success (idempotent: adding what exists and removing what is gone
//! both succeed, I4), a retryable failure, or a permanent one (I8).
//!
//! What it must never do: expose its credential (no token in logs, errors or `Debug`), build a
//! pagination cursor itself or follow a link to another host, let a read delay a revocation, or
//! retry a permanent refusal.
//!
//! Layout: [`config`] the `[okta]` section; [`jwt`] the `[access_tokens]` section and the
//! verifier of people's Okta access tokens (it shares nothing with the client: it only reads the
//! JWKS); [`types`] the objects; [`error`] the errors; `client` the typed calls; `paging` the `Link` walker; `probe` capabilities; `transport` one
//! call with retries; `admission` the priority queue and in-flight cap; `ratelimit` buckets.

mod admission;
mod auth;
mod client;
pub mod config;
pub mod error;
pub mod event_hooks;
pub mod jwt;
mod paging;
mod probe;
mod ratelimit;
mod transport;
pub mod types;

use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use config::{OktaAuthMethod, OktaConfig};
pub use error::OktaError;
pub use types::{
    App, AppUser, Capabilities, Group, GroupQuery, Priority, Removal, RoleAssignment, RoleSpec,
    User, UserRecord,
};

use crate::clock::Clock;

/// The Okta client. Cheap to clone: everything lives behind one `Arc`.
#[derive(Clone)]
pub struct OktaClient {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    base: url::Url,
    credentials: auth::Credentials,
    admission: Arc<admission::Admission>,
    clock: Clock,
    retry: RetryPolicy,
    page_size: u32,
    /// Set by the probe; writes the credential cannot make are refused before reaching Okta.
    capabilities: RwLock<Option<Capabilities>>,
    /// Why the last probe failed, for `/readyz` (no credential can appear in it).
    probe_error: RwLock<Option<String>>,
}

pub(crate) struct RetryPolicy {
    pub max_retries: u32,
    pub backoff_base_ms: i64,
    pub backoff_max_ms: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl std::fmt::Debug for OktaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaClient")
            .field("base_url", &self.inner.base.as_str())
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

impl OktaClient {
    pub fn new(cfg: &OktaConfig, clock: Clock) -> Result<OktaClient, OktaError> {
        if !cfg.is_configured() {
            return Err(OktaError::Config("okta.base_url is not set".into()));
        }
        let base = config::check_base_url(&cfg.base_url)
            .map_err(|m| OktaError::Config(format!("okta.base_url: {m}")))?;
        let credentials = auth::Credentials::from_config(cfg, &base)?;
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            // Redirects would carry the Authorization header to wherever Okta points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jit-broker/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(cfg.max_in_flight)
            .build()
            .map_err(|e| OktaError::Config(format!("HTTP client: {e}")))?;
        let client = OktaClient {
            inner: Arc::new(Inner {
                http,
                base,
                credentials,
                admission: admission::Admission::new(
                    clock.clone(),
                    cfg.max_in_flight,
                    ms(cfg.rate_limit_reset_margin),
                    ms(cfg.rate_limit_jitter),
                ),
                clock,
                retry: RetryPolicy {
                    max_retries: cfg.max_retries,
                    backoff_base_ms: ms(cfg.backoff_base),
                    backoff_max_ms: ms(cfg.backoff_max),
                },
                page_size: cfg.page_size.max(1),
                capabilities: RwLock::new(None),
                probe_error: RwLock::new(None),
            }),
        };
        client.set_read_share(cfg.read_share);
        Ok(client)
    }

    /// What the last probe found; `None` until [`OktaClient::probe_capabilities`] succeeded.
    pub fn capabilities(&self) -> Option<Capabilities> {
        self.inner
            .capabilities
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why the last capability probe failed, if it did.
    pub fn probe_error(&self) -> Option<String> {
        self.inner
            .probe_error
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Probes until it succeeds or `cancel` fires, backing off up to a minute: Okta may be
    /// unreachable when the broker starts, and `/readyz` shows the last error meanwhile.
    pub async fn probe_until_known(&self, cancel: tokio_util::sync::CancellationToken) {
        let mut wait_ms: i64 = 1000;
        loop {
            if self.capabilities().is_some() {
                return;
            }
            match self.probe_capabilities().await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(&e), "Okta capability probe failed; retrying");
                }
            }
            let until = self.inner.clock.now_ms() + wait_ms;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.inner.clock.sleep_until_ms(until) => {}
            }
            wait_ms = (wait_ms * 2).min(60_000);
        }
    }

    /// Requests in flight to Okta right now from this client.
    pub fn in_flight(&self) -> usize {
        self.inner.admission.in_flight()
    }

    /// Callers waiting for an in-flight slot (or for their bucket's budget).
    pub fn queued(&self) -> usize {
        self.inner.admission.queued()
    }

    /// Keeps `100 - share` percent of every rate-limit bucket for revocations and grants.
    pub fn set_read_share(&self, share: u32) {
        self.inner.admission.set_read_share(share);
    }

    /// Requests admitted so far in `lane`, by rate-limit bucket (`users`, `groups`, `apps`, …),
    /// retries included. The sync takes it before and after a run for its Okta call counts.
    pub fn dispatched(&self, lane: Priority) -> std::collections::BTreeMap<String, u64> {
        self.inner.admission.dispatched(lane)
    }

    pub fn base_url(&self) -> &url::Url {
        &self.inner.base
    }
}

/// Help texts for the client's metrics (called once when the recorder is installed).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "jit_okta_requests_total",
        "Okta HTTP attempts by operation and outcome (ok, not_found, conflict, rate_limited, client_error, server_error, timeout, transport)"
    );
    metrics::describe_counter!(
        "jit_okta_rate_limited_total",
        "429 answers from Okta, by rate-limit bucket"
    );
    metrics::describe_counter!(
        "jit_okta_retries_total",
        "Okta calls retried, by operation and reason"
    );
    metrics::describe_gauge!(
        "jit_okta_in_flight",
        "Okta requests in flight from this replica"
    );
    metrics::describe_gauge!(
        "jit_okta_queue_depth",
        "Okta calls waiting for an in-flight slot or their bucket's budget"
    );
    metrics::describe_gauge!(
        "jit_okta_rate_limit_remaining",
        "X-Rate-Limit-Remaining last seen, by bucket"
    );
    metrics::describe_gauge!(
        "jit_okta_rate_limit_limit",
        "X-Rate-Limit-Limit last seen, by bucket"
    );
    metrics::describe_histogram!(
        "jit_okta_request_duration_seconds",
        "Okta HTTP attempt latency, by operation"
    );
    metrics::describe_counter!(
        "jit_okta_token_fetches_total",
        "OAuth access token fetches, by outcome"
    );
}
