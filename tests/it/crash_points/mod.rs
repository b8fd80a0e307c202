//! Aimed kills: two replicas (two broker processes on one database and one Redis prefix), one of
//! them started to die at a crash point (`jit_broker::crash`, a `test-hooks` build aborting on
//! the spot, as `kill -9`), then the other must finish what the dead one left, within the bound
//! docs/grants.md states for that window:
//!
//! - between an early revoke's `revoking` commit and its index update: access removed;
//! - between a grant's row and its Okta add, and between the add and its activation: the grant
//!   is `active` with its access (or `failed`, visible);
//! - inside a departure's processing (its first grant committed `revoking`): every grant of the
//!   user revoked, no access left.
//!
//! Each window's test fails on the code before the fix (the survivor left the grant `revoking`
//! behind its old index entry, `provisioning` until its provisional expiry, the event to a 30 s
//! lease and the `revoking` grant out of the re-run). `chaos` runs the windows one after the
//! other on one pair, restarting the dead replica aimed at the next window, and checks the
//! invariants over the whole run; `figures` (ignored, run by hand) repeats it for the p50/max
//! hand-over figures. Bounds are deadlines of polls, never wall-clock assertions on speed.

mod chaos;

use std::time::{Duration, Instant};

use jit_broker::crash;
use serde_json::{json, Value};

use crate::e2e_faults::child::{
    list_grants, sim_memberships, unexplained_access, ChildBroker, Overrides,
};
use crate::helpers::*;

/// The hook secret of both replicas.
const HOOK_SECRET: &str = "hook-secret-for-crash-tests";

/// The sections both replicas add to the fixed test configuration: the event hook secret, and
/// a survivor's inbox poll of 1 s (the dying replica is woken by its own delivery at once, so the
/// event is aimed at it; the survivor sees it when its lease lapses).
fn extra() -> String {
    format!("[events]\nsecret = \"{HOOK_SECRET}\"\n")
}

/// `scheduler.lease` (3 s) + the sweep's grace (the lease) + `scheduler.sweep_interval` (2 s),
/// plus a few seconds for the claim and Okta: defaults throughout.
pub const REVOKING_BOUND: Duration = Duration::from_secs(11);
/// The resume time (3 s) + a dead holder's access lock (3 s TTL) + one more resume look (3 s),
/// plus a few seconds.
pub const PROVISIONING_BOUND: Duration = Duration::from_secs(12);
/// `events.lease` (5 s) + the survivor's poll (1 s), plus a few seconds for the revocations.
pub const DEPARTURE_BOUND: Duration = Duration::from_secs(10);

/// The replica that dies and the one that finishes, over one okta-sim.
pub struct Pair {
    pub sim: okta_sim::SimHandle,
    pub doomed: ChildBroker,
    pub survivor: ChildBroker,
}

impl Pair {
    /// Both replicas; the doomed one dies at `point`.
    pub async fn start(db: Db, point: &str) -> Pair {
        let sim = okta_sim::spawn(okta_sim::SimConfig::default())
            .await
            .unwrap();
        let doomed = ChildBroker::start_with_config(
            TestDb::new(db).await,
            &sim.base_url(),
            GRANTS_POLICY,
            &extra(),
            vec![(crash::ENV, point.to_string())],
        )
        .await;
        let survivor: Overrides = vec![("JIT_EVENTS__POLL_INTERVAL", "1s".to_string())];
        let survivor = doomed.replica_with(survivor).await;
        Pair {
            sim,
            doomed,
            survivor,
        }
    }

    /// Starts the dead replica again, aimed at `point`.
    pub async fn rearm(&mut self, point: &str) {
        // A kill that missed (the survivor took the work first) leaves the doomed one alive.
        if !self.doomed.wait_dead(Duration::ZERO).await {
            self.doomed.kill9();
        }
        self.doomed.set_override(crash::ENV, point);
        self.doomed.restart().await;
    }

    async fn state(&self, gid: &str) -> String {
        let (_, g) = self.survivor.get(&format!("/v1/grants/{gid}")).await;
        g["state"].as_str().unwrap_or_default().to_string()
    }

    /// Revokes through the survivor and waits for `revoked` (cleans up between rounds).
    pub async fn revoke_on_survivor(&self, gid: &str) {
        let (s, g) = admin_post(
            &self.survivor.http,
            &self.survivor.base,
            &format!("/v1/grants/{gid}/revoke"),
            json!({"reason": "round over"}),
        )
        .await;
        assert_eq!(s, reqwest::StatusCode::OK, "{g}");
        wait_until(Duration::from_secs(10), || async {
            self.state(gid).await == "revoked"
        })
        .await;
    }
}

/// What one aimed kill found: whether it landed in its window, and how long the survivor took
/// from the death to the end state.
pub struct Kill {
    pub landed: bool,
    /// From the death to the end state.
    pub took: Duration,
    /// From the cause (the revoke, the create, the delivery of the departure) to the end state.
    pub from_cause: Duration,
}

/// An early revoke sent to the doomed replica (armed at `REVOKING_COMMITTED`) of a fresh grant
/// of `user` on `resource` (Okta group `group`): the survivor removes the access.
pub async fn revoking_window(p: &mut Pair, user: &str, resource: &str, group: &str) -> Kill {
    let g = p.survivor.grant(user, resource, "1h").await;
    let gid = id(&g);
    assert!(p.sim.is_member(group, user));
    let cause = Instant::now();
    let _ = p
        .doomed
        .http
        .post(format!("{}/v1/grants/{gid}/revoke", p.doomed.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"reason": "aimed kill"}))
        .send()
        .await;
    let landed = p.doomed.wait_dead(Duration::from_secs(5)).await;
    let t0 = Instant::now();
    assert!(landed, "the doomed replica did not reach its crash point");
    let at_kill = p.doomed.sql_states().await;
    assert_eq!(
        at_kill[&gid], "revoking",
        "the kill landed after the commit"
    );
    wait_until(REVOKING_BOUND, || async {
        p.state(&gid).await == "revoked" && !p.sim.is_member(group, user)
    })
    .await;
    Kill {
        landed,
        took: t0.elapsed(),
        from_cause: cause.elapsed(),
    }
}

/// A grant created through the doomed replica, which dies at `point` (before or after the Okta
/// add): the survivor makes it `active` with its access. Returns the grant id too.
pub async fn provisioning_window(
    p: &mut Pair,
    point: &str,
    user: &str,
    resource: &str,
    group: &str,
) -> (Kill, String) {
    let before = p.doomed.sql_states().await;
    let cause = Instant::now();
    let _ = p
        .doomed
        .http
        .post(format!("{}/v1/grants", p.doomed.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"user": user, "resource": resource, "duration": "1h", "reason": "aimed kill"}),
        )
        .send()
        .await;
    let landed = p.doomed.wait_dead(Duration::from_secs(5)).await;
    let t0 = Instant::now();
    assert!(landed, "the doomed replica did not reach {point}");
    let at_kill = p.doomed.sql_states().await;
    let (gid, state) = at_kill
        .iter()
        .find(|(g, _)| !before.contains_key(*g))
        .map(|(g, s)| (g.clone(), s.clone()))
        .expect("the grant row is durable before Okta is called (I2)");
    assert_eq!(state, "provisioning");
    assert_eq!(
        p.sim.is_member(group, user),
        point == crash::AFTER_OKTA_ADD,
        "the kill landed on the wrong side of the add"
    );
    wait_until(PROVISIONING_BOUND, || async {
        p.state(&gid).await == "active" && p.sim.is_member(group, user)
    })
    .await;
    (
        Kill {
            landed,
            took: t0.elapsed(),
            from_cause: cause.elapsed(),
        },
        gid,
    )
}

fn departure(user: &str) -> Value {
    let ev = json!({
        "uuid": uuid::Uuid::new_v4().to_string(), "eventType": "user.lifecycle.deactivate",
        "published": chrono::Utc::now().to_rfc3339(),
        "actor": {"id": "00uhr", "type": "User", "alternateId": "hr@example.com"},
        "target": [{"id": user, "type": "User", "alternateId": "someone@example.com"}],
    });
    json!({"eventType": "com.okta.event_hook", "eventId": uuid::Uuid::new_v4().to_string(),
           "data": {"events": [ev]}})
}

/// `user` holds two grants, leaves (deactivated in Okta, the event delivered to the doomed
/// replica, which dies inside the reaction once the first grant is `revoking`): the survivor
/// takes the event over and every grant of the user ends, access gone. The user is reactivated
/// afterwards so that another round may use them.
pub async fn departure_window(p: &mut Pair, user: &str) -> Kill {
    let held = [("prod-db-admin", PROD_ADMINS), ("oncall", ON_CALL)];
    let mut gids = Vec::new();
    for (res, _) in held {
        gids.push(id(&p.survivor.grant(user, res, "1h").await));
    }
    let admin = p.sim.admin("hr@example.com");
    admin.deactivate_user(user).unwrap();
    let cause = Instant::now();
    let r = p
        .doomed
        .http
        .post(format!("{}/hooks/okta", p.doomed.base))
        .header("authorization", HOOK_SECRET)
        .json(&departure(user))
        .send()
        .await;
    assert!(r.is_ok_and(|r| r.status().is_success()), "delivery refused");
    let landed = p.doomed.wait_dead(Duration::from_secs(5)).await;
    let t0 = Instant::now();
    wait_until(DEPARTURE_BOUND, || async {
        for g in &gids {
            if p.state(g).await != "revoked" {
                return false;
            }
        }
        held.iter().all(|(_, group)| !p.sim.is_member(group, user))
    })
    .await;
    let (took, from_cause) = (t0.elapsed(), cause.elapsed());
    admin.activate_user(user).unwrap();
    Kill {
        landed,
        took,
        from_cause,
    }
}

/// Nothing left half-made or half-removed, no access without a live grant of ours.
pub async fn settled(p: &Pair) {
    let states = p.survivor.sql_states().await;
    let stuck: Vec<_> = states
        .iter()
        .filter(|(_, s)| *s == "provisioning" || *s == "revoking")
        .collect();
    assert!(stuck.is_empty(), "left mid-way: {stuck:?}");
    let grants = list_grants(&p.survivor.http, &p.survivor.base).await;
    let members = sim_memberships(&p.sim.base_url()).await;
    // The seed's one standing membership among the managed groups: carol is on call.
    let standing = std::collections::BTreeSet::from([(ON_CALL.to_string(), CAROL.to_string())]);
    let left = unexplained_access(&members, &grants, &[PROD_ADMINS, ON_CALL], &standing);
    assert!(left.is_empty(), "access without a live grant: {left:?}");
    p.survivor.audit_ok().await;
}

both_backends!(
    killed_between_revoking_commit_and_index_update,
    killed_between_grant_row_and_okta_add,
    killed_between_okta_add_and_activation,
    killed_inside_a_departure,
);

async fn killed_between_revoking_commit_and_index_update(db: Db) {
    let mut p = Pair::start(db, crash::REVOKING_COMMITTED).await;
    let k = revoking_window(&mut p, BOB, "prod-db-admin", PROD_ADMINS).await;
    eprintln!("revoking window: removed {:?} after the kill", k.took);
    settled(&p).await;
}

async fn killed_between_grant_row_and_okta_add(db: Db) {
    let mut p = Pair::start(db, crash::BEFORE_OKTA_ADD).await;
    let (k, _) = provisioning_window(
        &mut p,
        crash::BEFORE_OKTA_ADD,
        BOB,
        "prod-db-admin",
        PROD_ADMINS,
    )
    .await;
    eprintln!("before the add: active {:?} after the kill", k.took);
    settled(&p).await;
}

async fn killed_between_okta_add_and_activation(db: Db) {
    let mut p = Pair::start(db, crash::AFTER_OKTA_ADD).await;
    let (k, gid) = provisioning_window(
        &mut p,
        crash::AFTER_OKTA_ADD,
        BOB,
        "prod-db-admin",
        PROD_ADMINS,
    )
    .await;
    eprintln!("after the add: active {:?} after the kill", k.took);
    // The add the dead replica made is recorded as ours (not standing): it is removed at expiry.
    let (_, g) = p.survivor.get(&format!("/v1/grants/{gid}")).await;
    assert_eq!(g["standing"], false, "{g}");
    p.revoke_on_survivor(&gid).await;
    assert!(!p.sim.is_member(PROD_ADMINS, BOB));
    settled(&p).await;
}

async fn killed_inside_a_departure(db: Db) {
    let mut p = Pair::start(db, crash::REVOKING_COMMITTED).await;
    let k = departure_window(&mut p, DAVE).await;
    assert!(
        k.landed,
        "the doomed replica did not die inside the reaction"
    );
    eprintln!("departure: all access gone {:?} after the kill", k.took);
    settled(&p).await;
}
