//! The Slack notification deliverer: what the domain says people must be told, posted to Slack.
//!
//! Why it exists: the outbox hands each notification for channel `slack` here, durably and with
//! retries. A new pending request posts its approval message in the resource's channel (its
//! `slack_channel`, or `slack.default_channel`) and remembers where (`slack_messages`); every
//! later change of the request updates that message in place from the request as it stands now,
//! so a late or repeated update never shows an older state. Requesters get direct messages
//! (approved, denied with the reason, expired, granted, about to expire with Extend, ended,
//! failed); a request that waits on approvers gets a reminder in its message's thread;
//! break-glass and drift post alerts; access review notices go to reviewers by DM (`reviews`).
//! Deliveries of one request (or one grant) share a partition so they arrive in order; the
//! client spaces posts to one channel near Slack's 1 message/s.
//!
//! Slack's answers become `DeliveryError::Retry` (429 with its `Retry-After`, 5xx, `ratelimited`,
//! transport) or `Permanent` (`channel_not_found`, `not_in_channel`, …: the outbox dead-letters).
//! A post that succeeded is recorded (`slack_sent`, keyed by notification id, or
//! `slack_messages` for approval messages), so a redelivery posts nothing twice; a post whose
//! answer was lost (or a crash before the record) is found in Slack's history by the key its
//! metadata carries, before anything is posted again (`posts.rs`).
//!
//! What it must never do: change a request or a grant, or hold a database transaction across a
//! Slack call.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::blocks::{self, esc, MessageContext};
use super::client::SlackError;
use super::Slack;
use crate::grants::{Grant, GrantState, Holder};
use crate::notify::{kinds, Deliverer, DeliveryError, Notification};
use crate::requests::{RequestError, RequestState};

/// The stable channel name of Slack deliveries.
pub const CHANNEL: &str = "slack";

#[derive(Clone)]
pub struct SlackDeliverer {
    slack: Slack,
}

/// Why a delivery failed, before it is told to the outbox.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Slack(#[from] SlackError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Permanent(String),
}

impl From<DeliverError> for DeliveryError {
    fn from(e: DeliverError) -> Self {
        match e {
            DeliverError::Slack(s) if s.is_retryable() => DeliveryError::Retry {
                after: s.retry_after(),
                message: s.to_string(),
            },
            DeliverError::Slack(s) => DeliveryError::Permanent(s.to_string()),
            DeliverError::Request(RequestError::NotFound(id)) => {
                DeliveryError::Permanent(format!("no request {id}"))
            }
            DeliverError::Request(r) => DeliveryError::Retry {
                message: r.to_string(),
                after: None,
            },
            DeliverError::Sql(e) => DeliveryError::Retry {
                message: e.to_string(),
                after: None,
            },
            DeliverError::Permanent(m) => DeliveryError::Permanent(m),
        }
    }
}

impl SlackDeliverer {
    pub fn new(slack: Slack) -> Self {
        SlackDeliverer { slack }
    }

    async fn deliver_inner(&self, n: &Notification) -> Result<(), DeliverError> {
        let s = &self.slack;
        let rid = n.request_id.as_deref();
        match n.kind.as_str() {
            kinds::REQUEST_CREATED | kinds::REQUEST_BREAK_GLASS => {
                let id = rid.ok_or_else(|| missing(n, "request_id"))?;
                s.post_or_refresh(id).await?;
            }
            kinds::REQUEST_APPROVAL_RECORDED
            | kinds::REQUEST_REVIEWED
            | kinds::REQUEST_CANCELLED => {
                let id = rid.ok_or_else(|| missing(n, "request_id"))?;
                s.refresh_message(id).await?;
            }
            kinds::REQUEST_DECIDED | kinds::REQUEST_EXPIRED | kinds::REQUEST_FAILED => {
                let id = rid.ok_or_else(|| missing(n, "request_id"))?;
                s.refresh_message(id).await?;
                let v = s.requests().get(id).await?;
                let r = &v.request;
                let text = match r.state {
                    // Approved by policy (no decision): the "granted" message follows at once.
                    RequestState::Approved if v.decisions.is_empty() => return Ok(()),
                    RequestState::Approved => format!(
                        "Your request for {} ({}) was approved.",
                        r.resource,
                        blocks::fmt_ms(r.duration_ms)
                    ),
                    // The domain's end reason reads "denied by <approver>: <comment>".
                    RequestState::Denied => match r.end_reason.as_deref() {
                        Some(why) if why.starts_with("denied") => {
                            format!("Your request for {} was {why}.", r.resource)
                        }
                        Some(why) if !why.is_empty() => {
                            format!("Your request for {} was denied: {why}.", r.resource)
                        }
                        _ => format!("Your request for {} was denied.", r.resource),
                    },
                    RequestState::Expired => format!(
                        "Your request for {} expired: no approver answered in time.",
                        r.resource
                    ),
                    RequestState::Failed => format!(
                        "Your request for {} was approved but the access could not be granted: {}",
                        r.resource,
                        r.end_reason.as_deref().unwrap_or("see the broker's log")
                    ),
                    _ => return Ok(()),
                };
                s.dm_once(n, &r.user_login, &text, blocks::simple(&esc(&text)))
                    .await?;
            }
            kinds::REQUEST_REMINDER => {
                let id = rid.ok_or_else(|| missing(n, "request_id"))?;
                let v = s.requests().get(id).await?;
                if v.request.state != RequestState::Pending {
                    return Ok(());
                }
                if let Some((channel, ts)) = s.message_of(id).await? {
                    let text = format!(
                        "Still waiting for an approver: {} asks for {}.",
                        v.request.user_login, v.request.resource
                    );
                    s.post_once(
                        n,
                        &channel,
                        json!({"channel": channel, "thread_ts": ts, "reply_broadcast": true, "text": text}),
                    )
                    .await?;
                }
            }
            kinds::GRANT_ACTIVATED
            | kinds::GRANT_EXPIRING
            | kinds::GRANT_EXTENDED
            | kinds::GRANT_REVOKED
            | kinds::GRANT_FAILED => {
                let gid = n
                    .grant_id
                    .as_deref()
                    .ok_or_else(|| missing(n, "grant_id"))?;
                let g = s
                    .requests()
                    .grants()
                    .get(gid)
                    .await
                    .map_err(RequestError::from)?;
                let (text, blocks) = self.grant_message(&n.kind, &g);
                s.dm_once(n, &g.user_login, &text, blocks).await?;
            }
            kinds::DRIFT_DETECTED => {
                let channel = s.config().default_channel.clone();
                if channel.is_empty() {
                    return Ok(());
                }
                let text = format!(
                    "Drift detected: {}",
                    serde_json::to_string(&n.payload).unwrap_or_default()
                );
                s.post_once(n, &channel, json!({"channel": channel, "text": text}))
                    .await?;
            }
            // Access reviews: DMs to reviewers, the rest to the default channel (`reviews.rs`).
            kinds::REVIEW_OPENED | kinds::REVIEW_OVERDUE | kinds::REVIEW_REMINDER => {
                s.deliver_review(n).await?;
            }
            _ => {}
        }
        Ok(())
    }

    fn grant_message(&self, kind: &str, g: &Grant) -> (String, Vec<Value>) {
        let until = crate::clock::ms_to_datetime(g.expires_at).format("%Y-%m-%d %H:%M UTC");
        let text = match kind {
            kinds::GRANT_ACTIVATED => format!("You now have {} until {until}.", g.resource),
            kinds::GRANT_EXPIRING => {
                let policy = self.slack.requests().policy().current();
                let extendable = g.state == GrantState::Active
                    && policy
                        .get(&g.resource)
                        .is_some_and(|r| (g.duration_ms as u128) < r.max_duration.as_millis());
                return blocks::expiring_message(g, extendable, self.slack.inner.clock.now_ms());
            }
            kinds::GRANT_EXTENDED => format!("Your access to {} now ends at {until}.", g.resource),
            kinds::GRANT_REVOKED => format!("Your access to {} has ended.", g.resource),
            _ => format!(
                "Your access to {} could not be changed in Okta (grant `{}` is {}); an administrator has been told.",
                g.resource,
                g.id,
                g.state.as_str()
            ),
        };
        let b = blocks::simple(&esc(&text));
        (text, b)
    }
}

fn missing(n: &Notification, what: &str) -> DeliverError {
    DeliverError::Permanent(format!("notification {} ({}) has no {what}", n.id, n.kind))
}

const WANTED: &[&str] = &[
    kinds::REQUEST_CREATED,
    kinds::REQUEST_APPROVAL_RECORDED,
    kinds::REQUEST_DECIDED,
    kinds::REQUEST_EXPIRED,
    kinds::REQUEST_CANCELLED,
    kinds::REQUEST_FAILED,
    kinds::REQUEST_BREAK_GLASS,
    kinds::REQUEST_REVIEWED,
    kinds::REQUEST_REMINDER,
    kinds::GRANT_ACTIVATED,
    kinds::GRANT_EXPIRING,
    kinds::GRANT_EXTENDED,
    kinds::GRANT_REVOKED,
    kinds::GRANT_FAILED,
    kinds::DRIFT_DETECTED,
    kinds::REVIEW_OPENED,
    kinds::REVIEW_OVERDUE,
    kinds::REVIEW_REMINDER,
];

#[async_trait]
impl Deliverer for SlackDeliverer {
    fn channel(&self) -> &str {
        CHANNEL
    }

    fn wants(&self, kind: &str) -> bool {
        WANTED.contains(&kind)
    }

    /// One conversation: a request's message, its updates and its DMs in order; a grant's DMs
    /// in order (keyed by its request when it has one, so "approved" precedes "granted").
    fn partition(&self, n: &Notification) -> String {
        if let Some(r) = &n.request_id {
            return format!("request:{r}");
        }
        if let Some(r) = n
            .payload
            .pointer("/grant/request_id")
            .and_then(Value::as_str)
        {
            return format!("request:{r}");
        }
        match &n.grant_id {
            Some(g) => format!("grant:{g}"),
            None => format!("kind:{}", n.kind),
        }
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let r = self.deliver_inner(n).await;
        let outcome = match &r {
            Ok(()) => "delivered",
            Err(DeliverError::Slack(e)) if e.is_retryable() => "retry",
            Err(DeliverError::Request(_)) | Err(DeliverError::Sql(_)) => "retry",
            Err(_) => "permanent",
        };
        metrics::counter!("jit_slack_deliveries_total", "kind" => n.kind.clone(), "outcome" => outcome)
            .increment(1);
        r.map_err(Into::into)
    }
}

impl Slack {
    /// Posts the approval message of a request, or updates it when it was posted before (a
    /// redelivery after a crash).
    pub async fn post_or_refresh(&self, request_id: &str) -> Result<(), DeliverError> {
        if self.message_of(request_id).await?.is_some() {
            return self.refresh_message(request_id).await;
        }
        let v = self.requests().get(request_id).await?;
        // Approved by policy at once: nobody has anything to decide, the requester is told by DM.
        if v.request.state != RequestState::Pending && !v.request.break_glass {
            return Ok(());
        }
        let policy = self.requests().policy().current();
        let res = policy.get(&v.request.resource);
        let channel = res
            .and_then(|r| r.slack_channel.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| self.config().default_channel.clone());
        if channel.is_empty() {
            return Err(DeliverError::Permanent(format!(
                "no Slack channel for resource {}: set its slack_channel or slack.default_channel",
                v.request.resource
            )));
        }
        let access = self
            .current_access(&v.request.user_id, &v.request.resource)
            .await?;
        let (text, blocks) = blocks::approval_message(
            &v,
            &MessageContext {
                resource: res,
                current_access: &access,
                console_url: &self.config().console_url,
            },
        );
        let key = format!("request:{request_id}");
        let (ch, ts) = self
            .post_exactly_once(
                &key,
                &channel,
                json!({"channel": channel, "text": text, "blocks": blocks}),
            )
            .await?;
        {
            let mut conn = self.inner.store.pool().acquire().await?;
            sqlx::query(
                "INSERT INTO slack_messages (request_id, channel, ts, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (request_id) DO NOTHING",
            )
            .bind(request_id)
            .bind(&ch)
            .bind(&ts)
            .bind(self.inner.clock.now_ms())
            .execute(&mut *conn)
            .await?;
        }
        self.post_recorded(&key).await
    }

    /// Updates a request's approval message to show it as it stands now; nothing when no
    /// message was posted for it.
    pub async fn refresh_message(&self, request_id: &str) -> Result<(), DeliverError> {
        let Some((channel, ts)) = self.message_of(request_id).await? else {
            return Ok(());
        };
        let v = self.requests().get(request_id).await?;
        let policy = self.requests().policy().current();
        let access = self
            .current_access(&v.request.user_id, &v.request.resource)
            .await?;
        let (text, blocks) = blocks::approval_message(
            &v,
            &MessageContext {
                resource: policy.get(&v.request.resource),
                current_access: &access,
                console_url: &self.config().console_url,
            },
        );
        self.client()
            .update_paced(
                &channel,
                &json!({"channel": channel, "ts": ts, "text": text, "blocks": blocks}),
            )
            .await?;
        Ok(())
    }

    async fn current_access(
        &self,
        user_id: &str,
        resource: &str,
    ) -> Result<Vec<Grant>, DeliverError> {
        Ok(self
            .requests()
            .grants()
            .live_of_user(Holder::Id(user_id), Some(resource), false)
            .await
            .map_err(RequestError::from)?)
    }

    /// A direct message to the Slack user of an Okta login, once per notification.
    async fn dm_once(
        &self,
        n: &Notification,
        okta_login: &str,
        text: &str,
        blocks: Vec<Value>,
    ) -> Result<(), DeliverError> {
        let user = match self.identity().slack_user(okta_login).await {
            Ok(u) => u,
            Err(super::identity::IdentityError::Slack(e)) => return Err(e.into()),
            Err(e) => return Err(DeliverError::Permanent(e.to_string())),
        };
        self.post_once(
            n,
            &user,
            json!({"channel": user, "text": text, "blocks": blocks}),
        )
        .await
    }

    /// Posts `body` unless this notification was posted before, and records it.
    async fn post_once(
        &self,
        n: &Notification,
        channel: &str,
        body: Value,
    ) -> Result<(), DeliverError> {
        self.post_once_keyed(&n.id, channel, body).await
    }

    /// Posts `body` unless something was posted under `key` before, and records it. The key is
    /// a notification id, or `<id>:<login>` when one notification messages several people.
    pub(super) async fn post_once_keyed(
        &self,
        key: &str,
        channel: &str,
        body: Value,
    ) -> Result<(), DeliverError> {
        {
            let mut conn = self.inner.store.reads().acquire().await?;
            let seen = sqlx::query("SELECT 1 AS x FROM slack_sent WHERE notification_id = $1")
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
            if seen.is_some() {
                return Ok(());
            }
        }
        let (ch, ts) = self.post_exactly_once(key, channel, body).await?;
        {
            let mut conn = self.inner.store.pool().acquire().await?;
            sqlx::query(
                "INSERT INTO slack_sent (notification_id, channel, ts, sent_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (notification_id) DO NOTHING",
            )
            .bind(key)
            .bind(&ch)
            .bind(&ts)
            .bind(self.inner.clock.now_ms())
            .execute(&mut *conn)
            .await?;
        }
        self.post_recorded(key).await
    }
}
