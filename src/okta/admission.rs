//! The admission queue in front of Okta: priority order, an in-flight cap, and per-bucket pacing
//! decided in one place.
//!
//! Why it exists: a revocation must never wait behind a long sync (I1). A plain semaphore is
//! FIFO, and pacing done after taking a slot lets paced reads hold every slot. So a request
//! waits here until it is the highest-priority waiter whose bucket has budget *and* a slot is
//! free; buckets are independent, so a paced bucket does not stall the others.
//!
//! What it must never do: hold its lock across an `.await`, lose a slot when a waiting caller is
//! cancelled (a dropped [`Permit`] always gives its slot back), or busy-poll: when waiters are
//! held back only by pacing, exactly one of them (the timer owner) sleeps until the earliest
//! moment that can help and then re-runs the queue; no task is spawned for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rand::Rng;
use tokio::sync::oneshot;

use super::ratelimit::{Bucket, ClockOffset, RateHeaders, WAIT_FOR_ANSWER};
use super::types::Priority;
use crate::clock::Clock;

pub(crate) struct Admission {
    clock: Clock,
    cap: usize,
    margin_ms: i64,
    jitter_ms: i64,
    /// Percent of a bucket's window the read lane may use (100: no reserve).
    read_share: std::sync::atomic::AtomicU32,
    me: Weak<Admission>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    in_flight: usize,
    seq: u64,
    /// Ordered by (priority rank, arrival): the first eligible entry is served first.
    waiters: BTreeMap<(u8, u64), Waiter>,
    buckets: HashMap<&'static str, Bucket>,
    offset: ClockOffset,
    /// The waiter that sleeps for the queue, and until when.
    timer: Option<((u8, u64), i64)>,
    /// Requests admitted, by (lane rank, bucket).
    dispatched: HashMap<(u8, &'static str), u64>,
}

struct Waiter {
    bucket: &'static str,
    rank: u8,
    tx: oneshot::Sender<Permit>,
    /// Tells this waiter it now owns the timer.
    wake: Arc<tokio::sync::Notify>,
}

/// A slot in flight. Give it back with [`Permit::answered`]; dropping it (a cancelled call)
/// gives it back without rate-limit information.
pub(crate) struct Permit {
    adm: Option<Arc<Admission>>,
    bucket: &'static str,
}

/// What the answer told us, for the bucket's books.
pub(crate) struct Answer<'a> {
    pub headers: Option<&'a reqwest::header::HeaderMap>,
    pub status: Option<u16>,
    pub sent_ms: i64,
}

impl Admission {
    pub fn new(clock: Clock, cap: usize, margin_ms: i64, jitter_ms: i64) -> Arc<Admission> {
        Arc::new_cyclic(|me| Admission {
            clock,
            cap: cap.max(1),
            margin_ms,
            jitter_ms,
            read_share: std::sync::atomic::AtomicU32::new(100),
            me: me.clone(),
            state: Mutex::new(State::default()),
        })
    }

    /// Keeps `100 - share` percent of every bucket's window for revocations and grants: a read
    /// waits once less than that is left (see `Bucket::ready_at_reserving`).
    pub fn set_read_share(&self, share: u32) {
        self.read_share
            .store(share.clamp(1, 100), std::sync::atomic::Ordering::Relaxed);
    }

    /// Requests admitted in `lane` so far, by bucket.
    pub fn dispatched(&self, lane: Priority) -> std::collections::BTreeMap<String, u64> {
        self.lock()
            .dispatched
            .iter()
            .filter(|((rank, _), _)| *rank == lane.rank())
            .map(|((_, b), n)| (b.to_string(), *n))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the books half-updated in a way that
        // matters more than stopping all Okta traffic would, so recover the guard.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a slot for a request of `bucket` at priority `p`.
    pub async fn acquire(&self, p: Priority, bucket: &'static str) -> Permit {
        let (tx, mut rx) = oneshot::channel();
        let wake = Arc::new(tokio::sync::Notify::new());
        let key = {
            let mut st = self.lock();
            st.seq += 1;
            let key = (p.rank(), st.seq);
            st.waiters.insert(
                key,
                Waiter {
                    bucket,
                    rank: p.rank(),
                    tx,
                    wake: wake.clone(),
                },
            );
            metrics::gauge!("jit_okta_queue_depth").set(st.waiters.len() as f64);
            key
        };
        // If this future is dropped while waiting, the guard takes the entry out (handing the
        // timer to someone else); a permit already sent is dropped with `rx` and so returned.
        let guard = WaitGuard { adm: self, key };
        self.pump();
        let mut sleep_until: Option<i64> = None;
        let permit = loop {
            let timer = async {
                match sleep_until {
                    Some(at) => self.clock.sleep_until_ms(at).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = &mut rx => break r,
                _ = wake.notified() => {
                    sleep_until = self.lock().timer.filter(|(k, _)| *k == key).map(|(_, at)| at);
                }
                _ = timer => {
                    sleep_until = None;
                    {
                        let mut st = self.lock();
                        if st.timer.is_some_and(|(k, _)| k == key) {
                            st.timer = None;
                        }
                    }
                    self.pump();
                }
            }
        };
        drop(guard);
        match permit {
            Ok(p) => p,
            // The sender lives in the map, which only `pump` and the guard touch; pump always
            // sends before removing. Unreachable in practice; fail open with a fresh slot.
            Err(_) => self.take_unqueued(bucket),
        }
    }

    fn take_unqueued(&self, bucket: &'static str) -> Permit {
        let mut st = self.lock();
        st.in_flight += 1;
        let now = self.clock.now_ms();
        st.buckets.entry(bucket).or_default().on_dispatch(now);
        self.permit(bucket)
    }

    fn permit(&self, bucket: &'static str) -> Permit {
        Permit {
            adm: self.me.upgrade(),
            bucket,
        }
    }

    /// Hands out every slot that can be handed out now, then arms the timer if waiters remain
    /// that only time can release.
    fn pump(&self) {
        let mut out = Vec::new();
        {
            let mut st = self.lock();
            let now = self.clock.now_ms();
            let mut earliest: Option<i64> = None;
            while st.in_flight < self.cap {
                let mut chosen = None;
                let mut dead = Vec::new();
                let mut blocked: Vec<(u8, &'static str)> = Vec::new();
                for (k, w) in st.waiters.iter() {
                    if w.tx.is_closed() {
                        dead.push(*k);
                        continue;
                    }
                    if blocked.contains(&(w.rank, w.bucket)) {
                        continue;
                    }
                    // Reads keep off the reserved part of each window; the reserve is what
                    // lets a revocation through while a sync is reading flat out.
                    let reserve = if w.rank == Priority::Read.rank() {
                        100 - self.read_share.load(std::sync::atomic::Ordering::Relaxed)
                    } else {
                        0
                    };
                    match st
                        .buckets
                        .get(w.bucket)
                        .and_then(|b| b.ready_at_reserving(now, reserve))
                    {
                        None => {
                            chosen = Some(*k);
                            break;
                        }
                        Some(t) => {
                            // Blocked per (lane, bucket): a read held back by the reserve must
                            // not hold back a revocation of the same bucket queued after it.
                            blocked.push((w.rank, w.bucket));
                            if t != WAIT_FOR_ANSWER {
                                earliest = Some(earliest.map_or(t, |e: i64| e.min(t)));
                            }
                        }
                    }
                }
                for k in dead {
                    st.waiters.remove(&k);
                }
                let Some(k) = chosen else { break };
                let Some(w) = st.waiters.remove(&k) else {
                    break;
                };
                st.in_flight += 1;
                st.buckets.entry(w.bucket).or_default().on_dispatch(now);
                *st.dispatched.entry((w.rank, w.bucket)).or_default() += 1;
                out.push((w.tx, self.permit(w.bucket)));
            }
            metrics::gauge!("jit_okta_in_flight").set(st.in_flight as f64);
            metrics::gauge!("jit_okta_queue_depth").set(st.waiters.len() as f64);
            if st.timer.is_some_and(|(k, _)| !st.waiters.contains_key(&k)) {
                st.timer = None;
            }
            if st.in_flight < self.cap {
                if let Some(at) = earliest {
                    if st.timer.is_none_or(|(_, t)| t > at) {
                        // Any live waiter will do; the head is the likeliest to stay.
                        if let Some((k, w)) = st.waiters.iter().next() {
                            let (k, wake) = (*k, w.wake.clone());
                            st.timer = Some((k, at));
                            wake.notify_one();
                        }
                    }
                }
            }
        }
        // Outside the lock: a send to a caller that has just gone away returns the permit,
        // whose drop re-enters `pump` (and must not find the lock held).
        for (tx, permit) in out {
            drop(tx.send(permit));
        }
    }

    fn release(&self, bucket: &'static str, answer: Option<Answer<'_>>) {
        {
            let mut st = self.lock();
            st.in_flight = st.in_flight.saturating_sub(1);
            let now = self.clock.now_ms();
            let parsed = answer
                .as_ref()
                .and_then(|a| a.headers.map(RateHeaders::parse));
            if let (Some(h), Some(a)) = (&parsed, &answer) {
                if let Some(date) = h.date {
                    st.offset.observe(date, a.sent_ms, now);
                    // Our clock against Okta's: the event hooks' freshness window and their
                    // confirmation reads compare Okta's `published` with our time, and hold only
                    // while the two agree within seconds (docs/operations.md alerts on it).
                    if let Some(ms) = st.offset.estimate_ms() {
                        metrics::gauge!("jit_okta_clock_offset_seconds").set(ms as f64 / 1000.0);
                    }
                }
            }
            let status = answer.as_ref().and_then(|a| a.status);
            let jitter = if status == Some(429) && self.jitter_ms > 0 {
                rand::thread_rng().gen_range(0..=self.jitter_ms)
            } else {
                0
            };
            if let Some(h) = &parsed {
                if let (Some(limit), Some(remaining)) = (h.limit, h.remaining) {
                    metrics::gauge!("jit_okta_rate_limit_limit", "bucket" => bucket)
                        .set(limit as f64);
                    metrics::gauge!("jit_okta_rate_limit_remaining", "bucket" => bucket)
                        .set(remaining as f64);
                }
            }
            let offset = st.offset;
            let b = st.buckets.entry(bucket).or_default();
            b.on_answer(
                parsed.as_ref().map(|h| (h, &offset)),
                status,
                answer.as_ref().map_or(now, |a| a.sent_ms),
                now,
                self.margin_ms,
                jitter,
            );
            if status == Some(429) && parsed.is_none_or(|h| h.reset.is_none()) {
                // A refusal without a reset: wait a second rather than hammering.
                b.block_for(now, 1000 + jitter);
            }
        }
        self.pump();
    }

    /// Requests in flight now (for tests and the in-flight gauge).
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Callers waiting for a slot.
    pub fn queued(&self) -> usize {
        self.lock().waiters.len()
    }
}

struct WaitGuard<'a> {
    adm: &'a Admission,
    key: (u8, u64),
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let owned_timer = {
            let mut st = self.adm.lock();
            st.waiters.remove(&self.key);
            let owned = st.timer.is_some_and(|(k, _)| k == self.key);
            if owned {
                st.timer = None;
            }
            owned
        };
        if owned_timer {
            // Somebody else must keep the queue's timer.
            self.adm.pump();
        }
    }
}

impl Permit {
    /// Returns the slot with what the answer said about the bucket.
    pub fn answered(mut self, answer: Answer<'_>) {
        if let Some(adm) = self.adm.take() {
            adm.release(self.bucket, Some(answer));
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(adm) = self.adm.take() {
            adm.release(self.bucket, None);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn until(cond: impl Fn() -> bool) {
        for _ in 0..1000 {
            if cond() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn higher_priority_is_served_first() {
        let adm = Admission::new(Clock::tokio(), 1, 0, 0);
        let held = adm.acquire(Priority::Read, "b").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for p in [Priority::Read, Priority::Grant, Priority::Revoke] {
            let (a, order) = (adm.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = a.acquire(p, "b").await;
                order.lock().unwrap().push(p);
            }));
            let n = tasks.len();
            until(|| adm.queued() == n).await;
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        let got = order.lock().unwrap().clone();
        assert_eq!(got, vec![Priority::Revoke, Priority::Grant, Priority::Read]);
        assert_eq!(adm.in_flight(), 0);
    }

    #[tokio::test]
    async fn cancelled_waiter_loses_no_slot() {
        let adm = Admission::new(Clock::tokio(), 1, 0, 0);
        let held = adm.acquire(Priority::Read, "b").await;
        let waiting = {
            let adm = adm.clone();
            tokio::spawn(async move { drop(adm.acquire(Priority::Revoke, "b").await) })
        };
        until(|| adm.queued() == 1).await;
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(adm.queued(), 0);
        drop(held);
        assert_eq!(adm.in_flight(), 0);
        let again = adm.acquire(Priority::Read, "b").await;
        assert_eq!(adm.in_flight(), 1);
        drop(again);
    }

    /// The waiter that owns the pacing timer goes away; another still wakes at the reset.
    #[tokio::test(start_paused = true)]
    async fn timer_survives_its_owner_leaving() {
        let clock = Clock::tokio_at(1_000_000);
        let adm = Admission::new(clock.clone(), 4, 0, 0);
        let first = adm.acquire(Priority::Read, "b").await;
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-rate-limit-limit", "2".parse().unwrap());
        h.insert("x-rate-limit-remaining", "0".parse().unwrap());
        h.insert("x-rate-limit-reset", "1002".parse().unwrap());
        h.insert(
            reqwest::header::DATE,
            "Thu, 01 Jan 1970 00:16:40 GMT".parse().unwrap(),
        );
        first.answered(Answer {
            headers: Some(&h),
            status: Some(200),
            sent_ms: 1_000_000,
        });
        let owner = {
            let adm = adm.clone();
            tokio::spawn(async move { drop(adm.acquire(Priority::Revoke, "b").await) })
        };
        until(|| adm.queued() == 1).await;
        let other = {
            let adm = adm.clone();
            tokio::spawn(async move {
                let _p = adm.acquire(Priority::Read, "b").await;
            })
        };
        until(|| adm.queued() == 2).await;
        owner.abort();
        let _ = owner.await;
        tokio::time::timeout(Duration::from_secs(10), other)
            .await
            .expect("woken at the reset")
            .unwrap();
        // Not before the reset the server announced (1 002 s on its clock).
        assert!(clock.now_ms() >= 1_002_000, "{}", clock.now_ms());
    }
}
