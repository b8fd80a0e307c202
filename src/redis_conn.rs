//! The Redis connection and key naming.
//!
//! Why it exists: Redis holds the expiry index, locks and dedup sets (never the record: see
//! invariant I3). Every key goes through [`RedisConn::key`], so one broker's keys live under its
//! configured prefix inside one Redis Cluster hash tag (`{prefix}:…`). Keeping every key in one
//! slot is what lets a Lua script touch several of them on a cluster.
//!
//! `redis.url` picks one of three deployments, all through the `redis` crate's own support:
//! - `redis://host:port[/db]` (or `rediss://`): one node, through its reconnecting
//!   `ConnectionManager`;
//! - `redis+sentinel://[user:password@]sentinel1:26379[,sentinel2:26379…]/master_name[/db]`:
//!   the crate's Sentinel discovery finds the current primary; a command that fails on a dead or
//!   demoted primary (I/O error, `READONLY`) makes the next caller ask the sentinels again, so
//!   the broker follows a failover within about one command timeout;
//! - `redis+cluster://[user:password@]node1:6379[,node2:6379…]`: the crate's async cluster
//!   connection (all our keys hash to one slot, so scripts and transactions stay on one node).
//!
//! [`RedisConn::conn`] hands out a [`RedisHandle`] that implements the crate's
//! `aio::ConnectionLike`, so callers write `query_async(&mut redis.conn())` whatever the mode.
//!
//! What it must never do: build a key by hand elsewhere, or block the caller forever when Redis
//! is down (connections reconnect; every command has a response timeout).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::config::RedisConfig;
use crate::error::ErrorCode;

mod topology;
pub use topology::RedisTopology;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("cannot reach Redis")]
    Connect(#[source] redis::RedisError),
    #[error("Redis command failed")]
    Command(#[from] redis::RedisError),
    /// `redis.url` names a Sentinel master the sentinels do not know (or none answered).
    #[error("redis.url: no sentinel knows a master named `{master}`")]
    UnknownMaster {
        master: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("redis.url: {0}")]
    Url(String),
}

impl ErrorCode for RedisError {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }
    fn code(&self) -> &'static str {
        "redis_unavailable"
    }
}

/// A Redis connection plus the key prefix. Cheap to clone (clones share the connections).
#[derive(Clone)]
pub struct RedisConn {
    backend: Backend,
    prefix: String,
}

// One per process, cloned with each `RedisConn` (a few hundred bytes); boxing the connection
// manager would add a pointer chase to every command for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Backend {
    Single {
        manager: ConnectionManager,
        client: Box<redis::Client>,
    },
    Sentinel(Arc<SentinelBackend>),
    Cluster {
        conn: ClusterConnection,
        /// A client for one seed node: PUBLISH reaches every node of a cluster, so one node's
        /// pub/sub is enough for the wake-up listener.
        pubsub: Box<redis::Client>,
    },
}

/// The Sentinel mode's state: the sentinels and the connection to the primary they named last.
struct SentinelBackend {
    sentinel: tokio::sync::Mutex<Sentinel>,
    master: String,
    node: SentinelNodeConnectionInfo,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// The current primary's connection, and a generation bumped at every rediscovery (so
    /// several callers failing together rediscover once).
    current: RwLock<(ConnectionManager, redis::Client, u64)>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.backend {
            Backend::Single { .. } => "single",
            Backend::Sentinel(_) => "sentinel",
            Backend::Cluster { .. } => "cluster",
        };
        f.debug_struct("RedisConn")
            .field("mode", &mode)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn manager_config(cfg_connect: Duration, cfg_response: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(cfg_connect)
        .set_response_timeout(cfg_response)
        .set_number_of_retries(2)
        .set_max_delay(2_000)
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::IoError, "timed out connecting"))
}

async fn new_manager(
    client: redis::Client,
    connect: Duration,
    response: Duration,
) -> Result<ConnectionManager, redis::RedisError> {
    tokio::time::timeout(
        connect + Duration::from_secs(1),
        ConnectionManager::new_with_config(client, manager_config(connect, response)),
    )
    .await
    .map_err(|_| timed_out())?
}

impl RedisConn {
    pub async fn connect(cfg: &RedisConfig) -> Result<RedisConn, RedisError> {
        let topology = RedisTopology::parse(&cfg.url).map_err(RedisError::Url)?;
        let backend = match topology {
            RedisTopology::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(RedisError::Connect)?;
                let manager =
                    new_manager(client.clone(), cfg.connect_timeout, cfg.response_timeout)
                        .await
                        .map_err(RedisError::Connect)?;
                Backend::Single {
                    manager,
                    client: Box::new(client),
                }
            }
            RedisTopology::Sentinel {
                sentinels,
                master,
                db,
                username,
                password,
            } => {
                let sentinel = Sentinel::build(sentinels).map_err(RedisError::Connect)?;
                let node = SentinelNodeConnectionInfo {
                    tls_mode: None,
                    redis_connection_info: Some(redis::RedisConnectionInfo {
                        db,
                        username,
                        password,
                        ..Default::default()
                    }),
                };
                let backend = SentinelBackend::start(sentinel, master, node, cfg).await?;
                Backend::Sentinel(Arc::new(backend))
            }
            RedisTopology::Cluster {
                nodes,
                username,
                password,
            } => {
                let pubsub = redis::Client::open(nodes[0].as_str()).map_err(RedisError::Connect)?;
                let mut b = redis::cluster::ClusterClientBuilder::new(nodes)
                    .connection_timeout(cfg.connect_timeout)
                    .response_timeout(cfg.response_timeout);
                if let Some(u) = username {
                    b = b.username(u);
                }
                if let Some(p) = password {
                    b = b.password(p);
                }
                let client = b.build().map_err(RedisError::Connect)?;
                let conn = tokio::time::timeout(
                    cfg.connect_timeout + Duration::from_secs(1),
                    client.get_async_connection(),
                )
                .await
                .map_err(|_| RedisError::Connect(timed_out()))?
                .map_err(RedisError::Connect)?;
                Backend::Cluster {
                    conn,
                    pubsub: Box::new(pubsub),
                }
            }
        };
        Ok(RedisConn {
            backend,
            prefix: cfg.key_prefix.clone(),
        })
    }

    /// `{prefix}:name`: the braces are a Redis Cluster hash tag, so all our keys share a slot.
    pub fn key(&self, name: &str) -> String {
        format!("{{{}}}:{}", self.prefix, name)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A handle for commands (`query_async(&mut redis.conn())`). Clones share the connection.
    pub fn conn(&self) -> RedisHandle {
        match &self.backend {
            Backend::Single { manager, .. } => RedisHandle(Handle::Manager(manager.clone())),
            Backend::Cluster { conn, .. } => RedisHandle(Handle::Cluster(conn.clone())),
            Backend::Sentinel(s) => {
                let (manager, generation) = s.current();
                RedisHandle(Handle::Sentinel {
                    manager,
                    generation,
                    backend: s.clone(),
                })
            }
        }
    }

    /// A client for a dedicated connection (the scheduler's pub/sub wake-up listener): the
    /// node itself, the current primary under Sentinel, one seed node of a cluster.
    pub fn client(&self) -> redis::Client {
        match &self.backend {
            Backend::Single { client, .. } => (**client).clone(),
            Backend::Cluster { pubsub, .. } => (**pubsub).clone(),
            Backend::Sentinel(s) => s.client(),
        }
    }

    /// Readiness probe.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.conn();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }
}

impl SentinelBackend {
    async fn start(
        mut sentinel: Sentinel,
        master: String,
        node: SentinelNodeConnectionInfo,
        cfg: &RedisConfig,
    ) -> Result<SentinelBackend, RedisError> {
        let (manager, client) = Self::discover(
            &mut sentinel,
            &master,
            &node,
            cfg.connect_timeout,
            cfg.response_timeout,
        )
        .await?;
        Ok(SentinelBackend {
            sentinel: tokio::sync::Mutex::new(sentinel),
            master,
            node,
            connect_timeout: cfg.connect_timeout,
            response_timeout: cfg.response_timeout,
            current: RwLock::new((manager, client, 0)),
        })
    }

    /// Asks the sentinels for the primary and connects to it.
    async fn discover(
        sentinel: &mut Sentinel,
        master: &str,
        node: &SentinelNodeConnectionInfo,
        connect: Duration,
        response: Duration,
    ) -> Result<(ConnectionManager, redis::Client), RedisError> {
        let client = tokio::time::timeout(
            connect + Duration::from_secs(1),
            sentinel.async_master_for(master, Some(node)),
        )
        .await
        .map_err(|_| RedisError::Connect(timed_out()))?
        .map_err(|source| RedisError::UnknownMaster {
            master: master.to_string(),
            source,
        })?;
        let manager = new_manager(client.clone(), connect, response)
            .await
            .map_err(RedisError::Connect)?;
        Ok((manager, client))
    }

    fn current(&self) -> (ConnectionManager, u64) {
        match self.current.read() {
            Ok(g) => (g.0.clone(), g.2),
            Err(poisoned) => {
                let g = poisoned.into_inner();
                (g.0.clone(), g.2)
            }
        }
    }

    fn client(&self) -> redis::Client {
        match self.current.read() {
            Ok(g) => g.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    /// After a command failed on the primary of `generation`: ask the sentinels again, once
    /// for all the callers that failed on it. A failover that is still in progress leaves the
    /// old connection in place; the next failure asks again.
    async fn rediscover(&self, generation: u64) {
        let mut sentinel = self.sentinel.lock().await;
        if self.current().1 != generation {
            return; // Someone else already did.
        }
        match Self::discover(
            &mut sentinel,
            &self.master,
            &self.node,
            self.connect_timeout,
            self.response_timeout,
        )
        .await
        {
            Ok((manager, client)) => {
                let mut g = match self.current.write() {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *g = (manager, client, generation + 1);
                tracing::info!(master = %self.master, "Redis Sentinel: connected to the current primary");
            }
            Err(e) => {
                tracing::warn!(master = %self.master, error = %crate::error::chain(&e),
                    "Redis Sentinel: cannot find the primary yet")
            }
        }
    }
}

/// Whether a failed command suggests the primary moved (died, or was demoted to a replica).
fn primary_may_have_moved(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.kind() == redis::ErrorKind::ReadOnly
}

/// A command handle from [`RedisConn::conn`]: the deployment's connection behind the `redis`
/// crate's `ConnectionLike`, so commands, pipelines and scripts run on it unchanged.
#[derive(Clone)]
pub struct RedisHandle(Handle);

#[derive(Clone)]
enum Handle {
    Manager(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel {
        manager: ConnectionManager,
        generation: u64,
        backend: Arc<SentinelBackend>,
    },
}

impl ConnectionLike for RedisHandle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Handle::Manager(m) => m.req_packed_command(cmd),
            Handle::Cluster(c) => c.req_packed_command(cmd),
            Handle::Sentinel {
                manager,
                generation,
                backend,
            } => Box::pin(async move {
                let r = manager.req_packed_command(cmd).await;
                if let Err(e) = &r {
                    if primary_may_have_moved(e) {
                        backend.rediscover(*generation).await;
                    }
                }
                r
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Handle::Manager(m) => m.req_packed_commands(cmd, offset, count),
            Handle::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Handle::Sentinel {
                manager,
                generation,
                backend,
            } => Box::pin(async move {
                let r = manager.req_packed_commands(cmd, offset, count).await;
                if let Err(e) = &r {
                    if primary_may_have_moved(e) {
                        backend.rediscover(*generation).await;
                    }
                }
                r
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Handle::Manager(m) => m.get_db(),
            Handle::Cluster(c) => c.get_db(),
            Handle::Sentinel { manager, .. } => manager.get_db(),
        }
    }
}
