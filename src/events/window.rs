//! The freshness window: an event hook delivery is acted on only if its event's `published` is
//! recent (within `events.max_age` before now) and not in the future (beyond `events.max_skew`).
//!
//! Why it exists: Okta does not sign event hooks; the only proof of origin is a static shared
//! header. Whoever holds it can send an event dated in 2001, or replay a real departure once its
//! duplicate row was purged after `events.retention`. Such events are stored (`stale`, with the
//! reason as their outcome) so admins see them, counted in `jit_events_stale_total`, and never
//! claimed by the worker. An admin may still send one to the worker (`POST
//! /v1/events/{uuid}/retry`), where it is confirmed with Okta like any other event.
//!
//! What it must never do: act on an event without a readable `published` (a forger would simply
//! leave it out), or decide with anything but the broker's clock.

use std::time::Duration;

use super::envelope::OktaEvent;

/// Why an event is outside the window, as stored in its `outcome` and as the metric's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// No readable `published`.
    Undated,
    /// `published` is more than `max_age` before now.
    TooOld,
    /// `published` is more than `max_skew` after now.
    InFuture,
}

impl Stale {
    pub fn as_str(self) -> &'static str {
        match self {
            Stale::Undated => "stale: no published time",
            Stale::TooOld => "stale: published before events.max_age",
            Stale::InFuture => "stale: published after now plus events.max_skew",
        }
    }

    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Stale::Undated => "undated",
            Stale::TooOld => "too_old",
            Stale::InFuture => "in_future",
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whether `ev`, received at `now_ms`, is outside the window (`None`: act on it).
pub fn judge(ev: &OktaEvent, now_ms: i64, max_age: Duration, max_skew: Duration) -> Option<Stale> {
    let Some(p) = ev.published_ms else {
        return Some(Stale::Undated);
    };
    if p < now_ms.saturating_sub(ms(max_age)) {
        Some(Stale::TooOld)
    } else if p > now_ms.saturating_add(ms(max_skew)) {
        Some(Stale::InFuture)
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ev(published_ms: Option<i64>) -> OktaEvent {
        OktaEvent {
            uuid: "u".into(),
            event_type: "user.lifecycle.deactivate".into(),
            published_ms,
            actor: None,
            targets: Vec::new(),
            debug_data: Default::default(),
        }
    }

    #[test]
    fn window_edges() {
        let day = Duration::from_secs(86_400);
        let skew = Duration::from_secs(300);
        let now = 1_800_000_000_000;
        assert_eq!(judge(&ev(Some(now)), now, day, skew), None);
        assert_eq!(judge(&ev(Some(now - 86_400_000)), now, day, skew), None);
        assert_eq!(
            judge(&ev(Some(now - 86_400_001)), now, day, skew),
            Some(Stale::TooOld)
        );
        assert_eq!(judge(&ev(Some(now + 300_000)), now, day, skew), None);
        assert_eq!(
            judge(&ev(Some(now + 300_001)), now, day, skew),
            Some(Stale::InFuture)
        );
        // 2001-09-09: the forged deactivation of the review.
        assert_eq!(
            judge(&ev(Some(1_000_000_000_000)), now, day, skew),
            Some(Stale::TooOld)
        );
        assert_eq!(judge(&ev(None), now, day, skew), Some(Stale::Undated));
    }
}
