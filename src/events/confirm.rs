//! Confirmation with Okta before an event takes access away: an event hook is a hint, Okta's
//! current state is the truth.
//!
//! Why it exists: Okta does not sign event hooks; whoever holds the static shared header can
//! deliver `user.lifecycle.deactivate` for anyone. So before a departure revokes a user's grants,
//! [`Confirmer::departure`] reads the user's status from Okta, and before a drift reaction
//! removes access, [`Confirmer::holds`] reads whether the user holds it. Both read on the `Read`
//! lane of the Okta client, so a flood of forged events waits behind every revocation and grant
//! instead of delaying them. [`Confirmer::record`] writes the audit entry with what the event
//! claimed (actor, published) beside what Okta said.
//!
//! A flood of forged departures costs bounded reads: a status read that did not confirm a
//! departure is remembered per user (on this replica) for [`REMEMBER`]. It answers for events
//! published at least [`SKEW_MS`] before it was made (Okta's state then already reflected them);
//! a newer event waits (the event is deferred, not failed) until the last read is [`SKEW_MS`]
//! old, and the next read answers it and everything published before. So one user costs at most
//! one read per [`SKEW_MS`] however many events name them, and a real departure that follows a
//! forged one is delayed by at most [`SKEW_MS`]. A read that confirmed a departure is never
//! reused: acting on an old "deactivated" after the user was reactivated is what replays do.
//!
//! The comparison puts `published` (Okta's clock) beside the read's time (ours), so it holds
//! only while the two clocks agree within [`SKEW_MS`]: a broker clock further ahead would let a
//! remembered "ACTIVE" answer for a real departure published just after the read. Replicas must
//! keep NTP time (docs/operations.md); the Okta client's measured offset to Okta's `Date` is the
//! check. A wider margin was tried and rejected: forged events published "now" would then need a
//! fresh read each until they aged past it, delaying the user's real events behind them.
//!
//! What it must never do: take access away on an event's word alone, treat an Okta error or a
//! 429 as a confirmation or as a refutation (the event is retried with backoff), or read on a
//! lane that competes with revocations.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;

use super::envelope::OktaEvent;
use crate::audit::{self, NewEntry};
use crate::clock::Clock;
use crate::grants::{is_not_found, Access, GrantService};
use crate::okta::{OktaError, Priority};
use crate::store::Store;

/// How long (ms) before a status read can answer for an event published before it: Okta's clock
/// and ours differ a little, and Okta's state follows its event by a moment. Also the least time
/// between two status reads of one user.
pub const SKEW_MS: i64 = crate::drift::CLOCK_SKEW_MS;

/// How long (ms) a refuting status read is remembered.
pub const REMEMBER: i64 = 60_000;

/// Remembered reads at most (a flood over many users): beyond it the oldest half is forgotten.
const MAX_REMEMBERED: usize = 10_000;

/// Benchmarks only (`test-hooks`): when set, departures are confirmed without reading Okta, so
/// a bench measures the latency the confirmation read adds in the same run. Production builds
/// do not have it.
#[cfg(feature = "test-hooks")]
pub static SKIP_READS_FOR_BENCH: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The audit actor of confirmation entries.
pub const ACTOR: &str = "system:events";

/// What Okta said about the user an event names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OktaSaid {
    /// The user's `status` (`ACTIVE`, `DEPROVISIONED`, …); `None`: Okta has no such user.
    pub status: Option<String>,
    /// When it was read (our clock, Unix ms).
    pub read_at: i64,
    /// Answered from a recent read instead of a new one.
    pub remembered: bool,
}

impl OktaSaid {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "user_status": self.status.as_deref().unwrap_or("NOT_FOUND"),
            "read_at": self.read_at,
            "remembered": self.remembered,
        })
    }
}

/// The verdict on a departure event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Okta shows the user gone (deactivated, suspended, deleted, or locked with
    /// `revoke_on_lock`): act.
    Confirmed(OktaSaid),
    /// Okta shows the user still there: do nothing.
    Refuted(OktaSaid),
    /// This user's status was read less than [`SKEW_MS`] ago and that read cannot answer for
    /// this event: try again at this time (Unix ms).
    Wait(i64),
}

/// The confirmation reads, with the per-user memory of refutations. One per worker.
pub struct Confirmer {
    grants: GrantService,
    clock: Clock,
    revoke_on_lock: bool,
    refuted: Mutex<HashMap<String, OktaSaid>>,
}

impl Confirmer {
    pub fn new(grants: GrantService, revoke_on_lock: bool) -> Self {
        let clock = grants.clock().clone();
        Confirmer {
            grants,
            clock,
            revoke_on_lock,
            refuted: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `status` (`None`: no such user) means the user's access must end.
    pub fn departed(&self, status: Option<&str>) -> bool {
        match status {
            None => true,
            Some("DEPROVISIONED" | "SUSPENDED") => true,
            Some("LOCKED_OUT") => self.revoke_on_lock,
            Some(_) => false,
        }
    }

    /// Reads (or remembers) `user_id`'s status and judges the departure event `ev` by it.
    pub async fn departure(&self, ev: &OktaEvent, user_id: &str) -> Result<Verdict, OktaError> {
        let now = self.clock.now_ms();
        #[cfg(feature = "test-hooks")]
        if SKIP_READS_FOR_BENCH.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(Verdict::Confirmed(OktaSaid {
                status: Some("UNREAD".into()),
                read_at: now,
                remembered: false,
            }));
        }
        // An event without `published` never reaches the worker unless an admin sent it: it is
        // treated as published now, which no remembered read can answer for.
        let published = ev.published_ms.unwrap_or(now);
        if let Some(seen) = self.remembered(user_id, now) {
            if published <= seen.read_at.saturating_sub(SKEW_MS) {
                metrics::counter!("jit_events_confirm_reads_total", "result" => "remembered")
                    .increment(1);
                return Ok(Verdict::Refuted(OktaSaid {
                    remembered: true,
                    ..seen
                }));
            }
            if now < seen.read_at.saturating_add(SKEW_MS) {
                metrics::counter!("jit_events_confirm_reads_total", "result" => "deferred")
                    .increment(1);
                return Ok(Verdict::Wait(seen.read_at.saturating_add(SKEW_MS)));
            }
        }
        let status = match self.grants.okta().get_user(user_id, Priority::Read).await {
            Ok(u) => u.map(|u| u.status),
            Err(e) => {
                metrics::counter!("jit_events_confirm_reads_total", "result" => "error")
                    .increment(1);
                return Err(e);
            }
        };
        let said = OktaSaid {
            status,
            read_at: self.clock.now_ms(),
            remembered: false,
        };
        if self.departed(said.status.as_deref()) {
            metrics::counter!("jit_events_confirm_reads_total", "result" => "confirmed")
                .increment(1);
            self.forget(user_id);
            Ok(Verdict::Confirmed(said))
        } else {
            metrics::counter!("jit_events_confirm_reads_total", "result" => "refuted").increment(1);
            self.remember(user_id, &said);
            Ok(Verdict::Refuted(said))
        }
    }

    /// Whether the user holds `access` in Okta now, read on the `Read` lane; an unknown user
    /// holds nothing.
    pub async fn holds(&self, access: &Access) -> Result<bool, OktaError> {
        match self.grants.holds(access, Priority::Read).await {
            Ok(h) => Ok(h.holds()),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn remembered(&self, user_id: &str, now: i64) -> Option<OktaSaid> {
        let map = self.refuted.lock().unwrap_or_else(|p| p.into_inner());
        map.get(user_id)
            .filter(|s| now.saturating_sub(s.read_at) < REMEMBER)
            .cloned()
    }

    fn remember(&self, user_id: &str, said: &OktaSaid) {
        let mut map = self.refuted.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_REMEMBERED {
            let now = self.clock.now_ms();
            map.retain(|_, s| now.saturating_sub(s.read_at) < REMEMBER);
            if map.len() >= MAX_REMEMBERED {
                // Still full of fresh reads: forgetting costs only extra reads, never a wrong
                // answer.
                map.clear();
            }
        }
        map.insert(user_id.to_string(), said.clone());
    }

    fn forget(&self, user_id: &str) {
        self.refuted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user_id);
    }

    /// Appends `action` (`event.confirmed`, `event.unconfirmed`) for `ev` about `user_id`: what
    /// the event claimed beside what Okta said (`okta`).
    pub async fn record(
        &self,
        store: &Store,
        action: &str,
        ev: &OktaEvent,
        user_id: &str,
        okta: serde_json::Value,
    ) -> Result<(), audit::AuditError> {
        let details = json!({
            "event_uuid": ev.uuid,
            "event_type": ev.event_type,
            "user_id": user_id,
            "claimed": claimed(ev),
            "okta": okta,
        });
        let mut tx = store.begin().await?;
        audit::append(
            &mut tx,
            &self.clock,
            NewEntry::new(ACTOR, action, format!("okta_event:{}", ev.uuid), details),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// What an event claims about itself: who did it and when.
pub fn claimed(ev: &OktaEvent) -> serde_json::Value {
    json!({
        "actor": ev.actor.as_ref().map(|a| json!({"id": a.id, "alternate_id": a.alternate_id})),
        "published": ev.published_ms.map(crate::clock::ms_to_datetime),
        "published_ms": ev.published_ms,
    })
}
