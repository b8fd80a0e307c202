//! The running simulator's shared state: the org, tokens, limiter, faults, counters, hooks.
//!
//! Why it exists: every handler, the middleware and the `SimHandle` reach the same state
//! through one `Arc<Sim>`.
//!
//! What it must never do: hold the org lock across an await (handlers lock, change, drain
//! events, unlock, then publish the events).

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Principal;
use crate::config::{SimToken, DEFAULT_PRINCIPAL};
use crate::faults::Faults;
use crate::hooks::events::{Actor, Event};
use crate::hooks::HookHub;
use crate::oauth::OAuthState;
use crate::ratelimit::RateLimiter;
use crate::state::Org;

/// Request and mutation counts per route and per bucket.
#[derive(Debug, Default)]
pub struct Counters {
    requests: Mutex<HashMap<(String, String), u64>>,
    mutations: Mutex<HashMap<(String, String), u64>>,
    buckets: Mutex<HashMap<&'static str, u64>>,
}

/// The count for one (method, template); the method is matched case-insensitively.
fn route_count(m: &Mutex<HashMap<(String, String), u64>>, method: &str, template: &str) -> u64 {
    m.lock()
        .ok()
        .and_then(|m| {
            m.get(&(method.to_ascii_uppercase(), template.to_string()))
                .copied()
        })
        .unwrap_or(0)
}

impl Counters {
    pub fn request(&self, method: &str, template: &str, bucket: &'static str) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method.to_string(), template.to_string()))
                .or_default() += 1;
        }
        if let Ok(mut b) = self.buckets.lock() {
            *b.entry(bucket).or_default() += 1;
        }
    }

    pub fn mutation(&self, method: &str, template: &str) {
        if let Ok(mut m) = self.mutations.lock() {
            *m.entry((method.to_string(), template.to_string()))
                .or_default() += 1;
        }
    }

    pub fn requests_for(&self, method: &str, template: &str) -> u64 {
        route_count(&self.requests, method, template)
    }

    pub fn bucket_count(&self, bucket: &str) -> u64 {
        self.buckets
            .lock()
            .ok()
            .and_then(|b| b.get(bucket).copied())
            .unwrap_or(0)
    }

    pub fn mutations_for(&self, method: &str, template: &str) -> u64 {
        route_count(&self.mutations, method, template)
    }

    /// `{requests: {"METHOD /tpl": n}, mutations: {...}, buckets: {...}}`.
    pub fn snapshot(&self) -> serde_json::Value {
        let flat = |m: &Mutex<HashMap<(String, String), u64>>| -> serde_json::Map<String, serde_json::Value> {
            m.lock()
                .map(|m| m.iter().map(|((a, b), n)| (format!("{a} {b}"), (*n).into())).collect())
                .unwrap_or_default()
        };
        let buckets: serde_json::Map<String, serde_json::Value> = self
            .buckets
            .lock()
            .map(|b| {
                b.iter()
                    .map(|(k, n)| (k.to_string(), (*n).into()))
                    .collect()
            })
            .unwrap_or_default();
        serde_json::json!({
            "requests": flat(&self.requests),
            "mutations": flat(&self.mutations),
            "buckets": buckets,
        })
    }

    pub fn reset(&self) {
        if let Ok(mut m) = self.requests.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.mutations.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.buckets.lock() {
            m.clear();
        }
    }
}

pub struct Sim {
    pub org: Mutex<Org>,
    pub base_url: String,
    pub tokens: HashMap<String, SimToken>,
    pub oauth: Option<OAuthState>,
    pub oidc: Option<crate::oidc::OidcState>,
    pub authz: Option<crate::authz::AuthzState>,
    pub limiter: RateLimiter,
    pub faults: Faults,
    pub counters: Counters,
    pub hooks: Arc<HookHub>,
    pub inflight: AtomicU32,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    pub strict_duplicate_app_assign: bool,
    pub require_content_length: bool,
}

impl Sim {
    /// Locks the org; a poisoned lock (a panic mid-change) still yields the data, because the
    /// simulator would rather keep answering than wedge every later test.
    pub fn org(&self) -> MutexGuard<'_, Org> {
        self.org.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The event actor for a principal id: the org's user when it exists, else a synthetic
    /// admin with that id.
    pub fn actor_for(&self, principal_id: &str) -> Actor {
        let org = self.org();
        match org.users.get(principal_id) {
            Some(u) => Actor::user(&u.id, &u.login, &u.display_name()),
            None if principal_id == DEFAULT_PRINCIPAL => {
                Actor::user(principal_id, "jit-broker@example.com", "JIT Broker")
            }
            None => Actor::user(principal_id, principal_id, principal_id),
        }
    }

    pub fn oauth_principal(&self, token: &str) -> Option<Principal> {
        let st = self.oauth.as_ref()?;
        let issued = st.lookup(token, crate::ids::now_ms())?;
        Some(Principal {
            level: st.level(),
            actor: Actor::service_app(&st.principal_id()),
            scopes: Some(issued),
        })
    }

    /// Runs one change under the org lock and publishes the events it produced.
    pub fn mutate<T>(
        &self,
        f: impl FnOnce(&mut Org) -> Result<T, crate::error::OktaError>,
    ) -> Result<T, crate::error::OktaError> {
        let (out, events) = {
            let mut org = self.org();
            let out = f(&mut org);
            let events = org.drain_events();
            (out, events)
        };
        self.publish(events);
        out
    }

    pub fn publish(&self, events: Vec<Event>) {
        if !events.is_empty() {
            self.hooks.publish(events);
        }
    }
}
