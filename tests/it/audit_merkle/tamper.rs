//! With a checkpoint taken before the tampering and kept outside the database, every attack is
//! detected and the first changed entry named, on both stores. The chain (`audit verify`
//! without a checkpoint) misses the attacks that recompute it; the checkpoint does not.

use jit_broker::audit::checkpoint;
use jit_broker::audit::proof::{check_log, Difference};
use jit_broker::store::Store;

use super::*;
use crate::helpers::*;

/// A log of 10 entries, checkpointed (signed) at 8 and kept outside; then `attack`; then the
/// log checked against the kept checkpoint.
async fn attacked<F, Fut>(db: Db, attack: F) -> Option<Difference>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (_db, store) = fresh_store(db).await;
    let (_, vk, signer) = key("jit-test");
    append_n(&store, 0, 8).await;
    let kept = take_checkpoint(&store, Some(&signer)).await;
    append_n(&store, 8, 2).await;
    let cp = checkpoint::verify(&kept, std::slice::from_ref(&vk), Some(ORIGIN), false).unwrap();
    // Before the attack: intact, and consistent with the grown log.
    let before = check_log(&store, &cp, std::slice::from_ref(&vk))
        .await
        .unwrap();
    assert!(before.ok(), "{before:?}");
    assert_eq!((before.checkpoint_size, before.current_size), (8, 10));

    drop_triggers(&store).await;
    attack(store.clone()).await;
    let after = check_log(&store, &cp, &[vk]).await.unwrap();
    after.first_difference
}

fn named(d: Option<Difference>) -> (i64, String) {
    let d = d.expect("the tampering must be detected");
    (
        d.seq.expect("the first changed entry must be named"),
        d.reason,
    )
}

async fn exec(store: &Store, sql: &[&str]) {
    for s in sql {
        sqlx::query(s).execute(store.pool()).await.unwrap();
    }
}

async fn tampering_is_detected_against_a_kept_checkpoint(db: Db) {
    // The review's attack: an entry re-attributed, chain and head recomputed. The chain says
    // intact; the tree (untouched) does not match the entry any more.
    let d = attacked(db, |s| async move {
        exec(
            &s,
            &["UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"],
        )
        .await;
        recompute_chain(&s).await;
    })
    .await;
    let (seq, reason) = named(d);
    assert_eq!(seq, 3, "{reason}");

    // An entry deleted (no renumbering).
    let d = attacked(db, |s| async move {
        exec(&s, &["DELETE FROM audit_log WHERE seq = 4"]).await;
    })
    .await;
    let (seq, reason) = named(d);
    assert_eq!(seq, 4, "{reason}");
    assert!(reason.contains("missing"), "{reason}");

    // An entry deleted and the rest renumbered, chain recomputed.
    let d = attacked(db, |s| async move {
        exec(&s, &["DELETE FROM audit_log WHERE seq = 4"]).await;
        for seq in 5..=10 {
            sqlx::query("UPDATE audit_log SET seq = $1 WHERE seq = $2")
                .bind(seq - 1)
                .bind(seq)
                .execute(s.pool())
                .await
                .unwrap();
        }
        recompute_chain(&s).await;
    })
    .await;
    assert_eq!(named(d).0, 4);

    // One inserted in the middle (the later ones renumbered), chain recomputed.
    let d = attacked(db, |s| async move {
        for seq in (5..=10).rev() {
            sqlx::query("UPDATE audit_log SET seq = $1 WHERE seq = $2")
                .bind(seq + 1)
                .bind(seq)
                .execute(s.pool())
                .await
                .unwrap();
        }
        exec(
            &s,
            &["INSERT INTO audit_log (seq, at_ms, actor, action, subject, details, prev_hash, hash) \
               SELECT 5, at_ms, 'admin', 'grant.revoked', 'grant:4', '{}', '', '' \
               FROM audit_log WHERE seq = 4"],
        )
        .await;
        recompute_chain(&s).await;
    })
    .await;
    assert_eq!(named(d).0, 5);

    // Truncated below the checkpoint, head moved back.
    let d = attacked(db, |s| async move {
        exec(&s, &["DELETE FROM audit_log WHERE seq >= 6"]).await;
        recompute_chain(&s).await;
    })
    .await;
    let (seq, reason) = named(d);
    assert_eq!(seq, 6, "{reason}");
    assert!(reason.contains("removed from the end"), "{reason}");

    // Two entries swapped (numbering kept), chain recomputed.
    let d = attacked(db, |s| async move {
        exec(
            &s,
            &[
                "UPDATE audit_log SET seq = -2 WHERE seq = 2",
                "UPDATE audit_log SET seq = 2 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = -2",
            ],
        )
        .await;
        recompute_chain(&s).await;
    })
    .await;
    assert_eq!(named(d).0, 2);
}

/// The whole tree recomputed over a rewritten history: nothing in the database disagrees with
/// anything else, only the kept root does. A root alone cannot say which entry changed; the
/// broker's own earlier signed checkpoints (their signatures cannot be forged without the key)
/// narrow it down, here to the entry itself.
async fn a_rebuilt_tree_is_detected_and_narrowed_by_signed_checkpoints(db: Db) {
    let (_db, store) = fresh_store(db).await;
    let (_, vk, signer) = key("jit-test");
    append_n(&store, 0, 2).await;
    take_checkpoint(&store, Some(&signer)).await;
    append_n(&store, 2, 1).await;
    take_checkpoint(&store, Some(&signer)).await;
    append_n(&store, 3, 5).await;
    let kept = take_checkpoint(&store, Some(&signer)).await;
    let cp = checkpoint::verify(&kept, std::slice::from_ref(&vk), Some(ORIGIN), false).unwrap();

    drop_triggers(&store).await;
    exec(
        &store,
        &["UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"],
    )
    .await;
    recompute_chain(&store).await;
    rebuild_tree(&store).await;
    // Consistent inside: the stored tree's root is the recomputed one.
    let d = check_log(&store, &cp, std::slice::from_ref(&vk))
        .await
        .unwrap()
        .first_difference
        .expect("a rebuilt tree must not match the kept checkpoint");
    assert_eq!((d.seq, d.from, d.to), (Some(3), 3, 3), "{}", d.reason);
    assert!(d.reason.contains("rebuilt"), "{}", d.reason);

    // Without the broker's checkpoint history (deleted too), still detected: the range is the
    // whole checkpointed history.
    exec(&store, &["DELETE FROM audit_checkpoints"]).await;
    let d = check_log(&store, &cp, &[vk])
        .await
        .unwrap()
        .first_difference
        .expect("detected without the history too");
    assert_eq!((d.seq, d.from, d.to), (None, 1, 8), "{}", d.reason);
}

/// The command line: `audit verify --checkpoint FILE --key PUBKEY` passes on an intact log,
/// names the entry after the review's attack, refuses a checkpoint of an unconfigured key.
async fn cli_verify_against_a_checkpoint(db: Db) {
    let (test_db, store) = fresh_store(db).await;
    let (sk, vk, signer) = key("jit-test");
    append_n(&store, 0, 6).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("checkpoint");
    std::fs::write(&file, take_checkpoint(&store, Some(&signer)).await).unwrap();
    append_n(&store, 6, 3).await;
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = broker_cmd();
        c.env("JIT_DATABASE__URL", &test_db.url);
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args).output().unwrap()
    };
    let f = file.to_str().unwrap();
    let out = run(&["audit", "verify", "--checkpoint", f, "--key", &vk], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout.contains("matches the checkpoint"), "{stdout}");
    assert!(stdout.contains("signed by jit-test"), "{stdout}");

    // Keys from the configuration: the signing key's own public key is accepted.
    let skey = secrecy::ExposeSecret::expose_secret(&sk).to_string();
    let out = run(
        &["audit", "verify", "--checkpoint", f],
        &[("JIT_AUDIT__SIGNING_KEY", &skey)],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // A key that is not configured: refused, and the log is not called intact.
    let (_, other, _) = key("jit-test");
    let out = run(
        &["audit", "verify", "--checkpoint", f, "--key", &other],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("checkpoint REFUSED"));

    // Not a checkpoint at all.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "hello\n").unwrap();
    let out = run(
        &[
            "audit",
            "verify",
            "--checkpoint",
            junk.to_str().unwrap(),
            "--key",
            &vk,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    drop_triggers(&store).await;
    exec(
        &store,
        &["UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"],
    )
    .await;
    recompute_chain(&store).await;
    let out = run(&["audit", "verify"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the chain alone misses it: {out:?}"
    );
    let out = run(&["audit", "verify", "--checkpoint", f, "--key", &vk], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout.contains("DIFFERS from the checkpoint at entry 2"),
        "{stdout}"
    );
}

both_backends!(
    tampering_is_detected_against_a_kept_checkpoint,
    a_rebuilt_tree_is_detected_and_narrowed_by_signed_checkpoints,
    cli_verify_against_a_checkpoint,
);
