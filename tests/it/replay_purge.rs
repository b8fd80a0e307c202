//! Replay-protection rows are purged after their windows: `webhook_receipts` of signed callbacks
//! a day after receipt, `slack_deliveries` twice Slack's 5-minute window after receipt. Chunked
//! (a statement deletes at most `purge::CHUNK` rows), with the time controlled, on both stores.

use jit_broker::clock::Clock;
use jit_broker::store::purge::{self, Table};
use jit_broker::store::Store;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// A fixed "now": 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600_000;

async fn migrated(db: Db) -> (TestDb, Store) {
    let test_db = TestDb::new(db).await;
    let store = Store::connect(&base_config(&test_db).database)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (test_db, store)
}

async fn count(store: &Store, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn receipt(store: &Store, id: &str, created_at: i64) {
    sqlx::query(
        "INSERT INTO webhook_receipts (source, webhook_id, state, status, body, created_at) \
         VALUES ('servicenow', $1, 'done', 200, '{}', $2)",
    )
    .bind(id)
    .bind(created_at)
    .execute(store.pool())
    .await
    .unwrap();
}

async fn slack_delivery(store: &Store, sig: &str, received_at: i64) {
    sqlx::query("INSERT INTO slack_deliveries (signature, received_at) VALUES ($1, $2)")
        .bind(sig)
        .bind(received_at)
        .execute(store.pool())
        .await
        .unwrap();
}

/// Old rows go, in chunks; rows inside the window stay.
async fn purge_table(store: &Store, t: &Table, insert_old: usize) {
    let keep = t.keep.as_millis() as i64;
    let clock = Clock::tokio_at(NOW);
    let cancel = CancellationToken::new();
    // Before the window has passed for any of them, nothing goes.
    let early = Clock::tokio_at(NOW - keep);
    assert_eq!(
        purge::round(store, &early, t, &cancel).await.unwrap(),
        (0, false)
    );
    let before = count(store, t.table).await;
    // One chunk by hand first: at most CHUNK rows.
    let n = purge::chunk(store, t, NOW - keep).await.unwrap();
    assert!(n <= purge::CHUNK, "{n}");
    let (deleted, more) = purge::round(store, &clock, t, &cancel).await.unwrap();
    assert!(!more);
    assert_eq!(n + deleted, insert_old as u64, "{}", t.table);
    assert_eq!(count(store, t.table).await, before - insert_old as i64);
    // Later, the ones that were young are old too.
    let later = Clock::tokio_at(NOW + keep + 1);
    let (deleted, _) = purge::round(store, &later, t, &cancel).await.unwrap();
    assert_eq!(deleted as i64, before - insert_old as i64);
    assert_eq!(count(store, t.table).await, 0);
}

async fn webhook_receipts_are_purged_after_a_day(db: Db) {
    let (_db, store) = migrated(db).await;
    let t = jit_broker::callbacks::RECEIPTS;
    let keep = t.keep.as_millis() as i64;
    assert_eq!(keep, 86_400_000);
    let old = 2_345;
    for i in 0..old {
        receipt(&store, &format!("old-{i}"), NOW - keep - 1 - i as i64).await;
    }
    // Inside the window (a minute short of it; the test clock runs on from NOW) and young: kept.
    receipt(&store, "inside", NOW - keep + 60_000).await;
    receipt(&store, "young", NOW - 1_000).await;
    purge_table(&store, &t, old).await;
}

async fn slack_deliveries_are_purged_after_their_window(db: Db) {
    let (_db, store) = migrated(db).await;
    let t = jit_broker::slack::verify::DELIVERIES;
    let keep = t.keep.as_millis() as i64;
    assert_eq!(keep, 600_000);
    let old = 1_500;
    for i in 0..old {
        slack_delivery(&store, &format!("v0=old{i}"), NOW - keep - 1 - i as i64).await;
    }
    slack_delivery(&store, "v0=inside", NOW - keep + 60_000).await;
    slack_delivery(&store, "v0=young", NOW).await;
    purge_table(&store, &t, old).await;
}

both_backends!(
    webhook_receipts_are_purged_after_a_day,
    slack_deliveries_are_purged_after_their_window,
);
