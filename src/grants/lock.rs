//! The per-(user, Okta object) lock held across "look at Okta, decide, change Okta, record".
//!
//! Why it exists: a grant activating and another expiring for the same user and group must not
//! interleave (the expiring one would count the new one as absent and remove access it needs,
//! I5). The decide-then-call sections take this Redis lock (`SET NX PX` with a random token,
//! released by a compare-and-delete script), on every replica.
//!
//! One [`AccessLock`] may hold several keys at once: the expiry path takes the locks of a whole
//! claimed batch in one script call ([`AccessLock::try_acquire_many`]) instead of a round trip
//! per grant, and renews and releases them together. A key another holder has is simply not
//! taken; that grant goes the one-at-a-time way, which waits for it.
//!
//! What it must never do: release a lock it no longer owns (the token check), or wait forever
//! (acquisition has a deadline; the TTL bounds a crashed holder).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::clock::Clock;
use crate::redis_conn::RedisConn;

/// How long the lock outlives its holder's last renewal. It bounds how long a crashed holder
/// delays the next expiry of the same access (I1), so it is short: no longer than the default
/// `scheduler.lease` (3 s), so that a replica killed mid-expiry delays the replica taking its
/// claims over by about one lease, not two. A live holder renews it every third of the TTL for as
/// long as its work runs (see [`AccessLock::hold`]).
pub const LOCK_TTL: Duration = Duration::from_secs(3);
/// How long a caller waits for the lock before giving up (retryable).
pub const LOCK_WAIT: Duration = Duration::from_secs(20);

/// `SET NX PX` on every key; returns 1 or 0 per key, in order.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('SET', k, ARGV[1], 'NX', 'PX', ARGV[2]) then out[i] = 1 else out[i] = 0 end
end
return out
"#,
    )
});

/// For every key still ours (value = ARGV[1]): push its TTL out to ARGV[2] ms when given
/// (renew), delete it otherwise (release). Returns how many were still ours.
static OWNED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then
    if ARGV[2] then redis.call('PEXPIRE', k, ARGV[2]) else redis.call('DEL', k) end
    n = n + 1
  end
end
return n
"#,
    )
});

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("Redis is unavailable for the access lock")]
    Redis(#[from] redis::RedisError),
    #[error("another change to the same access is in progress; try again")]
    Busy,
}

/// Held locks (one key or several, one token). Release with [`AccessLock::release`]; if
/// dropped, they expire after the TTL.
pub struct AccessLock {
    redis: RedisConn,
    keys: Vec<String>,
    token: String,
}

impl AccessLock {
    /// Takes the lock on one access, waiting (with jittered back-off) up to [`LOCK_WAIT`].
    pub async fn acquire(redis: &RedisConn, name: &str, clock: &Clock) -> Result<Self, LockError> {
        let deadline = clock.now_ms() + LOCK_WAIT.as_millis() as i64;
        let mut wait_ms = 5u64;
        loop {
            let (lock, taken) = Self::try_acquire_many(redis, &[name]).await?;
            if taken.first() == Some(&true) {
                return Ok(lock);
            }
            if clock.now_ms() >= deadline {
                return Err(LockError::Busy);
            }
            // Jitter so waiters on several replicas do not retry in lockstep.
            let jitter = rand::random::<u64>() % wait_ms.max(1);
            tokio::time::sleep(Duration::from_millis(wait_ms + jitter)).await;
            wait_ms = (wait_ms * 2).min(200);
        }
    }

    /// Takes whichever of `names` are free, in one round trip, without waiting. Returns the held
    /// locks and, per name, whether it was taken. A name given twice is taken at most once.
    pub async fn try_acquire_many(
        redis: &RedisConn,
        names: &[&str],
    ) -> Result<(Self, Vec<bool>), LockError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let all: Vec<String> = names
            .iter()
            .map(|n| redis.key(&format!("lock:access:{n}")))
            .collect();
        let mut taken = Vec::new();
        if !all.is_empty() {
            let mut c = redis.conn();
            let mut script = ACQUIRE.prepare_invoke();
            for k in &all {
                script.key(k);
            }
            let got: Vec<i64> = script
                .arg(&token)
                .arg(LOCK_TTL.as_millis() as u64)
                .invoke_async(&mut c)
                .await?;
            taken = got.into_iter().map(|v| v == 1).collect();
        }
        taken.resize(all.len(), false);
        let keys = all
            .into_iter()
            .zip(&taken)
            .filter(|(_, t)| **t)
            .map(|(k, _)| k)
            .collect();
        let lock = AccessLock {
            redis: redis.clone(),
            keys,
            token,
        };
        Ok((lock, taken))
    }

    /// Runs `work` while keeping the locks alive: every third of the TTL their expiry is pushed
    /// out again, if they are still ours. Renewal runs in the same task (a `select!`), so there
    /// is no background task to leak, and it stops the moment `work` finishes.
    pub async fn hold<F: std::future::Future>(&self, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        let period = LOCK_TTL / 3;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Keys still ours at the last renewal. Losing one (its TTL ran out during a Redis
        // outage; someone else may hold it now and re-reads state before acting) must not stop
        // the renewal of the others: a batch's other grants are still mid-revocation under them.
        let mut owned = self.keys.len() as i64;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick(), if owned > 0 => {
                    match self.on_owned(Some(LOCK_TTL.as_millis() as u64)).await {
                        Ok(n) if n == owned => {}
                        Ok(n) => {
                            tracing::warn!(keys = ?self.keys, lost = owned - n, still_held = n,
                                "access lock lost while held");
                            owned = n;
                        }
                        // Redis hiccup: try again next tick; the TTL still covers us until then.
                        Err(e) => tracing::warn!(error = %e, "cannot renew access lock"),
                    }
                }
            }
        }
    }

    /// Compare-and-delete: only our own token is removed.
    pub async fn release(self) {
        if self.keys.is_empty() {
            return;
        }
        match self.on_owned(None).await {
            Ok(n) if n == self.keys.len() as i64 => {}
            Ok(_) => tracing::warn!(keys = ?self.keys, "access lock had expired before release"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot release access lock; it expires by itself")
            }
        }
    }

    /// Renews (`Some(ttl)`) or releases (`None`) every key still ours; returns how many were.
    async fn on_owned(&self, ttl_ms: Option<u64>) -> Result<i64, redis::RedisError> {
        let mut c = self.redis.conn();
        let mut inv = OWNED.prepare_invoke();
        for k in &self.keys {
            inv.key(k);
        }
        inv.arg(&self.token);
        if let Some(ttl) = ttl_ms {
            inv.arg(ttl);
        }
        inv.invoke_async(&mut c).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A batch's locks are renewed together; losing one of them (its TTL ran out during a Redis
    /// outage, and someone else may hold it now) must not stop the renewal of the others, whose
    /// grants are still mid-revocation under them (I5).
    #[tokio::test]
    async fn losing_one_batch_lock_keeps_renewing_the_others() {
        let mut config = crate::app::Config::load_with_env(None, Vec::new())
            .unwrap()
            .redis;
        // The Redis the integration tests use, under a prefix of this test's own.
        config.url = std::env::var("TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
        config.key_prefix = format!("t{}", uuid::Uuid::new_v4().simple());
        let redis = RedisConn::connect(&config).await.unwrap();
        let (lock, taken) = AccessLock::try_acquire_many(&redis, &["lost", "kept"])
            .await
            .unwrap();
        assert_eq!(taken, [true, true]);
        let (lost, kept) = (redis.key("lock:access:lost"), redis.key("lock:access:kept"));
        let mut c = redis.conn();
        let _: () = redis::cmd("DEL")
            .arg(&lost)
            .query_async(&mut c)
            .await
            .unwrap();
        // Far beyond the lock TTL, so a renewal shows as the TTL coming back down to it.
        let _: () = redis::cmd("PEXPIRE")
            .arg(&kept)
            .arg(600_000)
            .query_async(&mut c)
            .await
            .unwrap();
        // Far beyond the lock TTL, so each renewal shows as the TTL coming back down to it. The
        // first renewal after the loss is the one that notices it; the second must still come.
        let ttl_ms = LOCK_TTL.as_millis() as i64;
        let renewed = || async {
            let mut c = redis.conn();
            let _: () = redis::cmd("PEXPIRE")
                .arg(&kept)
                .arg(600_000)
                .query_async(&mut c)
                .await
                .unwrap();
            // Polled with a deadline (renewals come every third of the TTL).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                let pttl: i64 = redis::cmd("PTTL")
                    .arg(&kept)
                    .query_async(&mut redis.conn())
                    .await
                    .unwrap();
                if pttl > 0 && pttl <= ttl_ms {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the kept lock was not renewed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        lock.hold(async {
            renewed().await;
            renewed().await;
        })
        .await;
        lock.release().await;
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&kept)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(exists, 0, "the kept lock is released with the batch");
    }
}
