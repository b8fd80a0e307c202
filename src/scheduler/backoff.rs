//! Retry delays: capped, jittered, exponential (I8).
//!
//! Why it exists: a revocation Okta refuses with a 429 or a 5xx must be tried again soon, but a
//! thousand grants failing together must not retry in lockstep and hammer Okta.
//!
//! What it must never do: return zero (a retry storm) or exceed the cap.
//!
//! "Equal jitter": the delay for attempt n is `d/2 + rand(0..=d/2)` with `d = min(cap, base·2^(n-1))`.
//! Unlike full jitter (`rand(0..=d)`), consecutive delays never shrink until the cap is reached,
//! so an operator reading the retry log sees the back-off grow, and half the delay still spreads
//! simultaneous failures apart.

use std::time::Duration;

use rand::Rng;

/// The un-jittered delay before retry number `attempt` (1-based: the delay after the first failure).
pub fn ceiling(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let shift = attempt.saturating_sub(1).min(30);
    let d = base.saturating_mul(1u32 << shift);
    d.min(cap).max(Duration::from_millis(1))
}

/// The jittered delay before retry number `attempt`.
pub fn delay(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let d = ceiling(base, cap, attempt);
    let half = d / 2;
    let span = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    let extra = if span == 0 {
        0
    } else {
        rand::thread_rng().gen_range(0..=span)
    };
    (half + Duration::from_millis(extra)).max(Duration::from_millis(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        assert_eq!(ceiling(base, cap, 1), Duration::from_secs(1));
        assert_eq!(ceiling(base, cap, 2), Duration::from_secs(2));
        assert_eq!(ceiling(base, cap, 4), Duration::from_secs(8));
        assert_eq!(ceiling(base, cap, 7), Duration::from_secs(60));
        assert_eq!(ceiling(base, cap, u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_never_shrinks() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(10);
        for _ in 0..200 {
            let mut prev = Duration::ZERO;
            for attempt in 1..12 {
                let d = delay(base, cap, attempt);
                let c = ceiling(base, cap, attempt);
                assert!(d >= c / 2 && d <= c, "{d:?} outside [{:?}, {c:?}]", c / 2);
                assert!(d >= prev || c == cap, "shrank at attempt {attempt}");
                prev = d;
            }
        }
    }
}
