-- The RFC 6962 Merkle tree over the audit log (docs/audit.md). `audit_tree` holds every node
-- hash at its stored-hash index (the Crosby-Wallach order of Go's sumdb/tlog): a leaf and the
-- subtrees it completes are written with its entry, in the same transaction. `audit_head` keeps
-- the tree's size and its right edge (the roots of the perfect subtrees, hex, largest first), so
-- an append reads no node. A tree smaller than the log (entries from before this migration) is
-- completed by the broker at start.
CREATE TABLE audit_tree (
    idx   INTEGER PRIMARY KEY,
    hash  TEXT    NOT NULL
);
ALTER TABLE audit_head ADD COLUMN tree_size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_head ADD COLUMN tree_frontier TEXT NOT NULL DEFAULT '';

CREATE TRIGGER audit_tree_no_update BEFORE UPDATE ON audit_tree
BEGIN SELECT RAISE(ABORT, 'audit_tree is append-only'); END;
CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree
BEGIN SELECT RAISE(ABORT, 'audit_tree is append-only'); END;

-- Signed checkpoints (C2SP tlog-checkpoint as a signed note), one per tree size. A copy for
-- `GET /v1/audit/checkpoint` and the evidence reports; the proof of the log is the copy that was
-- published outside the database. `key_name` is NULL for an unsigned checkpoint.
CREATE TABLE audit_checkpoints (
    tree_size   INTEGER PRIMARY KEY,
    root_hash   TEXT    NOT NULL,
    note        TEXT    NOT NULL,
    key_name    TEXT,
    created_at  INTEGER NOT NULL
);
