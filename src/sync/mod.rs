//! The inventory sync: the periodic backstop that reads Okta into the inventory and reconciles
//! every managed resource with the grants (drift report, and the actions the policy asks for).
//!
//! Why it exists: event hooks can be lost, disabled or late; a sync makes Okta and the broker
//! agree again. It reads on the lowest priority lane within `okta.read_share` of every
//! rate-limit bucket, so it never delays a revocation or a grant, and it reads only what moved
//! (users by `lastUpdated`, groups whose `lastMembershipUpdated` changed; everything every
//! `sync.full_every` runs). One replica syncs at a time (Redis lock with a fencing token, SQL
//! fence on every write); every run is recorded in `sync_runs` with its drift report.
//!
//! What it must never do: re-add access whose grant has expired (only an active grant before
//! its expiry is restored, re-checked under the access lock), remove access a live grant or a
//! standing allowance explains, act in a dry run, write after losing its lock, or read on a lane
//! above `Priority::Read`.
//!
//! Layout: `lock` the lock and fence; `read` Okta → inventory; `reconcile` explain, plan and
//! act; `runs` the run records and `/v1/sync/runs`; `cli` `jit-broker sync`.

pub mod lock;
mod read;
pub mod reconcile;
pub mod runs;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::audit::AuditError;
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::error::ErrorCode;
use crate::grants::{GrantError, GrantService};
use crate::okta::{OktaClient, OktaError, Priority};
use crate::policy::PolicyHandle;
use crate::redis_conn::{RedisConn, RedisError};
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;

pub use reconcile::Finding;
pub use runs::RunRecord;

/// The `[sync]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Cron expression with seconds (`sec min hour day month weekday`); empty: no scheduled
    /// syncs (`jit-broker sync` still runs one).
    pub schedule: String,
    /// Every Nth run lists everything, whatever the delta keys say.
    pub full_every: u32,
    /// List the members of every group, not only of managed ones.
    pub all_groups: bool,
    /// List the assignments of every app, not only of managed ones.
    pub all_apps: bool,
    #[serde(with = "humantime_serde")]
    pub lock_ttl: Duration,
    /// A live grant this far past its expiry is taken as missed by the scheduler and expired.
    #[serde(with = "humantime_serde")]
    pub overdue_grace: Duration,
    /// The users delta asks for `lastUpdated` after the previous run's start minus this, to
    /// cover clock skew between Okta and the broker.
    #[serde(with = "humantime_serde")]
    pub delta_overlap: Duration,
}

impl SyncConfig {
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if let Err(m) = self.cron() {
            errors.push(ConfigError::invalid("sync.schedule", m));
        }
        if self.full_every == 0 {
            errors.push(ConfigError::invalid(
                "sync.full_every",
                "must be at least 1 (1: every run lists everything)",
            ));
        }
        if self.lock_ttl < Duration::from_secs(3) {
            errors.push(ConfigError::invalid("sync.lock_ttl", "must be at least 3s"));
        }
        errors
    }

    /// The parsed schedule; `None` when syncs are not scheduled.
    pub fn cron(&self) -> Result<Option<cron::Schedule>, String> {
        let s = self.schedule.trim();
        if s.is_empty() {
            return Ok(None);
        }
        cron::Schedule::from_str(s)
            .map(Some)
            .map_err(|e| format!("not a cron expression with seconds (`0 */10 * * * *`): {e}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("another sync is running")]
    Busy,
    #[error("the sync lock was lost to another replica; this run stopped before writing more")]
    LostLock,
    #[error("no sync run `{0}`")]
    NotFound(String),
    #[error("Okta read failed")]
    Okta(#[from] OktaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error(transparent)]
    Drift(#[from] crate::drift::DriftError),
    #[error("Redis is unavailable for the sync lock")]
    Redis(#[from] redis::RedisError),
}

impl From<sqlx::Error> for SyncError {
    fn from(e: sqlx::Error) -> Self {
        SyncError::Store(StoreError::Query(e))
    }
}

impl From<RedisError> for SyncError {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::Connect(e)
            | RedisError::Command(e)
            | RedisError::UnknownMaster { source: e, .. } => SyncError::Redis(e),
            RedisError::Url(m) => SyncError::Redis(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "invalid redis.url",
                m,
            ))),
        }
    }
}

impl ErrorCode for SyncError {
    fn status(&self) -> StatusCode {
        match self {
            SyncError::Busy | SyncError::LostLock => StatusCode::CONFLICT,
            SyncError::NotFound(_) => StatusCode::NOT_FOUND,
            SyncError::Okta(e) => ErrorCode::status(e),
            SyncError::Store(e) => e.status(),
            SyncError::Audit(e) => e.status(),
            SyncError::Grant(e) => e.status(),
            SyncError::Drift(e) => e.status(),
            SyncError::Redis(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            SyncError::Busy => "sync_running",
            SyncError::LostLock => "sync_lock_lost",
            SyncError::NotFound(_) => "not_found",
            SyncError::Okta(e) => ErrorCode::code(e),
            SyncError::Store(e) => e.code(),
            SyncError::Audit(e) => e.code(),
            SyncError::Grant(e) => e.code(),
            SyncError::Drift(e) => e.code(),
            SyncError::Redis(_) => "redis_unavailable",
        }
    }
}

/// What one run is asked to do.
#[derive(Clone, Default)]
pub struct SyncOptions {
    /// Read and plan, record the run and its report, change nothing in Okta or grants.
    pub dry_run: bool,
    /// List everything, ignoring the delta keys.
    pub full: bool,
    /// Called as the run advances (the CLI's progress line).
    pub progress: Option<ProgressFn>,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How far a run has got.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub phase: &'static str,
    pub objects: u64,
    pub okta_calls: u64,
}

/// Counts of one run (a run still `running` has none recorded yet).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Counts {
    pub users_read: u64,
    pub groups_read: u64,
    pub objects_listed: u64,
    pub objects_unchanged: u64,
    pub memberships_seen: u64,
    pub role_users_read: u64,
    pub findings: u64,
    pub changed: u64,
    pub action_errors: u64,
}

/// Everything a run needs. Cheap to clone.
#[derive(Clone)]
pub struct Syncer {
    pub(crate) store: Store,
    pub(crate) redis: RedisConn,
    pub(crate) clock: Clock,
    pub(crate) okta: OktaClient,
    pub(crate) policy: PolicyHandle,
    pub(crate) grants: GrantService,
    pub(crate) cfg: SyncConfig,
}

impl Syncer {
    pub fn new(grants: GrantService, cfg: SyncConfig) -> Syncer {
        Syncer {
            store: grants.store().clone(),
            redis: grants.redis().clone(),
            clock: grants.clock().clone(),
            okta: grants.okta().clone(),
            policy: grants.policy().clone(),
            grants,
            cfg,
        }
    }

    /// Runs one sync now: takes the lock (or answers [`SyncError::Busy`]), reads, reconciles,
    /// records the run. A run that fails after it started is recorded as failed and its error
    /// returned; the inventory keeps whatever objects were fully written.
    pub async fn run(&self, opts: SyncOptions) -> Result<RunRecord, SyncError> {
        let lock = lock::SyncLock::acquire(&self.redis, self.cfg.lock_ttl).await?;
        let result = {
            let body = self.run_locked(&lock, &opts);
            tokio::pin!(body);
            let renew = lock.keep_renewed(&self.clock);
            tokio::pin!(renew);
            // When the renewal gives up it marks the lock lost; the body then stops at its next
            // check or fenced write. The body is never dropped mid-way here.
            let mut renewing = true;
            loop {
                tokio::select! {
                    r = &mut body => break r,
                    _ = &mut renew, if renewing => renewing = false,
                }
            }
        };
        lock.release().await;
        result
    }

    async fn run_locked(
        &self,
        lock: &lock::SyncLock,
        opts: &SyncOptions,
    ) -> Result<RunRecord, SyncError> {
        let started = self.clock.now_ms();
        let state = runs::state(&self.store).await?;
        let full = opts.full
            || state.users_since == 0
            || state.runs_since_full + 1 >= i64::from(self.cfg.full_every);
        let id = uuid::Uuid::now_v7().to_string();
        runs::start(&self.store, lock.fence(), &id, started, full, opts.dry_run).await?;
        let reads_before = self.okta.dispatched(Priority::Read);
        let revokes_before = self.okta.dispatched(Priority::Revoke);
        let grants_before = self.okta.dispatched(Priority::Grant);
        let mut warnings = Vec::new();
        let mut counts = Counts::default();
        let outcome = async {
            let seen = read::read_all(
                self,
                lock,
                full,
                state.users_since,
                opts,
                &mut counts,
                &mut warnings,
            )
            .await?;
            let mut findings = reconcile::plan(self, lock, &seen, &mut warnings).await?;
            counts.findings = findings.len() as u64;
            if !opts.dry_run {
                reconcile::apply(self, lock, &id, &mut findings, &mut counts, &mut warnings)
                    .await?;
            }
            Ok::<_, SyncError>(findings)
        }
        .await;
        let calls = CallCounts {
            read: delta(&reads_before, &self.okta.dispatched(Priority::Read)),
            revoke: delta(&revokes_before, &self.okta.dispatched(Priority::Revoke)),
            grant: delta(&grants_before, &self.okta.dispatched(Priority::Grant)),
        };
        let ended = self.clock.now_ms();
        match outcome {
            Ok(report) => {
                let rec = RunRecord {
                    id,
                    started_at: started,
                    ended_at: Some(ended),
                    mode: if full { "full" } else { "delta" }.into(),
                    dry_run: opts.dry_run,
                    outcome: "succeeded".into(),
                    fence: lock.fence(),
                    counts,
                    okta_calls: calls,
                    warnings,
                    report,
                    error: None,
                };
                // The delta cursor moves only when a run read everything it meant to.
                let users_since = started - ms(self.cfg.delta_overlap);
                runs::finish(&self.store, lock.fence(), &rec, Some((users_since, full))).await?;
                Ok(rec)
            }
            Err(e) => {
                let rec = RunRecord {
                    id,
                    started_at: started,
                    ended_at: Some(ended),
                    mode: if full { "full" } else { "delta" }.into(),
                    dry_run: opts.dry_run,
                    outcome: if matches!(e, SyncError::LostLock) {
                        "lost_lock"
                    } else {
                        "failed"
                    }
                    .into(),
                    fence: lock.fence(),
                    counts,
                    okta_calls: calls,
                    warnings,
                    report: Vec::new(),
                    error: Some(crate::error::chain(&e)),
                };
                // A run that lost its lock must not write even its own record: the new holder
                // marks it abandoned.
                if !matches!(e, SyncError::LostLock) {
                    if let Err(we) = runs::finish(&self.store, lock.fence(), &rec, None).await {
                        tracing::warn!(error = %crate::error::chain(&we), "cannot record the failed sync run");
                    }
                }
                Err(e)
            }
        }
    }
}

/// Okta calls of one run, by lane and bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CallCounts {
    pub read: BTreeMap<String, u64>,
    pub revoke: BTreeMap<String, u64>,
    pub grant: BTreeMap<String, u64>,
}

impl CallCounts {
    pub fn total(&self) -> u64 {
        [&self.read, &self.revoke, &self.grant]
            .iter()
            .flat_map(|m| m.values())
            .sum()
    }
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0).min(*v)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Starts the scheduled syncs (`sync.cron`) when `sync.schedule` is set. A run that finds
/// another replica syncing skips that tick; a failed run is logged and the next tick tries again.
pub fn spawn(tasks: &Tasks, syncer: Syncer) {
    let schedule = match syncer.cfg.cron() {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "sync.schedule is invalid; no scheduled syncs");
            return;
        }
    };
    let cancel = tasks.cancel_token();
    tasks.spawn("sync.cron", async move {
        loop {
            let Some(next) = schedule.after(&syncer.clock.now()).next() else {
                return;
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = syncer.clock.sleep_until_ms(next.timestamp_millis()) => {}
            }
            // On shutdown the run is dropped where it stands: every write is one transaction per
            // object and every action is idempotent, so the next run finishes what it left.
            let r = tokio::select! {
                _ = cancel.cancelled() => return,
                r = syncer.run(SyncOptions::default()) => r,
            };
            match r {
                Ok(r) => tracing::info!(run = %r.id, findings = r.counts.findings, changed = r.counts.changed, calls = r.okta_calls.total(), "sync finished"),
                Err(SyncError::Busy) => tracing::debug!("another replica is syncing; skipped"),
                Err(e) => tracing::warn!(error = %crate::error::chain(&e), "sync failed"),
            }
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::app::Config;

    fn errors(key: &str, value: &str) -> String {
        match Config::load_with_env(None, vec![(key.to_string(), value.to_string())]) {
            Ok(_) => String::new(),
            Err(errs) => errs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn defaults_are_valid_and_scheduled() {
        let c = Config::load_with_env(None, Vec::new()).unwrap();
        assert!(c.sync.cron().unwrap().is_some());
        assert_eq!(c.okta.read_share, 50);
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(errors("JIT_SYNC__SCHEDULE", "every tuesday").contains("sync.schedule"));
        assert!(errors("JIT_SYNC__FULL_EVERY", "0").contains("sync.full_every"));
        assert!(errors("JIT_SYNC__FULL_EVERY", "-1").contains("full_every"));
        assert!(errors("JIT_SYNC__LOCK_TTL", "1s").contains("sync.lock_ttl"));
        assert!(errors("JIT_SYNC__ALL_GROUPS", "maybe").contains("all_groups"));
        assert!(errors("JIT_OKTA__READ_SHARE", "0").contains("okta.read_share"));
        assert!(errors("JIT_OKTA__READ_SHARE", "101").contains("okta.read_share"));
        assert!(errors("JIT_SYNC__SCHEDULE", "").is_empty());
    }
}
