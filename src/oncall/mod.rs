//! Who is on call right now, read from PagerDuty, Opsgenie or Jira Service Management.
//!
//! Why it exists: a resource's `auto_approve.on_call` approves the person the live schedule says
//! is on call, not a hand-kept group. This module is the outside-system client (like `okta`): it
//! knows the vendors' paths, headers and shapes (see docs/oncall.md and [`vendors`]), matches the
//! requester by email, caches each schedule's answer for a few seconds
//! (`oncall.sources[].cache_ttl`) and stops calling a source that said 429 until its
//! `Retry-After` has passed. Whether an answer approves anything is decided in `requests`.
//!
//! What it must never do: turn a failure (timeout, 5xx, 429, an answer it cannot read) into an
//! "on call" answer, wait longer than the source's `timeout`, or print a token (they are
//! `SecretString`s, and errors never quote a request's headers).

pub mod vendors;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::{resolve_secret, valid_name, ConfigError, PLACEHOLDER};

/// The `[oncall]` config section: the on-call systems policies may name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OncallConfig {
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

/// Which vendor a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// PagerDuty REST API v2, `GET /oncalls`.
    Pagerduty,
    /// Opsgenie, `GET /v2/schedules/{id}/on-calls`.
    Opsgenie,
    /// Jira Service Management operations (Opsgenie's successor),
    /// `GET /jsm/ops/api/{cloudId}/v1/schedules/{id}/on-calls`.
    Jsm,
}

impl Vendor {
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Pagerduty => "pagerduty",
            Vendor::Opsgenie => "opsgenie",
            Vendor::Jsm => "jsm",
        }
    }

    fn default_base_url(self) -> &'static str {
        match self {
            Vendor::Pagerduty => "https://api.pagerduty.com",
            Vendor::Opsgenie => "https://api.opsgenie.com",
            Vendor::Jsm => "https://api.atlassian.com",
        }
    }
}

/// One on-call system (`[[oncall.sources]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// What policies call it (`auto_approve.on_call[].source`).
    pub name: String,
    pub kind: Vendor,
    /// The API's base; absent: the vendor's public one (Opsgenie's EU instance is
    /// `https://api.eu.opsgenie.com`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// PagerDuty: a REST API key; Opsgenie: an API integration's key; JSM: an Atlassian API
    /// token (with `user`).
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// JSM only: the Atlassian account email the API token belongs to (Basic auth).
    #[serde(default)]
    pub user: Option<String>,
    /// JSM only: the site's cloud id (the path's `{cloudId}`).
    #[serde(default)]
    pub cloud_id: Option<String>,
    /// JSM only: the Jira site (`https://example.atlassian.net`) whose user search turns the
    /// requester's email into the Atlassian account id the schedule answers with.
    #[serde(default)]
    pub site_url: Option<String>,
    /// The longest a request waits for this source before falling back to approvers.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long an answer is reused. Schedules change on the minute at the finest, so at most
    /// 60 s; `0s` asks every time.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(30)
}

impl OncallConfig {
    pub fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        for (i, s) in self.sources.iter_mut().enumerate() {
            resolve_secret(
                &format!("oncall.sources[{i}].token"),
                &mut s.token,
                &s.token_file,
            )?;
            s.token_file = None;
        }
        Ok(())
    }

    /// Checks serde cannot express; every problem names its key.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let key = |k: &str| format!("oncall.sources[{i}].{k}");
            if !valid_name(&s.name) {
                errors.push(ConfigError::invalid(
                    key("name"),
                    "1 to 64 ASCII letters, digits, `-` and `_`",
                ));
            } else if !names.insert(s.name.clone()) {
                errors.push(ConfigError::invalid(key("name"), "defined more than once"));
            }
            if s.token.is_none() {
                errors.push(ConfigError::invalid(
                    key("token"),
                    format!("required (set JIT_ONCALL__SOURCES or oncall.sources[{i}].token_file)"),
                ));
            }
            for (k, v) in [("base_url", &s.base_url), ("site_url", &s.site_url)] {
                if let Some(u) = v {
                    if u.contains(PLACEHOLDER) {
                        errors.push(ConfigError::invalid(
                            key(k),
                            "is a placeholder: replace it with the real URL",
                        ));
                    } else if !matches!(url::Url::parse(u), Ok(p) if matches!(p.scheme(), "http" | "https"))
                    {
                        errors.push(ConfigError::invalid(key(k), "expected an http(s) URL"));
                    }
                }
            }
            if s.kind == Vendor::Jsm {
                for (k, v) in [
                    ("user", &s.user),
                    ("cloud_id", &s.cloud_id),
                    ("site_url", &s.site_url),
                ] {
                    if v.as_deref().is_none_or(|v| v.trim().is_empty()) {
                        errors.push(ConfigError::invalid(
                            key(k),
                            "required for `kind = \"jsm\"`",
                        ));
                    }
                }
            } else {
                for (k, v) in [
                    ("user", &s.user),
                    ("cloud_id", &s.cloud_id),
                    ("site_url", &s.site_url),
                ] {
                    if v.is_some() {
                        errors.push(ConfigError::invalid(key(k), "only for `kind = \"jsm\"`"));
                    }
                }
            }
            if s.timeout < Duration::from_millis(100) || s.timeout > Duration::from_secs(30) {
                errors.push(ConfigError::invalid(
                    key("timeout"),
                    "must be between 100ms and 30s",
                ));
            }
            if s.cache_ttl > Duration::from_secs(60) {
                errors.push(ConfigError::invalid(
                    key("cache_ttl"),
                    "must be at most 60s (schedules change on the minute)",
                ));
            }
        }
        errors
    }
}

/// What a policy asks a source about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Schedule(String),
    /// PagerDuty only.
    EscalationPolicy(String),
}

impl Target {
    pub fn key(&self) -> &'static str {
        match self {
            Target::Schedule(_) => "schedule",
            Target::EscalationPolicy(_) => "escalation_policy",
        }
    }
    pub fn id(&self) -> &str {
        match self {
            Target::Schedule(s) | Target::EscalationPolicy(s) => s,
        }
    }
}

/// One person on call for a target, as the vendor names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCaller {
    /// PagerDuty's user email, Opsgenie's username (an email).
    pub email: Option<String>,
    /// JSM: the Atlassian account id.
    pub account_id: Option<String>,
    /// PagerDuty's escalation level (1 = first).
    pub level: Option<u32>,
}

/// A match: the requester is on call, at this level when the vendor has levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCallMatch {
    pub level: Option<u32>,
}

/// Why a source gave no verdict. Every one of them means "not auto-approved".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OncallError {
    #[error("on-call source `{0}` is not configured")]
    UnknownSource(String),
    #[error("on-call source `{src}` did not answer within {timeout}")]
    Timeout { src: String, timeout: String },
    #[error("on-call source `{src}` is rate-limiting the broker (retry in {retry_after_s}s)")]
    RateLimited { src: String, retry_after_s: u64 },
    #[error("on-call source `{src}` answered HTTP {status}: {message}")]
    Status {
        src: String,
        status: u16,
        message: String,
    },
    #[error("on-call source `{src}` cannot be reached: {message}")]
    Unreachable { src: String, message: String },
    #[error("on-call source `{src}` answered something unreadable: {message}")]
    Malformed { src: String, message: String },
}

struct Source {
    cfg: SourceConfig,
    base: String,
}

type Roster = Arc<Vec<OnCaller>>;

/// The on-call client. Cheap to clone.
#[derive(Clone)]
pub struct Oncall {
    inner: Arc<Inner>,
}

/// A JSM account lookup: (read at ms, the account id, if any).
type CachedAccount = (i64, Option<String>);

struct Inner {
    sources: HashMap<String, Source>,
    clock: Clock,
    http: reqwest::Client,
    /// (source, target) → (read at ms, who was on call).
    rosters: Mutex<HashMap<(String, Target), (i64, Roster)>>,
    /// (source, email) → (read at ms, account id) for JSM.
    accounts: Mutex<HashMap<(String, String), CachedAccount>>,
    /// source → no calls before this ms (a 429's `Retry-After`).
    quiet_until: Mutex<HashMap<String, i64>>,
    calls: AtomicU64,
}

/// A 429 without `Retry-After` keeps the source quiet this long.
const DEFAULT_RETRY_AFTER_S: u64 = 30;
/// Entries kept per cache before it is cleared rather than grown.
const MAX_CACHED: usize = 10_000;

impl Oncall {
    pub fn new(cfg: &OncallConfig, clock: Clock) -> Result<Self, OncallError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("jit-broker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OncallError::Unreachable {
                src: "*".into(),
                message: e.to_string(),
            })?;
        let sources = cfg
            .sources
            .iter()
            .map(|s| {
                let base = s
                    .base_url
                    .clone()
                    .unwrap_or_else(|| s.kind.default_base_url().to_string())
                    .trim_end_matches('/')
                    .to_string();
                (
                    s.name.clone(),
                    Source {
                        cfg: s.clone(),
                        base,
                    },
                )
            })
            .collect();
        Ok(Oncall {
            inner: Arc::new(Inner {
                sources,
                clock,
                http,
                rosters: Mutex::new(HashMap::new()),
                accounts: Mutex::new(HashMap::new()),
                quiet_until: Mutex::new(HashMap::new()),
                calls: AtomicU64::new(0),
            }),
        })
    }

    /// No sources: what a broker without `[oncall]` runs with.
    pub fn none(clock: Clock) -> Self {
        Oncall {
            inner: Arc::new(Inner {
                sources: HashMap::new(),
                clock,
                http: reqwest::Client::new(),
                rosters: Mutex::new(HashMap::new()),
                accounts: Mutex::new(HashMap::new()),
                quiet_until: Mutex::new(HashMap::new()),
                calls: AtomicU64::new(0),
            }),
        }
    }

    /// The configured sources' names and vendors.
    pub fn sources(&self) -> Vec<(String, Vendor)> {
        let mut v: Vec<_> = self
            .inner
            .sources
            .iter()
            .map(|(n, s)| (n.clone(), s.cfg.kind))
            .collect();
        v.sort();
        v
    }

    pub fn vendor(&self, source: &str) -> Option<Vendor> {
        self.inner.sources.get(source).map(|s| s.cfg.kind)
    }

    /// HTTP calls made to on-call systems so far (for the figures and tests).
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// Whether the person with `email` is on call for `target` now, at one of `levels` when
    /// given (PagerDuty escalation levels). `Ok(None)`: the source answered and they are not.
    pub async fn on_call(
        &self,
        source: &str,
        target: &Target,
        email: &str,
        levels: &[u32],
    ) -> Result<Option<OnCallMatch>, OncallError> {
        let src = self
            .inner
            .sources
            .get(source)
            .ok_or_else(|| OncallError::UnknownSource(source.to_string()))?;
        let email = email.trim().to_ascii_lowercase();
        let roster = self.roster(src, target).await?;
        let account = match src.cfg.kind {
            Vendor::Jsm => self.account_id(src, &email).await?,
            _ => None,
        };
        let level_ok = |l: Option<u32>| levels.is_empty() || l.is_some_and(|l| levels.contains(&l));
        let found = roster
            .iter()
            .filter(|o| {
                o.email
                    .as_deref()
                    .is_some_and(|e| e.trim().eq_ignore_ascii_case(&email))
                    || (account.is_some() && o.account_id == account)
            })
            .filter(|o| level_ok(o.level))
            .map(|o| o.level)
            .min_by_key(|l| l.unwrap_or(0));
        Ok(found.map(|level| OnCallMatch { level }))
    }

    /// One cheap read per source (`check-config --online`): the first page of its on-call list
    /// for a target that need not exist, or the vendor's error.
    pub async fn probe(&self, source: &str) -> Result<(), OncallError> {
        let src = self
            .inner
            .sources
            .get(source)
            .ok_or_else(|| OncallError::UnknownSource(source.to_string()))?;
        vendors::probe(self, src).await
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    fn ttl_ms(src: &Source) -> i64 {
        i64::try_from(src.cfg.cache_ttl.as_millis()).unwrap_or(i64::MAX)
    }

    async fn roster(&self, src: &Source, target: &Target) -> Result<Roster, OncallError> {
        let key = (src.cfg.name.clone(), target.clone());
        let now = self.now();
        if let Ok(cache) = self.inner.rosters.lock() {
            if let Some((at, r)) = cache.get(&key) {
                if now.saturating_sub(*at) < Self::ttl_ms(src) {
                    return Ok(r.clone());
                }
            }
        }
        let r: Roster = Arc::new(vendors::roster(self, src, target).await?);
        if let Ok(mut cache) = self.inner.rosters.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key, (now, r.clone()));
        }
        Ok(r)
    }

    async fn account_id(&self, src: &Source, email: &str) -> Result<Option<String>, OncallError> {
        let key = (src.cfg.name.clone(), email.to_string());
        let now = self.now();
        if let Ok(cache) = self.inner.accounts.lock() {
            if let Some((at, a)) = cache.get(&key) {
                if now.saturating_sub(*at) < Self::ttl_ms(src) {
                    return Ok(a.clone());
                }
            }
        }
        let a = vendors::jsm_account(self, src, email).await?;
        if let Ok(mut cache) = self.inner.accounts.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key, (now, a.clone()));
        }
        Ok(a)
    }

    /// Sends one GET with the source's timeout, counting it; a 429 silences the source until
    /// its `Retry-After`, and while silenced nothing is sent.
    async fn get(
        &self,
        src: &Source,
        req: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, OncallError> {
        let name = src.cfg.name.clone();
        let now = self.now();
        if let Some(until) = self
            .inner
            .quiet_until
            .lock()
            .ok()
            .and_then(|q| q.get(&name).copied())
        {
            if until > now {
                return Err(OncallError::RateLimited {
                    src: name,
                    retry_after_s: u64::try_from((until - now + 999) / 1000).unwrap_or(0),
                });
            }
        }
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        let timeout = src.cfg.timeout;
        let sent = req.timeout(timeout).send().await;
        let resp = sent.map_err(|e| transport_error(name.clone(), timeout, e))?;
        let status = resp.status();
        if status.as_u16() == 429 {
            let retry = vendors::retry_after(resp.headers()).unwrap_or(DEFAULT_RETRY_AFTER_S);
            if let Ok(mut q) = self.inner.quiet_until.lock() {
                let ms = i64::try_from(retry.saturating_mul(1000)).unwrap_or(i64::MAX);
                q.insert(name.clone(), self.now().saturating_add(ms));
            }
            return Err(OncallError::RateLimited {
                src: name,
                retry_after_s: retry,
            });
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| transport_error(name.clone(), timeout, e))?;
        if !status.is_success() {
            return Err(OncallError::Status {
                src: name,
                status: status.as_u16(),
                message: vendors::error_message(src.cfg.kind, &body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| OncallError::Malformed {
            src: name,
            message: e.to_string(),
        })
    }
}

/// A request or body that did not arrive: a timeout names the limit, anything else the error
/// without the URL (it may carry an id, never a secret, but the message stays short).
fn transport_error(src: String, timeout: std::time::Duration, e: reqwest::Error) -> OncallError {
    if e.is_timeout() {
        OncallError::Timeout {
            src,
            timeout: humantime::format_duration(timeout).to_string(),
        }
    } else {
        OncallError::Unreachable {
            src,
            message: e.without_url().to_string(),
        }
    }
}
