//! What an auditor checks: one entry's inclusion proof (checked offline, without the database),
//! and the whole log against a checkpoint kept outside the database.
//!
//! Why it exists: a signed root is only useful with the proofs that tie entries to it. An
//! [`InclusionProof`] carries the entry's stored fields, its leaf index, its audit path and the
//! checkpoint note, so `audit verify-proof` (and anyone with a C2SP verifier and SHA-256) can
//! check one decision in isolation. [`check_log`] recomputes every leaf from the stored entries
//! (never trusting stored nodes), compares the root at the checkpoint's size, proves the current
//! tree consistent with it, and on failure names the first entry that differs.
//!
//! What it must never do: accept a proof whose checkpoint did not verify, or call a log intact
//! from stored hashes alone.

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tlog_tiles::tlog::{self, Hash};

use super::checkpoint::{self, b64, Verified};
use super::merkle::{self, Frontier};
use super::{AuditError, RawEntry};
use crate::store::Store;

pub const PROOF_FORMAT: &str = "jit-broker/audit-inclusion-proof/v1";

/// An entry's fields exactly as stored (`details` is the stored JSON text, the bytes hashed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofEntry {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
}

impl ProofEntry {
    fn raw(&self) -> RawEntry {
        RawEntry {
            seq: self.seq,
            at_ms: self.at_ms,
            actor: self.actor.clone(),
            action: self.action.clone(),
            subject: self.subject.clone(),
            details: self.details.clone(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
}

/// An RFC 6962 inclusion proof of one entry in a checkpointed tree, self-contained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub format: String,
    pub entry: ProofEntry,
    /// `seq - 1`.
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Base64 SHA-256(0x00 || canonical entry).
    pub leaf_hash: String,
    /// Base64 hashes, leaf to root (RFC 6962 audit path).
    pub audit_path: Vec<String>,
    /// The checkpoint (signed note) the path leads to.
    pub checkpoint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("not a {PROOF_FORMAT} document")]
    Format,
    #[error("the proof is for a tree of {proof} entries but its checkpoint has {checkpoint}")]
    SizeMismatch { proof: u64, checkpoint: u64 },
    #[error("the entry's fields do not hash to the proof's leaf: the entry was altered")]
    LeafMismatch,
    #[error(
        "the audit path does not lead to the checkpoint's root: the entry is not in that tree"
    )]
    PathMismatch,
}

/// Builds the inclusion proof of entry `seq` in the tree of the checkpoint `note` (already
/// verified by the caller, or one of the broker's stored checkpoints).
pub async fn prove(
    store: &Store,
    seq: i64,
    note: &str,
    size: u64,
) -> Result<InclusionProof, AuditError> {
    if seq < 1 || seq as u64 > size {
        return Err(AuditError::Tree(format!(
            "entry {seq} is not in the checkpoint's tree of {size} entries"
        )));
    }
    let raw = sqlx::query(&format!("{} WHERE seq = $1", super::SELECT_COLUMNS))
        .bind(seq)
        .fetch_optional(store.pool())
        .await?;
    let Some(raw) = raw else {
        return Err(AuditError::Tree(format!("entry {seq} does not exist")));
    };
    let e = RawEntry::from_row(&raw)?;
    let stored = merkle::stored_size(store).await?;
    if stored < size {
        return Err(AuditError::Tree(format!(
            "the stored tree has {stored} entries, fewer than the checkpoint's {size}"
        )));
    }
    let path = merkle::inclusion_proof(store, size, seq as u64 - 1).await?;
    Ok(InclusionProof {
        format: PROOF_FORMAT.to_string(),
        leaf_index: seq as u64 - 1,
        tree_size: size,
        leaf_hash: b64(&merkle::leaf_hash(&e)),
        audit_path: path.iter().map(b64).collect(),
        checkpoint: note.to_string(),
        entry: ProofEntry {
            seq: e.seq,
            at_ms: e.at_ms,
            actor: e.actor,
            action: e.action,
            subject: e.subject,
            details: e.details,
        },
    })
}

/// Checks a proof without any database: the checkpoint's signature (with `keys`), then the
/// entry's leaf, then the path to the root.
pub fn verify_offline(
    p: &InclusionProof,
    keys: &[String],
    allow_unsigned: bool,
) -> Result<Verified, ProofError> {
    // `checked_add`: the index is the file's word, and u64::MAX must be refused, not wrapped.
    if p.format != PROOF_FORMAT || p.leaf_index.checked_add(1) != u64::try_from(p.entry.seq).ok() {
        return Err(ProofError::Format);
    }
    let v = checkpoint::verify(&p.checkpoint, keys, None, allow_unsigned)?;
    if v.size != p.tree_size {
        return Err(ProofError::SizeMismatch {
            proof: p.tree_size,
            checkpoint: v.size,
        });
    }
    let leaf = merkle::leaf_hash(&p.entry.raw());
    if b64(&leaf) != p.leaf_hash {
        return Err(ProofError::LeafMismatch);
    }
    let path = p
        .audit_path
        .iter()
        .map(|h| Hash::parse_hash(h).map_err(|_| ProofError::Format))
        .collect::<Result<Vec<_>, _>>()?;
    tlog::check_record(&path, p.tree_size, v.root, p.leaf_index, leaf)
        .map_err(|_| ProofError::PathMismatch)?;
    Ok(v)
}

/// The outcome of checking the log against a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogCheck {
    pub checkpoint_size: u64,
    /// Entries in the database now.
    pub current_size: u64,
    /// `None`: the database's tree at the checkpoint's size has the checkpoint's root and the
    /// current tree is consistent with it.
    pub first_difference: Option<Difference>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The first entry that differs from the checkpointed history, when it can be told.
    pub seq: Option<i64>,
    /// Where it lies when it cannot be told exactly: entries `from..=to`.
    pub from: i64,
    pub to: i64,
    pub reason: String,
}

impl LogCheck {
    pub fn ok(&self) -> bool {
        self.first_difference.is_none()
    }
}

fn at(seq: i64, reason: impl Into<String>) -> Option<Difference> {
    Some(Difference {
        seq: Some(seq),
        from: seq,
        to: seq,
        reason: reason.into(),
    })
}

/// Checks the stored log against the verified checkpoint `cp`. `keys` verify the broker's own
/// stored checkpoints, which narrow down a rewrite when the stored tree was rebuilt with it.
pub async fn check_log(
    store: &Store,
    cp: &Verified,
    keys: &[String],
) -> Result<LogCheck, AuditError> {
    let n = cp.size;
    // Roots the broker signed earlier: trusted when their signature verifies with `keys`.
    let signed = signed_roots(store, keys, n).await?;
    let mut frontier = Frontier::default();
    let mut recomputed_at = std::collections::HashMap::new();
    let mut first_gap: Option<Difference> = None;
    {
        let mut rows = std::pin::pin!(super::stream_raw(store, None, None));
        while let Some(row) = rows.next().await {
            let e = row?;
            let expected = frontier.size() as i64 + 1;
            if e.seq != expected {
                first_gap = at(
                    expected,
                    format!("entry {expected} is missing (the next stored entry is {}): entries were deleted", e.seq),
                );
                break;
            }
            frontier.push(merkle::leaf_hash(&e))?;
            if signed.iter().any(|(s, _)| *s == frontier.size()) || frontier.size() == n {
                recomputed_at.insert(frontier.size(), frontier.root()?);
            }
        }
    }
    let current = frontier.size();
    let root_at_n = recomputed_at.get(&n).copied();
    let mut diff = None;
    if root_at_n == Some(cp.root) {
        if let Some(gap) = first_gap {
            // Entries after the checkpoint were removed: history past it is broken.
            diff = Some(gap);
        } else if merkle::stored_size(store).await? >= current && current > n {
            let p = merkle::consistency_proof(store, current, n).await?;
            if tlog::check_tree(&p, current, frontier.root()?, n, cp.root).is_err() {
                diff = first_stored_leaf_mismatch(store, current)
                    .await?
                    .or(Some(Difference {
                        seq: None,
                        from: n as i64 + 1,
                        to: current as i64,
                        reason: "the stored tree is not consistent with the checkpoint".into(),
                    }));
            }
        }
    } else {
        diff = explain(store, cp, current, first_gap, &signed, &recomputed_at).await?;
    }
    Ok(LogCheck {
        checkpoint_size: n,
        current_size: current,
        first_difference: diff,
    })
}

/// Why the tree at the checkpoint's size differs, as precisely as the evidence allows.
async fn explain(
    store: &Store,
    cp: &Verified,
    current: u64,
    first_gap: Option<Difference>,
    signed: &[(u64, Hash)],
    recomputed_at: &std::collections::HashMap<u64, Hash>,
) -> Result<Option<Difference>, AuditError> {
    let n = cp.size;
    // Entries that no longer match the leaves stored when they were appended (the tree was
    // left alone: the review's attack, a deletion or insertion with renumbering, a swap).
    let mismatch = first_stored_leaf_mismatch(store, n.min(current)).await?;
    let mut best = mismatch;
    if let Some(gap) = first_gap {
        if best.as_ref().and_then(|d| d.seq) > gap.seq || best.is_none() {
            best = Some(gap);
        }
    }
    if best.is_none() && current < n {
        best = at(
            current as i64 + 1,
            format!(
                "the log ends at entry {current} but the checkpoint covers {n} entries: entries were removed from the end"
            ),
        );
    }
    if let Some(d) = best {
        if d.seq.is_some_and(|s| s as u64 <= n) {
            return Ok(Some(d));
        }
    }
    // Every entry matches the stored tree, so the tree was rebuilt over a rewritten history.
    // A root alone cannot say where; the broker's earlier signed checkpoints narrow it down.
    let mut from = 1_i64;
    let mut to = n as i64;
    for (size, root) in signed {
        match recomputed_at.get(size) {
            Some(r) if r == root && (*size as i64) >= from => from = *size as i64 + 1,
            Some(r) if r != root && (*size as i64) < to => to = *size as i64,
            _ => {}
        }
    }
    let reason = format!(
        "the tree at {n} entries has another root than the checkpoint, and every stored entry matches the stored tree: the history was rewritten and the tree rebuilt, between entries {from} and {to}"
    );
    Ok(Some(Difference {
        seq: (from == to).then_some(from),
        from,
        to,
        reason,
    }))
}

/// The first of the first `upto` entries whose recomputed leaf differs from the leaf stored in
/// `audit_tree` when it was appended.
async fn first_stored_leaf_mismatch(
    store: &Store,
    upto: u64,
) -> Result<Option<Difference>, AuditError> {
    const BATCH: usize = 500;
    let mut rows = std::pin::pin!(super::stream_raw(store, None, None));
    let mut batch: Vec<RawEntry> = Vec::with_capacity(BATCH);
    let mut done = false;
    while !done {
        batch.clear();
        while batch.len() < BATCH {
            match rows.next().await {
                Some(r) => {
                    let e = r?;
                    if e.seq as u64 > upto {
                        done = true;
                        break;
                    }
                    batch.push(e);
                }
                None => {
                    done = true;
                    break;
                }
            }
        }
        let idx: Vec<u64> = batch
            .iter()
            .filter(|e| e.seq >= 1)
            .map(|e| tlog::stored_hash_index(0, e.seq as u64 - 1))
            .collect();
        let stored = merkle::read_stored(store, &idx).await?;
        for e in &batch {
            if e.seq < 1 {
                continue;
            }
            let i = tlog::stored_hash_index(0, e.seq as u64 - 1);
            if stored.get(&i) != Some(&merkle::leaf_hash(e)) {
                return Ok(at(
                    e.seq,
                    format!(
                        "entry {} differs from the entry that was appended at this position (its leaf in the tree no longer matches): it was altered, moved or inserted",
                        e.seq
                    ),
                ));
            }
        }
    }
    Ok(None)
}

/// The broker's stored checkpoints up to `max` whose signature verifies with `keys`.
async fn signed_roots(
    store: &Store,
    keys: &[String],
    max: u64,
) -> Result<Vec<(u64, Hash)>, AuditError> {
    let rows = sqlx::query("SELECT tree_size, note FROM audit_checkpoints WHERE tree_size <= $1")
        .bind(max as i64)
        .fetch_all(store.pool())
        .await?;
    let mut out = Vec::new();
    for r in rows {
        use sqlx::Row;
        let note: String = r.try_get(1)?;
        if let Ok(v) = checkpoint::verify(&note, keys, None, false) {
            out.push((v.size, v.root));
        }
    }
    Ok(out)
}
