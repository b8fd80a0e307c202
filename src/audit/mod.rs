//! The tamper-evident, append-only audit log (flow 8, invariant I6).
//!
//! Why it exists: auditors must be able to trust the history of who got which access, when, and
//! on whose approval, without trusting the database's operators. Each entry carries the SHA-256
//! of the previous entry's hash and its own canonical serialization, so altering, deleting or
//! reordering any row breaks the chain at that row, and `audit_head` pins the newest hash so
//! truncating the tail is detected as well.
//!
//! The chain is anchored only in the database, so each append also extends an RFC 6962 Merkle
//! tree over the entries ([`merkle`]) whose signed checkpoints ([`checkpoint`]) are published
//! outside it; [`proof`] checks the log against a checkpoint and builds and checks inclusion
//! proofs (docs/audit.md). The chain stays: cheap, and what exports re-verify.
//!
//! Appends take the caller's open transaction: a state change and its entry commit together or
//! not at all. On PostgreSQL the head row is locked `FOR UPDATE`, which serializes appenders
//! across tasks and replicas into one chain; on SQLite the single writer connection does that.
//!
//! What it must never do: update or delete an entry, append outside the caller's transaction,
//! or serialize an entry for hashing in a way that depends on map order or float formatting.

pub mod checkpoint;
pub mod export;
pub mod merkle;
pub mod proof;
pub mod query;

use axum::http::StatusCode;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::clock::Clock;
use crate::error::ErrorCode;
use crate::store::{Backend, Store, StoreError, Tx};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("audit entry {seq} has details that are not valid JSON")]
    BadDetails {
        seq: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write the export")]
    Io(#[from] std::io::Error),
    #[error("cannot write the export as CSV")]
    Csv(#[from] csv::Error),
    #[error("audit tree: {0}")]
    Tree(String),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Store(StoreError::Query(e))
    }
}

impl ErrorCode for AuditError {
    fn status(&self) -> StatusCode {
        match self {
            AuditError::Store(e) => e.status(),
            AuditError::Checkpoint(e) => e.status(),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            AuditError::Store(e) => e.code(),
            AuditError::Checkpoint(e) => e.code(),
            _ => "audit_error",
        }
    }
}

/// What a caller records.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Who did it: a token name, `slack:U123`, `okta:00u…`, or `system:scheduler`.
    pub actor: String,
    /// What happened, dotted and stable: `grant.activated`, `request.approved`, …
    pub action: String,
    /// What it happened to: `grant:<id>`, `request:<id>`, `user:<okta id>`.
    pub subject: String,
    pub details: serde_json::Value,
}

impl NewEntry {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        subject: impl Into<String>,
        details: serde_json::Value,
    ) -> Self {
        NewEntry {
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            details,
        }
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The bytes that are hashed: a JSON array with a fixed field order. `details_json` is the
/// stored text, which [`append`] writes in canonical form (`serde_json::Value` keeps object keys
/// sorted: the crate is built without `preserve_order`), so any change to it, even one that
/// leaves the JSON's meaning intact, breaks the hash.
pub fn canonical(
    seq: i64,
    at_ms: i64,
    actor: &str,
    action: &str,
    subject: &str,
    details_json: &str,
) -> String {
    let s = |v: &str| serde_json::Value::from(v).to_string();
    format!(
        "[{seq},{at_ms},{},{},{},{details_json}]",
        s(actor),
        s(action),
        s(subject)
    )
}

/// hash = SHA-256(prev_hash ‖ "\n" ‖ canonical entry), lowercase hex.
pub fn entry_hash(prev_hash: &str, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// Appends one entry inside the caller's transaction.
///
/// On PostgreSQL this locks the chain's head row until the transaction ends, so every other
/// appender (on every replica) waits for this commit: make the append the last statement before
/// `commit`, and never hold the transaction across a network call. One chain means appends are
/// serialized; their rate is bounded by commit latency, not by the number of writers.
pub async fn append(tx: &mut Tx, clock: &Clock, entry: NewEntry) -> Result<AuditEntry, AuditError> {
    let mut v = append_many(tx, clock, vec![entry]).await?;
    v.pop()
        .ok_or_else(|| AuditError::Store(StoreError::Corrupt("audit append wrote nothing".into())))
}

/// Appends `entries`, in order, inside the caller's transaction: one head read (and lock), one
/// INSERT for all of them, one head update. Used by batched state changes, where the head lock is
/// then taken once per batch instead of once per entry; the chain is the same as appending the
/// entries one by one. The same rules as [`append`] apply (last before `commit`, no network).
pub async fn append_many(
    tx: &mut Tx,
    clock: &Clock,
    entries: Vec<NewEntry>,
) -> Result<Vec<AuditEntry>, AuditError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let lock = match tx.backend() {
        Backend::Postgres => {
            "SELECT seq, hash, tree_size, tree_frontier FROM audit_head WHERE id = 1 FOR UPDATE"
        }
        Backend::Sqlite => {
            "SELECT seq, hash, tree_size, tree_frontier FROM audit_head WHERE id = 1"
        }
    };
    let head = sqlx::query(lock).fetch_one(tx.conn()).await?;
    let mut seq: i64 = head.try_get(0)?;
    let mut prev_hash: String = head.try_get(1)?;
    let tree_size: i64 = head.try_get(2)?;
    // The tree grows with the log only when it is complete; entries from before it existed are
    // added by `merkle::catch_up`, which then takes over the ones appended meanwhile.
    let mut frontier = if tree_size == seq {
        Some(merkle::Frontier::decode(
            tree_size as u64,
            &head.try_get::<String, _>(3)?,
        )?)
    } else {
        None
    };
    let mut nodes = Vec::new();
    let mut out = Vec::with_capacity(entries.len());
    let mut texts = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let at_ms = clock.now_ms();
        let details_text = entry.details.to_string();
        let bytes = canonical(
            seq,
            at_ms,
            &entry.actor,
            &entry.action,
            &entry.subject,
            &details_text,
        );
        let hash = entry_hash(&prev_hash, &bytes);
        let prev = std::mem::replace(&mut prev_hash, hash.clone());
        if let Some(f) = frontier.as_mut() {
            nodes.extend(f.push(tlog_tiles::tlog::record_hash(bytes.as_bytes()))?);
        }
        texts.push(details_text);
        out.push(AuditEntry {
            seq,
            at_ms,
            actor: entry.actor,
            action: entry.action,
            subject: entry.subject,
            details: entry.details,
            prev_hash: prev,
            hash,
        });
    }
    // Every row in ONE statement, whatever the count. A statement is a round trip to the
    // database (on SQLite, a hop to its worker thread and back), and under an expiry burst these
    // appends sit on the one writer's critical path, so the count of statements, not their size,
    // is what costs. A batch travels as one JSON array that the database unpacks; a single entry
    // (most appends) keeps the plain INSERT, which skips the JSON encoding and unpacking.
    if let ([e], [details]) = (out.as_slice(), texts.as_slice()) {
        sqlx::query(INSERT_ONE)
            .bind(e.seq)
            .bind(e.at_ms)
            .bind(&e.actor)
            .bind(&e.action)
            .bind(&e.subject)
            .bind(details)
            .bind(&e.prev_hash)
            .bind(&e.hash)
            .execute(tx.conn())
            .await?;
    } else {
        let rows: Vec<serde_json::Value> = out
            .iter()
            .zip(&texts)
            .map(|(e, details)| {
                serde_json::json!([
                    e.seq,
                    e.at_ms,
                    e.actor,
                    e.action,
                    e.subject,
                    details,
                    e.prev_hash,
                    e.hash
                ])
            })
            .collect();
        let insert = match tx.backend() {
            Backend::Postgres => INSERT_JSON_POSTGRES,
            Backend::Sqlite => INSERT_JSON_SQLITE,
        };
        sqlx::query(insert)
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(tx.conn())
            .await?;
    }
    match &frontier {
        Some(f) => {
            merkle::insert_nodes(tx, &nodes).await?;
            sqlx::query(
                "UPDATE audit_head SET seq = $1, hash = $2, tree_size = $3, tree_frontier = $4 \
                 WHERE id = 1",
            )
            .bind(seq)
            .bind(&prev_hash)
            .bind(f.size() as i64)
            .bind(f.encode())
            .execute(tx.conn())
            .await?;
        }
        None => {
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(seq)
                .bind(&prev_hash)
                .execute(tx.conn())
                .await?;
        }
    }
    metrics::counter!("jit_audit_appends_total").increment(out.len() as u64);
    Ok(out)
}

const INSERT_ONE: &str =
    "INSERT INTO audit_log (seq, at_ms, actor, action, subject, details, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// [`append_many`]'s INSERT for several entries: `$1` is a JSON array of `[seq, at_ms, actor, action, subject,
/// details, prev_hash, hash]` rows. SQLite's `->>` yields the JSON value's own SQL type
/// (integer or text); PostgreSQL's yields text, cast where the column is a number. `->>` needs
/// SQLite 3.38 or later (sqlx bundles a newer one); a test appends awkward text through it and
/// re-verifies the chain on both backends.
const INSERT_JSON_SQLITE: &str =
    "INSERT INTO audit_log (seq, at_ms, actor, action, subject, details, prev_hash, hash) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
            value ->> 6, value ->> 7 \
     FROM json_each($1)";
const INSERT_JSON_POSTGRES: &str =
    "INSERT INTO audit_log (seq, at_ms, actor, action, subject, details, prev_hash, hash) \
     SELECT (r ->> 0)::BIGINT, (r ->> 1)::BIGINT, r ->> 2, r ->> 3, r ->> 4, r ->> 5, r ->> 6, \
            r ->> 7 \
     FROM jsonb_array_elements($1::JSONB) AS r";

/// Appends in a transaction of its own, for events that change no other state.
pub async fn append_now(
    store: &Store,
    clock: &Clock,
    entry: NewEntry,
) -> Result<AuditEntry, AuditError> {
    let mut tx = store.begin().await?;
    let e = append(&mut tx, clock, entry).await?;
    tx.commit().await?;
    Ok(e)
}

pub(crate) const SELECT_COLUMNS: &str =
    "SELECT seq, at_ms, actor, action, subject, details, prev_hash, hash FROM audit_log";

/// A stored row as read, with `details` still as text so verification hashes exactly what is
/// stored.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl RawEntry {
    pub(crate) fn from_row(row: &sqlx::any::AnyRow) -> Result<RawEntry, sqlx::Error> {
        Ok(RawEntry {
            seq: row.try_get(0)?,
            at_ms: row.try_get(1)?,
            actor: row.try_get(2)?,
            action: row.try_get(3)?,
            subject: row.try_get(4)?,
            details: row.try_get(5)?,
            prev_hash: row.try_get(6)?,
            hash: row.try_get(7)?,
        })
    }

    pub fn parse(self) -> Result<AuditEntry, AuditError> {
        let details =
            serde_json::from_str(&self.details).map_err(|source| AuditError::BadDetails {
                seq: self.seq,
                source,
            })?;
        Ok(AuditEntry {
            seq: self.seq,
            at_ms: self.at_ms,
            actor: self.actor,
            action: self.action,
            subject: self.subject,
            details,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

const STREAM_SQL: &str = "SELECT seq, at_ms, actor, action, subject, details, prev_hash, hash \
     FROM audit_log WHERE at_ms >= $1 AND at_ms < $2 ORDER BY seq";

/// Streams stored entries with `since_ms <= at_ms < until_ms` in sequence order, one row at a
/// time (constant memory whatever the table's size).
pub fn stream_raw(
    store: &Store,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) -> impl Stream<Item = Result<RawEntry, AuditError>> + '_ {
    sqlx::query(STREAM_SQL)
        .bind(since_ms.unwrap_or(i64::MIN))
        .bind(until_ms.unwrap_or(i64::MAX))
        .fetch(store.pool())
        .map_err(AuditError::from)
        .and_then(|row| async move { RawEntry::from_row(&row).map_err(AuditError::from) })
}

/// One page of entries after `after_seq`, oldest first.
pub async fn page(
    store: &Store,
    after_seq: i64,
    limit: i64,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) -> Result<Vec<AuditEntry>, AuditError> {
    let rows = sqlx::query(&format!(
        "{SELECT_COLUMNS} WHERE seq > $1 AND at_ms >= $2 AND at_ms < $3 ORDER BY seq LIMIT $4"
    ))
    .bind(after_seq)
    .bind(since_ms.unwrap_or(i64::MIN))
    .bind(until_ms.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            RawEntry::from_row(r)
                .map_err(AuditError::from)
                .and_then(RawEntry::parse)
        })
        .collect()
}

/// The outcome of a full verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub entries: u64,
    pub head_seq: i64,
    pub head_hash: String,
    /// The first entry at which the chain breaks, and why. `None` means intact.
    pub first_broken: Option<Broken>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    pub seq: i64,
    pub reason: String,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// Recomputes the whole chain from the first entry, streaming.
pub async fn verify(store: &Store) -> Result<VerifyReport, AuditError> {
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(store.pool())
        .await?;
    let head_seq: i64 = head.try_get(0)?;
    let head_hash: String = head.try_get(1)?;

    let mut expected_seq = 1_i64;
    let mut prev_hash = GENESIS_HASH.to_string();
    let mut entries = 0_u64;
    let mut first_broken = None;
    {
        let mut rows = std::pin::pin!(stream_raw(store, None, None));
        while let Some(row) = rows.next().await {
            let e = row?;
            entries += 1;
            if let Some(broken) = check_entry(&e, expected_seq, &prev_hash) {
                first_broken = Some(broken);
                break;
            }
            prev_hash = e.hash;
            expected_seq += 1;
        }
    }
    if first_broken.is_none() {
        let last_seq = expected_seq - 1;
        if last_seq < head_seq {
            first_broken = Some(Broken {
                seq: last_seq + 1,
                reason: format!(
                    "the log ends at entry {last_seq} but the head records entry {head_seq}: entries were removed from the end"
                ),
            });
        } else if last_seq != head_seq || prev_hash != head_hash {
            first_broken = Some(Broken {
                seq: last_seq,
                reason: format!(
                    "the head records entry {head_seq} with another hash than the log's last entry {last_seq}: the head or the tail was altered"
                ),
            });
        }
    }
    Ok(VerifyReport {
        entries,
        head_seq,
        head_hash,
        first_broken,
    })
}

/// Why `e` does not continue the chain, if it does not: the first position that is wrong.
/// Public so an export can be re-verified row by row with the same rules.
pub fn check_entry(e: &RawEntry, expected_seq: i64, prev_hash: &str) -> Option<Broken> {
    if e.seq != expected_seq {
        // Rows are read in `seq` order, so a higher number means entries are missing here, and a
        // lower one (impossible with the primary key, but cheap to name) means they were moved.
        let reason = if e.seq > expected_seq {
            format!(
                "entry {expected_seq} is missing (the next stored entry is {}): entries were deleted",
                e.seq
            )
        } else {
            format!(
                "expected entry {expected_seq} but found {}: entries were reordered",
                e.seq
            )
        };
        return Some(Broken {
            seq: expected_seq,
            reason,
        });
    }
    let broken = |reason: &str| {
        Some(Broken {
            seq: e.seq,
            reason: reason.to_string(),
        })
    };
    if e.prev_hash != prev_hash {
        return broken(
            "prev_hash does not match the previous entry's hash: entries were reordered, replaced or deleted before it",
        );
    }
    let recomputed = entry_hash(
        prev_hash,
        &canonical(e.seq, e.at_ms, &e.actor, &e.action, &e.subject, &e.details),
    );
    if recomputed != e.hash {
        return broken("hash does not match the entry's contents: the entry was altered");
    }
    None
}
