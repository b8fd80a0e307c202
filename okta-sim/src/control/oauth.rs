//! `/_sim/oauth2/…`: test knobs of the custom authorization servers.
//!
//! Why it exists: resource-server tests need tokens a real Okta would never hand out on request
//! (expired, another audience, an unknown `kid`, `alg: none`, HS256 keyed with the public key),
//! key rotations at a moment of their choosing, and device codes approved without a browser.
//!
//! What it must never do: be reachable anywhere but a test harness (the whole control API is
//! unauthenticated, like the rest of `/_sim/`).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::authz::{DeviceDecision, MintSpec};
use crate::error::OktaError;
use crate::http_util::ok_json;
use crate::sim::Sim;

type R = Result<axum::response::Response, OktaError>;

pub fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/oauth2/tokens", post(mint))
        .route("/oauth2/device", post(decide))
        .route("/oauth2/keys/rotate", post(rotate))
}

/// `MintSpec` as JSON → `{"access_token": …}`.
async fn mint(State(sim): State<Arc<Sim>>, Json(spec): Json<MintSpec>) -> R {
    let token = sim
        .mint_access_token(&spec)
        .map_err(|e| OktaError::validation("mint").with_cause(e))?;
    Ok(ok_json(&json!({ "access_token": token })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decide {
    user_code: String,
    login: String,
    decision: DeviceDecision,
}

/// `{"user_code", "login", "decision": "approve"|"deny"}`: what the person does on `/activate`.
async fn decide(State(sim): State<Arc<Sim>>, Json(d): Json<Decide>) -> R {
    let st = sim
        .authz
        .as_ref()
        .ok_or_else(|| OktaError::not_found("authorization server", "AuthorizationServer"))?;
    st.decide_device(&sim, &d.user_code, &d.login, d.decision)
        .map_err(|e| OktaError::validation("device").with_cause(e))?;
    Ok(ok_json(
        &json!({ "user_code": d.user_code, "decision": d.decision }),
    ))
}

/// Rotates the signing key → `{"kid": <new active kid>}`.
async fn rotate(State(sim): State<Arc<Sim>>) -> R {
    let st = sim
        .authz
        .as_ref()
        .ok_or_else(|| OktaError::not_found("authorization server", "AuthorizationServer"))?;
    Ok(ok_json(&json!({ "kid": st.rotate() })))
}
