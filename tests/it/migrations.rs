//! A database that was never migrated (issue 22): every command that reads it, and `serve` with
//! `database.migrate_on_start = false`, says so and names `jit-broker migrate`, instead of the
//! first query's raw "no such table" / "relation does not exist" twice over.

use std::time::Duration;

use jit_broker::store::Store;
use jit_broker::RunOptions;

use crate::helpers::*;

fn run(db: &TestDb, args: &[&str]) -> (Option<i32>, String, String) {
    let out = broker_cmd()
        .env("JIT_DATABASE__URL", &db.url)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn assert_migrate_hint(what: &str, (code, out, err): &(Option<i32>, String, String)) {
    assert_eq!(*code, Some(2), "{what}: {out} {err}");
    assert!(err.contains("not migrated"), "{what}: {err}");
    assert!(err.contains("jit-broker migrate"), "{what}: {err}");
    for raw in ["no such table", "does not exist", "database query failed"] {
        assert!(!err.contains(raw), "{what}: raw SQL error shown: {err}");
    }
}

async fn never_migrated_database_names_the_fix(kind: Db) {
    let db = TestDb::new(kind).await;
    if kind == Db::Sqlite {
        // No file yet: not created by a command that only reads.
        let r = tokio::task::block_in_place(|| run(&db, &["grants", "list"]));
        assert_migrate_hint("missing SQLite file", &r);
        let path = db.url.trim_start_matches("sqlite://");
        assert!(!std::path::Path::new(path).exists(), "created {path}");
    }
    // The database exists (the file created by connecting) but has no tables.
    let mut config = base_config(&db);
    let store = Store::connect(&config.database).await.unwrap();
    store.close().await;
    for args in [
        &["grants", "list"][..],
        &["requests", "list"][..],
        &["audit", "verify"][..],
    ] {
        let r = tokio::task::block_in_place(|| run(&db, args));
        assert_migrate_hint(&args.join(" "), &r);
    }
    // `serve` without migrate_on_start refuses to start, naming the fix.
    config.database.migrate_on_start = false;
    let (_addr, _tx, handle) = start_broker(config, RunOptions::default()).await;
    let err = tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("jit-broker migrate"), "{err}");

    // After `migrate` the same command works.
    let (code, _, err) = tokio::task::block_in_place(|| run(&db, &["migrate"]));
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = tokio::task::block_in_place(|| run(&db, &["grants", "list"]));
    assert_eq!(code, Some(0), "{err}");
}

both_backends!(never_migrated_database_names_the_fix);
