//! The HTTP surface as one router: each channel's routes with its own state, under the
//! middleware every request gets once.
//!
//! What it must never do: log headers (they carry tokens and webhook secrets), or let a
//! channel's routes see another channel's state.

use std::time::Instant;

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{HeaderName, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::{api, callbacks, console, slack};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Each channel's state: the app builds them, each channel sees only its own.
#[derive(Clone)]
pub struct Channels {
    pub api: api::ApiState,
    pub console: console::ConsoleState,
    pub callbacks: callbacks::CallbacksState,
    pub slack: slack::SlackState,
}

/// The whole HTTP surface: every channel's routes, each with its own state, under the
/// middleware they share (request ids, tracing spans, body limit, timeout, panic catching,
/// metrics, JSON errors).
pub fn router(server: &ServerConfig, channels: Channels) -> Router {
    let cfg = server;
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
        .merge(api::routes(channels.api, cfg.metrics_listen.is_some()))
        .merge(console::routes(&channels.console).with_state(channels.console))
        .merge(callbacks::routes().with_state(channels.callbacks))
        .merge(slack::routes().with_state(channels.slack))
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
