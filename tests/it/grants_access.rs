//! The grants service as the one path for access no grant explains, and for restoring a grant's
//! access: the drift reaction, the sync and the access reviews all remove through
//! `GrantService::remove_unexplained`, which re-checks under the access lock. Each test makes a
//! grant appear after its detector has read (the finding, the sync's listing, the reviewer's
//! snapshot and decision) and before the removal takes the lock, through the `test-hooks`
//! pause: the access must stay.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::drift::{Detection, DriftReactor, Finding, Outcome};
use jit_broker::grants::{AuditNote, GrantService, Restored};
use jit_broker::redis_conn::RedisConn;
use jit_broker::reviews::ReviewService;
use jit_broker::scheduler::{ExpiryHandler, ExpiryIndex, ExpiryOutcome};
use jit_broker::sync::Syncer;
use serde_json::{json, Value};

use crate::helpers::*;

/// Makes `svc` create, through the app's API, an active grant of `resource` (Okta object
/// `object`) for the user of each access key on that object before its removal takes the lock
/// (once per key). Returns the grants made: (user id, grant).
fn grant_before_lock(
    svc: &GrantService,
    e: &Env,
    resource: &str,
    object: &str,
) -> Arc<Mutex<Vec<(String, Value)>>> {
    let made = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let (http, base, resource) = (e.app.http.clone(), e.app.base.clone(), resource.to_string());
    let object = format!(":{object}");
    let out = made.clone();
    svc.set_before_access_lock(Arc::new(move |key: String| {
        let (http, base, resource, out, seen) = (
            http.clone(),
            base.clone(),
            resource.clone(),
            out.clone(),
            seen.clone(),
        );
        let ours = key.contains(&object);
        Box::pin(async move {
            if !ours || !seen.lock().unwrap().insert(key.clone()) {
                return;
            }
            // The key is `user:kind:object[:resource set]`.
            let user = key.split(':').next().unwrap().to_string();
            let g = create_active_grant(&http, &base, &user, &resource, "1h", "raced").await;
            out.lock().unwrap().push((user, g));
        })
    }));
    made
}

async fn audit_actions(e: &Env) -> Vec<Value> {
    let (_, a) = e.get("/v1/audit?limit=1000").await;
    a["entries"].as_array().unwrap().clone()
}

fn count(entries: &[Value], action: &str) -> usize {
    entries.iter().filter(|x| x["action"] == action).count()
}

/// An event hook's finding (read: someone added bob by hand), then a grant for bob before the
/// drift reaction's removal: explained under the lock, bob keeps the access.
async fn drift_rechecks_under_the_lock(db: Db) {
    let e = env_with_policy(db, DRIFT_POLICY).await;
    e.sim
        .admin("admin@example.com")
        .add_member(PROD_ADMINS, BOB)
        .unwrap();
    let svc = grants_service(&e.app, Clock::system(), |_| {}).await;
    let made = grant_before_lock(&svc, &e, "prod-db-admin", PROD_ADMINS);
    let f = Finding {
        resource: "prod-db-admin".into(),
        user_id: BOB.into(),
        user_login: None,
        detected: Detection::Event {
            uuid: "raced-event".into(),
        },
        actor: None,
        changed_at: None,
    };
    let o = DriftReactor::new(svc).react(&f).await.unwrap();
    let g = made.lock().unwrap()[0].1.clone();
    assert_eq!(o, Outcome::Explained { grant_id: id(&g) });
    assert!(
        e.sim.is_member(PROD_ADMINS, BOB),
        "the new grant's access stays"
    );
    assert_eq!(e.state(&id(&g)).await, "active");
    assert_eq!(count(&audit_actions(&e).await, "drift.reverted"), 0);
    e.audit_ok().await;
}

/// The sync lists dave (unexplained) and alice (what her expired grant left behind); grants for
/// both appear before each removal: neither is removed, by the drift path or the sync's own.
async fn sync_rechecks_under_the_lock(db: Db) {
    let e = env_with_policy(db, SYNC_POLICY).await;
    let admin = e.sim.admin("it-admin@example.com");
    // Alice's grant expired and its removal was lost: the access is back before any sync.
    let old = e.grant("alice@example.com", "prod-db-admin", "1h").await;
    let ahead = Duration::from_secs(2 * 3600);
    let late = Env::replica_of(&e.app, ahead).await;
    assert_eq!(late.expire(&id(&old), 1).await, ExpiryOutcome::Done);
    admin.add_member(PROD_ADMINS, ALICE).unwrap();
    admin.add_member(PROD_ADMINS, DAVE).unwrap();

    let svc = grants_service(&e.app, clock_ahead(ahead + Duration::from_secs(60)), |_| {}).await;
    let made = grant_before_lock(&svc, &e, "prod-db-admin", PROD_ADMINS);
    let r = Syncer::new(svc, e.app.config.sync.clone())
        .run(Default::default())
        .await
        .unwrap();
    let outcome = |kind: &str, user: &str| {
        let f = r
            .report
            .iter()
            .find(|f| f.finding == kind && f.user_id == user)
            .unwrap_or_else(|| panic!("no {kind} finding for {user}: {:#?}", r.report));
        f.outcome.clone().unwrap_or_default()
    };
    assert_eq!(outcome("unexplained", DAVE), "skipped: explained");
    assert_eq!(
        outcome("ended_grant_present", ALICE),
        "skipped: a grant explains the access now"
    );
    assert_eq!(made.lock().unwrap().len(), 2);
    assert!(e.sim.is_member(PROD_ADMINS, DAVE));
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    let audit = audit_actions(&e).await;
    assert_eq!(count(&audit, "drift.reverted"), 0);
    assert_eq!(count(&audit, "sync.access_removed"), 0);
    e.audit_ok().await;
}

/// A reviewer revokes bob's unexplained db-owners membership; a grant of db-owners for bob is
/// made before the remediation removes it: the access stays and the item is flagged for a person
/// (it used to be removed: the review's removal skipped the re-check).
async fn review_rechecks_under_the_lock(db: Db) {
    let e = crate::reviews::env(db).await;
    let (s, c) = e
        .post(
            "/v1/reviews",
            json!({
                "name": "raced review",
                "resources": ["db-owners"],
                "reviewer": { "rule": "approvers" },
                "fallback": "dave@example.com",
                "due_at": crate::reviews::due_in(Duration::from_secs(3600)),
                "default": "keep",
            }),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{c}");
    let cid = c["id"].as_str().unwrap().to_string();
    let (_, items) = e.get(&format!("/v1/reviews/{cid}/items")).await;
    let bob = crate::reviews::item_no(&items, BOB, "db-owners");
    let (s, d) = e
        .post_as(
            "carol@example.com",
            &format!("/v1/reviews/{cid}/items/{bob}/decide"),
            json!({"decision": "revoke", "comment": "not needed"}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "{d}");

    let svc = grants_service(&e.app, clock_ahead(Duration::from_secs(2 * 3600)), |_| {}).await;
    let made = grant_before_lock(&svc, &e, "db-owners", DB_OWNERS);
    let closed = ReviewService::new(svc).check_once().await.unwrap();
    assert_eq!(closed, vec![cid.clone()]);
    let g = made.lock().unwrap()[0].1.clone();
    assert!(
        e.sim.is_member(DB_OWNERS, BOB),
        "the new grant's access stays"
    );
    assert_eq!(e.state(&id(&g)).await, "active");
    let (_, r) = e
        .get(&format!("/v1/reviews/{cid}/report?format=json"))
        .await;
    let it = crate::reviews::item(&r, BOB, "db-owners");
    assert_eq!(it["remediation"], "flagged", "{it}");
    assert!(
        it["remediation_detail"].as_str().unwrap().contains(&id(&g)),
        "{it}"
    );
    assert_eq!(count(&audit_actions(&e).await, "review.access_removed"), 0);
    e.audit_ok().await;
}

/// Without a grant in the way, the review's removal goes through the grants service: removed
/// and audited by it (`review.access_removed` with the Okta change).
async fn review_removal_is_audited_by_the_grants_service(db: Db) {
    let e = crate::reviews::env(db).await;
    let (s, c) = e
        .post(
            "/v1/reviews",
            json!({
                "name": "plain review",
                "resources": ["db-owners"],
                "reviewer": { "rule": "approvers" },
                "fallback": "dave@example.com",
                "due_at": crate::reviews::due_in(Duration::from_secs(3600)),
                "default": "keep",
            }),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{c}");
    let cid = c["id"].as_str().unwrap().to_string();
    let (_, items) = e.get(&format!("/v1/reviews/{cid}/items")).await;
    let bob = crate::reviews::item_no(&items, BOB, "db-owners");
    e.post_as(
        "carol@example.com",
        &format!("/v1/reviews/{cid}/items/{bob}/decide"),
        json!({"decision": "revoke", "comment": "not needed"}),
    )
    .await;
    let late = crate::reviews::reviews_at(&e, Duration::from_secs(2 * 3600)).await;
    assert_eq!(late.check_once().await.unwrap(), vec![cid.clone()]);
    assert!(!e.sim.is_member(DB_OWNERS, BOB));
    let audit = audit_actions(&e).await;
    let removed: Vec<_> = audit
        .iter()
        .filter(|x| x["action"] == "review.access_removed")
        .collect();
    assert_eq!(removed.len(), 1, "{audit:#?}");
    assert_eq!(removed[0]["details"]["okta_change"], "removed");
    assert_eq!(removed[0]["details"]["user_id"], BOB);
    assert_eq!(removed[0]["subject"], format!("review:{cid}"));
    e.audit_ok().await;
}

/// The sync's restore goes through the grants service: re-added, audited once (with the Okta
/// change the grants service records), and scheduled in the expiry index at the grant's expiry
/// even when its entry was lost. Expired or role grants are not restored.
async fn sync_restore_goes_through_the_grants_service(db: Db) {
    let e = env_with_policy(db, SYNC_POLICY).await;
    let g = e.grant("alice@example.com", "payroll", "1h").await;
    let gid = id(&g);
    e.sim
        .admin("it-admin@example.com")
        .unassign_app(PAYROLL, ALICE)
        .unwrap();
    // The grant's index entry is gone too (a Redis failover without persistence).
    let redis = RedisConn::connect(&e.app.config.redis).await.unwrap();
    let index = ExpiryIndex::new(redis.clone());
    index.unschedule(&gid).await.unwrap();
    let score = || {
        let (redis, key, gid) = (redis.clone(), index.index_key(), gid.clone());
        async move {
            let s: Option<f64> = redis::cmd("ZSCORE")
                .arg(key)
                .arg(gid)
                .query_async(&mut redis.conn())
                .await
                .unwrap();
            s.map(|s| s as i64)
        }
    };
    assert_eq!(score().await, None);

    let svc = grants_service(&e.app, Clock::system(), |_| {}).await;
    let r = Syncer::new(svc.clone(), e.app.config.sync.clone())
        .run(Default::default())
        .await
        .unwrap();
    let f = r
        .report
        .iter()
        .find(|f| f.finding == "grant_missing" && f.user_id == ALICE)
        .unwrap();
    assert_eq!(f.outcome.as_deref(), Some("restored"));
    assert_eq!(
        e.sim.app_assignment_scope(PAYROLL, ALICE).as_deref(),
        Some("USER")
    );
    assert_eq!(score().await, Some(g["expires_at"].as_i64().unwrap()));
    let audit = audit_actions(&e).await;
    let restored: Vec<_> = audit
        .iter()
        .filter(|x| x["action"] == "sync.access_restored")
        .collect();
    assert_eq!(restored.len(), 1, "{audit:#?}");
    assert_eq!(restored[0]["subject"], format!("grant:{gid}"));
    assert_eq!(restored[0]["details"]["run_id"], r.id.as_str());
    assert_eq!(restored[0]["details"]["okta_change"], "restored");
    assert_eq!(e.state(&gid).await, "active");

    // Past its expiry (a replica whose clock is ahead): never re-added, nothing written.
    e.sim
        .admin("it-admin@example.com")
        .unassign_app(PAYROLL, ALICE)
        .unwrap();
    let note = AuditNote {
        actor: "system:test".into(),
        action: "test.restored".into(),
        subject: format!("grant:{gid}"),
        details: json!({}),
    };
    let late = Env::replica_of(&e.app, Duration::from_secs(2 * 3600)).await;
    assert_eq!(
        late.restore(&gid, &note).await.unwrap(),
        Restored::NotActive
    );
    assert!(e.sim.app_assignment_scope(PAYROLL, ALICE).is_none());
    // A role grant is never restored (its assignment id would change).
    let role = e.grant("carol@example.com", "user-admin", "30m").await;
    assert_eq!(
        svc.restore(&id(&role), &note).await.unwrap(),
        Restored::RoleNotRestored
    );
    assert_eq!(count(&audit_actions(&e).await, "test.restored"), 0);
    e.audit_ok().await;
}

both_backends!(
    drift_rechecks_under_the_lock,
    sync_rechecks_under_the_lock,
    review_rechecks_under_the_lock,
    review_removal_is_audited_by_the_grants_service,
    sync_restore_goes_through_the_grants_service,
);
