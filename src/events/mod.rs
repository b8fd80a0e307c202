//! Okta event hooks: verified durable intake, the inbox worker, and the reactions to user
//! departures, drift and access removed by someone else (flow 6).
//!
//! Why it exists: Okta tells the broker within seconds when a user leaves or when someone
//! changes a managed resource by hand. [`http`] answers Okta's verification challenge and
//! accepts deliveries (secret checked in constant time on the raw request, body parsed only
//! after); [`inbox`] stores every event once (deduplicated on its `uuid`) before the 204, in
//! transactions shared by concurrent deliveries; [`worker`] processes the inbox on any number
//! of replicas with leases, retries and dead letters; [`reactions`] maps each event onto the
//! grants service and the drift reaction ([`crate::drift`]); `retention` deletes finished events
//! after `events.retention`; [`cli`] registers the hook in Okta.
//!
//! What it must never do: change anything for a delivery that is not authenticated, answer a
//! delivery before its events are durable, process one event twice in effect, or mistake the
//! broker's own Okta changes for someone else's.

pub mod cli;
mod config;
pub mod envelope;
pub mod http;
pub mod inbox;
pub mod reactions;
mod retention;
pub mod worker;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

pub use config::EventsConfig;

use crate::clock::Clock;
use crate::grants::GrantService;
use crate::policy::PolicyHandle;
use crate::store::Store;
use crate::tasks::Tasks;

/// The event hook intake, shared by the HTTP handlers. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Clock,
    config: EventsConfig,
    policy: PolicyHandle,
    intake: inbox::Intake,
    /// SHA-256 of each accepted secret: compared in constant time over a fixed length, so
    /// neither the secret's bytes nor its length leak through timing.
    secret_hashes: Vec<[u8; 32]>,
    /// Wakes this replica's worker when a delivery stored something.
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("auth_header", &self.inner.config.auth_header)
            .field("secrets", &self.inner.secret_hashes.len())
            .finish_non_exhaustive()
    }
}

impl Events {
    pub fn new(store: Store, clock: Clock, config: EventsConfig, policy: PolicyHandle) -> Self {
        use secrecy::ExposeSecret;
        let secret_hashes: Vec<[u8; 32]> = [&config.secret, &config.previous_secret]
            .into_iter()
            .flatten()
            .map(|s| Sha256::digest(s.expose_secret().as_bytes()).into())
            .collect();
        if secret_hashes.is_empty() {
            tracing::warn!("events.secret is not set: Okta event hook deliveries are refused");
        }
        Events {
            inner: Arc::new(Inner {
                intake: inbox::Intake::new(store.clone(), clock.clone()),
                store,
                clock,
                config,
                policy,
                secret_hashes,
                wake: Arc::new(Notify::new()),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }
    pub fn config(&self) -> &EventsConfig {
        &self.inner.config
    }

    /// Starts `events.purge` (see [`retention`]) on `tasks`: on every replica, with or without
    /// Okta.
    pub fn start_retention(&self, tasks: &Tasks) {
        retention::spawn(
            self.inner.store.clone(),
            self.inner.clock.clone(),
            self.inner.config.retention,
            tasks,
        );
    }

    /// Starts the inbox worker (`events.worker`) on `tasks`. It needs the grants service: a
    /// broker without Okta stores events and processes them once Okta is configured.
    pub fn start(
        &self,
        grants: GrantService,
        requests: Option<crate::requests::RequestService>,
        tasks: &Tasks,
    ) {
        let w = worker::Worker {
            store: self.inner.store.clone(),
            clock: self.inner.clock.clone(),
            config: self.inner.config.clone(),
            reactions: reactions::Reactions::new(
                grants,
                requests,
                self.inner.config.revoke_on_lock,
            ),
            wake: self.inner.wake.clone(),
        };
        let cancel = tasks.cancel_token();
        tasks.spawn("events.worker", w.run(cancel));
    }
}
