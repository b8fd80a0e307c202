//! Okta access tokens: the `[access_tokens]` section and the verifier of the JWTs an Okta custom
//! authorization server issues to people (a terminal client's device login, an assistant).
//!
//! Why it exists: the API accepts, besides its static tokens, an access token a person obtained
//! from Okta. The token is a claim (I10) until this module has checked it: the algorithm pinned to
//! RS256 before anything else (`alg: none` and HS256 keyed with the public key are refused by
//! construction), the signature against the authorization server's JWKS (`jsonwebtoken`, a
//! maintained crate, does the cryptography), `iss` and `aud` exactly, `exp`/`nbf` against the
//! project's [`Clock`] with a small skew, and a user (`uid`) behind it. The caller names the
//! scopes a verb needs ([`VerifiedToken::require_scopes`]).
//!
//! Keys: fetched on first use and cached. A token whose `kid` is not in the cache triggers one
//! refetch (Okta rotates keys and publishes the new one before using it), at most once per
//! `jwks_refresh_min_interval` whatever the traffic, so a flood of forged `kid`s cannot turn into
//! a flood of requests to Okta (the price: a key rotated in just after a forged `kid` caused a
//! refetch is accepted only after the interval). A cached set older than `jwks_max_age` is
//! refreshed the same single-flight way and kept if Okta does not answer; when Okta is down, a
//! fetch is attempted at most once per interval. Never one fetch per request.
//!
//! What it must never do: trust the token's header to choose the algorithm or the key type,
//! accept a token without `exp`, follow a redirect from the JWKS endpoint, or print a token (a
//! rejection names the failed check, never the token or its signature).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::clock::Clock;
use crate::config::ConfigError;

/// The `[access_tokens]` section. An empty `issuer` turns Okta access tokens off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessTokensConfig {
    /// The custom authorization server's issuer, `https://example.okta.com/oauth2/default` (or
    /// `/oauth2/aus…`), exactly as its tokens carry it in `iss`.
    pub issuer: String,
    /// The `aud` the broker's tokens carry (the authorization server's audience).
    pub audience: String,
    /// Where the signing keys are; empty: `{issuer}/v1/keys` (Okta's custom servers).
    #[serde(default)]
    pub jwks_uri: String,
    /// Tolerance for clocks that disagree, on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// An unknown `kid` refetches the keys at most this often.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh_min_interval: Duration,
    /// Cached keys older than this are fetched again on the next token (kept if that fails).
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
    /// How long the API keeps the person behind a token (login, status, roles from groups)
    /// before reading Okta again.
    #[serde(with = "humantime_serde")]
    pub person_cache_ttl: Duration,
    /// The OAuth clients (`cid`) whose tokens the broker accepts: the terminal client's app and
    /// the assistants' apps. Empty accepts any client of the authorization server, which on a
    /// shared server (`default`) means every app whose access policy grants the scopes.
    #[serde(default)]
    pub client_ids: Vec<String>,
}

impl AccessTokensConfig {
    pub fn is_enabled(&self) -> bool {
        !self.issuer.trim().is_empty()
    }

    /// The JWKS URL: `jwks_uri`, else `{issuer}/v1/keys`.
    pub fn jwks_url(&self) -> String {
        if self.jwks_uri.trim().is_empty() {
            format!("{}/v1/keys", self.issuer.trim().trim_end_matches('/'))
        } else {
            self.jwks_uri.trim().to_string()
        }
    }

    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !self.is_enabled() {
            return errors;
        }
        if let Err(e) = super::config::check_base_url(&self.issuer) {
            errors.push(ConfigError::invalid("access_tokens.issuer", e));
        }
        if let Err(e) = super::config::check_base_url(&self.jwks_url()) {
            errors.push(ConfigError::invalid("access_tokens.jwks_uri", e));
        }
        if self.audience.trim().is_empty() {
            errors.push(ConfigError::invalid(
                "access_tokens.audience",
                "must name the authorization server's audience (e.g. api://jit-broker)",
            ));
        }
        if self.clock_skew > Duration::from_secs(300) {
            errors.push(ConfigError::invalid(
                "access_tokens.clock_skew",
                "must be at most 5m (a larger skew extends every token's life)",
            ));
        }
        if self.jwks_refresh_min_interval < Duration::from_secs(1) {
            errors.push(ConfigError::invalid(
                "access_tokens.jwks_refresh_min_interval",
                "must be at least 1s (it is what keeps forged kids from reaching Okta)",
            ));
        }
        if self.person_cache_ttl > Duration::from_secs(600) {
            errors.push(ConfigError::invalid(
                "access_tokens.person_cache_ttl",
                "must be at most 10m (a deactivated person keeps access for as long)",
            ));
        }
        if self.jwks_max_age < self.jwks_refresh_min_interval {
            errors.push(ConfigError::invalid(
                "access_tokens.jwks_max_age",
                "must be at least jwks_refresh_min_interval",
            ));
        }
        errors
    }
}

/// Why a token was refused. Nothing here carries the token or any part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is not a well-formed JWT")]
    Malformed,
    #[error("the access token's algorithm `{0}` is not accepted (only RS256)")]
    Algorithm(String),
    #[error("the access token names no signing key (kid)")]
    NoKeyId,
    #[error("the access token's signing key is not one of the authorization server's keys")]
    UnknownKey,
    #[error("the access token's signature does not verify")]
    Signature,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token was issued by another authorization server")]
    Issuer,
    #[error("the access token is meant for another audience")]
    Audience,
    #[error("the access token lacks the `{0}` claim")]
    MissingClaim(&'static str),
    #[error("the access token was not issued to a person (no uid)")]
    NotAUser,
    #[error("the access token was issued to an OAuth client the broker does not accept")]
    Client,
    #[error("the access token lacks the scope `{0}`")]
    MissingScope(String),
    #[error("the authorization server's keys cannot be fetched: {0}")]
    KeysUnavailable(String),
}

/// How the API answers a [`TokenError`]: decided here, once, so every channel that accepts these
/// tokens answers alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 401: no valid credential.
    Unauthorized,
    /// 403: a valid credential without the scope.
    Forbidden,
    /// 503: the keys could not be fetched; the token may be fine.
    Unavailable,
}

impl TokenError {
    pub fn rejection(&self) -> Rejection {
        match self {
            TokenError::MissingScope(_) => Rejection::Forbidden,
            TokenError::KeysUnavailable(_) => Rejection::Unavailable,
            _ => Rejection::Unauthorized,
        }
    }
}

/// A verified token: who, through which client, with which scopes, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The person's Okta user id (`uid`).
    pub user_id: String,
    /// Their login (`sub`, which Okta sets to the login for user tokens).
    pub login: String,
    /// The OAuth client the person used (`cid`).
    pub client_id: String,
    /// Granted scopes (`scp`).
    pub scopes: Vec<String>,
    /// `exp`, in Unix ms.
    pub expires_at_ms: i64,
}

impl VerifiedToken {
    /// Refuses the token unless it carries every scope in `required`.
    pub fn require_scopes(&self, required: &[&str]) -> Result<(), TokenError> {
        match required
            .iter()
            .find(|r| !self.scopes.iter().any(|s| s == *r))
        {
            Some(missing) => Err(TokenError::MissingScope((*missing).to_string())),
            None => Ok(()),
        }
    }
}

/// The claims read from a token (Okta's names). `aud` is checked by `jsonwebtoken`.
#[derive(Debug, Deserialize)]
struct Claims {
    exp: Option<i64>,
    nbf: Option<i64>,
    sub: Option<String>,
    uid: Option<String>,
    cid: Option<String>,
    #[serde(default)]
    scp: Scopes,
}

/// `scp` is an array in Okta's tokens; a space-separated string is accepted too.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Scopes {
    #[default]
    None,
    List(Vec<String>),
    Spaced(String),
}

impl Scopes {
    fn into_vec(self) -> Vec<String> {
        match self {
            Scopes::None => Vec::new(),
            Scopes::List(v) => v,
            Scopes::Spaced(s) => s.split_whitespace().map(str::to_string).collect(),
        }
    }
}

/// The cached key set.
#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    /// When the set was last fetched successfully (Unix ms); `None` before the first fetch.
    fetched_ms: Option<i64>,
}

/// Verifies Okta access tokens. Cheap to clone; clones share the key cache.
#[derive(Clone)]
pub struct AccessTokenVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: AccessTokensConfig,
    jwks_url: String,
    http: reqwest::Client,
    clock: Clock,
    keys: RwLock<Keys>,
    /// Held while fetching (single flight).
    fetch: tokio::sync::Mutex<FetchTimes>,
}

/// When fetches started (Unix ms), for the rate limits.
#[derive(Default)]
struct FetchTimes {
    /// Any fetch: a missing or stale key set is not fetched again sooner than the interval
    /// after the last attempt (Okta being down must not mean one attempt per token).
    last_attempt: Option<i64>,
    /// Fetches caused by an unknown `kid`: at most one per interval, whatever the traffic.
    last_unknown_kid: Option<i64>,
}

/// Why the keys are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// None fetched yet, or the cached set is older than `jwks_max_age`.
    MissingOrStale,
    /// A token names a `kid` the cached set lacks (Okta may have rotated).
    UnknownKid,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl AccessTokenVerifier {
    pub fn new(cfg: AccessTokensConfig, clock: Clock) -> Result<Self, TokenError> {
        let http = reqwest::Client::builder()
            // A JWKS endpoint answering with a redirect is not followed (SSRF, key substitution).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TokenError::KeysUnavailable(crate::error::chain(&e)))?;
        Ok(AccessTokenVerifier {
            inner: Arc::new(Inner {
                jwks_url: cfg.jwks_url(),
                cfg,
                http,
                clock,
                keys: RwLock::new(Keys::default()),
                fetch: tokio::sync::Mutex::new(FetchTimes::default()),
            }),
        })
    }

    /// Checks `token` and returns who it speaks for. Scopes are the caller's to check.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let kid = pinned_header(token)?;
        let key = self.key_for(&kid).await?;
        let cfg = &self.inner.cfg;
        let mut v = Validation::new(Algorithm::RS256);
        v.algorithms = vec![Algorithm::RS256];
        v.set_issuer(&[cfg.issuer.trim()]);
        v.set_audience(&[cfg.audience.trim()]);
        // Time is checked below against the project's clock, not the system's.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_required_spec_claims(&["iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => TokenError::Signature,
                K::InvalidIssuer => TokenError::Issuer,
                K::InvalidAudience => TokenError::Audience,
                K::MissingRequiredClaim(c) if c == "iss" => TokenError::MissingClaim("iss"),
                K::MissingRequiredClaim(_) => TokenError::MissingClaim("aud"),
                K::InvalidAlgorithm => TokenError::Algorithm("?".into()),
                _ => TokenError::Malformed,
            }
        })?;
        let c = data.claims;
        let now_s = self.inner.clock.now_ms().div_euclid(1000);
        let skew = i64::try_from(cfg.clock_skew.as_secs()).unwrap_or(0);
        let exp = c.exp.ok_or(TokenError::MissingClaim("exp"))?;
        if now_s > exp.saturating_add(skew) {
            return Err(TokenError::Expired);
        }
        if c.nbf.is_some_and(|nbf| now_s < nbf.saturating_sub(skew)) {
            return Err(TokenError::NotYetValid);
        }
        let user_id = c
            .uid
            .filter(|u| !u.is_empty())
            .ok_or(TokenError::NotAUser)?;
        let login = c
            .sub
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::MissingClaim("sub"))?;
        let client_id = c.cid.unwrap_or_default();
        if !cfg.client_ids.is_empty() && !cfg.client_ids.contains(&client_id) {
            return Err(TokenError::Client);
        }
        Ok(VerifiedToken {
            user_id,
            login,
            client_id,
            scopes: c.scp.into_vec(),
            expires_at_ms: exp.saturating_mul(1000),
        })
    }

    /// The key for `kid`: from the cache, else after one rate-limited refetch.
    async fn key_for(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        let now = self.inner.clock.now_ms();
        let max_age = ms(self.inner.cfg.jwks_max_age);
        let why = match self.cached(kid, now, max_age) {
            Some((key, true)) => return Ok(key),
            Some((_, false)) => Why::MissingOrStale,
            None if self.has_keys() => Why::UnknownKid,
            None => Why::MissingOrStale,
        };
        self.refresh(now, why).await?;
        self.cached(kid, now, max_age)
            .map(|(k, _)| k)
            .ok_or(TokenError::UnknownKey)
    }

    /// The cached key for `kid`, and whether the set is younger than `max_age`.
    fn cached(&self, kid: &str, now: i64, max_age: i64) -> Option<(DecodingKey, bool)> {
        let keys = self.inner.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys.by_kid.get(kid)?.clone();
        let fresh = keys.fetched_ms.is_some_and(|at| now - at < max_age);
        Some((key, fresh))
    }

    fn has_keys(&self) -> bool {
        let keys = self.inner.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.fetched_ms.is_some()
    }

    /// Fetches the key set unless the rate limit for `why` says not yet (see [`FetchTimes`]).
    /// Concurrent callers wait for the one fetch in flight, then find its result in the cache
    /// and do not fetch again (the time of that fetch is within the interval).
    async fn refresh(&self, now: i64, why: Why) -> Result<(), TokenError> {
        let mut times = self.inner.fetch.lock().await;
        let min = ms(self.inner.cfg.jwks_refresh_min_interval);
        let recent = |t: Option<i64>| t.is_some_and(|at| now - at < min);
        let too_soon = match why {
            Why::MissingOrStale => recent(times.last_attempt),
            Why::UnknownKid => recent(times.last_unknown_kid),
        };
        if too_soon {
            // Too soon: answer from what we have. With no keys at all, say why.
            let keys = self.inner.keys.read().unwrap_or_else(|e| e.into_inner());
            if keys.fetched_ms.is_none() {
                return Err(TokenError::KeysUnavailable(
                    "the last fetch failed; not retried yet".into(),
                ));
            }
            return Ok(());
        }
        times.last_attempt = Some(now);
        if why == Why::UnknownKid {
            times.last_unknown_kid = Some(now);
        }
        match self.fetch().await {
            Ok(by_kid) => {
                tracing::debug!(keys = by_kid.len(), "access token keys fetched");
                let mut keys = self.inner.keys.write().unwrap_or_else(|e| e.into_inner());
                *keys = Keys {
                    by_kid,
                    fetched_ms: Some(now),
                };
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch the access token keys");
                let keys = self.inner.keys.read().unwrap_or_else(|e| e.into_inner());
                if keys.fetched_ms.is_none() {
                    Err(e)
                } else {
                    Ok(())
                }
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, TokenError> {
        let unavailable = TokenError::KeysUnavailable;
        let resp = self
            .inner
            .http
            .get(&self.inner.jwks_url)
            .send()
            .await
            .map_err(|e| unavailable(crate::error::chain(&e)))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("the JWKS answered {}", resp.status())));
        }
        let set: JwkSet = resp
            .json()
            .await
            .map_err(|e| unavailable(format!("the JWKS is not a key set: {e}")))?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            // Only RSA signing keys meant for RS256 (or saying nothing about it).
            let rsa = matches!(jwk.algorithm, AlgorithmParameters::RSA(_));
            let alg_ok = jwk
                .common
                .key_algorithm
                .is_none_or(|a| a == KeyAlgorithm::RS256);
            let use_ok = jwk
                .common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == PublicKeyUse::Signature);
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if rsa && alg_ok && use_ok {
                if let Ok(k) = DecodingKey::from_jwk(jwk) {
                    by_kid.insert(kid, k);
                }
            }
        }
        Ok(by_kid)
    }
}

/// Reads the header before anything else: the algorithm must be RS256 (read as a plain string,
/// so `none` and unknown names are refused here rather than by a parser's accident) and a `kid`
/// must be there.
fn pinned_header(token: &str) -> Result<String, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let raw = URL_SAFE_NO_PAD
        .decode(h.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed)?;
    #[derive(Deserialize)]
    struct Header {
        alg: Option<String>,
        kid: Option<String>,
    }
    let header: Header = serde_json::from_slice(&raw).map_err(|_| TokenError::Malformed)?;
    let alg = header.alg.unwrap_or_default();
    if alg != "RS256" {
        // Bounded and sanitised: the value is attacker-written and ends up in logs.
        let shown: String = alg
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        return Err(TokenError::Algorithm(shown));
    }
    header
        .kid
        .filter(|k| !k.is_empty())
        .ok_or(TokenError::NoKeyId)
}
