//! Sync reconcile: drift found only by the sync (no event hook registered) and what it does.

use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::scheduler::{ExpiryHandler, ExpiryOutcome};
use jit_broker::sync::SyncOptions;
use reqwest::StatusCode;
use serde_json::json;

use super::*;

async fn hand_added_member_enforced_or_reported(db: Db) {
    let e = env(db).await;
    let s = syncer(&e).await;
    e.sim
        .admin("it-admin@example.com")
        .add_member(PROD_ADMINS, DAVE)
        .unwrap();
    let r = sync(&s).await;
    assert_eq!(r.outcome, "succeeded");
    assert_eq!(r.mode, "full");
    // prod-db-admin enforces: dave is removed; db-owners reports: bob stays.
    let f = finding(&r, "unexplained", DAVE);
    assert_eq!(
        (f.action.as_str(), f.outcome.as_deref()),
        ("remove", Some("removed"))
    );
    assert!(!e.sim.is_member(PROD_ADMINS, DAVE));
    let f = finding(&r, "unexplained", BOB);
    assert_eq!(
        (f.resource.as_str(), f.outcome.as_deref()),
        ("db-owners", Some("reported"))
    );
    assert!(e.sim.is_member(DB_OWNERS, BOB));
    assert_eq!(r.counts.changed, 1);
    assert!(r.okta_calls.read.values().sum::<u64>() > 0);
    assert_eq!(r.okta_calls.revoke.get("groups"), Some(&1));
    // Both went through the drift reaction shared with the event hooks, audited with the run.
    let audit = audit_actions(&e).await;
    let reverted: Vec<_> = audit
        .iter()
        .filter(|a| a["action"] == "drift.reverted")
        .collect();
    assert_eq!(reverted.len(), 1);
    assert_eq!(reverted[0]["details"]["user_id"], DAVE);
    assert_eq!(
        reverted[0]["details"]["detected"]["sync_run_id"],
        r.id.as_str()
    );
    let reported: Vec<_> = audit
        .iter()
        .filter(|a| a["action"] == "drift.detected")
        .collect();
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0]["details"]["user_id"], BOB);

    // The run is listed and shown with its report.
    let (st, page) = e.get("/v1/sync/runs").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(page["runs"][0]["id"], r.id.as_str());
    assert_eq!(page["runs"][0]["report"], json!([]));
    let (st, one) = e.get(&format!("/v1/sync/runs/{}", r.id)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(one["report"].as_array().unwrap().len(), r.report.len());

    // The inventory says who holds db-owners and why; bob's view lists it.
    let (st, res) = e.get("/v1/inventory/resources/db-owners").await;
    assert_eq!(st, StatusCode::OK, "{res}");
    assert_eq!(res["holders"][0]["user_id"], BOB);
    assert_eq!(res["holders"][0]["login"], "bob@example.com");
    assert_eq!(res["holders"][0]["why"], "unexplained");
    let (st, u) = e.get("/v1/inventory/users/bob@example.com").await;
    assert_eq!(st, StatusCode::OK, "{u}");
    assert_eq!(u["user"]["user_id"], BOB);
    let g = &u["groups"].as_array().unwrap()[0];
    assert_eq!(
        (g["resource"].as_str(), g["name"].as_str()),
        (Some("db-owners"), Some("db-owners"))
    );
    let (_, res) = e.get("/v1/inventory/resources/prod-db-admin").await;
    assert_eq!(res["holders"], json!([]));

    // A granted member is explained by the grant and left alone.
    let gr = e.grant("alice@example.com", "prod-db-admin", "1h").await;
    let r2 = sync(&s).await;
    assert!(
        r2.report.iter().all(|f| f.user_id != ALICE),
        "{:#?}",
        r2.report
    );
    let (_, res) = e.get("/v1/inventory/resources/prod-db-admin").await;
    assert_eq!(res["holders"][0]["why"], "grant");
    assert_eq!(res["holders"][0]["grant_id"], id(&gr).as_str());
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    e.audit_ok().await;
}

async fn expired_grant_whose_removal_was_lost_is_removed(db: Db) {
    let e = env(db).await;
    let s = syncer(&e).await;
    sync(&s).await;
    let g = e.grant("alice@example.com", "prod-db-admin", "1h").await;
    let late = e.replica(Duration::from_secs(2 * 3600)).await;
    assert_eq!(late.expire(&id(&g), 1).await, ExpiryOutcome::Done);
    // The removal is lost: the membership is back before any sync saw it gone.
    e.sim
        .admin("it-admin@example.com")
        .add_member(PROD_ADMINS, ALICE)
        .unwrap();
    // The next sync runs on a replica whose clock is as far ahead as the one that expired it.
    let ahead = Clock::tokio_at(chrono::Utc::now().timestamp_millis() + 2 * 3600 * 1000 + 60_000);
    let s = syncer_at(&e, ahead, |_| {}).await;
    let r = sync(&s).await;
    let f = finding(&r, "ended_grant_present", ALICE);
    assert_eq!(f.grant_id.as_deref(), Some(id(&g).as_str()));
    assert_eq!(f.outcome.as_deref(), Some("removed"));
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
    // Nothing re-adds it: the next sync has nothing to do.
    let r = sync(&s).await;
    assert!(
        r.report.iter().all(|f| f.user_id != ALICE),
        "{:#?}",
        r.report
    );
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));
    assert_eq!(e.state(&id(&g)).await, "revoked");
}

async fn active_grant_removed_by_hand_is_ended_or_restored(db: Db) {
    let e = env(db).await;
    let s = syncer(&e).await;
    let group = e.grant("alice@example.com", "prod-db-admin", "1h").await;
    let app = e.grant("alice@example.com", "payroll", "1h").await;
    let admin = e.sim.admin("it-admin@example.com");
    admin.remove_member(PROD_ADMINS, ALICE).unwrap();
    admin.unassign_app(PAYROLL, ALICE).unwrap();
    let r = sync(&s).await;
    // prod-db-admin: on_external_removal = "end".
    let f = finding(&r, "grant_missing", ALICE);
    assert_eq!(f.resource, "prod-db-admin");
    assert_eq!(f.action, "end_grant");
    assert_eq!(f.outcome.as_deref(), Some("ended"));
    assert_eq!(e.state(&id(&group)).await, "removed_externally");
    // payroll: on_external_removal = "restore", and the grant is still live.
    let f = r.report.iter().find(|f| f.resource == "payroll").unwrap();
    assert_eq!(
        (f.action.as_str(), f.outcome.as_deref()),
        ("restore", Some("restored"))
    );
    assert_eq!(
        e.sim.app_assignment_scope(PAYROLL, ALICE).as_deref(),
        Some("USER")
    );
    assert_eq!(e.state(&id(&app)).await, "active");
    let audit = audit_actions(&e).await;
    let ended = audit
        .iter()
        .find(|a| a["action"] == "grant.removed_externally")
        .unwrap();
    assert_eq!(ended["details"]["detected"]["sync_run_id"], r.id.as_str());
    let restored = audit
        .iter()
        .find(|a| a["action"] == "sync.access_restored")
        .unwrap();
    assert_eq!(restored["details"]["run_id"], r.id.as_str());
    e.audit_ok().await;
}

async fn read_only_token_warns_and_changes_nothing(db: Db) {
    let e = env(db).await;
    let s = syncer_with(&e, |c| {
        c.okta.api_token = Some(secrecy::SecretString::from("sim-read-only-token"))
    })
    .await;
    e.sim
        .admin("it-admin@example.com")
        .add_member(PROD_ADMINS, DAVE)
        .unwrap();
    let before = audit_actions(&e).await.len();
    let r = sync(&s).await;
    assert_eq!(r.outcome, "succeeded");
    assert!(!r.warnings.is_empty(), "{r:#?}");
    let f = finding(&r, "unexplained", DAVE);
    assert_ne!(f.outcome.as_deref(), Some("removed"));
    assert!(e.sim.is_member(PROD_ADMINS, DAVE));
    assert_eq!(r.counts.changed, 0);
    // Only reports were written (db-owners' bob); nothing was removed or ended.
    let audit = audit_actions(&e).await;
    assert!(
        audit[before..]
            .iter()
            .all(|a| a["action"] == "drift.detected"),
        "{:#?}",
        &audit[before..]
    );
}

async fn sync_during_expiry_takes_no_revocation_slot(db: Db) {
    let e = env(db).await;
    let s = syncer(&e).await;
    let mut ids = Vec::new();
    for u in ["alice@example.com", "bob@example.com", "carol@example.com"] {
        ids.push(id(&e.grant(u, "payroll", "1h").await));
    }
    let late = e.replica(Duration::from_secs(2 * 3600)).await;
    let expiring = async {
        let mut out = Vec::new();
        for i in &ids {
            out.push(late.expire(i, 1).await);
        }
        out
    };
    let (outcomes, r) = tokio::join!(expiring, s.run(SyncOptions::default()));
    assert!(outcomes.iter().all(|o| *o == ExpiryOutcome::Done));
    let r = r.unwrap();
    // Every call the sync made was a read: it took no revocation (or grant) slot.
    assert!(r.okta_calls.revoke.is_empty(), "{:?}", r.okta_calls);
    assert!(r.okta_calls.grant.is_empty(), "{:?}", r.okta_calls);
    for i in &ids {
        assert_eq!(e.state(i).await, "revoked");
    }
}

/// Admin roles given by hand to people the broker never granted anything are found through
/// Okta's list of role holders, followed over several pages (page size 1 here).
async fn hand_given_admin_roles_are_found(db: Db) {
    let e = env(db).await;
    let admin = e.sim.admin("it-admin@example.com");
    admin.assign_role(CAROL, "USER_ADMIN").unwrap();
    admin.assign_role(DAVE, "USER_ADMIN").unwrap();
    admin.assign_role(BOB, "HELP_DESK_ADMIN").unwrap();
    let s = syncer_with(&e, |c| c.okta.page_size = 1).await;
    let r = sync(&s).await;
    assert_eq!(r.outcome, "succeeded", "{r:#?}");
    // Three holders, one per page.
    assert!(e.sim.counter("GET", "/api/v1/iam/assignees/users") >= 3);
    for (login, role, managed) in [
        ("carol@example.com", "USER_ADMIN", Some("user-admin")),
        ("dave@example.com", "USER_ADMIN", Some("user-admin")),
        ("bob@example.com", "HELP_DESK_ADMIN", None),
    ] {
        let (st, u) = e.get(&format!("/v1/inventory/users/{login}")).await;
        assert_eq!(st, StatusCode::OK, "{u}");
        let roles = u["roles"].as_array().unwrap();
        assert!(
            roles.iter().any(|h| h["okta_id"] == role
                && h["resource"].as_str() == managed
                && h["why"] != "grant"),
            "{login}: {u}"
        );
    }
    let (_, res) = e.get("/v1/inventory/resources/user-admin").await;
    let holders: Vec<_> = res["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["user_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        holders.contains(&CAROL.to_string()) && holders.contains(&DAVE.to_string()),
        "{res}"
    );
}

both_backends!(
    hand_given_admin_roles_are_found,
    hand_added_member_enforced_or_reported,
    expired_grant_whose_removal_was_lost_is_removed,
    active_grant_removed_by_hand_is_ended_or_restored,
    read_only_token_warns_and_changes_nothing,
    sync_during_expiry_takes_no_revocation_slot,
);
