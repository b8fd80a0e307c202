//! The one Slack Web API client: every call the broker makes to Slack goes through here.
//!
//! Why it exists: Slack answers failures in three ways (HTTP 429 with `Retry-After`, 5xx, and a
//! 200 with `{"ok": false, "error": code}`), and each caller must not re-decide which of them is
//! worth retrying. Posts to one channel are spaced by `slack.channel_interval` (Slack allows about
//! one message per second per channel), and a 429 pushes that channel's next slot back by its
//! `Retry-After`, so a burst is slowed here rather than refused by Slack.
//!
//! What it must never do: log or return the bot token, follow a `response_url` that is not
//! Slack's (or the configured API host's), or retry forever: callers that a person waits on get
//! `slack.max_retries`, notifications return the error to the outbox, which owns retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;

use super::config::SlackConfig;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SlackError {
    #[error("Slack rate-limited the call")]
    RateLimited { after: Option<Duration> },
    #[error("Slack answered HTTP {0}")]
    Server(u16),
    #[error("Slack answered HTTP {0}")]
    Http(u16),
    #[error("Slack refused the call: {0}")]
    Api(String),
    #[error("Slack could not be reached: {0}")]
    Transport(String),
    #[error("Slack's answer was not the expected JSON")]
    InvalidResponse,
    #[error("refusing to call a response_url outside Slack")]
    ForeignUrl,
}

/// `ok:false` codes that a later attempt may not get: Slack's own trouble and rate limits.
const RETRYABLE_CODES: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "team_added_to_org",
];

impl SlackError {
    pub fn is_retryable(&self) -> bool {
        match self {
            SlackError::RateLimited { .. } | SlackError::Server(_) | SlackError::Transport(_) => {
                true
            }
            SlackError::Api(code) => RETRYABLE_CODES.contains(&code.as_str()),
            SlackError::Http(_) | SlackError::InvalidResponse | SlackError::ForeignUrl => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SlackError::RateLimited { after } => *after,
            _ => None,
        }
    }

    /// The `ok:false` code, when that is what failed.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            SlackError::Api(c) => Some(c),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct SlackClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    interval: Duration,
    max_retries: u32,
    /// Per channel: the earliest time the next post may go out.
    next_slot: Mutex<HashMap<String, Instant>>,
}

impl SlackClient {
    pub fn new(cfg: &SlackConfig) -> Result<Self, SlackError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SlackError::Transport(e.to_string()))?;
        Ok(SlackClient {
            inner: Arc::new(Inner {
                http,
                base: cfg.api_base_url.trim_end_matches('/').to_string(),
                token: cfg
                    .bot_token
                    .clone()
                    .unwrap_or_else(|| SecretString::from(String::new())),
                interval: cfg.channel_interval,
                max_retries: cfg.max_retries,
                next_slot: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// One call with a JSON body (`chat.postMessage`, `chat.update`, `views.open`), no retry.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let req = self
            .inner
            .http
            .post(format!("{}/{method}", self.inner.base))
            .bearer_auth(self.inner.token.expose_secret())
            .json(body);
        self.send(method, req).await
    }

    /// One call with form fields (`users.info`, `users.lookupByEmail` do not take JSON).
    pub async fn call_form(
        &self,
        method: &str,
        form: &[(&str, &str)],
    ) -> Result<Value, SlackError> {
        let req = self
            .inner
            .http
            .post(format!("{}/{method}", self.inner.base))
            .bearer_auth(self.inner.token.expose_secret())
            .form(form);
        self.send(method, req).await
    }

    /// A call a person is waiting on: retried on 429 (after `Retry-After`) and 5xx with a short
    /// backoff, up to `slack.max_retries` times.
    pub async fn call_retrying(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let mut attempt = 0;
        loop {
            match self.call(method, body).await {
                Err(e) if e.is_retryable() && attempt < self.inner.max_retries => {
                    attempt += 1;
                    let wait = e
                        .retry_after()
                        .unwrap_or(Duration::from_millis(200 * 2u64.pow(attempt)));
                    tokio::time::sleep(wait.min(Duration::from_secs(30))).await;
                }
                r => return r,
            }
        }
    }

    /// Posts to `channel` once its pacing slot comes. A 429 moves the channel's next slot.
    pub async fn post_paced(&self, channel: &str, body: &Value) -> Result<Value, SlackError> {
        self.wait_slot(channel).await;
        self.call_paced_result(channel, self.call("chat.postMessage", body).await)
    }

    /// `chat.update` under the same per-channel pacing (updates count against the channel too).
    pub async fn update_paced(&self, channel: &str, body: &Value) -> Result<Value, SlackError> {
        self.wait_slot(channel).await;
        self.call_paced_result(channel, self.call("chat.update", body).await)
    }

    fn call_paced_result(
        &self,
        channel: &str,
        r: Result<Value, SlackError>,
    ) -> Result<Value, SlackError> {
        if let Err(SlackError::RateLimited { after: Some(a) }) = &r {
            if let Ok(mut m) = self.inner.next_slot.lock() {
                let until = Instant::now() + *a;
                let e = m.entry(channel.to_string()).or_insert(until);
                *e = (*e).max(until);
            }
        }
        r
    }

    async fn wait_slot(&self, channel: &str) {
        let slot = {
            let Ok(mut m) = self.inner.next_slot.lock() else {
                return;
            };
            // Bounded memory: slots in the past carry no information.
            if m.len() > 10_000 {
                let now = Instant::now();
                m.retain(|_, t| *t > now);
            }
            let now = Instant::now();
            let slot = m.get(channel).copied().unwrap_or(now).max(now);
            m.insert(channel.to_string(), slot + self.inner.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Answers through a command's or a click's `response_url`. Only Slack's own hosts (and the
    /// configured API host, for tests) are called: the URL comes from the payload.
    pub async fn respond(&self, response_url: &str, body: &Value) -> Result<(), SlackError> {
        if !self.response_url_allowed(response_url) {
            return Err(SlackError::ForeignUrl);
        }
        let mut attempt = 0;
        loop {
            let r = self.inner.http.post(response_url).json(body).send().await;
            let res = match r {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => classify_status(&resp),
                Err(e) => SlackError::Transport(e.without_url().to_string()),
            };
            if !res.is_retryable() || attempt >= self.inner.max_retries {
                return Err(res);
            }
            attempt += 1;
            let wait = res
                .retry_after()
                .unwrap_or(Duration::from_millis(200 * 2u64.pow(attempt)));
            tokio::time::sleep(wait.min(Duration::from_secs(30))).await;
        }
    }

    pub fn response_url_allowed(&self, raw: &str) -> bool {
        let Ok(u) = url::Url::parse(raw) else {
            return false;
        };
        let slack = u.scheme() == "https"
            && u.host_str()
                .is_some_and(|h| h == "slack.com" || h.ends_with(".slack.com"));
        let ours = url::Url::parse(&self.inner.base).is_ok_and(|b| {
            b.scheme() == u.scheme() && b.host_str() == u.host_str() && b.port() == u.port()
        });
        slack || ours
    }

    async fn send(&self, method: &str, req: reqwest::RequestBuilder) -> Result<Value, SlackError> {
        let r = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                count(method, "transport");
                return Err(SlackError::Transport(e.without_url().to_string()));
            }
        };
        if !r.status().is_success() {
            let e = classify_status(&r);
            count(method, error_label(&e));
            return Err(e);
        }
        let v: Value = match r.json().await {
            Ok(v) => v,
            Err(_) => {
                count(method, "invalid_response");
                return Err(SlackError::InvalidResponse);
            }
        };
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            count(method, "ok");
            return Ok(v);
        }
        let code = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error")
            .to_string();
        count(method, "api_error");
        Err(SlackError::Api(code))
    }
}

fn classify_status(r: &reqwest::Response) -> SlackError {
    let status = r.status().as_u16();
    if status == 429 {
        let after = r
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        SlackError::RateLimited { after }
    } else if status >= 500 {
        SlackError::Server(status)
    } else {
        SlackError::Http(status)
    }
}

fn error_label(e: &SlackError) -> &'static str {
    match e {
        SlackError::RateLimited { .. } => "rate_limited",
        SlackError::Server(_) => "server_error",
        _ => "http_error",
    }
}

/// `jit_slack_api_calls_total{method, outcome}`.
fn count(method: &str, outcome: &'static str) {
    metrics::counter!("jit_slack_api_calls_total", "method" => method.to_string(), "outcome" => outcome)
        .increment(1);
}
