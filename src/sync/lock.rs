//! One sync at a time across replicas: a Redis lock whose value is a fencing token, renewed while
//! the run lasts, and a SQL fence that refuses writes from any token older than the newest one
//! that wrote.
//!
//! Why it exists: a replica paused (GC, VM steal) past its lock's TTL must not go on writing
//! next to the replica that took over. The Redis lock alone cannot stop it; the fence can: every
//! sync transaction first raises `sync_state.fence` to its token and fails if a newer token is
//! already there, so the stale run stops at its next write.
//!
//! What it must never do: release or renew a lock it no longer owns (the value check), or let a
//! write through without the fence check (use [`fenced`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use super::SyncError;
use crate::clock::Clock;
use crate::redis_conn::RedisConn;
use crate::store::{Store, Tx};

static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#,
    )
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

/// The held sync lock. Dropping it without [`SyncLock::release`] leaves it to expire.
pub struct SyncLock {
    redis: RedisConn,
    key: String,
    fence: i64,
    ttl: Duration,
    lost: Arc<AtomicBool>,
}

impl SyncLock {
    /// Takes the lock with a fresh fencing token, or answers [`SyncError::Busy`].
    pub async fn acquire(redis: &RedisConn, ttl: Duration) -> Result<SyncLock, SyncError> {
        let mut c = redis.conn();
        // INCR first: tokens only grow, so whoever holds the lock later holds a larger one.
        let fence: i64 = redis::cmd("INCR")
            .arg(redis.key("sync:fence"))
            .query_async(&mut c)
            .await?;
        let key = redis.key("sync:lock");
        let ok: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(fence)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async(&mut c)
            .await?;
        if ok.is_none() {
            return Err(SyncError::Busy);
        }
        Ok(SyncLock {
            redis: redis.clone(),
            key,
            fence,
            ttl,
            lost: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn fence(&self) -> i64 {
        self.fence
    }

    /// Fails once the lock is known lost; checked before every Okta write.
    pub fn check(&self) -> Result<(), SyncError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(SyncError::LostLock);
        }
        Ok(())
    }

    /// Renews every third of the TTL until the lock is found taken or cannot be renewed within
    /// the TTL; then marks it lost and returns. Run it beside the sync (it never ends otherwise).
    pub async fn keep_renewed(&self, clock: &Clock) {
        let ttl = ttl_ms(self.ttl);
        let mut last_ok = clock.now_ms();
        loop {
            clock.sleep_until_ms(clock.now_ms() + ttl / 3).await;
            let mut c = self.redis.conn();
            let r: Result<i64, _> = RENEW
                .key(&self.key)
                .arg(self.fence)
                .arg(ttl)
                .invoke_async(&mut c)
                .await;
            match r {
                Ok(1) => last_ok = clock.now_ms(),
                Ok(_) => {
                    tracing::warn!(fence = self.fence, "sync lock taken by another replica");
                    break;
                }
                Err(e) if clock.now_ms() - last_ok < ttl => {
                    tracing::warn!(error = %e, "cannot renew the sync lock; retrying");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sync lock could not be renewed within its TTL");
                    break;
                }
            }
        }
        self.lost.store(true, Ordering::SeqCst);
    }

    pub async fn release(self) {
        let mut c = self.redis.conn();
        let r: Result<i64, _> = RELEASE
            .key(&self.key)
            .arg(self.fence)
            .invoke_async(&mut c)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot release the sync lock; it expires by itself");
        }
    }
}

fn ttl_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// Opens a transaction that may write for the holder of `fence`: it raises the SQL fence to
/// `fence` and fails with [`SyncError::LostLock`] when a newer holder already wrote.
pub async fn fenced(store: &Store, fence: i64) -> Result<Tx, SyncError> {
    let mut tx = store.begin().await?;
    let r = sqlx::query("UPDATE sync_state SET value = $1 WHERE name = 'fence' AND value <= $1")
        .bind(fence)
        .execute(tx.conn())
        .await
        .map_err(crate::store::StoreError::Query)?;
    if r.rows_affected() == 0 {
        tx.rollback().await?;
        return Err(SyncError::LostLock);
    }
    Ok(tx)
}
