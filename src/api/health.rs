//! Liveness, readiness and metrics endpoints.
//!
//! `/healthz` answers while the process runs: a failing dependency must not get the pod killed,
//! only taken out of rotation. `/readyz` checks each dependency with a short timeout and names
//! the failing one; it recovers by itself because every probe is fresh.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::ApiState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
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
    (status, Json(body))
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
