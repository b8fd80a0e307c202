//! Grants end to end: the real application over HTTP, okta-sim over HTTP, real Redis and both
//! SQL backends. Expiry is driven by calling `GrantService::expire` on a second service (another
//! "replica") whose clock runs ahead, so no test waits for wall time.

use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::grants::GrantService;
use jit_broker::okta::{OktaAuthMethod, OktaClient};
use jit_broker::policy::{Policy, PolicyHandle};
use jit_broker::redis_conn::RedisConn;
use jit_broker::scheduler::{ExpiryHandler, ExpiryOutcome};
use jit_broker::RunOptions;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

pub const ALICE: &str = "00u1alice00000000001";
pub const BOB: &str = "00u1bob0000000000002";
pub const CAROL: &str = "00u1carol00000000003";
pub const DAVE: &str = "00u1dave000000000004";
pub const PRODADMINS: &str = "00g1prodadmins000001";
pub const ENGINEERING: &str = "00g1engineering00004";
pub const ONCALL: &str = "00g1oncall0000000003";
pub const PAYROLL: &str = "0oa1payroll000000001";
pub const AWSPROD: &str = "0oa1awsprod000000002";

pub const POLICY: &str = r#"
[[resource]]
name = "prod-db-admin"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
require_reason = true
approvals_required = 0

[[resource]]
name = "engineering"
kind = "okta_group"
okta_id = "00g1engineering00004"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0

[[resource]]
name = "oncall"
kind = "okta_group"
okta_id = "00g1oncall0000000003"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
end_sessions_on_expiry = true

[[resource]]
name = "payroll"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "1h"
max_duration = "8h"
approvals_required = 0

[[resource]]
name = "aws-prod"
kind = "okta_app"
okta_id = "0oa1awsprod000000002"
default_duration = "1h"
max_duration = "8h"
approvals_required = 0

[[resource]]
name = "user-admin"
kind = "okta_role"
okta_id = "USER_ADMIN"
default_duration = "30m"
max_duration = "2h"
approvals_required = 0

[[resource]]
name = "custom-admin"
kind = "okta_role"
okta_id = "cr0custom00000000001"
resource_set = "iam1resourceset00001"
default_duration = "30m"
max_duration = "2h"
approvals_required = 0
"#;

/// The app, the simulator, and a second grants service ("replica") for driving expiry.
pub struct Env {
    pub app: TestApp,
    pub sim: okta_sim::SimHandle,
    pub _policy_dir: tempfile::TempDir,
}

pub fn okta_config(config: &mut jit_broker::Config, base_url: &str) {
    config.okta.base_url = base_url.to_string();
    config.okta.auth = OktaAuthMethod::Ssws;
    config.okta.api_token = Some(secrecy::SecretString::from("sim-super-admin-token"));
}

pub async fn env_with_policy(db: Db, policy: &str) -> Env {
    env_with(db, policy, |_| {}).await
}

pub async fn env_with(db: Db, policy: &str, tweak: impl FnOnce(&mut jit_broker::Config)) -> Env {
    let sim = okta_sim::spawn(okta_sim::SimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    let tdb = TestDb::new(db).await;
    let mut config = base_config(&tdb);
    okta_config(&mut config, &sim.base_url());
    config.policy.file = Some(path);
    tweak(&mut config);
    let app = spawn_app_with(tdb, config, RunOptions::default()).await;
    Env {
        app,
        sim,
        _policy_dir: dir,
    }
}

pub async fn env(db: Db) -> Env {
    env_with_policy(db, POLICY).await
}

impl Env {
    /// Another replica whose clock reads `ahead` later than the wall clock.
    pub async fn replica(&self, ahead: Duration) -> GrantService {
        Self::replica_of(&self.app, ahead).await
    }

    /// A grants service on `app`'s database, Redis and Okta whose clock reads `ahead` later than
    /// the wall clock (another "replica"), with `app`'s policy file.
    pub async fn replica_of(app: &TestApp, ahead: Duration) -> GrantService {
        let clock =
            Clock::tokio_at(chrono::Utc::now().timestamp_millis() + ahead.as_millis() as i64);
        let cfg = &app.config;
        let okta = OktaClient::new(&cfg.okta, clock.clone()).unwrap();
        // Learn the credential's capabilities like `serve` does; okta-sim may not serve the
        // probe's `GET /api/v1/users/me`, and an unprobed client lets Okta answer per call.
        let _ = okta.probe_capabilities().await;
        let policy = match &cfg.policy.file {
            Some(p) => Policy::load(p).unwrap(),
            None => Policy::parse(POLICY).unwrap(),
        };
        GrantService::new(
            app.store().await,
            RedisConn::connect(&cfg.redis).await.unwrap(),
            clock,
            okta,
            PolicyHandle::new(policy, None),
            Duration::from_secs(600),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        admin_post(&self.app.http, &self.app.base, path, body).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        admin_get(&self.app.http, &self.app.base, path).await
    }

    /// Creates a grant and expects it active.
    pub async fn grant(&self, user: &str, resource: &str, duration: &str) -> Value {
        create_active_grant(
            &self.app.http,
            &self.app.base,
            user,
            resource,
            duration,
            "test",
        )
        .await
    }

    pub async fn state(&self, id: &str) -> String {
        let (s, g) = self.get(&format!("/v1/grants/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{g}");
        g["state"].as_str().unwrap().to_string()
    }

    pub async fn audit_ok(&self) {
        let report = jit_broker::audit::verify(&self.app.store().await)
            .await
            .unwrap();
        assert!(report.ok(), "audit chain broken: {:?}", report.first_broken);
    }
}

pub fn id(g: &Value) -> String {
    g["id"].as_str().unwrap().to_string()
}

async fn group_grant_lifecycle(db: Db) {
    let e = env(db).await;
    assert!(!e.sim.is_member(PRODADMINS, ALICE));
    let g = e.grant("alice@example.com", "prod-db-admin", "1h").await;
    assert_eq!(g["user_id"], ALICE);
    assert_eq!(g["standing"], false);
    assert!(e.sim.is_member(PRODADMINS, ALICE));
    let gid = id(&g);
    // The clock starts at activation: expires_at = activated_at + 1h.
    assert_eq!(
        g["expires_at"].as_i64().unwrap() - g["activated_at"].as_i64().unwrap(),
        3_600_000
    );

    // Extension: one update, access never removed in between.
    let (s, x) = e
        .post(
            &format!("/v1/grants/{gid}/extend"),
            json!({"duration": "1h"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{x}");
    assert_eq!(
        x["expires_at"].as_i64().unwrap(),
        g["expires_at"].as_i64().unwrap() + 3_600_000
    );
    assert!(e.sim.is_member(PRODADMINS, ALICE));
    // Past now + max_duration (4h): refused, nothing changes.
    let (s, x2) = e
        .post(
            &format!("/v1/grants/{gid}/extend"),
            json!({"duration": "3h"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(x2["code"], "extension_exceeds_max");

    // At the original expiry (+1h30) the handler only reschedules.
    let early = e.replica(Duration::from_secs(90 * 60)).await;
    match early.expire(&gid, 1).await {
        ExpiryOutcome::Reschedule { due_ms } => {
            assert_eq!(due_ms, x["expires_at"].as_i64().unwrap())
        }
        o => panic!("expected Reschedule, got {o:?}"),
    }
    assert!(e.sim.is_member(PRODADMINS, ALICE));

    let late = e.replica(Duration::from_secs(3 * 3600)).await;
    assert_eq!(late.expire(&gid, 1).await, ExpiryOutcome::Done);
    assert!(!e.sim.is_member(PRODADMINS, ALICE));
    assert_eq!(e.state(&gid).await, "revoked");
    // Idempotent: again is harmless and calls no Okta write.
    let deletes = e
        .sim
        .counter("DELETE", "/api/v1/groups/{groupId}/users/{userId}");
    assert_eq!(late.expire(&gid, 2).await, ExpiryOutcome::Done);
    assert_eq!(
        e.sim
            .counter("DELETE", "/api/v1/groups/{groupId}/users/{userId}"),
        deletes
    );
    e.audit_ok().await;
    let (_, audit) = e.get("/v1/audit?limit=100").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "grant.provisioning",
            "grant.activated",
            "grant.extended",
            "grant.revoking",
            "grant.revoked"
        ]
    );
}

async fn app_and_role_grants(db: Db) {
    let e = env(db).await;
    let app = e.grant(BOB, "payroll", "1h").await;
    assert_eq!(
        e.sim.app_assignment_scope(PAYROLL, BOB).as_deref(),
        Some("USER")
    );
    let std_role = e.grant(CAROL, "user-admin", "30m").await;
    assert!(e
        .sim
        .user_roles(CAROL)
        .iter()
        .any(|(_, t)| t == "USER_ADMIN"));
    assert!(std_role["role_assignment_id"].is_string());
    let custom = e.grant(CAROL, "custom-admin", "30m").await;
    assert!(e.sim.user_roles(CAROL).iter().any(|(_, t)| t == "CUSTOM"));

    for g in [&app, &std_role, &custom] {
        let (s, r) = e
            .post(
                &format!("/v1/grants/{}/revoke", id(g)),
                json!({"reason": "done"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["state"], "revoked", "{r}");
    }
    assert_eq!(e.sim.app_assignment_scope(PAYROLL, BOB), None);
    assert!(
        e.sim.user_roles(CAROL).is_empty(),
        "{:?}",
        e.sim.user_roles(CAROL)
    );
    // Revoking again is a no-op.
    let (s, r) = e
        .post(&format!("/v1/grants/{}/revoke", id(&app)), json!({}))
        .await;
    assert_eq!((s, r["state"].as_str()), (StatusCode::OK, Some("revoked")));
    e.audit_ok().await;
}

async fn overlapping_grants_are_counted(db: Db) {
    let e = env(db).await;
    let a = e.grant(ALICE, "prod-db-admin", "1h").await;
    let b = e.grant(ALICE, "prod-db-admin", "3h").await;
    assert_eq!(
        b["standing"], false,
        "access explained by grant a is not standing"
    );
    let r = e.replica(Duration::from_secs(2 * 3600)).await;
    assert_eq!(r.expire(&id(&a), 1).await, ExpiryOutcome::Done);
    assert_eq!(e.state(&id(&a)).await, "revoked");
    assert!(
        e.sim.is_member(PRODADMINS, ALICE),
        "first expiry must leave access"
    );
    assert!(matches!(
        r.expire(&id(&b), 1).await,
        ExpiryOutcome::Reschedule { .. }
    ));
    let r = e.replica(Duration::from_secs(4 * 3600)).await;
    assert_eq!(r.expire(&id(&b), 1).await, ExpiryOutcome::Done);
    assert!(
        !e.sim.is_member(PRODADMINS, ALICE),
        "last expiry removes access"
    );
    e.audit_ok().await;
}

async fn standing_access_survives(db: Db) {
    let e = env(db).await;
    assert!(e.sim.is_member(ENGINEERING, ALICE));
    let g = e.grant(ALICE, "engineering", "1h").await;
    assert_eq!(g["standing"], true);
    let r = e.replica(Duration::from_secs(2 * 3600)).await;
    assert_eq!(r.expire(&id(&g), 1).await, ExpiryOutcome::Done);
    assert_eq!(e.state(&id(&g)).await, "revoked");
    assert!(
        e.sim.is_member(ENGINEERING, ALICE),
        "standing membership must survive"
    );
    assert_eq!(
        e.sim
            .counter("DELETE", "/api/v1/groups/{groupId}/users/{userId}"),
        0
    );

    // Inherited app access (dave holds aws-prod through a group): standing, left alone.
    assert_eq!(
        e.sim.app_assignment_scope(AWSPROD, DAVE).as_deref(),
        Some("GROUP")
    );
    let g = e.grant(DAVE, "aws-prod", "1h").await;
    assert_eq!(g["standing"], true);
    assert_eq!(r.expire(&id(&g), 1).await, ExpiryOutcome::Done);
    assert_eq!(
        e.sim.app_assignment_scope(AWSPROD, DAVE).as_deref(),
        Some("GROUP")
    );

    // A standing admin role assigned by hand survives a grant of the same role.
    let assignment = e
        .sim
        .admin("admin@example.com")
        .assign_role(ALICE, "USER_ADMIN")
        .unwrap();
    let g = e.grant(ALICE, "user-admin", "30m").await;
    assert_eq!(g["standing"], true);
    assert_eq!(g["role_assignment_id"], assignment.as_str());
    assert_eq!(r.expire(&id(&g), 1).await, ExpiryOutcome::Done);
    assert!(e
        .sim
        .user_roles(ALICE)
        .iter()
        .any(|(id, _)| *id == assignment));
    e.audit_ok().await;
}

async fn inherited_at_revoke_fails_permanently(db: Db) {
    let e = env(db).await;
    let g = e.grant(BOB, "payroll", "1h").await;
    assert_eq!(g["standing"], false);
    // Out of band: the direct assignment is replaced by one through a group bob is in.
    let admin = e.sim.admin("admin@example.com");
    admin.unassign_app(PAYROLL, BOB).unwrap();
    admin.assign_app_group(PAYROLL, ENGINEERING).unwrap();
    assert_eq!(
        e.sim.app_assignment_scope(PAYROLL, BOB).as_deref(),
        Some("GROUP")
    );
    let r = e.replica(Duration::from_secs(2 * 3600)).await;
    assert_eq!(r.expire(&id(&g), 1).await, ExpiryOutcome::Failed);
    let (_, got) = e.get(&format!("/v1/grants/{}", id(&g))).await;
    assert_eq!(got["state"], "failed");
    assert!(
        got["last_error"].as_str().unwrap().contains("group"),
        "{got}"
    );
    assert!(got["next_retry_at"].is_i64());
    // Retried later (I8): still failed, not retried in a loop.
    assert_eq!(r.expire(&id(&g), 1).await, ExpiryOutcome::Failed);
    let due = r.due_entries().await.unwrap();
    assert!(due.iter().any(|d| d.grant_id == id(&g)));
    let metrics = e.app.metrics().await;
    assert!(metrics.contains("jit_grants_failed_total"), "{metrics}");
    e.audit_ok().await;
}

async fn deleted_user_counts_as_gone(db: Db) {
    let e = env(db).await;
    let g = e.grant(BOB, "oncall", "1h").await;
    assert!(e.sim.is_member(ONCALL, BOB));
    let admin = e.sim.admin("admin@example.com");
    admin.deactivate_user(BOB).unwrap();
    admin.delete_user(BOB).unwrap();
    let r = e.replica(Duration::from_secs(2 * 3600)).await;
    assert_eq!(r.expire(&id(&g), 1).await, ExpiryOutcome::Done);
    assert_eq!(e.state(&id(&g)).await, "revoked");
    e.audit_ok().await;
}

async fn end_sessions_on_expiry(db: Db) {
    let e = env(db).await;
    let g = e.grant(ALICE, "oncall", "1h").await;
    let r = e.replica(Duration::from_secs(2 * 3600)).await;
    assert_eq!(r.expire(&id(&g), 1).await, ExpiryOutcome::Done);
    assert!(!e.sim.is_member(ONCALL, ALICE));
    assert_eq!(e.sim.sessions_cleared(ALICE), 1);
}

both_backends!(
    group_grant_lifecycle,
    app_and_role_grants,
    overlapping_grants_are_counted,
    standing_access_survives,
    inherited_at_revoke_fails_permanently,
    deleted_user_counts_as_gone,
    end_sessions_on_expiry,
);
