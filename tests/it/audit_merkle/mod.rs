//! The audit log's Merkle tree and signed checkpoints (docs/audit.md): tampering detected
//! against a checkpoint kept outside the database, keys and rotation, proofs over HTTP and
//! offline, publication to the outbox and witnesses, the command line.

mod publish;
mod tamper;

use jit_broker::audit::checkpoint::{self, Signer};
use jit_broker::audit::{self, NewEntry, GENESIS_HASH};
use jit_broker::clock::Clock;
use jit_broker::store::{Backend, Store};
use secrecy::SecretString;
use serde_json::json;
use sqlx::Row;

/// The default `audit.origin`.
pub const ORIGIN: &str = "jit-broker/audit";

pub fn key(name: &str) -> (SecretString, String, Signer) {
    let (sk, vk) = checkpoint::generate_key(name).unwrap();
    let signer = Signer::parse(&sk).unwrap();
    (sk, vk, signer)
}

pub async fn append_n(store: &Store, from: usize, n: usize) {
    let clock = Clock::system();
    for i in from..from + n {
        audit::append_now(
            store,
            &clock,
            NewEntry::new(
                format!("tester-{}", i % 3),
                "grant.activated",
                format!("grant:{i}"),
                json!({"i": i, "reason": "on-call \"sev1\"\nline two ✓"}),
            ),
        )
        .await
        .unwrap();
    }
}

/// Takes and stores a checkpoint as the broker's task does; returns its note (what an auditor
/// keeps outside the database).
pub async fn take_checkpoint(store: &Store, signer: Option<&Signer>) -> String {
    let c = checkpoint::prepare(store, &Clock::system(), ORIGIN, signer)
        .await
        .unwrap()
        .expect("the log grew, so there is a new checkpoint");
    let mut tx = store.begin().await.unwrap();
    assert!(checkpoint::store_in(&mut tx, &c).await.unwrap());
    tx.commit().await.unwrap();
    c.note
}

/// What an attacker with database access does first: drop every append-only trigger.
pub async fn drop_triggers(store: &Store) {
    let stmts: &[&str] = match store.backend() {
        Backend::Sqlite => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
            "DROP TRIGGER audit_tree_no_update",
            "DROP TRIGGER audit_tree_no_delete",
        ],
        Backend::Postgres => &[
            "DROP TRIGGER audit_log_no_change ON audit_log",
            "DROP TRIGGER audit_tree_no_change ON audit_tree",
        ],
    };
    for s in stmts {
        sqlx::query(s).execute(store.pool()).await.unwrap();
    }
}

/// Recomputes every `prev_hash`/`hash` and the head from the rows as they now are: the chain
/// then verifies (the review's attack).
pub async fn recompute_chain(store: &Store) {
    let rows = sqlx::query(
        "SELECT seq, at_ms, actor, action, subject, details FROM audit_log ORDER BY seq",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut prev = GENESIS_HASH.to_string();
    let mut last = 0_i64;
    for r in rows {
        let seq: i64 = r.get(0);
        let (at_ms, actor, action, subject, details): (i64, String, String, String, String) =
            (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        let c = audit::canonical(seq, at_ms, &actor, &action, &subject, &details);
        let h = audit::entry_hash(&prev, &c);
        sqlx::query("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(&prev)
            .bind(&h)
            .bind(seq)
            .execute(store.pool())
            .await
            .unwrap();
        prev = h;
        last = seq;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(last)
        .bind(&prev)
        .execute(store.pool())
        .await
        .unwrap();
    assert!(
        audit::verify(store).await.unwrap().ok(),
        "the chain was recomputed"
    );
}

/// Throws the stored tree away and rebuilds it from the rows as they now are, with the broker's
/// own code: nothing in the database disagrees with anything else any more.
pub async fn rebuild_tree(store: &Store) {
    sqlx::query("DELETE FROM audit_tree")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE audit_head SET tree_size = 0, tree_frontier = '' WHERE id = 1")
        .execute(store.pool())
        .await
        .unwrap();
    audit::merkle::catch_up(store).await.unwrap();
}
