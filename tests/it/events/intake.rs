//! Group commit at intake, below HTTP: concurrent deliveries share writes (one at a time on
//! SQLite, several at once on PostgreSQL), and every event is reported new to exactly one
//! delivery however the deliveries and their duplicates interleave.

use std::collections::HashMap;
use std::sync::Arc;

use jit_broker::clock::Clock;
use jit_broker::events::inbox::{Intake, NewEvent};
use jit_broker::store::Store;
use sqlx::Row;

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
    }
}

async fn concurrent_deliveries_store_each_event_once(db: Db) {
    let test_db = TestDb::new(db).await;
    let store = Store::connect(&base_config(&test_db).database)
        .await
        .unwrap();
    store.migrate().await.unwrap();
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
    let rows = sqlx::query("SELECT state, COUNT(*) FROM okta_events GROUP BY state ORDER BY state")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let states: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        states,
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

both_backends!(concurrent_deliveries_store_each_event_once);
