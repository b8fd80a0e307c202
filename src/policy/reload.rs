//! The policy in force, and its reload on SIGHUP.
//!
//! Why it exists: operators change the policy file through git and signal the broker; a broken
//! file must never leave the broker without a policy. So a reload parses and checks the whole
//! new file first (offline, then against Okta when a client is configured) and swaps it in only
//! when every check passed; on any error the old policy stays and the errors are logged.
//!
//! What it must never do: swap in a partially valid policy, or run the listener as an untracked
//! task (it observes the shared cancellation token and ends on shutdown).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::{online, Policy, PolicyError};
use crate::okta::OktaClient;
use crate::tasks::Tasks;

/// A cheap, cloneable handle on the policy in force.
#[derive(Clone, Debug)]
pub struct PolicyHandle {
    inner: Arc<RwLock<Arc<Policy>>>,
    path: Option<PathBuf>,
}

impl PolicyHandle {
    pub fn new(policy: Policy, path: Option<PathBuf>) -> Self {
        PolicyHandle {
            inner: Arc::new(RwLock::new(Arc::new(policy))),
            path,
        }
    }

    /// The policy in force. Readers keep their `Arc` for the whole decision, so a reload in the
    /// middle of a request never mixes two policies.
    pub fn current(&self) -> Arc<Policy> {
        match self.inner.read() {
            Ok(g) => g.clone(),
            // A panic while holding the lock cannot leave a half-written Arc: take it anyway.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn replace(&self, policy: Policy) {
        let new = Arc::new(policy);
        match self.inner.write() {
            Ok(mut g) => *g = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// Re-reads the file, validates it (offline, then against Okta when `okta` is given) and
    /// swaps it in. On error the old policy stays in force. Returns the number of resources.
    pub async fn reload(&self, okta: Option<&OktaClient>) -> Result<usize, Vec<PolicyError>> {
        let Some(path) = &self.path else {
            return Ok(self.current().resources.len());
        };
        let policy = Policy::load(path)?;
        if let Some(okta) = okta {
            if let Err(errors) = online::check(&policy, okta).await {
                // Same rule as at start: a definite problem keeps the old policy; what Okta could
                // not answer now (timeouts, the capability probe) is logged, not fatal.
                let (unchecked, definite): (Vec<_>, Vec<_>) = errors
                    .into_iter()
                    .partition(|e| matches!(e, PolicyError::Unchecked { .. }));
                if !definite.is_empty() {
                    return Err(definite);
                }
                for e in &unchecked {
                    tracing::warn!(error = %e, "policy reload: not fully checked against Okta");
                }
            }
        }
        let n = policy.resources.len();
        self.replace(policy);
        Ok(n)
    }
}

/// Reloads the policy on every SIGHUP until shutdown.
pub fn spawn_sighup_listener(tasks: &Tasks, handle: PolicyHandle, okta: Option<OktaClient>) {
    #[cfg(unix)]
    {
        let cancel = tasks.cancel_token();
        tasks.spawn("policy-reload", async move {
            let mut hup =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGHUP: policy reload disabled");
                        return;
                    }
                };
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    got = hup.recv() => {
                        if got.is_none() {
                            return;
                        }
                    }
                }
                match handle.reload(okta.as_ref()).await {
                    Ok(n) => {
                        metrics::counter!("jit_policy_reloads_total", "outcome" => "ok").increment(1);
                        tracing::info!(resources = n, "policy reloaded");
                    }
                    Err(errors) => {
                        metrics::counter!("jit_policy_reloads_total", "outcome" => "error")
                            .increment(1);
                        for e in &errors {
                            tracing::error!(error = %e, "policy reload refused: keeping the previous policy");
                        }
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        let _ = (tasks, handle, okta);
    }
}
