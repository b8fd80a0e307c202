//! Expiry bursts through the group commit (`grants::commit`): many grants expired at once by one
//! replica share transactions, and each grant still moves exactly once, with exactly one audit
//! entry per transition, in an intact chain; duplicates racing in the same burst (the same
//! replica and a second one) remove access once; an overlapping grant keeps its access (I5).

use std::time::Duration;

use futures::future::join_all;
use jit_broker::scheduler::{ExpiryHandler, ExpiryOutcome};
use sqlx::Row;

use crate::grants::*;
use crate::helpers::*;

const BURST: usize = 24;

async fn count(e: &Env, sql: &str, subject: Option<&str>) -> i64 {
    let store = e.app.store().await;
    let q = sqlx::query(sql);
    let q = match subject {
        Some(s) => q.bind(s.to_string()),
        None => q,
    };
    q.fetch_one(store.pool()).await.unwrap().get::<i64, _>(0)
}

async fn burst_expiry_commits_each_grant_once(db: Db) {
    let e = env(db).await;
    let admin = e.sim.admin("test@example.com");
    let mut users = Vec::new();
    for i in 0..BURST {
        users.push(
            admin
                .create_user(&format!("burst{i}@example.com"), "Burst", &format!("U{i}"))
                .unwrap(),
        );
    }
    let mut ids = Vec::new();
    for u in &users {
        ids.push(id(&e.grant(u, "prod-db-admin", "1h").await));
    }
    // ALICE: one grant that expires in the burst, one that outlives it (shared access, I5).
    let alice_short = id(&e.grant(ALICE, "prod-db-admin", "1h").await);
    let alice_long = id(&e.grant(ALICE, "prod-db-admin", "3h").await);
    ids.push(alice_short.clone());

    let (r1, r2) = (
        e.replica(Duration::from_secs(2 * 3600)).await,
        e.replica(Duration::from_secs(2 * 3600)).await,
    );
    // Every due grant at once on one replica, the first few twice more (same replica, and a
    // second replica racing it), and the long grant, which is not due.
    let mut calls = Vec::new();
    for gid in &ids {
        calls.push((&r1, gid.clone()));
    }
    for gid in ids.iter().take(4) {
        calls.push((&r1, gid.clone()));
        calls.push((&r2, gid.clone()));
    }
    calls.push((&r1, alice_long.clone()));
    let outcomes = join_all(
        calls
            .iter()
            .map(|(r, gid)| async move { (gid.clone(), r.expire(gid, 1).await) }),
    )
    .await;
    for (gid, o) in &outcomes {
        if *gid == alice_long {
            assert!(matches!(o, ExpiryOutcome::Reschedule { .. }), "{o:?}");
        } else {
            assert_eq!(*o, ExpiryOutcome::Done, "{gid}");
        }
    }

    for (gid, u) in ids.iter().zip(&users) {
        assert_eq!(e.state(gid).await, "revoked");
        assert!(!e.sim.is_member(PRODADMINS, u), "{u} still a member");
    }
    assert_eq!(e.state(&alice_short).await, "revoked");
    assert_eq!(e.state(&alice_long).await, "active");
    assert!(e.sim.is_member(PRODADMINS, ALICE), "shared access kept");
    assert_eq!(
        e.sim
            .counter("DELETE", "/api/v1/groups/{groupId}/users/{userId}"),
        BURST as u64,
        "one removal per user, none for the shared access"
    );

    e.audit_ok().await;
    for gid in &ids {
        let subject = format!("grant:{gid}");
        for action in ["grant.revoking", "grant.revoked"] {
            let n = count(
                &e,
                &format!(
                    "SELECT COUNT(*) FROM audit_log WHERE action = '{action}' AND subject = $1"
                ),
                Some(&subject),
            )
            .await;
            assert_eq!(n, 1, "{action} for {gid}");
        }
    }
    let total = count(
        &e,
        "SELECT COUNT(*) FROM audit_log WHERE action IN ('grant.revoking', 'grant.revoked')",
        None,
    )
    .await;
    assert_eq!(total, 2 * ids.len() as i64);
}

async fn burst_expiry_through_the_scheduler(db: Db) {
    // The real worker: many grants due within the same second, expired by the app's own
    // scheduler (claims run concurrently, so their commits are grouped).
    let e = env(db).await;
    let admin = e.sim.admin("test@example.com");
    let mut pairs = Vec::new();
    for i in 0..BURST {
        let u = admin
            .create_user(&format!("sched{i}@example.com"), "Sched", &format!("U{i}"))
            .unwrap();
        let g = e.grant(&u, "prod-db-admin", "2s").await;
        pairs.push((id(&g), u));
    }
    wait_until(Duration::from_secs(30), || async {
        let mut all = true;
        for (gid, _) in &pairs {
            all &= e.state(gid).await == "revoked";
        }
        all
    })
    .await;
    for (_, u) in &pairs {
        assert!(!e.sim.is_member(PRODADMINS, u));
    }
    e.audit_ok().await;
    let revoked = count(
        &e,
        "SELECT COUNT(*) FROM audit_log WHERE action = 'grant.revoked'",
        None,
    )
    .await;
    assert_eq!(revoked, BURST as i64);
}

both_backends!(
    burst_expiry_commits_each_grant_once,
    burst_expiry_through_the_scheduler,
);
