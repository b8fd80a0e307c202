//! Witnesses: every audit checkpoint note POSTed, as it is, to the URLs in `audit.witness_urls`.
//!
//! Why it exists: a checkpoint only protects the log if a copy lives where the database's
//! operators cannot rewrite it. A witness is any HTTP endpoint that keeps what it is given (an
//! object store behind a pre-signed URL, a second party's service, a C2SP witness fronted by a
//! small adapter); each is its own outbox channel (`witness:<n>`), so a dead one delays nothing
//! else and a failed push is retried like any delivery and, exhausted, shows as a dead letter.
//!
//! What it must never do: send anything but checkpoints, follow redirects, or log the URL (it
//! may carry a credential: the channel is named by its position in the list).

use std::time::Duration;

use async_trait::async_trait;

use crate::notify::{kinds, Deliverer, DeliveryError, Notification};

pub struct Witness {
    channel: String,
    url: String,
    http: reqwest::Client,
}

impl Witness {
    /// `index` names the channel (`witness:0`, …); the URL was checked by the configuration.
    pub fn new(index: usize, url: &str, timeout: Duration) -> Result<Witness, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Witness {
            channel: format!("witness:{index}"),
            url: url.to_string(),
            http,
        })
    }
}

#[async_trait]
impl Deliverer for Witness {
    fn channel(&self) -> &str {
        &self.channel
    }

    fn wants(&self, kind: &str) -> bool {
        kind == kinds::AUDIT_CHECKPOINT
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let Some(note) = n.payload.get("note").and_then(|v| v.as_str()) else {
            return Err(DeliveryError::Permanent(
                "the checkpoint notification has no note".into(),
            ));
        };
        let resp = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(note.to_string())
            .send()
            .await
            .map_err(|e| DeliveryError::Retry {
                message: format!("cannot reach the witness: {}", crate::redact::http_error(e)),
                after: None,
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status == reqwest::StatusCode::GONE {
            return Err(DeliveryError::Permanent(format!(
                "witness answered {status}"
            )));
        }
        Err(DeliveryError::Retry {
            message: format!("witness answered {status}"),
            after: None,
        })
    }
}
