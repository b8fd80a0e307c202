//! A custom authorization server (`/oauth2/{authServerId}/…`), as Okta's API Access Management
//! offers it: discovery, JWKS, the device authorization grant (RFC 8628), refresh tokens, and
//! access tokens that are RS256 JWTs with Okta's claims.
//!
//! Why it exists: the broker's API accepts Okta access tokens from people signed in on a terminal
//! (`jit login`) or through an assistant. Those tokens come from a custom authorization server,
//! not from the org server the console uses, and they are JWTs the resource server verifies
//! itself. The simulator issues them the way Okta does so that verifier can be tested end to end,
//! including the cases it must refuse: expired, wrong audience or issuer, a key not in the JWKS,
//! `alg: none`, HS256 keyed with the public key (`mint`, see `MintSpec`), and key rotation.
//!
//! Access token claims (Okta's, for a user token): `ver` 1, `jti` `AT.…`, `iss`
//! `{base}/oauth2/{authServerId}`, `aud` (the server's audience, `api://default` for `default`),
//! `iat`, `exp`, `cid` (client id), `uid` (the user's Okta id), `scp` (granted scopes, an array),
//! `auth_time`, `sub` (the user's login). No `nbf` (Okta's access tokens carry none; `mint` can add
//! one). Header: `alg` RS256, `kid`.
//!
//! What it must never do: issue a token for an unknown client, an undefined scope or a device code
//! nobody approved; redeem a device code or a refresh token twice; sign with anything but RS256
//! except through the explicit forgery knobs of `mint`.

mod device;
pub mod keys;
mod token;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::EncodingKey;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::http_util::json_response;
use crate::ids::now_ms;
use crate::sim::Sim;

pub use device::DeviceDecision;

/// One client of the authorization server. A client without a secret is a public client (a
/// native app such as a terminal client: `token_endpoint_auth_method` `none`).
#[derive(Clone)]
pub struct AuthServerClient {
    pub client_id: String,
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for AuthServerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServerClient")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The default public client for the device flow.
pub const DEFAULT_DEVICE_CLIENT_ID: &str = "jit-cli";
/// The default server's id, issuer path and audience (Okta's `default` server).
pub const DEFAULT_SERVER_ID: &str = "default";
pub const DEFAULT_AUDIENCE: &str = "api://default";
/// Custom scopes the default server defines besides the OpenID ones (the broker decides what
/// each allows; the simulator only issues them).
pub const DEFAULT_CUSTOM_SCOPES: &[&str] = &["jit.read", "jit.request", "jit.approve"];

/// One custom authorization server.
#[derive(Debug, Clone)]
pub struct AuthServerConfig {
    /// `default` or an `aus…` id; the issuer is `{base}/oauth2/{id}`.
    pub id: String,
    /// The `aud` of its access tokens.
    pub audience: String,
    /// Scopes a client may ask for; anything else is `invalid_scope`, as in Okta.
    pub scopes: Vec<String>,
    pub clients: Vec<AuthServerClient>,
    /// Okta's default: 1 hour.
    pub access_token_ttl: Duration,
    /// How long a refresh token may be used (Okta's default policy: unlimited lifetime, 7 days
    /// idle; the simulator keeps one fixed lifetime, 7 days by default).
    pub refresh_token_ttl: Duration,
    /// Device codes live this long (Okta: 10 minutes).
    pub device_code_ttl: Duration,
    /// The polling interval told to clients; polling faster answers `slow_down` (Okta: 5 s).
    pub device_poll_interval: Duration,
}

impl Default for AuthServerConfig {
    fn default() -> Self {
        let mut scopes: Vec<String> = ["openid", "profile", "email", "offline_access"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        scopes.extend(DEFAULT_CUSTOM_SCOPES.iter().map(|s| s.to_string()));
        AuthServerConfig {
            id: DEFAULT_SERVER_ID.into(),
            audience: DEFAULT_AUDIENCE.into(),
            scopes,
            clients: vec![AuthServerClient {
                client_id: DEFAULT_DEVICE_CLIENT_ID.into(),
                client_secret: None,
            }],
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(7 * 24 * 3600),
            device_code_ttl: Duration::from_secs(600),
            device_poll_interval: Duration::from_secs(5),
        }
    }
}

impl AuthServerConfig {
    fn client(&self, id: &str) -> Option<&AuthServerClient> {
        self.clients.iter().find(|c| c.client_id == id)
    }
}

fn ttl_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A refresh token's grant.
#[derive(Debug, Clone)]
struct RefreshGrant {
    server: String,
    client_id: String,
    user_id: String,
    scopes: Vec<String>,
    auth_time_ms: i64,
    expires_ms: i64,
}

/// Everything the authorization servers remember.
pub struct AuthzState {
    servers: Vec<AuthServerConfig>,
    signing: Vec<EncodingKey>,
    foreign: EncodingKey,
    /// Index into `keys::KEYS` of the key that signs now.
    active: AtomicUsize,
    /// How many rotations happened (the previous key stays published after the first).
    rotations: AtomicUsize,
    devices: Mutex<HashMap<String, device::DeviceGrant>>,
    refresh: Mutex<HashMap<String, RefreshGrant>>,
    /// JWKS requests served (tests check that verifiers cache keys).
    jwks_served: AtomicUsize,
}

impl AuthzState {
    pub fn new(servers: Vec<AuthServerConfig>) -> Result<Self, jsonwebtoken::errors::Error> {
        let signing = keys::KEYS
            .iter()
            .map(|k| EncodingKey::from_rsa_pem(k.private_pem.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AuthzState {
            servers,
            signing,
            foreign: EncodingKey::from_rsa_pem(crate::oidc::keys::FOREIGN_PEM.as_bytes())?,
            active: AtomicUsize::new(0),
            rotations: AtomicUsize::new(0),
            devices: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
            jwks_served: AtomicUsize::new(0),
        })
    }

    fn server(&self, id: &str) -> Option<&AuthServerConfig> {
        self.servers.iter().find(|s| s.id == id)
    }

    fn active_index(&self) -> usize {
        self.active.load(Ordering::SeqCst) % keys::KEYS.len()
    }

    /// The `kid` that signs now.
    pub fn active_kid(&self) -> &'static str {
        keys::KEYS[self.active_index()].kid
    }

    /// The active key's public PEM (tests forge "HS256 keyed with the public key" with it).
    pub fn active_public_pem(&self) -> &'static str {
        keys::KEYS[self.active_index()].public_pem
    }

    /// Switches signing to the next key; the previous one stays in the JWKS (so tokens signed
    /// before the rotation still verify), the one before that leaves it. Returns the new `kid`.
    pub fn rotate(&self) -> &'static str {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.rotations.fetch_add(1, Ordering::SeqCst);
        self.active_kid()
    }

    /// How many times a JWKS was served.
    pub fn jwks_served(&self) -> usize {
        self.jwks_served.load(Ordering::SeqCst)
    }

    fn published(&self) -> Vec<&'static keys::AsKey> {
        let n = keys::KEYS.len();
        let i = self.active_index();
        let mut out = vec![&keys::KEYS[i]];
        if self.rotations.load(Ordering::SeqCst) > 0 {
            out.push(&keys::KEYS[(i + n - 1) % n]);
        }
        out
    }
}

pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// An OAuth error body (`{error, error_description}`), 401 for client authentication.
pub(crate) fn oauth_error(error: &str, description: &str) -> Response {
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

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({
            "errorCode": "E0000007",
            "errorSummary": "Not found: Resource not found: authorization server",
            "errorLink": "E0000007",
            "errorId": crate::ids::error_id(),
            "errorCauses": [],
        }),
    )
}

pub fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route(
            "/oauth2/{server}/.well-known/oauth-authorization-server",
            get(discovery),
        )
        .route(
            "/oauth2/{server}/.well-known/openid-configuration",
            get(discovery),
        )
        .route("/oauth2/{server}/v1/keys", get(jwks))
        .route(
            "/oauth2/{server}/v1/device/authorize",
            post(device::authorize),
        )
        .route("/oauth2/{server}/v1/token", post(token::token))
        .route("/activate", get(device::page).post(device::submit))
}

fn issuer(sim: &Sim, server: &str) -> String {
    format!("{}/oauth2/{server}", sim.base_url)
}

async fn discovery(State(sim): State<Arc<Sim>>, Path(server): Path<String>) -> Response {
    let Some(cfg) = sim.authz.as_ref().and_then(|a| a.server(&server)) else {
        return not_found();
    };
    let iss = issuer(&sim, &server);
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": iss,
            "token_endpoint": format!("{iss}/v1/token"),
            "jwks_uri": format!("{iss}/v1/keys"),
            "device_authorization_endpoint": format!("{iss}/v1/device/authorize"),
            "grant_types_supported": [
                "urn:ietf:params:oauth:grant-type:device_code",
                "refresh_token",
            ],
            "response_types_supported": ["code"],
            "scopes_supported": cfg.scopes,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["ver", "jti", "iss", "aud", "iat", "exp", "cid", "uid", "scp", "sub", "auth_time"],
        }),
    )
}

async fn jwks(State(sim): State<Arc<Sim>>, Path(server): Path<String>) -> Response {
    let Some(st) = sim.authz.as_ref().filter(|a| a.server(&server).is_some()) else {
        return not_found();
    };
    st.jwks_served.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = st
        .published()
        .into_iter()
        .map(|k| json!({ "kty": "RSA", "alg": "RS256", "use": "sig", "kid": k.kid, "n": k.n, "e": "AQAB" }))
        .collect();
    json_response(StatusCode::OK, &json!({ "keys": keys }))
}

/// How a minted token is signed: normally, or one of the forgeries a verifier must refuse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signing {
    /// RS256 with the active published key.
    #[default]
    Published,
    /// RS256 with a key that is never published.
    Foreign,
    /// `alg: none`, empty signature.
    None,
    /// HS256 keyed with the active key's public PEM (the algorithm-confusion attack).
    Hs256PublicKey,
}

/// A token minted for a test with chosen claims (`SimHandle::mint_access_token`,
/// `POST /_sim/oauth2/tokens`). Unset fields take what the server would issue.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MintSpec {
    /// Authorization server id (default `default`).
    pub server: Option<String>,
    /// The user's login (must exist in the org).
    pub login: String,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// Seconds from now to `exp`; negative for an expired token (default: the server's TTL).
    pub expires_in: Option<i64>,
    /// Adds `nbf` this many seconds from now.
    pub not_before_in: Option<i64>,
    /// Header `kid` (default: the active key's); any string, to test unknown keys.
    pub kid: Option<String>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub signing: Signing,
    /// Extra claims, or replacements for the standard ones.
    pub claims: Map<String, Value>,
}

impl Sim {
    /// Mints an access token as `spec` says (tests of resource servers).
    pub fn mint_access_token(&self, spec: &MintSpec) -> Result<String, String> {
        let st = self.authz.as_ref().ok_or("no authorization server")?;
        let server_id = spec.server.as_deref().unwrap_or(DEFAULT_SERVER_ID);
        let server = st.server(server_id).ok_or("no such authorization server")?;
        let user_id = {
            let org = self.org();
            org.users
                .values()
                .find(|u| u.login.eq_ignore_ascii_case(&spec.login))
                .map(|u| u.id.clone())
                .ok_or("no user with that login")?
        };
        let client_id = spec
            .client_id
            .clone()
            .unwrap_or_else(|| DEFAULT_DEVICE_CLIENT_ID.to_string());
        let now_s = now_ms() / 1000;
        let mut claims =
            token::access_claims(self, server, &client_id, &user_id, &spec.scopes, now_ms())?;
        if let Some(e) = spec.expires_in {
            claims.insert("exp".into(), json!(now_s + e));
        }
        if let Some(n) = spec.not_before_in {
            claims.insert("nbf".into(), json!(now_s + n));
        }
        if let Some(a) = &spec.audience {
            claims.insert("aud".into(), json!(a));
        }
        if let Some(i) = &spec.issuer {
            claims.insert("iss".into(), json!(i));
        }
        for (k, v) in &spec.claims {
            claims.insert(k.clone(), v.clone());
        }
        token::sign(
            st,
            &Value::Object(claims),
            spec.signing,
            spec.kid.as_deref(),
        )
    }
}
