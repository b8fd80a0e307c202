//! SQL for grants. Every state change is a compare-and-set on `(id, version)` (and usually the
//! expected state), so two replicas racing on one grant cannot both win: the loser sees zero rows
//! changed and re-reads.
//!
//! What it must never do: change a grant's state outside a transaction that also appends its
//! audit entry (the callers in `service`/`handler` do both in one `Tx`, I6).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::model::{Grant, GrantState};
use crate::policy::ResourceKind;
use crate::store::{Store, StoreError, Tx};

const COLUMNS: &str = "id, user_id, user_login, resource, kind, okta_id, resource_set, state, \
    standing, duration_ms, reason, requested_by, request_id, end_sessions, created_at, \
    activated_at, expires_at, ended_at, role_assignment_id, last_error, next_retry_at, attempts, \
    ended_by, end_reason, version";

fn from_row(r: &AnyRow) -> Result<Grant, StoreError> {
    let kind: String = r.try_get("kind")?;
    let state: String = r.try_get("state")?;
    let standing: Option<i64> = r.try_get("standing")?;
    let end_sessions: i64 = r.try_get("end_sessions")?;
    Ok(Grant {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        user_login: r.try_get("user_login")?,
        resource: r.try_get("resource")?,
        kind: ResourceKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("grant kind `{kind}`")))?,
        okta_id: r.try_get("okta_id")?,
        resource_set: r.try_get("resource_set")?,
        state: GrantState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("grant state `{state}`")))?,
        standing: standing.map(|s| s != 0),
        duration_ms: r.try_get("duration_ms")?,
        reason: r.try_get("reason")?,
        requested_by: r.try_get("requested_by")?,
        request_id: r.try_get("request_id")?,
        end_sessions: end_sessions != 0,
        created_at: r.try_get("created_at")?,
        activated_at: r.try_get("activated_at")?,
        expires_at: r.try_get("expires_at")?,
        ended_at: r.try_get("ended_at")?,
        role_assignment_id: r.try_get("role_assignment_id")?,
        last_error: r.try_get("last_error")?,
        next_retry_at: r.try_get("next_retry_at")?,
        attempts: r.try_get("attempts")?,
        ended_by: r.try_get("ended_by")?,
        end_reason: r.try_get("end_reason")?,
        version: r.try_get("version")?,
    })
}

pub async fn insert(tx: &mut Tx, g: &Grant) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO grants ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)"
    ))
    .bind(&g.id)
    .bind(&g.user_id)
    .bind(&g.user_login)
    .bind(&g.resource)
    .bind(g.kind.as_str())
    .bind(&g.okta_id)
    .bind(&g.resource_set)
    .bind(g.state.as_str())
    .bind(g.standing.map(i64::from))
    .bind(g.duration_ms)
    .bind(&g.reason)
    .bind(&g.requested_by)
    .bind(&g.request_id)
    .bind(i64::from(g.end_sessions))
    .bind(g.created_at)
    .bind(g.activated_at)
    .bind(g.expires_at)
    .bind(g.ended_at)
    .bind(&g.role_assignment_id)
    .bind(&g.last_error)
    .bind(g.next_retry_at)
    .bind(g.attempts)
    .bind(&g.ended_by)
    .bind(&g.end_reason)
    .bind(g.version)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn get_conn(conn: &mut AnyConnection, id: &str) -> Result<Option<Grant>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM grants WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Grant>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM grants WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Filters for listing. `after` is the previous page's last id (ids are UUIDv7: time-ordered).
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub user: Option<String>,
    pub resource: Option<String>,
    pub state: Option<GrantState>,
    pub after: Option<String>,
    pub limit: i64,
}

pub async fn list(store: &Store, f: &ListFilter) -> Result<Vec<Grant>, StoreError> {
    // Fixed SQL with optional predicates (`$n IS NULL OR …`) keeps it one prepared statement.
    let sql = format!(
        "SELECT {COLUMNS} FROM grants \
         WHERE ($1 IS NULL OR user_id = $1 OR user_login = $1) \
           AND ($2 IS NULL OR resource = $2) \
           AND ($3 IS NULL OR state = $3) \
           AND ($4 IS NULL OR id > $4) \
         ORDER BY id LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(&f.user)
        .bind(&f.resource)
        .bind(f.state.map(|s| s.as_str()))
        .bind(&f.after)
        .bind(f.limit)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Other grants of ours on the same Okta object for the same user, in `states`, that are not
/// standing (their access came from us, or is shared with one that did). A `failed` grant with
/// no retry due never got its access into Okta (the add was refused) and explains nothing.
pub async fn count_ours(
    conn: &mut AnyConnection,
    g: &Grant,
    states: &[GrantState],
) -> Result<i64, StoreError> {
    let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    let in_list = names
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let row = sqlx::query(&format!(
        "SELECT COUNT(*) FROM grants WHERE user_id = $1 AND kind = $2 AND okta_id = $3 \
         AND COALESCE(resource_set, '') = $4 AND id <> $5 AND state IN ({in_list}) \
         AND (standing IS NULL OR standing = 0) \
         AND NOT (state = 'failed' AND next_retry_at IS NULL)"
    ))
    .bind(&g.user_id)
    .bind(g.kind.as_str())
    .bind(&g.okta_id)
    .bind(g.resource_set.clone().unwrap_or_default())
    .bind(&g.id)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// A compare-and-set UPDATE: `set` is the SET clause with placeholders from `$3`; the grant must
/// still be at `version`. Returns whether this caller won.
pub async fn cas(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    set: &str,
    binds: Vec<Bind>,
) -> Result<bool, StoreError> {
    let sql =
        format!("UPDATE grants SET {set}, version = version + 1 WHERE id = $1 AND version = $2");
    let mut q = sqlx::query(&sql).bind(id.to_string()).bind(version);
    for b in binds {
        q = match b {
            Bind::I(v) => q.bind(v),
            Bind::OI(v) => q.bind(v),
            Bind::S(v) => q.bind(v),
            Bind::OS(v) => q.bind(v),
        };
    }
    let r = q.execute(conn).await?;
    Ok(r.rows_affected() == 1)
}

/// A value for [`cas`].
#[derive(Debug, Clone)]
pub enum Bind {
    I(i64),
    OI(Option<i64>),
    S(String),
    OS(Option<String>),
}

/// Grants the expiry index must hold: live ones at their expiry, failed ones at their next retry
/// (a failed grant without one has nothing left in Okta and waits for an operator).
pub async fn due_entries(
    store: &Store,
    until_ms: Option<i64>,
    limit: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, due FROM ( \
           SELECT id, expires_at AS due FROM grants \
             WHERE state IN ('provisioning', 'active', 'revoking') \
           UNION ALL \
           SELECT id, next_retry_at AS due FROM grants \
             WHERE state = 'failed' AND next_retry_at IS NOT NULL \
         ) d WHERE ($1 IS NULL OR due <= $1) ORDER BY due LIMIT $2",
    )
    .bind(until_ms)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect()
}

/// How many grants are in each state (for the `jit_grants` gauge).
pub async fn count_by_state(store: &Store) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM grants GROUP BY state")
        .fetch_all(store.pool())
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect()
}
