//! The Lua scripts that claim and settle due grants, and their typed wrappers.
//!
//! Why it exists: a claim must be atomic (read due members, push them to a lease score, record
//! the claim) or two replicas would take the same grant; and settling a claim must be a
//! compare-and-set on the score, or a blind write would undo an extension made while the
//! expiry was in flight. Both are one script each, so each is one round trip.
//!
//! What it must never do: write a member's score without checking it is still the score this
//! scheduler set, or touch a key that does not go through `RedisConn::key` (all keys share one
//! Cluster hash tag, which is what lets one script touch several).
//!
//! Per-grant claim state lives in a hash, one field per grant, value `orig:ours:attempt`:
//! - `orig`: the grant's original due time (for the lateness metric);
//! - `ours`: the score the scheduler last wrote for it (lease or backoff time);
//! - `attempt`: how many times it has been claimed since it was (re)scheduled.
//!
//! A claim continues a grant's history only if its current score is still `ours`; any other
//! score means someone else (an extension, an early revoke, a rebuild after data loss) set it,
//! so the grant starts over at attempt 1 with that score as its original due time. This keeps
//! `ExpiryIndex::schedule` a plain ZADD that never has to know about claims. Losing the hash
//! (FLUSHALL, failover) only restarts backoff counting: SQL still holds the grant and its state.

use redis::Script;

use super::SchedulerError;
use crate::redis_conn::RedisConn;

/// Claims up to `limit` due members. Returns `now, epoch_present, zcard, next_score_or_empty`
/// followed by `id, orig, lease_until, attempt` for each claimed grant, all as strings (Lua
/// numbers would be truncated to integers anyway; strings keep the parsing in one place).
const CLAIM: &str = r#"
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local function fmt(n) return string.format('%.0f', n) end
local lease_until = now + tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local out = {}
local claimed = {}
if limit > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #due, 2 do
    local id = due[i]
    local score = tonumber(due[i + 1])
    local orig = score
    local attempt = 1
    local st = redis.call('HGET', KEYS[2], id)
    if st then
      local o, ours, a = string.match(st, '^(-?%d+):(-?%d+):(%d+)$')
      if o and tonumber(ours) == score then
        orig = tonumber(o)
        attempt = tonumber(a) + 1
      end
    end
    redis.call('ZADD', KEYS[1], 'XX', lease_until, id)
    redis.call('HSET', KEYS[2], id, fmt(orig) .. ':' .. fmt(lease_until) .. ':' .. attempt)
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = fmt(orig)
    claimed[#claimed + 1] = fmt(lease_until)
    claimed[#claimed + 1] = tostring(attempt)
  end
end
out[1] = fmt(now)
out[2] = tostring(redis.call('EXISTS', KEYS[3]))
out[3] = tostring(redis.call('ZCARD', KEYS[1]))
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then out[4] = fmt(tonumber(nxt[2])) else out[4] = '' end
for i = 1, #claimed do out[#out + 1] = claimed[i] end
return out
"#;

/// Settles a claim if the member's score is still the lease score we set (compare-and-set).
/// ARGV: id, lease_until, op (`done` | `resched` | `retry`), now (`''` = Redis TIME),
/// value (absolute due for `resched`, delay in ms for `retry`), orig, attempt.
/// Returns `[applied (1|0), new_score or '']`.
///
/// Why compare-and-set and not `ZADD GT`: GT would keep an extension only when it is later than
/// our backoff time, and it would let a backoff overwrite an early revoke (a smaller score) or
/// an extension that happens to be earlier than the backoff. Any score we did not write means
/// someone else decided this grant's next time since we claimed it; theirs wins, and the
/// handler (reading SQL) sorts out what is due when it next fires.
const SETTLE: &str = r#"
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not cur) or tonumber(cur) ~= tonumber(ARGV[2]) then return {'0', ''} end
local function fmt(n) return string.format('%.0f', n) end
local op = ARGV[3]
if op == 'done' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {'1', ''}
elseif op == 'resched' then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[5], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {'1', ARGV[5]}
else
  local now
  if ARGV[4] == '' then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  else
    now = tonumber(ARGV[4])
  end
  local s = now + tonumber(ARGV[5])
  redis.call('ZADD', KEYS[1], 'XX', s, ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[6] .. ':' .. fmt(s) .. ':' .. ARGV[7])
  return {'1', fmt(s)}
end
"#;

/// [`SETTLE`]'s `done` for many claims at once (a chunk whose expiries all finished): ARGV is
/// `id, lease_until` pairs; each member is removed only if its score is still that lease.
/// Returns 1 or 0 per pair, in order.
const SETTLE_DONE_MANY: &str = r#"
local out = {}
for i = 1, #ARGV, 2 do
  local cur = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if cur and tonumber(cur) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"#;

/// Renews many leases in one round trip (a chunk's handler call still running). ARGV: now
/// (`''` = Redis TIME), lease ms, then `id, lease_until, orig, attempt` quadruples. A member is
/// renewed only if its score is still the lease we hold (compare-and-set, as `SETTLE`); its
/// claim state keeps its original due time and attempt. Returns the new score per quadruple, or
/// `''` where the claim is no longer ours.
///
/// Why one script per chunk: leases are short (seconds) so that a killed replica's claims come
/// back quickly, which means renewals are frequent while Okta makes a chunk wait; one call per
/// grant per renewal would multiply the commands per revocation of a rate-limited burst.
const RENEW_MANY: &str = r#"
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local function fmt(n) return string.format('%.0f', n) end
local s = now + tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 4 do
  local cur = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if cur and tonumber(cur) == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], 'XX', s, ARGV[i])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2] .. ':' .. fmt(s) .. ':' .. ARGV[i + 3])
    out[#out + 1] = fmt(s)
  else
    out[#out + 1] = ''
  end
end
return out
"#;

/// The overdue sweep's repair (see `maintenance`). ARGV: `id, due` pairs read from SQL, each
/// overdue there. A member that is absent is added at `due`; a member held at a *later* score is
/// moved to `due` unless that score is a claim's (the `ours` of its claim state): a lease held
/// by a live replica (or a dead one's, which lapses within a lease) or a back-off. Any other later
/// score is a due time SQL no longer holds (a `revoking` commit whose index update died with its
/// replica, a provisional expiry), and nobody runs a grant without a lease score, so moving it
/// earlier cannot put a grant in flight on two replicas. Returns how many members changed.
const PULL_DUE: &str = r#"
local n = 0
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  local due = tonumber(ARGV[i + 1])
  local cur = redis.call('ZSCORE', KEYS[1], id)
  local move = false
  if not cur then
    move = true
  elseif tonumber(cur) > due then
    move = true
    local st = redis.call('HGET', KEYS[2], id)
    if st then
      local ours = string.match(st, '^-?%d+:(-?%d+):%d+$')
      if ours and tonumber(ours) == tonumber(cur) then move = false end
    end
  end
  if move then
    redis.call('ZADD', KEYS[1], ARGV[i + 1], id)
    n = n + 1
  end
end
return n
"#;

/// One grant this replica now holds a lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub grant_id: String,
    /// The due time it was first scheduled for (lateness is measured from here).
    pub original_due_ms: i64,
    /// The score written at claim; settling compares against it.
    pub lease_until_ms: i64,
    /// 1 on the first try since it was scheduled.
    pub attempt: u32,
}

/// What one claim round trip saw.
#[derive(Debug, Clone)]
pub struct ClaimBatch {
    /// "Now" in the scheduler's time base (Redis TIME or the Clock).
    pub now_ms: i64,
    /// False when the rebuild sentinel is gone: Redis lost its data.
    pub epoch_present: bool,
    /// Members in the index (ZCARD).
    pub scheduled: u64,
    /// The lowest score left in the index, if any.
    pub next_score_ms: Option<i64>,
    pub claims: Vec<Claim>,
}

/// How a claim is settled.
#[derive(Debug, Clone, Copy)]
pub enum Settle {
    Done,
    Reschedule {
        due_ms: i64,
    },
    /// Re-score to now + delay; keep attempt for backoff counting.
    Retry {
        delay_ms: i64,
        attempt: u32,
    },
}

#[derive(Clone, Debug)]
pub struct Scripts {
    claim: Script,
    settle: Script,
    settle_done_many: Script,
    renew_many: Script,
    pull_due: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            claim: Script::new(CLAIM),
            settle: Script::new(SETTLE),
            settle_done_many: Script::new(SETTLE_DONE_MANY),
            renew_many: Script::new(RENEW_MANY),
            pull_due: Script::new(PULL_DUE),
        }
    }

    pub async fn claim(
        &self,
        redis: &RedisConn,
        now_arg: Option<i64>,
        lease_ms: i64,
        limit: usize,
    ) -> Result<ClaimBatch, SchedulerError> {
        let mut c = redis.conn();
        let raw: Vec<String> = self
            .claim
            .key(redis.key(super::INDEX_KEY))
            .key(redis.key(super::STATE_KEY))
            .key(redis.key(super::EPOCH_KEY))
            .arg(now_arg.map(|n| n.to_string()).unwrap_or_default())
            .arg(lease_ms)
            .arg(limit)
            .invoke_async(&mut c)
            .await?;
        parse_claim(&raw)
    }

    /// Returns the new score if the settle applied, `Ok(None)` if the claim was superseded.
    pub async fn settle(
        &self,
        redis: &RedisConn,
        claim: &Claim,
        now_arg: Option<i64>,
        how: Settle,
    ) -> Result<(bool, Option<i64>), SchedulerError> {
        let (op, value, attempt) = match how {
            Settle::Done => ("done", 0, claim.attempt),
            Settle::Reschedule { due_ms } => ("resched", due_ms, claim.attempt),
            Settle::Retry { delay_ms, attempt } => ("retry", delay_ms, attempt),
        };
        let mut c = redis.conn();
        let raw: Vec<String> = self
            .settle
            .key(redis.key(super::INDEX_KEY))
            .key(redis.key(super::STATE_KEY))
            .arg(&claim.grant_id)
            .arg(claim.lease_until_ms)
            .arg(op)
            .arg(now_arg.map(|n| n.to_string()).unwrap_or_default())
            .arg(value)
            .arg(claim.original_due_ms)
            .arg(attempt)
            .invoke_async(&mut c)
            .await?;
        let applied = raw.first().is_some_and(|s| s == "1");
        let score = raw.get(1).and_then(|s| s.parse::<i64>().ok());
        Ok((applied, score))
    }
}

impl Scripts {
    /// Settles many claims as `Done` in one round trip. Returns, per claim, whether it applied
    /// (false: the grant was re-scheduled or re-claimed meanwhile, and that time is kept).
    pub async fn settle_done_many(
        &self,
        redis: &RedisConn,
        claims: &[&Claim],
    ) -> Result<Vec<bool>, SchedulerError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.settle_done_many.prepare_invoke();
        inv.key(redis.key(super::INDEX_KEY))
            .key(redis.key(super::STATE_KEY));
        for c in claims {
            inv.arg(&c.grant_id).arg(c.lease_until_ms);
        }
        let mut c = redis.conn();
        let raw: Vec<i64> = inv.invoke_async(&mut c).await?;
        if raw.len() != claims.len() {
            return Err(bad("settle length"));
        }
        Ok(raw.into_iter().map(|v| v == 1).collect())
    }
}

impl Scripts {
    /// Pushes the leases of `claims` out to now + `lease_ms` in one round trip. Returns, per
    /// claim, the new lease end, or `None` where the score is no longer ours (re-scheduled or
    /// re-claimed meanwhile: the claim must not be renewed again).
    pub async fn renew_many(
        &self,
        redis: &RedisConn,
        claims: &[&Claim],
        now_arg: Option<i64>,
        lease_ms: i64,
    ) -> Result<Vec<Option<i64>>, SchedulerError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.renew_many.prepare_invoke();
        inv.key(redis.key(super::INDEX_KEY))
            .key(redis.key(super::STATE_KEY))
            .arg(now_arg.map(|n| n.to_string()).unwrap_or_default())
            .arg(lease_ms);
        for c in claims {
            inv.arg(&c.grant_id)
                .arg(c.lease_until_ms)
                .arg(c.original_due_ms)
                .arg(c.attempt);
        }
        let mut c = redis.conn();
        let raw: Vec<String> = inv.invoke_async(&mut c).await?;
        if raw.len() != claims.len() {
            return Err(bad("renew length"));
        }
        Ok(raw.iter().map(|s| s.parse::<i64>().ok()).collect())
    }
}

impl Scripts {
    /// [`PULL_DUE`] for `entries` (at most one chunk's worth): adds the missing, moves earlier
    /// the ones held at a later score that no claim wrote. Returns how many changed.
    pub async fn pull_due(
        &self,
        redis: &RedisConn,
        entries: &[super::DueEntry],
    ) -> Result<u64, SchedulerError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut inv = self.pull_due.prepare_invoke();
        inv.key(redis.key(super::INDEX_KEY))
            .key(redis.key(super::STATE_KEY));
        for e in entries {
            inv.arg(&e.grant_id).arg(e.due_ms);
        }
        let mut c = redis.conn();
        Ok(inv.invoke_async(&mut c).await?)
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}

fn bad(what: &str) -> SchedulerError {
    SchedulerError::Redis(redis::RedisError::from((
        redis::ErrorKind::TypeError,
        "unexpected reply from the claim script",
        what.to_string(),
    )))
}

fn num(s: Option<&String>, what: &str) -> Result<i64, SchedulerError> {
    s.and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| bad(what))
}

fn parse_claim(raw: &[String]) -> Result<ClaimBatch, SchedulerError> {
    if raw.len() < 4 || !(raw.len() - 4).is_multiple_of(4) {
        return Err(bad("length"));
    }
    let now_ms = num(raw.first(), "now")?;
    let epoch_present = raw.get(1).is_some_and(|s| s == "1");
    let scheduled = u64::try_from(num(raw.get(2), "zcard")?).unwrap_or(0);
    let next_score_ms = match raw.get(3) {
        Some(s) if !s.is_empty() => Some(num(Some(s), "next")?),
        _ => None,
    };
    let mut claims = Vec::with_capacity((raw.len() - 4) / 4);
    for chunk in raw[4..].chunks_exact(4) {
        claims.push(Claim {
            grant_id: chunk[0].clone(),
            original_due_ms: num(chunk.get(1), "orig")?,
            lease_until_ms: num(chunk.get(2), "lease")?,
            attempt: u32::try_from(num(chunk.get(3), "attempt")?).unwrap_or(u32::MAX),
        });
    }
    Ok(ClaimBatch {
        now_ms,
        epoch_present,
        scheduled,
        next_score_ms,
        claims,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_claim_reply() {
        let raw: Vec<String> = ["1000", "1", "3", "1500", "g1", "900", "31000", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let b = parse_claim(&raw).unwrap();
        assert_eq!(b.now_ms, 1000);
        assert!(b.epoch_present);
        assert_eq!(b.scheduled, 3);
        assert_eq!(b.next_score_ms, Some(1500));
        assert_eq!(
            b.claims,
            vec![Claim {
                grant_id: "g1".into(),
                original_due_ms: 900,
                lease_until_ms: 31000,
                attempt: 2
            }]
        );
    }

    #[test]
    fn rejects_a_truncated_reply() {
        let raw: Vec<String> = ["1000", "0", "0", "", "g1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(parse_claim(&raw).is_err());
        let empty = parse_claim(&["5".into(), "0".into(), "0".into(), "".into()]).unwrap();
        assert!(!empty.epoch_present);
        assert_eq!(empty.next_score_ms, None);
    }
}
