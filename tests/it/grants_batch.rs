//! Expiry bursts through the group commit (`grants::commit`): many grants expired at once by one
//! replica share transactions, and each grant still moves exactly once, with exactly one audit
//! entry per transition, in an intact chain; duplicates racing in the same burst (the same
//! replica and a second one) remove access once; an overlapping grant keeps its access (I5).

use std::time::Duration;

use futures::future::join_all;
use jit_broker::clock::Clock;
use jit_broker::grants::lock::AccessLock;
use jit_broker::redis_conn::RedisConn;
use jit_broker::scheduler::{ExpiryHandler, ExpiryItem, ExpiryOutcome};
use reqwest::StatusCode;
use serde_json::json;
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
    let (mut ids, users): (Vec<String>, Vec<String>) = granted_users(&e, "burst", BURST, "1h")
        .await
        .into_iter()
        .unzip();
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
    let pairs = granted_users(&e, "sched", BURST, "2s").await;
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

/// `n` new Okta users `{prefix}{i}@example.com`, each given one `prod-db-admin` grant of
/// `duration`: `(grant id, user id)` pairs.
async fn granted_users(e: &Env, prefix: &str, n: usize, duration: &str) -> Vec<(String, String)> {
    let admin = e.sim.admin("test@example.com");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let u = admin
            .create_user(
                &format!("{prefix}{i}@example.com"),
                prefix,
                &format!("U{i}"),
            )
            .unwrap();
        out.push((id(&e.grant(&u, "prod-db-admin", duration).await), u));
    }
    out
}

fn item(gid: &str) -> ExpiryItem {
    ExpiryItem {
        grant_id: gid.to_string(),
        attempt: 1,
    }
}

async fn batch_mixes_fast_and_one_at_a_time_paths(db: Db) {
    // One `expire_many` batch holding every case the fast path must hand over or settle itself,
    // run by two replicas at once over overlapping items.
    let e = env(db).await;
    let admin = e.sim.admin("test@example.com");
    let plain = granted_users(&e, "mix", 6, "1h").await;
    // Two due grants on ONE access (same user and group): the lock goes to one, the other takes
    // the one-at-a-time path after the batch; access goes once, after both.
    let bob_a = id(&e.grant(BOB, "prod-db-admin", "1h").await);
    let bob_b = id(&e.grant(BOB, "prod-db-admin", "1h").await);
    // Shared with a grant that outlives the batch (I5), and that grant itself (not due).
    let carol_short = id(&e.grant(CAROL, "prod-db-admin", "1h").await);
    let carol_long = id(&e.grant(CAROL, "prod-db-admin", "3h").await);
    // Standing access (ALICE is in engineering before any grant).
    let standing = id(&e.grant(ALICE, "engineering", "1h").await);
    // Already ended by an early revoke.
    let early = id(&e.grant(DAVE, "engineering", "1h").await);
    let (st, _) = e
        .post(&format!("/v1/grants/{early}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    // A grant whose access lock someone else holds right now.
    let u_locked = admin
        .create_user("mixlocked@example.com", "Mix", "Locked")
        .unwrap();
    let g_locked = e.grant(&u_locked, "prod-db-admin", "1h").await;
    let locked = id(&g_locked);
    let redis = RedisConn::connect(&e.app.config.redis).await.unwrap();
    let key = jit_broker::grants::model::access_key(
        &u_locked,
        jit_broker::policy::ResourceKind::OktaGroup,
        PRODADMINS,
        None,
    );
    let clock = Clock::system();
    let held = AccessLock::acquire(&redis, &key, &clock).await.unwrap();

    let mut items: Vec<ExpiryItem> = plain.iter().map(|(g, _)| item(g)).collect();
    for g in [
        &bob_a,
        &bob_b,
        &carol_short,
        &carol_long,
        &standing,
        &early,
        &locked,
    ] {
        items.push(item(g));
    }
    items.push(item("0192f0f0-0000-7000-8000-000000000000")); // no such grant
    items.push(item(&plain[0].0)); // the same grant twice in one batch
    let (r1, r2) = (
        e.replica(Duration::from_secs(2 * 3600)).await,
        e.replica(Duration::from_secs(2 * 3600)).await,
    );
    let half: Vec<ExpiryItem> = items[..5].to_vec();
    let (o1, o2, ()) = tokio::join!(r1.expire_many(&items), r2.expire_many(&half), async {
        // Let the batches reach the held lock before it is released.
        tokio::time::sleep(Duration::from_millis(300)).await;
        held.release().await;
    });
    assert_eq!(o1.len(), items.len());
    assert_eq!(o2.len(), half.len());
    for (it, o) in items.iter().zip(&o1).chain(half.iter().zip(&o2)) {
        if it.grant_id == carol_long {
            assert!(matches!(o, ExpiryOutcome::Reschedule { .. }), "{o:?}");
        } else {
            assert_eq!(*o, ExpiryOutcome::Done, "{}", it.grant_id);
        }
    }
    for (g, u) in &plain {
        assert_eq!(e.state(g).await, "revoked");
        assert!(!e.sim.is_member(PRODADMINS, u));
    }
    for g in [&bob_a, &bob_b, &carol_short, &standing, &early, &locked] {
        assert_eq!(e.state(g).await, "revoked", "{g}");
    }
    assert_eq!(e.state(&carol_long).await, "active");
    assert!(!e.sim.is_member(PRODADMINS, BOB));
    assert!(!e.sim.is_member(PRODADMINS, &u_locked));
    assert!(e.sim.is_member(PRODADMINS, CAROL), "shared access kept");
    assert!(e.sim.is_member(ENGINEERING, ALICE), "standing access kept");
    // Six plain users, BOB once for two grants, the locked one: 8 removals, none twice.
    assert_eq!(
        e.sim
            .counter("DELETE", "/api/v1/groups/{groupId}/users/{userId}"),
        8
    );
    let revoked = count(
        &e,
        "SELECT COUNT(*) FROM audit_log WHERE action = 'grant.revoked'",
        None,
    )
    .await;
    // The early revoke's own `grant.revoked`, and one per grant ended here.
    assert_eq!(revoked, 6 + 2 + 1 + 1 + 1 + 1);
    e.audit_ok().await;
}

async fn batch_okta_errors_stay_per_grant(db: Db) {
    // In one batch: a permanent Okta error for one grant (its app access became inherited), a
    // user deleted in Okta (a 404, which counts as gone), and plain grants. The failure stays
    // with its grant (`failed`, error kept) and the others are revoked in the same call.
    let e = env(db).await;
    let admin = e.sim.admin("test@example.com");
    let pairs = granted_users(&e, "err", 4, "1h").await;
    admin.delete_user(&pairs[0].1).unwrap();
    let inherited = id(&e.grant(BOB, "payroll", "1h").await);
    admin.unassign_app(PAYROLL, BOB).unwrap();
    admin.assign_app_group(PAYROLL, ENGINEERING).unwrap();

    let r = e.replica(Duration::from_secs(2 * 3600)).await;
    let mut items: Vec<ExpiryItem> = pairs.iter().map(|(g, _)| item(g)).collect();
    items.insert(2, item(&inherited));
    let out = r.expire_many(&items).await;
    for (it, o) in items.iter().zip(&out) {
        let want = if it.grant_id == inherited {
            ExpiryOutcome::Failed
        } else {
            ExpiryOutcome::Done
        };
        assert_eq!(*o, want, "{}", it.grant_id);
    }
    for (g, u) in &pairs {
        assert_eq!(e.state(g).await, "revoked");
        assert!(!e.sim.is_member(PRODADMINS, u));
    }
    let (_, got) = e.get(&format!("/v1/grants/{inherited}")).await;
    assert_eq!(got["state"], "failed");
    assert!(
        got["last_error"].as_str().unwrap().contains("group"),
        "{got}"
    );
    e.audit_ok().await;
}

both_backends!(
    burst_expiry_commits_each_grant_once,
    burst_expiry_through_the_scheduler,
    batch_mixes_fast_and_one_at_a_time_paths,
    batch_okta_errors_stay_per_grant,
);

/// A batch's locks are renewed together; losing one of them (its TTL ran out during a Redis
/// outage, and someone else may hold it now) must not stop the renewal of the others, whose
/// grants are still mid-revocation under them (I5).
#[tokio::test]
async fn losing_one_batch_lock_keeps_renewing_the_others() {
    let mut config = jit_broker::Config::load_with_env(None, Vec::new())
        .unwrap()
        .redis;
    config.url = redis_url();
    config.key_prefix = unique_prefix();
    let redis = RedisConn::connect(&config).await.unwrap();
    let (lock, taken) = AccessLock::try_acquire_many(&redis, &["lost", "kept"])
        .await
        .unwrap();
    assert_eq!(taken, [true, true]);
    let (lost, kept) = (redis.key("lock:access:lost"), redis.key("lock:access:kept"));
    let mut c = redis.conn();
    let _: () = redis::cmd("DEL")
        .arg(&lost)
        .query_async(&mut c)
        .await
        .unwrap();
    // Far beyond the lock TTL, so a renewal shows as the TTL coming back down to it.
    let _: () = redis::cmd("PEXPIRE")
        .arg(&kept)
        .arg(600_000)
        .query_async(&mut c)
        .await
        .unwrap();
    // Far beyond the lock TTL, so each renewal shows as the TTL coming back down to it. The
    // first renewal after the loss is the one that notices it; the second must still come.
    let ttl_ms = jit_broker::grants::lock::LOCK_TTL.as_millis() as i64;
    let renewed = || async {
        let mut c = redis.conn();
        let _: () = redis::cmd("PEXPIRE")
            .arg(&kept)
            .arg(600_000)
            .query_async(&mut c)
            .await
            .unwrap();
        wait_until(Duration::from_secs(15), || {
            let (kept, mut c) = (kept.clone(), redis.conn());
            async move {
                let pttl: i64 = redis::cmd("PTTL")
                    .arg(&kept)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                pttl > 0 && pttl <= ttl_ms
            }
        })
        .await;
    };
    lock.hold(async {
        renewed().await;
        renewed().await;
    })
    .await;
    lock.release().await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&kept)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(exists, 0, "the kept lock is released with the batch");
}
