//! The credential on every Okta request: an SSWS API token, or an OAuth access token obtained
//! with a `private_key_jwt` client assertion and cached until shortly before it expires.
//!
//! Why it exists: both kinds of credential must look the same to the rest of the client, and
//! the OAuth token must be fetched once per lifetime, not once per request (the token endpoint
//! has its own small rate limit).
//!
//! What it must never do: let a token or the private key reach a log line, an error message or
//! `Debug` output. Header values are marked sensitive so HTTP tracing redacts them.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::config::{OktaAuthMethod, OktaConfig};
use super::error::OktaError;
use crate::clock::Clock;

pub(crate) enum Credentials {
    Ssws(SecretString),
    Oauth(Box<OauthClient>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Ssws(_) => f.write_str("Ssws([REDACTED])"),
            Credentials::Oauth(o) => f
                .debug_struct("Oauth")
                .field("client_id", &o.client_id)
                .field("scopes", &o.scopes)
                .finish_non_exhaustive(),
        }
    }
}

pub(crate) struct OauthClient {
    pub client_id: String,
    key: EncodingKey,
    key_id: Option<String>,
    pub scopes: Vec<String>,
    token_url: url::Url,
    refresh_margin_ms: i64,
    /// Held across the token fetch, so concurrent callers wait for one fetch (single flight).
    cached: Mutex<Option<CachedToken>>,
}

struct CachedToken {
    token: SecretString,
    /// Local ms after which we fetch a new one.
    refresh_at_ms: i64,
    /// Scopes the server granted (may be fewer than asked).
    scopes: Vec<String>,
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl Credentials {
    pub fn from_config(cfg: &OktaConfig, base: &url::Url) -> Result<Credentials, OktaError> {
        match cfg.auth {
            OktaAuthMethod::Ssws => {
                let token = cfg
                    .api_token
                    .clone()
                    .ok_or_else(|| OktaError::Config("okta.api_token is not set".into()))?;
                Ok(Credentials::Ssws(token))
            }
            OktaAuthMethod::Oauth => {
                let pem = cfg
                    .private_key
                    .as_ref()
                    .ok_or_else(|| OktaError::Config("okta.private_key is not set".into()))?;
                let key =
                    EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes()).map_err(|_| {
                        OktaError::Config("okta.private_key is not a PEM RSA key".into())
                    })?;
                let token_url = base
                    .join("/oauth2/v1/token")
                    .map_err(|e| OktaError::Config(format!("okta.base_url: {e}")))?;
                Ok(Credentials::Oauth(Box::new(OauthClient {
                    client_id: cfg.client_id.clone(),
                    key,
                    key_id: (!cfg.key_id.is_empty()).then(|| cfg.key_id.clone()),
                    scopes: cfg.scopes.clone(),
                    token_url,
                    refresh_margin_ms: i64::try_from(cfg.token_refresh_margin.as_millis())
                        .unwrap_or(60_000),
                    cached: Mutex::new(None),
                })))
            }
        }
    }

    /// The `Authorization` header value, fetching an OAuth token when needed.
    pub async fn header(
        &self,
        http: &reqwest::Client,
        clock: &Clock,
    ) -> Result<HeaderValue, OktaError> {
        let mut v = match self {
            Credentials::Ssws(t) => HeaderValue::try_from(format!("SSWS {}", t.expose_secret())),
            Credentials::Oauth(o) => {
                let token = o.token(http, clock).await?;
                HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
            }
        }
        .map_err(|_| OktaError::Config("the Okta credential contains invalid characters".into()))?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// After a 401: drop a cached OAuth token so the next call fetches a new one. Returns
    /// whether anything was dropped (an SSWS token cannot be renewed by us).
    pub async fn invalidate(&self) -> bool {
        match self {
            Credentials::Ssws(_) => false,
            Credentials::Oauth(o) => o.cached.lock().await.take().is_some(),
        }
    }

    /// Scopes granted to the current OAuth token (None for SSWS).
    pub async fn granted_scopes(
        &self,
        http: &reqwest::Client,
        clock: &Clock,
    ) -> Result<Option<Vec<String>>, OktaError> {
        match self {
            Credentials::Ssws(_) => Ok(None),
            Credentials::Oauth(o) => {
                o.token(http, clock).await?;
                Ok(o.cached.lock().await.as_ref().map(|c| c.scopes.clone()))
            }
        }
    }
}

impl OauthClient {
    async fn token(
        &self,
        http: &reqwest::Client,
        clock: &Clock,
    ) -> Result<SecretString, OktaError> {
        let mut cached = self.cached.lock().await;
        let now = clock.now_ms();
        if let Some(c) = cached.as_ref() {
            if now < c.refresh_at_ms {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.fetch(http, now).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn fetch(&self, http: &reqwest::Client, now_ms: i64) -> Result<CachedToken, OktaError> {
        let iat = now_ms / 1000;
        let claims = Assertion {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: self.token_url.as_str(),
            iat,
            // Okta accepts assertions valid for at most an hour; five minutes is plenty for one
            // POST and limits what a captured assertion is worth (the jti makes it single-use).
            exp: iat + 300,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let assertion =
            jsonwebtoken::encode(&header, &claims, &self.key).map_err(OktaError::Signing)?;
        let scope = self.scopes.join(" ");
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        let resp = http
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(OktaError::from_reqwest)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(OktaError::from_reqwest)?;
        metrics::counter!("jit_okta_token_fetches_total", "outcome" => if status == 200 { "ok" } else { "error" })
            .increment(1);
        if status != 200 {
            let e: Option<TokenError> = serde_json::from_slice(&body).ok();
            let error = e
                .map(|e| {
                    format!("{} {}", e.error, e.error_description)
                        .trim()
                        .to_string()
                })
                .unwrap_or_else(|| "no OAuth error body".into());
            return Err(OktaError::TokenEndpoint { status, error });
        }
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|source| OktaError::Decode {
                op: "oauth_token",
                source,
            })?;
        let lifetime_ms = t.expires_in.unwrap_or(3600).max(1) * 1000;
        // Refresh `margin` before expiry, but never later than half the lifetime (short-lived
        // tokens would otherwise be refreshed after they had already expired).
        let margin = self.refresh_margin_ms.min(lifetime_ms / 2);
        Ok(CachedToken {
            token: SecretString::from(t.access_token),
            refresh_at_ms: now_ms + lifetime_ms - margin,
            scopes: t
                .scope
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_else(|| self.scopes.clone()),
        })
    }
}
