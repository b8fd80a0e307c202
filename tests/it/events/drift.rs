//! The shared drift reaction and the grants service's external endings, driven directly (the
//! event hook and sync tests drive them through their detectors).

use jit_broker::clock::Clock;
use jit_broker::drift::{Detection, DriftReactor, Finding, OktaActor, Outcome};
use jit_broker::grants::GrantService;
use serde_json::json;

use crate::helpers::*;

/// A grants service on the app's database, Redis prefix and okta-sim, with the drift policy.
pub async fn service(e: &Env) -> GrantService {
    grants_service(&e.app, Clock::system(), |_| {}).await
}

fn finding(resource: &str, user: &str, actor: Option<&str>) -> Finding {
    Finding {
        resource: resource.into(),
        user_id: user.into(),
        user_login: None,
        detected: Detection::Sync {
            run_id: "run-1".into(),
        },
        actor: actor.map(|a| OktaActor {
            id: a.into(),
            alternate_id: None,
        }),
        changed_at: None,
    }
}

async fn audit_actions(e: &Env) -> Vec<(String, serde_json::Value)> {
    let (_, audit) = e.get("/v1/audit?limit=500").await;
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["action"].as_str().unwrap().to_string(),
                x["details"].clone(),
            )
        })
        .collect()
}

async fn drift_verdicts(db: Db) {
    let e = env_with_policy(db, DRIFT_POLICY).await;
    let svc = service(&e).await;
    let drift = DriftReactor::new(svc.clone());
    let admin = e.sim.admin("admin@example.com");

    // Enforce: an out-of-band member is removed through the revocation lane and audited.
    admin.add_member(PROD_ADMINS, BOB).unwrap();
    let o = drift
        .react(&finding("prod-db-admin", BOB, Some("00uadmin")))
        .await
        .unwrap();
    assert_eq!(
        o,
        Outcome::Reverted {
            okta_change: "removed"
        }
    );
    assert!(!e.sim.is_member(PROD_ADMINS, BOB));
    // Again: harmless (Okta answers 204 or 404 for a non-member; both count as gone).
    let o = drift
        .react(&finding("prod-db-admin", BOB, None))
        .await
        .unwrap();
    assert!(matches!(o, Outcome::Reverted { .. }), "{o:?}");
    // ... and recognised as the same revert (a finding handled again, as after a crash between
    // the revert and the event's record): one audit entry, not two.
    let reverts = audit_actions(&e)
        .await
        .into_iter()
        .filter(|(a, d)| a == "drift.reverted" && d["resource"] == "prod-db-admin")
        .count();
    assert_eq!(reverts, 1, "a repeated revert was audited twice");

    // Report: recorded, access left alone.
    admin.add_member(ON_CALL, BOB).unwrap();
    let o = drift.react(&finding("oncall", BOB, None)).await.unwrap();
    assert_eq!(o, Outcome::Reported);
    assert!(e.sim.is_member(ON_CALL, BOB));

    // Not jit_only (everyone is in engineering), or not in the policy: not judged.
    assert_eq!(
        drift
            .react(&finding("engineering", BOB, None))
            .await
            .unwrap(),
        Outcome::NotManaged
    );
    assert_eq!(
        drift.react(&finding("nope", BOB, None)).await.unwrap(),
        Outcome::NotManaged
    );
    assert!(e.sim.is_member(ENGINEERING, BOB));

    // allow_standing (by login).
    admin.add_member(PROD_ADMINS, CAROL).unwrap();
    let mut f = finding("prod-db-admin", CAROL, None);
    f.user_login = Some("carol@example.com".into());
    assert_eq!(drift.react(&f).await.unwrap(), Outcome::AllowedStanding);
    assert!(e.sim.is_member(PROD_ADMINS, CAROL));

    // A live grant explains the access.
    let g = e.grant("alice@example.com", "prod-db-admin", "1h").await;
    let o = drift
        .react(&finding("prod-db-admin", ALICE, None))
        .await
        .unwrap();
    assert_eq!(o, Outcome::Explained { grant_id: id(&g) });
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));

    // The broker's own principal is never drift, whatever the grants say.
    let principal = drift
        .principal_id()
        .expect("the probe learns the principal");
    admin.add_member(PROD_ADMINS, BOB).unwrap();
    let o = drift
        .react(&finding("prod-db-admin", BOB, Some(&principal)))
        .await
        .unwrap();
    assert_eq!(o, Outcome::OwnChange);
    assert!(e.sim.is_member(PROD_ADMINS, BOB));

    // A grant that ended after the change happened explains it (a delayed event of our add).
    let g2 = e.grant("bob@example.com", "oncall", "1h").await;
    let (s, _) = e
        .post(
            &format!("/v1/grants/{}/revoke", id(&g2)),
            json!({"reason": "done"}),
        )
        .await;
    assert!(s.is_success());
    let mut f = finding("oncall", BOB, None);
    f.changed_at = Some(g2["activated_at"].as_i64().unwrap());
    assert!(matches!(
        drift.react(&f).await.unwrap(),
        Outcome::Explained { .. }
    ));

    // Roles: the role is looked up; absent is not drift, present is removed.
    assert_eq!(
        drift
            .react(&finding("user-admin", BOB, None))
            .await
            .unwrap(),
        Outcome::NotPresent
    );
    admin.assign_role(BOB, "USER_ADMIN").unwrap();
    assert_eq!(
        drift
            .react(&finding("user-admin", BOB, None))
            .await
            .unwrap(),
        Outcome::Reverted {
            okta_change: "removed"
        }
    );
    assert!(e.sim.user_roles(BOB).iter().all(|(_, t)| t != "USER_ADMIN"));

    let actions = audit_actions(&e).await;
    let reverted: Vec<_> = actions
        .iter()
        .filter(|(a, _)| a == "drift.reverted")
        .collect();
    // prod-db-admin once (its repeat is the same revert), user-admin once.
    assert_eq!(reverted.len(), 2, "{actions:?}");
    assert_eq!(reverted[0].1["resource"], "prod-db-admin");
    assert_eq!(reverted[0].1["user_id"], BOB);
    assert_eq!(reverted[0].1["detected"]["sync_run_id"], "run-1");
    let detected: Vec<_> = actions
        .iter()
        .filter(|(a, _)| a == "drift.detected")
        .collect();
    assert_eq!(detected.len(), 1, "{actions:?}");
    assert_eq!(detected[0].1["resource"], "oncall");
    e.audit_ok().await;
}

async fn external_removal_and_departure(db: Db) {
    let e = env_with_policy(db, DRIFT_POLICY).await;
    let svc = service(&e).await;
    let admin = e.sim.admin("admin@example.com");

    // Someone removes the membership: the grant ends as removed_externally, nothing re-added.
    let g = e.grant("alice@example.com", "prod-db-admin", "1h").await;
    admin.remove_member(PROD_ADMINS, ALICE).unwrap();
    let puts = e
        .sim
        .counter("PUT", "/api/v1/groups/{groupId}/users/{userId}");
    let ended = svc
        .end_removed_externally(&id(&g), "okta:00uadmin", json!({"event_uuid": "u1"}))
        .await
        .unwrap();
    assert_eq!(ended.state.as_str(), "removed_externally");
    assert_eq!(e.state(&id(&g)).await, "removed_externally");
    // Idempotent, and a terminal grant is not touched by a revoke.
    let again = svc
        .end_removed_externally(&id(&g), "okta:00uadmin", json!({}))
        .await
        .unwrap();
    assert_eq!(again.version, ended.version);
    let (s, r) = e
        .post(
            &format!("/v1/grants/{}/revoke", id(&g)),
            json!({"reason": "x"}),
        )
        .await;
    assert!(s.is_success(), "{r}");
    assert_eq!(r["state"], "removed_externally");
    assert_eq!(
        e.sim
            .counter("PUT", "/api/v1/groups/{groupId}/users/{userId}"),
        puts
    );
    assert!(!e.sim.is_member(PROD_ADMINS, ALICE));

    // A departure revokes every live grant of the user: group, app and role.
    let g1 = e.grant("bob@example.com", "prod-db-admin", "1h").await;
    let g2 = e.grant("bob@example.com", "payroll", "1h").await;
    let g3 = e.grant("bob@example.com", "user-admin", "30m").await;
    let other = e.grant("alice@example.com", "payroll", "1h").await;
    let out = svc
        .revoke_all_for_user("system:events", BOB, "user deactivated in Okta")
        .await
        .unwrap();
    assert_eq!(out.len(), 3);
    for g in [&g1, &g2, &g3] {
        assert_eq!(e.state(&id(g)).await, "revoked");
    }
    assert_eq!(e.state(&id(&other)).await, "active");
    assert!(!e.sim.is_member(PROD_ADMINS, BOB));
    assert!(e.sim.app_assignment_scope(PAYROLL, BOB).is_none());
    assert!(e.sim.user_roles(BOB).is_empty());
    let (_, g1v) = e.get(&format!("/v1/grants/{}", id(&g1))).await;
    assert_eq!(g1v["end_reason"], "user deactivated in Okta");
    // Nothing left: a second call revokes nothing.
    assert!(svc
        .revoke_all_for_user("system:events", BOB, "again")
        .await
        .unwrap()
        .is_empty());
    e.audit_ok().await;
}

both_backends!(drift_verdicts, external_removal_and_departure);
