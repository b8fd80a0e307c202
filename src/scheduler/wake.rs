//! The wake-up listener: a dedicated pub/sub connection on the wake channel.
//!
//! Why it exists: a replica sleeps until the next due time; when a grant with an earlier due
//! time is scheduled (`ExpiryIndex::schedule` publishes its due time), the sleeping worker must
//! wake now rather than after the later one. Pub/sub is push, so idle replicas cost Redis nothing.
//!
//! What it must never do: be the only way a due grant gets noticed. Messages are lost while the
//! connection is down, so the worker also wakes at its next due time and at a safety cap, and a
//! reconnect always wakes it once (something may have been scheduled meanwhile).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::backoff;
use super::shared::Inner;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn run(inner: Arc<Inner>, cancel: CancellationToken) {
    let channel = inner.index.wake_channel();
    let mut failures: u32 = 0;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let connected = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT, async {
                let mut ps = inner.redis.client().get_async_pubsub().await?;
                ps.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(ps)
            }) => r,
            _ = cancel.cancelled() => return,
        };
        match connected {
            Ok(Ok(ps)) => {
                if failures > 0 {
                    tracing::info!("expiry wake-up listener reconnected");
                }
                failures = 0;
                // Anything published while we were not listening was lost: look once.
                inner.wake.notify_one();
                let mut stream = ps.into_on_message();
                loop {
                    tokio::select! {
                        msg = stream.next() => match msg {
                            Some(msg) => {
                                let due: Option<i64> = msg.get_payload().ok();
                                // Wake only for something earlier than what the worker waits for;
                                // a flood of far-future schedules must not spin it.
                                let planned = inner.next_wake_ms.load(Ordering::Acquire);
                                if due.is_none_or(|d| d < planned) {
                                    inner.wake.notify_one();
                                }
                            }
                            None => break,
                        },
                        _ = cancel.cancelled() => return,
                    }
                }
                tracing::warn!("expiry wake-up listener lost its connection; reconnecting");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "expiry wake-up listener cannot subscribe");
            }
            Err(_) => tracing::warn!("expiry wake-up listener timed out connecting"),
        }
        failures = failures.saturating_add(1);
        let wait = backoff::delay(
            Duration::from_millis(200),
            Duration::from_secs(10),
            failures,
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {},
            _ = cancel.cancelled() => return,
        }
    }
}
