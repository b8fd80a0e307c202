//! `POST /oauth2/v1/token`: OAuth 2.0 client credentials with `private_key_jwt`.
//!
//! Why it exists: production deployments should use a service app with a private key instead
//! of an SSWS token. The simulator verifies the client assertion the way Okta does — RS256
//! signature against the configured public key, `iss` = `sub` = client id, `aud` = the token
//! endpoint URL, `exp` in the future, `jti` never reused — and issues opaque access tokens
//! limited to the requested scopes, valid for `expires_in` seconds.
//!
//! What it must never do: accept an unsigned or HS256 assertion, issue scopes the app was not
//! granted, or log assertions and tokens.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;

use crate::config::{OAuthConfig, PermissionLevel};
use crate::error::SimError;
use crate::http_util::json_response;
use crate::sim::Sim;

pub struct OAuthState {
    cfg: OAuthConfig,
    key: DecodingKey,
    issued: Mutex<HashMap<String, (i64, Vec<String>)>>,
    used_jti: Mutex<HashSet<String>>,
}

impl OAuthState {
    pub fn new(cfg: OAuthConfig) -> Result<Self, SimError> {
        let key =
            DecodingKey::from_rsa_pem(cfg.public_key_pem.as_bytes()).map_err(SimError::OAuthKey)?;
        Ok(Self {
            cfg,
            key,
            issued: Mutex::new(HashMap::new()),
            used_jti: Mutex::new(HashSet::new()),
        })
    }

    pub fn level(&self) -> PermissionLevel {
        self.cfg.level
    }

    pub fn principal_id(&self) -> String {
        self.cfg.principal_id.clone()
    }

    /// The scopes of a live access token.
    pub fn lookup(&self, token: &str, now_ms: i64) -> Option<Vec<String>> {
        let issued = self.issued.lock().ok()?;
        let (exp, scopes) = issued.get(token)?;
        (now_ms < *exp).then(|| scopes.clone())
    }
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    scope: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
    /// The `authorization_code` grant's fields (OIDC sign-in, see `oidc`).
    #[serde(flatten)]
    code: crate::oidc::CodeForm,
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    #[serde(default)]
    jti: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

pub async fn token(
    State(sim): State<Arc<Sim>>,
    headers: axum::http::HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    // One token endpoint serves both grants, as Okta's org authorization server does.
    if form.grant_type.as_deref() == Some("authorization_code") {
        return crate::oidc::token_for_code(&sim, &headers, form.code);
    }
    let Some(st) = sim.oauth.as_ref() else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "No OAuth client is configured.",
        );
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server.",
        );
    }
    if form.client_assertion_type.as_deref()
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_assertion_type is invalid.",
        );
    }
    let Some(assertion) = form.client_assertion.as_deref() else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_assertion is required.",
        );
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[format!("{}/oauth2/v1/token", sim.base_url)]);
    validation.set_issuer(&[st.cfg.client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = 0;
    let claims = match jsonwebtoken::decode::<Claims>(assertion, &st.key, &validation) {
        Ok(d) => d.claims,
        Err(e) => {
            tracing::debug!(error = %e, "client assertion rejected");
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The client_assertion token is invalid.",
            );
        }
    };
    if claims.sub != st.cfg.client_id || claims.iss != claims.sub {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client_assertion token has an invalid sub claim.",
        );
    }
    if let Some(jti) = claims.jti {
        let fresh = st
            .used_jti
            .lock()
            .map(|mut u| u.insert(jti))
            .unwrap_or(false);
        if !fresh {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The client_assertion token has already been used (jti).",
            );
        }
    }
    let requested: Vec<String> = form
        .scope
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if requested.is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "The authorization server requires a scope.",
        );
    }
    if let Some(bad) = requested
        .iter()
        .find(|s| !st.cfg.granted_scopes.contains(s))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("The following scopes are not allowed: {bad}"),
        );
    }
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let access_token = format!("sim.{}", hex_encode(&raw));
    let ttl = st.cfg.token_ttl.as_secs();
    let exp = crate::ids::now_ms() + (ttl as i64) * 1000;
    if let Ok(mut issued) = st.issued.lock() {
        issued.retain(|_, (e, _)| *e > crate::ids::now_ms());
        issued.insert(access_token.clone(), (exp, requested.clone()));
    }
    json_response(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": ttl,
            "access_token": access_token,
            "scope": requested.join(" "),
        }),
    )
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
