//! `POST /oauth2/{authServerId}/v1/token`: the device code and refresh token grants, and the
//! signing of access and ID tokens.
//!
//! Why it exists: the terminal client polls here until its device code is approved, then keeps
//! its session alive with refresh tokens; both end in a signed access token the broker verifies.
//!
//! What it must never do: answer a device code before it is approved, redeem a device code or a
//! refresh token twice (refresh tokens rotate on every use), issue a scope the original grant did
//! not have, or issue tokens for a user who is no longer ACTIVE.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::device::Poll;
use super::{
    issuer, oauth_error, random_token, ttl_ms, AuthServerConfig, AuthzState, RefreshGrant, Signing,
};
use crate::http_util::json_response;
use crate::ids::now_ms;
use crate::sim::Sim;

pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Debug, Deserialize, Default)]
pub struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    device_code: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

/// The client id, after checking the secret of a confidential client (HTTP Basic or form) or
/// that a public client sent none; `None` answers `invalid_client` ([`bad_client`]).
pub(crate) fn authenticate_client(
    server: &AuthServerConfig,
    headers: &HeaderMap,
    form_id: Option<&str>,
    form_secret: Option<&str>,
) -> Option<String> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|t| {
            t.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        });
    let (id, secret) = match basic {
        Some((id, secret)) => (id, Some(secret)),
        None => (
            form_id.unwrap_or_default().to_string(),
            form_secret.map(str::to_string),
        ),
    };
    let client = server.client(&id)?;
    match (&client.client_secret, secret) {
        (None, None) => Some(id),
        (Some(want), Some(got)) => {
            let ok: bool = subtle::ConstantTimeEq::ct_eq(want.as_bytes(), got.as_bytes()).into();
            ok.then_some(id)
        }
        _ => None,
    }
}

/// The answer to a failed client authentication.
pub(crate) fn bad_client() -> Response {
    oauth_error("invalid_client", "Client authentication failed.")
}

pub async fn token(
    State(sim): State<Arc<Sim>>,
    Path(server_id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    let Some(st) = sim.authz.as_ref() else {
        return super::not_found();
    };
    let Some(server) = st.server(&server_id) else {
        return super::not_found();
    };
    let client_id = match authenticate_client(
        server,
        &headers,
        f.client_id.as_deref(),
        f.client_secret.as_deref(),
    ) {
        Some(c) => c,
        None => return bad_client(),
    };
    match f.grant_type.as_deref() {
        Some(DEVICE_GRANT) => device_grant(&sim, st, server, &client_id, f.device_code),
        Some("refresh_token") => refresh_grant(&sim, st, server, &client_id, &f),
        _ => oauth_error(
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server.",
        ),
    }
}

fn device_grant(
    sim: &Sim,
    st: &AuthzState,
    server: &AuthServerConfig,
    client_id: &str,
    device_code: Option<String>,
) -> Response {
    let Some(code) = device_code else {
        return oauth_error("invalid_request", "The device_code is required.");
    };
    match st.poll_device(&server.id, client_id, &code, now_ms()) {
        Poll::Pending => oauth_error(
            "authorization_pending",
            "The device authorization is pending. Please try again later.",
        ),
        Poll::SlowDown => oauth_error(
            "slow_down",
            "The client is polling too frequently; wait the interval between requests.",
        ),
        Poll::Expired => oauth_error("expired_token", "The device code has expired."),
        Poll::Denied => oauth_error(
            "access_denied",
            "The resource owner or authorization server denied the request.",
        ),
        Poll::Invalid => oauth_error(
            "invalid_grant",
            "The device code is invalid or has expired.",
        ),
        Poll::Approved {
            user_id,
            scopes,
            auth_time_ms,
        } => issue(sim, st, server, client_id, &user_id, scopes, auth_time_ms),
    }
}

fn refresh_grant(
    sim: &Sim,
    st: &AuthzState,
    server: &AuthServerConfig,
    client_id: &str,
    f: &TokenForm,
) -> Response {
    let invalid = || oauth_error("invalid_grant", "The refresh token is invalid or expired.");
    let Some(rt) = f.refresh_token.as_deref() else {
        return oauth_error("invalid_request", "The refresh_token is required.");
    };
    // Removed on use: refresh tokens rotate, the old one is spent whatever happens next.
    let grant = st.refresh.lock().ok().and_then(|mut m| m.remove(rt));
    let Some(grant) = grant else {
        return invalid();
    };
    if grant.server != server.id || grant.client_id != client_id || grant.expires_ms <= now_ms() {
        return invalid();
    }
    // A narrower scope may be asked for; a wider one is refused.
    let scopes = match f.scope.as_deref() {
        None => grant.scopes.clone(),
        Some(s) => {
            let asked: Vec<String> = s.split_whitespace().map(str::to_string).collect();
            if asked.iter().any(|a| !grant.scopes.contains(a)) {
                return oauth_error(
                    "invalid_scope",
                    "The requested scope exceeds the scope granted by the resource owner.",
                );
            }
            asked
        }
    };
    issue(
        sim,
        st,
        server,
        client_id,
        &grant.user_id,
        scopes,
        grant.auth_time_ms,
    )
}

/// The access token's claims, as Okta's custom authorization servers issue them.
pub(crate) fn access_claims(
    sim: &Sim,
    server: &AuthServerConfig,
    client_id: &str,
    user_id: &str,
    scopes: &[String],
    auth_time_ms: i64,
) -> Result<Map<String, Value>, String> {
    let login = {
        let org = sim.org();
        org.users
            .get(user_id)
            .map(|u| u.login.clone())
            .ok_or("the user no longer exists")?
    };
    let now_s = now_ms() / 1000;
    let ttl_s = i64::try_from(server.access_token_ttl.as_secs()).unwrap_or(3600);
    let v = json!({
        "ver": 1,
        "jti": format!("AT.{}", random_token()),
        "iss": issuer(sim, &server.id),
        "aud": server.audience,
        "iat": now_s,
        "exp": now_s + ttl_s,
        "cid": client_id,
        "uid": user_id,
        "scp": scopes,
        "auth_time": auth_time_ms / 1000,
        "sub": login,
    });
    match v {
        Value::Object(m) => Ok(m),
        _ => Err("claims are not an object".into()),
    }
}

/// Signs claims as `signing` says; `kid` overrides the header's key id.
pub(crate) fn sign(
    st: &AuthzState,
    claims: &Value,
    signing: Signing,
    kid: Option<&str>,
) -> Result<String, String> {
    let kid = kid.unwrap_or(st.active_kid()).to_string();
    let rs = |key: &EncodingKey| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(&h, claims, key).map_err(|e| e.to_string())
    };
    match signing {
        Signing::Published => rs(&st.signing[st.active_index()]),
        Signing::Foreign => rs(&st.foreign),
        Signing::Hs256PublicKey => {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some(kid.clone());
            let key = EncodingKey::from_secret(st.active_public_pem().as_bytes());
            jsonwebtoken::encode(&h, claims, &key).map_err(|e| e.to_string())
        }
        Signing::None => {
            // jsonwebtoken cannot produce `alg: none`; an attacker writes it by hand, so do we.
            let header = json!({ "alg": "none", "typ": "JWT", "kid": kid });
            let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string().as_bytes());
            Ok(format!("{}.{}.", enc(&header), enc(claims)))
        }
    }
}

/// Answers a successful grant: an access token, an ID token when `openid` was granted, and a
/// new refresh token when `offline_access` was (Okta issues refresh tokens only then).
fn issue(
    sim: &Sim,
    st: &AuthzState,
    server: &AuthServerConfig,
    client_id: &str,
    user_id: &str,
    scopes: Vec<String>,
    auth_time_ms: i64,
) -> Response {
    let user = {
        let org = sim.org();
        org.users
            .get(user_id)
            .filter(|u| u.status == "ACTIVE")
            .map(|u| (u.login.clone(), u.display_name(), u.email.clone()))
    };
    let Some((login, name, email)) = user else {
        return oauth_error("invalid_grant", "The user is not active.");
    };
    let signed = access_claims(sim, server, client_id, user_id, &scopes, auth_time_ms)
        .and_then(|c| sign(st, &Value::Object(c), Signing::Published, None));
    let access = match signed {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign an access token");
            return oauth_error("server_error", "Cannot sign the access token.");
        }
    };
    let ttl_s = server.access_token_ttl.as_secs();
    let mut body = json!({
        "token_type": "Bearer",
        "expires_in": ttl_s,
        "access_token": access,
        "scope": scopes.join(" "),
    });
    if scopes.iter().any(|s| s == "openid") {
        let now_s = now_ms() / 1000;
        let id_claims = json!({
            "ver": 1,
            "sub": user_id,
            "iss": issuer(sim, &server.id),
            "aud": client_id,
            "iat": now_s,
            "exp": now_s + i64::try_from(ttl_s).unwrap_or(3600),
            "jti": format!("ID.{}", random_token()),
            "auth_time": auth_time_ms / 1000,
            "preferred_username": login,
            "name": name,
            "email": email,
        });
        match sign(st, &id_claims, Signing::Published, None) {
            Ok(t) => body["id_token"] = json!(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign an ID token");
                return oauth_error("server_error", "Cannot sign the ID token.");
            }
        }
    }
    if scopes.iter().any(|s| s == "offline_access") {
        let rt = random_token();
        if let Ok(mut m) = st.refresh.lock() {
            let now = now_ms();
            m.retain(|_, g| g.expires_ms > now);
            m.insert(
                rt.clone(),
                RefreshGrant {
                    server: server.id.clone(),
                    client_id: client_id.to_string(),
                    user_id: user_id.to_string(),
                    scopes: scopes.clone(),
                    auth_time_ms,
                    expires_ms: now + ttl_ms(server.refresh_token_ttl),
                },
            );
        }
        body["refresh_token"] = json!(rt);
    }
    json_response(StatusCode::OK, &body)
}
