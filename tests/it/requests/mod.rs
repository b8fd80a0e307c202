//! Requests and approvals end to end: the real application over HTTP, okta-sim over HTTP, real
//! Redis and both SQL backends. Tokens are named after Okta logins, as in production: a
//! requester token asks for itself, an approver token decides as that person.

mod api;
mod callbacks;
mod cli;
mod outbound;
mod races;

use std::time::Duration;

use jit_broker::api::auth::TokenConfig;
use jit_broker::api::auth::{hash_token, Role};
use jit_broker::Config;
use jit_broker::RunOptions;
use okta_sim::seed::SeedUser;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

pub const ALICE: &str = "00u1alice00000000001";
pub const BOB: &str = "00u1bob0000000000002";
pub const CAROL: &str = "00u1carol00000000003";
pub const DAVE: &str = "00u1dave000000000004";
pub const PROD_ADMINS: &str = "00g1prodadmins000001";
pub const DB_OWNERS: &str = "00g1dbowners00000002";
pub const PAYROLL: &str = "0oa1payroll000000001";

/// Extra engineers (requesters) for the race tests: `eng1@example.com` … `eng8@example.com`.
pub const ENGINEERS: usize = 8;

pub const POLICY: &str = r#"
[[resource]]
name = "prod-admins"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
require_reason = true
approvers = { okta_groups = ["00g1dbowners00000002"] }
approvals_required = 1
requesters = { okta_groups = ["00g1engineering00004"] }
auto_approve = { okta_groups = ["00g1oncall0000000003"], max_duration = "1h" }

[[resource]]
name = "payroll"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "30m"
max_duration = "2h"
approvers = { users = ["bob@example.com", "carol@example.com", "dave@example.com"] }
approvals_required = 2
ticket_pattern = "^[A-Z]+-[0-9]+$"

[[resource]]
name = "user-admin"
kind = "okta_role"
okta_id = "USER_ADMIN"
default_duration = "30m"
max_duration = "2h"
break_glass = true
break_glass_max_duration = "15m"
stages = [
  { name = "owners", approvers = { users = ["bob@example.com"] }, approvals_required = 1 },
  { name = "security", approvers = { users = ["carol@example.com"] }, approvals_required = 1 },
]

[[resource]]
name = "aws-prod"
kind = "okta_app"
okta_id = "0oa1awsprod000000002"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com"] }
approval_step_up = "10m"

[[resource]]
name = "any-one"
kind = "okta_group"
okta_id = "00g1engineering00004"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com", "carol@example.com", "dave@example.com"] }
approvals_required = 1

[[resource]]
name = "all-three"
kind = "okta_group"
okta_id = "00g1oncall0000000003"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com", "carol@example.com", "dave@example.com"] }
approvals_required = 3
"#;

pub const CALLBACK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub struct Env {
    pub app: TestApp,
    pub sim: okta_sim::SimHandle,
    pub _dir: tempfile::TempDir,
}

/// The token of the person with this login (tokens are named after logins).
pub fn token_of(login: &str) -> String {
    format!("tok-{login}")
}

fn person(login: &str, roles: &[Role]) -> TokenConfig {
    TokenConfig {
        name: login.into(),
        roles: roles.to_vec(),
        sha256: hash_token(&token_of(login)),
    }
}

fn engineer(i: usize) -> SeedUser {
    SeedUser {
        id: format!("00u1eng{i:013}"),
        login: format!("eng{i}@example.com"),
        first_name: format!("Eng{i}"),
        last_name: "Test".into(),
        email: None,
        status: "ACTIVE".into(),
    }
}

pub async fn env(db: Db) -> Env {
    env_with(db, |_| {}).await
}

pub async fn env_with(db: Db, tweak: impl FnOnce(&mut Config)) -> Env {
    let mut sc = okta_sim::SimConfig::default();
    for i in 1..=ENGINEERS {
        let u = engineer(i);
        if let Some(g) = sc
            .seed
            .groups
            .iter_mut()
            .find(|g| g.id == "00g1engineering00004")
        {
            g.members.push(u.id.clone());
        }
        sc.seed.users.push(u);
    }
    let sim = okta_sim::spawn(sc).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();
    let tdb = TestDb::new(db).await;
    let mut config = base_config(&tdb);
    crate::grants::okta_config(&mut config, &sim.base_url());
    config.policy.file = Some(path);
    config.notify.poll_interval = Duration::from_millis(20);
    for (login, roles) in [
        ("alice@example.com", vec![Role::Requester]),
        ("bob@example.com", vec![Role::Approver, Role::Requester]),
        ("carol@example.com", vec![Role::Approver, Role::Requester]),
        ("dave@example.com", vec![Role::Approver, Role::Requester]),
        ("portal", vec![Role::Portal]),
    ] {
        config.auth.tokens.push(person(login, &roles));
    }
    for i in 1..=ENGINEERS {
        config
            .auth
            .tokens
            .push(person(&format!("eng{i}@example.com"), &[Role::Requester]));
    }
    config.callbacks.integrations = vec![jit_broker::callbacks::IntegrationConfig {
        name: "servicenow".into(),
        secret: Some(secrecy::SecretString::from(CALLBACK_SECRET)),
        secret_file: None,
        trusted_for_step_up: false,
    }];
    tweak(&mut config);
    let app = spawn_app_with(tdb, config, RunOptions::default()).await;
    Env {
        app,
        sim,
        _dir: dir,
    }
}

impl Env {
    /// `POST` as the person `login` (their token).
    pub async fn post_as(&self, login: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .app
            .http
            .post(self.app.url(path))
            .bearer_auth(token_of(login))
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_as(&self, login: &str, path: &str) -> (StatusCode, Value) {
        let r = self
            .app
            .http
            .get(self.app.url(path))
            .bearer_auth(token_of(login))
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Asks for `resource` as `login`; returns the answer.
    pub async fn request(&self, login: &str, body: Value) -> (StatusCode, Value) {
        self.post_as(login, "/v1/requests", body).await
    }

    /// A pending request by `login`; returns its id.
    pub async fn pending(&self, login: &str, body: Value) -> String {
        let (s, b) = self.request(login, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        assert_eq!(b["request"]["state"], "pending", "{b}");
        b["request"]["id"].as_str().unwrap().to_string()
    }

    pub async fn decide(
        &self,
        login: &str,
        id: &str,
        verdict: &str,
        comment: &str,
    ) -> (StatusCode, Value) {
        self.post_as(
            login,
            &format!("/v1/requests/{id}/{verdict}"),
            json!({ "comment": comment }),
        )
        .await
    }

    pub async fn show(&self, id: &str) -> Value {
        let (s, b) = admin_get(
            &self.app.http,
            &self.app.base,
            &format!("/v1/requests/{id}"),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    /// Rows in a table (for "changed nothing" checks).
    pub async fn count(&self, table: &str) -> i64 {
        use sqlx::Row;
        let store = self.app.store().await;
        let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(store.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        store.close().await;
        n
    }

    /// (requests, decisions, grants, audit entries): what a refused call must leave unchanged.
    pub async fn footprint(&self) -> (i64, i64, i64, i64) {
        (
            self.count("requests").await,
            self.count("request_decisions").await,
            self.count("grants").await,
            self.count("audit_log").await,
        )
    }

    pub async fn audit_ok(&self) {
        let store = self.app.store().await;
        let report = jit_broker::audit::verify(&store).await.unwrap();
        assert!(report.ok(), "audit chain broken: {:?}", report.first_broken);
        store.close().await;
    }
}

pub fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or("")
}
