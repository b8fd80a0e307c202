//! The Redis connection and key naming.
//!
//! Why it exists: Redis holds the expiry index, locks and dedup sets (never the record: see
//! invariant I3). Every key goes through [`RedisConn::key`], so one broker's keys live under its
//! configured prefix inside one Redis Cluster hash tag (`{prefix}:…`). Keeping every key in one
//! slot is what lets a Lua script touch several of them on a cluster.
//!
//! What it must never do: build a key by hand elsewhere, or block the caller forever when Redis
//! is down (the connection manager reconnects; every command has a response timeout).

use std::time::Duration;

use axum::http::StatusCode;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;
use crate::error::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("cannot reach Redis")]
    Connect(#[source] redis::RedisError),
    #[error("Redis command failed")]
    Command(#[from] redis::RedisError),
}

impl ErrorCode for RedisError {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }
    fn code(&self) -> &'static str {
        "redis_unavailable"
    }
}

/// A reconnecting Redis connection plus the key prefix. Cheap to clone (clones share one
/// multiplexed connection).
#[derive(Clone)]
pub struct RedisConn {
    manager: ConnectionManager,
    /// Kept for the few uses that need a connection of their own (pub/sub cannot share the
    /// multiplexed command connection).
    client: redis::Client,
    prefix: String,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisConn {
    pub async fn connect(cfg: &RedisConfig) -> Result<RedisConn, RedisError> {
        let client = redis::Client::open(cfg.url.as_str()).map_err(RedisError::Connect)?;
        let mcfg = ConnectionManagerConfig::new()
            .set_connection_timeout(cfg.connect_timeout)
            .set_response_timeout(cfg.response_timeout)
            .set_number_of_retries(2)
            .set_max_delay(2_000);
        let manager = tokio::time::timeout(
            cfg.connect_timeout + Duration::from_secs(1),
            ConnectionManager::new_with_config(client.clone(), mcfg),
        )
        .await
        .map_err(|_| {
            RedisError::Connect(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "timed out connecting",
            )))
        })?
        .map_err(RedisError::Connect)?;
        Ok(RedisConn {
            manager,
            client,
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

    /// A handle for commands. Clones share the connection.
    pub fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// The client, for a dedicated connection (the scheduler's pub/sub wake-up listener).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Readiness probe.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.conn();
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }
}
