//! The `[console]` config section: the Okta OIDC client and session lifetimes.
//!
//! Why it exists: the console signs people in with the org's Okta (its own OIDC web app, not
//! the broker's API credential) and decides roles from Okta groups named here.
//!
//! What it must never do: accept a client secret from the file alone without the `*_file`/env
//! route, or print the secret (it is a `SecretString`).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::config::{resolve_secret, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The Okta issuer (`https://example.okta.com`). Empty: the console is off.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<PathBuf>,
    /// Where people reach the broker (`https://jit.example.com`); the redirect URI is this plus
    /// `/auth/callback`. Empty: `http://` + `server.listen`.
    pub public_url: String,
    /// Okta group ids whose members are console admins.
    pub admin_groups: Vec<String>,
    /// Okta group ids whose members may read the audit log and all grants.
    pub auditor_groups: Vec<String>,
    /// A session unused this long is over.
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: Duration,
    /// A session is over this long after sign-in, however busy.
    #[serde(with = "humantime_serde")]
    pub session_absolute_timeout: Duration,
    /// A sign-in must come back from Okta within this long.
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
}

impl ConsoleConfig {
    pub fn is_configured(&self) -> bool {
        !self.issuer.is_empty()
    }

    /// The groups that make a person admin or auditor: the console's, and the API's for Okta
    /// access tokens (one mapping for every channel a person signs in through).
    pub fn group_roles(&self) -> crate::authz::GroupRoles {
        crate::authz::GroupRoles {
            admin_groups: self.admin_groups.clone(),
            auditor_groups: self.auditor_groups.clone(),
        }
    }

    pub(crate) fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        resolve_secret(
            "console.client_secret",
            &mut self.client_secret,
            &self.client_secret_file,
        )
    }

    /// Checks serde cannot express; every message names its key.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !self.is_configured() {
            return errors;
        }
        let groups = self
            .admin_groups
            .iter()
            .map(|g| ("console.admin_groups", g));
        let groups = groups.chain(
            self.auditor_groups
                .iter()
                .map(|g| ("console.auditor_groups", g)),
        );
        for (key, value, what) in [
            ("console.issuer", &self.issuer, "your Okta org URL"),
            (
                "console.client_id",
                &self.client_id,
                "the console app's client id",
            ),
        ]
        .into_iter()
        .chain(groups.map(|(k, g)| (k, g, "an Okta group id (`00g…`)")))
        {
            if value.contains(crate::policy::validate::PLACEHOLDER) {
                errors.push(crate::okta::config::placeholder(key, what));
            }
        }
        match url::Url::parse(&self.issuer) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u)
                if u.scheme() == "http"
                    && matches!(u.host_str(), Some("127.0.0.1") | Some("localhost")) => {}
            _ => errors.push(ConfigError::invalid(
                "console.issuer",
                "expected an https:// URL (http:// only for loopback, okta-sim)",
            )),
        }
        if self.client_id.is_empty() {
            errors.push(ConfigError::invalid(
                "console.client_id",
                "required when console.issuer is set",
            ));
        }
        if self.client_secret.is_none() {
            errors.push(ConfigError::invalid(
                "console.client_secret",
                "required when console.issuer is set (JIT_CONSOLE__CLIENT_SECRET or console.client_secret_file)",
            ));
        }
        if !self.public_url.is_empty()
            && !url::Url::parse(&self.public_url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            errors.push(ConfigError::invalid(
                "console.public_url",
                "expected an http(s):// URL",
            ));
        }
        for (key, d) in [
            ("console.session_idle_timeout", self.session_idle_timeout),
            (
                "console.session_absolute_timeout",
                self.session_absolute_timeout,
            ),
            ("console.login_timeout", self.login_timeout),
        ] {
            if d < Duration::from_secs(1) {
                errors.push(ConfigError::invalid(key, "must be at least 1s"));
            }
        }
        errors
    }
}
