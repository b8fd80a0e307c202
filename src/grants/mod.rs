//! Grants: time-bounded Okta access for one user (flows 4 and 5; invariants I2, I4, I5, I6, I8).
//!
//! Why it exists: this is where access is given and taken, and the only module that adds or
//! removes access in Okta (I9). [`GrantService`] creates, extends and revokes grants
//! ([`service`]), implements the scheduler's [`crate::scheduler::ExpiryHandler`] ([`handler`]),
//! answers people who ask through a channel after asking
//! [`crate::authz`] ([`gate`]), removes access no grant explains and restores a grant's lost access for the drift reaction,
//! the sync and the reviews ([`access`]), and checks the input of a grant or a request
//! ([`input`]), and finishes a grant a crash left `provisioning` ([`resume`]). Its Okta calls (`provision`), SQL (`repo`) and Redis lock (`lock`) are private:
//! every other module goes through the service.
//!
//! What it must never do: call Okta for a grant that is not yet durable and scheduled, or take
//! access it did not give (see the module docs of `service`, `handler` and `access`).

pub mod access;
mod batch;
mod commit;
pub mod error;
pub mod external;
mod gate;
pub mod handler;
pub mod input;
mod lock;
pub mod model;
mod provision;
mod repo;
pub mod resume;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

pub use access::{is_not_found, Access, AuditNote, Restored, Settled, Unexplained};
pub use error::GrantError;
pub use input::MAX_REASON;
pub use lock::{LockError, LOCK_TTL};
pub use model::{Grant, GrantState};
pub use provision::{Holding, Removed};
pub use repo::ListFilter;
pub use service::{CreateGrant, Holder};

use crate::clock::Clock;
use crate::okta::OktaClient;
use crate::policy::PolicyHandle;
use crate::redis_conn::RedisConn;
use crate::scheduler::ExpiryIndex;
use crate::store::Store;
use crate::tasks::Tasks;

/// Cheap to clone: one shared inner.
#[derive(Clone)]
pub struct GrantService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    redis: RedisConn,
    clock: Clock,
    okta: OktaClient,
    index: ExpiryIndex,
    policy: PolicyHandle,
    failed_retry_interval: Duration,
    /// When set, provisioning runs as a tracked task, so a caller that goes away (an HTTP
    /// request timing out) cannot cancel it between the Okta add and its record.
    tasks: Option<Tasks>,
    /// Batches the expiry path's state changes into shared transactions (see `commit`).
    commits: commit::GroupCommit,
    /// Tests only: a pause before the unexplained-access lock (see `access::BeforeLockHook`).
    #[cfg(feature = "test-hooks")]
    before_lock: std::sync::Mutex<Option<access::BeforeLockHook>>,
}

impl GrantService {
    pub fn new(
        store: Store,
        redis: RedisConn,
        clock: Clock,
        okta: OktaClient,
        policy: PolicyHandle,
        failed_retry_interval: Duration,
    ) -> Self {
        let index = ExpiryIndex::new(redis.clone());
        // Exported at 0 from the start, so the failed-grants alert's increase() sees the first one.
        metrics::counter!("jit_grants_failed_total").increment(0);
        GrantService {
            inner: Arc::new(Inner {
                store,
                redis,
                clock,
                okta,
                index,
                policy,
                failed_retry_interval,
                tasks: None,
                commits: commit::GroupCommit::default(),
                #[cfg(feature = "test-hooks")]
                before_lock: std::sync::Mutex::new(None),
            }),
        }
    }

    /// Runs provisioning on `tasks` (what `serve` does); see [`Inner::tasks`].
    pub fn with_tasks(self, tasks: Tasks) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.tasks = Some(tasks);
                GrantService {
                    inner: Arc::new(inner),
                }
            }
            // Already shared: keep it as it is (provisioning then runs in the caller's task).
            Err(inner) => GrantService { inner },
        }
    }

    pub(crate) fn tasks(&self) -> Option<&Tasks> {
        self.inner.tasks.as_ref()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn redis(&self) -> &RedisConn {
        &self.inner.redis
    }
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }
    pub fn okta(&self) -> &OktaClient {
        &self.inner.okta
    }
    pub fn index(&self) -> &ExpiryIndex {
        &self.inner.index
    }
    pub fn policy(&self) -> &PolicyHandle {
        &self.inner.policy
    }
    pub(crate) fn commits(&self) -> &commit::GroupCommit {
        &self.inner.commits
    }
    fn failed_retry_ms(&self) -> i64 {
        i64::try_from(self.inner.failed_retry_interval.as_millis()).unwrap_or(i64::MAX)
    }

    /// Counts transitions by target state (`jit_grants_total{state}`).
    pub(crate) fn count(&self, state: &'static str) {
        metrics::counter!("jit_grants_total", "state" => state).increment(1);
    }
}

/// Reads one grant inside a caller's transaction (the notification layer derives what to tell
/// people from the grant as committed with its audit entry).
pub async fn get_in(
    conn: &mut sqlx::AnyConnection,
    id: &str,
) -> Result<Option<Grant>, crate::store::StoreError> {
    repo::get_conn(conn, id).await
}

/// Grants matching `f`, read straight from SQL (the command line lists grants without Okta).
pub async fn list(store: &Store, f: &ListFilter) -> Result<Vec<Grant>, crate::store::StoreError> {
    repo::list(store, f).await
}

/// One grant by id, read straight from SQL; `None` when there is none.
pub async fn find(store: &Store, id: &str) -> Result<Option<Grant>, crate::store::StoreError> {
    repo::get(store, id).await
}
