//! The one builder of a test broker with Okta: okta-sim, a policy file, the real application on
//! a fresh database and Redis prefix, optional people's tokens and extra seeded engineers; and
//! what tests do with it (call the API as the admin or as a person, drive expiry from a second
//! "replica" whose clock runs ahead).

use std::time::Duration;

use jit_broker::api::auth::TokenConfig;
use jit_broker::api::auth::{hash_token, Role};
use jit_broker::clock::Clock;
use jit_broker::grants::GrantService;
use jit_broker::okta::OktaClient;
use jit_broker::policy::{Policy, PolicyHandle};
use jit_broker::redis_conn::RedisConn;
use jit_broker::Config;
use jit_broker::RunOptions;
use okta_sim::seed::SeedUser;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;

/// The app, the simulator, and the directory holding the policy file.
pub struct Env {
    pub app: TestApp,
    pub sim: okta_sim::SimHandle,
    pub _dir: tempfile::TempDir,
}

type Tweak<'a> = Box<dyn FnOnce(&mut Config) + Send + 'a>;

/// How to build an [`Env`]: `EnvBuilder::new(db, POLICY).people().tweak(..).start()`.
pub struct EnvBuilder<'a> {
    db: Db,
    policy: String,
    sim: okta_sim::SimConfig,
    tweaks: Vec<Tweak<'a>>,
    clock: Option<Clock>,
}

/// The token of the person with this login (person tokens are named after Okta logins).
pub fn token_of(login: &str) -> String {
    format!("tok-{login}")
}

/// A token named after `login` with `roles`, whose secret is [`token_of`]`(login)`.
pub fn person(login: &str, roles: &[Role]) -> TokenConfig {
    TokenConfig {
        name: login.into(),
        roles: roles.to_vec(),
        sha256: hash_token(&token_of(login)),
    }
}

/// Extra engineers (requesters, in the engineering group): `eng1@example.com` … `eng8@…`.
pub const ENGINEERS: usize = 8;

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

impl<'a> EnvBuilder<'a> {
    pub fn new(db: Db, policy: &str) -> Self {
        EnvBuilder {
            db,
            policy: policy.to_string(),
            sim: okta_sim::SimConfig::default(),
            tweaks: Vec::new(),
            clock: None,
        }
    }

    /// Runs the app on `clock` (a controlled "now") instead of the system clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Changes the configuration (applied in order, after okta-sim and the policy are set).
    pub fn tweak(mut self, f: impl FnOnce(&mut Config) + Send + 'a) -> Self {
        self.tweaks.push(Box::new(f));
        self
    }

    /// Tokens for the seeded people, named after their logins: alice a requester; bob, carol
    /// and dave approvers and requesters; a `portal`.
    pub fn people(self) -> Self {
        self.tweak(|c| {
            for (login, roles) in [
                ("alice@example.com", vec![Role::Requester]),
                ("bob@example.com", vec![Role::Approver, Role::Requester]),
                ("carol@example.com", vec![Role::Approver, Role::Requester]),
                ("dave@example.com", vec![Role::Approver, Role::Requester]),
                ("portal", vec![Role::Portal]),
            ] {
                c.auth.tokens.push(person(login, &roles));
            }
        })
    }

    /// [`ENGINEERS`] more users in okta-sim's engineering group, each with a requester token.
    pub fn engineers(mut self) -> Self {
        for i in 1..=ENGINEERS {
            let u = engineer(i);
            if let Some(g) = self
                .sim
                .seed
                .groups
                .iter_mut()
                .find(|g| g.id == ENGINEERING)
            {
                g.members.push(u.id.clone());
            }
            self.sim.seed.users.push(u);
        }
        self.tweak(|c| {
            for i in 1..=ENGINEERS {
                c.auth
                    .tokens
                    .push(person(&format!("eng{i}@example.com"), &[Role::Requester]));
            }
        })
    }

    /// Changes okta-sim's configuration before it starts.
    pub fn sim(mut self, f: impl FnOnce(&mut okta_sim::SimConfig)) -> Self {
        f(&mut self.sim);
        self
    }

    /// Turns on Okta access tokens from okta-sim's `default` authorization server (audience
    /// `api://default`), the keys refetched at most once a minute.
    pub fn okta_tokens(self) -> Self {
        self.tweak(|c| {
            c.access_tokens.issuer = format!("{}/oauth2/default", c.okta.base_url);
            c.access_tokens.audience = "api://default".into();
            c.access_tokens.jwks_refresh_min_interval = Duration::from_secs(60);
        })
    }

    pub async fn start(self) -> Env {
        self.start_split(|_| {}).await.0
    }

    /// Starts the app with `app_only` applied to its configuration alone; returns the Env and
    /// the configuration without it (what a second component beside the app is built from).
    pub async fn start_split(self, app_only: impl FnOnce(&mut Config)) -> (Env, Config) {
        let sim = okta_sim::spawn(self.sim).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, &self.policy).unwrap();
        let tdb = TestDb::new(self.db).await;
        let mut config = base_config(&tdb);
        okta_config(&mut config, &sim.base_url());
        config.policy.file = Some(path);
        for t in self.tweaks {
            t(&mut config);
        }
        let mut app_config = config.clone();
        app_only(&mut app_config);
        let options = match self.clock {
            Some(clock) => RunOptions { clock },
            None => RunOptions::default(),
        };
        let app = spawn_app_with(tdb, app_config, options).await;
        (
            Env {
                app,
                sim,
                _dir: dir,
            },
            config,
        )
    }
}

pub async fn env_with(db: Db, policy: &str, tweak: impl FnOnce(&mut Config) + Send) -> Env {
    EnvBuilder::new(db, policy).tweak(tweak).start().await
}

pub async fn env_with_policy(db: Db, policy: &str) -> Env {
    EnvBuilder::new(db, policy).start().await
}

/// A clock reading `ahead` later than the wall clock.
pub fn clock_ahead(ahead: Duration) -> Clock {
    Clock::tokio_at(chrono::Utc::now().timestamp_millis() + ahead.as_millis() as i64)
}

/// A grants service on `app`'s database, Redis and Okta (another "replica") with `clock`, the
/// app's policy file, and the app's configuration as `tweak` leaves it.
pub async fn grants_service(
    app: &TestApp,
    clock: Clock,
    tweak: impl FnOnce(&mut Config),
) -> GrantService {
    let mut cfg = app.config.clone();
    tweak(&mut cfg);
    let okta = OktaClient::new(&cfg.okta, clock.clone()).unwrap();
    // Learn the credential's capabilities like `serve` does; okta-sim may not serve the
    // probe's `GET /api/v1/users/me`, and an unprobed client lets Okta answer per call.
    let _ = okta.probe_capabilities().await;
    let policy = match &cfg.policy.file {
        Some(p) => Policy::load(p).unwrap(),
        None => Policy::parse(GRANTS_POLICY).unwrap(),
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

/// The `id` of a grant or request in a JSON answer.
pub fn id(g: &Value) -> String {
    g["id"].as_str().unwrap().to_string()
}

/// An error answer's `code`.
pub fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or("")
}

impl Env {
    /// Another replica whose clock reads `ahead` later than the wall clock.
    pub async fn replica(&self, ahead: Duration) -> GrantService {
        Self::replica_of(&self.app, ahead).await
    }

    /// A grants service on `app`'s database, Redis and Okta whose clock reads `ahead` later than
    /// the wall clock (another "replica"), with `app`'s policy file.
    pub async fn replica_of(app: &TestApp, ahead: Duration) -> GrantService {
        grants_service(app, clock_ahead(ahead), |_| {}).await
    }

    /// `POST` as the admin token.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        admin_post(&self.app.http, &self.app.base, path, body).await
    }

    /// `GET` as the admin token.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        admin_get(&self.app.http, &self.app.base, path).await
    }

    /// `POST` as the person `login` (their token, see [`EnvBuilder::people`]).
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

    /// An access token okta-sim's `default` server signs for `login` with `scopes`.
    pub fn jwt(&self, login: &str, scopes: &[&str]) -> String {
        self.sim
            .mint_access_token(&okta_sim::authz::MintSpec {
                login: login.into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
            .unwrap()
    }

    /// `POST` with `bearer` (any token: static, Okta, forged).
    pub async fn post_bearer(&self, bearer: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .app
            .http
            .post(self.app.url(path))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET` with `bearer`.
    pub async fn get_bearer(&self, bearer: &str, path: &str) -> (StatusCode, Value) {
        let r = self
            .app
            .http
            .get(self.app.url(path))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates a grant as the admin and expects it active.
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

    /// A grant's state, read through the API.
    pub async fn state(&self, id: &str) -> String {
        let (s, g) = self.get(&format!("/v1/grants/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{g}");
        g["state"].as_str().unwrap().to_string()
    }

    /// Asks for access as `login`; returns the answer.
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

    /// A request as the admin reads it.
    pub async fn show(&self, id: &str) -> Value {
        let (s, b) = self.get(&format!("/v1/requests/{id}")).await;
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

    /// The audit chain verifies.
    pub async fn audit_ok(&self) {
        let store = self.app.store().await;
        let report = jit_broker::audit::verify(&store).await.unwrap();
        assert!(report.ok(), "audit chain broken: {:?}", report.first_broken);
        store.close().await;
    }
}
