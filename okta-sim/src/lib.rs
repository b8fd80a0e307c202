//! okta-sim: a stateful Okta management API simulator for tests, demos and benches.
//!
//! Why it exists: the broker is tested against Okta over real HTTP without an Okta org. The
//! simulator keeps an org in memory (seeded, or generated for large orgs), serves Okta's paths,
//! status codes, bodies and headers, enforces SSWS/OAuth permissions and rate limits, injects
//! faults, and delivers event hooks for every change. A control API under `/_sim/` makes
//! out-of-band changes and exposes counters and state.
//!
//! What it must never do: pretend to be Okta where Okta's behaviour is unknown without saying
//! so (such choices are marked "unverified" in comments and the README), or leave tasks running
//! after `shutdown`.

pub mod auth;
pub mod authz;
pub mod config;
pub mod control;
pub mod error;
pub mod faults;
pub mod filter;
pub mod hooks;
pub mod http_util;
pub mod ids;
mod middleware;
pub mod oauth;
pub mod oidc;
pub mod pagination;
pub mod ratelimit;
pub mod routes;
pub mod seed;
pub mod sim;
pub mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{
    default_tokens, HookConfig, OAuthConfig, PermissionLevel, SimConfig, SimToken,
    GROUP_APP_ADMIN_TOKEN, READ_ONLY_TOKEN, SUPER_ADMIN_TOKEN,
};
pub use error::{OktaError, SimError};
pub use faults::{FaultConfig, FaultSpec};
pub use ratelimit::RateLimitConfig;
pub use seed::{default_seed, generate, Seed};

use sim::Sim;

/// A running simulator. Dropping it without `shutdown` leaves the server running until the
/// runtime stops; call `shutdown` to stop it and its delivery tasks. Clones share the same
/// simulator (shutting one down stops it for all).
#[derive(Clone)]
pub struct SimHandle {
    sim: Arc<Sim>,
    addr: SocketAddr,
}

/// Starts a simulator on `127.0.0.1:0`.
pub async fn spawn(config: SimConfig) -> Result<SimHandle, SimError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(SimError::Bind)?;
    spawn_on(config, listener).await
}

/// Starts a simulator on an already bound listener (the binary uses this).
pub async fn spawn_on(config: SimConfig, listener: TcpListener) -> Result<SimHandle, SimError> {
    let addr = listener.local_addr().map_err(SimError::Bind)?;
    let base_url = format!("http://{addr}");
    let org = state::Org::from_seed(&config.seed, config.rng_seed)?;
    let oauth = config
        .oauth
        .clone()
        .map(oauth::OAuthState::new)
        .transpose()?;
    let oidc = oidc::OidcState::new(config.oidc_clients.clone()).map_err(SimError::OAuthKey)?;
    let authz = authz::AuthzState::new(config.auth_servers.clone()).map_err(SimError::OAuthKey)?;
    let tokens: HashMap<String, SimToken> = config
        .tokens
        .iter()
        .map(|t| (t.token.clone(), t.clone()))
        .collect();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let sim = Arc::new(Sim {
        org: std::sync::Mutex::new(org),
        base_url: base_url.clone(),
        tokens,
        oauth,
        oidc: Some(oidc),
        authz: Some(authz),
        limiter: ratelimit::RateLimiter::new(config.rate_limits.clone()),
        faults: faults::Faults::new(config.faults.clone(), config.rng_seed, ids::now_ms()),
        counters: sim::Counters::default(),
        hooks: Arc::new(hooks::HookHub::new(
            config.hooks.clone(),
            &base_url,
            config.rng_seed,
        )),
        inflight: AtomicU32::new(0),
        cancel: cancel.clone(),
        tracker: tracker.clone(),
        strict_duplicate_app_assign: config.strict_duplicate_app_assign,
        require_content_length: config.require_content_length,
    });
    sim.hooks.start(&tracker, cancel.clone());
    let app = build_router(sim.clone());
    let shutdown = cancel.clone();
    tracker.spawn(async move {
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "okta-sim server stopped with an error");
        }
    });
    Ok(SimHandle { sim, addr })
}

fn build_router(sim: Arc<Sim>) -> Router {
    let api = routes::router()
        .route("/oauth2/v1/token", post(oauth::token))
        .route_layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            middleware::pipeline,
        ));
    Router::new()
        .merge(api)
        .merge(oidc::router())
        .merge(authz::router())
        .nest("/_sim", control::router())
        .fallback(|| async { OktaError::not_found("resource", "Route") })
        .method_not_allowed_fallback(|| async {
            OktaError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "E0000022",
                "The endpoint does not support the provided HTTP method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            middleware::common_headers,
        ))
        .with_state(sim)
}

impl SimHandle {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.sim.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_member(&self, group_id: &str, user_id: &str) -> bool {
        self.sim.org().is_member(group_id, user_id)
    }

    /// `Some("USER")` or `Some("GROUP")` when the user holds the app, else `None`.
    pub fn app_assignment_scope(&self, app_id: &str, user_id: &str) -> Option<String> {
        self.sim
            .org()
            .assignment(app_id, user_id)
            .map(|a| a.scope().to_string())
    }

    /// `(assignment id, role type)` of each admin role the user holds.
    pub fn user_roles(&self, user_id: &str) -> Vec<(String, String)> {
        self.sim
            .org()
            .roles
            .get(user_id)
            .map(|rs| rs.iter().map(|r| (r.id.clone(), r.kind.clone())).collect())
            .unwrap_or_default()
    }

    /// Requests received on a management route, whatever the answer (including 429s and
    /// injected faults), e.g. `("DELETE", "/api/v1/groups/{groupId}/users/{userId}")`.
    pub fn counter(&self, method: &str, route_template: &str) -> u64 {
        self.sim.counters.requests_for(method, route_template)
    }

    /// Requests counted against a rate-limit bucket (`groups`, `group_by_id`, `apps`,
    /// `users`, `other`).
    pub fn bucket_counter(&self, bucket: &str) -> u64 {
        self.sim.counters.bucket_count(bucket)
    }

    /// Successful (2xx) non-GET requests on a management route.
    pub fn mutation_count(&self, method: &str, route_template: &str) -> u64 {
        self.sim.counters.mutations_for(method, route_template)
    }

    /// A user's status (`ACTIVE`, `SUSPENDED`, `DEPROVISIONED`, …), `None` once deleted.
    pub fn user_status(&self, user_id: &str) -> Option<String> {
        self.sim.org().users.get(user_id).map(|u| u.status.clone())
    }

    /// How many times the user's sessions were cleared.
    pub fn sessions_cleared(&self, user_id: &str) -> u64 {
        self.sim
            .org()
            .sessions_cleared
            .get(user_id)
            .copied()
            .unwrap_or(0)
    }

    /// `lastMembershipUpdated` of a group in Unix ms.
    pub fn last_membership_updated(&self, group_id: &str) -> Option<i64> {
        self.sim
            .org()
            .groups
            .get(group_id)
            .map(|g| g.last_membership_updated)
    }

    pub fn set_faults(&self, f: FaultConfig) {
        self.sim.faults.set(f, ids::now_ms());
    }

    pub fn set_rate_limits(&self, r: RateLimitConfig) {
        self.sim.limiter.set(r);
    }

    /// Every event produced so far, as System Log LogEvents (oldest first).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.sim.hooks.event_log()
    }

    /// Out-of-band changes, as a named admin would make them in the Admin Console.
    pub fn admin(&self, actor_login: &str) -> control::Admin {
        control::Admin::new(self.sim.clone(), actor_login)
    }

    /// Registers an event hook (unverified until `verify_hook` succeeds).
    pub fn register_hook(&self, url: &str, auth_header: &str, auth_value: &str) -> String {
        self.sim.hooks.register(url, auth_header, auth_value).id
    }

    /// Runs Okta's one-time verification GET against the hook.
    pub async fn verify_hook(&self, hook_id: &str) -> Result<(), String> {
        self.sim.hooks.verify(hook_id).await
    }

    pub fn hook_deliveries(&self) -> Vec<hooks::Delivery> {
        self.sim.hooks.deliveries()
    }

    /// Spoils the next ID token the OIDC token endpoint issues (tests of relying parties).
    pub fn oidc_tamper_next(&self, t: oidc::Tamper) {
        if let Some(o) = &self.sim.oidc {
            o.tamper_next(t);
        }
    }

    /// Moves every OIDC sign-in `by` into the past, as if people had signed in that much
    /// earlier (for `max_age` and step-up tests).
    pub fn oidc_age_sessions(&self, by: std::time::Duration) {
        if let Some(o) = &self.sim.oidc {
            o.age_sessions(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
        }
    }

    /// The issuer of a custom authorization server (`{base}/oauth2/{id}`).
    pub fn auth_server_issuer(&self, server_id: &str) -> String {
        format!("{}/oauth2/{server_id}", self.sim.base_url)
    }

    /// Mints an access token with chosen claims, expiry, `kid` or forgery (see `MintSpec`).
    pub fn mint_access_token(&self, spec: &authz::MintSpec) -> Result<String, String> {
        self.sim.mint_access_token(spec)
    }

    /// Rotates the authorization servers' signing key; returns the new `kid`.
    pub fn rotate_signing_key(&self) -> String {
        self.sim
            .authz
            .as_ref()
            .map(|a| a.rotate().to_string())
            .unwrap_or_default()
    }

    /// How many times the authorization servers' JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.sim.authz.as_ref().map_or(0, |a| a.jwks_served())
    }

    /// The public PEM of the key that signs access tokens now.
    pub fn signing_public_pem(&self) -> String {
        self.sim
            .authz
            .as_ref()
            .map(|a| a.active_public_pem().to_string())
            .unwrap_or_default()
    }

    /// Approves or denies a pending device code as the user with `login`, as the person would
    /// on the verification page.
    pub fn decide_device(
        &self,
        user_code: &str,
        login: &str,
        decision: authz::DeviceDecision,
    ) -> Result<(), String> {
        let st = self.sim.authz.as_ref().ok_or("no authorization server")?;
        st.decide_device(&self.sim, user_code, login, decision)
    }

    /// Stops the server, hung requests and hook deliveries, and waits for them.
    pub async fn shutdown(self) {
        self.sim.cancel.cancel();
        self.sim.tracker.close();
        self.sim.tracker.wait().await;
    }
}
