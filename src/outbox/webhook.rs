//! Outbound events: notifications POSTed to configured HTTP endpoints, signed in the Standard
//! Webhooks format.
//!
//! Why it exists: SIEMs, ticketing systems and chat bots other than Slack react to requests and
//! grants. Each endpoint is its own outbox channel (`webhook:<name>`), so a dead endpoint delays
//! no other, and its events arrive in order. The body is `{type, timestamp, data}`; `webhook-id`
//! is the notification's id, the same on every retry, so a receiver drops repeats.
//!
//! What it must never do: follow redirects to another host, send to a non-loopback `http://`
//! URL (the body describes who holds what access), or log the secret or the endpoint's URL (it
//! may carry a credential: errors name the endpoint by its `name`).

use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Deserialize;

use crate::clock::Clock;
use crate::config::ConfigError;
use crate::notify::{Deliverer, DeliveryError, Notification};
use crate::webhooks::{WebhookSecret, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};

/// One configured endpoint, as written in `[[outbound.endpoints]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Names the channel (`webhook:<name>`) in metrics, logs and the dead letters.
    pub name: String,
    pub url: String,
    /// `whsec_…` (several, space-separated, while rotating: every signature is sent).
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub secret_file: Option<std::path::PathBuf>,
    /// Event types to send (`grant.revoked`, `request.*`); empty or `["*"]`: all.
    #[serde(default)]
    pub events: Vec<String>,
}

/// The `[outbound]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    pub endpoints: Vec<EndpointConfig>,
    /// Per delivery attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl OutboundConfig {
    /// Offline checks, naming the key of each problem.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let key = |k: &str| format!("outbound.endpoints[{i}].{k}");
            if !crate::config::valid_name(&e.name) {
                errors.push(ConfigError::invalid(
                    key("name"),
                    "1 to 64 letters, digits, `-` or `_`",
                ));
            }
            if !names.insert(e.name.clone()) {
                errors.push(ConfigError::invalid(key("name"), "defined more than once"));
            }
            if let Err(m) = check_url(&e.url) {
                errors.push(ConfigError::invalid(key("url"), m));
            }
            match (&e.secret, &e.secret_file) {
                (Some(_), Some(_)) => errors.push(ConfigError::invalid(
                    key("secret"),
                    "give `secret` or `secret_file`, not both",
                )),
                (None, None) => errors.push(ConfigError::invalid(
                    key("secret"),
                    "required (`whsec_…`), from the environment or `secret_file`",
                )),
                (Some(s), None) => {
                    if let Err(err) = WebhookSecret::parse_many(s) {
                        errors.push(ConfigError::invalid(key("secret"), err.to_string()));
                    }
                }
                (None, Some(_)) => {}
            }
            for ev in &e.events {
                let known = ev == "*"
                    || crate::notify::kinds::ALL.contains(&ev.as_str())
                    || ev.strip_suffix(".*").is_some_and(|p| {
                        crate::notify::kinds::ALL
                            .iter()
                            .any(|k| k.starts_with(&format!("{p}.")))
                    });
                if !known {
                    errors.push(ConfigError::invalid(
                        key("events"),
                        format!(
                            "unknown event type `{ev}` (known: {})",
                            crate::notify::kinds::ALL.join(", ")
                        ),
                    ));
                }
            }
        }
        errors
    }
}

/// `https://…`, or `http://` to a loopback host (tests, a local relay).
fn check_url(u: &str) -> Result<(), String> {
    let url = url::Url::parse(u).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("`http://` is allowed only for loopback; use `https://`".into())
            }
        }
        s => Err(format!("unsupported scheme `{s}`")),
    }
}

/// Delivers to one endpoint.
pub struct WebhookEndpoint {
    channel: String,
    url: String,
    secrets: Vec<WebhookSecret>,
    events: Vec<String>,
    http: reqwest::Client,
    clock: Clock,
}

impl WebhookEndpoint {
    /// Builds the endpoint; `secret` is the resolved secret text (from the env or its file).
    pub fn new(
        cfg: &EndpointConfig,
        secret: &SecretString,
        timeout: Duration,
        clock: Clock,
    ) -> Result<WebhookEndpoint, ConfigError> {
        let secrets = WebhookSecret::parse_many(secret).map_err(|e| {
            ConfigError::invalid(
                format!("outbound.endpoints.{}.secret", cfg.name),
                e.to_string(),
            )
        })?;
        check_url(&cfg.url)
            .map_err(|m| ConfigError::invalid(format!("outbound.endpoints.{}.url", cfg.name), m))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                ConfigError::invalid(format!("outbound.endpoints.{}", cfg.name), e.to_string())
            })?;
        Ok(WebhookEndpoint {
            channel: format!("webhook:{}", cfg.name),
            url: cfg.url.clone(),
            secrets,
            events: cfg.events.clone(),
            http,
            clock,
        })
    }
}

/// The body an endpoint receives.
pub fn body(n: &Notification) -> serde_json::Value {
    serde_json::json!({
        "type": n.kind,
        "timestamp": crate::clock::ms_to_datetime(n.created_at).to_rfc3339(),
        "data": n.payload,
    })
}

#[async_trait]
impl Deliverer for WebhookEndpoint {
    fn channel(&self) -> &str {
        &self.channel
    }

    fn wants(&self, kind: &str) -> bool {
        // Approval-progress updates are for people watching a message, not for other systems.
        if kind == crate::notify::kinds::REQUEST_APPROVAL_RECORDED {
            return self.events.iter().any(|e| e == kind);
        }
        self.events.is_empty()
            || self.events.iter().any(|e| {
                e == "*"
                    || e == kind
                    || e.strip_suffix(".*")
                        .is_some_and(|p| kind.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
            })
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(&body(n))
            .map_err(|e| DeliveryError::Permanent(format!("cannot encode the event: {e}")))?;
        let ts = self.clock.now_ms() / 1000;
        let signature = self
            .secrets
            .iter()
            .map(|s| s.sign(&n.id, ts, &body))
            .collect::<Vec<_>>()
            .join(" ");
        let resp = self
            .http
            .post(&self.url)
            .header(HEADER_ID, &n.id)
            .header(HEADER_TIMESTAMP, ts.to_string())
            .header(HEADER_SIGNATURE, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            // Without the URL: it may carry a credential, and this message is stored as the
            // delivery's `last_error`, logged and shown on the dead-letter page.
            .map_err(|e| DeliveryError::Retry {
                message: format!(
                    "cannot reach the endpoint: {}",
                    crate::redact::http_error(e)
                ),
                after: None,
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(3600)));
        // 410 Gone is the receiver saying "stop"; everything else may recover.
        if status == reqwest::StatusCode::GONE {
            return Err(DeliveryError::Permanent(format!(
                "endpoint answered {status}"
            )));
        }
        Err(DeliveryError::Retry {
            message: format!("endpoint answered {status}"),
            after,
        })
    }
}
