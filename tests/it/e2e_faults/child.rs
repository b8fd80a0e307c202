//! The broker binary as a child process, for tests where a crash (`kill -9`) is the point or
//! where `/metrics` must belong to one broker only (in-process apps share the global recorder),
//! plus the cross-checks every end-to-end test makes: okta-sim's memberships against the grants
//! table, per-membership removals from okta-sim's event log, Prometheus text parsing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jit_broker::api::auth::hash_token;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

pub const MEMBERSHIP: &str = "/api/v1/groups/{groupId}/users/{userId}";

/// How the broker is configured beyond the fixed part (database, Redis, okta-sim, policy, one
/// admin token): `JIT_*` environment overrides such as `("JIT_SCHEDULER__LEASE", "2s")`.
pub type Overrides = Vec<(&'static str, String)>;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `jit-broker serve` in a child process. Killed (SIGKILL) on drop; on a failing test its log is
/// printed.
pub struct ChildBroker {
    pub db: TestDb,
    pub base: String,
    pub http: reqwest::Client,
    dir: tempfile::TempDir,
    file: PathBuf,
    overrides: Overrides,
    child: Option<Child>,
    starts: u32,
}

impl ChildBroker {
    /// Writes the config file and starts the broker; returns once `/healthz` answers.
    pub async fn start(db: TestDb, okta_base: &str, overrides: Overrides) -> ChildBroker {
        Self::start_with_policy(db, okta_base, GRANTS_POLICY, overrides).await
    }

    pub async fn start_with_policy(
        db: TestDb,
        okta_base: &str,
        policy: &str,
        overrides: Overrides,
    ) -> ChildBroker {
        Self::start_with_config(db, okta_base, policy, "", overrides).await
    }

    /// As `start_with_policy`, with `extra` TOML appended to the config file (sections the
    /// fixed part does not have, such as `[[outbound.endpoints]]`).
    pub async fn start_with_config(
        db: TestDb,
        okta_base: &str,
        policy: &str,
        extra: &str,
        overrides: Overrides,
    ) -> ChildBroker {
        let dir = tempfile::tempdir().unwrap();
        let policy_file = dir.path().join("policy.toml");
        std::fs::write(&policy_file, policy).unwrap();
        let prefix = unique_prefix();
        let file = dir.path().join("broker.toml");
        let config = base_config(&db);
        std::fs::write(
            &file,
            format!(
                "[database]\nurl = \"{db}\"\nmax_connections = 5\n\
                 [redis]\nurl = \"{redis}\"\nkey_prefix = \"{prefix}\"\n\
                 [okta]\nbase_url = \"{okta}\"\nauth = \"ssws\"\n\
                 [policy]\nfile = \"{policy}\"\n\
                 [sync]\nschedule = \"\"\n\
                 [[auth.tokens]]\nname = \"admin\"\nroles = [\"admin\"]\nsha256 = \"{sha}\"\n{extra}\n",
                db = config.database.url,
                redis = redis_url(),
                okta = okta_base,
                policy = policy_file.display(),
                sha = hash_token(ADMIN_TOKEN),
            ),
        )
        .unwrap();
        let mut b = ChildBroker {
            db,
            base: String::new(),
            http: reqwest::Client::new(),
            dir,
            file,
            overrides,
            child: None,
            starts: 0,
        };
        b.spawn().await;
        b
    }

    /// Starts the process (again) with the same file and overrides, on a fresh port.
    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let port = free_port();
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jit-broker"));
        cmd.env_clear()
            .arg("--config")
            .arg(&self.file)
            .arg("serve")
            .env("JIT_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("JIT_OKTA__API_TOKEN", "sim-super-admin-token")
            .env("RUST_LOG", "warn,jit_broker=info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in &self.overrides {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap());
        self.base = format!("http://127.0.0.1:{port}");
        let (http, base) = (self.http.clone(), self.base.clone());
        crate::helpers::wait_healthy(&http, &base, Duration::from_secs(60)).await;
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.dir.path().join(format!("broker-{n}.log"))
    }

    /// Another replica of this broker: the same database, Redis prefix, policy and overrides, in
    /// its own process on its own port.
    pub async fn replica(&self) -> ChildBroker {
        self.replica_with(self.overrides.clone()).await
    }

    /// As [`ChildBroker::replica`], with its own `overrides` (a replica that is not armed to
    /// die at a crash point while this one is).
    pub async fn replica_with(&self, overrides: Overrides) -> ChildBroker {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::copy(&self.file, &file).unwrap();
        let mut b = ChildBroker {
            db: self.db.shared(),
            base: String::new(),
            http: reqwest::Client::new(),
            dir,
            file,
            overrides,
            child: None,
            starts: 0,
        };
        b.spawn().await;
        b
    }

    /// Sets (or replaces) one environment override for the next (re)start.
    // Used by the crash-point tests, which exist only in `test-hooks` builds.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub fn set_override(&mut self, key: &'static str, value: &str) {
        self.overrides.retain(|(k, _)| *k != key);
        self.overrides.push((key, value.to_string()));
    }

    /// Waits up to `timeout` for the process to end by itself (a crash point aborted it);
    /// returns whether it did. A process that ended is reaped, so `restart` may follow.
    // Used by the crash-point tests, which exist only in `test-hooks` builds.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub async fn wait_dead(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let done = match self.child.as_mut() {
                None => return true,
                Some(c) => c.try_wait().unwrap().is_some(),
            };
            if done {
                self.child = None;
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGKILL: no shutdown hook, no lock release, no settle.
    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("not running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// The same broker again: same database, same Redis prefix, same configuration.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        admin_get(&self.http, &self.base, path).await
    }

    /// Creates a grant and expects it active.
    pub async fn grant(&self, user: &str, resource: &str, duration: &str) -> Value {
        create_active_grant(&self.http, &self.base, user, resource, duration, "e2e").await
    }

    /// Every grant, through `GET /v1/grants` (paged).
    pub async fn grants(&self) -> Vec<Value> {
        list_grants(&self.http, &self.base).await
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `(id, state)` of every grant, read from the SQL store directly: valid while the broker is
    /// dead, when nothing can change them.
    pub async fn sql_states(&self) -> BTreeMap<String, String> {
        let store = jit_broker::store::Store::connect(&base_config(&self.db).database)
            .await
            .unwrap();
        let rows = sqlx::query("SELECT id, state FROM grants")
            .fetch_all(store.pool())
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                (
                    sqlx::Row::get::<String, _>(r, 0),
                    sqlx::Row::get::<String, _>(r, 1),
                )
            })
            .collect()
    }

    pub async fn audit_ok(&self) {
        let store = jit_broker::store::Store::connect(&base_config(&self.db).database)
            .await
            .unwrap();
        let report = jit_broker::audit::verify(&store).await.unwrap();
        assert!(report.ok(), "audit chain broken: {:?}", report.first_broken);
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for n in 1..=self.starts {
                let text = std::fs::read_to_string(self.log_path(n)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                eprintln!("--- broker run {n} (last lines) ---");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

pub async fn list_grants(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/grants?limit=500".to_string();
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let (_, page) = admin_get(http, base, &path).await;
        out.extend(page["grants"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => return out,
        }
    }
}

/// `(group id, user id)` of every membership okta-sim holds, read over its control API.
pub async fn sim_memberships(sim_base: &str) -> BTreeSet<(String, String)> {
    let state: Value = reqwest::get(format!("{sim_base}/_sim/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = BTreeSet::new();
    for g in state["groups"].as_array().unwrap() {
        let gid = g["id"].as_str().unwrap();
        for m in g["members"].as_array().unwrap() {
            out.insert((gid.to_string(), m.as_str().unwrap().to_string()));
        }
    }
    out
}

/// Memberships of the `managed` groups that neither existed before any grant (`standing`) nor
/// belong to a grant that is still live (`provisioning` or `active`): access nothing explains.
pub fn unexplained_access(
    members: &BTreeSet<(String, String)>,
    grants: &[Value],
    managed: &[&str],
    standing: &BTreeSet<(String, String)>,
) -> Vec<(String, String)> {
    let live: BTreeSet<(String, String)> = grants
        .iter()
        .filter(|g| matches!(g["state"].as_str(), Some("provisioning" | "active")))
        .map(|g| {
            (
                g["okta_id"].as_str().unwrap().to_string(),
                g["user_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    members
        .iter()
        .filter(|(g, _)| managed.contains(&g.as_str()))
        .filter(|m| !standing.contains(*m) && !live.contains(*m))
        .cloned()
        .collect()
}

/// [`removals`] once every membership in `expected` shows at least one: okta-sim hands events to
/// its log through a channel, so the newest ones appear a moment after the change.
pub async fn removals_of(
    sim: &okta_sim::SimHandle,
    expected: &[(String, String)],
) -> BTreeMap<(String, String), usize> {
    wait_until(Duration::from_secs(10), || async {
        let r = removals(sim);
        expected.iter().all(|m| r.contains_key(m))
    })
    .await;
    removals(sim)
}

/// Effective membership removals per `(group id, user id)`, from okta-sim's event log (a removal
/// of a non-member answers 204 but changes nothing and logs nothing).
pub fn removals(sim: &okta_sim::SimHandle) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for e in sim.events() {
        if e["eventType"] != "group.user_membership.remove" {
            continue;
        }
        let targets = e["target"].as_array().unwrap();
        let find = |t: &str| {
            targets
                .iter()
                .find(|x| x["type"] == t)
                .and_then(|x| x["id"].as_str())
                .unwrap()
                .to_string()
        };
        *out.entry((find("UserGroup"), find("User"))).or_default() += 1;
    }
    out
}

/// The sum of every series of `name` in Prometheus text whose labels contain all of `labels`
/// (`reason="timeout"`); 0 when absent.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (n == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}
