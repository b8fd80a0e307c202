//! Liveness, readiness and metrics endpoints.
//!
//! `/healthz` answers while the process runs: a failing dependency must not get the pod killed,
//! only taken out of rotation. `/readyz` checks each dependency with a short timeout; it recovers
//! by itself because every probe is fresh.
//!
//! What it must never do: tell an anonymous caller more than ready or not. The details (which
//! dependency fails and its error, the broker's Okta principal and capabilities, the Okta queue)
//! help an attacker map the deployment, so they are shown only to a token `authz` lets see them
//! (`Verb::ReadHealth`: admin or auditor). `/metrics` can be moved off the public listener
//! (`server.metrics_listen`, see `app`).

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::auth::{caller_of, AuthError};
use super::ApiState;
use crate::authz::Verb;
use crate::error::ApiError;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready (200) or not (503). Anonymous: `{"status": …}` only. With a token allowed to
/// [`Verb::ReadHealth`]: every check and the Okta client's state. A token that is invalid (401)
/// or not allowed (403) gets the error, so that a misconfigured monitor is noticed.
pub async fn readyz(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let details = match caller_of(&headers, &state.auth) {
        Err(AuthError::Missing) => false,
        Err(e) => return ApiError::from(e).into_response(),
        Ok(c) => match crate::authz::require(Verb::ReadHealth, &c.actor()) {
            Ok(()) => true,
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    let (status, body) = probe(&state).await;
    if details {
        (status, Json(body)).into_response()
    } else {
        (status, Json(json!({ "status": body["status"] }))).into_response()
    }
}

async fn probe(state: &ApiState) -> (StatusCode, serde_json::Value) {
    let (sql, redis) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, state.store.ping()),
        tokio::time::timeout(PROBE_TIMEOUT, state.redis.ping()),
    );
    let sql = describe(
        sql.map_err(|_| "timed out".to_string())
            .and_then(|r| r.map_err(|e| crate::error::chain(&e))),
    );
    let redis = describe(
        redis
            .map_err(|_| "timed out".to_string())
            .and_then(|r| r.map_err(|e| crate::error::chain(&e))),
    );
    let mut failing = Vec::new();
    if sql != "ok" {
        failing.push("sql");
    }
    if redis != "ok" {
        failing.push("redis");
    }
    let shutting_down = state.tasks.is_shutting_down();
    let mut body = json!({
        "status": if failing.is_empty() && !shutting_down { "ready" } else { "unavailable" },
        "failing": failing,
        "checks": { "sql": sql, "redis": redis },
        "shutting_down": shutting_down,
    });
    // Okta is reported, not required: an Okta outage must not take every replica out of
    // rotation (requests, audit and approvals still work; revocations retry on their own).
    if let Some(okta) = &state.okta {
        body["okta"] = json!({
            "capabilities": okta.capabilities(),
            "probe_error": okta.probe_error(),
            "in_flight": okta.in_flight(),
            "queued": okta.queued(),
        });
    } else {
        body["okta"] = json!("not configured");
    }
    let ready = failing.is_empty() && !shutting_down;
    // The last probe's answer, for the readiness-flapping alert (the kubelet probes every few
    // seconds; Prometheus sees the value at each scrape).
    metrics::gauge!("jit_ready").set(if ready { 1.0 } else { 0.0 });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

fn describe(r: Result<(), String>) -> String {
    match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    }
}

pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
