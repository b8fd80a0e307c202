//! The one clock every time-dependent decision reads.
//!
//! Why it exists: expiry is the product, and expiry logic must be testable without waiting.
//! A [`Clock::tokio`] clock follows tokio's clock, so a test under `tokio::time::pause()` moves
//! the broker's notion of "now" with `tokio::time::advance` and sleeps finish instantly; a
//! [`Clock::system`] clock follows the wall clock (NTP-corrected) in production.
//!
//! What it must never do: be bypassed. Code that calls `Utc::now()` or `SystemTime::now()`
//! directly for a decision cannot be tested with controlled time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Inner {
    System,
    /// Wall time at `start`, advanced by tokio's (possibly paused) monotonic clock.
    Tokio {
        wall_at_start_ms: i64,
        start: tokio::time::Instant,
    },
}

impl Clock {
    pub fn system() -> Self {
        Clock {
            inner: Arc::new(Inner::System),
        }
    }

    /// Anchored at the current wall time, then driven by tokio's clock.
    pub fn tokio() -> Self {
        Self::tokio_at(Utc::now().timestamp_millis())
    }

    /// Anchored at a chosen instant (Unix milliseconds), for reproducible tests.
    pub fn tokio_at(wall_ms: i64) -> Self {
        Clock {
            inner: Arc::new(Inner::Tokio {
                wall_at_start_ms: wall_ms,
                start: tokio::time::Instant::now(),
            }),
        }
    }

    /// True for the production wall clock; false for a clock a test (or embedder) drives.
    /// The scheduler uses it to pick its time base: Redis `TIME` only when the broker's own
    /// clock is the wall clock too.
    pub fn is_system(&self) -> bool {
        matches!(*self.inner, Inner::System)
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &*self.inner {
            Inner::System => Utc::now().timestamp_millis(),
            Inner::Tokio {
                wall_at_start_ms,
                start,
            } => {
                let elapsed = i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX);
                wall_at_start_ms.saturating_add(elapsed)
            }
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        ms_to_datetime(self.now_ms())
    }

    /// Sleeps until the clock reads `deadline_ms` (returns at once if it already does).
    pub async fn sleep_until_ms(&self, deadline_ms: i64) {
        let wait = deadline_ms.saturating_sub(self.now_ms());
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }
}

/// What [`parse_time`] accepts, for messages and help texts.
pub const TIME_FORMATS: &str =
    "a date (`2026-01-31`, midnight UTC) or an RFC 3339 time (`2026-01-31T14:30:00Z`)";

/// A time someone typed (a filter's `since`/`until`, a review's due date): a date, read as
/// midnight UTC, or an RFC 3339 time with its offset. The error quotes the input and names both
/// formats.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    if let Some(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(d.and_utc());
    }
    Err(format!(
        "`{}` is not a time: expected {TIME_FORMATS}",
        crate::redact::shown(s)
    ))
}

/// Milliseconds since the epoch to a UTC time; out-of-range values clamp to the epoch.
pub fn ms_to_datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_dates_or_rfc3339() {
        assert_eq!(
            parse_time("2026-01-31").unwrap().to_rfc3339(),
            "2026-01-31T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2026-01-31T14:30:00+02:00")
                .unwrap()
                .timestamp_millis(),
            parse_time("2026-01-31T12:30:00Z")
                .unwrap()
                .timestamp_millis()
        );
        for bad in ["yesterday", "31/01/2026", "2026-02-30", ""] {
            let e = parse_time(bad).unwrap_err();
            assert!(
                e.contains(&format!("`{bad}`")) && e.contains("RFC 3339"),
                "{e}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = Clock::tokio_at(1_000_000);
        assert_eq!(c.now_ms(), 1_000_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(c.now_ms(), 1_090_000);
        c.sleep_until_ms(1_100_000).await;
        assert_eq!(c.now_ms(), 1_100_000);
    }
}
