//! Slack: request, approve and be told without leaving Slack (slash command, buttons, modals,
//! direct messages).
//!
//! Why it exists: most people meet the broker in Slack. This module is a thin channel over the
//! requests domain: it proves a request came from Slack (signature on the raw bytes, replay
//! window, one use per delivery), maps the Slack user to their Okta user, calls
//! [`crate::requests::RequestService`] with `Actor::new(login, Channel::Slack)`, and turns the
//! answer into a sentence. What Slack must post is produced by the domain as notifications and
//! delivered by [`deliver::SlackDeliverer`] through the one [`client::SlackClient`].
//!
//! What it must never do: decide anything itself (eligibility, approvers, step-up, stages are the
//! domain's), parse a body before it is verified, answer Slack later than 3 s (slow work runs as
//! tracked tasks after the acknowledgement), or block a grant or an expiry on Slack.

pub mod blocks;
pub mod client;
mod commands;
pub mod config;
pub mod deliver;
pub mod identity;
mod interactions;
mod posts;
mod reviews;
pub mod verify;
pub mod workspace;

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use sqlx::Row;

pub use client::{SlackClient, SlackError};
pub use config::SlackConfig;
pub use deliver::SlackDeliverer;

use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::requests::RequestService;
use crate::store::Store;
use crate::tasks::Tasks;

/// Why an inbound Slack request was refused before anything happened.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("Slack is not configured on this broker")]
    NotConfigured,
    #[error("the request is not signed by Slack: {0}")]
    Unverified(#[from] verify::VerifyError),
    #[error("{0}")]
    Malformed(String),
    #[error("{0}; nothing was done")]
    Foreign(#[from] workspace::Foreign),
    #[error("the delivery could not be recorded")]
    Store(#[from] sqlx::Error),
}

impl ErrorCode for InboundError {
    fn status(&self) -> StatusCode {
        match self {
            InboundError::NotConfigured => StatusCode::NOT_FOUND,
            InboundError::Unverified(_) => StatusCode::UNAUTHORIZED,
            InboundError::Malformed(_) => StatusCode::BAD_REQUEST,
            InboundError::Foreign(_) => StatusCode::FORBIDDEN,
            InboundError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            InboundError::NotConfigured => "slack_not_configured",
            InboundError::Unverified(_) => "invalid_signature",
            InboundError::Malformed(_) => "invalid_payload",
            InboundError::Foreign(_) => "foreign_workspace",
            InboundError::Store(_) => "database_unavailable",
        }
    }
}

/// The Slack channel: cheap to clone.
#[derive(Clone)]
pub struct Slack {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: SlackConfig,
    client: SlackClient,
    identity: identity::Identity,
    requests: RequestService,
    store: Store,
    clock: Clock,
    tasks: Tasks,
}

/// Builds the Slack channel when `[slack]` is configured and there is a requests service to
/// act through; `None` otherwise (the routes then answer 404 `slack_not_configured`).
pub fn start(
    cfg: &SlackConfig,
    requests: Option<&RequestService>,
    tasks: &Tasks,
) -> Result<Option<Slack>, SlackError> {
    let Some(requests) = requests else {
        if cfg.is_configured() {
            tracing::warn!("[slack] is configured but Okta is not: Slack stays off");
        }
        return Ok(None);
    };
    if !cfg.is_configured() {
        return Ok(None);
    }
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    Ok(Some(Slack::new(cfg, requests.clone(), tasks.clone())?))
}

impl Slack {
    pub fn new(
        cfg: &SlackConfig,
        requests: RequestService,
        tasks: Tasks,
    ) -> Result<Self, SlackError> {
        let client = SlackClient::new(cfg)?;
        let clock = requests.clock().clone();
        let identity = identity::Identity::new(
            client.clone(),
            requests.clone(),
            clock.clone(),
            cfg.identity_cache_ttl,
            identity::Members {
                team_ids: cfg.team_ids.clone(),
                enterprise_id: cfg.enterprise_id.clone(),
                allow_guests: cfg.allow_guests,
            },
        );
        Ok(Slack {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                client,
                identity,
                store: requests.store().clone(),
                requests,
                clock,
                tasks,
            }),
        })
    }

    pub fn client(&self) -> &SlackClient {
        &self.inner.client
    }
    pub fn identity(&self) -> &identity::Identity {
        &self.inner.identity
    }
    pub fn requests(&self) -> &RequestService {
        &self.inner.requests
    }
    pub fn config(&self) -> &SlackConfig {
        &self.inner.cfg
    }

    /// The notification deliverer for channel `slack`, sharing this client and identity cache.
    pub fn deliverer(&self) -> SlackDeliverer {
        SlackDeliverer::new(self.clone())
    }

    /// Verifies a delivery's signature on the raw bytes (before anything is parsed).
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<String, InboundError> {
        let now = self.inner.clock.now_ms();
        verify::verify(&self.inner.cfg.signing_secrets, headers, body, now).map_err(|e| {
            inbound("rejected");
            e.into()
        })
    }

    /// Refuses an origin this broker does not serve (before anything is recorded), then records
    /// the delivery. `Ok(false)`: a replay, to be acknowledged and ignored.
    async fn admit(&self, sig: &str, origin: &workspace::Origin) -> Result<bool, InboundError> {
        if let Err(f) = workspace::check(&self.inner.cfg, origin) {
            inbound("foreign");
            tracing::warn!(team = ?origin.team_id, user_team = ?origin.user_team_id,
                enterprise = ?origin.enterprise_id, app = ?origin.app_id, reason = %f,
                "Slack request from an origin this broker does not serve refused");
            return Err(f.into());
        }
        let first =
            verify::first_delivery(&self.inner.store, sig, self.inner.clock.now_ms()).await?;
        if !first {
            inbound("replay");
        }
        Ok(first)
    }

    /// Runs `fut` after the acknowledgement, as a tracked task.
    fn later(&self, name: &str, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.inner.tasks.spawn(name, fut);
    }

    /// An ephemeral answer through a `response_url`; failures are logged (the person sees none).
    async fn answer(&self, response_url: &str, text: &str) {
        let body = json!({
            "response_type": "ephemeral", "replace_original": false,
            "text": text, "blocks": blocks::simple(&blocks::esc(text)),
        });
        if let Err(e) = self.inner.client.respond(response_url, &body).await {
            tracing::warn!(error = %e, "could not answer through Slack's response_url");
        }
    }

    /// The approval message of a request, if one was posted: (channel, ts).
    pub async fn message_of(
        &self,
        request_id: &str,
    ) -> Result<Option<(String, String)>, sqlx::Error> {
        let mut conn = self.inner.store.reads().acquire().await?;
        let row = sqlx::query("SELECT channel, ts FROM slack_messages WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(r) => Ok(Some((r.try_get("channel")?, r.try_get("ts")?))),
            None => Ok(None),
        }
    }
}

/// `jit_slack_inbound_total{outcome}`.
fn inbound(outcome: &'static str) {
    metrics::counter!("jit_slack_inbound_total", "outcome" => outcome).increment(1);
}

/// What Slack's hooks need: the channel itself, `None` unless `[slack]` and Okta are configured
/// (the hooks then answer 404).
#[derive(Clone)]
pub struct SlackState {
    pub slack: Option<Slack>,
}

fn slack_of(state: &SlackState) -> Result<&Slack, InboundError> {
    state.slack.as_ref().ok_or(InboundError::NotConfigured)
}

/// `POST /hooks/slack/commands` and `POST /hooks/slack/interactions`.
pub fn routes() -> Router<SlackState> {
    Router::new()
        .route("/hooks/slack/commands", post(commands_hook))
        .route("/hooks/slack/interactions", post(interactions_hook))
}

async fn commands_hook(
    axum::extract::State(state): axum::extract::State<SlackState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let slack = slack_of(&state)?;
    let sig = slack.verify(&headers, &body)?;
    let form = decode_form(&body);
    let cmd = commands::Command::parse(&form)?;
    if !slack
        .admit(&sig, &workspace::Origin::of_command(&form))
        .await?
    {
        return Ok(Json(
            json!({"response_type": "ephemeral", "text": "This command was already received."}),
        )
        .into_response());
    }
    inbound("command");
    Ok(slack.on_command(cmd).await)
}

async fn interactions_hook(
    axum::extract::State(state): axum::extract::State<SlackState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let slack = slack_of(&state)?;
    let sig = slack.verify(&headers, &body)?;
    let form = decode_form(&body);
    let raw = form
        .iter()
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| InboundError::Malformed("the form has no `payload` field".into()))?;
    let payload: Value = serde_json::from_str(raw)
        .map_err(|_| InboundError::Malformed("`payload` is not JSON".into()))?;
    let origin = workspace::Origin::of_interaction(&payload);
    let interaction = interactions::parse(payload)?;
    if !slack.admit(&sig, &origin).await? {
        return Ok(StatusCode::OK.into_response());
    }
    inbound("interaction");
    Ok(slack.on_interaction(interaction).await)
}

/// `application/x-www-form-urlencoded`, accepting both `+` and `%20` for spaces.
pub fn decode_form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}
