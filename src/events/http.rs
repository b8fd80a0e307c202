//! `GET|POST /hooks/okta` (Okta's verification challenge and deliveries) and the admin view of
//! the inbox (`GET /v1/events`, `POST /v1/events/{uuid}/retry`).
//!
//! Why it exists: the delivery handler is the broker's fastest path (Okta gives up after 3 s
//! and a busy org delivers in bursts): authenticate, parse, store, answer 204. Everything else
//! happens in the worker.
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
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::envelope::{self, OktaEvent};
use super::inbox::{self, NewEvent};
use super::reactions::{self, DEPARTURE_TYPES, LOCK_TYPE};
use super::worker::metric_type;
use super::Events;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::http::AppState;
use crate::policy::{Policy, ResourceKind};

const CHALLENGE_HEADER: &str = "x-okta-verification-challenge";
/// Okta's challenges are short tokens; anything longer is not one.
const MAX_CHALLENGE: usize = 512;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hooks/okta", get(verify).post(deliver))
        .route("/v1/events", get(list))
        .route("/v1/events/{uuid}/retry", post(retry))
}

/// The one-time verification: echo the challenge. It changes nothing, so it needs no secret
/// (whether Okta sends the auth header on it is unverified).
async fn verify(headers: HeaderMap) -> Result<Response, ApiError> {
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

impl Events {
    /// Whether `headers` carry one of the configured secrets. Every configured secret is
    /// compared (no early exit), over SHA-256 digests of equal length.
    pub fn authenticated(&self, headers: &HeaderMap) -> bool {
        let Some(v) = headers.get(self.inner.config.auth_header.as_str()) else {
            return false;
        };
        let got: [u8; 32] = Sha256::digest(v.as_bytes()).into();
        let mut ok = subtle::Choice::from(0);
        for h in &self.inner.secret_hashes {
            ok |= h.ct_eq(&got);
        }
        bool::from(ok)
    }

    /// Whether an event is about something the broker manages or reacts to (else it is only
    /// counted and remembered for deduplication).
    fn relevant(&self, policy: &Policy, ev: &OktaEvent) -> bool {
        let t = ev.event_type.as_str();
        let has = |kind: ResourceKind, id: Option<&str>| {
            policy
                .resources
                .iter()
                .any(|r| r.kind == kind && id.is_none_or(|i| r.okta_id == i))
        };
        let target = |k: &str| ev.target(k).map(|p| p.id.as_str());
        match t {
            _ if DEPARTURE_TYPES.contains(&t) => true,
            LOCK_TYPE => self.inner.config.revoke_on_lock,
            reactions::GROUP_ADD | reactions::GROUP_REMOVE => {
                // No group target: kept, so the worker dead-letters it visibly.
                target("UserGroup").is_none_or(|g| has(ResourceKind::OktaGroup, Some(g)))
            }
            reactions::APP_ADD | reactions::APP_REMOVE => {
                target("AppInstance").is_none_or(|a| has(ResourceKind::OktaApp, Some(a)))
            }
            reactions::ROLE_GRANT | reactions::ROLE_REVOKE => has(ResourceKind::OktaRole, None),
            _ => false,
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn deliver(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let started = Instant::now();
    let events = &state.events;
    if !events.authenticated(&headers) {
        metrics::counter!("jit_events_rejected_total", "reason" => "unauthenticated").increment(1);
        return Err(unauthorized());
    }
    if !is_json(&headers) {
        metrics::counter!("jit_events_rejected_total", "reason" => "content_type").increment(1);
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "event hook deliveries are application/json",
        ));
    }
    let delivery = envelope::parse(&body).map_err(|e| {
        metrics::counter!("jit_events_rejected_total", "reason" => "malformed").increment(1);
        ApiError::bad_request("invalid_delivery", e.to_string())
    })?;
    if delivery.unusable > 0 {
        metrics::counter!("jit_events_unusable_total").increment(delivery.unusable as u64);
    }
    let policy = events.inner.policy.current();
    let now = events.clock().now_ms();
    let mut rows = Vec::with_capacity(delivery.events.len());
    for (ev, raw) in &delivery.events {
        let relevant = events.relevant(&policy, ev);
        rows.push(NewEvent {
            uuid: ev.uuid.clone(),
            event_type: ev.event_type.chars().take(200).collect(),
            published: ev.published_ms.unwrap_or(now),
            // Events without a user are ordered on their own.
            user_key: ev
                .user()
                .map_or_else(|| format!("event:{}", ev.uuid), |u| u.id.clone()),
            body: relevant.then(|| raw.to_string()),
        });
    }
    // What the metrics need, kept before the rows move into the store: per event its type
    // label and whether it was kept with its body.
    let kept: Vec<(String, &'static str, bool)> = rows
        .iter()
        .map(|r| (r.uuid.clone(), metric_type(&r.event_type), r.body.is_some()))
        .collect();
    let mut stored = events.inner.intake.store(rows).await?;
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
        } else {
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
        events.inner.wake.notify_one();
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
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_any(&[Role::Admin, Role::Auditor])?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = crate::http::paging::limit(p.limit, 100, 500)?;
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

async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(uuid): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_any(&[Role::Admin])?;
    if uuid.is_empty() || uuid.len() > 128 {
        return Err(ApiError::not_found(format!("no dead event `{uuid}`")));
    }
    if inbox::retry_dead(&state.store, &state.clock, &uuid, &caller.name).await? {
        state.events.inner.wake.notify_one();
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::not_found(format!("no dead event `{uuid}`")))
    }
}
