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
