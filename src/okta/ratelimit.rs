//! What the broker knows about each Okta rate-limit bucket, learned from response headers.
//!
//! Why it exists: Okta refuses with 429 once a bucket's per-window budget is spent, and a 429
//! on a revocation delays an expiry. So the client spends each window's budget evenly up to the
//! reset (never bursting to zero), and after a refusal waits until the reset computed on the
//! *server's* clock (`X-Rate-Limit-Reset − Date`), not ours.
//!
//! What it must never do: assume a fresh budget it has not seen. Before the first answer of a
//! window (at start, after a reset) only one request per bucket is in flight: it is the probe
//! that reveals the new window.

use reqwest::header::HeaderMap;

/// The rate-limit headers of one response, parsed case-insensitively (Okta sends lowercase).
/// 9999-12-31T23:59:59Z: the latest reset or date the pacing takes as a time.
const MAX_EPOCH_S: i64 = 253_402_300_799;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RateHeaders {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Server epoch seconds.
    pub reset: Option<i64>,
    /// Server epoch seconds (the `Date` header, whole seconds).
    pub date: Option<i64>,
}

impl RateHeaders {
    pub fn parse(h: &HeaderMap) -> RateHeaders {
        fn num<T: std::str::FromStr>(h: &HeaderMap, name: &str) -> Option<T> {
            h.get(name)?.to_str().ok()?.trim().parse().ok()
        }
        let date = h
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| chrono::DateTime::parse_from_rfc2822(s.trim()).ok())
            .map(|d| d.timestamp())
            .filter(|s| (0..=MAX_EPOCH_S).contains(s));
        RateHeaders {
            limit: num(h, "x-rate-limit-limit"),
            remaining: num(h, "x-rate-limit-remaining"),
            // Epoch seconds up to the year 9999: anything beyond is not a time, and would
            // overflow the millisecond arithmetic the pacing does with it.
            reset: num(h, "x-rate-limit-reset").filter(|s: &i64| (0..=MAX_EPOCH_S).contains(s)),
            date,
        }
    }
}

/// Bounds on `server clock − our clock`, in ms, narrowed by every response: the server's
/// `Date` (floored to the second) was read between our send and our receipt. Over many
/// responses this pins the offset far more precisely than one `Date` header can.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ClockOffset {
    lo: Option<i64>,
    hi: Option<i64>,
    since_ms: i64,
}

/// Old bounds are dropped after this long, so a clock step (NTP) is followed.
const OFFSET_MAX_AGE_MS: i64 = 5 * 60 * 1000;

impl ClockOffset {
    /// Okta's clock minus ours, in ms, when the bounds pin it: the middle of `[lo, hi]`.
    pub fn estimate_ms(&self) -> Option<i64> {
        match (self.lo, self.hi) {
            (Some(l), Some(h)) => Some(l + (h - l) / 2),
            _ => None,
        }
    }

    pub fn observe(&mut self, date_s: i64, sent_ms: i64, recv_ms: i64) {
        let lo = date_s * 1000 - recv_ms;
        let hi = date_s * 1000 + 1000 - sent_ms;
        let fresh = recv_ms - self.since_ms > OFFSET_MAX_AGE_MS;
        match (self.lo, self.hi) {
            (Some(l), Some(h)) if !fresh && lo.max(l) <= hi.min(h) => {
                self.lo = Some(lo.max(l));
                self.hi = Some(hi.min(h));
            }
            _ => {
                self.lo = Some(lo);
                self.hi = Some(hi);
                self.since_ms = recv_ms;
            }
        }
    }

    /// The latest local time (ms) at which the server's clock could read `server_s`: waiting
    /// until then is never early.
    pub fn latest_local_ms(&self, server_s: i64, fallback_date_s: i64, recv_ms: i64) -> i64 {
        match self.lo {
            Some(lo) => server_s * 1000 - lo,
            // No estimate yet: the SDK rule, `reset − Date` from receipt.
            None => recv_ms + (server_s - fallback_date_s) * 1000,
        }
    }
}

/// Our picture of one bucket.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    /// Budget left at the last answer that lowered our estimate.
    remaining: u64,
    /// The window's whole budget (`X-Rate-Limit-Limit`), when the server said.
    limit: Option<u64>,
    /// Requests sent since that answer (they may not be counted in `remaining` yet).
    sent_since: u64,
    /// Local ms after which the window is over (already includes the reset margin).
    reset_ms: Option<i64>,
    /// In flight right now in this bucket.
    pub in_flight: u64,
    /// Pacing: not before this local ms.
    next_send_ms: i64,
    /// After a 429: nothing before this local ms.
    blocked_until_ms: i64,
    /// Learnt: a refusal right after a reset we believed had passed means this server rounds
    /// `X-Rate-Limit-Reset` down, so later windows are assumed to end a second later.
    learned_margin_ms: i64,
    /// The last answer carried no rate-limit headers at all: this route is not limited (or a
    /// proxy strips them), so it is not paced; a 429 or headers end this.
    unlimited: bool,
}

/// Sentinel for "not until an answer arrives".
pub(crate) const WAIT_FOR_ANSWER: i64 = i64::MAX;

impl Bucket {
    /// `None` when a request may go now; otherwise the earliest local ms worth re-checking
    /// ([`WAIT_FOR_ANSWER`] when only an answer can change things).
    pub fn ready_at(&self, now: i64) -> Option<i64> {
        if now < self.blocked_until_ms {
            return Some(self.blocked_until_ms);
        }
        if self.unlimited {
            return None;
        }
        match self.reset_ms {
            Some(reset) if now < reset => {
                if self.remaining.saturating_sub(self.sent_since) == 0 {
                    return Some(reset);
                }
                if now < self.next_send_ms {
                    return Some(self.next_send_ms.min(reset));
                }
                None
            }
            // Unknown window (start, or past the reset): one probe at a time.
            _ if self.in_flight == 0 => None,
            _ => Some(WAIT_FOR_ANSWER),
        }
    }

    /// As [`Bucket::ready_at`], but keeping `reserve_pct` percent of the window's limit unspent:
    /// the read lane waits for the next window once only the reserve is left.
    pub fn ready_at_reserving(&self, now: i64, reserve_pct: u32) -> Option<i64> {
        let r = self.ready_at(now);
        if r.is_some() || reserve_pct == 0 || self.unlimited {
            return r;
        }
        match (self.reset_ms, self.limit) {
            (Some(reset), Some(limit)) if now < reset => {
                let reserve = limit.saturating_mul(u64::from(reserve_pct)) / 100;
                let avail = self.remaining.saturating_sub(self.sent_since);
                if avail <= reserve {
                    Some(reset)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// A request of this bucket was just admitted.
    pub fn on_dispatch(&mut self, now: i64) {
        self.in_flight += 1;
        if let Some(reset) = self.reset_ms {
            if now < reset {
                let avail = self.remaining.saturating_sub(self.sent_since);
                self.sent_since += 1;
                // Spread what is left evenly over what is left of the window.
                let interval = (reset - now) / i64::try_from(avail.max(1)).unwrap_or(i64::MAX);
                self.next_send_ms = now + interval;
            }
        }
    }

    /// An answer (or a failure without one) arrived.
    #[allow(clippy::too_many_arguments)]
    pub fn on_answer(
        &mut self,
        h: Option<(&RateHeaders, &ClockOffset)>,
        status: Option<u16>,
        sent_ms: i64,
        recv_ms: i64,
        margin_ms: i64,
        jitter_ms: i64,
    ) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if status == Some(429) && self.reset_ms.is_some_and(|old| sent_ms >= old) {
            self.learned_margin_ms = 1000;
        }
        let Some((h, offset)) = h else { return };
        let (Some(remaining), Some(reset_s)) = (h.remaining, h.reset) else {
            self.unlimited = status != Some(429) && h.limit.is_none();
            return;
        };
        self.unlimited = false;
        if h.limit.is_some() {
            self.limit = h.limit;
        }
        let date_s = h.date.unwrap_or(reset_s);
        let reset_ms = offset.latest_local_ms(reset_s, date_s, recv_ms)
            + margin_ms.max(self.learned_margin_ms);
        let new_window = match self.reset_ms {
            None => true,
            // Our estimate of one reset moves by a few ms as the offset narrows; another window
            // ends at least a second away from it. That includes an *earlier* reset: the org's
            // limits changed (a DynamicScale change, an admin lowering a rate), and the server's
            // word wins over keeping a longer window we would pace far too slowly over.
            Some(old) => (reset_ms - old).abs() > 900 || recv_ms >= old,
        };
        let others = self.in_flight;
        if new_window {
            self.reset_ms = Some(reset_ms);
            self.remaining = remaining;
            self.sent_since = others;
            self.next_send_ms = recv_ms;
        } else {
            if remaining.saturating_sub(others) < self.remaining.saturating_sub(self.sent_since) {
                self.remaining = remaining;
                self.sent_since = others;
            }
            if let Some(old) = self.reset_ms {
                self.reset_ms = Some(old.max(reset_ms));
            }
        }
        if status == Some(429) {
            self.remaining = 0;
            self.blocked_until_ms = reset_ms + jitter_ms;
            self.reset_ms = Some(self.reset_ms.unwrap_or(reset_ms).max(reset_ms));
        }
    }

    /// A 429 without usable headers: back off for `wait_ms` from now.
    pub fn block_for(&mut self, now: i64, wait_ms: i64) {
        self.blocked_until_ms = self.blocked_until_ms.max(now + wait_ms);
    }
}

/// Which Okta bucket a route falls in (Okta's published per-endpoint limits). Every bucket is
/// tracked separately; the numbers come from the headers, only the grouping from here.
pub(crate) fn bucket_for(template: &str) -> &'static str {
    if template.starts_with("/oauth2/") {
        "oauth2"
    } else if template == "/api/v1/groups" || template.starts_with("/api/v1/groups/{groupId}/users")
    {
        "groups"
    } else if template.starts_with("/api/v1/groups/") {
        "group"
    } else if template.starts_with("/api/v1/apps") {
        "apps"
    } else if template.starts_with("/api/v1/users") {
        "users"
    } else {
        "other"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hdr(limit: u64, remaining: u64, reset: i64, date: i64) -> RateHeaders {
        RateHeaders {
            limit: Some(limit),
            remaining: Some(remaining),
            reset: Some(reset),
            date: Some(date),
        }
    }

    #[test]
    fn reads_keep_off_the_reserve() {
        let mut b = Bucket::default();
        let off = ClockOffset::default();
        b.on_dispatch(0);
        // 100 per window, 60 left: a 50 % read share leaves 50 for reads to stay above.
        b.on_answer(Some((&hdr(100, 60, 60, 0), &off)), Some(200), 0, 0, 0, 0);
        assert_eq!(b.ready_at_reserving(0, 50), None);
        for _ in 0..10 {
            b.on_dispatch(0);
        }
        // 50 left: once pacing allows a call, reads wait for the window's reset while
        // revocations and grants (no reserve) still go.
        let t = b.next_send_ms;
        assert_eq!(b.ready_at(t), None);
        assert_eq!(b.ready_at_reserving(t, 0), None);
        assert!(b.reset_ms.is_some());
        assert_eq!(b.ready_at_reserving(t, 50), b.reset_ms);
    }

    #[test]
    fn unknown_bucket_allows_one_probe() {
        let mut b = Bucket::default();
        assert_eq!(b.ready_at(0), None);
        b.on_dispatch(0);
        assert_eq!(b.ready_at(0), Some(WAIT_FOR_ANSWER));
    }

    #[test]
    fn answers_without_headers_are_not_paced() {
        let mut b = Bucket::default();
        b.on_dispatch(0);
        b.on_answer(
            Some((&RateHeaders::default(), &ClockOffset::default())),
            Some(200),
            0,
            5,
            0,
            0,
        );
        b.on_dispatch(6);
        b.on_dispatch(6);
        assert_eq!(b.ready_at(6), None);
    }

    #[test]
    fn spreads_remaining_over_window() {
        let mut b = Bucket::default();
        let mut off = ClockOffset::default();
        b.on_dispatch(1_000_000);
        off.observe(1000, 1_000_000, 1_000_010);
        b.on_answer(
            Some((&hdr(60, 59, 1006, 1000), &off)),
            Some(200),
            1_000_000,
            1_000_010,
            0,
            0,
        );
        assert_eq!(b.ready_at(1_000_010), None);
        b.on_dispatch(1_000_010);
        // 59 left over ~6 s: about 100 ms apart.
        let next = b.ready_at(1_000_011).unwrap();
        assert!((1_000_100..1_000_130).contains(&next), "{next}");
    }

    #[test]
    fn an_earlier_reset_from_the_server_starts_a_new_window() {
        // A 60 s window with a large budget, then the org's limit drops to a 6 s window: the
        // new, earlier reset must replace the old one, or the small budget would be spread over
        // the rest of the old minute (a tenth of the allowed rate).
        let mut b = Bucket::default();
        let mut off = ClockOffset::default();
        b.on_dispatch(1_000_000);
        off.observe(1000, 1_000_000, 1_000_010);
        b.on_answer(
            Some((&hdr(100_000, 99_999, 1060, 1000), &off)),
            Some(200),
            1_000_000,
            1_000_010,
            0,
            0,
        );
        b.on_dispatch(1_000_020);
        b.on_answer(
            Some((&hdr(600, 599, 1006, 1000), &off)),
            Some(200),
            1_000_020,
            1_000_030,
            0,
            0,
        );
        b.on_dispatch(1_000_030);
        // 599 left over ~6 s: about 10 ms apart, not 100 ms (what a 60 s window would give).
        let next = b.ready_at(1_000_031).unwrap();
        assert!((1_000_035..1_000_045).contains(&next), "{next}");
    }

    #[test]
    fn refusal_blocks_until_server_reset() {
        let mut b = Bucket::default();
        let off = ClockOffset::default();
        b.on_dispatch(5_000);
        b.on_answer(
            Some((&hdr(10, 0, 12, 10), &off)),
            Some(429),
            5_000,
            5_000,
            0,
            0,
        );
        assert_eq!(b.ready_at(5_001), Some(7_000));
        assert_eq!(b.ready_at(7_000), None);
    }

    #[test]
    fn offset_narrows() {
        let mut o = ClockOffset::default();
        o.observe(100, 100_200, 100_300);
        o.observe(100, 100_900, 100_950);
        // Server read 100.x both times: offset in [-300, 100].
        assert_eq!(o.lo, Some(-300));
        assert_eq!(o.hi, Some(100));
    }
}

#[cfg(test)]
mod header_bounds {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn a_reset_beyond_any_time_is_ignored_not_overflowed() {
        for bad in [
            "9223372036854775807",
            "-9223372036854775808",
            "-1",
            "253402300800",
        ] {
            let mut h = HeaderMap::new();
            h.insert("x-rate-limit-remaining", HeaderValue::from_static("5"));
            h.insert("x-rate-limit-reset", HeaderValue::from_str(bad).unwrap());
            let parsed = RateHeaders::parse(&h);
            assert_eq!(parsed.reset, None, "{bad}");
            // And the bucket takes the answer without arithmetic on it.
            let mut b = Bucket::default();
            b.on_answer(
                Some((&parsed, &ClockOffset::default())),
                Some(200),
                0,
                1_000,
                0,
                0,
            );
        }
        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-reset", HeaderValue::from_static("1700000000"));
        assert_eq!(RateHeaders::parse(&h).reset, Some(1_700_000_000));
    }
}
