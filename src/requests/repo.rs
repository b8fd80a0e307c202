//! SQL for requests and decisions. Every state change is a compare-and-set on `(id, version)`,
//! and every decision bumps the version, so concurrent deciders serialize on the request row.
//!
//! What it must never do: change a request outside a transaction that also appends its audit
//! entry (the service does both in one `Tx`, I6).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::model::{DecisionRecord, Request, RequestKind, RequestState, Verdict};
use crate::store::{Store, StoreError, Tx};

const COLUMNS: &str = "id, user_id, user_login, resource, kind, grant_id, duration_ms, reason, \
    ticket, requested_by, channel, state, break_glass, review_pending, created_at, expires_at, \
    decided_at, end_reason, version, auto_approval";

fn from_row(r: &AnyRow) -> Result<Request, StoreError> {
    let kind: String = r.try_get("kind")?;
    let state: String = r.try_get("state")?;
    let bg: i64 = r.try_get("break_glass")?;
    let rp: i64 = r.try_get("review_pending")?;
    Ok(Request {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        user_login: r.try_get("user_login")?,
        resource: r.try_get("resource")?,
        kind: RequestKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("request kind `{kind}`")))?,
        grant_id: r.try_get("grant_id")?,
        duration_ms: r.try_get("duration_ms")?,
        reason: r.try_get("reason")?,
        ticket: r.try_get("ticket")?,
        requested_by: r.try_get("requested_by")?,
        channel: r.try_get("channel")?,
        state: RequestState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("request state `{state}`")))?,
        break_glass: bg != 0,
        review_pending: rp != 0,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        decided_at: r.try_get("decided_at")?,
        end_reason: r.try_get("end_reason")?,
        auto_approval: {
            let v: Option<String> = r.try_get("auto_approval")?;
            v.map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| StoreError::Corrupt(format!("request auto_approval: {e}")))
            })
            .transpose()?
        },
        version: r.try_get("version")?,
    })
}

/// Inserts a new request. A second pending request for the same (user, resource) violates the
/// partial unique index: the caller maps that to `request_already_pending`.
pub async fn insert(tx: &mut Tx, r: &Request) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15, $16, $17, $18, $19, $20)"
    ))
    .bind(&r.id)
    .bind(&r.user_id)
    .bind(&r.user_login)
    .bind(&r.resource)
    .bind(r.kind.as_str())
    .bind(&r.grant_id)
    .bind(r.duration_ms)
    .bind(&r.reason)
    .bind(&r.ticket)
    .bind(&r.requested_by)
    .bind(&r.channel)
    .bind(r.state.as_str())
    .bind(i64::from(r.break_glass))
    .bind(i64::from(r.review_pending))
    .bind(r.created_at)
    .bind(r.expires_at)
    .bind(r.decided_at)
    .bind(&r.end_reason)
    .bind(r.version)
    .bind(
        r.auto_approval
            .as_ref()
            .and_then(|a| serde_json::to_string(a).ok()),
    )
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn get_conn(conn: &mut AnyConnection, id: &str) -> Result<Option<Request>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM requests WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Request>, StoreError> {
    let mut conn = store.reads().acquire().await?;
    get_conn(&mut conn, id).await
}

/// The pending request of a user for a resource, if any.
pub async fn pending_for(
    store: &Store,
    user_id: &str,
    resource: &str,
) -> Result<Option<Request>, StoreError> {
    let mut conn = store.reads().acquire().await?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM requests WHERE user_id = $1 AND resource = $2 AND state = 'pending'"
    ))
    .bind(user_id)
    .bind(resource)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Okta login or user id of the person who would get the access.
    pub user: Option<String>,
    pub resource: Option<String>,
    pub state: Option<RequestState>,
    /// Only requests with ids greater than this (ids are time-ordered UUIDv7).
    pub after: Option<String>,
    pub limit: i64,
    /// Who submitted it (a portal's own submissions).
    pub requested_by: Option<String>,
}

pub async fn list(store: &Store, f: &ListFilter) -> Result<Vec<Request>, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM requests WHERE 1 = 1");
    let mut binds: Vec<String> = Vec::new();
    if let Some(u) = &f.user {
        binds.push(u.to_ascii_lowercase());
        let n = binds.len();
        sql.push_str(&format!(
            " AND (LOWER(user_login) = ${n} OR user_id = ${n})"
        ));
    }
    if let Some(by) = &f.requested_by {
        binds.push(by.to_ascii_lowercase());
        sql.push_str(&format!(" AND LOWER(requested_by) = ${}", binds.len()));
    }
    if let Some(r) = &f.resource {
        binds.push(r.clone());
        sql.push_str(&format!(" AND resource = ${}", binds.len()));
    }
    if let Some(s) = f.state {
        binds.push(s.as_str().to_string());
        sql.push_str(&format!(" AND state = ${}", binds.len()));
    }
    if let Some(a) = &f.after {
        binds.push(a.clone());
        sql.push_str(&format!(" AND id > ${}", binds.len()));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", f.limit.clamp(1, 10_000)));
    let mut q = sqlx::query(&sql);
    for b in &binds {
        q = q.bind(b);
    }
    let mut conn = store.reads().acquire().await?;
    let rows = q.fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// Ids of the requests `login` decided on (decisions record approvers in lower case).
pub async fn decided_by(
    store: &Store,
    login: &str,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut conn = store.reads().acquire().await?;
    let rows = sqlx::query("SELECT DISTINCT request_id FROM request_decisions WHERE approver = $1")
        .bind(login.trim().to_ascii_lowercase())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            r.try_get::<String, _>("request_id")
                .map_err(StoreError::from)
        })
        .collect()
}

pub async fn decisions(
    conn: &mut AnyConnection,
    request_id: &str,
) -> Result<Vec<DecisionRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT approver, stage, decision, channel, comment, decided_at FROM request_decisions \
         WHERE request_id = $1 ORDER BY decided_at, approver",
    )
    .bind(request_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let d: String = r.try_get("decision")?;
            Ok(DecisionRecord {
                approver: r.try_get("approver")?,
                stage: r.try_get("stage")?,
                decision: Verdict::parse(&d)
                    .ok_or_else(|| StoreError::Corrupt(format!("decision `{d}`")))?,
                channel: r.try_get("channel")?,
                comment: r.try_get("comment")?,
                decided_at: r.try_get("decided_at")?,
            })
        })
        .collect()
}

/// Records one person's decision. `false` when this person already decided (the primary key):
/// a double click or a redelivery counts once.
pub async fn insert_decision(
    tx: &mut Tx,
    request_id: &str,
    d: &DecisionRecord,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "INSERT INTO request_decisions (request_id, approver, stage, decision, channel, comment, \
         decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(request_id)
    .bind(&d.approver)
    .bind(d.stage)
    .bind(d.decision.as_str())
    .bind(&d.channel)
    .bind(&d.comment)
    .bind(d.decided_at)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A value bound into a compare-and-set's SET clause.
#[derive(Debug, Clone)]
pub enum Bind {
    I(i64),
    OI(Option<i64>),
    S(String),
    OS(Option<String>),
}

/// `UPDATE requests SET version = version + 1, <set> WHERE id = $1 AND version = $2`. Values of
/// `set` are `$3`, `$4`, … Returns whether this caller won.
pub async fn cas(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    set: &str,
    binds: Vec<Bind>,
) -> Result<bool, StoreError> {
    let sep = if set.is_empty() { "" } else { ", " };
    let sql = format!(
        "UPDATE requests SET version = version + 1{sep}{set} WHERE id = $1 AND version = $2"
    );
    let mut q = sqlx::query(&sql).bind(id.to_string()).bind(version);
    for b in binds {
        q = match b {
            Bind::I(v) => q.bind(v),
            Bind::OI(v) => q.bind(v),
            Bind::S(v) => q.bind(v),
            Bind::OS(v) => q.bind(v),
        };
    }
    Ok(q.execute(conn).await?.rows_affected() == 1)
}

/// Pending requests whose wait is over, oldest first.
pub async fn overdue_pending(
    store: &Store,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<Request>, StoreError> {
    let mut conn = store.reads().acquire().await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM requests WHERE state = 'pending' AND expires_at <= $1 \
         ORDER BY expires_at LIMIT $2"
    ))
    .bind(now_ms)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Approved access requests decided before `before_ms` that still have no grant: the grant they
/// are owed was interrupted (a crash between the approval and the grant's creation).
pub async fn owed_grants(
    store: &Store,
    before_ms: i64,
    limit: i64,
) -> Result<Vec<Request>, StoreError> {
    let mut conn = store.reads().acquire().await?;
    let cols = COLUMNS
        .split(", ")
        .map(|c| format!("r.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = sqlx::query(&format!(
        "SELECT {cols} FROM requests r LEFT JOIN grants g ON g.request_id = r.id \
         WHERE r.state = 'approved' AND r.kind = 'access' AND g.id IS NULL \
         AND r.decided_at <= $1 ORDER BY r.decided_at LIMIT $2"
    ))
    .bind(before_ms)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The pending requests of a user (offboarding cancels them).
pub async fn pending_of_user(store: &Store, user_id: &str) -> Result<Vec<Request>, StoreError> {
    let mut conn = store.reads().acquire().await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM requests WHERE user_id = $1 AND state = 'pending' ORDER BY id"
    ))
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(from_row).collect()
}
