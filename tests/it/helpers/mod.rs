//! Shared test scaffolding: `spawn_app`, per-test databases and Redis prefixes, polling waits;
//! the seeded Okta org's ids (`okta`), the policies many tests share (`policies`), and the one
//! builder of a broker with okta-sim, a policy file and people's tokens (`env`).

#![allow(dead_code)]

mod env;
mod okta;
mod oncall;
mod policies;
mod proxy;

pub use env::*;
pub use okta::*;
pub use oncall::*;
pub use policies::*;
pub use proxy::*;

use std::future::Future;
use std::time::Duration;

use jit_broker::api::auth::TokenConfig;
use jit_broker::api::auth::{hash_token, Role};
use jit_broker::store::Store;
use jit_broker::Config;
use jit_broker::{RunError, RunOptions};
use sqlx::Connection;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Runs `async fn $name(db: Db)` once on SQLite and once on PostgreSQL.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Db::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Db::Postgres).await
                }
            }
        )*
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const AUDITOR_TOKEN: &str = "test-auditor-token";
pub const REQUESTER_TOKEN: &str = "test-requester-token";
pub const APPROVER_TOKEN: &str = "test-approver-token";

/// Where PostgreSQL is; CI and the dev machine have it on loopback with trust auth.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A database that exists only for one test.
pub struct TestDb {
    pub url: String,
    pub kind: Db,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(kind: Db) -> TestDb {
        match kind {
            Db::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("jit.db").display());
                TestDb {
                    url,
                    kind,
                    _dir: Some(dir),
                }
            }
            Db::Postgres => {
                let name = format!("jit_test_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL must answer on 127.0.0.1:5432 (see README)");
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let mut url = url::Url::parse(&admin).unwrap();
                url.set_path(&name);
                TestDb {
                    url: url.to_string(),
                    kind,
                    _dir: None,
                }
            }
        }
    }
}

impl TestDb {
    /// The same database for a second broker (a replica, or the one after a crash); the
    /// original keeps owning it.
    pub fn shared(&self) -> TestDb {
        TestDb {
            url: self.url.clone(),
            kind: self.kind,
            _dir: None,
        }
    }
}

/// A unique prefix, so tests sharing one Redis never see each other's keys.
pub fn unique_prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// The configuration every test starts from: defaults, a fresh database, a unique prefix,
/// four tokens with one role each.
pub fn base_config(db: &TestDb) -> Config {
    let mut config = Config::load_with_env(None, Vec::new()).unwrap();
    config.database.url = db.url.clone();
    config.database.max_connections = 5;
    config.redis.url = redis_url();
    config.redis.key_prefix = unique_prefix();
    config.server.shutdown_grace = Duration::from_secs(5);
    // No scheduled inventory sync: a test that wants one runs it (tests/it/sync.rs).
    config.sync.schedule = String::new();
    config.auth.tokens = vec![
        token("admin", Role::Admin, ADMIN_TOKEN),
        token("auditor", Role::Auditor, AUDITOR_TOKEN),
        token("requester", Role::Requester, REQUESTER_TOKEN),
        token("approver", Role::Approver, APPROVER_TOKEN),
    ];
    config
}

fn token(name: &str, role: Role, secret: &str) -> TokenConfig {
    TokenConfig {
        name: name.into(),
        roles: vec![role],
        sha256: hash_token(secret),
    }
}

/// The real application, serving on a loopback port chosen by the OS.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub config: Config,
    pub db: TestDb,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), RunError>>>,
}

pub async fn spawn_app(kind: Db) -> TestApp {
    let db = TestDb::new(kind).await;
    let config = base_config(&db);
    spawn_app_with(db, config, RunOptions::default()).await
}

pub async fn spawn_app_with(db: TestDb, config: Config, options: RunOptions) -> TestApp {
    // `JIT_TEST_LOG=warn` (an `EnvFilter`) shows the in-process brokers' logs in a test's
    // output, for a failure whose answer says only "see the broker's log"; silent otherwise.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("JIT_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let (addr, tx, handle) = start_broker(config.clone(), options).await;
    let app = TestApp {
        addr,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        config,
        db,
        shutdown: Some(tx),
        handle: Some(handle),
    };
    // Ready when /healthz answers (migrations have run by then: they precede binding routes).
    wait_healthy(&app.http, &app.base, Duration::from_secs(30)).await;
    app
}

/// `run_with(config)` on a fresh loopback port, in a spawned task: its address, the shutdown
/// sender and the task. Does not wait for readiness (see [`wait_healthy`]).
pub async fn start_broker(
    config: Config,
    options: RunOptions,
) -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), RunError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        jit_broker::run_with(
            config,
            listener,
            async move {
                let _ = rx.await;
            },
            options,
        )
        .await
    });
    (addr, tx, handle)
}

/// `POST {base}{path}` as the admin token: status and JSON body (`null` if not JSON).
pub async fn admin_post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    let r = http
        .post(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// `GET {base}{path}` as the admin token: status and JSON body (`null` if not JSON).
pub async fn admin_get(
    http: &reqwest::Client,
    base: &str,
    path: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    let r = http
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Creates a grant over HTTP as the admin and asserts it is `201` and `active`.
pub async fn create_active_grant(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    resource: &str,
    duration: &str,
    reason: &str,
) -> serde_json::Value {
    let (s, g) = admin_post(
        http,
        base,
        "/v1/grants",
        serde_json::json!({"user": user, "resource": resource, "duration": duration, "reason": reason}),
    )
    .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{g}");
    assert_eq!(g["state"], "active", "{g}");
    g
}

/// Polls `{base}/healthz` until it answers 2xx (panics after `timeout`, like `wait_until`).
pub async fn wait_healthy(http: &reqwest::Client, base: &str, timeout: Duration) {
    wait_until(timeout, || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

impl TestApp {
    /// The broker's Prometheus text from `/metrics` (panics if it does not answer).
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A store on the same database, for assertions and for tampering.
    pub async fn store(&self) -> Store {
        Store::connect(&self.config.database).await.unwrap()
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), RunError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.unwrap(),
            None => Ok(()),
        }
    }

    /// Stops the application cleanly and hands back its database and configuration, so a test
    /// can start it again on the same data (a restart).
    pub async fn stop_keep(mut self) -> (TestDb, Config) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        let kind = self.db.kind;
        let db = std::mem::replace(
            &mut self.db,
            TestDb {
                url: String::new(),
                kind,
                _dir: None,
            },
        );
        (db, self.config.clone())
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn join(mut self) -> Result<(), RunError> {
        match self.handle.take() {
            Some(h) => h.await.unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `cond` until it holds or `timeout` passes (then panics). Never a fixed sleep.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh, migrated database and a store on it, for tests that need no HTTP server.
pub async fn fresh_store(kind: Db) -> (TestDb, Store) {
    let db = TestDb::new(kind).await;
    let config = base_config(&db);
    let store = Store::connect(&config.database).await.unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

/// The built `jit-broker` binary with a clean environment: no `JIT_*` variable leaks in from
/// the developer's shell.
pub fn broker_cmd() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_jit-broker"));
    cmd.env_clear();
    cmd.env("RUST_LOG", "warn");
    cmd
}
