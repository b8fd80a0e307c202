//! The requests domain's background work: pending requests past their timeout expire, and
//! approved requests whose grant was interrupted get it.
//!
//! Why it exists: a request waits for people, so its timeout is kept by the broker, not by
//! whoever is looking; and an approval is acknowledged once it is durable, so a crash between
//! the approval and the grant must be finished by someone. Both are checks over SQL, safe on any
//! number of replicas (each change is a compare-and-set; a grant per request is unique).
//!
//! What it must never do: expire a request a decision reached first (the compare-and-set on the
//! version settles it), or create a second grant for a request.

use std::time::Duration;

use super::RequestService;
use crate::tasks::Tasks;

/// Owed grants younger than this are left to the request path that approved them.
const OWED_GRACE_MS: i64 = 30_000;
const BATCH: i64 = 200;

impl RequestService {
    /// One pass: expire overdue pending requests, make owed grants. Returns (expired, granted).
    pub async fn check_once(&self) -> Result<(usize, usize), super::RequestError> {
        let now = self.clock().now_ms();
        let mut expired = 0;
        for r in super::repo::overdue_pending(self.store(), now, BATCH).await? {
            if self
                .end_pending(
                    &r,
                    "expired",
                    "system:broker",
                    "no decision before the pending timeout",
                )
                .await?
            {
                self.count("expired");
                expired += 1;
            }
        }
        let mut granted = 0;
        for r in super::repo::owed_grants(self.store(), now - OWED_GRACE_MS, BATCH).await? {
            match self.make_grant(&r, "system:broker").await {
                Ok(Some(_)) => granted += 1,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(request = %r.id, error = %crate::error::chain(&e), "owed grant not made yet")
                }
            }
        }
        Ok((expired, granted))
    }

    /// Starts `requests.check` on `tasks`: one pass every `interval`, until shutdown.
    pub fn spawn_checks(&self, tasks: &Tasks, interval: Duration) {
        let me = self.clone();
        let cancel = tasks.cancel_token();
        tasks.spawn("requests.check", async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
                if let Err(e) = me.check_once().await {
                    tracing::warn!(error = %crate::error::chain(&e), "request checks failed; retrying next interval");
                }
            }
        });
    }
}
