//! OpenID Connect sign-in, as Okta's org authorization server offers it.
//!
//! Why it exists: the broker's web console signs people in with Okta (authorization code flow
//! with PKCE, state and nonce). These endpoints let that whole flow run locally: discovery,
//! `authorize` (with a plain sign-in page where one picks or types a user: there are no
//! passwords here), the `authorization_code` grant of `/oauth2/v1/token`, the JWKS and
//! `userinfo`. An SSO session cookie remembers who signed in and when (`auth_time`); `max_age`
//! and `prompt=login` send the person through the sign-in page again, as Okta does.
//!
//! What it must never do: hand out a code for an unregistered client or redirect URI, redeem a
//! code twice, skip the PKCE check, or sign with anything but RS256.

pub mod keys;
pub(crate) mod page;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::http_util::json_response;
use crate::ids::now_ms;
use crate::sim::Sim;

/// The SSO session cookie's name.
const SESSION_COOKIE: &str = "sim_sid";
/// Codes are redeemable this long (Okta: 60 s).
const CODE_TTL_MS: i64 = 60_000;
/// ID and access tokens live this long (Okta: 1 h).
const TOKEN_TTL_S: i64 = 3600;

/// One registered web application (client secret authentication).
#[derive(Clone)]
pub struct OidcClient {
    pub client_id: String,
    pub client_secret: String,
    /// Exact redirect URIs; empty means any `http://127.0.0.1:*` or `http://localhost:*` URI
    /// (tests bind port 0, so the port is not known in advance).
    pub redirect_uris: Vec<String>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uris", &self.redirect_uris)
            .finish()
    }
}

/// The default client: `jit-console` / `sim-console-secret`, any loopback redirect URI.
pub const DEFAULT_CLIENT_ID: &str = "jit-console";
pub const DEFAULT_CLIENT_SECRET: &str = "sim-console-secret";

impl Default for OidcClient {
    fn default() -> Self {
        OidcClient {
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            redirect_uris: Vec::new(),
        }
    }
}

impl OidcClient {
    fn allows_redirect(&self, uri: &str) -> bool {
        if self.redirect_uris.is_empty() {
            return url::Url::parse(uri).is_ok_and(|u| {
                u.scheme() == "http"
                    && matches!(u.host_str(), Some("127.0.0.1") | Some("localhost"))
            });
        }
        self.redirect_uris.iter().any(|r| r == uri)
    }
}

/// Ways the next ID token is spoiled, for testing relying parties (one token each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Signed with a key that is not in the JWKS.
    ForeignKey,
    /// `exp` an hour in the past.
    Expired,
    /// A `nonce` other than the one the client sent.
    WrongNonce,
    /// `aud` another client.
    WrongAudience,
}

#[derive(Clone)]
struct Session {
    user_id: String,
    auth_time_ms: i64,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    user_id: String,
    nonce: Option<String>,
    challenge: Option<String>,
    auth_time_ms: i64,
    expires_ms: i64,
}

/// Everything the OIDC endpoints remember.
pub struct OidcState {
    clients: Vec<OidcClient>,
    sessions: Mutex<HashMap<String, Session>>,
    codes: Mutex<HashMap<String, Code>>,
    access_tokens: Mutex<HashMap<String, (String, i64)>>,
    tamper: Mutex<Option<Tamper>>,
    signing: jsonwebtoken::EncodingKey,
    foreign: jsonwebtoken::EncodingKey,
}

impl OidcState {
    pub fn new(clients: Vec<OidcClient>) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(OidcState {
            clients,
            sessions: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            access_tokens: Mutex::new(HashMap::new()),
            tamper: Mutex::new(None),
            signing: jsonwebtoken::EncodingKey::from_rsa_pem(keys::SIGNING_PEM.as_bytes())?,
            foreign: jsonwebtoken::EncodingKey::from_rsa_pem(keys::FOREIGN_PEM.as_bytes())?,
        })
    }

    fn client(&self, id: &str) -> Option<&OidcClient> {
        self.clients.iter().find(|c| c.client_id == id)
    }

    /// Spoils the next ID token issued.
    pub fn tamper_next(&self, t: Tamper) {
        if let Ok(mut g) = self.tamper.lock() {
            *g = Some(t);
        }
    }

    /// Moves every SSO session's sign-in `by_ms` into the past (as if signed in earlier).
    pub fn age_sessions(&self, by_ms: i64) {
        if let Ok(mut s) = self.sessions.lock() {
            for v in s.values_mut() {
                v.auth_time_ms -= by_ms;
            }
        }
    }
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

pub fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth2/v1/authorize", get(authorize).post(sign_in))
        .route("/oauth2/v1/keys", get(jwks))
        .route("/oauth2/v1/userinfo", get(userinfo))
}

async fn discovery(State(sim): State<Arc<Sim>>) -> Response {
    let b = &sim.base_url;
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": b,
            "authorization_endpoint": format!("{b}/oauth2/v1/authorize"),
            "token_endpoint": format!("{b}/oauth2/v1/token"),
            "userinfo_endpoint": format!("{b}/oauth2/v1/userinfo"),
            "jwks_uri": format!("{b}/oauth2/v1/keys"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "name", "email", "preferred_username"],
        }),
    )
}

async fn jwks() -> Response {
    json_response(
        StatusCode::OK,
        &json!({ "keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": keys::SIGNING_KID,
            "n": keys::SIGNING_N, "e": "AQAB",
        }]}),
    )
}

/// The parameters of an authorization request; carried through the sign-in page as hidden
/// fields.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct AuthParams {
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub redirect_uri: String,
    #[serde(default)]
    pub response_type: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub state: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub max_age: Option<String>,
    pub prompt: Option<String>,
    /// Only on the sign-in form: the login picked or typed.
    pub login: Option<String>,
}

fn page_error(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.to_string(),
    )
        .into_response()
}

/// Checks what must hold before anything is redirected anywhere; `Err` is shown, not sent back.
fn check_params(sim: &Sim, p: &AuthParams) -> Result<(), &'static str> {
    let Some(st) = sim.oidc.as_ref() else {
        return Err("OIDC is not enabled on this simulator.");
    };
    let Some(client) = st.client(&p.client_id) else {
        return Err("Unknown client_id.");
    };
    if !client.allows_redirect(&p.redirect_uri) {
        return Err("The redirect_uri is not registered for this client.");
    }
    Ok(())
}

/// Redirects back to the client with an OAuth error (the redirect URI is known to be good).
fn error_redirect(p: &AuthParams, error: &str) -> Response {
    let mut u = match url::Url::parse(&p.redirect_uri) {
        Ok(u) => u,
        Err(_) => return page_error("bad redirect_uri"),
    };
    u.query_pairs_mut()
        .append_pair("error", error)
        .append_pair("state", &p.state);
    Redirect::to(u.as_str()).into_response()
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

async fn authorize(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(p): Query<AuthParams>,
) -> Response {
    if let Err(msg) = check_params(&sim, &p) {
        return page_error(msg);
    }
    if p.response_type != "code" {
        return error_redirect(&p, "unsupported_response_type");
    }
    if !p.scope.split(' ').any(|s| s == "openid") {
        return error_redirect(&p, "invalid_scope");
    }
    if p.code_challenge.is_some() && p.code_challenge_method.as_deref() != Some("S256") {
        return error_redirect(&p, "invalid_request");
    }
    let max_age_ms = match p.max_age.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(s)) if s >= 0 => Some(s.saturating_mul(1000)),
        Some(_) => return error_redirect(&p, "invalid_request"),
    };
    let Some(st) = sim.oidc.as_ref() else {
        return page_error("OIDC is not enabled on this simulator.");
    };
    // An SSO session answers without a page unless the client asks for a fresh sign-in.
    let session = session_id(&headers)
        .and_then(|sid| st.sessions.lock().ok().and_then(|s| s.get(&sid).cloned()));
    if let Some(s) = session {
        let fresh_enough = max_age_ms.is_none_or(|m| now_ms() - s.auth_time_ms <= m);
        if fresh_enough && p.prompt.as_deref() != Some("login") {
            return issue_code(st, &p, &s, None);
        }
    }
    let users: Vec<(String, String)> = {
        let org = sim.org();
        let mut v: Vec<(String, String)> = org
            .users
            .values()
            .filter(|u| u.status == "ACTIVE")
            .take(50)
            .map(|u| (u.login.clone(), u.display_name()))
            .collect();
        v.sort();
        v
    };
    page::sign_in(&p, &users, None)
}

/// The sign-in page's form: sign the named user in and go back to the client.
async fn sign_in(State(sim): State<Arc<Sim>>, Form(p): Form<AuthParams>) -> Response {
    if let Err(msg) = check_params(&sim, &p) {
        return page_error(msg);
    }
    let Some(st) = sim.oidc.as_ref() else {
        return page_error("OIDC is not enabled on this simulator.");
    };
    let login = p.login.clone().unwrap_or_default().trim().to_string();
    let user_id = {
        let org = sim.org();
        org.users
            .values()
            .find(|u| u.status == "ACTIVE" && u.login.eq_ignore_ascii_case(&login))
            .map(|u| u.id.clone())
    };
    let Some(user_id) = user_id else {
        return page::sign_in(&p, &[], Some("No active user with that login."));
    };
    let sid = random_token();
    let session = Session {
        user_id,
        auth_time_ms: now_ms(),
    };
    if let Ok(mut s) = st.sessions.lock() {
        s.insert(sid.clone(), session.clone());
    }
    issue_code(st, &p, &session, Some(sid))
}

fn issue_code(st: &OidcState, p: &AuthParams, s: &Session, new_sid: Option<String>) -> Response {
    let code = random_token();
    if let Ok(mut c) = st.codes.lock() {
        let now = now_ms();
        c.retain(|_, v| v.expires_ms > now);
        c.insert(
            code.clone(),
            Code {
                client_id: p.client_id.clone(),
                redirect_uri: p.redirect_uri.clone(),
                user_id: s.user_id.clone(),
                nonce: p.nonce.clone(),
                challenge: p.code_challenge.clone(),
                auth_time_ms: s.auth_time_ms,
                expires_ms: now + CODE_TTL_MS,
            },
        );
    }
    let mut u = match url::Url::parse(&p.redirect_uri) {
        Ok(u) => u,
        Err(_) => return page_error("bad redirect_uri"),
    };
    u.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &p.state);
    let mut resp = Redirect::to(u.as_str()).into_response();
    if let Some(sid) = new_sid {
        if let Ok(v) = format!("{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax").parse() {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

/// The `authorization_code` grant's form fields (the rest of `/oauth2/v1/token` is in
/// `oauth.rs`).
#[derive(Debug, Deserialize, Default)]
pub struct CodeForm {
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

fn token_error(error: &str, description: &str) -> Response {
    let status = if error == "invalid_client" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

/// Client id and secret from HTTP Basic or from the form.
fn client_credentials(headers: &HeaderMap, f: &CodeForm) -> Option<(String, String)> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let b64 = v.strip_prefix("Basic ")?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (id, secret) = text.split_once(':')?;
        let dec = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((dec(id)?, dec(secret)?));
    }
    Some((f.client_id.clone()?, f.client_secret.clone()?))
}

/// Redeems an authorization code for an ID token and an access token.
pub fn token_for_code(sim: &Sim, headers: &HeaderMap, f: CodeForm) -> Response {
    let Some(st) = sim.oidc.as_ref() else {
        return token_error("invalid_client", "OIDC is not enabled.");
    };
    let Some((client_id, secret)) = client_credentials(headers, &f) else {
        return token_error("invalid_client", "Client authentication failed.");
    };
    let Some(client) = st.client(&client_id) else {
        return token_error("invalid_client", "Client authentication failed.");
    };
    let ok: bool =
        subtle::ConstantTimeEq::ct_eq(client.client_secret.as_bytes(), secret.as_bytes()).into();
    if !ok {
        return token_error("invalid_client", "Client authentication failed.");
    }
    // Removed on first use: a second redemption finds nothing.
    let code = f
        .code
        .as_deref()
        .and_then(|c| st.codes.lock().ok().and_then(|mut m| m.remove(c)));
    let Some(code) = code else {
        return token_error(
            "invalid_grant",
            "The authorization code is invalid or has expired.",
        );
    };
    if code.expires_ms <= now_ms()
        || code.client_id != client_id
        || f.redirect_uri.as_deref() != Some(code.redirect_uri.as_str())
    {
        return token_error(
            "invalid_grant",
            "The authorization code is invalid or has expired.",
        );
    }
    if let Some(challenge) = &code.challenge {
        let verifier = f.code_verifier.unwrap_or_default();
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if &computed != challenge {
            return token_error("invalid_grant", "PKCE verification failed.");
        }
    }
    let (login, name, email) = {
        let org = sim.org();
        match org.users.get(&code.user_id) {
            Some(u) => (u.login.clone(), u.display_name(), u.email.clone()),
            None => return token_error("invalid_grant", "The user no longer exists."),
        }
    };
    let tamper = st.tamper.lock().ok().and_then(|mut t| t.take());
    let now_s = now_ms() / 1000;
    let claims = json!({
        "iss": sim.base_url,
        "sub": code.user_id,
        "aud": if tamper == Some(Tamper::WrongAudience) { "someone-else".to_string() } else { client_id.clone() },
        "iat": now_s,
        "exp": if tamper == Some(Tamper::Expired) { now_s - 3600 } else { now_s + TOKEN_TTL_S },
        "auth_time": code.auth_time_ms / 1000,
        "nonce": if tamper == Some(Tamper::WrongNonce) { Some("not-your-nonce".to_string()) } else { code.nonce.clone() },
        "preferred_username": login,
        "name": name,
        "email": email,
    });
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some(keys::SIGNING_KID.to_string());
    let key = if tamper == Some(Tamper::ForeignKey) {
        &st.foreign
    } else {
        &st.signing
    };
    let id_token = match jsonwebtoken::encode(&h, &claims, key) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign an ID token");
            return token_error("server_error", "Cannot sign the ID token.");
        }
    };
    let access = random_token();
    if let Ok(mut a) = st.access_tokens.lock() {
        a.insert(
            access.clone(),
            (code.user_id.clone(), now_ms() + TOKEN_TTL_S * 1000),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL_S,
            "access_token": access,
            "scope": "openid profile email",
            "id_token": id_token,
        }),
    )
}

async fn userinfo(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let user = sim.oidc.as_ref().and_then(|st| {
        st.access_tokens
            .lock()
            .ok()
            .and_then(|a| a.get(token).cloned())
            .filter(|(_, exp)| *exp > now_ms())
    });
    let Some((user_id, _)) = user else {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "invalid_token", "error_description": "The access token is invalid." }),
        );
    };
    let org = sim.org();
    match org.users.get(&user_id) {
        Some(u) => json_response(
            StatusCode::OK,
            &json!({ "sub": u.id, "preferred_username": u.login, "name": u.display_name(), "email": u.email }),
        ),
        None => json_response(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "invalid_token", "error_description": "The user no longer exists." }),
        ),
    }
}
