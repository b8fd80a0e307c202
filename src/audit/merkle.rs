//! The RFC 6962 Merkle tree over the audit log, kept in SQL as the log grows.
//!
//! Why it exists: the hash chain alone is anchored only in the database, so whoever can write
//! the database can rewrite history and recompute the chain. A Merkle tree's root, signed and
//! published outside the database ([`super::checkpoint`]), pins the history: any later tree must
//! contain it as a prefix (consistency proof), and any entry can be shown to be in it (inclusion
//! proof), in O(log n) hashes.
//!
//! Leaves are the entries in sequence order (leaf index = seq - 1); a leaf hash is
//! `SHA-256(0x00 || canonical entry)` and a node `SHA-256(0x01 || left || right)`, where the
//! canonical entry is [`super::canonical`]'s JSON array (no `prev_hash`: the tree does not need
//! the chain). The math is `tlog_tiles` (Cloudflare's port of Go's `sumdb/tlog`); node hashes are
//! stored at its stored-hash indexes in `audit_tree`, and the tree's right edge (its
//! [`Frontier`]) in `audit_head`, so an append reads no node and writes about two.
//!
//! What it must never do: update or delete a node, extend the tree outside the appending
//! transaction, or trust stored nodes when checking the log against a checkpoint (that check
//! recomputes every leaf from the entries).

use std::cell::RefCell;
use std::collections::HashMap;

use sqlx::Row;
use tlog_tiles::tlog::{self, Hash, HashReader};

use super::{canonical, AuditError, RawEntry};
use crate::store::{Backend, Store, StoreError, Tx};

/// The hash of one entry as a leaf of the tree.
pub fn leaf_hash(e: &RawEntry) -> Hash {
    tlog::record_hash(
        canonical(e.seq, e.at_ms, &e.actor, &e.action, &e.subject, &e.details).as_bytes(),
    )
}

/// Lowercase hex of a hash (how the database stores it).
pub fn hex_of(h: &Hash) -> String {
    hex::encode(h.0)
}

/// A hash from lowercase or uppercase hex.
pub fn hash_from_hex(s: &str) -> Option<Hash> {
    let bytes = hex::decode(s).ok()?;
    let arr: [u8; 32] = bytes.try_into().ok()?;
    Some(Hash(arr))
}

fn tree_error(e: tlog::Error) -> AuditError {
    AuditError::Tree(e.to_string())
}

/// The right edge of a tree of `size` leaves: the roots of its perfect subtrees, largest first,
/// each with its stored-hash index. Enough to append a leaf and to compute the root.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<(u64, Hash)>,
}

/// A [`HashReader`] over a few known nodes; a read of any other node is an error.
struct Known<'a>(&'a [(u64, Hash)], &'a [(u64, Hash)]);

impl HashReader for Known<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|i| {
                self.0
                    .iter()
                    .chain(self.1)
                    .find(|(j, _)| j == i)
                    .map(|(_, h)| *h)
                    .ok_or(tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash (RFC 6962 MTH); the empty tree's is SHA-256 of nothing.
    pub fn root(&self) -> Result<Hash, AuditError> {
        tlog::tree_hash(self.size, &Known(&self.nodes, &[])).map_err(tree_error)
    }

    /// Adds the next leaf; returns the node hashes to store (the leaf and every subtree it
    /// completes), with their stored-hash indexes.
    pub fn push(&mut self, leaf: Hash) -> Result<Vec<(u64, Hash)>, AuditError> {
        let n = self.size;
        let hashes = tlog::stored_hashes_for_record_hash(n, leaf, &Known(&self.nodes, &[]))
            .map_err(tree_error)?;
        let start = tlog::stored_hash_index(0, n);
        let new: Vec<(u64, Hash)> = hashes
            .into_iter()
            .enumerate()
            .map(|(i, h)| (start + i as u64, h))
            .collect();
        let edge = tlog::sub_tree_index(0, n + 1, Vec::new());
        let known = Known(&self.nodes, &new);
        let hashes = known.read_hashes(&edge).map_err(tree_error)?;
        self.nodes = edge.into_iter().zip(hashes).collect();
        self.size = n + 1;
        Ok(new)
    }

    /// The text kept in `audit_head.tree_frontier`: the hashes in hex, largest subtree first.
    pub fn encode(&self) -> String {
        self.nodes.iter().map(|(_, h)| hex_of(h)).collect()
    }

    /// Reads [`Frontier::encode`]'s text back for a tree of `size` leaves.
    pub fn decode(size: u64, text: &str) -> Result<Frontier, AuditError> {
        let edge = tlog::sub_tree_index(0, size, Vec::new());
        let bad = || AuditError::Store(StoreError::Corrupt("audit_head.tree_frontier".into()));
        if text.len() != edge.len() * 64 {
            return Err(bad());
        }
        let mut nodes = Vec::with_capacity(edge.len());
        for (k, idx) in edge.into_iter().enumerate() {
            let h = text
                .get(k * 64..(k + 1) * 64)
                .and_then(hash_from_hex)
                .ok_or_else(bad)?;
            nodes.push((idx, h));
        }
        Ok(Frontier { size, nodes })
    }
}

/// Writes nodes to `audit_tree` in as few statements as the bind limits allow.
pub(crate) async fn insert_nodes(tx: &mut Tx, nodes: &[(u64, Hash)]) -> Result<(), AuditError> {
    // 400 rows is 800 binds, well under both engines' limits; a single append writes ~2.
    for chunk in nodes.chunks(400) {
        let mut sql = String::from("INSERT INTO audit_tree (idx, hash) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
        }
        let mut q = sqlx::query(&sql);
        for (idx, h) in chunk {
            q = q.bind(*idx as i64).bind(hex_of(h));
        }
        q.execute(tx.conn()).await?;
    }
    Ok(())
}

/// Records the indexes a `tlog` function asks for, answering zeros: the indexes depend only on
/// the sizes, so a first dry run tells which nodes to load before the real run.
#[derive(Default)]
struct Recorder(RefCell<Vec<u64>>);

impl HashReader for Recorder {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![Hash([0; 32]); indexes.len()])
    }
}

struct Loaded(HashMap<u64, Hash>);

impl HashReader for Loaded {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|i| self.0.get(i).copied().ok_or(tlog::Error::IndexesNotInTree))
            .collect()
    }
}

async fn load_nodes(store: &Store, indexes: &[u64]) -> Result<Loaded, AuditError> {
    let mut map = HashMap::new();
    for chunk in indexes.chunks(500) {
        // The indexes are numbers this module computed, never outside input.
        let list = chunk
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let rows = sqlx::query(&format!(
            "SELECT idx, hash FROM audit_tree WHERE idx IN ({list})"
        ))
        .fetch_all(store.reads())
        .await?;
        for r in rows {
            let idx: i64 = r.try_get(0)?;
            let hex: String = r.try_get(1)?;
            let h = hash_from_hex(&hex).ok_or_else(|| {
                AuditError::Store(StoreError::Corrupt(format!("audit_tree node {idx}")))
            })?;
            map.insert(idx as u64, h);
        }
    }
    Ok(Loaded(map))
}

/// The stored nodes at `indexes` (those present).
pub async fn read_stored(store: &Store, indexes: &[u64]) -> Result<HashMap<u64, Hash>, AuditError> {
    Ok(load_nodes(store, indexes).await?.0)
}

/// The size of the stored tree (may trail the log right after the upgrade, see [`catch_up`]).
pub async fn stored_size(store: &Store) -> Result<u64, AuditError> {
    let size: i64 = sqlx::query_scalar("SELECT tree_size FROM audit_head WHERE id = 1")
        .fetch_one(store.reads())
        .await?;
    Ok(size as u64)
}

/// The stored tree's root at `size` (at most the stored tree's size), from stored nodes.
pub async fn stored_root(store: &Store, size: u64) -> Result<Hash, AuditError> {
    let rec = Recorder::default();
    let _ = tlog::tree_hash(size, &rec);
    let loaded = load_nodes(store, &rec.0.into_inner()).await?;
    tlog::tree_hash(size, &loaded).map_err(tree_error)
}

/// The audit path of leaf `index` in the stored tree of `size` leaves.
pub async fn inclusion_proof(
    store: &Store,
    size: u64,
    index: u64,
) -> Result<Vec<Hash>, AuditError> {
    let rec = Recorder::default();
    tlog::prove_record(size, index, &rec).map_err(tree_error)?;
    let loaded = load_nodes(store, &rec.0.into_inner()).await?;
    tlog::prove_record(size, index, &loaded).map_err(tree_error)
}

/// The RFC 6962 consistency proof from the tree of `old` leaves to the stored tree of `size`.
pub async fn consistency_proof(
    store: &Store,
    size: u64,
    old: u64,
) -> Result<Vec<Hash>, AuditError> {
    let rec = Recorder::default();
    tlog::prove_tree(size, old, &rec).map_err(tree_error)?;
    let loaded = load_nodes(store, &rec.0.into_inner()).await?;
    tlog::prove_tree(size, old, &loaded).map_err(tree_error)
}

/// Extends the tree over entries appended before it existed (the upgrade that added it), a
/// batch per transaction under the head's lock. Appends meanwhile leave the tree alone (they
/// extend it only when it is complete); the loop ends when it has caught up with them.
/// Returns the number of entries added.
pub async fn catch_up(store: &Store) -> Result<u64, AuditError> {
    const BATCH: i64 = 2000;
    let mut added = 0_u64;
    loop {
        let mut tx = store.begin().await?;
        let lock = match tx.backend() {
            Backend::Postgres => {
                "SELECT seq, tree_size, tree_frontier FROM audit_head WHERE id = 1 FOR UPDATE"
            }
            Backend::Sqlite => "SELECT seq, tree_size, tree_frontier FROM audit_head WHERE id = 1",
        };
        let head = sqlx::query(lock).fetch_one(tx.conn()).await?;
        let seq: i64 = head.try_get(0)?;
        let tree_size: i64 = head.try_get(1)?;
        let text: String = head.try_get(2)?;
        if tree_size >= seq {
            tx.rollback().await?;
            return Ok(added);
        }
        let mut frontier = Frontier::decode(tree_size as u64, &text)?;
        let rows = sqlx::query(&format!(
            "{} WHERE seq > $1 AND seq <= $2 ORDER BY seq",
            super::SELECT_COLUMNS
        ))
        .bind(tree_size)
        .bind((tree_size + BATCH).min(seq))
        .fetch_all(tx.conn())
        .await?;
        let mut nodes = Vec::new();
        for row in &rows {
            let e = RawEntry::from_row(row)?;
            if e.seq as u64 != frontier.size() + 1 {
                return Err(AuditError::Store(StoreError::Corrupt(format!(
                    "audit entry {} is missing: the tree cannot be built past it",
                    frontier.size() + 1
                ))));
            }
            nodes.extend(frontier.push(leaf_hash(&e))?);
        }
        insert_nodes(&mut tx, &nodes).await?;
        sqlx::query("UPDATE audit_head SET tree_size = $1, tree_frontier = $2 WHERE id = 1")
            .bind(frontier.size() as i64)
            .bind(frontier.encode())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        added += rows.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 section 2.1, written out: MTH of a list, split at the largest power of two
    /// smaller than its length.
    fn mth(leaves: &[Hash]) -> Hash {
        use sha2::{Digest, Sha256};
        match leaves.len() {
            0 => Hash(Sha256::digest(b"").into()),
            1 => leaves[0],
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                let (l, r) = (mth(&leaves[..k]), mth(&leaves[k..]));
                let mut h = Sha256::new();
                h.update([1u8]);
                h.update(l.0);
                h.update(r.0);
                Hash(h.finalize().into())
            }
        }
    }

    fn leaf(i: u64) -> Hash {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(format!("entry {i}").as_bytes());
        Hash(h.finalize().into())
    }

    /// A node store as the SQL table holds it, filled through [`Frontier::push`].
    fn build(n: u64) -> (Frontier, Loaded, Vec<Hash>) {
        let mut f = Frontier::default();
        let mut map = HashMap::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let l = leaf(i);
            leaves.push(l);
            for (idx, h) in f.push(l).unwrap() {
                assert!(map.insert(idx, h).is_none(), "node {idx} written twice");
            }
        }
        (f, Loaded(map), leaves)
    }

    #[test]
    fn roots_and_proofs_match_the_reference_for_sizes_1_to_1000() {
        let (_, nodes, leaves) = build(1000);
        let mut f = Frontier::default();
        for t in 1..=1000_u64 {
            f.push(leaves[t as usize - 1]).unwrap();
            let root = mth(&leaves[..t as usize]);
            assert_eq!(f.root().unwrap(), root, "frontier root at {t}");
            assert_eq!(
                tlog::tree_hash(t, &nodes).unwrap(),
                root,
                "stored root at {t}"
            );
            let round = Frontier::decode(t, &f.encode()).unwrap();
            assert_eq!(round, f);
            // Inclusion of a few leaves, and consistency with a few older sizes, per size.
            for n in [0, t / 3, t / 2, t - 1] {
                let p = tlog::prove_record(t, n, &nodes).unwrap();
                tlog::check_record(&p, t, root, n, leaves[n as usize]).unwrap();
                assert!(
                    tlog::check_record(&p, t, root, n, leaf(5000)).is_err(),
                    "a wrong leaf must not verify"
                );
            }
            for old in [1, t / 2, t - 1, t] {
                if old == 0 {
                    continue;
                }
                let p = tlog::prove_tree(t, old, &nodes).unwrap();
                let old_root = mth(&leaves[..old as usize]);
                tlog::check_tree(&p, t, root, old, old_root).unwrap();
                if old < t {
                    assert!(tlog::check_tree(&p, t, root, old, leaf(1)).is_err());
                }
            }
        }
    }

    #[test]
    fn every_inclusion_proof_at_one_size_verifies() {
        let (f, nodes, leaves) = build(777);
        let root = f.root().unwrap();
        for n in 0..777 {
            let p = tlog::prove_record(777, n, &nodes).unwrap();
            tlog::check_record(&p, 777, root, n, leaves[n as usize]).unwrap();
        }
        for old in 1..=777 {
            let p = tlog::prove_tree(777, old, &nodes).unwrap();
            tlog::check_tree(&p, 777, root, old, mth(&leaves[..old as usize])).unwrap();
        }
    }

    #[test]
    fn a_damaged_frontier_is_refused() {
        let (f, _, _) = build(5);
        assert!(Frontier::decode(5, &f.encode()[1..]).is_err());
        assert!(Frontier::decode(7, &f.encode()).is_err());
        assert!(Frontier::decode(5, &"zz".repeat(64)).is_err());
    }
}
