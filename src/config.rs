//! Runtime configuration: built-in defaults, an optional TOML file, then `JIT_` environment
//! variables, in that order of precedence.
//!
//! Why it exists: operators must be able to run the broker from a Kubernetes manifest with no
//! file at all, and to review a file in git with no secret in it. So every key has a default or
//! an environment override, and every secret has a `*_file` twin that points at a mounted secret.
//!
//! Environment values are text; each takes the type of its key's built-in default (see
//! `env_value`). So every key whose value is a number, a boolean or a list needs a default in
//! `config/default.toml` (durations are strings and need none); keys without one (secrets,
//! `*_file` paths) are read as strings.
//!
//! What it must never do: accept a key it does not know (a typo in `drift = "enforce"` silently
//! ignored is a security bug), or put a secret's value into an error message or `Debug` output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The defaults, compiled into the binary so `serve` works with no file present.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variables with this prefix override keys; `__` separates sections.
pub const ENV_PREFIX: &str = "JIT_";

/// Everything that can be wrong with a configuration. Each message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} cannot be read: {source}")]
    FileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("`{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("`{key}`: secret file {path} cannot be read: {source}")]
    SecretFile {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// When set, `/metrics` is served only on this address (a second listener, e.g. on a
    /// private interface) and no longer on `listen`.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Not a secret field on purpose: a password belongs in `password`/`password_file`, so the
    /// URL can be logged. A password inside the URL is still redacted by `Store` when logging.
    pub url: String,
    pub max_connections: u32,
    pub migrate_on_start: bool,
    #[serde(default)]
    pub password: Option<SecretString>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    pub key_prefix: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// The example configuration and policies for a real org (deploy/kubernetes) mark what each org
/// fills in with `REPLACE_ME_…`; such a value gets one error saying so instead of a format error.
pub const PLACEHOLDER: &str = "REPLACE_ME";

/// Lowercase hex SHA-256 of a token: what operators put in `auth.tokens[].sha256`, so the
/// configuration never holds a usable credential.
pub fn hash_token(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A name for something configured as a list (an integration, an endpoint): it appears in
/// channel names, metrics and the audit log, so 1 to 64 ASCII letters, digits, `-` and `_`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

/// Reads `value_file` into `value` when the value itself is absent. Having both is an error: the
/// operator would not know which one is in force.
pub fn resolve_secret(
    key: &str,
    value: &mut Option<SecretString>,
    value_file: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    match (value.as_ref(), value_file) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            key,
            format!("give either `{key}` or `{key}_file`, not both"),
        )),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                key: key.to_string(),
                path: path.clone(),
                source,
            })?;
            // Mounted secrets usually end with a newline the secret does not contain.
            let trimmed = text.trim_end_matches(['\n', '\r']).to_string();
            if trimmed.is_empty() {
                return Err(ConfigError::invalid(key, "secret file is empty"));
            }
            *value = Some(SecretString::from(trimmed));
            Ok(())
        }
        (Some(v), None) if v.expose_secret().is_empty() => {
            Err(ConfigError::invalid(key, "secret is empty"))
        }
        _ => Ok(()),
    }
}

/// A provider with a name of our choosing, so an error says "from config file x.toml" or "from
/// environment variable JIT_A__B" rather than "from TOML source string".
struct Named<P> {
    inner: P,
    metadata: Metadata,
}

impl<P: Provider> Named<P> {
    fn new(inner: P, metadata: Metadata) -> Self {
        Named { inner, metadata }
    }
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// Environment values are strings; they take the type of the key's built-in default, so
/// `JIT_DATABASE__MAX_CONNECTIONS=5` is a number while `JIT_DATABASE__PASSWORD=12345` stays the
/// string it is (guessing from the text would turn a numeric secret into a number and fail).
/// Keys without a default (secrets, `*_file` paths, unknown keys) are strings. A value that does
/// not parse as the default's type stays a string, so the error says what was expected. A list
/// or table that is not valid TOML is an error naming the place, never quoting the value (these
/// keys carry inline secrets: `JIT_CALLBACKS__INTEGRATIONS`, `JIT_SLACK__SIGNING_SECRETS`).
fn env_value(defaults: &Figment, key: &str, raw: &str) -> Result<Value, String> {
    let typed = match defaults.find_value(key) {
        Ok(Value::Bool(..)) => raw.parse::<bool>().map(Value::from).ok(),
        Ok(Value::Num(..)) => raw
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| raw.parse::<f64>().map(Value::from))
            .ok(),
        // Lists and tables (`JIT_AUTH__TOKENS='[{name="a", …}]'`) are written as TOML values.
        Ok(d @ (Value::Array(..) | Value::Dict(..))) => {
            let what = if matches!(d, Value::Array(..)) {
                "a TOML list such as `[\"a\", \"b\"]`"
            } else {
                "a TOML table such as `{ a = 1 }`"
            };
            let text = format!("v = {raw}");
            let mut t = text.parse::<toml::Table>().map_err(|e| {
                format!(
                    "expected {what}; not valid TOML at {}",
                    crate::redact::toml_error(&text, &e)
                )
            })?;
            let v = t.remove("v").ok_or_else(|| format!("expected {what}"))?;
            Some(Value::serialize(v).map_err(|_| format!("expected {what}"))?)
        }
        _ => None,
    };
    Ok(typed.unwrap_or_else(|| Value::from(raw.to_string())))
}

fn describe_figment_error(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let source = e
        .metadata
        .as_ref()
        .map(|md| match &md.source {
            Some(src) => format!(" (from {} {src})", md.name),
            None => format!(" (from {})", md.name),
        })
        .unwrap_or_default();
    let full = |field: &str| {
        // figment already appends the offending field to the path for unknown fields.
        if key.is_empty() {
            field.to_string()
        } else if e.path.last().is_some_and(|l| l == field) {
            key.clone()
        } else {
            format!("{key}.{field}")
        }
    };
    // Never the value (see `crate::redact`); under a secret-bearing key not even an unknown
    // key's name, which may be a misplaced secret.
    let secret = crate::redact::is_secret_key(&e.path);
    match &e.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            // A key name of lowercase letters and `_` is shown; anything else there may be a
            // secret written where a key belongs.
            let plain =
                field.len() <= 32 && field.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            let shown = if secret && !plain {
                let at = match e.path.last() {
                    Some(l) if l == field => &e.path[..e.path.len() - 1],
                    _ => &e.path[..],
                };
                format!("{} (a key, name not shown)", at.join("."))
            } else {
                full(field)
            };
            let section = if e.path.len() > 1 {
                format!("`{}`", e.path[..e.path.len() - 1].join("."))
            } else {
                "the top level".to_string()
            };
            format!(
                "`{}`: unknown key{source}; {section} accepts {}",
                shown,
                expected
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        figment::error::Kind::MissingField(field) => {
            format!("`{}`: missing key{source}", full(field))
        }
        kind => {
            let msg = plain_types(&crate::redact::figment_kind(kind, secret));
            if key.is_empty() {
                format!("{msg}{source}")
            } else {
                format!("`{key}`: {msg}{source}")
            }
        }
    }
}

/// Rust type names in serde's messages mean little to an operator.
fn plain_types(msg: &str) -> String {
    let mut out = msg.to_string();
    for (from, to) in [
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u64", "expected a non-negative whole number"),
        ("expected usize", "expected a non-negative whole number"),
        ("expected i64", "expected a whole number"),
        ("expected a boolean", "expected `true` or `false`"),
        (
            "expected a duration",
            "expected a duration such as \"30s\", \"5m\" or \"1h\"",
        ),
        (
            "invalid socket address syntax",
            "expected a socket address such as \"127.0.0.1:8080\" or \"[::]:8080\"",
        ),
    ] {
        out = out.replace(from, to);
    }
    out
}

/// Reads the three layers (built-in defaults, `file` if given, then `env`'s `JIT_*` variables,
/// later wins) into `T`, the application's aggregate of every module's section. Variables named
/// in `skip` belong to the command line (`JIT_CONFIG`), not to a key. Errors name the key and
/// where its value came from.
pub fn load_layers<T: serde::de::DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    skip: &[&str],
) -> Result<T, Vec<ConfigError>> {
    let (figment, mut errors) = layers(file, env, skip);
    match extract::<T>(&figment) {
        Ok(t) if errors.is_empty() => Ok(t),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.extend(e);
            Err(errors)
        }
    }
}

/// The three layers merged, and every problem found while reading them: an unreadable or
/// malformed file, every malformed `JIT_*` variable. A layer with a problem is left out and
/// the others are still read, so `check-config` can list everything wrong at once; the errors
/// come back beside the figment instead of stopping at the first.
pub fn layers(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    skip: &[&str],
) -> (Figment, Vec<ConfigError>) {
    let defaults = Figment::new().merge(Named::new(
        Toml::string(DEFAULT_TOML),
        Metadata::named("built-in defaults"),
    ));
    let mut figment = defaults.clone();
    let mut errors = Vec::new();
    if let Some(path) = file {
        // Read it ourselves: figment treats a missing file as empty, and a missing file the
        // operator named is an error, not a silent fallback to defaults.
        match std::fs::read_to_string(path) {
            Err(source) => errors.push(ConfigError::FileUnreadable {
                path: path.to_path_buf(),
                source,
            }),
            // Checked here first: TOML's own error quotes the offending line, which may hold a
            // secret; ours names only the place.
            Ok(text) => match text.parse::<toml::Table>() {
                Err(e) => errors.push(ConfigError::Parse(format!(
                    "config file {}: not valid TOML at {}",
                    path.display(),
                    crate::redact::toml_error(&text, &e)
                ))),
                Ok(_) => {
                    figment = figment.merge(Named::new(
                        Toml::string(&text),
                        Metadata::from("config file", path),
                    ));
                }
            },
        }
    }
    let mut vars: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        if !k.starts_with(ENV_PREFIX) || skip.contains(&k.as_str()) {
            continue;
        }
        // Every key lives in a section, so a `JIT_` variable without `__` is a typo
        // (`JIT_REDIS_URL` for `JIT_REDIS__URL`) that would otherwise be silently ignored.
        if !k.contains("__") {
            errors.push(ConfigError::invalid(
                k.clone(),
                "unknown environment variable: config keys are `JIT_SECTION__KEY`",
            ));
            continue;
        }
        vars.push((k, v));
    }
    // figment's `Env` provider reads the process environment; we feed the given variables
    // through the same mapping (`JIT_A__B` → `a.b`) so tests can pass their own. Each
    // variable is its own provider so an error names the variable it came from.
    vars.sort();
    for (name, raw) in &vars {
        let key = name[ENV_PREFIX.len()..]
            .to_ascii_lowercase()
            .replace("__", ".");
        let value = match env_value(&defaults, &key, raw) {
            Ok(v) => v,
            Err(what) => {
                errors.push(ConfigError::invalid(
                    key.clone(),
                    format!("{what} (from environment variable {name})"),
                ));
                continue;
            }
        };
        figment = figment.merge(Named::new(
            figment::providers::Serialized::default(&key, value),
            Metadata::named(format!("environment variable {name}")),
        ));
    }
    (figment, errors)
}

/// The whole figment as `T`. serde stops at the first problem, so this names one; see
/// [`extract_section`] for one per section.
pub fn extract<T: serde::de::DeserializeOwned>(figment: &Figment) -> Result<T, Vec<ConfigError>> {
    figment.extract().map_err(|e| {
        e.into_iter()
            .map(|e| ConfigError::Parse(describe_figment_error(&e)))
            .collect::<Vec<_>>()
    })
}

/// The section `key` (a top-level table) as `T`, with errors named by their full key
/// (`server.request_timeout`): deserializing each section on its own finds a problem in every
/// section, where the whole aggregate stops at the first.
pub fn extract_section<T: serde::de::DeserializeOwned>(
    figment: &Figment,
    key: &str,
) -> Result<T, Vec<ConfigError>> {
    figment.focus(key).extract().map_err(|e| {
        e.into_iter()
            .map(|mut e| {
                e.path.insert(0, key.to_string());
                ConfigError::Parse(describe_figment_error(&e))
            })
            .collect::<Vec<_>>()
    })
}
