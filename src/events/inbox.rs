//! The inbox table (`okta_events`): durable intake with group commit, leased claims in
//! per-user `published` order, completion, retry with backoff, dead letters.
//!
//! Why it exists: an event hook delivery is answered only after its events are durable, and
//! Okta's bursts must not make every delivery its own transaction (on SQLite there is one
//! writer; on PostgreSQL every commit is a round trip). [`Intake`] queues concurrent deliveries;
//! a delivery that finds a writer slot free starts a drain task on it, which inserts everything
//! queued in one transaction (`INSERT … ON CONFLICT (uuid) DO NOTHING RETURNING uuid`:
//! duplicates are found, not failed), answers each delivery of the batch, and goes straight on
//! to whatever queued meanwhile until the queue is empty. SQLite has one writer slot (its one
//! writer connection); PostgreSQL has a few, so that one batch's commit round trip overlaps the
//! next batch's instead of queueing it.
//! Claims are one `UPDATE … RETURNING` whose condition is re-checked per row, so two replicas
//! never claim the same event, and an event is claimable only when no earlier event of the same
//! user is still pending or in process.
//!
//! What it must never do: answer a delivery before its transaction committed, hand one event to
//! two live workers, or let a finished claim be recorded by a worker whose lease was taken over.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use sqlx::Row;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::audit::{self, NewEntry};
use crate::clock::Clock;
use crate::store::{Backend, Store, StoreError};

/// One event as stored at intake.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub uuid: String,
    pub event_type: String,
    pub published: i64,
    pub user_key: String,
    /// `None`: dropped (not about anything managed), kept only for deduplication.
    pub body: Option<String>,
    /// Why the event is outside the freshness window (see `window`): stored as `stale` with
    /// this as its outcome, never claimed. `None`: acted on (if it has a body).
    pub stale: Option<String>,
}

/// What intake did with one delivery's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// The uuids newly stored (the others were duplicates).
    pub inserted: HashSet<String>,
}

struct Pending {
    events: Vec<NewEvent>,
    done: oneshot::Sender<Result<Stored, String>>,
}

/// Deliveries waiting for a write.
type Queue = Arc<Mutex<Vec<Pending>>>;

/// Group commit for deliveries (see the module docs).
pub struct Intake {
    store: Store,
    clock: Clock,
    queue: Queue,
    /// Drain tasks (so writes in flight) at once.
    slots: Arc<Semaphore>,
}

/// Concurrent intake writes on PostgreSQL. Each holds a pooled connection for one statement;
/// a few overlap the commits' round trips and WAL flushes (PostgreSQL merges concurrent
/// flushes), more would only take connections from the rest of the broker.
const POSTGRES_WRITERS: u32 = 4;

/// One inbox row as the intake INSERT reads it: `[uuid, event_type, published, user_key, body,
/// state, outcome]` (a tuple serializes as a JSON array).
type InboxRow<'a> = (
    &'a str,
    &'a str,
    i64,
    &'a str,
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
);

/// Rows per INSERT statement.
const INSERT_ROWS: usize = 500;

/// The intake INSERT: `$1` is a JSON array of `[uuid, event_type, published, user_key, body,
/// state, outcome]` rows, `$2` the receive time. One bound value per statement instead of eight per row
/// (binding dominated a 50-event delivery), and one statement shape to prepare. SQLite's `->>`
/// yields the JSON value's own SQL type (a JSON null body is SQL NULL); `WHERE true` is how
/// SQLite tells an upsert's `ON CONFLICT` from a join's. PostgreSQL's `->>` yields text, cast
/// where the column is a number.
const INSERT_JSON_SQLITE: &str = "INSERT INTO okta_events (uuid, event_type, published, \
     user_key, body, state, outcome, attempts, next_attempt_at, received_at) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
       value ->> 6, 0, $2, $2 \
     FROM json_each($1) WHERE true \
     ON CONFLICT (uuid) DO NOTHING RETURNING uuid";
const INSERT_JSON_POSTGRES: &str = "INSERT INTO okta_events (uuid, event_type, published, \
     user_key, body, state, outcome, attempts, next_attempt_at, received_at) \
     SELECT r ->> 0, r ->> 1, (r ->> 2)::BIGINT, r ->> 3, r ->> 4, r ->> 5, r ->> 6, 0, $2, $2 \
     FROM jsonb_array_elements($1::JSONB) AS r \
     ON CONFLICT (uuid) DO NOTHING RETURNING uuid";

impl Intake {
    pub fn new(store: Store, clock: Clock) -> Self {
        // PostgreSQL's writers leave at least half of the pool to the rest of the broker.
        let writers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => {
                let pool = store.pool().options().get_max_connections();
                POSTGRES_WRITERS.min(pool / 2).max(1)
            }
        };
        Intake {
            store,
            clock,
            queue: Arc::new(Mutex::new(Vec::new())),
            slots: Arc::new(Semaphore::new(writers as usize)),
        }
    }

    /// Stores `events` durably (committed when this returns `Ok`), sharing the transaction with
    /// whatever other deliveries are waiting.
    pub async fn store(&self, events: Vec<NewEvent>) -> Result<Stored, StoreError> {
        let (done, mut rx) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Pending { events, done });
        // Whichever comes first: this delivery's answer (a drain task already running took
        // it), or a free slot to start one. Waiting for a slot alone would keep a delivery
        // whose events are already committed queued behind the next write.
        let slot = tokio::select! {
            biased;
            r = &mut rx => return answer(r),
            slot = self.slots.clone().acquire_owned() => slot.map_err(|_| stopped())?,
        };
        let batch = take(&self.queue);
        if batch.is_empty() {
            // Only a drain task empties the queue: this delivery is in a write in flight.
            drop(slot);
        } else {
            // Its own task, so that a client that goes away (this future dropped) cannot
            // abandon the other deliveries of the batch. Every batch belongs to requests still
            // waiting here for their answers, so a graceful shutdown, which waits for in-flight
            // requests, waits for the drain task's writes too.
            tokio::spawn(drain(
                self.store.clone(),
                self.clock.clone(),
                self.queue.clone(),
                slot,
                batch,
            ));
        }
        answer(rx.await)
    }
}

fn answer(
    r: Result<Result<Stored, String>, oneshot::error::RecvError>,
) -> Result<Stored, StoreError> {
    r.map_err(|_| stopped())?.map_err(StoreError::Corrupt)
}

fn take(queue: &Queue) -> Vec<Pending> {
    std::mem::take(&mut *queue.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Writes `batch`, then whatever queued while it was written, until the queue is empty; the
/// slot is held throughout. Going on from one write to the next here, instead of handing the slot
/// to a waiting delivery that then starts a task of its own, keeps the writer connection busy
/// through a burst.
async fn drain(
    store: Store,
    clock: Clock,
    queue: Queue,
    _slot: OwnedSemaphorePermit,
    mut batch: Vec<Pending>,
) {
    while !batch.is_empty() {
        write(&store, clock.now_ms(), batch).await;
        batch = take(&queue);
    }
}

fn stopped() -> StoreError {
    StoreError::Corrupt("the intake writer stopped".into())
}

async fn write(store: &Store, now: i64, batch: Vec<Pending>) {
    let all: Vec<&NewEvent> = batch.iter().flat_map(|p| p.events.iter()).collect();
    let started = std::time::Instant::now();
    let mut r = insert(store, now, &all).await;
    // Deliveries per write is `jit_events_intake_deliveries_total` over this histogram's count:
    // how well group commit is sharing transactions.
    metrics::histogram!("jit_events_intake_write_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("jit_events_intake_deliveries_total").increment(batch.len() as u64);
    // A uuid named by two deliveries of one batch is new to the first of them only (`take`); the
    // other learns it was a duplicate, as it would have in a later write.
    for p in batch {
        let answer = match &mut r {
            Ok(inserted) => Ok(Stored {
                inserted: p
                    .events
                    .iter()
                    .filter_map(|e| inserted.take(&e.uuid))
                    .collect(),
            }),
            Err(e) => Err(crate::error::chain(e)),
        };
        let _ = p.done.send(answer);
    }
}

/// One transaction; returns the uuids inserted. A uuid twice in one batch is inserted once.
async fn insert(
    store: &Store,
    now: i64,
    events: &[&NewEvent],
) -> Result<HashSet<String>, StoreError> {
    let mut seen = HashSet::new();
    let mut unique: Vec<&NewEvent> = events
        .iter()
        .copied()
        .filter(|e| seen.insert(e.uuid.as_str()))
        .collect();
    // One lock order for every writer. On PostgreSQL an INSERT that meets another transaction's
    // uncommitted row with the same uuid waits for it: two concurrent batches inserting the same
    // uuids in opposite orders (Okta's retry of a delivery beside the original) would each wait
    // for the other, a deadlock. Answers do not depend on the order.
    unique.sort_unstable_by(|a, b| a.uuid.cmp(&b.uuid));
    let mut inserted = HashSet::new();
    if unique.is_empty() {
        return Ok(inserted);
    }
    let sql = match store.backend() {
        Backend::Sqlite => INSERT_JSON_SQLITE,
        Backend::Postgres => INSERT_JSON_POSTGRES,
    };
    // One statement is its own transaction, atomic and committed when it completes: the usual
    // batch (up to `INSERT_ROWS` events) skips BEGIN and COMMIT, two of its three round trips
    // to the database (SQLite's worker thread, or PostgreSQL's server).
    if unique.len() <= INSERT_ROWS {
        let q = sqlx::query(sql).bind(rows_json(&unique)?).bind(now);
        for r in q.fetch_all(store.pool()).await? {
            inserted.insert(r.try_get::<String, _>(0)?);
        }
        return Ok(inserted);
    }
    let mut tx = store.begin().await?;
    for chunk in unique.chunks(INSERT_ROWS) {
        let q = sqlx::query(sql).bind(rows_json(chunk)?).bind(now);
        for r in q.fetch_all(tx.conn()).await? {
            inserted.insert(r.try_get::<String, _>(0)?);
        }
    }
    tx.commit().await?;
    Ok(inserted)
}

/// The INSERT's one bound value, serialized straight from the rows (tuples are JSON arrays),
/// without building a `Value` tree that copies every body first.
fn rows_json(events: &[&NewEvent]) -> Result<String, StoreError> {
    let rows: Vec<InboxRow<'_>> = events
        .iter()
        .map(|e| {
            let state = match (&e.body, &e.stale) {
                (None, _) => "dropped",
                (Some(_), Some(_)) => "stale",
                (Some(_), None) => "pending",
            };
            let body = e.body.as_deref();
            (
                &*e.uuid,
                &*e.event_type,
                e.published,
                &*e.user_key,
                body,
                state,
                e.stale.as_deref().filter(|_| e.body.is_some()),
            )
        })
        .collect();
    serde_json::to_string(&rows)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode inbox rows: {e}")))
}

/// A claimed event.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub uuid: String,
    pub event_type: String,
    pub published: i64,
    pub body: String,
    /// Including this one.
    pub attempts: i64,
}

/// Claims up to `limit` due events for `owner` until `lease_until`: at most one per user, the
/// earliest of that user's unfinished events.
pub async fn claim(
    store: &Store,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Claimed>, StoreError> {
    const DUE: &str = "((state = 'pending' AND next_attempt_at <= $3) \
                       OR (state = 'processing' AND lease_until <= $3))";
    let sql = format!(
        "UPDATE okta_events SET state = 'processing', lease_owner = $1, lease_until = $2, \
           attempts = attempts + 1 \
         WHERE uuid IN ( \
           SELECT e.uuid FROM okta_events e \
           WHERE (e.state = 'pending' AND e.next_attempt_at <= $3 \
                  OR e.state = 'processing' AND e.lease_until <= $3) \
             AND NOT EXISTS ( \
               SELECT 1 FROM okta_events p WHERE p.user_key = e.user_key \
                 AND p.state IN ('pending', 'processing') \
                 AND (p.published < e.published \
                      OR (p.published = e.published AND p.uuid < e.uuid))) \
           ORDER BY e.published, e.uuid LIMIT $4) \
         AND {DUE} \
         RETURNING uuid, event_type, published, body, attempts"
    );
    let rows = sqlx::query(&sql)
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(store.pool())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Claimed {
                uuid: r.try_get(0)?,
                event_type: r.try_get(1)?,
                published: r.try_get(2)?,
                body: r.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
                attempts: r.try_get(4)?,
            })
        })
        .collect()
}

/// Pushes the leases of `uuids` (claimed by `owner`, still in process) out to `lease_until`, in
/// one statement. Returns how many were still `owner`'s. The worker renews while a reaction
/// runs, so the lease can be short (a dead replica's event is taken over within seconds) without
/// a slow reaction losing its claim.
pub async fn renew(store: &Store, owner: &str, lease_until: i64) -> Result<u64, StoreError> {
    let r = sqlx::query(
        "UPDATE okta_events SET lease_until = $2 \
         WHERE lease_owner = $1 AND state = 'processing'",
    )
    .bind(owner)
    .bind(lease_until)
    .execute(store.pool())
    .await?;
    Ok(r.rows_affected())
}

/// Marks a claimed event done with `outcome`, if the claim is still `owner`'s.
pub async fn complete(
    store: &Store,
    uuid: &str,
    owner: &str,
    now: i64,
    outcome: &str,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE okta_events SET state = 'done', outcome = $3, processed_at = $4, \
           lease_owner = NULL, lease_until = NULL, last_error = NULL \
         WHERE uuid = $1 AND lease_owner = $2 AND state = 'processing'",
    )
    .bind(uuid)
    .bind(owner)
    .bind(outcome)
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Puts a claimed event back to `pending` until `until` without counting the attempt: the
/// reaction chose to wait (the confirmation read's per-user pace, see `confirm`), nothing failed.
pub async fn defer(store: &Store, uuid: &str, owner: &str, until: i64) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE okta_events SET state = 'pending', next_attempt_at = $3, \
           attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
           lease_owner = NULL, lease_until = NULL \
         WHERE uuid = $1 AND lease_owner = $2 AND state = 'processing'",
    )
    .bind(uuid)
    .bind(owner)
    .bind(until)
    .execute(store.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A failed attempt: back to `pending` at `retry_at`, or `dead` (with its audit entry, the
/// alert) when `retry_at` is `None`.
pub async fn fail(
    store: &Store,
    clock: &Clock,
    c: &Claimed,
    owner: &str,
    error: &str,
    retry_at: Option<i64>,
) -> Result<bool, audit::AuditError> {
    let mut tx = store.begin().await?;
    let r = sqlx::query(
        "UPDATE okta_events SET state = $3, next_attempt_at = COALESCE($4, next_attempt_at), \
           last_error = $5, lease_owner = NULL, lease_until = NULL \
         WHERE uuid = $1 AND lease_owner = $2 AND state = 'processing'",
    )
    .bind(&c.uuid)
    .bind(owner)
    .bind(if retry_at.is_some() {
        "pending"
    } else {
        "dead"
    })
    .bind(retry_at)
    .bind(error)
    .execute(tx.conn())
    .await?;
    let won = r.rows_affected() == 1;
    if won && retry_at.is_none() {
        audit::append(
            &mut tx,
            clock,
            NewEntry::new(
                "system:events",
                "event.dead",
                format!("okta_event:{}", c.uuid),
                serde_json::json!({
                    "event_type": c.event_type, "attempts": c.attempts, "error": error,
                }),
            ),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(won)
}

/// An event as listed for admins.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub uuid: String,
    pub event_type: String,
    pub published: i64,
    pub user_key: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub outcome: Option<String>,
    pub received_at: i64,
    pub processed_at: Option<i64>,
}

pub const STATES: [&str; 6] = ["pending", "processing", "done", "dead", "dropped", "stale"];

pub async fn list(
    store: &Store,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<EventRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT uuid, event_type, published, user_key, state, attempts, last_error, outcome, \
           received_at, processed_at FROM okta_events \
         WHERE ($1 IS NULL OR state = $1) ORDER BY published DESC, uuid LIMIT $2",
    )
    .bind(state)
    .bind(limit)
    .fetch_all(store.reads())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(EventRow {
                uuid: r.try_get(0)?,
                event_type: r.try_get(1)?,
                published: r.try_get(2)?,
                user_key: r.try_get(3)?,
                state: r.try_get(4)?,
                attempts: r.try_get(5)?,
                last_error: r.try_get(6)?,
                outcome: r.try_get(7)?,
                received_at: r.try_get(8)?,
                processed_at: r.try_get(9)?,
            })
        })
        .collect()
}

/// An admin sends a dead or stale event back to the worker (attempts reset), audited. A stale
/// event is then processed like any other: confirmed with Okta before it takes access away.
pub async fn retry_dead(
    store: &Store,
    clock: &Clock,
    uuid: &str,
    actor: &str,
) -> Result<bool, audit::AuditError> {
    let now = clock.now_ms();
    let mut tx = store.begin().await?;
    let r = sqlx::query(
        "UPDATE okta_events SET state = 'pending', attempts = 0, next_attempt_at = $2 \
         WHERE uuid = $1 AND state IN ('dead', 'stale')",
    )
    .bind(uuid)
    .bind(now)
    .execute(tx.conn())
    .await?;
    let won = r.rows_affected() == 1;
    if won {
        audit::append(
            &mut tx,
            clock,
            NewEntry::new(
                actor,
                "event.retried",
                format!("okta_event:{uuid}"),
                serde_json::json!({}),
            ),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(won)
}

/// Rows one purge statement deletes at most: each is its own short transaction, so a backlog of
/// millions never holds SQLite's writer for long.
pub const PURGE_CHUNK: u64 = 1_000;

/// Deletes up to [`PURGE_CHUNK`] processed, dropped or stale events whose `next_attempt_at` is before
/// `cutoff`; returns how many. `next_attempt_at` is the receipt for a dropped event and the time
/// its last attempt was due for a processed one; the `(state, next_attempt_at)` index finds
/// them. The limit is written into the statement, not bound: PostgreSQL plans a bound `LIMIT`
/// generically and might scan the table. On PostgreSQL rows another replica's purge holds are
/// skipped instead of waited for.
pub async fn purge(store: &Store, cutoff: i64) -> Result<u64, StoreError> {
    let skip_locked = match store.backend() {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    let sql = format!(
        "DELETE FROM okta_events WHERE uuid IN ( \
           SELECT uuid FROM okta_events \
           WHERE state IN ('done', 'dropped', 'stale') AND next_attempt_at < $1 \
           LIMIT {PURGE_CHUNK}{skip_locked})"
    );
    let r = sqlx::query(&sql).bind(cutoff).execute(store.pool()).await?;
    Ok(r.rows_affected())
}

/// Events per state, for the `jit_events` gauge.
pub async fn count_by_state(store: &Store) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM okta_events GROUP BY state")
        .fetch_all(store.reads())
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect()
}
