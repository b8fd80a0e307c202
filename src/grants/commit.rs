//! Group commit for the grant transitions of the expiry path.
//!
//! Why it exists: under an expiry burst every revocation makes two state changes, each a
//! transaction with its audit append, and every append serializes on the one audit chain head
//! (the single SQLite connection, or the head row lock on PostgreSQL). Committing them one by
//! one bounds revocations by commit latency. Here concurrent callers queue their
//! compare-and-set; whoever gets the writer slot first runs everything queued in ONE
//! transaction (the compare-and-sets, grouped into one UPDATE per kind of change, then one
//! audit entry per winner through [`audit::append_many`], then commit) and hands each caller
//! its own result. Each caller
//! still learns exactly whether its own compare-and-set won, and a state change still commits
//! with its audit entry or not at all (I6); per-grant idempotence (I4) and the access lock (I5)
//! are untouched because callers keep holding their own locks while they wait.
//!
//! What it must never do: hold the transaction across a network call, report success to a
//! caller whose change did not commit, or let one caller's lost race fail another's change.
//! An SQL error fails the whole batch (nothing committed) and every caller in it retries.

use tokio::sync::oneshot;

use super::error::GrantError;
use super::repo::{self, Bind};
use crate::audit::{self, NewEntry};
use crate::clock::Clock;
use crate::store::Store;

/// One compare-and-set with the audit entry to append if it wins.
pub(crate) struct Change {
    pub id: String,
    pub version: i64,
    /// The SET clause; its values are `$3`, `$4`, … in order.
    pub set: &'static str,
    pub binds: Vec<Bind>,
    /// When true, one more value follows `binds`: the batch's commit time (Unix ms), taken once
    /// per transaction. A time taken by each caller would differ per row and split a burst's
    /// identical changes (every `revoked` with its own `ended_at`) into one UPDATE each; the
    /// commit time is also the truer moment for a state that exists only once committed.
    pub stamp_commit_time: bool,
    pub entry: NewEntry,
}

struct Pending {
    change: Change,
    done: oneshot::Sender<Result<bool, String>>,
}

/// The queue and the writer slot. One per `GrantService`.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: std::sync::Mutex<Vec<Pending>>,
    writer: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    /// Commits `change` (possibly together with other callers' changes). Returns whether this
    /// caller's compare-and-set won.
    pub(crate) async fn commit(
        &self,
        store: &Store,
        clock: &Clock,
        change: Change,
    ) -> Result<bool, GrantError> {
        let won = self.commit_many(store, clock, vec![change]).await?;
        Ok(won.first().copied().unwrap_or(false))
    }

    /// Commits all of `changes` in the same transaction (possibly with other callers'). Returns,
    /// per change, whether its compare-and-set won. Distinct grants only: two changes to one
    /// grant in one call would race each other.
    pub(crate) async fn commit_many(
        &self,
        store: &Store,
        clock: &Clock,
        changes: Vec<Change>,
    ) -> Result<Vec<bool>, GrantError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        // All of a caller's changes are queued under one lock, so they land in one batch.
        let mut rxs = Vec::with_capacity(changes.len());
        {
            let mut q = self.lock_queue();
            for change in changes {
                let (done, rx) = oneshot::channel();
                q.push(Pending { change, done });
                rxs.push(rx);
            }
        }
        // Leader/follower: whoever holds the writer slot commits everything queued so far. A
        // caller whose changes another leader committed returns as soon as its answers arrive
        // instead of queueing for the slot: handing the slot through every such follower in
        // turn would make the next batch wait behind all of them.
        let _slot = tokio::select! {
            biased;
            first = &mut rxs[0] => {
                // One batch carries all of a caller's changes, and its leader sends every answer
                // before giving the slot up: the rest are there or on their way.
                let mut out = Vec::with_capacity(rxs.len());
                out.push(Self::answer(first)?);
                for rx in &mut rxs[1..] {
                    out.push(Self::answer(rx.await)?);
                }
                return Ok(out);
            }
            slot = self.writer.lock() => slot,
        };
        // The slot may come after our batch's leader released it: then only read the answers.
        if let Some(r) = Self::ready_all(&mut rxs) {
            return r;
        }
        let batch = std::mem::take(&mut *self.lock_queue());
        metrics::histogram!("jit_grant_commit_batch_size").record(batch.len() as f64);
        let result = run_batch(store, clock, &batch).await;
        for (i, p) in batch.into_iter().enumerate() {
            let r = match &result {
                Ok(won) => Ok(won.get(i).copied().unwrap_or(false)),
                Err(e) => Err(crate::error::chain(e)),
            };
            let _ = p.done.send(r);
        }
        Self::ready_all(&mut rxs)
            .unwrap_or_else(|| Err(GrantError::GroupCommit("change was not committed".into())))
    }

    /// Every result, once all are in; `None` while any is still pending.
    fn ready_all(
        rxs: &mut [oneshot::Receiver<Result<bool, String>>],
    ) -> Option<Result<Vec<bool>, GrantError>> {
        let mut out = Vec::with_capacity(rxs.len());
        for rx in rxs {
            match Self::ready(rx)? {
                Ok(w) => out.push(w),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(out))
    }

    /// One answer, as the caller sees it.
    fn answer(
        r: Result<Result<bool, String>, oneshot::error::RecvError>,
    ) -> Result<bool, GrantError> {
        match r {
            Ok(r) => r.map_err(GrantError::GroupCommit),
            Err(_) => Err(abandoned()),
        }
    }

    fn ready(rx: &mut oneshot::Receiver<Result<bool, String>>) -> Option<Result<bool, GrantError>> {
        match rx.try_recv() {
            Ok(r) => Some(r.map_err(GrantError::GroupCommit)),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(abandoned())),
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        // A panic while pushing or taking cannot leave the Vec half-changed: keep using it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The leader that took a change was dropped mid-batch: its transaction rolled back or its
/// commit's outcome is unknown. Either way the caller retries (every change is idempotent).
fn abandoned() -> GrantError {
    GrantError::GroupCommit("the batch carrying this change was abandoned".into())
}

/// One transaction: the compare-and-sets, then the winners' audit entries in one append, then
/// commit. Returns whether each change (by its index in `batch`) won.
///
/// Changes with the same SET clause and values (every `revoking` of a burst, every `revoked`)
/// go out as one [`repo::cas_many`] statement per group instead of one UPDATE per grant; a
/// grant queued twice (two callers racing on it) keeps the one-by-one compare-and-set for its
/// second change, so exactly one of them wins, as if they had committed in turn.
async fn run_batch(
    store: &Store,
    clock: &Clock,
    batch: &[Pending],
) -> Result<Vec<bool>, GrantError> {
    let mut won = vec![false; batch.len()];
    let mut tx = store.begin().await?;
    // Taken once, inside the transaction: every stamped change of it shares this time.
    let commit_ms = clock.now_ms();
    let binds: Vec<Vec<Bind>> = batch
        .iter()
        .map(|p| {
            let c = &p.change;
            let mut b = c.binds.clone();
            if c.stamp_commit_time {
                b.push(Bind::I(commit_ms));
            }
            b
        })
        .collect();
    // Groups by (SET clause, values), in first-seen order; duplicates of a grant go last.
    let mut groups: Vec<(&'static str, &[Bind], Vec<usize>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut repeats = Vec::new();
    for (i, p) in batch.iter().enumerate() {
        let c = &p.change;
        if !seen.insert(c.id.as_str()) {
            repeats.push(i);
            continue;
        }
        match groups
            .iter_mut()
            .find(|(set, b, _)| *set == c.set && *b == binds[i].as_slice())
        {
            Some((_, _, members)) => members.push(i),
            None => groups.push((c.set, binds[i].as_slice(), vec![i])),
        }
    }
    for (set, binds, members) in &groups {
        let rows: Vec<(&str, i64)> = members
            .iter()
            .map(|&i| (batch[i].change.id.as_str(), batch[i].change.version))
            .collect();
        let ids = repo::cas_many(tx.conn(), &rows, set, binds).await?;
        for &i in members {
            won[i] = ids.contains(&batch[i].change.id);
        }
    }
    for &i in &repeats {
        let c = &batch[i].change;
        won[i] = repo::cas(tx.conn(), &c.id, c.version, c.set, binds[i].clone()).await?;
    }
    let entries: Vec<NewEntry> = batch
        .iter()
        .zip(&won)
        .filter(|(_, w)| **w)
        .map(|(p, _)| p.change.entry.clone())
        .collect();
    if entries.is_empty() {
        tx.rollback().await?;
        return Ok(won);
    }
    audit::append_many(&mut tx, clock, entries).await?;
    tx.commit().await?;
    Ok(won)
}
