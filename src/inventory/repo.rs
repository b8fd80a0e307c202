//! SQL for the inventory tables. Writes take the sync's transaction (opened after its fencing
//! check); reads take any connection.
//!
//! What it must never do: delete a row of an object that was not just listed in full (a partial
//! listing would turn every unlisted member into "gone"), or build SQL from a value (every value
//! is a bind parameter; only placeholder numbers are formatted in).

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{AccessRow, InventoryUser, Why};
use crate::okta::UserRecord;
use crate::store::{StoreError, Tx};

/// Rows per multi-row INSERT: well under SQLite's and PostgreSQL's bind limits.
const CHUNK: usize = 100;

fn placeholders(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inserts or refreshes users; `first_seen` is kept from the first sighting.
pub async fn upsert_users(tx: &mut Tx, users: &[UserRecord], now: i64) -> Result<(), StoreError> {
    for chunk in users.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO inventory_users (user_id, login, email, first_name, last_name, \
             department, manager, manager_id, status, first_seen, last_seen) VALUES {} \
             ON CONFLICT (user_id) DO UPDATE SET login = excluded.login, email = excluded.email, \
             first_name = excluded.first_name, last_name = excluded.last_name, \
             department = excluded.department, manager = excluded.manager, \
             manager_id = excluded.manager_id, status = excluded.status, \
             last_seen = excluded.last_seen",
            placeholders(chunk.len(), 11)
        );
        let mut q = sqlx::query(&sql);
        for u in chunk {
            q = q
                .bind(u.id.clone())
                .bind(u.login.clone())
                .bind(u.email.clone())
                .bind(u.first_name.clone())
                .bind(u.last_name.clone())
                .bind(u.department.clone())
                .bind(u.manager.clone())
                .bind(u.manager_id.clone())
                .bind(u.status.clone())
                .bind(now)
                .bind(now);
        }
        q.execute(tx.conn()).await?;
    }
    Ok(())
}

/// A group or app as stored: the delta key and when its members were last listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub last_membership_updated: Option<i64>,
    pub members_listed_at: Option<i64>,
}

/// Inserts or refreshes groups/apps (`(id, name, type)`); never touches their listing state.
pub async fn upsert_objects(
    tx: &mut Tx,
    kind: &str,
    objects: &[(String, String, String)],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in objects.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO inventory_objects (kind, okta_id, name, object_type, first_seen, \
             last_seen) VALUES {} ON CONFLICT (kind, okta_id) DO UPDATE SET \
             name = excluded.name, object_type = excluded.object_type, \
             last_seen = excluded.last_seen",
            placeholders(chunk.len(), 6)
        );
        let mut q = sqlx::query(&sql);
        for (id, name, t) in chunk {
            q = q
                .bind(kind.to_string())
                .bind(id.clone())
                .bind(name.clone())
                .bind(t.clone())
                .bind(now)
                .bind(now);
        }
        q.execute(tx.conn()).await?;
    }
    Ok(())
}

pub async fn objects(
    conn: &mut AnyConnection,
    kind: &str,
) -> Result<HashMap<String, StoredObject>, StoreError> {
    let rows = sqlx::query(
        "SELECT okta_id, last_membership_updated, members_listed_at FROM inventory_objects \
         WHERE kind = $1",
    )
    .bind(kind)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("okta_id")?,
                StoredObject {
                    last_membership_updated: r.try_get("last_membership_updated")?,
                    members_listed_at: r.try_get("members_listed_at")?,
                },
            ))
        })
        .collect()
}

/// The complete current holders of one object (`(user_id, scope)`), replacing what was stored,
/// with the object's new listing state, in the caller's transaction: after commit the object is
/// fully the new listing; before it, fully the old one. New rows get `initial` as their why:
/// `Unexplained` for a managed object (the sync explains it right after), `Standing` otherwise.
#[allow(clippy::too_many_arguments)]
pub async fn replace_holders(
    tx: &mut Tx,
    kind: &str,
    okta_id: &str,
    resource_set: &str,
    holders: &[(String, Option<String>)],
    last_membership_updated: Option<i64>,
    initial: Why,
    now: i64,
) -> Result<(), StoreError> {
    let prev: Option<i64> = sqlx::query(
        "SELECT members_listed_at FROM inventory_objects WHERE kind = $1 AND okta_id = $2",
    )
    .bind(kind)
    .bind(okta_id)
    .fetch_optional(tx.conn())
    .await?
    .map(|r| r.try_get::<Option<i64>, _>(0))
    .transpose()?
    .flatten();
    for chunk in holders.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO inventory_access (user_id, kind, okta_id, resource_set, scope, why, \
             first_seen, last_seen, prev_listed_at) VALUES {} \
             ON CONFLICT (user_id, kind, okta_id, resource_set) DO UPDATE SET \
             scope = excluded.scope, last_seen = excluded.last_seen",
            placeholders(chunk.len(), 9)
        );
        let mut q = sqlx::query(&sql);
        for (user, scope) in chunk {
            q = q
                .bind(user.clone())
                .bind(kind.to_string())
                .bind(okta_id.to_string())
                .bind(resource_set.to_string())
                .bind(scope.clone())
                .bind(initial.as_str())
                .bind(now)
                .bind(now)
                .bind(prev);
        }
        q.execute(tx.conn()).await?;
    }
    sqlx::query(
        "DELETE FROM inventory_access WHERE kind = $1 AND okta_id = $2 AND resource_set = $3 \
         AND last_seen < $4",
    )
    .bind(kind)
    .bind(okta_id)
    .bind(resource_set)
    .bind(now)
    .execute(tx.conn())
    .await?;
    sqlx::query(
        "UPDATE inventory_objects SET members_listed_at = $3, last_membership_updated = $4 \
         WHERE kind = $1 AND okta_id = $2",
    )
    .bind(kind)
    .bind(okta_id)
    .bind(now)
    .bind(last_membership_updated)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Replaces one user's admin role rows (`(role type or custom role id, resource set,
/// assignment id)`). New rows are `standing`; the sync explains the managed roles' rows next.
pub async fn replace_user_roles(
    tx: &mut Tx,
    user_id: &str,
    roles: &[(String, String, String)],
    now: i64,
) -> Result<(), StoreError> {
    for (okta_id, rs, assignment) in roles {
        sqlx::query(
            "INSERT INTO inventory_access (user_id, kind, okta_id, resource_set, scope, why, \
             first_seen, last_seen) VALUES ($1, 'okta_role', $2, $3, $4, 'standing', $5, $5) \
             ON CONFLICT (user_id, kind, okta_id, resource_set) DO UPDATE SET \
             scope = excluded.scope, last_seen = excluded.last_seen",
        )
        .bind(user_id)
        .bind(okta_id.clone())
        .bind(rs.clone())
        .bind(assignment.clone())
        .bind(now)
        .execute(tx.conn())
        .await?;
    }
    sqlx::query(
        "DELETE FROM inventory_access WHERE user_id = $1 AND kind = 'okta_role' AND last_seen < $2",
    )
    .bind(user_id)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// One row's explanation: `(user_id, kind, okta_id, resource_set, why, grant_id)`.
pub type WhyUpdate = (String, String, String, String, Why, Option<String>);

/// Sets why each row is there.
pub async fn set_why(tx: &mut Tx, rows: &[WhyUpdate]) -> Result<(), StoreError> {
    for (user, kind, okta_id, rs, why, grant) in rows {
        sqlx::query(
            "UPDATE inventory_access SET why = $5, grant_id = $6 WHERE user_id = $1 \
             AND kind = $2 AND okta_id = $3 AND resource_set = $4",
        )
        .bind(user.clone())
        .bind(kind.clone())
        .bind(okta_id.clone())
        .bind(rs.clone())
        .bind(why.as_str())
        .bind(grant.clone())
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

/// Forgets one access row (the sync removed the access from Okta).
pub async fn delete_access(
    tx: &mut Tx,
    user_id: &str,
    kind: &str,
    okta_id: &str,
    resource_set: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM inventory_access WHERE user_id = $1 AND kind = $2 AND okta_id = $3 \
         AND resource_set = $4",
    )
    .bind(user_id)
    .bind(kind)
    .bind(okta_id)
    .bind(resource_set)
    .execute(tx.conn())
    .await?;
    Ok(())
}

const ACCESS_COLUMNS: &str = "a.user_id, a.kind, a.okta_id, a.resource_set, a.scope, a.why, \
    a.grant_id, a.first_seen, a.last_seen, a.prev_listed_at";

fn access_from_row(r: &AnyRow) -> Result<AccessRow, StoreError> {
    let why: String = r.try_get("why")?;
    Ok(AccessRow {
        user_id: r.try_get("user_id")?,
        kind: r.try_get("kind")?,
        okta_id: r.try_get("okta_id")?,
        resource_set: r.try_get("resource_set")?,
        scope: r.try_get("scope")?,
        why: Why::parse(&why)
            .ok_or_else(|| StoreError::Corrupt(format!("inventory why `{why}`")))?,
        grant_id: r.try_get("grant_id")?,
        first_seen: r.try_get("first_seen")?,
        last_seen: r.try_get("last_seen")?,
        prev_listed_at: r.try_get("prev_listed_at")?,
    })
}

/// Who holds one object, with their logins when known; paged by user id.
pub async fn holders(
    conn: &mut AnyConnection,
    kind: &str,
    okta_id: &str,
    resource_set: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<(AccessRow, Option<String>)>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {ACCESS_COLUMNS}, u.login FROM inventory_access a \
         LEFT JOIN inventory_users u ON u.user_id = a.user_id \
         WHERE a.kind = $1 AND a.okta_id = $2 AND a.resource_set = $3 AND a.user_id > $4 \
         ORDER BY a.user_id LIMIT $5"
    ))
    .bind(kind)
    .bind(okta_id)
    .bind(resource_set)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((access_from_row(r)?, r.try_get("login")?)))
        .collect()
}

/// Everything one user holds, with the object's name when it is a group or app.
pub async fn access_of_user(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<(AccessRow, Option<String>)>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {ACCESS_COLUMNS}, o.name FROM inventory_access a \
         LEFT JOIN inventory_objects o ON o.kind = a.kind AND o.okta_id = a.okta_id \
         WHERE a.user_id = $1 ORDER BY a.kind, a.okta_id, a.resource_set"
    ))
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((access_from_row(r)?, r.try_get("name")?)))
        .collect()
}

/// A user by Okta id or login.
pub async fn find_user(
    conn: &mut AnyConnection,
    id_or_login: &str,
) -> Result<Option<InventoryUser>, StoreError> {
    let r = sqlx::query(
        "SELECT user_id, login, email, first_name, last_name, department, manager, manager_id, \
         status, first_seen, last_seen FROM inventory_users WHERE user_id = $1 OR login = $1 \
         ORDER BY user_id LIMIT 1",
    )
    .bind(id_or_login)
    .fetch_optional(conn)
    .await?;
    r.map(|r| {
        Ok(InventoryUser {
            user_id: r.try_get("user_id")?,
            login: r.try_get("login")?,
            email: r.try_get("email")?,
            first_name: r.try_get("first_name")?,
            last_name: r.try_get("last_name")?,
            department: r.try_get("department")?,
            manager: r.try_get("manager")?,
            manager_id: r.try_get("manager_id")?,
            status: r.try_get("status")?,
            first_seen: r.try_get("first_seen")?,
            last_seen: r.try_get("last_seen")?,
        })
    })
    .transpose()
}

/// Logins of the given users (those the inventory knows).
pub async fn logins(
    conn: &mut AnyConnection,
    user_ids: &[String],
) -> Result<HashMap<String, String>, StoreError> {
    let mut out = HashMap::new();
    for chunk in user_ids.chunks(CHUNK) {
        let ph: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT user_id, login FROM inventory_users WHERE user_id IN ({})",
            ph.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.clone());
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.insert(r.try_get("user_id")?, r.try_get("login")?);
        }
    }
    Ok(out)
}
