//! The `audit.checkpoint` task: takes a signed checkpoint of the audit log every
//! `audit.checkpoint_interval` when the log grew, and once more on a clean shutdown, and
//! publishes it.
//!
//! Why it lives in the app: taking a checkpoint is the audit module's, publishing it is notify's
//! and the outbox's, and the audit layer must not import those. Here one transaction stores the
//! checkpoint and its `audit.checkpoint` notification (with one delivery per outbound endpoint
//! and witness that wants it), so a crash loses neither and publishes nothing twice; then one
//! JSON log line carries it to the logs, which are shipped elsewhere.
//!
//! What it must never do: lock the audit head (appends go on while a checkpoint is taken), or
//! log the signing key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::audit::checkpoint::{self, AuditConfig, Signer, StoredCheckpoint};
use crate::audit::AuditError;
use crate::clock::Clock;
use crate::notify::{self, kinds, Channels, Notification, Wake};
use crate::store::Store;
use crate::tasks::Tasks;

/// Everything one round needs.
#[derive(Clone)]
pub struct Checkpointer {
    pub store: Store,
    pub clock: Clock,
    pub origin: String,
    pub signer: Option<Arc<Signer>>,
    pub channels: Channels,
    pub wake: Wake,
}

static WARNED_UNSIGNED: AtomicBool = AtomicBool::new(false);

/// The signer from the configuration; without one, warns (once per process) that checkpoints
/// are unsigned.
pub fn signer(cfg: &AuditConfig) -> Option<Arc<Signer>> {
    match cfg.signing_key.as_ref().map(Signer::parse) {
        Some(Ok(s)) => Some(Arc::new(s)),
        // `validate` refused a bad key before start; unreachable in practice.
        Some(Err(e)) => {
            tracing::error!(error = %e, "audit checkpoints are UNSIGNED: the signing key is invalid");
            None
        }
        None => {
            if !WARNED_UNSIGNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "audit.signing_key is not set: audit checkpoints are UNSIGNED and marked so; \
                     generate a key with `jit-broker audit keygen NAME`"
                );
            }
            None
        }
    }
}

impl Checkpointer {
    /// Takes and publishes a checkpoint if the log grew since the last one. Returns it if new.
    pub async fn once(&self) -> Result<Option<StoredCheckpoint>, AuditError> {
        let started = std::time::Instant::now();
        let Some(c) = checkpoint::prepare(
            &self.store,
            &self.clock,
            &self.origin,
            self.signer.as_deref(),
        )
        .await?
        else {
            return Ok(None);
        };
        let n = Notification {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kinds::AUDIT_CHECKPOINT.to_string(),
            request_id: None,
            grant_id: None,
            audit_seq: Some(c.tree_size as i64),
            payload: json!({
                "origin": self.origin,
                "tree_size": c.tree_size,
                "root_hash": c.root_hash,
                "note": c.note,
                "signed": c.signed,
                "key_name": c.key_name,
            }),
            created_at: c.created_at,
        };
        let mut tx = self.store.begin().await?;
        let new = checkpoint::store_in(&mut tx, &c).await?;
        if new {
            notify::derive::insert(
                &mut tx,
                &self.channels,
                &n,
                &format!("audit.checkpoint:{}", c.tree_size),
            )
            .await?;
        }
        tx.commit().await?;
        if !new {
            return Ok(None);
        }
        self.wake.notify();
        metrics::gauge!("jit_audit_checkpoint_tree_size").set(c.tree_size as f64);
        metrics::gauge!("jit_audit_checkpoint_last_success_timestamp_seconds")
            .set(c.created_at as f64 / 1000.0);
        metrics::counter!("jit_audit_checkpoints_total", "signed" => c.signed.to_string())
            .increment(1);
        metrics::histogram!("jit_audit_checkpoint_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(
            target: "jit_broker::audit::checkpoint",
            origin = %self.origin,
            tree_size = c.tree_size,
            root_hash = %c.root_hash,
            signed = c.signed,
            key_name = c.key_name.as_deref().unwrap_or(""),
            note = %c.note,
            "audit checkpoint"
        );
        Ok(Some(c))
    }

    /// Starts `audit.checkpoint`: a round every `interval`, one last round on shutdown.
    pub fn spawn(self, tasks: &Tasks, interval: std::time::Duration) {
        let cancel = tasks.cancel_token();
        tasks.spawn("audit.checkpoint", async move {
            // The gap alert's inputs exist from the start, not only after the first round: a
            // log that never had a checkpoint reads as last published at the epoch.
            match checkpoint::latest(&self.store).await {
                Ok(Some(last)) => {
                    metrics::gauge!("jit_audit_checkpoint_last_success_timestamp_seconds")
                        .set(last.created_at as f64 / 1000.0);
                    metrics::gauge!("jit_audit_checkpoint_tree_size").set(last.tree_size as f64);
                }
                Ok(None) => {
                    metrics::gauge!("jit_audit_checkpoint_last_success_timestamp_seconds").set(0.0);
                }
                Err(_) => {}
            }
            if let Ok(n) = checkpoint::uncovered(&self.store).await {
                metrics::gauge!("jit_audit_entries_since_checkpoint").set(n as f64);
            }
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(interval) => {}
                }
                self.round().await;
            }
            // A clean shutdown checkpoints what the log gained since the last round.
            self.round().await;
        });
    }

    async fn round(&self) {
        if let Err(e) = self.once().await {
            metrics::counter!("jit_audit_checkpoint_failures_total").increment(1);
            tracing::warn!(error = %crate::error::chain(&e), "taking an audit checkpoint failed; retrying next round");
        }
        // The gap an alert watches: entries no published checkpoint covers yet.
        if let Ok(n) = checkpoint::uncovered(&self.store).await {
            metrics::gauge!("jit_audit_entries_since_checkpoint").set(n as f64);
        }
    }
}
