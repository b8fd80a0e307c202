//! The simulator's configuration: seed data, tokens, OAuth, rate limits, faults, RNG seed.
//!
//! Why it exists: tests and the binary describe the org they want in one value and get the
//! same behaviour every run. `Default` is a small fixed org (see `seed::default_seed`), the three
//! default tokens and rate limits generous enough for benches.
//!
//! What it must never do: hold anything that changes while running (that lives in `Sim`).

use std::time::Duration;

use crate::faults::FaultConfig;
use crate::ratelimit::RateLimitConfig;
use crate::seed::{default_seed, Seed};

/// The broker's service principal in the default seed.
pub const DEFAULT_PRINCIPAL: &str = "00u1jitbroker0000005";
pub const SUPER_ADMIN_TOKEN: &str = "sim-super-admin-token";
pub const GROUP_APP_ADMIN_TOKEN: &str = "sim-group-app-admin-token";
pub const READ_ONLY_TOKEN: &str = "sim-read-only-token";

/// What a token may do, modelled on Okta admin roles.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum PermissionLevel {
    /// Reads only: every write answers 403 E0000006.
    ReadOnly,
    /// Writes to users (lifecycle, sessions), groups and apps; no admin roles.
    GroupAppAdmin,
    /// Everything, including admin role assignment.
    SuperAdmin,
}

/// An `SSWS` API token and the Okta user it acts as (the event actor of its changes).
#[derive(Clone)]
pub struct SimToken {
    pub token: String,
    pub level: PermissionLevel,
    pub principal_id: String,
}

/// Tokens stay out of `Debug` output (and therefore out of logs).
impl std::fmt::Debug for SimToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimToken")
            .field("token", &"<redacted>")
            .field("level", &self.level)
            .field("principal_id", &self.principal_id)
            .finish()
    }
}

/// OAuth 2.0 client credentials with `private_key_jwt` for one service app.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The service app's client id (`iss` and `sub` of the client assertion).
    pub client_id: String,
    /// RSA public key (PEM) the client assertion is verified against.
    pub public_key_pem: String,
    /// Permission level of the admin role granted to the service app.
    pub level: PermissionLevel,
    /// Scopes the app was granted; a token request may ask for any subset.
    pub granted_scopes: Vec<String>,
    /// Lifetime of issued access tokens (`expires_in`); Okta uses 3600 s.
    pub token_ttl: Duration,
    /// Actor id used in events for changes made with these tokens (Okta logs the service app).
    pub principal_id: String,
}

impl OAuthConfig {
    /// A config granting every `okta.*.read|manage` scope the simulator knows.
    pub fn new(client_id: &str, public_key_pem: &str, level: PermissionLevel) -> Self {
        Self {
            client_id: client_id.to_string(),
            public_key_pem: public_key_pem.to_string(),
            level,
            granted_scopes: crate::auth::ALL_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            token_ttl: Duration::from_secs(3600),
            principal_id: client_id.to_string(),
        }
    }
}

/// Event hook delivery tuning.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// Events produced within this window are delivered in one batch.
    pub batch_window: Duration,
    /// Okta gives up on a delivery after 3 s and retries once.
    pub delivery_timeout: Duration,
    /// Probability (0..=1) that a delivered batch is delivered a second time (at-least-once).
    pub duplicate_rate: f64,
    /// Maximum events per delivery (Okta's maximum is unverified).
    pub max_batch: usize,
}

impl Default for HookConfig {
    fn default() -> Self {
        Self {
            batch_window: Duration::from_millis(50),
            delivery_timeout: Duration::from_secs(3),
            duplicate_rate: 0.0,
            max_batch: 50,
        }
    }
}

/// Everything `spawn` needs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: Seed,
    pub tokens: Vec<SimToken>,
    pub rate_limits: RateLimitConfig,
    pub faults: FaultConfig,
    pub oauth: Option<OAuthConfig>,
    /// Web applications that may sign people in with OIDC (default: `jit-console`).
    pub oidc_clients: Vec<crate::oidc::OidcClient>,
    /// Custom authorization servers (default: Okta's `default`, audience `api://default`, a
    /// public `jit-cli` client for the device flow).
    pub auth_servers: Vec<crate::authz::AuthServerConfig>,
    /// Seeds ids of created objects, fault draws and duplicate deliveries.
    pub rng_seed: u64,
    pub hooks: HookConfig,
    /// When true, assigning an app to a user who already holds a USER-scope assignment answers
    /// 409 E0000062; when false (default) it answers 200 with the existing AppUser, as Okta's
    /// "assign or update" endpoint usually does (which of the two a given org does is unverified).
    pub strict_duplicate_app_assign: bool,
    /// Answer 411 to a PUT/POST without `Content-Length` (or chunked body), as Okta does.
    /// Note: reqwest sends *no* Content-Length for an empty PUT/POST body, so clients must set
    /// `Content-Length: 0` themselves; turn this off only to test something else.
    pub require_content_length: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: default_seed(),
            tokens: default_tokens(),
            rate_limits: RateLimitConfig::default(),
            faults: FaultConfig::default(),
            oauth: None,
            oidc_clients: vec![crate::oidc::OidcClient::default()],
            auth_servers: vec![crate::authz::AuthServerConfig::default()],
            rng_seed: 7,
            hooks: HookConfig::default(),
            strict_duplicate_app_assign: false,
            require_content_length: true,
        }
    }
}

/// The three default tokens, all acting as the broker's principal.
pub fn default_tokens() -> Vec<SimToken> {
    [
        (SUPER_ADMIN_TOKEN, PermissionLevel::SuperAdmin),
        (GROUP_APP_ADMIN_TOKEN, PermissionLevel::GroupAppAdmin),
        (READ_ONLY_TOKEN, PermissionLevel::ReadOnly),
    ]
    .into_iter()
    .map(|(t, level)| SimToken {
        token: t.to_string(),
        level,
        principal_id: DEFAULT_PRINCIPAL.to_string(),
    })
    .collect()
}
