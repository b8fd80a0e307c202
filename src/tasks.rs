//! Named, tracked background tasks and the shutdown signal they share.
//!
//! Why it exists: the scheduler, event processing and sync must finish the revocation they are
//! in the middle of before the process exits, or a crash-free shutdown would look like a crash.
//! Every task is spawned here with a name, observes one cancellation token, and is awaited on
//! shutdown within the grace period; tasks still running after it are named in the log.
//!
//! What it must never do: let code spawn untracked work (`tokio::spawn` without a handle), or
//! wait forever on a task that ignores cancellation.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Debug, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
    running: Arc<Mutex<Vec<String>>>,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// The token every task watches; cancelled once when shutdown begins.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Spawns a tracked task. The future should return soon after `cancel_token()` fires,
    /// finishing the unit of work it is in.
    pub fn spawn<F>(&self, name: &str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let name = name.to_string();
        if let Ok(mut r) = self.running.lock() {
            r.push(name.clone());
        }
        let running = self.running.clone();
        self.tracker.spawn(async move {
            tracing::debug!(task = %name, "task started");
            fut.await;
            tracing::debug!(task = %name, "task finished");
            if let Ok(mut r) = running.lock() {
                if let Some(i) = r.iter().position(|n| n == &name) {
                    r.remove(i);
                }
            }
        });
    }

    /// Names of tasks that have not finished.
    pub fn running(&self) -> Vec<String> {
        self.running.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Cancels every task and waits up to `grace` for them. Returns the names still running.
    pub async fn shutdown(&self, grace: Duration) -> Vec<String> {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            let left = self.running();
            tracing::warn!(tasks = ?left, "background tasks did not stop within the grace period");
            return left;
        }
        Vec::new()
    }
}

/// Runs `work` to its end while calling `renew` every `period` (first after one period), both
/// polled by the caller's task, and returns the work's output; `renew` answering `false` stops
/// the renewals. The renewal is a future of its own beside the work, never awaited in place of
/// it: a renewal waiting for something the work holds (SQLite's one writer connection, inside
/// the work's transaction) must not stop the work from finishing and letting go of it, or both
/// wait until the pool's timeout.
pub async fn while_renewing<T, F>(
    work: impl Future<Output = T>,
    period: Duration,
    mut renew: impl FnMut() -> F,
) -> T
where
    F: Future<Output = bool>,
{
    let mut work = std::pin::pin!(work);
    let renewal = async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !renew().await {
                return;
            }
        }
    };
    let mut renewal = std::pin::pin!(renewal);
    let mut renewing = true;
    loop {
        tokio::select! {
            out = &mut work => return out,
            () = &mut renewal, if renewing => renewing = false,
        }
    }
}

#[cfg(test)]
mod renewing_tests {
    use super::*;

    /// The work holds a one-slot resource (SQLite's writer connection) across an await while a
    /// renewal wants it: the work still finishes, and the renewal gets its turn after.
    #[tokio::test(start_paused = true)]
    async fn a_renewal_waiting_for_what_the_work_holds_does_not_stop_the_work() {
        let slot = Arc::new(tokio::sync::Mutex::new(()));
        let renewals = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let work = {
            let slot = slot.clone();
            async move {
                let _held = slot.lock().await;
                // Longer than a renewal period: a tick comes while the slot is held.
                tokio::time::sleep(Duration::from_millis(350)).await;
                7
            }
        };
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            while_renewing(work, Duration::from_millis(100), || {
                let slot = slot.clone();
                let renewals = renewals.clone();
                async move {
                    let _g = slot.lock().await;
                    renewals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    true
                }
            }),
        )
        .await;
        assert_eq!(out.ok(), Some(7), "the work was stopped by its renewal");
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_answering_false_is_not_called_again() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        while_renewing(
            tokio::time::sleep(Duration::from_millis(1_000)),
            Duration::from_millis(100),
            || {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async { false }
            },
        )
        .await;
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
