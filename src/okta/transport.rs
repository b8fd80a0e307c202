//! One Okta call, end to end: admission (priority, in-flight cap, pacing), the credential, the
//! request, retries and the metrics.
//!
//! Why it exists: every typed call in [`super::client`] needs the same retry and rate-limit
//! behaviour; deciding it once keeps them honest. Retried: transport errors, timeouts, 5xx,
//! 429 (after the bucket's reset, on the server's clock) and E0000268; with a capped, jittered
//! backoff and Okta's `X-Okta-Retry-For` / `X-Okta-Retry-Count` headers.
//!
//! What it must never do: retry a permanent refusal, sleep while holding an in-flight slot,
//! log a header or a body (they carry the token and personal data).

use axum::body::Bytes;
use rand::Rng;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH};
use reqwest::Method;

use super::admission::Answer;
use super::error::OktaError;
use super::ratelimit::bucket_for;
use super::types::Priority;
use super::Inner;

pub(crate) struct Call<'a> {
    /// Metric label: the operation (`remove_group_member`), never an id.
    pub op: &'static str,
    pub method: Method,
    /// Route template, for the bucket: `/api/v1/groups/{groupId}/users/{userId}`.
    pub template: &'static str,
    pub url: url::Url,
    pub body: Option<&'a serde_json::Value>,
    pub priority: Priority,
}

/// An answer Okta gave that was not retried (any status; the typed call interprets it).
pub(crate) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub request_id: Option<String>,
}

impl Reply {
    pub fn error(&self) -> OktaError {
        OktaError::from_body(self.status, &self.body, self.request_id.clone())
    }

    pub fn error_code(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct B {
            error_code: String,
        }
        serde_json::from_slice::<B>(&self.body)
            .ok()
            .map(|b| b.error_code)
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self, op: &'static str) -> Result<T, OktaError> {
        serde_json::from_slice(&self.body).map_err(|source| OktaError::Decode { op, source })
    }
}

fn outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        404 => "not_found",
        409 => "conflict",
        429 => "rate_limited",
        400..=499 => "client_error",
        _ => "server_error",
    }
}

impl Inner {
    pub(crate) async fn execute(&self, call: Call<'_>) -> Result<Reply, OktaError> {
        let bucket = bucket_for(call.template);
        let mut attempt: u32 = 0;
        let mut retry_for: Option<String> = None;
        let mut reauthenticated = false;
        loop {
            // The credential first: an OAuth token fetch must not occupy an API slot.
            let auth = match self.credentials.header(&self.http, &self.clock).await {
                Ok(a) => a,
                Err(e) if e.is_retryable() && attempt < self.retry.max_retries => {
                    self.backoff(call.op, "token_endpoint", attempt).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let permit = self.admission.acquire(call.priority, bucket).await;
            let sent_ms = self.clock.now_ms();
            let started = std::time::Instant::now();
            let mut rb = self
                .http
                .request(call.method.clone(), call.url.clone())
                .header(AUTHORIZATION, auth)
                .header(ACCEPT, "application/json");
            match call.body {
                Some(b) => rb = rb.json(b),
                // Okta answers 411 to a PUT/POST without a length.
                None if call.method == Method::PUT || call.method == Method::POST => {
                    rb = rb.header(CONTENT_LENGTH, "0");
                }
                None => {}
            }
            if let Some(id) = &retry_for {
                rb = rb
                    .header("X-Okta-Retry-For", id.as_str())
                    .header("X-Okta-Retry-Count", attempt.to_string());
            }
            let result = async {
                let r = rb.send().await?;
                let status = r.status().as_u16();
                let headers = r.headers().clone();
                let body = r.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            }
            .await;
            metrics::histogram!("jit_okta_request_duration_seconds", "op" => call.op)
                .record(started.elapsed().as_secs_f64());
            let (status, headers, body) = match result {
                Ok(r) => r,
                Err(e) => {
                    drop(permit);
                    let err = OktaError::from_reqwest(e);
                    let label = if matches!(err, OktaError::Timeout) {
                        "timeout"
                    } else {
                        "transport"
                    };
                    metrics::counter!("jit_okta_requests_total", "op" => call.op, "outcome" => label)
                        .increment(1);
                    tracing::debug!(op = call.op, attempt, outcome = label, "Okta call failed");
                    if attempt < self.retry.max_retries {
                        self.backoff(call.op, label, attempt).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(err);
                }
            };
            permit.answered(Answer {
                headers: Some(&headers),
                status: Some(status),
                sent_ms,
            });
            let request_id = headers
                .get("x-okta-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            metrics::counter!("jit_okta_requests_total", "op" => call.op, "outcome" => outcome(status))
                .increment(1);
            tracing::debug!(op = call.op, status, attempt, request_id = ?request_id, "Okta answered");
            let reply = Reply {
                status,
                headers,
                body,
                request_id,
            };
            let retry_reason = match status {
                429 => {
                    metrics::counter!("jit_okta_rate_limited_total", "bucket" => bucket)
                        .increment(1);
                    Some("rate_limited")
                }
                500..=599 => Some("server_error"),
                409 if reply.error_code().as_deref() == Some("E0000268") => Some("concurrent"),
                401 if !reauthenticated => {
                    // An OAuth token revoked or expired early: one fresh token, one more try.
                    if self.credentials.invalidate().await {
                        reauthenticated = true;
                        continue;
                    }
                    None
                }
                _ => None,
            };
            match retry_reason {
                Some(reason) if attempt < self.retry.max_retries => {
                    retry_for = reply.request_id.clone().or(retry_for);
                    if status != 429 {
                        // A 429 needs no backoff of its own: admission holds the bucket until
                        // the reset (plus jitter) before this call gets its slot again.
                        self.backoff(call.op, reason, attempt).await;
                    } else {
                        metrics::counter!("jit_okta_retries_total", "op" => call.op, "reason" => reason)
                            .increment(1);
                    }
                    attempt += 1;
                }
                Some(_) => return Err(reply.error()),
                None => return Ok(reply),
            }
        }
    }

    /// Capped exponential backoff with "equal jitter": at least half the step, so a retry never
    /// fires instantly, and at most the step, so replicas spread out.
    async fn backoff(&self, op: &'static str, reason: &'static str, attempt: u32) {
        metrics::counter!("jit_okta_retries_total", "op" => op, "reason" => reason).increment(1);
        let base = self.retry.backoff_base_ms.max(1);
        let step = base
            .saturating_mul(1i64 << attempt.min(20))
            .min(self.retry.backoff_max_ms.max(base));
        let wait = step / 2 + rand::thread_rng().gen_range(0..=step - step / 2);
        let until = self.clock.now_ms() + wait;
        self.clock.sleep_until_ms(until).await;
    }
}
