//! Injected faults: latency, 5xx, hangs past the client's timeout, forced 429 windows.
//!
//! Why it exists: the broker's retry, backoff and idempotency paths (I4, I8) only run when Okta
//! misbehaves. Faults are set globally or per route (`"METHOD /template"`), at start or at run
//! time, and every random draw comes from one RNG seeded from `SimConfig::rng_seed`, so a
//! sequential client sees the same faults on every run.
//!
//! What it must never do: hang past shutdown (hangs end when the simulator stops), or draw from
//! thread randomness.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Faults for one route, or for all routes without their own entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSpec {
    /// Added latency, uniform in `[min, max]` milliseconds.
    pub latency_ms: Option<(u64, u64)>,
    /// Probability (0..=1) of answering `error_status` instead of the real answer.
    pub error_rate: f64,
    /// Status of injected errors (500 when 0/unset; 502, 503, 504 also sensible).
    pub error_status: u16,
    /// The next N requests answer `error_status` (then the count is spent).
    pub fail_next: u32,
    /// Probability (0..=1) of hanging for `hang_ms` (past any sane client timeout).
    pub timeout_rate: f64,
    /// How long a hang lasts (default 30 000 ms).
    pub hang_ms: u64,
    /// When true, a hanging request is applied first and only its answer is withheld: the
    /// change happened but the client cannot know (the case idempotent retries exist for).
    pub timeout_after_apply: bool,
    /// Answer 429 E0000047 for this many ms from the moment the faults are set.
    pub force_429_for_ms: Option<u64>,
    /// The next N requests answer 429 E0000047.
    pub force_429_next: u32,
}

/// Global faults plus per-route overrides keyed `"METHOD /api/v1/…/{param}"`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    pub global: FaultSpec,
    pub routes: BTreeMap<String, FaultSpec>,
}

impl FaultConfig {
    /// Faults on one route only.
    pub fn route(method: &str, template: &str, spec: FaultSpec) -> Self {
        let mut routes = BTreeMap::new();
        routes.insert(
            format!("{} {}", method.to_ascii_uppercase(), template),
            spec,
        );
        Self {
            global: FaultSpec::default(),
            routes,
        }
    }
}

/// What the middleware must do with one request.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub latency: Option<Duration>,
    pub force_429: bool,
    pub error_status: Option<u16>,
    pub hang: Option<(Duration, bool)>,
}

#[derive(Debug)]
struct State {
    cfg: FaultConfig,
    /// Per spec key ("" = global): forced-429 deadline and remaining counters.
    until_ms: HashMap<String, i64>,
    fail_left: HashMap<String, u32>,
    force_left: HashMap<String, u32>,
    rng: ChaCha8Rng,
}

#[derive(Debug)]
pub struct Faults {
    state: Mutex<State>,
    /// False while no fault is configured: the hot path then skips the lock entirely.
    active: AtomicBool,
}

impl Faults {
    pub fn new(cfg: FaultConfig, seed: u64, now_ms: i64) -> Self {
        let mut st = State {
            cfg: FaultConfig::default(),
            until_ms: HashMap::new(),
            fail_left: HashMap::new(),
            force_left: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_fa17),
        };
        let active = cfg != FaultConfig::default();
        install(&mut st, cfg, now_ms);
        Self {
            state: Mutex::new(st),
            active: AtomicBool::new(active),
        }
    }

    pub fn set(&self, cfg: FaultConfig, now_ms: i64) {
        if let Ok(mut st) = self.state.lock() {
            self.active
                .store(cfg != FaultConfig::default(), Ordering::SeqCst);
            install(&mut st, cfg, now_ms);
        }
    }

    pub fn get(&self) -> FaultConfig {
        self.state.lock().map(|s| s.cfg.clone()).unwrap_or_default()
    }

    pub fn decide(&self, method: &str, template: &str, now_ms: i64) -> Decision {
        if !self.active.load(Ordering::Relaxed) {
            return Decision::default();
        }
        let Ok(mut guard) = self.state.lock() else {
            return Decision::default();
        };
        let st = &mut *guard;
        let route_key = format!("{method} {template}");
        let key = if st.cfg.routes.contains_key(&route_key) {
            route_key
        } else {
            String::new()
        };
        let spec = if key.is_empty() {
            st.cfg.global.clone()
        } else {
            st.cfg.routes[&key].clone()
        };
        if spec == FaultSpec::default() {
            return Decision::default();
        }
        let mut d = Decision::default();
        if let Some((lo, hi)) = spec.latency_ms {
            let ms = if hi > lo {
                st.rng.gen_range(lo..=hi)
            } else {
                lo
            };
            d.latency = Some(Duration::from_millis(ms));
        }
        if st.until_ms.get(&key).is_some_and(|u| now_ms < *u) {
            d.force_429 = true;
            return d;
        }
        if let Some(n) = st.force_left.get_mut(&key).filter(|n| **n > 0) {
            *n -= 1;
            d.force_429 = true;
            return d;
        }
        let status = if spec.error_status == 0 {
            500
        } else {
            spec.error_status
        };
        if let Some(n) = st.fail_left.get_mut(&key).filter(|n| **n > 0) {
            *n -= 1;
            d.error_status = Some(status);
            return d;
        }
        if spec.error_rate > 0.0 && st.rng.gen_bool(spec.error_rate.clamp(0.0, 1.0)) {
            d.error_status = Some(status);
            return d;
        }
        if spec.timeout_rate > 0.0 && st.rng.gen_bool(spec.timeout_rate.clamp(0.0, 1.0)) {
            let ms = if spec.hang_ms == 0 {
                30_000
            } else {
                spec.hang_ms
            };
            d.hang = Some((Duration::from_millis(ms), spec.timeout_after_apply));
        }
        d
    }
}

fn install(st: &mut State, cfg: FaultConfig, now_ms: i64) {
    st.until_ms.clear();
    st.fail_left.clear();
    st.force_left.clear();
    let specs = std::iter::once((String::new(), &cfg.global))
        .chain(cfg.routes.iter().map(|(k, v)| (k.clone(), v)));
    for (k, spec) in specs {
        if let Some(ms) = spec.force_429_for_ms {
            st.until_ms.insert(k.clone(), now_ms + ms as i64);
        }
        st.fail_left.insert(k.clone(), spec.fail_next);
        st.force_left.insert(k, spec.force_429_next);
    }
    st.cfg = cfg;
}
