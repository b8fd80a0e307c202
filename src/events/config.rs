//! The `[events]` configuration section: how Okta event hook deliveries are authenticated and
//! how the inbox is worked off.
//!
//! What it must never do: let a secret reach logs or `Debug` (they are `SecretString`s), or
//! require a secret in a file that is committed (env or `*_file` only).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::config::{resolve_secret, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// The header Okta sends the secret in (registered with the hook), matched
    /// case-insensitively.
    pub auth_header: String,
    /// The secret Okta sends in `auth_header`. Absent: every delivery is refused (401).
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// A second accepted secret, for rotation: deliveries with either are accepted.
    #[serde(default)]
    pub previous_secret: Option<SecretString>,
    #[serde(default)]
    pub previous_secret_file: Option<PathBuf>,
    /// Also revoke a user's grants on `user.account.lock`.
    pub revoke_on_lock: bool,
    /// Processing attempts before an event is dead-lettered.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// How long a replica holds a claimed event before another may take it over.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Events processed at once per replica (different users; one user's are in order).
    pub concurrency: u32,
    /// How often an idle worker looks at the inbox (deliveries wake it at once on this replica).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long processed and dropped events are kept (for deduplication and `GET /v1/events`)
    /// before they are deleted. Pending, in-process and dead events are never deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// An event whose `published` is older than this when it arrives is stored as `stale` and
    /// not acted on (a replay, or a forgery dated in the past). At most `retention`: beyond it
    /// a replayed event would no longer be recognised as a duplicate and still be in the window.
    #[serde(with = "humantime_serde", default = "default_max_age")]
    pub max_age: Duration,
    /// How far in the future (our clock) an event's `published` may be and still be acted on;
    /// later is `stale` too (Okta's clock and ours differ by seconds, not minutes).
    #[serde(with = "humantime_serde", default = "default_max_skew")]
    pub max_skew: Duration,
}

fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_max_skew() -> Duration {
    Duration::from_secs(5 * 60)
}

impl EventsConfig {
    pub(crate) fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        resolve_secret("events.secret", &mut self.secret, &self.secret_file)?;
        resolve_secret(
            "events.previous_secret",
            &mut self.previous_secret,
            &self.previous_secret_file,
        )?;
        Ok(())
    }

    /// Errors name the key (`events.lease`).
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut need = |ok: bool, key: &str, msg: &str| {
            if !ok {
                errors.push(ConfigError::invalid(format!("events.{key}"), msg));
            }
        };
        need(
            axum::http::HeaderName::from_bytes(self.auth_header.as_bytes()).is_ok(),
            "auth_header",
            "must be a valid HTTP header name",
        );
        need(
            (1..=100).contains(&self.max_attempts),
            "max_attempts",
            "must be between 1 and 100",
        );
        need(
            !self.backoff_base.is_zero() && self.backoff_max >= self.backoff_base,
            "backoff_max",
            "backoff_base must be > 0 and backoff_max >= backoff_base",
        );
        need(
            self.lease >= Duration::from_secs(1),
            "lease",
            "must be at least 1s",
        );
        need(
            (1..=1024).contains(&self.concurrency),
            "concurrency",
            "must be between 1 and 1024",
        );
        need(
            !self.poll_interval.is_zero() && self.poll_interval <= Duration::from_secs(60),
            "poll_interval",
            "must be greater than zero and at most 60s",
        );
        // Okta retries a failed delivery once and may deliver late: at least a day, so that a
        // late redelivery is still recognised as one; beyond ten years is a typo.
        need(
            self.retention >= Duration::from_secs(86_400)
                && self.retention <= Duration::from_secs(10 * 366 * 86_400),
            "retention",
            "must be between 1d and 10 years",
        );
        // Okta delivers within seconds and retries once, so a minute is the least that keeps
        // real deliveries. An event is acted on until `published + max_age`, and `published`
        // may be up to `max_skew` ahead of its arrival, whose row is kept for `retention`:
        // `max_age + max_skew` beyond `retention` would let a replay outlive its duplicate row.
        need(
            self.max_age >= Duration::from_secs(60)
                && self.max_age.saturating_add(self.max_skew) <= self.retention,
            "max_age",
            "must be at least 1m, and with events.max_skew at most events.retention",
        );
        need(
            self.max_skew <= Duration::from_secs(3600),
            "max_skew",
            "must be at most 1h",
        );
        errors
    }
}
