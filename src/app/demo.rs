//! `jit-broker demo`: the broker in one command, against a simulated Okta org.
//!
//! Why it exists: trying the broker should not need an Okta org, a policy or a token. The demo
//! starts okta-sim in process (its default seed: a few users, groups, apps and roles), writes the
//! example policy whose ids match that seed, keeps its SQLite database in a directory of its own,
//! adds a fresh admin token, and then runs exactly what `serve` runs.
//!
//! What it must never do: be part of a production build (it exists only with the cargo feature
//! `demo`, off by default, so release images carry no simulator), or touch a real org or
//! database: every Okta setting is replaced, and SQL is a file of its own unless the
//! configuration names PostgreSQL (the docker-compose demo's own database).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::Config;
use crate::api::auth::Role;
use crate::api::auth::TokenConfig;
use crate::okta::OktaAuthMethod;

/// The policy the demo serves: the example file, whose ids are okta-sim's default seed.
pub const DEMO_POLICY: &str = include_str!("../../config/resources.example.toml");

/// okta-sim's built-in super-admin token (a simulator credential, not a secret).
const SIM_TOKEN: &str = "sim-super-admin-token";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the simulated Okta org")]
    Sim(#[source] okta_sim::SimError),
    #[error("cannot write the demo files in {}", .0.display())]
    Files(PathBuf, #[source] std::io::Error),
    /// Checked before the guide is printed, so a newcomer without Redis reads what to do
    /// rather than a guide whose every command then fails.
    #[error(
        "the demo needs Redis and cannot reach it at {url} (redis.url): start one \
         (`docker run -d -p 6379:6379 redis:7`, or `redis-server`) or point the demo at yours \
         with JIT_REDIS__URL=redis://HOST:PORT"
    )]
    Redis {
        url: String,
        #[source]
        source: crate::redis_conn::RedisError,
    },
}

/// Connects to the configured Redis and pings it.
pub async fn check_redis(config: &Config) -> Result<(), DemoError> {
    let fail = |source| DemoError::Redis {
        url: crate::store::redact_url(&config.redis.url),
        source,
    };
    let redis = crate::redis_conn::RedisConn::connect(&config.redis)
        .await
        .map_err(fail)?;
    redis.ping().await.map_err(fail)
}

/// A prepared demo: the configuration `serve` will run with, the admin token to print, and the
/// simulator (it stops when this is dropped).
pub struct Demo {
    pub config: Config,
    pub token: String,
    pub sim: okta_sim::SimHandle,
}

/// Starts the simulator and rewrites `config` to use it, the demo policy, SQLite in `dir` (unless
/// the configuration names PostgreSQL), and a new admin token. Redis and the listen address stay
/// as configured (the local Redis under the key prefix `jit-demo` unless one was chosen); Redis
/// is checked first ([`check_redis`]).
pub async fn prepare(mut config: Config, dir: &Path) -> Result<Demo, DemoError> {
    check_redis(&config).await?;
    let files = |e| DemoError::Files(dir.to_path_buf(), e);
    std::fs::create_dir_all(dir).map_err(files)?;
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, DEMO_POLICY).map_err(files)?;
    let sim = okta_sim::spawn(okta_sim::SimConfig::default())
        .await
        .map_err(DemoError::Sim)?;
    // PostgreSQL when the configuration names it (the docker-compose demo), else SQLite here.
    if !config.database.url.starts_with("postgres") {
        config.database.url = format!("sqlite://{}", dir.join("demo.db").display());
        config.database.password = None;
        config.database.password_file = None;
    }
    config.okta.base_url = sim.base_url();
    config.okta.auth = OktaAuthMethod::Ssws;
    config.okta.api_token = Some(SecretString::from(SIM_TOKEN));
    config.policy.file = Some(policy);
    if config.redis.key_prefix == "jit" {
        config.redis.key_prefix = "jit-demo".into();
    }
    // Signed audit checkpoints from the start: a key of the demo's own, kept in its directory
    // (made once, reused by later runs so their checkpoints verify with the same key).
    if config.audit.signing_key.is_none() {
        config.audit.signing_key = Some(demo_signing_key(dir).map_err(files)?);
    }
    let token = format!("demo-{}", uuid::Uuid::new_v4().simple());
    config.auth.tokens.push(TokenConfig {
        name: "demo-admin".into(),
        roles: vec![Role::Admin],
        sha256: crate::config::hash_token(&token),
    });
    Ok(Demo { config, token, sim })
}

/// The demo's checkpoint signing key, `audit-signing-key` in `dir`, created on first use.
fn demo_signing_key(dir: &Path) -> Result<SecretString, std::io::Error> {
    let path = dir.join("audit-signing-key");
    if !path.exists() {
        let (skey, vkey) = crate::audit::checkpoint::generate_key("jit-broker-demo")
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        crate::cli::audit::write_private(&path, secrecy::ExposeSecret::expose_secret(&skey))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::write(dir.join("audit-verifier-key"), format!("{vkey}\n"))?;
    }
    Ok(SecretString::from(
        std::fs::read_to_string(&path)?.trim().to_string(),
    ))
}

/// What to try, printed once the broker listens on `addr`.
pub fn instructions(demo: &Demo, addr: SocketAddr) -> String {
    let t = &demo.token;
    format!(
        "jit-broker demo: the broker on http://{addr}, a simulated Okta org on {sim}\n\
         admin token: {t}\n\n\
         Give alice the prod-admins group for 30 seconds:\n  \
         curl -s -XPOST http://{addr}/v1/grants -H 'Authorization: Bearer {t}' \
         -H 'content-type: application/json' \\\n    \
         -d '{{\"user\":\"alice@example.com\",\"resource\":\"prod-admins\",\"duration\":\"30s\",\"reason\":\"trying the demo\"}}'\n\
         Watch it (state active, then revoked after 30 s):\n  \
         curl -s http://{addr}/v1/grants -H 'Authorization: Bearer {t}'\n\
         The audit log, and its newest signed checkpoint (key in the demo directory):\n  \
         curl -s http://{addr}/v1/audit -H 'Authorization: Bearer {t}'\n  \
         curl -s http://{addr}/v1/audit/checkpoint -H 'Authorization: Bearer {t}'\n\
         Okta's side (okta-sim's state):\n  \
         curl -s {sim}/_sim/state\n\
         Metrics: curl -s http://{addr}/metrics\n\
         Stop with Ctrl-C.\n",
        sim = demo.sim.base_url(),
    )
}
