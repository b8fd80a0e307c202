//! The `[slack]` config section.
//!
//! Why it exists: the Slack channel needs a bot token, the app's signing secrets (several during
//! a rotation), where the Web API is (tests point it at a fake) and a few delivery settings.
//!
//! What it must never do: require a secret in a file, or show one in `Debug` or an error.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::{resolve_secret, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// `xoxb-…`; Slack is off until it and a signing secret are set.
    #[serde(default)]
    pub bot_token: Option<SecretString>,
    #[serde(default)]
    pub bot_token_file: Option<PathBuf>,
    /// Every secret accepted on inbound requests: the current one, and the previous one while a
    /// rotation is under way.
    #[serde(default)]
    pub signing_secrets: Vec<SecretString>,
    /// A file with one signing secret per line (a mounted secret).
    #[serde(default)]
    pub signing_secrets_file: Option<PathBuf>,
    /// The Web API, `https://slack.com/api`; `http://` only for loopback (tests).
    pub api_base_url: String,
    /// Channel id for approval messages of resources without `slack_channel`, and for drift alerts.
    pub default_channel: String,
    /// The console's base URL, for the "Approve in console" button of step-up resources.
    pub console_url: String,
    /// How long a Slack user's mapping to an Okta user is trusted before it is read again.
    #[serde(with = "humantime_serde")]
    pub identity_cache_ttl: Duration,
    /// Messages to one channel are spaced by this much (Slack allows about one per second).
    #[serde(with = "humantime_serde")]
    pub channel_interval: Duration,
    /// Per Web API call.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Retries of a 429 or 5xx for calls made while a person waits (modals, ephemeral answers);
    /// notifications are retried by the outbox instead.
    pub max_retries: u32,
    /// Workspace ids (`T…`) requests may come from; once set, every other workspace is refused.
    /// Empty: any workspace (a warning), users of another workspace than the request's refused.
    pub team_ids: Vec<String>,
    /// Enterprise Grid organisation id (`E…`); once set, requests must come from it.
    pub enterprise_id: String,
    /// The Slack app's id (`A…`); once set, requests must carry it as `api_app_id`.
    pub app_id: String,
    /// Workspace guests (`is_restricted`, `is_ultra_restricted`) may use the broker. Off: they
    /// are refused, since guests are usually outsiders with an account in the workspace.
    pub allow_guests: bool,
}

impl SlackConfig {
    /// Slack is on when it can both verify inbound requests and call the Web API.
    pub fn is_configured(&self) -> bool {
        self.bot_token.is_some() && !self.signing_secrets.is_empty()
    }

    pub(crate) fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        resolve_secret("slack.bot_token", &mut self.bot_token, &self.bot_token_file)?;
        if let Some(path) = &self.signing_secrets_file {
            if !self.signing_secrets.is_empty() {
                return Err(ConfigError::invalid(
                    "slack.signing_secrets",
                    "give either `slack.signing_secrets` or `slack.signing_secrets_file`, not both",
                ));
            }
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                key: "slack.signing_secrets".into(),
                path: path.clone(),
                source,
            })?;
            self.signing_secrets = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| SecretString::from(l.to_string()))
                .collect();
            if self.signing_secrets.is_empty() {
                return Err(ConfigError::invalid(
                    "slack.signing_secrets",
                    "secret file is empty",
                ));
            }
        }
        Ok(())
    }

    /// What a security review would want set; `check-config` prints these and `serve` logs them.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.is_configured() {
            return w;
        }
        if self.team_ids.is_empty() && self.enterprise_id.is_empty() {
            w.push(
                "`slack.team_ids` is empty: requests signed for any Slack workspace the app is \
                 installed in are accepted (users of another workspace than the request's are \
                 still refused); set it to your workspace id(s), or `slack.enterprise_id`"
                    .to_string(),
            );
        }
        if self.app_id.is_empty() {
            w.push(
                "`slack.app_id` is empty: requests are not checked to be for this app \
                 (`api_app_id`); set it to the app's id (A…)"
                    .to_string(),
            );
        }
        w
    }

    /// Checks serde cannot express; every message names its key.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let id = |s: &str, first: u8| {
            (2..=32).contains(&s.len())
                && s.as_bytes()[0] == first
                && s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        };
        if self.team_ids.iter().any(|t| !id(t, b'T')) {
            errors.push(ConfigError::invalid(
                "slack.team_ids",
                "expected Slack workspace ids such as T0123ABCD",
            ));
        }
        if !self.enterprise_id.is_empty() && !id(&self.enterprise_id, b'E') {
            errors.push(ConfigError::invalid(
                "slack.enterprise_id",
                "expected a Slack organisation id such as E0123ABCD, or empty",
            ));
        }
        if !self.app_id.is_empty() && !id(&self.app_id, b'A') {
            errors.push(ConfigError::invalid(
                "slack.app_id",
                "expected a Slack app id such as A0123ABCD, or empty",
            ));
        }
        if self
            .signing_secrets
            .iter()
            .any(|s| s.expose_secret().trim().is_empty())
        {
            errors.push(ConfigError::invalid(
                "slack.signing_secrets",
                "a signing secret is empty",
            ));
        }
        if self.bot_token.is_some() == self.signing_secrets.is_empty() {
            errors.push(ConfigError::invalid(
                "slack.bot_token",
                "set both the bot token and at least one signing secret, or neither",
            ));
        }
        match url::Url::parse(&self.api_base_url) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" && is_loopback(&u) => {}
            _ => errors.push(ConfigError::invalid(
                "slack.api_base_url",
                "expected an https:// URL (http:// only for loopback)",
            )),
        }
        if !self.console_url.is_empty() && url::Url::parse(&self.console_url).is_err() {
            errors.push(ConfigError::invalid(
                "slack.console_url",
                "expected an absolute URL or empty",
            ));
        }
        if !self.default_channel.is_empty() && !is_channel_id(&self.default_channel) {
            errors.push(ConfigError::invalid(
                "slack.default_channel",
                "expected a Slack channel id such as C0123ABCD",
            ));
        }
        if self.request_timeout.is_zero() {
            errors.push(ConfigError::invalid(
                "slack.request_timeout",
                "must be greater than zero",
            ));
        }
        if self.max_retries > 10 {
            errors.push(ConfigError::invalid(
                "slack.max_retries",
                "must be at most 10",
            ));
        }
        if self.channel_interval > Duration::from_secs(60) {
            errors.push(ConfigError::invalid(
                "slack.channel_interval",
                "must be at most 60s",
            ));
        }
        errors
    }
}

pub(crate) fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Slack conversation ids: `C…`, `G…` (private), `D…` (DM), upper-case letters and digits.
pub fn is_channel_id(s: &str) -> bool {
    (2..=32).contains(&s.len())
        && matches!(s.as_bytes()[0], b'C' | b'G' | b'D')
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}
