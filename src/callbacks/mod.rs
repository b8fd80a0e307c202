//! Signed approval callbacks: `POST /hooks/approvals`, for ServiceNow, Jira, PagerDuty or an
//! internal portal deciding on a request.
//!
//! Why it exists: approvals often live in another system. That system posts a decision signed
//! in the Standard Webhooks format with its own secret (one per named integration, several at
//! once during a rotation); the decision then goes through the same
//! [`crate::requests::RequestService::decide`] as every other channel, recorded with the
//! integration's name as the channel (`callback:<name>`).
//!
//! Order of checks: raw bytes first (size by the router's limit, timestamp window both ways,
//! signature in constant time: which integration signed it is learnt here), then idempotency
//! (`webhook-id` per integration: a redelivery gets the first answer and changes nothing; the
//! receipt is a short lease renewed while the decision runs, so a delivery whose process died is
//! taken over by the sender's retry within seconds), and only then is the body parsed.
//!
//! An integration may be limited to resources (`allowed_resources`) and to the people it decides
//! as (`allowed_approvers`): a callback outside them is refused (`403 callback_not_allowed`)
//! before the requests service is asked. Receipts are purged after the replay window (`purge`).
//!
//! What it must never do: parse an unverified body, tell the caller which part of the
//! authentication failed, process one `webhook-id` twice, or decide outside its limits.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use secrecy::SecretString;
use serde::Deserialize;
use sqlx::Row;

use crate::authz::Actor;
use crate::clock::Clock;
use crate::config::{resolve_secret, ConfigError};
use crate::error::{ApiError, ErrorBody};
use crate::requests::RequestService;
use crate::requests::Verdict;
use crate::store::Store;
use crate::store::StoreError;
use crate::webhooks::{self, Signed, WebhookSecret};

/// One integration allowed to post decisions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// Recorded as the channel (`callback:<name>`) of its decisions.
    pub name: String,
    /// `whsec_…`; several (space-separated) while rotating.
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub secret_file: Option<std::path::PathBuf>,
    /// May approve `approval_step_up` resources (the other system did its own MFA).
    #[serde(default)]
    pub trusted_for_step_up: bool,
    /// The policy resources whose requests it may decide; absent: any. Bounds what a leaked
    /// signing secret can approve.
    #[serde(default)]
    pub allowed_resources: Option<Vec<String>>,
    /// The people (Okta logins or ids, compared ignoring case) it may decide as; absent: any
    /// approver. Bounds whom a leaked signing secret can impersonate.
    #[serde(default)]
    pub allowed_approvers: Option<Vec<String>>,
}

impl IntegrationConfig {
    /// Whether `allowed_approvers` (if set) names `approver`.
    pub fn allows_approver(&self, approver: &str) -> bool {
        self.allowed_approvers
            .as_ref()
            .is_none_or(|l| l.iter().any(|a| a.trim().eq_ignore_ascii_case(approver)))
    }

    /// Whether `allowed_resources` (if set) names `resource`.
    pub fn allows_resource(&self, resource: &str) -> bool {
        self.allowed_resources
            .as_ref()
            .is_none_or(|l| l.iter().any(|r| r == resource))
    }
}

/// The `[callbacks]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksConfig {
    pub integrations: Vec<IntegrationConfig>,
    /// How far `webhook-timestamp` may be from now, either way.
    #[serde(with = "humantime_serde")]
    pub tolerance: Duration,
}

impl CallbacksConfig {
    pub fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        for (i, it) in self.integrations.iter_mut().enumerate() {
            resolve_secret(
                &format!("callbacks.integrations[{i}].secret"),
                &mut it.secret,
                &it.secret_file,
            )?;
        }
        Ok(())
    }

    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, it) in self.integrations.iter().enumerate() {
            let key = |k: &str| format!("callbacks.integrations[{i}].{k}");
            if !crate::config::valid_name(&it.name) {
                errors.push(ConfigError::invalid(
                    key("name"),
                    "1 to 64 letters, digits, `-` or `_`",
                ));
            }
            if !names.insert(it.name.clone()) {
                errors.push(ConfigError::invalid(key("name"), "defined more than once"));
            }
            match &it.secret {
                None => errors.push(ConfigError::invalid(
                    key("secret"),
                    "required (`whsec_…`), from the environment or `secret_file`",
                )),
                Some(s) => {
                    if let Err(e) = WebhookSecret::parse_many(s) {
                        errors.push(ConfigError::invalid(key("secret"), e.to_string()));
                    }
                }
            }
            // An empty list would refuse everything: almost surely a mistake for "no limit",
            // which is written by leaving the key out.
            for (k, list) in [
                ("allowed_resources", &it.allowed_resources),
                ("allowed_approvers", &it.allowed_approvers),
            ] {
                if let Some(l) = list {
                    if l.is_empty() {
                        errors.push(ConfigError::invalid(
                            key(k),
                            "must not be empty (leave it out for no limit)",
                        ));
                    } else if l.iter().any(|v| v.trim().is_empty() || v.len() > 256) {
                        errors.push(ConfigError::invalid(
                            key(k),
                            "entries must be non-empty and at most 256 characters",
                        ));
                    }
                }
            }
        }
        if self.tolerance < Duration::from_secs(30) || self.tolerance > Duration::from_secs(3600) {
            errors.push(ConfigError::invalid(
                "callbacks.tolerance",
                "must be between 30 seconds and 1 hour",
            ));
        }
        errors
    }
}

/// The integrations' keys, decoded once at start.
#[derive(Debug, Default)]
pub struct Verifier {
    /// (integration index, key) for every key of every integration.
    keys: Vec<(usize, WebhookSecret)>,
    integrations: Vec<IntegrationConfig>,
    tolerance_s: i64,
}

impl Verifier {
    pub fn new(cfg: &CallbacksConfig) -> Verifier {
        let mut keys = Vec::new();
        for (i, it) in cfg.integrations.iter().enumerate() {
            // Validated with the config; a key that fails here is left out, never trusted.
            if let Some(s) = &it.secret {
                for k in WebhookSecret::parse_many(s).unwrap_or_default() {
                    keys.push((i, k));
                }
            }
        }
        Verifier {
            keys,
            integrations: cfg.integrations.clone(),
            tolerance_s: i64::try_from(cfg.tolerance.as_secs()).unwrap_or(300),
        }
    }
}

/// What `/hooks/approvals` needs.
#[derive(Clone)]
pub struct CallbacksState {
    pub store: Store,
    pub clock: Clock,
    /// `None` when Okta is not configured (no grants service to make grants through).
    pub requests: Option<RequestService>,
    /// The signed-callback integrations' keys.
    pub callbacks: std::sync::Arc<Verifier>,
}

pub fn routes() -> Router<CallbacksState> {
    Router::new().route("/hooks/approvals", post(receive))
}

/// What the other system posts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    request_id: String,
    /// `approve` or `deny`.
    decision: String,
    /// The person who decided in the other system: their Okta login (or id).
    approver: String,
    #[serde(default)]
    comment: Option<String>,
}

fn unauthorized() -> Response {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "the callback is not signed by a configured integration",
    )
    .into_response()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// How long a receipt is kept: well past the timestamp window (`callbacks.tolerance`, at most an
/// hour either way, after which a replay of the same bytes is refused by its timestamp), so that
/// a sender's re-signed retry within a day still gets the first answer.
pub const RECEIPT_KEEP: Duration = Duration::from_secs(24 * 3600);

/// The purge of `webhook_receipts` past [`RECEIPT_KEEP`] (task `callbacks.purge`).
pub const RECEIPTS: crate::store::purge::Table = crate::store::purge::Table {
    task: "callbacks.purge",
    table: "webhook_receipts",
    key: "source, webhook_id",
    time: "created_at",
    keep: RECEIPT_KEEP,
};

/// Starts `callbacks.purge` on `tasks` (every replica, integrations configured or not).
pub fn spawn_purge(store: Store, clock: Clock, tasks: &crate::tasks::Tasks) {
    crate::store::purge::spawn(store, clock, RECEIPTS, tasks);
}

/// A `processing` receipt is its process's lease: its time (`created_at`) is pushed out every
/// third of this while the decision runs, so one older than this belongs to a process that died
/// mid-way, and the sender's retry takes it over within seconds (it used to wait a minute).
const LEASE_MS: i64 = 5_000;

async fn receive(State(state): State<CallbacksState>, headers: HeaderMap, raw: Bytes) -> Response {
    let verifier = &state.callbacks;
    let signed = Signed {
        id: header(&headers, webhooks::HEADER_ID),
        timestamp: header(&headers, webhooks::HEADER_TIMESTAMP),
        signatures: header(&headers, webhooks::HEADER_SIGNATURE),
    };
    let keys: Vec<&WebhookSecret> = verifier.keys.iter().map(|(_, k)| k).collect();
    let now_s = state.clock.now_ms() / 1000;
    let matched = match webhooks::verify(&keys, signed, &raw, now_s, verifier.tolerance_s) {
        Ok(i) => i,
        Err(e) => {
            metrics::counter!("jit_callbacks_total", "integration" => "-", "outcome" => "unauthenticated").increment(1);
            tracing::debug!(reason = %e, "approval callback refused");
            return unauthorized();
        }
    };
    let Some(integration) = verifier
        .keys
        .get(matched)
        .and_then(|(i, _)| verifier.integrations.get(*i))
    else {
        return unauthorized();
    };
    let stamp = match claim(&state, &integration.name, signed.id).await {
        Ok(Claim::Answered(status, body)) => {
            metrics::counter!("jit_callbacks_total", "integration" => integration.name.clone(), "outcome" => "replayed").increment(1);
            return answer(status, body);
        }
        Ok(Claim::InProgress) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "in_progress",
                "this webhook-id is being processed; retry later",
            )
            .into_response()
        }
        Ok(Claim::Mine(stamp)) => stamp,
        Err(e) => return ApiError::from(e).into_response(),
    };
    crate::crash::point(crate::crash::CALLBACK_PROCESSING);
    let (status, body) = holding(
        &state,
        &integration.name,
        signed.id,
        stamp,
        decide(&state, integration, &raw),
    )
    .await;
    metrics::counter!("jit_callbacks_total", "integration" => integration.name.clone(), "outcome" => if status.is_success() { "accepted" } else { "refused" }).increment(1);
    // A failure of ours (5xx: database or Okta unavailable) is not the answer to remember: the
    // receipt is dropped so the sender's retry is processed again.
    if let Err(e) = finish(&state, &integration.name, signed.id, status, &body).await {
        tracing::warn!(error = %crate::error::chain(&e), "cannot record the callback's answer; a redelivery will be processed again");
    }
    answer(status, body)
}

fn answer(status: StatusCode, body: String) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Parses the verified body and decides, returning the answer to record.
async fn decide(
    state: &CallbacksState,
    it: &IntegrationConfig,
    raw: &[u8],
) -> (StatusCode, String) {
    let err = |e: ApiError| {
        let body = ErrorBody {
            code: e.code.to_string(),
            message: e.message.clone(),
            details: e.details.clone(),
        };
        (e.status, serde_json::to_string(&body).unwrap_or_default())
    };
    let b: DecisionBody = match serde_json::from_slice(raw) {
        Ok(b) => b,
        Err(e) => {
            return err(ApiError::bad_request(
                "invalid_json",
                format!("expected {{request_id, decision, approver, comment?}}: {e}"),
            ))
        }
    };
    let verdict = match b.decision.as_str() {
        "approve" => Verdict::Approve,
        "deny" => Verdict::Deny,
        other => {
            return err(ApiError::bad_request(
                "invalid_decision",
                format!("decision must be `approve` or `deny`, not `{other}`"),
            ))
        }
    };
    let Some(svc) = state.requests.as_ref() else {
        return err(crate::grants::GrantError::OktaNotConfigured.into());
    };
    // The integration's own limits, before anything is decided: a leaked secret of a
    // ServiceNow integration limited to two resources and its approvers cannot approve more.
    let approver = b.approver.trim();
    if !it.allows_approver(approver) {
        return err(not_allowed(format!(
            "integration `{}` may not decide as `{approver}` (not in its allowed_approvers)",
            it.name
        )));
    }
    if it.allowed_resources.is_some() {
        match svc.get(&b.request_id).await {
            Ok(v) if it.allows_resource(&v.request.resource) => {}
            Ok(v) => {
                return err(not_allowed(format!(
                    "integration `{}` may not decide requests for `{}` (not in its \
                     allowed_resources)",
                    it.name, v.request.resource
                )))
            }
            Err(e) => return err(e.into()),
        }
    }
    // The integration vouches for who decided; the rules still require that person to be an
    // approver of the request, and scope the integration to decisions.
    let actor = Actor::callback(&it.name, b.approver.trim(), it.trusted_for_step_up);
    match svc
        .decide(&b.request_id, &actor, verdict, b.comment.as_deref())
        .await
    {
        Ok(view) => (
            StatusCode::OK,
            serde_json::to_string(&view).unwrap_or_default(),
        ),
        Err(e) => err(e.into()),
    }
}

fn not_allowed(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "callback_not_allowed", message)
}

enum Claim {
    /// This delivery is ours to process; the receipt's time as we wrote it (the lease).
    Mine(i64),
    /// Processed before: this was the answer.
    Answered(StatusCode, String),
    /// Another delivery of the same id is being processed right now.
    InProgress,
}

async fn claim(state: &CallbacksState, source: &str, id: &str) -> Result<Claim, StoreError> {
    let now = state.clock.now_ms();
    let inserted = sqlx::query(
        "INSERT INTO webhook_receipts (source, webhook_id, state, created_at) \
         VALUES ($1, $2, 'processing', $3) ON CONFLICT (source, webhook_id) DO NOTHING",
    )
    .bind(source)
    .bind(id)
    .bind(now)
    .execute(state.store.pool())
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Mine(now));
    }
    let row = sqlx::query(
        "SELECT state, status, body, created_at FROM webhook_receipts \
         WHERE source = $1 AND webhook_id = $2",
    )
    .bind(source)
    .bind(id)
    .fetch_one(state.store.pool())
    .await?;
    let st: String = row.try_get("state")?;
    if st == "done" {
        let status: Option<i64> = row.try_get("status")?;
        let body: Option<String> = row.try_get("body")?;
        let status = status
            .and_then(|s| u16::try_from(s).ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK);
        return Ok(Claim::Answered(status, body.unwrap_or_default()));
    }
    // A receipt left `processing` by a process that died: take it over (compare-and-set on
    // its time, so only one redelivery does).
    let created: i64 = row.try_get("created_at")?;
    if now - created > LEASE_MS {
        let took = sqlx::query(
            "UPDATE webhook_receipts SET created_at = $1 WHERE source = $2 AND webhook_id = $3 \
             AND state = 'processing' AND created_at = $4",
        )
        .bind(now)
        .bind(source)
        .bind(id)
        .bind(created)
        .execute(state.store.pool())
        .await?;
        if took.rows_affected() == 1 {
            return Ok(Claim::Mine(now));
        }
    }
    Ok(Claim::InProgress)
}

/// Runs `work` (the decision) while renewing the receipt's lease every third of [`LEASE_MS`],
/// in the same task, so the renewal ends with the work or with the process. A renewal that finds
/// the receipt taken over stops renewing (the other delivery's decision is idempotent with ours:
/// the request is decided once, the second sees `already_decided`).
async fn holding<T>(
    state: &CallbacksState,
    source: &str,
    id: &str,
    stamp: i64,
    work: impl std::future::Future<Output = T>,
) -> T {
    let period = Duration::from_millis(u64::try_from(LEASE_MS / 3).unwrap_or(1_000));
    let stamp = std::sync::atomic::AtomicI64::new(stamp);
    let stamp = &stamp;
    crate::tasks::while_renewing(work, period, || async move {
        let now = state.clock.now_ms();
        let was = stamp.load(std::sync::atomic::Ordering::Relaxed);
        let r = sqlx::query(
            "UPDATE webhook_receipts SET created_at = $1 WHERE source = $2 \
             AND webhook_id = $3 AND state = 'processing' AND created_at = $4",
        )
        .bind(now)
        .bind(source)
        .bind(id)
        .bind(was)
        .execute(state.store.pool())
        .await;
        match r {
            Ok(r) if r.rows_affected() == 1 => {
                stamp.store(now, std::sync::atomic::Ordering::Relaxed);
                true
            }
            // Taken over: stop renewing.
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the callback receipt's lease");
                true
            }
        }
    })
    .await
}

async fn finish(
    state: &CallbacksState,
    source: &str,
    id: &str,
    status: StatusCode,
    body: &str,
) -> Result<(), StoreError> {
    if status.is_server_error() {
        sqlx::query("DELETE FROM webhook_receipts WHERE source = $1 AND webhook_id = $2")
            .bind(source)
            .bind(id)
            .execute(state.store.pool())
            .await?;
        return Ok(());
    }
    sqlx::query(
        "UPDATE webhook_receipts SET state = 'done', status = $1, body = $2 \
         WHERE source = $3 AND webhook_id = $4",
    )
    .bind(i64::from(status.as_u16()))
    .bind(body)
    .bind(source)
    .bind(id)
    .execute(state.store.pool())
    .await?;
    Ok(())
}
