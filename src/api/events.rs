//! `GET|POST /hooks/okta` (Okta's verification challenge and deliveries) and the admin view of
//! the inbox (`GET /v1/events`, `POST /v1/events/{uuid}/retry`) and of refused hook requests
//! (`GET /v1/events/refusals`).
//!
//! Why it exists: the delivery handler is the broker's fastest path (Okta gives up after 3 s
//! and a busy org delivers in bursts): authenticate, parse, store, answer 204. Everything else
//! happens in the worker.
//!
//! Every refused hook request (verification or delivery) is counted and logged with its reason
//! by [`crate::events::refusals`].
//!
//! What it must never do: parse or store anything before the secret matched (compared in
//! constant time on the raw header, never logged), say which part of the authentication
//! failed, answer 2xx before the events are durable, or keep the body of an event about
//! nothing the broker manages.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::Caller;
use super::ApiState;
use crate::authz::Verb;
use crate::error::ApiError;
use crate::events::envelope;
use crate::events::inbox::{self, NewEvent};
use crate::events::refusals::{self, Refusal};
use crate::events::worker::metric_type;

const CHALLENGE_HEADER: &str = "x-okta-verification-challenge";
/// Okta's challenges are short tokens; anything longer is not one.
const MAX_CHALLENGE: usize = 512;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/hooks/okta", get(verify).post(deliver))
        .route("/v1/events", get(list))
        .route("/v1/events/refusals", get(refused))
        .route("/v1/events/{uuid}/retry", post(retry))
}

/// The one-time verification: echo the challenge, only to a request that carries the secret.
/// Okta sends the hook's auth header (and custom headers) on its verification request too, so
/// a broker that would refuse every delivery (no `events.secret`, or another one than the hook
/// was registered with) fails the verification instead of letting Okta report `VERIFIED`.
async fn verify(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Err(r) = state.events.authenticate(&headers) {
        state.events.refusals().record("verification", r);
        return Err(unauthorized());
    }
    let challenge = headers
        .get(CHALLENGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_CHALLENGE)
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_challenge",
                "expected the x-okta-verification-challenge header",
            )
        })?;
    Ok(Json(serde_json::json!({ "verification": challenge })).into_response())
}

fn unauthorized() -> ApiError {
    // One answer for a missing header, a wrong secret and no secret configured.
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the event hook delivery is not authenticated",
    )
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn deliver(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let started = Instant::now();
    let events = &state.events;
    if let Err(r) = events.authenticate(&headers) {
        events.refusals().record("delivery", r);
        return Err(unauthorized());
    }
    if !is_json(&headers) {
        events.refusals().record("delivery", Refusal::ContentType);
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "event hook deliveries are application/json",
        ));
    }
    let delivery = envelope::parse(&body).map_err(|e| {
        events.refusals().record("delivery", Refusal::Malformed);
        ApiError::bad_request("invalid_delivery", e.to_string())
    })?;
    if delivery.events.is_empty() && delivery.unusable == 0 {
        // Nothing to store: `okta event-hook register`'s test delivery, which only asks
        // whether the broker accepts the secret.
        return Ok(StatusCode::NO_CONTENT);
    }
    if delivery.unusable > 0 {
        metrics::counter!("jit_events_unusable_total").increment(delivery.unusable as u64);
    }
    let policy = events.policy().current();
    let now = events.clock().now_ms();
    let mut rows = Vec::with_capacity(delivery.events.len());
    let mut stale_seen: Vec<(String, &'static str)> = Vec::new();
    for (ev, raw) in &delivery.events {
        let relevant = events.relevant(&policy, ev);
        // Outside the freshness window: stored for admins to see, never acted on.
        let stale = relevant.then(|| events.stale(ev, now)).flatten();
        if let Some(s) = stale {
            stale_seen.push((ev.uuid.clone(), s.reason()));
        }
        rows.push(NewEvent {
            uuid: ev.uuid.clone(),
            event_type: ev.event_type.chars().take(200).collect(),
            published: ev.published_ms.unwrap_or(now),
            // Events without a user are ordered on their own.
            user_key: ev
                .user()
                .map_or_else(|| format!("event:{}", ev.uuid), |u| u.id.clone()),
            body: relevant.then(|| raw.to_string()),
            stale: stale.map(|s| s.as_str().to_string()),
        });
    }
    // What the metrics need, kept before the rows move into the store: per event its type
    // label and whether it was kept with its body.
    let kept: Vec<(String, &'static str, bool)> = rows
        .iter()
        .map(|r| (r.uuid.clone(), metric_type(&r.event_type), r.body.is_some()))
        .collect();
    let mut stored = events.intake().store(rows).await?;
    // Counted once, when first stored (a redelivery of a stale event is a duplicate).
    for (uuid, reason) in &stale_seen {
        if stored.inserted.contains(uuid) {
            metrics::counter!("jit_events_stale_total", "reason" => *reason).increment(1);
            tracing::warn!(event = %uuid, reason = *reason,
                "Okta event outside the freshness window: stored as stale, not acted on");
        }
    }
    // Counted per type, once per delivery: a 50-event delivery is 50 events of a few types.
    let mut counts: std::collections::HashMap<&'static str, [u64; 3]> = Default::default();
    let mut woke = false;
    for (uuid, ty, has_body) in &kept {
        let c = counts.entry(ty).or_default();
        c[0] += 1;
        // `remove`: a uuid twice in one delivery is new once, then a duplicate.
        if !stored.inserted.remove(uuid) {
            c[1] += 1;
        } else if !has_body {
            c[2] += 1;
        } else if !stale_seen.iter().any(|(u, _)| u == uuid) {
            woke = true;
        }
    }
    for (ty, [received, dups, dropped]) in counts {
        metrics::counter!("jit_events_received_total", "type" => ty).increment(received);
        if dups > 0 {
            metrics::counter!("jit_events_duplicates_total", "type" => ty).increment(dups);
        }
        if dropped > 0 {
            metrics::counter!("jit_events_dropped_total", "type" => ty).increment(dropped);
        }
    }
    if woke {
        events.wake_worker();
    }
    metrics::histogram!("jit_events_intake_seconds").record(started.elapsed().as_secs_f64());
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    state: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    crate::authz::require(Verb::SeeDeadLetters, &caller.actor())?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = super::paging::limit(p.limit, 100, 500)?;
    if let Some(s) = p.state.as_deref() {
        if !inbox::STATES.contains(&s) {
            return Err(ApiError::bad_request(
                "invalid_state",
                format!(
                    "unknown event state `{s}`; one of {}",
                    inbox::STATES.join(", ")
                ),
            ));
        }
    }
    let rows = inbox::list(&state.store, p.state.as_deref(), limit).await?;
    Ok(Json(serde_json::json!({ "events": rows })))
}

/// The hook requests the broker refused, per reason (all replicas; written once a second).
async fn refused(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    crate::authz::require(Verb::SeeDeadLetters, &caller.actor())?;
    let rows = refusals::list(&state.store).await?;
    Ok(Json(serde_json::json!({ "refusals": rows })))
}

async fn retry(
    State(state): State<ApiState>,
    caller: Caller,
    Path(uuid): Path<String>,
) -> Result<StatusCode, ApiError> {
    crate::authz::require(Verb::RetryDeadLetter, &caller.actor())?;
    if uuid.is_empty() || uuid.len() > 128 {
        return Err(ApiError::not_found(format!(
            "no dead or stale event `{uuid}`"
        )));
    }
    if inbox::retry_dead(&state.store, &state.clock, &uuid, &caller.name).await? {
        state.events.wake_worker();
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::not_found(format!(
            "no dead or stale event `{uuid}`"
        )))
    }
}
