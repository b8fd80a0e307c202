//! The aggregate configuration: every module's section under one `Config`, loaded from the
//! three layers (see [`crate::config`]) and checked as a whole.
//!
//! Why it lives here, at the top: the aggregate names every module's section, so only the app
//! wiring may know it. Each module below owns its own section type and its own checks; the
//! foundation `config` module only knows how to read layers and secrets.
//!
//! What it must never do: accept a key it does not know, or put a secret's value in an error.

use std::path::Path;

use serde::Deserialize;

use crate::api::auth::AuthConfig;
use crate::config::{resolve_secret, ConfigError, DatabaseConfig, LogConfig, RedisConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: crate::config::ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub scheduler: crate::scheduler::SchedulerConfig,
    pub policy: crate::policy::PolicyConfig,
    pub okta: crate::okta::OktaConfig,
    pub access_tokens: crate::okta::jwt::AccessTokensConfig,
    pub requests: crate::requests::RequestsConfig,
    #[serde(default)]
    pub oncall: crate::oncall::OncallConfig,
    pub console: crate::console::ConsoleConfig,
    pub notify: crate::notify::NotifyConfig,
    pub outbox: crate::outbox::OutboxConfig,
    pub outbound: crate::outbox::webhook::OutboundConfig,
    pub callbacks: crate::callbacks::CallbacksConfig,
    pub events: crate::events::EventsConfig,
    pub sync: crate::sync::SyncConfig,
    pub slack: crate::slack::SlackConfig,
    pub reviews: crate::reviews::ReviewsConfig,
    pub audit: crate::audit::checkpoint::AuditConfig,
}

impl Config {
    /// Defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Config::load`] but with an explicit environment, so tests need not mutate the
    /// process's (which races between parallel tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Vec<ConfigError>> {
        let report = Self::load_report(file, env);
        match report.config {
            Some(config) if report.errors.is_empty() => Ok(config),
            _ => Err(report.errors),
        }
    }

    /// Reads every layer and checks everything it can, collecting every problem instead of
    /// stopping at the first: a broken layer is left out and the rest still read; when the
    /// aggregate cannot be built, each section is read on its own so each names its problem;
    /// every secret is resolved and the whole validated. For `check-config`, which also wants
    /// the policy section (to check the policy file) when something else is wrong.
    pub fn load_report(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> LoadReport {
        let (figment, mut errors) = crate::config::layers(file, env, crate::cli::CLI_ENV_VARS);
        let policy =
            crate::config::extract_section::<crate::policy::PolicyConfig>(&figment, "policy").ok();
        let mut config = match crate::config::extract::<Config>(&figment) {
            Ok(config) => config,
            Err(first) => {
                let mut found = first;
                for e in section_errors(&figment) {
                    let text = e.to_string();
                    if !found.iter().any(|f| f.to_string() == text) {
                        found.push(e);
                    }
                }
                errors.extend(found);
                return LoadReport {
                    config: None,
                    errors,
                    policy,
                };
            }
        };
        errors.extend(config.resolve_secrets());
        errors.extend(config.validate());
        let policy = Some(config.policy.clone());
        LoadReport {
            config: Some(config),
            errors,
            policy,
        }
    }

    /// Every secret's `*_file` read; one error per section that has a problem.
    fn resolve_secrets(&mut self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut keep = |r: Result<(), ConfigError>| {
            if let Err(e) = r {
                errors.push(e);
            }
        };
        keep(resolve_secret(
            "database.password",
            &mut self.database.password,
            &self.database.password_file,
        ));
        keep(self.okta.resolve_secrets());
        keep(self.console.resolve_secrets());
        for (i, e) in self.outbound.endpoints.iter_mut().enumerate() {
            keep(resolve_secret(
                &format!("outbound.endpoints[{i}].secret"),
                &mut e.secret,
                &e.secret_file,
            ));
            // Resolved: the file's content is now the secret; `validate` checks one form.
            e.secret_file = None;
        }
        keep(self.callbacks.resolve_secrets());
        keep(self.events.resolve_secrets());
        keep(self.slack.resolve_secrets());
        keep(self.audit.resolve_secrets());
        keep(self.oncall.resolve_secrets());
        errors
    }

    /// Checks that serde cannot express. Collects every problem so `check-config` can print all.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.server.request_timeout.is_zero() {
            errors.push(ConfigError::invalid(
                "server.request_timeout",
                "must be greater than zero",
            ));
        }
        if self.server.body_limit_bytes < 1024 || self.server.body_limit_bytes > 64 * 1024 * 1024 {
            errors.push(ConfigError::invalid(
                "server.body_limit_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        if let Some(m) = self.server.metrics_listen {
            // Port 0 picks a free port for each: never the same socket.
            if m == self.server.listen && m.port() != 0 {
                errors.push(ConfigError::invalid(
                    "server.metrics_listen",
                    "must differ from server.listen (it moves /metrics off the main listener)",
                ));
            }
        }
        let db = &self.database.url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            errors.push(ConfigError::invalid(
                "database.url",
                "expected `sqlite://FILE`, `sqlite::memory:` or `postgres://…`",
            ));
        }
        if self.database.max_connections == 0 {
            errors.push(ConfigError::invalid(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if let Err(msg) = crate::redis_conn::RedisTopology::parse(&self.redis.url) {
            errors.push(ConfigError::invalid("redis.url", msg));
        }
        if self.redis.key_prefix.is_empty()
            || !self
                .redis
                .key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c))
        {
            errors.push(ConfigError::invalid(
                "redis.key_prefix",
                "must be non-empty and use only letters, digits, `-`, `_`, `:` and `.`",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            errors.push(ConfigError::invalid(
                "log.level",
                "expected a level (`info`) or filter directives (`jit_broker=debug,info`)",
            ));
        }
        for (i, t) in self.auth.tokens.iter().enumerate() {
            let ok = t.sha256.len() == 64 && t.sha256.chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                errors.push(ConfigError::invalid(
                    format!("auth.tokens[{i}].sha256"),
                    "expected 64 hex digits: the SHA-256 of the token, never the token itself",
                ));
            }
            if t.roles.is_empty() {
                errors.push(ConfigError::invalid(
                    format!("auth.tokens[{i}].roles"),
                    "must name at least one role",
                ));
            }
        }
        errors.extend(self.scheduler.validate());
        errors.extend(self.sync.validate());
        errors.extend(self.okta.validate());
        errors.extend(self.access_tokens.validate());
        if self.access_tokens.is_enabled() && !self.okta.is_configured() {
            errors.push(ConfigError::invalid(
                "access_tokens.issuer",
                "needs [okta] configured: the person behind a token and their groups are read from Okta",
            ));
        }
        errors.extend(self.console.validate());
        errors.extend(self.outbound.validate());
        errors.extend(self.callbacks.validate());
        if self.outbox.max_attempts == 0 || self.outbox.max_attempts > 100 {
            errors.push(ConfigError::invalid(
                "outbox.max_attempts",
                "must be between 1 and 100",
            ));
        }
        if self.outbox.backoff_base.is_zero() || self.outbox.backoff_base > self.outbox.backoff_max
        {
            errors.push(ConfigError::invalid(
                "outbox.backoff_base",
                "must be greater than zero and at most `outbox.backoff_max`",
            ));
        }
        if self.outbox.concurrency == 0 || self.outbox.concurrency > 64 {
            errors.push(ConfigError::invalid(
                "outbox.concurrency",
                "must be between 1 and 64",
            ));
        }
        if self.notify.poll_interval < std::time::Duration::from_millis(10) {
            errors.push(ConfigError::invalid(
                "notify.poll_interval",
                "must be at least 10ms",
            ));
        }
        if self.requests.check_interval < std::time::Duration::from_millis(10) {
            errors.push(ConfigError::invalid(
                "requests.check_interval",
                "must be at least 10ms",
            ));
        }
        errors.extend(self.events.validate());
        errors.extend(self.slack.validate());
        errors.extend(self.reviews.validate());
        errors.extend(self.audit.validate());
        errors.extend(self.oncall.validate());
        errors
    }
}

/// What [`Config::load_report`] found.
pub struct LoadReport {
    /// The configuration, when every section could be read (it may still have `errors`).
    pub config: Option<Config>,
    /// Every problem found, in the order of the layers and sections.
    pub errors: Vec<ConfigError>,
    /// The policy section, when it could be read, so the policy file can be checked too.
    pub policy: Option<crate::policy::PolicyConfig>,
}

/// Each section read on its own: serde stops at the first problem of the whole aggregate, so a
/// typo in `[server]` would hide a bad value in `[okta]`.
fn section_errors(figment: &figment::Figment) -> Vec<ConfigError> {
    use crate::config::extract_section as section;
    let mut out = Vec::new();
    macro_rules! check {
        ($($key:literal => $ty:ty),* $(,)?) => {
            $(
                if let Err(e) = section::<$ty>(figment, $key) {
                    out.extend(e);
                }
            )*
        };
    }
    check!(
        "server" => crate::config::ServerConfig,
        "database" => DatabaseConfig,
        "redis" => RedisConfig,
        "log" => LogConfig,
        "auth" => AuthConfig,
        "scheduler" => crate::scheduler::SchedulerConfig,
        "policy" => crate::policy::PolicyConfig,
        "okta" => crate::okta::OktaConfig,
        "access_tokens" => crate::okta::jwt::AccessTokensConfig,
        "requests" => crate::requests::RequestsConfig,
        "console" => crate::console::ConsoleConfig,
        "notify" => crate::notify::NotifyConfig,
        "outbox" => crate::outbox::OutboxConfig,
        "outbound" => crate::outbox::webhook::OutboundConfig,
        "callbacks" => crate::callbacks::CallbacksConfig,
        "events" => crate::events::EventsConfig,
        "sync" => crate::sync::SyncConfig,
        "slack" => crate::slack::SlackConfig,
        "reviews" => crate::reviews::ReviewsConfig,
        "oncall" => crate::oncall::OncallConfig,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;

    #[test]
    fn defaults_load() {
        let c = Config::load_with_env(None, Vec::new()).unwrap();
        assert_eq!(c.redis.url, "redis://127.0.0.1:6379");
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn env_overrides_nested_key() {
        let c = Config::load_with_env(None, vec![("JIT_REDIS__KEY_PREFIX".into(), "other".into())])
            .unwrap();
        assert_eq!(c.redis.key_prefix, "other");
    }
}
