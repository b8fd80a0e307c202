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
    /// When true, one more value follows `binds`: the batch's transaction time (Unix ms, read
    /// once right after BEGIN; see [`Committed::at_ms`]). A time read by each caller would
    /// differ per row and split a burst's identical changes (every `revoked` with its own
    /// `ended_at`) into one UPDATE each.
    pub stamp_tx_time: bool,
    pub entry: NewEntry,
}

/// What a batch answers each of its changes: whether its compare-and-set won, and the batch's
/// transaction time; or the batch's error.
type Answer = Result<(bool, i64), String>;

struct Pending {
    change: Change,
    done: oneshot::Sender<Answer>,
}

/// The outcome of a caller's changes, which always commit in one transaction together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    /// Per change, in the caller's order: whether its compare-and-set won.
    pub won: Vec<bool>,
    /// The transaction's time (Unix ms): what stamped changes wrote.
    pub at_ms: i64,
}

/// The queue and the writer slot. One per `GrantService`.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: std::sync::Mutex<Vec<Pending>>,
    writer: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    /// Commits `change` (possibly together with other callers' changes). Returns whether this
    /// caller's compare-and-set won, and the transaction's time.
    pub(crate) async fn commit(
        &self,
        store: &Store,
        clock: &Clock,
        change: Change,
    ) -> Result<(bool, i64), GrantError> {
        let c = self.commit_many(store, clock, vec![change]).await?;
        Ok((c.won.first().copied().unwrap_or(false), c.at_ms))
    }

    /// Commits all of `changes` in the same transaction (possibly with other callers'). Returns,
    /// per change, whether its compare-and-set won. Distinct grants only: two changes to one
    /// grant in one call would race each other.
    pub(crate) async fn commit_many(
        &self,
        store: &Store,
        clock: &Clock,
        changes: Vec<Change>,
    ) -> Result<Committed, GrantError> {
        if changes.is_empty() {
            return Ok(Committed {
                won: Vec::new(),
                at_ms: clock.now_ms(),
            });
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
        // caller whose changes another leader committed returns on its answer rather than
        // waiting its turn for the slot: handing the slot through every such follower, each
        // woken in turn, would make the next batch wait behind all of them.
        let _slot = tokio::select! {
            biased;
            first = &mut rxs[0] => {
                // One batch carries all of a caller's changes, and its leader sends every answer
                // before giving the slot up: the rest are there or on their way.
                let mut answers = Vec::with_capacity(rxs.len());
                answers.push(first.map_err(|_| abandoned()));
                for rx in &mut rxs[1..] {
                    answers.push(rx.await.map_err(|_| abandoned()));
                }
                return Self::collect(answers);
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
                Ok((won, at_ms)) => Ok((won.get(i).copied().unwrap_or(false), *at_ms)),
                Err(e) => Err(crate::error::chain(e)),
            };
            let _ = p.done.send(r);
        }
        Self::ready_all(&mut rxs)
            .unwrap_or_else(|| Err(GrantError::GroupCommit("change was not committed".into())))
    }

    /// Every answer, once all are in; `None` while any is still pending.
    fn ready_all(rxs: &mut [oneshot::Receiver<Answer>]) -> Option<Result<Committed, GrantError>> {
        let mut answers = Vec::with_capacity(rxs.len());
        for rx in rxs {
            match rx.try_recv() {
                Ok(a) => answers.push(Ok(a)),
                Err(oneshot::error::TryRecvError::Empty) => return None,
                Err(oneshot::error::TryRecvError::Closed) => answers.push(Err(abandoned())),
            }
        }
        Some(Self::collect(answers))
    }

    /// A caller's answers as its result: the first error, or every compare-and-set's outcome.
    fn collect(answers: Vec<Result<Answer, GrantError>>) -> Result<Committed, GrantError> {
        let mut won = Vec::with_capacity(answers.len());
        let mut at_ms = 0;
        for a in answers {
            let (w, at) = a?.map_err(GrantError::GroupCommit)?;
            won.push(w);
            at_ms = at;
        }
        Ok(Committed { won, at_ms })
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
/// commit. Returns whether each change (by its index in `batch`) won, and the transaction time.
///
/// Changes with the same SET clause and values (every `revoking` of a burst, every `revoked`)
/// go out as one [`repo::cas_many`] statement per group instead of one UPDATE per grant; a
/// grant queued twice (two callers racing on it) keeps the one-by-one compare-and-set for its
/// second change, so exactly one of them wins, as if they had committed in turn.
async fn run_batch(
    store: &Store,
    clock: &Clock,
    batch: &[Pending],
) -> Result<(Vec<bool>, i64), GrantError> {
    let mut won = vec![false; batch.len()];
    let mut tx = store.begin().await?;
    // Read once, inside the transaction: every stamped change of it shares this time.
    let tx_ms = clock.now_ms();
    let binds: Vec<Vec<Bind>> = batch
        .iter()
        .map(|p| {
            let c = &p.change;
            let mut b = c.binds.clone();
            if c.stamp_tx_time {
                b.push(Bind::I(tx_ms));
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
        return Ok((won, tx_ms));
    }
    audit::append_many(&mut tx, clock, entries).await?;
    tx.commit().await?;
    Ok((won, tx_ms))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::grants::model::{Grant, GrantState};
    use crate::policy::ResourceKind;

    /// A migrated SQLite store in `dir` holding active grants `g0`..`g{n-1}` at version 1, and a
    /// group commit over it.
    async fn seeded(dir: &tempfile::TempDir, n: usize) -> (Store, Clock, Arc<GroupCommit>) {
        let mut cfg = crate::app::Config::load_with_env(None, Vec::new())
            .unwrap()
            .database;
        cfg.url = format!("sqlite://{}", dir.path().join("commit.db").display());
        let store = Store::connect(&cfg).await.unwrap();
        store.migrate().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        for i in 0..n {
            repo::insert(&mut tx, &grant(i)).await.unwrap();
        }
        tx.commit().await.unwrap();
        (store, Clock::system(), Arc::new(GroupCommit::default()))
    }

    fn grant(i: usize) -> Grant {
        Grant {
            id: format!("g{i}"),
            user_id: format!("00u{i}"),
            user_login: format!("u{i}@example.com"),
            resource: "r".into(),
            kind: ResourceKind::OktaGroup,
            okta_id: "00g1".into(),
            resource_set: None,
            state: GrantState::Active,
            standing: Some(false),
            duration_ms: 60_000,
            reason: "test".into(),
            requested_by: "admin".into(),
            request_id: None,
            end_sessions: false,
            created_at: 1,
            activated_at: Some(1),
            expires_at: 60_001,
            ended_at: None,
            role_assignment_id: None,
            last_error: None,
            next_retry_at: None,
            attempts: 0,
            ended_by: None,
            end_reason: None,
            version: 1,
        }
    }

    fn revoked(i: usize, version: i64) -> Change {
        Change {
            id: format!("g{i}"),
            version,
            set: "state = 'revoked', ended_at = $3",
            binds: Vec::new(),
            stamp_tx_time: true,
            entry: NewEntry::new(
                "t",
                "grant.revoked",
                format!("grant:g{i}"),
                serde_json::json!({}),
            ),
        }
    }

    /// Forty callers at once, each with one to three changes (some on a stale version): every
    /// caller learns exactly its own outcomes, all of its changes share one transaction time,
    /// each winner's `ended_at` is that time, and exactly the winners were audited.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_each_get_their_own_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (store, clock, gc) = seeded(&dir, 100).await;
        let mut tasks = tokio::task::JoinSet::new();
        let mut next = 0;
        for caller in 0..40_usize {
            let n = 1 + caller % 3;
            let ids: Vec<usize> = (next..next + n).collect();
            next += n;
            let (gc, store, clock) = (gc.clone(), store.clone(), clock.clone());
            tasks.spawn(async move {
                // Every fifth grant is offered on a stale version: it must lose, alone.
                let changes = ids
                    .iter()
                    .map(|&i| revoked(i, if i % 5 == 0 { 0 } else { 1 }))
                    .collect();
                let c = gc.commit_many(&store, &clock, changes).await.unwrap();
                (ids, c)
            });
        }
        let mut winners = 0_u64;
        while let Some(r) = tasks.join_next().await {
            let (ids, c) = r.unwrap();
            assert_eq!(c.won.len(), ids.len());
            for (&i, &won) in ids.iter().zip(&c.won) {
                assert_eq!(won, i % 5 != 0, "grant g{i}");
                let g = repo::get(&store, &format!("g{i}")).await.unwrap().unwrap();
                if won {
                    winners += 1;
                    assert_eq!(g.state, GrantState::Revoked);
                    assert_eq!(
                        g.ended_at,
                        Some(c.at_ms),
                        "g{i} stamped with its batch time"
                    );
                } else {
                    assert_eq!(g.state, GrantState::Active);
                }
            }
        }
        let report = crate::audit::verify(&store).await.unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.entries, winners);
        // An empty call commits nothing and answers at once.
        let c = gc.commit_many(&store, &clock, Vec::new()).await.unwrap();
        assert!(c.won.is_empty());
    }

    /// A leader dropped mid-batch (its caller cancelled) abandons its batch: the other caller in
    /// it gets an error to retry on, not a hang, nothing of the batch commits, and the retry
    /// then succeeds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_leader_fails_its_batch_instead_of_hanging_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, clock, gc) = seeded(&dir, 2).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let until = |what: &str, cond: &dyn Fn() -> bool| {
            assert!(std::time::Instant::now() < deadline, "{what}");
            !cond()
        };
        // Hold the writer slot so both callers queue, then the store's one writer connection so
        // the leader stops inside its batch.
        let slot = gc.writer.lock().await;
        let blocker = store.begin().await.unwrap();
        let spawn = |i: usize| {
            let (gc, store, clock) = (gc.clone(), store.clone(), clock.clone());
            tokio::spawn(async move { gc.commit(&store, &clock, revoked(i, 1)).await })
        };
        let leader = spawn(0);
        while until("first caller never queued", &|| gc.lock_queue().len() == 1) {
            tokio::task::yield_now().await;
        }
        let follower = spawn(1);
        while until("second caller never queued", &|| gc.lock_queue().len() == 2) {
            tokio::task::yield_now().await;
        }
        // The slot is fair: the first caller leads and takes both changes.
        drop(slot);
        while until("leader never took the batch", &|| {
            gc.lock_queue().is_empty()
        }) {
            tokio::task::yield_now().await;
        }
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        let err = tokio::time::timeout(std::time::Duration::from_secs(10), follower)
            .await
            .expect("the follower hung")
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, GrantError::GroupCommit(_)), "{err:?}");
        drop(blocker);
        for i in 0..2 {
            let g = repo::get(&store, &format!("g{i}")).await.unwrap().unwrap();
            assert_eq!(g.state, GrantState::Active, "g{i} did not commit");
        }
        assert_eq!(crate::audit::verify(&store).await.unwrap().entries, 0);
        // Retrying (as the scheduler does) works.
        let (won, _) = gc.commit(&store, &clock, revoked(1, 1)).await.unwrap();
        assert!(won);
    }
}
