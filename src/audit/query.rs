//! Reading the audit log newest first, with filters: the console's audit page (and any other
//! reader that pages backwards from the head).
//!
//! Why it exists: every read of the log goes through this module, so a reader sees entries as
//! stored (the same rows verification hashes) and a change to the table's layout or indexes is
//! made in one place. `page` (oldest first) serves the API and exports; [`search`] serves people
//! looking for something recent.
//!
//! What it must never do: write, or build SQL from a filter's text (every value is bound).

use super::{AuditError, RawEntry, SELECT_COLUMNS};
use crate::store::Store;

/// Filters of a newest-first search. Empty strings are no filter.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Only entries with a sequence number below this (the previous page's last `seq`).
    pub before: Option<i64>,
    /// `since_ms <= at_ms < until_ms`.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub actor: Option<String>,
    /// A prefix of the action (`grant.` for every grant event); `%` and `_` match literally.
    pub action_prefix: Option<String>,
    pub subject: Option<String>,
    pub limit: i64,
}

/// Entries matching `s`, newest first, at most `s.limit`.
pub async fn search(store: &Store, s: &Search) -> Result<Vec<RawEntry>, AuditError> {
    let action_like = s.action_prefix.as_deref().map(|a| {
        let escaped = a
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{escaped}%")
    });
    // Only the filters given become predicates: a predicate like `at_ms >= <minimum>` would
    // make the planner prefer the time index and sort the whole table instead of walking the
    // primary key backwards from the newest entry.
    let mut sql = format!("{SELECT_COLUMNS} WHERE seq < $1");
    let mut ints: Vec<i64> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    if let Some(t) = s.since_ms {
        ints.push(t);
        sql.push_str(&format!(" AND at_ms >= ${}", 1 + ints.len()));
    }
    if let Some(t) = s.until_ms {
        ints.push(t);
        sql.push_str(&format!(" AND at_ms < ${}", 1 + ints.len()));
    }
    let first_text = 2 + ints.len();
    for (col, v) in [
        ("actor", s.actor.clone()),
        ("action", action_like),
        ("subject", s.subject.clone()),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            let n = first_text + texts.len();
            if col == "action" {
                sql.push_str(&format!(" AND action LIKE ${n} ESCAPE '\\'"));
            } else {
                sql.push_str(&format!(" AND {col} = ${n}"));
            }
            texts.push(v);
        }
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", s.limit.max(0)));
    let mut query = sqlx::query(&sql).bind(s.before.unwrap_or(i64::MAX));
    for i in &ints {
        query = query.bind(*i);
    }
    for t in &texts {
        query = query.bind(t.as_str());
    }
    let rows = query.fetch_all(store.reads()).await?;
    rows.iter()
        .map(|r| RawEntry::from_row(r).map_err(AuditError::from))
        .collect()
}

/// The newest entry's sequence number; `None` while the log is empty.
pub async fn head_seq(store: &Store) -> Result<Option<i64>, AuditError> {
    Ok(sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
        .fetch_one(store.reads())
        .await?)
}
