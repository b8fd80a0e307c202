//! Okta's per-bucket rate limits and its concurrency cap, with the real headers.
//!
//! Why it exists: the broker must read `X-Rate-Limit-*` on every response and back off on 429
//! (E0000047) using the server's `X-Rate-Limit-Reset` and `Date`. Windows start at the first
//! request after the previous window ended (not aligned to the minute, like Okta's), and their
//! length is configurable so tests can use 1 s windows.
//!
//! What it must never do: answer a request without the three headers, or send `Retry-After`
//! (Okta does not).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits per window for each bucket, plus the concurrency cap.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Window length in milliseconds (Okta: about 60 000).
    pub window_ms: u64,
    /// `/api/v1/groups` (list, create) and `/api/v1/groups/*/users`.
    pub groups: u32,
    /// `/api/v1/groups/{groupId}`.
    pub group_by_id: u32,
    /// `/api/v1/apps/*`.
    pub apps: u32,
    /// `/api/v1/users*`.
    pub users: u32,
    /// Everything else under `/api/v1` and `/oauth2/v1/token`.
    pub other: u32,
    /// Requests in flight at once across the org (Okta: about 75).
    pub concurrency: u32,
}

impl RateLimitConfig {
    /// Okta's published Workforce per-minute limits.
    pub fn okta() -> Self {
        Self {
            window_ms: 60_000,
            groups: 500,
            group_by_id: 1000,
            apps: 100,
            users: 600,
            other: 1200,
            concurrency: 75,
        }
    }

    /// Limits no test or bench will reach (the default).
    pub fn generous() -> Self {
        Self {
            window_ms: 60_000,
            groups: 100_000_000,
            group_by_id: 100_000_000,
            apps: 100_000_000,
            users: 100_000_000,
            other: 100_000_000,
            concurrency: 100_000,
        }
    }

    /// The same limit for every bucket over a window (handy in tests).
    pub fn uniform(limit: u32, window: Duration) -> Self {
        Self {
            window_ms: window.as_millis() as u64,
            groups: limit,
            group_by_id: limit,
            apps: limit,
            users: limit,
            other: limit,
            concurrency: 100_000,
        }
    }

    fn limit(&self, bucket: &str) -> u32 {
        match bucket {
            "groups" => self.groups,
            "group_by_id" => self.group_by_id,
            "apps" => self.apps,
            "users" => self.users,
            _ => self.other,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self::generous()
    }
}

/// The bucket a route (by its template) counts against.
pub fn bucket_for(template: &str) -> &'static str {
    if template == "/api/v1/groups" || template.starts_with("/api/v1/groups/{groupId}/users") {
        "groups"
    } else if template == "/api/v1/groups/{groupId}" {
        "group_by_id"
    } else if template.starts_with("/api/v1/apps") {
        "apps"
    } else if template.starts_with("/api/v1/users") {
        "users"
    } else {
        "other"
    }
}

/// Values for the three `X-Rate-Limit-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    /// UTC epoch seconds when the window resets.
    pub reset: i64,
}

#[derive(Debug)]
struct Window {
    start_ms: i64,
    count: u32,
}

#[derive(Debug)]
pub struct RateLimiter {
    inner: Mutex<(RateLimitConfig, HashMap<&'static str, Window>)>,
}

impl RateLimiter {
    pub fn new(cfg: RateLimitConfig) -> Self {
        Self {
            inner: Mutex::new((cfg, HashMap::new())),
        }
    }

    /// Replaces the limits; every window restarts.
    pub fn set(&self, cfg: RateLimitConfig) {
        if let Ok(mut g) = self.inner.lock() {
            *g = (cfg, HashMap::new());
        }
    }

    pub fn config(&self) -> RateLimitConfig {
        self.inner.lock().map(|g| g.0.clone()).unwrap_or_default()
    }

    pub fn concurrency(&self) -> u32 {
        self.inner
            .lock()
            .map(|g| g.0.concurrency)
            .unwrap_or(u32::MAX)
    }

    /// Counts one request against `bucket`; `Err` carries the headers of a 429.
    pub fn check(&self, bucket: &'static str, now_ms: i64) -> Result<RateInfo, RateInfo> {
        let Ok(mut g) = self.inner.lock() else {
            return Ok(RateInfo {
                limit: 0,
                remaining: 0,
                reset: now_ms / 1000,
            });
        };
        let (cfg, windows) = &mut *g;
        let window = cfg.window_ms.max(1) as i64;
        let limit = cfg.limit(bucket);
        let w = windows.entry(bucket).or_insert(Window {
            start_ms: now_ms,
            count: 0,
        });
        if now_ms >= w.start_ms + window {
            w.start_ms = now_ms;
            w.count = 0;
        }
        // Reset is rounded up so that waiting until it (plus Okta's recommended 1 s) is enough.
        let reset = (w.start_ms + window + 999) / 1000;
        if w.count >= limit {
            return Err(RateInfo {
                limit,
                remaining: 0,
                reset,
            });
        }
        w.count += 1;
        Ok(RateInfo {
            limit,
            remaining: limit - w.count,
            reset,
        })
    }

    /// Headers for a response that was not counted (e.g. a forced 429).
    pub fn peek(&self, bucket: &'static str, now_ms: i64) -> RateInfo {
        let Ok(g) = self.inner.lock() else {
            return RateInfo {
                limit: 0,
                remaining: 0,
                reset: now_ms / 1000,
            };
        };
        let limit = g.0.limit(bucket);
        let window = g.0.window_ms.max(1) as i64;
        match g.1.get(bucket) {
            Some(w) if now_ms < w.start_ms + window => RateInfo {
                limit,
                remaining: limit.saturating_sub(w.count),
                reset: (w.start_ms + window + 999) / 1000,
            },
            _ => RateInfo {
                limit,
                remaining: limit,
                reset: (now_ms + window + 999) / 1000,
            },
        }
    }
}
