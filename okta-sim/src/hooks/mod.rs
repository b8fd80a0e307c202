//! Event hooks: registration, the one-time verification GET, and batched delivery.
//!
//! Why it exists: the broker learns about out-of-band changes and user lifecycle events only
//! through hooks. Like Okta, the simulator verifies a hook with a GET carrying
//! `x-okta-verification-challenge` and expects `{"verification": <value>}` back; then it POSTs
//! batches of LogEvents (events within `batch_window` share one delivery) with the registered
//! auth header, times out after `delivery_timeout`, retries once on timeout, connection error
//! or 5xx (never on 4xx), and can deliver a batch twice on purpose (at-least-once).
//!
//! What it must never do: deliver to an unverified hook, log the hook's secret, or run a
//! delivery outside the tracked task set (deliveries stop on shutdown).

pub mod events;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::HookConfig;
use events::Event;

/// Keep at most this many events in the in-memory System Log.
const EVENT_LOG_CAP: usize = 20_000;

#[derive(Clone, Serialize)]
pub struct Hook {
    pub id: String,
    pub url: String,
    pub auth_header: String,
    #[serde(skip)]
    pub auth_value: String,
    pub verified: bool,
    /// Set through the management API (`/api/v1/eventHooks`); the control API leaves the
    /// defaults: an unnamed hook subscribed to every event type.
    pub name: String,
    /// Subscribed event types; empty means all.
    pub events: Vec<String>,
    /// `ACTIVE` or `INACTIVE`; only active, verified hooks receive deliveries.
    pub active: bool,
    pub created: i64,
    pub last_updated: i64,
    /// The id of the principal that created the hook (Okta's `createdBy`; the control API
    /// leaves it empty).
    pub created_by: String,
    /// Extra headers (`channel.config.headers`) sent with every delivery and verification, and
    /// echoed in the hook's representation, as Okta does.
    pub headers: Vec<(String, String)>,
}

/// What creating a hook through the management API sets beyond URL and auth header.
#[derive(Debug, Clone, Default)]
pub struct HookDetails {
    pub name: String,
    /// Subscribed event types; empty means all.
    pub events: Vec<String>,
    pub created_by: String,
    pub headers: Vec<(String, String)>,
}

/// Adds the hook's extra headers and its auth header to a request (creation refuses a custom
/// header named like the auth header).
fn with_hook_headers(mut req: reqwest::RequestBuilder, hook: &Hook) -> reqwest::RequestBuilder {
    for (k, v) in &hook.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req.header(hook.auth_header.as_str(), hook.auth_value.as_str())
}

impl Hook {
    fn wants(&self, event_type: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event_type)
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("auth_header", &self.auth_header)
            .field("verified", &self.verified)
            .finish_non_exhaustive()
    }
}

fn trim(log: &mut std::collections::VecDeque<Event>) {
    while log.len() > EVENT_LOG_CAP {
        log.pop_front();
    }
}

/// One delivery attempt, kept for tests (`GET /_sim/hooks/deliveries`).
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub hook_id: String,
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub event_uuids: Vec<String>,
    pub duplicate: bool,
}

#[derive(Debug, Default)]
struct Registry {
    hooks: Vec<Hook>,
    deliveries: Vec<Delivery>,
    /// Events as produced; rendered to JSON only when read or delivered (rendering every
    /// event eagerly dominated the cost of mutations under load).
    log: std::collections::VecDeque<Event>,
    next_id: u64,
}

pub struct HookHub {
    tx: mpsc::UnboundedSender<Vec<Event>>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Vec<Event>>>>,
    reg: Arc<Mutex<Registry>>,
    cfg: HookConfig,
    client: reqwest::Client,
    source: String,
    rng: Arc<Mutex<ChaCha8Rng>>,
}

impl HookHub {
    pub fn new(cfg: HookConfig, base_url: &str, seed: u64) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            reg: Arc::new(Mutex::new(Registry::default())),
            cfg,
            client: reqwest::Client::builder().build().unwrap_or_default(),
            source: format!("{base_url}/api/v1/eventHooks"),
            rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x400c_5eed))),
        }
    }

    fn reg(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.reg.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn publish(&self, events: Vec<Event>) {
        let _ = self.tx.send(events);
    }

    pub fn register(&self, url: &str, auth_header: &str, auth_value: &str) -> Hook {
        self.register_with(url, auth_header, auth_value, HookDetails::default())
    }

    /// Registers an active, unverified hook.
    pub fn register_with(
        &self,
        url: &str,
        auth_header: &str,
        auth_value: &str,
        details: HookDetails,
    ) -> Hook {
        let mut reg = self.reg();
        reg.next_id += 1;
        let now = crate::ids::now_ms();
        let hook = Hook {
            id: format!("who{:017}", reg.next_id),
            url: url.into(),
            auth_header: auth_header.into(),
            auth_value: auth_value.into(),
            verified: false,
            name: details.name,
            events: details.events,
            active: true,
            created: now,
            last_updated: now,
            created_by: details.created_by,
            headers: details.headers,
        };
        reg.hooks.push(hook.clone());
        hook
    }

    pub fn hook(&self, id: &str) -> Option<Hook> {
        self.reg().hooks.iter().find(|h| h.id == id).cloned()
    }

    /// Sets a hook's status; `false` when there is no such hook.
    pub fn set_active(&self, id: &str, active: bool) -> bool {
        match self.reg().hooks.iter_mut().find(|h| h.id == id) {
            Some(h) => {
                h.active = active;
                h.last_updated = crate::ids::now_ms();
                true
            }
            None => false,
        }
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.reg().hooks.clone()
    }

    pub fn remove(&self, id: &str) -> bool {
        let mut reg = self.reg();
        let before = reg.hooks.len();
        reg.hooks.retain(|h| h.id != id);
        reg.hooks.len() != before
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.reg().deliveries.clone()
    }

    /// Every event produced so far (a System Log stand-in), oldest first.
    pub fn event_log(&self) -> Vec<Value> {
        let events: Vec<Event> = self.reg().log.iter().cloned().collect();
        events.iter().map(Event::log_event).collect()
    }

    /// Okta's verification: GET with the challenge header; the hook is verified only when the
    /// answer is 200 with `{"verification": <challenge>}`.
    pub async fn verify(&self, id: &str) -> Result<(), String> {
        let hook = self
            .reg()
            .hooks
            .iter()
            .find(|h| h.id == id)
            .cloned()
            .ok_or("no such hook")?;
        let challenge = crate::ids::uuid();
        let resp = with_hook_headers(self.client.get(&hook.url), &hook)
            .header("x-okta-verification-challenge", &challenge)
            .timeout(self.cfg.delivery_timeout)
            .send()
            .await
            .map_err(|e| format!("verification request failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("verification answered {}", resp.status()));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| format!("verification body: {e}"))?;
        if body.get("verification").and_then(Value::as_str) != Some(challenge.as_str()) {
            return Err("verification value does not match the challenge".into());
        }
        if let Some(h) = self.reg().hooks.iter_mut().find(|h| h.id == id) {
            h.verified = true;
        }
        Ok(())
    }

    /// Starts the batching dispatcher as a tracked task.
    pub fn start(self: &Arc<Self>, tracker: &TaskTracker, cancel: CancellationToken) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let hub = self.clone();
        let tr = tracker.clone();
        tracker.spawn(async move {
            loop {
                let first = tokio::select! {
                    _ = cancel.cancelled() => break,
                    m = rx.recv() => match m { Some(m) => m, None => break },
                };
                let mut batch = first;
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(hub.cfg.batch_window) => {}
                }
                while let Ok(more) = rx.try_recv() {
                    batch.extend(more);
                }
                hub.dispatch(batch, &tr, &cancel);
            }
        });
    }

    fn dispatch(
        self: &Arc<Self>,
        batch: Vec<Event>,
        tracker: &TaskTracker,
        cancel: &CancellationToken,
    ) {
        let hooks: Vec<Hook> = {
            let mut reg = self.reg();
            let verified: Vec<Hook> = reg
                .hooks
                .iter()
                .filter(|h| h.verified && h.active)
                .cloned()
                .collect();
            if verified.is_empty() {
                reg.log.extend(batch);
                trim(&mut reg.log);
                return;
            }
            reg.log.extend(batch.iter().cloned());
            trim(&mut reg.log);
            verified
        };
        let rendered: Vec<Value> = batch.iter().map(Event::log_event).collect();
        for hook in &hooks {
            // Each hook receives only the event types it subscribed to.
            let mine: Vec<Value> = rendered
                .iter()
                .filter(|e| hook.wants(e["eventType"].as_str().unwrap_or("")))
                .cloned()
                .collect();
            for chunk in mine.chunks(self.cfg.max_batch.max(1)) {
                let uuids: Vec<String> = chunk
                    .iter()
                    .filter_map(|e| e["uuid"].as_str().map(str::to_string))
                    .collect();
                let body = events::envelope(&format!("{}/{}", self.source, hook.id), chunk);
                let dup = self.cfg.duplicate_rate > 0.0
                    && self
                        .rng
                        .lock()
                        .map(|mut r| r.gen_bool(self.cfg.duplicate_rate.clamp(0.0, 1.0)))
                        .unwrap_or(false);
                let hub = self.clone();
                let hook = hook.clone();
                let cancel = cancel.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = hub.deliver(&hook, &body, &uuids, dup) => {}
                    }
                });
            }
        }
    }

    async fn deliver(&self, hook: &Hook, body: &Value, uuids: &[String], dup: bool) {
        let mut delivered = false;
        for attempt in 1..=2u32 {
            let res = with_hook_headers(self.client.post(&hook.url), hook)
                .header("Accept", "application/json")
                .json(body)
                .timeout(self.cfg.delivery_timeout)
                .send()
                .await;
            let (status, error) = match &res {
                Ok(r) => (Some(r.status().as_u16()), None),
                Err(e) => (
                    None,
                    Some(if e.is_timeout() {
                        "timeout".to_string()
                    } else {
                        e.to_string()
                    }),
                ),
            };
            self.record(hook, attempt, status, error, uuids, false);
            // Retry once on a timeout, a connection failure or a 5xx; never on 4xx.
            match status {
                Some(s) if s < 500 => {
                    delivered = (200..300).contains(&s);
                    break;
                }
                _ => continue,
            }
        }
        if delivered && dup {
            let res = with_hook_headers(self.client.post(&hook.url), hook)
                .json(body)
                .timeout(self.cfg.delivery_timeout)
                .send()
                .await;
            let status = res.as_ref().ok().map(|r| r.status().as_u16());
            let error = res.err().map(|e| e.to_string());
            self.record(hook, 1, status, error, uuids, true);
        }
    }

    fn record(
        &self,
        hook: &Hook,
        attempt: u32,
        status: Option<u16>,
        error: Option<String>,
        uuids: &[String],
        duplicate: bool,
    ) {
        let mut reg = self.reg();
        // Bounded like the event log: drop the oldest tenth when full (amortised O(1)).
        if reg.deliveries.len() >= EVENT_LOG_CAP {
            reg.deliveries.drain(..EVENT_LOG_CAP / 10);
        }
        reg.deliveries.push(Delivery {
            hook_id: hook.id.clone(),
            attempt,
            status,
            error,
            event_uuids: uuids.to_vec(),
            duplicate,
        });
    }

    /// The configured delivery timeout (tests size their slow receivers from it).
    pub fn delivery_timeout(&self) -> Duration {
        self.cfg.delivery_timeout
    }
}
