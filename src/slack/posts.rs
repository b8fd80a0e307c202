//! Posting to Slack once, although `chat.postMessage` has no idempotency key.
//!
//! Why it exists: a post whose answer is lost (a timeout, a 5xx after Slack stored the message,
//! a crash between Slack's answer and our record of it) leaves us not knowing whether the
//! message exists. Retrying blindly can post it twice; not retrying can lose it. So every post
//! carries its key in Slack's message metadata (`event_type` [`EVENT_TYPE`], payload `{key}`),
//! an attempt is recorded (`slack_post_attempts`) before the call, and a later attempt under the
//! same key first reads the conversation's history since the first attempt and adopts the
//! message it finds there. A refusal Slack answered outright (429, `ok:false` with a definite
//! code, 4xx) posted nothing: its attempt row is dropped so the retry does not read history.
//!
//! What it must never do: post without the key in the metadata, or hold a database transaction
//! across a Slack call. When history cannot be read (a missing scope), it posts anyway and says
//! so in the log: a possible duplicate is better than a lost approval message.

use serde_json::{json, Value};
use sqlx::Row;

use super::client::SlackError;
use super::deliver::DeliverError;
use super::Slack;

/// The metadata `event_type` of every message the broker posts.
pub const EVENT_TYPE: &str = "jit_broker_post";

/// History pages read when looking for an earlier attempt (at most 100 messages each).
const MAX_HISTORY_PAGES: usize = 5;

/// Slack's clock and ours may differ; history is read from this long before the first attempt.
const CLOCK_MARGIN_SECS: i64 = 300;

impl SlackError {
    /// Whether Slack may have carried out the call although we saw a failure.
    fn outcome_unknown(&self) -> bool {
        match self {
            SlackError::Server(_) | SlackError::Transport(_) | SlackError::InvalidResponse => true,
            SlackError::Api(code) => matches!(
                code.as_str(),
                "internal_error" | "fatal_error" | "request_timeout" | "service_unavailable"
            ),
            SlackError::RateLimited { .. } | SlackError::Http(_) | SlackError::ForeignUrl => false,
        }
    }
}

impl Slack {
    /// Posts `body` to `channel` under `key`, or finds the message an earlier attempt under the
    /// same key already posted. Returns where the message is: `(channel id, ts)`. The caller
    /// records it and then calls [`Slack::post_recorded`].
    pub(super) async fn post_exactly_once(
        &self,
        key: &str,
        channel: &str,
        mut body: Value,
    ) -> Result<(String, String), DeliverError> {
        match self.attempted_at(key).await? {
            Some(at) => match self.find_posted(key, channel, at).await {
                Ok(Some(found)) => {
                    tracing::info!(post_key = %key, "an earlier attempt had posted; not posting again");
                    return Ok(found);
                }
                Ok(None) => {}
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(e) => tracing::warn!(
                    post_key = %key, error = %e,
                    "could not read the conversation's history to look for an earlier attempt; posting (it may show twice)"
                ),
            },
            None => self.record_attempt(key, channel).await?,
        }
        body["metadata"] = json!({"event_type": EVENT_TYPE, "event_payload": {"key": key}});
        match self.client().post_paced(channel, &body).await {
            Ok(answer) => posted_at(&answer, channel),
            Err(e) => {
                if !e.outcome_unknown() {
                    self.post_recorded(key).await?;
                }
                Err(e.into())
            }
        }
    }

    /// Forgets the attempt under `key` (its message is recorded, or nothing was posted).
    pub(super) async fn post_recorded(&self, key: &str) -> Result<(), DeliverError> {
        let mut conn = self.inner.store.pool().acquire().await?;
        sqlx::query("DELETE FROM slack_post_attempts WHERE post_key = $1")
            .bind(key)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn attempted_at(&self, key: &str) -> Result<Option<i64>, DeliverError> {
        let mut conn = self.inner.store.pool().acquire().await?;
        let row = sqlx::query("SELECT attempted_at FROM slack_post_attempts WHERE post_key = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
    }

    async fn record_attempt(&self, key: &str, channel: &str) -> Result<(), DeliverError> {
        let mut conn = self.inner.store.pool().acquire().await?;
        sqlx::query(
            "INSERT INTO slack_post_attempts (post_key, channel, attempted_at) VALUES ($1, $2, $3) \
             ON CONFLICT (post_key) DO NOTHING",
        )
        .bind(key)
        .bind(channel)
        .bind(self.inner.clock.now_ms())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The message posted under `key` in `channel` since `attempted_at_ms`, if any. A user id
    /// (a DM) is opened as its DM conversation first: history is read by conversation id.
    async fn find_posted(
        &self,
        key: &str,
        channel: &str,
        attempted_at_ms: i64,
    ) -> Result<Option<(String, String)>, SlackError> {
        let conversation = if channel.starts_with('U') || channel.starts_with('W') {
            let v = self
                .client()
                .call_form("conversations.open", &[("users", channel)])
                .await?;
            v.pointer("/channel/id")
                .and_then(Value::as_str)
                .ok_or(SlackError::InvalidResponse)?
                .to_string()
        } else {
            channel.to_string()
        };
        let oldest = format!(
            "{}.000000",
            (attempted_at_ms / 1000 - CLOCK_MARGIN_SECS).max(0)
        );
        let mut cursor = String::new();
        for _ in 0..MAX_HISTORY_PAGES {
            let mut form = vec![
                ("channel", conversation.as_str()),
                ("oldest", oldest.as_str()),
                ("include_all_metadata", "true"),
                ("limit", "100"),
            ];
            if !cursor.is_empty() {
                form.push(("cursor", cursor.as_str()));
            }
            let v = self
                .client()
                .call_form("conversations.history", &form)
                .await?;
            let found = v
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|m| {
                    m.pointer("/metadata/event_type").and_then(Value::as_str) == Some(EVENT_TYPE)
                        && m.pointer("/metadata/event_payload/key")
                            .and_then(Value::as_str)
                            == Some(key)
                })
                .and_then(|m| m.get("ts").and_then(Value::as_str));
            if let Some(ts) = found {
                return Ok(Some((conversation, ts.to_string())));
            }
            match v
                .pointer("/response_metadata/next_cursor")
                .and_then(Value::as_str)
            {
                Some(c) if !c.is_empty() => cursor = c.to_string(),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// `(channel, ts)` of a successful `chat.postMessage`.
pub(super) fn posted_at(answer: &Value, asked: &str) -> Result<(String, String), DeliverError> {
    let ts = answer
        .get("ts")
        .and_then(Value::as_str)
        .ok_or(SlackError::InvalidResponse)?;
    let ch = answer
        .get("channel")
        .and_then(Value::as_str)
        .unwrap_or(asked);
    Ok((ch.to_string(), ts.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_that_may_hide_a_post_are_unknown() {
        for e in [
            SlackError::Server(503),
            SlackError::Transport("timeout".into()),
            SlackError::InvalidResponse,
            SlackError::Api("internal_error".into()),
        ] {
            assert!(e.outcome_unknown(), "{e}");
        }
        for e in [
            SlackError::RateLimited { after: None },
            SlackError::Http(400),
            SlackError::Api("channel_not_found".into()),
            SlackError::Api("ratelimited".into()),
        ] {
            assert!(!e.outcome_unknown(), "{e}");
        }
    }
}
