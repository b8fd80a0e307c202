//! The `[okta]` configuration section: where the org is, how the broker authenticates to it, and
//! how hard it may push on it.
//!
//! Why it exists: the Okta client is the only component holding an Okta credential, so its
//! settings (and their validation) live next to it rather than in the general config.
//!
//! What it must never do: accept an API token or a private key in a form that ends up in logs
//! (both are `SecretString`s), or send a credential over cleartext HTTP to anything but loopback.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::PLACEHOLDER;
use crate::config::{resolve_secret, ConfigError};

/// An example config's `REPLACE_ME` left in place, named as such (the value is not secret).
pub(crate) fn placeholder(key: &str, what: &str) -> ConfigError {
    ConfigError::invalid(
        key,
        format!("still the example's `{PLACEHOLDER}` placeholder: set {what}"),
    )
}

/// How the broker proves who it is to Okta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OktaAuthMethod {
    /// `Authorization: SSWS <api token>`; the token acts as the admin who created it.
    Ssws,
    /// OAuth 2.0 client credentials with `private_key_jwt` (an Okta API service app).
    Oauth,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OktaConfig {
    /// The org URL, `https://example.okta.com`. Empty means Okta is not configured.
    pub base_url: String,
    pub auth: OktaAuthMethod,
    #[serde(default)]
    pub api_token: Option<SecretString>,
    #[serde(default)]
    pub api_token_file: Option<PathBuf>,
    /// OAuth service app client id (also the principal whose roles the probe reads).
    pub client_id: String,
    /// PEM (PKCS#1 or PKCS#8) RSA private key registered on the service app.
    #[serde(default)]
    pub private_key: Option<SecretString>,
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// `kid` of the key in the app's JWKS; empty sends no `kid`.
    pub key_id: String,
    pub scopes: Vec<String>,
    /// An access token is replaced this long before it expires.
    #[serde(with = "humantime_serde")]
    pub token_refresh_margin: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Whole-request timeout, per attempt.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Requests in flight at once from this replica (Okta allows ~75 per org).
    pub max_in_flight: usize,
    /// Attempts after the first for retryable failures (transport, timeout, 5xx, 429).
    pub max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Upper bound of the random delay added after a rate-limit reset, so replicas that were
    /// all refused do not come back in the same millisecond.
    #[serde(with = "humantime_serde")]
    pub rate_limit_jitter: Duration,
    /// Waited after a window's announced reset before assuming a fresh budget; covers the
    /// whole-second rounding of `X-Rate-Limit-Reset`.
    #[serde(with = "humantime_serde")]
    pub rate_limit_reset_margin: Duration,
    /// `limit` asked for on list calls (capped per endpoint at Okta's maximum).
    pub page_size: u32,
    /// Percent of each rate-limit bucket the read lane (the sync, inventory reads) may spend;
    /// the rest of every window stays for revocations and grants.
    pub read_share: u32,
}

impl OktaConfig {
    /// Okta is optional: a broker without it serves the API but cannot grant.
    pub fn is_configured(&self) -> bool {
        !self.base_url.trim().is_empty()
    }

    pub(crate) fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        resolve_secret("okta.api_token", &mut self.api_token, &self.api_token_file)?;
        resolve_secret(
            "okta.private_key",
            &mut self.private_key,
            &self.private_key_file,
        )?;
        Ok(())
    }

    /// Checks serde cannot express; every message names its key.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.max_in_flight == 0 || self.max_in_flight > 75 {
            errors.push(ConfigError::invalid(
                "okta.max_in_flight",
                "must be between 1 and 75 (Okta's per-org concurrency limit)",
            ));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            errors.push(ConfigError::invalid(
                "okta.request_timeout",
                "request_timeout and connect_timeout must be greater than zero",
            ));
        }
        if self.backoff_base.is_zero() || self.backoff_max < self.backoff_base {
            errors.push(ConfigError::invalid(
                "okta.backoff_max",
                "backoff_base must be > 0 and backoff_max >= backoff_base",
            ));
        }
        if self.page_size == 0 || self.page_size > 1000 {
            errors.push(ConfigError::invalid(
                "okta.page_size",
                "must be between 1 and 1000",
            ));
        }
        if self.read_share == 0 || self.read_share > 100 {
            errors.push(ConfigError::invalid(
                "okta.read_share",
                "must be a percentage between 1 and 100",
            ));
        }
        if !self.is_configured() {
            return errors;
        }
        if self.base_url.contains(PLACEHOLDER) {
            errors.push(placeholder("okta.base_url", "your Okta org URL"));
        } else if let Err(m) = check_base_url(&self.base_url) {
            errors.push(ConfigError::invalid("okta.base_url", m));
        }
        if self.client_id.contains(PLACEHOLDER) {
            errors.push(placeholder("okta.client_id", "the service app's client id"));
        }
        match self.auth {
            OktaAuthMethod::Ssws => {
                if self.api_token.is_none() {
                    errors.push(ConfigError::invalid(
                        "okta.api_token",
                        "required when okta.auth = \"ssws\" (set JIT_OKTA__API_TOKEN or okta.api_token_file)",
                    ));
                }
            }
            OktaAuthMethod::Oauth => {
                if self.client_id.trim().is_empty() {
                    errors.push(ConfigError::invalid(
                        "okta.client_id",
                        "required when okta.auth = \"oauth\"",
                    ));
                }
                match &self.private_key {
                    None => errors.push(ConfigError::invalid(
                        "okta.private_key",
                        "required when okta.auth = \"oauth\" (PEM; or okta.private_key_file)",
                    )),
                    Some(k) => {
                        if jsonwebtoken::EncodingKey::from_rsa_pem(k.expose_secret().as_bytes())
                            .is_err()
                        {
                            // Never echo the key: only say what is wrong with it.
                            errors.push(ConfigError::invalid(
                                "okta.private_key",
                                "not a PEM RSA private key",
                            ));
                        }
                    }
                }
                if self.scopes.is_empty() {
                    errors.push(ConfigError::invalid(
                        "okta.scopes",
                        "must name at least one scope (e.g. okta.groups.manage)",
                    ));
                }
            }
        }
        errors
    }
}

/// `https://` anywhere; `http://` only to loopback (the simulator), since the request carries
/// the credential.
pub(crate) fn check_base_url(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err("must be https:// (http:// is accepted only for loopback)".into()),
        _ => return Err("must be an https:// URL".into()),
    }
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err("must be the bare org URL, like https://example.okta.com".into());
    }
    Ok(url)
}
