//! The inventory sync end to end: okta-sim over HTTP, real Redis, both SQL backends. No event
//! hook is registered, so only the sync can notice out-of-band changes (made through the
//! simulator's admin control, as an admin clicking in the Admin Console would).

use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::grants::GrantService;
use jit_broker::okta::OktaClient;
use jit_broker::policy::{Policy, PolicyHandle};
use jit_broker::redis_conn::RedisConn;
use jit_broker::sync::{RunRecord, SyncOptions, Syncer};
use reqwest::StatusCode;
use serde_json::Value;

use crate::grants::{env_with, Env};
use crate::helpers::*;

mod reconcile;
mod runs;

pub const DBOWNERS: &str = "00g1dbowners00000002";

pub const POLICY: &str = r#"
[[resource]]
name = "prod-db-admin"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
jit_only = true
drift = "enforce"
on_external_removal = "end"

[[resource]]
name = "db-owners"
kind = "okta_group"
okta_id = "00g1dbowners00000002"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
jit_only = true
drift = "report"

[[resource]]
name = "payroll"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "1h"
max_duration = "8h"
approvals_required = 0
on_external_removal = "restore"

[[resource]]
name = "user-admin"
kind = "okta_role"
okta_id = "USER_ADMIN"
default_duration = "30m"
max_duration = "2h"
approvals_required = 0
"#;

pub const MEMBER_LIST: &str = "/api/v1/groups/{groupId}/users";

pub async fn env(db: Db) -> Env {
    env_with(db, POLICY, |_| {}).await
}

/// A sync runner on the app's database, Redis prefix and Okta, like a second replica.
pub async fn syncer(e: &Env) -> Syncer {
    syncer_with(e, |_| {}).await
}

pub async fn syncer_with(e: &Env, tweak: impl FnOnce(&mut jit_broker::Config)) -> Syncer {
    syncer_at(e, Clock::system(), tweak).await
}

pub async fn syncer_at(
    e: &Env,
    clock: Clock,
    tweak: impl FnOnce(&mut jit_broker::Config),
) -> Syncer {
    let mut cfg = e.app.config.clone();
    tweak(&mut cfg);
    let okta = OktaClient::new(&cfg.okta, clock.clone()).unwrap();
    let _ = okta.probe_capabilities().await;
    let grants = GrantService::new(
        e.app.store().await,
        RedisConn::connect(&cfg.redis).await.unwrap(),
        clock,
        okta,
        PolicyHandle::new(Policy::parse(POLICY).unwrap(), None),
        Duration::from_secs(600),
    );
    Syncer::new(grants, cfg.sync.clone())
}

pub async fn sync(s: &Syncer) -> RunRecord {
    s.run(SyncOptions::default()).await.unwrap()
}

pub fn finding<'a>(r: &'a RunRecord, kind: &str, user: &str) -> &'a jit_broker::sync::Finding {
    r.report
        .iter()
        .find(|f| f.finding == kind && f.user_id == user)
        .unwrap_or_else(|| panic!("no {kind} finding for {user} in {:#?}", r.report))
}

pub async fn audit_actions(e: &Env) -> Vec<Value> {
    let (s, a) = e.get("/v1/audit?limit=1000").await;
    assert_eq!(s, StatusCode::OK);
    a["entries"].as_array().unwrap().clone()
}

pub fn member_lists(e: &Env) -> u64 {
    e.sim.counter("GET", MEMBER_LIST)
}

pub fn reads(e: &Env) -> u64 {
    [
        "/api/v1/users",
        "/api/v1/groups",
        MEMBER_LIST,
        "/api/v1/apps/{appId}/users",
        "/api/v1/users/{userId}/roles",
    ]
    .iter()
    .map(|t| e.sim.counter("GET", t))
    .sum()
}
