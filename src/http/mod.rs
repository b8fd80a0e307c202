//! The HTTP surface: router, middleware and the shared application state.
//!
//! Why it exists: handlers are thin (parse, call the domain, map the result); everything that
//! applies to every request lives here once: request ids, tracing spans, body limit, timeout,
//! panic catching, metrics, JSON 404s.
//!
//! What it must never do: parse a webhook body before its signature is verified on the raw
//! bytes (I7), or log headers (they carry tokens and webhook secrets).

pub mod audit;
pub mod grants;
pub mod health;
pub mod outbox;
pub mod paging;
pub mod requests;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{HeaderName, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{Authenticator, HasAuthenticator};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::ApiError;
use crate::redis_conn::RedisConn;
use crate::store::Store;
use crate::tasks::Tasks;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything a handler may need. Cheap to clone: all fields are handles.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub redis: RedisConn,
    pub clock: Clock,
    pub auth: Arc<Authenticator>,
    pub metrics: PrometheusHandle,
    pub tasks: Tasks,
    pub policy: crate::policy::PolicyHandle,
    /// `None` when Okta is not configured: the grants API answers 503 `okta_not_configured`.
    pub grants: Option<crate::grants::GrantService>,
    /// `None` when Okta is not configured (no grants service to make grants through).
    pub requests: Option<crate::requests::RequestService>,
    /// The signed-callback integrations' keys (`/hooks/approvals`).
    pub callbacks: Arc<crate::callbacks::Verifier>,
    /// `None` when `[okta]` is not configured.
    pub okta: Option<crate::okta::OktaClient>,
    /// The expiry worker; `None` when there is no grants service to hand due grants to.
    pub scheduler: Option<crate::scheduler::Scheduler>,
    /// The web console; `None` when `[console]` is not configured.
    pub console: Option<crate::console::Console>,
    /// The Okta event hook intake (`/hooks/okta`).
    pub events: crate::events::Events,
    /// `None` unless `[slack]` and Okta are configured: the Slack hooks answer 404.
    pub slack: Option<crate::slack::Slack>,
}

impl HasAuthenticator for AppState {
    fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }
}

pub fn router(state: AppState) -> Router {
    let cfg = &state.config.server;
    let request_id = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                // Method and path only: headers carry credentials.
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID));

    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(audit::routes())
        .merge(grants::routes())
        .merge(requests::routes())
        .merge(crate::console::routes(&state))
        .merge(outbox::routes())
        .merge(crate::callbacks::routes())
        .merge(crate::events::http::routes())
        .merge(crate::inventory::routes())
        .merge(crate::sync::routes())
        .merge(crate::slack::routes())
        .merge(crate::reviews::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(record_metrics))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error; see the broker's log for this request id",
            )
            .into_response()
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.request_timeout,
        ))
        .layer(RequestBodyLimitLayer::new(cfg.body_limit_bytes))
        .layer(middleware::from_fn(json_errors))
        .layer(request_id)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// tower-http's body-limit and timeout layers answer with empty bodies; clients script against
/// `{code, message}`, so those two are rewritten here, once.
///
/// Both answers leave part of the request body unread, so the server closes the connection
/// after them. They say so (`Connection: close`): a client that pooled the connection would
/// otherwise send its next request on a socket the server is closing and see it cut off.
async fn json_errors(req: Request<Body>, next: Next) -> Response {
    let mut resp = json_error_body(next.run(req).await);
    if matches!(
        resp.status(),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    resp
}

fn json_error_body(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return resp;
    }
    match resp.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body exceeds the configured limit",
        )
        .into_response(),
        StatusCode::REQUEST_TIMEOUT => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "request took longer than the configured timeout",
        )
        .into_response(),
        _ => resp,
    }
}

async fn record_metrics(req: Request<Body>, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    // The matched route template, never the raw path: ids in paths would explode cardinality.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("jit_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("jit_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}
