//! Access review notices in Slack: `review.opened` and `review.reminder` go to each reviewer as
//! a direct message with a link to their items; `review.overdue` (for the campaign's owner) and
//! the notices of reviewers Slack does not know go to `slack.default_channel`.
//!
//! Why per reviewer: a channel post listing logins is easy to miss, and a reviewer who is not
//! reminded does not decide. A reviewer is found the way requesters are (`users.lookupByEmail`
//! with the Okta login, then the profile email); one who cannot be found (no Slack account, the
//! app lacks `users:read.email`) is still told, in the default channel.
//!
//! Each DM is recorded under `<notification id>:<login>`, so a redelivery after a crash or a
//! Slack error part-way through a campaign's reviewers messages only those not reached yet.
//!
//! What it must never do: drop a reviewer's notice because Slack could not DM them, or change a
//! campaign.

use serde_json::{json, Value};

use super::blocks::{esc, simple};
use super::deliver::DeliverError;
use super::identity::IdentityError;
use super::Slack;
use crate::notify::{kinds, Notification};

impl Slack {
    /// Delivers `review.opened`, `review.reminder` or `review.overdue`.
    pub(super) async fn deliver_review(&self, n: &Notification) -> Result<(), DeliverError> {
        match n.kind.as_str() {
            kinds::REVIEW_OPENED => {
                let d = &n.payload["details"];
                let name = esc(d["name"].as_str().unwrap_or("?"));
                let campaign = d["campaign"].as_str();
                let due = d["due_at"].as_i64();
                let mut unreached = serde_json::Map::new();
                if let Some(reviewers) = d["reviewers"].as_object() {
                    for (login, count) in reviewers {
                        let text = format!(
                            "Access review \"{name}\" opened: you have {count} item(s) to review{}.{}",
                            due.map(|t| format!(" by {}", when(t))).unwrap_or_default(),
                            self.items_link(campaign)
                        );
                        if !self.dm_reviewer(n, login, &text).await? {
                            unreached.insert(login.clone(), count.clone());
                        }
                    }
                }
                // Entries written before reviewers were messaged (no `campaign`) and reviewers
                // Slack does not know: the channel post as before, naming only them.
                if !unreached.is_empty() || d["reviewers"].as_object().is_none() {
                    let who = if unreached.is_empty() {
                        d["reviewers"].clone()
                    } else {
                        Value::Object(unreached)
                    };
                    let text = format!(
                        "Access review \"{name}\" opened: {} item(s) for {}",
                        d["items"],
                        esc(&serde_json::to_string(&who).unwrap_or_default())
                    );
                    self.to_default_channel(&n.id, &text).await?;
                }
            }
            kinds::REVIEW_REMINDER => {
                let p = &n.payload;
                let login = p["reviewer"].as_str().unwrap_or_default();
                let name = esc(p["name"].as_str().unwrap_or("?"));
                let due = p["due_at"].as_i64().map(when).unwrap_or_default();
                let text = format!(
                    "Reminder: access review \"{name}\" is due {due} and you have {} undecided item(s).{}",
                    p["undecided"],
                    self.items_link(p["campaign"].as_str())
                );
                if login.is_empty() || !self.dm_reviewer(n, login, &text).await? {
                    let text = format!("{}: {text}", esc(login));
                    self.to_default_channel(&n.id, &text).await?;
                }
            }
            _ => {
                let d = &n.payload["details"];
                let text = format!(
                    "Access review \"{}\" is overdue: {} item(s) undecided (default: {}); owner {}",
                    d["name"].as_str().unwrap_or("?"),
                    d["undecided"],
                    d["default"].as_str().unwrap_or("?"),
                    d["owner"].as_str().unwrap_or("?")
                );
                self.to_default_channel(&n.id, &esc(&text)).await?;
            }
        }
        Ok(())
    }

    /// Where a reviewer decides their items: the console's `/reviews/{id}` under
    /// `slack.console_url` when it is set, else the API's list (`/v1/reviews/{id}/items?reviewer=me`).
    fn items_link(&self, campaign: Option<&str>) -> String {
        let Some(id) = campaign else {
            return String::new();
        };
        let base = self.config().console_url.trim_end_matches('/');
        if base.is_empty() {
            format!(" Your items: `/v1/reviews/{id}/items?reviewer=me`")
        } else {
            format!(" Your items: <{base}/reviews/{id}|review them in the console>")
        }
    }

    /// A DM to the reviewer (`text` is Slack mrkdwn, already escaped), once per (notification,
    /// reviewer). `false` when Slack has no user
    /// for them (or may not look one up): the caller posts to the channel instead. A Slack error
    /// worth retrying fails the delivery, which the outbox retries.
    async fn dm_reviewer(
        &self,
        n: &Notification,
        login: &str,
        text: &str,
    ) -> Result<bool, DeliverError> {
        let user = match self.identity().slack_user(login).await {
            Ok(u) => u,
            Err(IdentityError::Slack(e)) if e.is_retryable() => return Err(e.into()),
            Err(e) => {
                tracing::info!(reviewer = %login, error = %e, "no Slack DM for a reviewer; posting to the default channel");
                return Ok(false);
            }
        };
        let key = format!("{}:{}", n.id, login.to_ascii_lowercase());
        self.post_once_keyed(
            &key,
            &user,
            json!({"channel": user, "text": text, "blocks": simple(text)}),
        )
        .await?;
        Ok(true)
    }

    /// Posts `text` (mrkdwn, already escaped) to the default channel once per `key`; nothing
    /// when no default channel is configured (the outbound events still carry the notice).
    async fn to_default_channel(&self, key: &str, text: &str) -> Result<(), DeliverError> {
        let channel = self.config().default_channel.clone();
        if channel.is_empty() {
            return Ok(());
        }
        self.post_once_keyed(key, &channel, json!({"channel": channel, "text": text}))
            .await
    }
}

fn when(ms: i64) -> String {
    crate::clock::ms_to_datetime(ms)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}
