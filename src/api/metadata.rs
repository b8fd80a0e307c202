//! `GET /.well-known/oauth-protected-resource`: the broker as an OAuth protected resource
//! (RFC 9728), naming the Okta authorization server whose access tokens it accepts and the
//! scopes it knows.
//!
//! Why it exists: a client that knows only the broker's URL (`jit login --broker …`, an MCP
//! client) finds where to sign in from here, rather than being configured with the Okta issuer.
//!
//! What it must never do: answer when `[access_tokens]` is off (404: no Okta token is accepted),
//! or name anything secret (it is public by design).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::ApiState;
use crate::error::ApiError;

/// The document, built once at start.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceMetadata {
    /// The broker's own URL (`console.public_url`, else `http://` + the listen address).
    pub resource: String,
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub bearer_methods_supported: Vec<String>,
    pub resource_name: String,
}

impl ResourceMetadata {
    pub fn new(resource: &str, issuer: &str) -> Self {
        ResourceMetadata {
            resource: resource.trim_end_matches('/').to_string(),
            authorization_servers: vec![issuer.trim().trim_end_matches('/').to_string()],
            scopes_supported: [
                super::scopes::READ,
                super::scopes::REQUEST,
                super::scopes::APPROVE,
                super::scopes::ADMIN,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            bearer_methods_supported: vec!["header".into()],
            resource_name: "jit-broker".into(),
        }
    }
}

pub fn routes() -> Router<ApiState> {
    Router::new().route("/.well-known/oauth-protected-resource", get(show))
}

async fn show(State(state): State<ApiState>) -> Result<Json<Arc<ResourceMetadata>>, ApiError> {
    state
        .resource_metadata
        .clone()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Okta access tokens are not accepted here"))
}
