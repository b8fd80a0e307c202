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
use crate::config::{
    resolve_secret, ConfigError, DatabaseConfig, LogConfig, RedisConfig, ServerConfig,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub scheduler: crate::scheduler::SchedulerConfig,
    pub policy: crate::policy::PolicyConfig,
    pub okta: crate::okta::OktaConfig,
    pub access_tokens: crate::okta::jwt::AccessTokensConfig,
    pub requests: crate::requests::RequestsConfig,
    pub console: crate::console::ConsoleConfig,
    pub notify: crate::notify::NotifyConfig,
    pub outbox: crate::outbox::OutboxConfig,
    pub outbound: crate::outbox::webhook::OutboundConfig,
    pub callbacks: crate::callbacks::CallbacksConfig,
    pub events: crate::events::EventsConfig,
    pub sync: crate::sync::SyncConfig,
    pub slack: crate::slack::SlackConfig,
    pub reviews: crate::reviews::ReviewsConfig,
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
        let mut config: Config = crate::config::load_layers(file, env, crate::cli::CLI_ENV_VARS)?;
        config.resolve_secrets().map_err(|e| vec![e])?;
        let errors = config.validate();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        resolve_secret(
            "database.password",
            &mut self.database.password,
            &self.database.password_file,
        )?;
        self.okta.resolve_secrets()?;
        self.console.resolve_secrets()?;
        for (i, e) in self.outbound.endpoints.iter_mut().enumerate() {
            resolve_secret(
                &format!("outbound.endpoints[{i}].secret"),
                &mut e.secret,
                &e.secret_file,
            )?;
            // Resolved: the file's content is now the secret; `validate` checks one form.
            e.secret_file = None;
        }
        self.callbacks.resolve_secrets()?;
        self.events.resolve_secrets()?;
        self.slack.resolve_secrets()?;
        Ok(())
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
        errors
    }
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
