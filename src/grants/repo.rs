//! SQL for grants. Every state change is a compare-and-set on `(id, version)` (and usually the
//! expected state), so two replicas racing on one grant cannot both win: the loser sees zero rows
//! changed and re-reads.
//!
//! What it must never do: change a grant's state outside a transaction that also appends its
//! audit entry (the callers in `service`/`handler` do both in one `Tx`, I6).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::model::{Grant, GrantState};
use super::service::Holder;
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
        .fetch_optional(store.reads())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The grants among `ids` that exist (any order), in one query per 500 ids.
pub async fn get_many(store: &Store, ids: &[&str]) -> Result<Vec<Grant>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {COLUMNS} FROM grants WHERE id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.to_string());
        }
        for r in q.fetch_all(store.reads()).await? {
            out.push(from_row(&r)?);
        }
    }
    Ok(out)
}

/// A user's grants in `provisioning` or `active` (and, with `ending`, `revoking` or `failed`),
/// on `resource` when given, by id. Read from the writer pool: a grant made a moment ago counts.
pub async fn live_of(
    store: &Store,
    who: Holder<'_>,
    resource: Option<&str>,
    ending: bool,
) -> Result<Vec<Grant>, StoreError> {
    // One fixed statement per (column, ending): the id form seeks `grants_user_access`.
    let (col, user) = match who {
        Holder::Id(u) => ("user_id", u),
        Holder::Login(u) => ("user_login", u),
    };
    let states = if ending {
        "'provisioning', 'active', 'revoking', 'failed'"
    } else {
        "'provisioning', 'active'"
    };
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM grants WHERE {col} = $1 AND state IN ({states}) \
         AND ($2 IS NULL OR resource = $2) ORDER BY id"
    ))
    .bind(user)
    .bind(resource)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// The grants of one user on one Okta object that explain the access being there: every grant
/// still in play (`provisioning`: the write-ahead row of an add that may already have happened;
/// `active`; `revoking` and `failed` with a retry due: their removal is coming), and, when
/// `ended_since` is given, those that ended at or after it (they were live when the change at
/// that time happened). Read from the writer pool so a row committed a moment ago is seen.
pub async fn explaining(
    store: &Store,
    user_id: &str,
    kind: ResourceKind,
    okta_id: &str,
    resource_set: Option<&str>,
    ended_since: Option<i64>,
) -> Result<Vec<Grant>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM grants WHERE user_id = $1 AND okta_id = $2 AND kind = $3 \
         AND COALESCE(resource_set, '') = $4 \
         AND ((state IN ('provisioning', 'active', 'revoking') \
               OR (state = 'failed' AND next_retry_at IS NOT NULL)) \
              OR ($5 IS NOT NULL AND ended_at IS NOT NULL AND ended_at >= $5)) \
         ORDER BY id"
    ))
    .bind(user_id)
    .bind(okta_id)
    .bind(kind.as_str())
    .bind(resource_set.unwrap_or_default().to_string())
    .bind(ended_since)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
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
        .fetch_all(store.reads())
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

/// [`count_ours`] for the live states (`provisioning`, `active`) and many grants at once: per
/// access key ([`Grant::access_key`]) of `grants`, how many live, non-standing grants hold it,
/// `grants` themselves included if they are live. The expiry batch calls it once its grants are
/// `revoking`, so the counts are exactly the "others" each would see.
pub async fn live_counts(
    conn: &mut AnyConnection,
    grants: &[&Grant],
) -> Result<std::collections::HashMap<String, i64>, StoreError> {
    let mut users: Vec<&str> = grants.iter().map(|g| g.user_id.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let mut objects: Vec<&str> = grants.iter().map(|g| g.okta_id.as_str()).collect();
    objects.sort_unstable();
    objects.dedup();
    let mut counts = std::collections::HashMap::new();
    for chunk in users.chunks(400) {
        let marks = |from: usize, n: usize| {
            (from..from + n)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Both `user_id` and `okta_id` are named so the planner seeks `grants_user_access`
        // (user_id, okta_id, state); with `user_id` alone SQLite preferred walking every live
        // grant through the state index. Rows are counted here rather than by GROUP BY for the
        // same reason.
        let sql = format!(
            "SELECT user_id, kind, okta_id, resource_set FROM grants \
             WHERE user_id IN ({}) AND okta_id IN ({}) AND state IN ('provisioning', 'active') \
             AND (standing IS NULL OR standing = 0)",
            marks(1, chunk.len()),
            marks(chunk.len() + 1, objects.len()),
        );
        let mut q = sqlx::query(&sql);
        for u in chunk.iter().chain(&objects) {
            q = q.bind(u.to_string());
        }
        for r in q.fetch_all(&mut *conn).await? {
            let kind: String = r.try_get(1)?;
            let kind = ResourceKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("grant kind `{kind}`")))?;
            let rs: Option<String> = r.try_get(3)?;
            let key = super::model::access_key(
                &r.try_get::<String, _>(0)?,
                kind,
                &r.try_get::<String, _>(2)?,
                rs.as_deref(),
            );
            *counts.entry(key).or_insert(0) += 1;
        }
    }
    Ok(counts)
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
        q = b.bind_to(q);
    }
    let r = q.execute(conn).await?;
    Ok(r.rows_affected() == 1)
}

/// The most rows one [`cas_many`] statement touches (two binds each, plus the SET clause's):
/// far below SQLite's and PostgreSQL's bind limits, and large enough for any commit batch.
const CAS_MANY_ROWS: usize = 256;

/// [`cas`] for many grants with the same SET clause and values, in as few statements as
/// possible (`WHERE (id = … AND version = …) OR …  RETURNING id`). `rows` are `(id, version)`
/// with distinct ids. Returns the ids whose compare-and-set won.
pub async fn cas_many(
    conn: &mut AnyConnection,
    rows: &[(&str, i64)],
    set: &str,
    binds: &[Bind],
) -> Result<std::collections::HashSet<String>, StoreError> {
    // The SET clause numbers its values from `$3` (after `cas`'s id and version); here they come
    // first, so they are renumbered from `$1` and the id/version pairs follow them.
    let set = shift_placeholders(set, 2);
    let mut won = std::collections::HashSet::new();
    for chunk in rows.chunks(CAS_MANY_ROWS) {
        // Padded to a power of two by repeating the last row (matching a row twice in an OR
        // updates it once), so a handful of statement shapes are prepared once and cached
        // instead of one new statement per batch size.
        let padded = chunk.len().next_power_of_two().min(CAS_MANY_ROWS);
        let last = chunk[chunk.len() - 1];
        let chunk: Vec<(&str, i64)> = chunk
            .iter()
            .copied()
            .chain(std::iter::repeat(last))
            .take(padded.max(chunk.len()))
            .collect();
        let mut n = binds.len();
        let mut cond = Vec::with_capacity(chunk.len());
        for _ in &chunk {
            cond.push(format!("(id = ${} AND version = ${})", n + 1, n + 2));
            n += 2;
        }
        let sql = format!(
            "UPDATE grants SET {set}, version = version + 1 WHERE {} RETURNING id",
            cond.join(" OR ")
        );
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = b.clone().bind_to(q);
        }
        for (id, version) in &chunk {
            q = q.bind(id.to_string()).bind(*version);
        }
        for r in q.fetch_all(&mut *conn).await? {
            won.insert(r.try_get::<String, _>(0)?);
        }
    }
    Ok(won)
}

/// `$k` → `$(k - by)` in a SET clause (ours: static text without quoted `$`).
fn shift_placeholders(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(k) => out.push_str(&k.saturating_sub(by).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

/// A value for [`cas`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    I(i64),
    OI(Option<i64>),
    S(String),
    OS(Option<String>),
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

impl Bind {
    fn bind_to(self, q: AnyQuery<'_>) -> AnyQuery<'_> {
        match self {
            Bind::I(v) => q.bind(v),
            Bind::OI(v) => q.bind(v),
            Bind::S(v) => q.bind(v),
            Bind::OS(v) => q.bind(v),
        }
    }
}

/// Grants the expiry index must hold: live ones at their expiry, failed ones at their next retry
/// (a failed grant without one has nothing left in Okta and waits for an operator).
pub async fn due_entries(
    store: &Store,
    until_ms: Option<i64>,
    limit: i64,
    resume_after_ms: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    // A `provisioning` grant is due at its resume time (`resume::resume_due`), so that the
    // rebuild and the sweep hand a grant whose activation died to the resume path within seconds.
    let rows = sqlx::query(
        "SELECT id, due FROM ( \
           SELECT id, expires_at AS due FROM grants \
             WHERE state IN ('active', 'revoking') \
           UNION ALL \
           SELECT id, CASE WHEN created_at + $3 < expires_at THEN created_at + $3 \
                           ELSE expires_at END AS due FROM grants \
             WHERE state = 'provisioning' \
           UNION ALL \
           SELECT id, next_retry_at AS due FROM grants \
             WHERE state = 'failed' AND next_retry_at IS NOT NULL \
         ) d WHERE ($1 IS NULL OR due <= $1) ORDER BY due LIMIT $2",
    )
    .bind(until_ms)
    .bind(limit)
    .bind(resume_after_ms)
    .fetch_all(store.reads())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect()
}

/// Of [`due_entries`] due by `until_ms`, the `revoking` and `provisioning` ones: the states whose
/// due time moves earlier than the index may hold (see `ExpiryHandler::overdue_early`).
pub async fn due_early(
    store: &Store,
    until_ms: i64,
    limit: i64,
    resume_after_ms: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, due FROM ( \
           SELECT id, expires_at AS due FROM grants WHERE state = 'revoking' \
           UNION ALL \
           SELECT id, CASE WHEN created_at + $3 < expires_at THEN created_at + $3 \
                           ELSE expires_at END AS due FROM grants \
             WHERE state = 'provisioning' \
         ) d WHERE due <= $1 ORDER BY due LIMIT $2",
    )
    .bind(until_ms)
    .bind(limit)
    .bind(resume_after_ms)
    .fetch_all(store.reads())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect()
}

/// How many grants are in each state (for the `jit_grants` gauge).
pub async fn count_by_state(store: &Store) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query("SELECT state, COUNT(*) FROM grants GROUP BY state")
        .fetch_all(store.reads())
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::shift_placeholders;

    #[test]
    fn set_clause_placeholders_are_renumbered() {
        assert_eq!(
            shift_placeholders("state = 'revoked', ended_at = $3, x = $12", 2),
            "state = 'revoked', ended_at = $1, x = $10"
        );
        assert_eq!(shift_placeholders("a = 1", 2), "a = 1");
        assert_eq!(shift_placeholders("a = $", 2), "a = $");
    }
}
