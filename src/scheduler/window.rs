//! How many grants a replica keeps claimed at once: an adaptive window below
//! `scheduler.concurrency`, sized so that a claimed chunk usually finishes before its lease needs
//! renewing.
//!
//! Why it exists: leases are short (3 s by default, renewed every second) so that a killed
//! replica's claims come back within seconds. Claims that wait in memory behind Okta's rate
//! limit are renewed every second, each renewal costing about five Redis commands per grant
//! (lease and access lock). With a fixed window of 512 and Okta allowing 100 removals/s, the
//! last of the window waits five seconds: renewals more than doubled the commands per
//! revocation. Grants left unclaimed in the index cost nothing while they wait, and Okta's pace
//! sets the lateness either way, so the window follows what the handler actually gets through:
//! - a chunk that took under half the renewal interval grows the window by its size (doubling
//!   per round, as TCP's slow start), up to `concurrency`;
//! - a chunk that took over three quarters of it halves the window, down to [`FLOOR`];
//! - in between, the window holds.
//!
//! An unthrottled burst finishes chunks in tens of milliseconds, so the window is
//! `concurrency` after a couple of rounds and the group commit gets its full batches; against a
//! throttled Okta it settles where a window's work takes about one renewal interval.
//!
//! What it must never do: go above `concurrency` (the operator's bound on work in flight) or
//! to zero (the worker would stop claiming).

use std::time::Duration;

/// The smallest window: a throttled Okta still gets a steady queue, and a chunk's fixed Redis
/// and SQL costs are shared by a few grants.
pub(crate) const FLOOR: usize = 8;

/// The first window after start: two chunks, so a replica's first burst against a throttled
/// Okta holds few claims waiting, while an unthrottled one doubles to `concurrency` in a few
/// tens of milliseconds.
const START_CHUNKS: usize = 2;

#[derive(Debug, Clone)]
pub(crate) struct Window {
    size: usize,
    max: usize,
    /// Renewal interval: the time a chunk may take before its leases cost Redis commands.
    renew_every: Duration,
}

impl Window {
    pub(crate) fn new(concurrency: usize, chunk: usize, renew_every: Duration) -> Window {
        let max = concurrency.max(1);
        Window {
            size: (chunk * START_CHUNKS).clamp(FLOOR.min(max), max),
            max,
            renew_every,
        }
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// A chunk of `grants` finished after `took` (handler and settle).
    pub(crate) fn finished(&mut self, grants: usize, took: Duration) {
        let floor = FLOOR.min(self.max);
        if took < self.renew_every / 2 {
            self.size = (self.size + grants.max(1)).min(self.max);
        } else if took > self.renew_every * 3 / 4 {
            self.size = (self.size / 2).max(floor);
        }
        ::metrics::gauge!(super::metrics::WINDOW).set(self.size as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(1);

    #[test]
    fn starts_at_two_chunks_within_bounds() {
        assert_eq!(Window::new(512, 64, EVERY).size(), 128);
        assert_eq!(Window::new(100, 64, EVERY).size(), 100);
        assert_eq!(Window::new(4, 64, EVERY).size(), 4);
        assert_eq!(Window::new(0, 64, EVERY).size(), 1);
    }

    #[test]
    fn fast_chunks_grow_to_concurrency_and_no_further() {
        let mut w = Window::new(512, 64, EVERY);
        for _ in 0..20 {
            w.finished(64, Duration::from_millis(40));
        }
        assert_eq!(w.size(), 512);
    }

    #[test]
    fn slow_chunks_halve_down_to_the_floor() {
        let mut w = Window::new(512, 64, EVERY);
        for _ in 0..6 {
            w.finished(64, Duration::from_millis(40));
        }
        assert_eq!(w.size(), 512);
        w.finished(64, Duration::from_millis(900));
        assert_eq!(w.size(), 256);
        for _ in 0..10 {
            w.finished(64, Duration::from_secs(5));
        }
        assert_eq!(w.size(), FLOOR);
    }

    #[test]
    fn holds_between_half_and_three_quarters_of_the_interval() {
        let mut w = Window::new(512, 64, EVERY);
        w.finished(64, Duration::from_millis(600));
        w.finished(64, Duration::from_millis(700));
        assert_eq!(w.size(), 128);
    }

    /// Against a steady rate R (grants/s), the window settles where a window's work finishes
    /// inside the renewal interval (so nothing is renewed) without starving the handler: at
    /// least a quarter of the interval's work, or the floor.
    #[test]
    fn settles_near_the_rate_times_the_interval() {
        for rate in [20.0_f64, 100.0, 400.0] {
            let mut w = Window::new(512, 64, EVERY);
            for _ in 0..200 {
                let n = w.size();
                w.finished(n, Duration::from_secs_f64(n as f64 / rate));
            }
            let took = w.size() as f64 / rate;
            assert!(
                took < 1.0 && (took >= 0.25 || w.size() == FLOOR),
                "rate {rate}: window {} takes {took} s",
                w.size()
            );
        }
    }
}
