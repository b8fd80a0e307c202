//! The inbox's storage: group commit at intake, below HTTP (concurrent deliveries share writes,
//! one at a time on SQLite, several at once on PostgreSQL, and every event is reported new to
//! exactly one delivery however the deliveries and their duplicates interleave), and the purge
//! of processed and dropped events past `events.retention`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::events::inbox::{self, Intake, NewEvent};
use jit_broker::store::Store;
use jit_broker::RunOptions;
use reqwest::StatusCode;
use sqlx::Row;

use super::hooks::{deliver, delivery, events_in, group_add, hooked, settled};
use crate::helpers::*;

const UUIDS: usize = 40;

fn event(n: usize) -> NewEvent {
    NewEvent {
        uuid: format!("intake-{n}"),
        event_type: "group.user_membership.add".into(),
        published: 1_000 + n as i64,
        user_key: format!("00uintake{}", n % 7),
        // Odd events are about nothing managed: stored without a body, only for deduplication.
        body: n.is_multiple_of(2).then(|| format!("{{\"n\":{n}}}")),
        stale: None,
    }
}

/// A fresh, migrated database (kept alive by the returned `TestDb`).
async fn migrated(db: Db) -> (TestDb, Store) {
    let test_db = TestDb::new(db).await;
    let store = Store::connect(&base_config(&test_db).database)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (test_db, store)
}

async fn concurrent_deliveries_store_each_event_once(db: Db) {
    let (_db, store) = migrated(db).await;
    let intake = Arc::new(Intake::new(store.clone(), Clock::system()));

    // 64 deliveries of 3 events over 40 uuids, all in flight at once: most uuids arrive in
    // several deliveries that race each other into the same or overlapping writes.
    let mut tasks = tokio::task::JoinSet::new();
    for d in 0..64 {
        let intake = intake.clone();
        let events: Vec<NewEvent> = (0..3).map(|k| event((d * 7 + k * 13) % UUIDS)).collect();
        tasks.spawn(async move { intake.store(events).await.unwrap() });
    }
    let mut new_to: HashMap<String, usize> = HashMap::new();
    while let Some(stored) = tasks.join_next().await {
        for uuid in stored.unwrap().inserted {
            *new_to.entry(uuid).or_default() += 1;
        }
    }
    assert_eq!(new_to.len(), UUIDS, "every uuid stored");
    assert!(
        new_to.values().all(|&n| n == 1),
        "each uuid reported new to exactly one delivery: {new_to:?}"
    );
    assert_eq!(
        states(&store).await,
        vec![("dropped".to_string(), 20), ("pending".to_string(), 20)]
    );

    // The same deliveries again: all duplicates, nothing new stored.
    let again = intake.store((0..UUIDS).map(event).collect()).await.unwrap();
    assert!(again.inserted.is_empty(), "{:?}", again.inserted);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM okta_events")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, UUIDS as i64);
}

async fn states(store: &Store) -> Vec<(String, i64)> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM okta_events GROUP BY state ORDER BY state")
        .fetch_all(store.pool())
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// `inbox::purge` deletes processed and dropped events older than the cutoff, a chunk per call,
/// and nothing pending, in process or dead; a purged uuid delivered again is new.
async fn purge_deletes_only_finished_events_in_chunks(db: Db) {
    let (_db, store) = migrated(db).await;
    let intake = Intake::new(store.clone(), Clock::system());
    // 2,400 dropped events (no body) and 60 with a body, of which some are then finished.
    let dropped: Vec<NewEvent> = (0..2_400)
        .map(|n| NewEvent {
            body: None,
            ..event(1_000 + 2 * n + 1)
        })
        .collect();
    intake.store(dropped).await.unwrap();
    intake
        .store((0..60).map(|n| event(2 * n)).collect())
        .await
        .unwrap();
    for (state, range) in [("done", 0..20), ("dead", 20..30), ("processing", 30..40)] {
        for n in range {
            sqlx::query("UPDATE okta_events SET state = $1 WHERE uuid = $2")
                .bind(state)
                .bind(format!("intake-{}", 2 * n))
                .execute(store.pool())
                .await
                .unwrap();
        }
    }
    let cutoff = Clock::system().now_ms() + 1;
    // Nothing is older than a cutoff in the past.
    assert_eq!(inbox::purge(&store, 0).await.unwrap(), 0);
    let mut chunks = Vec::new();
    loop {
        let n = inbox::purge(&store, cutoff).await.unwrap();
        chunks.push(n);
        if n < inbox::PURGE_CHUNK {
            break;
        }
    }
    assert_eq!(chunks, vec![1_000, 1_000, 420], "2,400 dropped + 20 done");
    assert_eq!(
        states(&store).await,
        vec![
            ("dead".to_string(), 10),
            ("pending".to_string(), 20),
            ("processing".to_string(), 10)
        ]
    );
    // A purged uuid is no longer known: delivered again, it is new.
    let again = intake.store(vec![event(0), event(40)]).await.unwrap();
    assert!(again.inserted.contains("intake-0"), "{again:?}");
    assert!(
        !again.inserted.contains("intake-40"),
        "dead rows stay: {again:?}"
    );
}

/// `events.purge` deletes past `events.retention` (here at start-up, on a replica whose clock is
/// 31 days on): processed and dropped events go, a dead one stays.
async fn the_purge_task_deletes_past_retention(db: Db) {
    let e = hooked(db).await;
    // Processed (a drift report on a managed group) and dropped (a group nobody manages).
    let d = delivery(vec![
        group_add("ret-done", ON_CALL, CAROL, Some("00uother")),
        group_add(
            "ret-dropped",
            "00gunmanaged0000001",
            CAROL,
            Some("00uother"),
        ),
    ]);
    assert_eq!(deliver(&e, &d).await, StatusCode::NO_CONTENT);
    settled(&e).await;
    assert_eq!(events_in(&e, "done").await.len(), 1);
    assert_eq!(events_in(&e, "dropped").await.len(), 1);
    let store = e.app.store().await;
    sqlx::query(
        "INSERT INTO okta_events (uuid, event_type, published, user_key, body, state, attempts, \
           next_attempt_at, received_at) VALUES ('ret-dead', 'x', 1, 'u', '{}', 'dead', 16, 1, 1)",
    )
    .execute(store.pool())
    .await
    .unwrap();

    let later = Clock::system().now_ms() + 31 * 86_400_000;
    let replica = spawn_app_with(
        e.app.db.shared(),
        e.app.config.clone(),
        RunOptions {
            clock: Clock::tokio_at(later),
        },
    )
    .await;
    wait_until(Duration::from_secs(10), || async {
        states(&store).await == vec![("dead".to_string(), 1)]
    })
    .await;
    replica.stop().await.unwrap();
}

both_backends!(
    concurrent_deliveries_store_each_event_once,
    purge_deletes_only_finished_events_in_chunks,
    the_purge_task_deletes_past_retention,
);
