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

mod config;
pub mod confirm;
pub mod envelope;
pub mod inbox;
pub mod reactions;
pub mod refusals;
mod retention;
pub mod window;
pub mod worker;

use std::sync::Arc;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

pub use config::EventsConfig;

use crate::clock::Clock;
use crate::grants::GrantService;
use crate::policy::{Policy, PolicyHandle, ResourceKind};
use crate::store::Store;
use crate::tasks::Tasks;
use envelope::OktaEvent;
use reactions::{DEPARTURE_TYPES, LOCK_TYPE};

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
    /// Refused hook requests not yet written (see [`refusals`]).
    refusals: Arc<refusals::Refusals>,
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
    /// The policy the intake classifies events against.
    pub fn policy(&self) -> &PolicyHandle {
        &self.inner.policy
    }

    /// Where deliveries are stored (group-committed, deduplicated on uuid).
    pub fn intake(&self) -> &inbox::Intake {
        &self.inner.intake
    }

    /// Wakes this replica's worker: something it must process was stored.
    pub fn wake_worker(&self) {
        self.inner.wake.notify_one();
    }

    /// Whether `headers` carry one of the configured secrets. Every configured secret is
    /// compared (no early exit), over SHA-256 digests of equal length.
    pub fn authenticated(&self, headers: &HeaderMap) -> bool {
        self.authenticate(headers).is_ok()
    }

    /// Like [`Events::authenticated`], with the reason of a refusal for the log and the
    /// count (never for the caller: the HTTP answer is the same for all of them).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<(), refusals::Refusal> {
        if self.inner.secret_hashes.is_empty() {
            return Err(refusals::Refusal::NotConfigured);
        }
        let Some(v) = headers.get(self.inner.config.auth_header.as_str()) else {
            return Err(refusals::Refusal::MissingHeader);
        };
        let got: [u8; 32] = Sha256::digest(v.as_bytes()).into();
        let mut ok = subtle::Choice::from(0);
        for h in &self.inner.secret_hashes {
            ok |= h.ct_eq(&got);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(refusals::Refusal::WrongSecret)
        }
    }

    /// Where refused hook requests are counted.
    pub fn refusals(&self) -> &refusals::Refusals {
        &self.inner.refusals
    }

    /// Whether `ev`, received now (`now_ms`), is outside the freshness window
    /// (`events.max_age`, `events.max_skew`): then it is stored as `stale` and not acted on.
    pub fn stale(&self, ev: &OktaEvent, now_ms: i64) -> Option<window::Stale> {
        window::judge(
            ev,
            now_ms,
            self.inner.config.max_age,
            self.inner.config.max_skew,
        )
    }

    /// Whether an event is about something the broker manages or reacts to (else it is only
    /// counted and remembered for deduplication).
    pub fn relevant(&self, policy: &Policy, ev: &OktaEvent) -> bool {
        let t = ev.event_type.as_str();
        let has = |kind: ResourceKind, id: Option<&str>| {
            policy
                .resources
                .iter()
                .any(|r| r.kind == kind && id.is_none_or(|i| r.okta_id == i))
        };
        let target = |k: &str| ev.target(k).map(|p| p.id.as_str());
        match t {
            _ if DEPARTURE_TYPES.contains(&t) => true,
            LOCK_TYPE => self.inner.config.revoke_on_lock,
            reactions::GROUP_ADD | reactions::GROUP_REMOVE => {
                // No group target: kept, so the worker dead-letters it visibly.
                target("UserGroup").is_none_or(|g| has(ResourceKind::OktaGroup, Some(g)))
            }
            reactions::APP_ADD | reactions::APP_REMOVE => {
                target("AppInstance").is_none_or(|a| has(ResourceKind::OktaApp, Some(a)))
            }
            reactions::ROLE_GRANT | reactions::ROLE_REVOKE => has(ResourceKind::OktaRole, None),
            _ => false,
        }
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
                clock: clock.clone(),
                config,
                policy,
                secret_hashes,
                wake: Arc::new(Notify::new()),
                refusals: Arc::new(refusals::Refusals::new(clock.clone())),
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

    /// Starts `events.purge` (see [`retention`]) and `events.refusals` (see [`refusals`]) on
    /// `tasks`: on every replica, with or without Okta.
    pub fn start_retention(&self, tasks: &Tasks) {
        refusals::spawn(self.inner.refusals.clone(), self.inner.store.clone(), tasks);
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
