//! The web console: Okta sign-in, server-side sessions, and pages over the domain services.
//!
//! Why it exists: auditors, managers and most admins do not live in Slack; approvers of the most
//! sensitive resources must prove who they are when they approve (step-up: a fresh Okta
//! sign-in, `max_age`). Pages are server-rendered from compile-time checked templates and work
//! without JavaScript; a small script only shows times in the viewer's zone.
//!
//! What it must never do: decide anything itself. Requests, decisions, extensions and revokes go
//! through [`crate::requests::RequestService`] and [`crate::grants::GrantService`] with an
//! [`crate::authz::Actor`] built from the session (console channel, Okta `auth_time`, admin
//! and auditor from `console.admin_groups` and `console.auditor_groups`), and pages that need
//! no object ask [`crate::authz::require`]. It must never render a token, a secret or a cookie,
//! answer a state-changing form without its CSRF token, or allow inline script (strict CSP).

mod admin;
mod approvals;
mod auth;
mod config;
pub mod error;
mod oidc;
mod outbox;
mod pages;
mod pending;
mod reviews;
mod session;
mod sync;
mod views;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use config::ConsoleConfig;
pub use error::ConsoleError;

use crate::audit::VerifyReport;
use crate::clock::Clock;
use crate::requests::RequestService;
use crate::store::Store;
use crate::tasks::Tasks;

/// How often sessions past their timeouts are deleted, and the audit chain re-verified.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const VERIFY_EVERY: Duration = Duration::from_secs(600);

/// The console's running state; cheap to clone.
#[derive(Clone)]
pub struct Console {
    oidc: oidc::Oidc,
    /// Seals the sign-ins in progress into the browser that started them.
    pending: pending::Sealer,
    cfg: Arc<ConsoleConfig>,
    secure_cookie: bool,
    /// The issuer's origin, allowed as a form target in the CSP (a step-up decision's POST is
    /// answered with a redirect to Okta, which `form-action` also governs).
    csp: HeaderValue,
    /// The last verification of the audit chain: when, and its report.
    verified: Arc<Mutex<Option<(i64, VerifyReport)>>>,
}

/// Whether the console's cookies are `Secure`: when browsers reach it over https
/// (`console.public_url`'s scheme; without one the console is at `http://{listen}`).
pub fn secure_cookie(base_url: &str) -> bool {
    url::Url::parse(base_url).is_ok_and(|u| u.scheme() == "https")
}

/// Builds the console when `[console]` is configured, and starts its tasks (session sweep,
/// periodic audit verification). `addr` is the bound address: the default redirect URI when
/// `console.public_url` is unset. Cookies are `Secure` when that URL is https.
pub fn start(
    config: &ConsoleConfig,
    addr: SocketAddr,
    clock: Clock,
    store: Store,
    tasks: &Tasks,
) -> Result<Option<Console>, ConsoleError> {
    let cfg = Arc::new(config.clone());
    if !cfg.is_configured() {
        return Ok(None);
    }
    let base = if cfg.public_url.is_empty() {
        format!("http://{addr}")
    } else {
        cfg.public_url.trim_end_matches('/').to_string()
    };
    let oidc = oidc::Oidc::new(cfg.clone(), format!("{base}/auth/callback"), clock.clone())?;
    let issuer_origin = url::Url::parse(&cfg.issuer)
        .map(|u| u.origin().ascii_serialization())
        .map_err(|_| ConsoleError::InvalidInput("console.issuer is not a URL".into()))?;
    let csp = HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self' {issuer_origin}; frame-ancestors 'none'; \
         base-uri 'none'"
    ))
    .map_err(|_| ConsoleError::InvalidInput("console.issuer is not a URL".into()))?;
    let secret = cfg
        .client_secret
        .as_ref()
        .ok_or_else(|| ConsoleError::InvalidInput("console.client_secret is required".into()))?;
    let console = Console {
        pending: pending::Sealer::new(secret)?,
        oidc,
        cfg: cfg.clone(),
        // The scheme browsers reach the console by, not the socket it listens on: behind a TLS
        // proxy the broker listens on plain HTTP (even on loopback) while browsers use https.
        secure_cookie: secure_cookie(&base),
        csp,
        verified: Arc::new(Mutex::new(None)),
    };
    let cancel = tasks.cancel_token();
    let (sweep_store, sweep_clock, sweep_cfg) = (store.clone(), clock.clone(), cfg.clone());
    tasks.spawn("console.session-sweep", async move {
        loop {
            match session::sweep(&sweep_store, sweep_clock.now_ms(), &sweep_cfg).await {
                Ok(n) if n > 0 => tracing::debug!(removed = n, "console sessions swept"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "console session sweep failed"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
            }
        }
    });
    let cancel = tasks.cancel_token();
    let me = console.clone();
    tasks.spawn("console.audit-verify", async move {
        loop {
            me.verify_now(&store, &clock).await;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(VERIFY_EVERY) => {}
            }
        }
    });
    Ok(Some(console))
}

impl Console {
    /// Recomputes the audit chain and keeps the report for the audit page.
    async fn verify_now(&self, store: &Store, clock: &Clock) {
        match crate::audit::verify(store).await {
            Ok(r) => {
                if let Ok(mut v) = self.verified.lock() {
                    *v = Some((clock.now_ms(), r));
                }
            }
            Err(e) => tracing::warn!(error = %e, "console audit verification failed"),
        }
    }

    fn last_verified(&self) -> Option<(i64, VerifyReport)> {
        self.verified.lock().ok().and_then(|v| v.clone())
    }
}

/// What the console's pages need. Cheap to clone: all fields are handles.
#[derive(Clone)]
pub struct ConsoleState {
    pub config: Arc<ConsoleConfig>,
    pub store: Store,
    pub clock: Clock,
    /// `None` when Okta is not configured (no requests service to ask through).
    pub requests: Option<RequestService>,
    /// `None` when Okta is not configured; reviews are decided through it.
    pub grants: Option<crate::grants::GrantService>,
    /// `None` when `[console]` is not configured: its pages then say so.
    pub console: Option<Console>,
}

/// Every console route. The API keeps `/v1`, `/hooks`, `/healthz`, `/readyz`, `/metrics`.
pub fn routes(state: &ConsoleState) -> Router<ConsoleState> {
    Router::new()
        .route("/", get(auth::home))
        .route("/login", get(auth::login))
        .route("/auth/callback", get(auth::callback))
        .route("/logout", post(auth::logout))
        .route("/access", get(pages::access))
        .route("/access/grants/{id}/extend", post(pages::extend))
        .route("/access/grants/{id}/revoke", post(pages::revoke))
        .route("/access/requests/{id}/cancel", post(pages::cancel))
        .route(
            "/request",
            get(pages::request_form).post(pages::request_submit),
        )
        .route("/approvals", get(approvals::inbox))
        .route("/approvals/{id}", get(approvals::detail))
        // Slack's "Approve in console" button links here.
        .route("/requests/{id}", get(approvals::link))
        .route("/approvals/{id}/decide", post(approvals::decide))
        // Slack's review DMs link to `/reviews/{id}`.
        .route("/reviews", get(reviews::list))
        .route("/reviews/{id}", get(reviews::campaign))
        .route("/reviews/{id}/items/{item}/decide", post(reviews::decide))
        .route(
            "/reviews/{id}/items/{item}/delegate",
            post(reviews::delegate),
        )
        .route("/admin/grants", get(admin::grants))
        .route("/admin/failed", get(admin::failed))
        .route("/admin/grants/{id}/retry", post(admin::retry))
        .route("/admin/audit", get(admin::audit))
        .route("/admin/audit/verify", post(admin::verify))
        .route("/admin/audit/export", get(admin::export))
        .route("/admin/outbox", get(outbox::dead))
        .route("/admin/outbox/{id}/retry", post(outbox::retry))
        .route("/admin/events", get(outbox::events_dead))
        .route("/admin/sync", get(sync::runs))
        .route("/admin/sync/{id}", get(sync::run))
        .route("/admin/events/{uuid}/retry", post(outbox::events_retry))
        .route("/static/console.css", get(css))
        .route("/static/console.js", get(js))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            pages::with_navigation,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("static/console.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("static/console.js"),
    )
        .into_response()
}

/// Headers on every console answer: strict CSP (no inline script or style), no framing, no
/// sniffing, no referrer (URLs may carry ids), and no caching of pages.
async fn security_headers(
    axum::extract::State(state): axum::extract::State<ConsoleState>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let csp = state.console.as_ref().map(|c| c.csp.clone());
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let csp = csp.unwrap_or(HeaderValue::from_static(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ));
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
