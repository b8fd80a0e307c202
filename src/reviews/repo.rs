//! SQL for review campaigns and items. Writes take the caller's transaction (so each change
//! commits with its audit entry); reads take any connection.
//!
//! What it must never do: build SQL from a value (only placeholder numbers are formatted in).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Campaign, DefaultAction, Item, ReviewError, ReviewerRule};
use crate::store::Tx;

const ITEM_COLS: &str = "item_id, user_id, user_login, resource, kind, okta_id, resource_set, \
     scope, why, grant_id, grants_90d, last_granted_at, reviewer, decision, comment, decided_by, \
     decided_at, remediation, remediation_detail, remediated_at, read_back, read_back_at, delegated_from";

/// Rows per multi-row INSERT of items (16 binds each): well under both engines' bind limits.
const CHUNK: usize = 200;

pub async fn insert_campaign(tx: &mut Tx, c: &Campaign) -> Result<(), ReviewError> {
    // The scope column is JSON so scope options need no migration; a campaign stored before
    // they existed reads as managed resources only, standing and granted access alike.
    let scope = serde_json::json!({
        "resources": c.resources,
        "include_unmanaged": c.include_unmanaged,
        "standing_only": c.standing_only,
        "allow_self_review": c.allow_self_review,
    })
    .to_string();
    let rule =
        serde_json::to_string(&c.reviewer).map_err(|e| ReviewError::InvalidInput(e.to_string()))?;
    sqlx::query(
        "INSERT INTO review_campaigns (id, name, owner, scope, reviewer_rule, fallback, \
         default_action, due_at, state, created_at, closed_at, audit_seq_start, recur, \
         next_run_at, parent_id, run_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12, $13, $14, $15)",
    )
    .bind(c.id.clone())
    .bind(c.name.clone())
    .bind(c.owner.clone())
    .bind(scope)
    .bind(rule)
    .bind(c.fallback.clone())
    .bind(c.default.as_str())
    .bind(c.due_at)
    .bind(c.state.clone())
    .bind(c.created_at)
    .bind(c.audit_seq_start)
    .bind(c.recur.clone())
    .bind(c.next_run_at)
    .bind(c.parent_id.clone())
    .bind(c.run_at)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn insert_items(tx: &mut Tx, campaign: &str, items: &[Item]) -> Result<(), ReviewError> {
    for chunk in items.chunks(CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let p: Vec<String> = (1..=16).map(|c| format!("${}", r * 16 + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO review_items (campaign_id, item_id, user_id, user_login, resource, kind, \
             okta_id, resource_set, scope, why, grant_id, grants_90d, last_granted_at, reviewer, \
             remediation, remediation_detail) VALUES {}",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for i in chunk {
            q = q
                .bind(campaign.to_string())
                .bind(i.item_id)
                .bind(i.user_id.clone())
                .bind(i.user_login.clone())
                .bind(i.resource.clone())
                .bind(i.kind.clone())
                .bind(i.okta_id.clone())
                .bind(i.resource_set.clone())
                .bind(i.scope.clone())
                .bind(i.why.clone())
                .bind(i.grant_id.clone())
                .bind(i.grants_90d)
                .bind(i.last_granted_at)
                .bind(i.reviewer.clone())
                .bind(i.remediation.clone())
                .bind(i.remediation_detail.clone());
        }
        q.execute(tx.conn()).await?;
    }
    Ok(())
}

fn campaign(r: &AnyRow) -> Result<Campaign, ReviewError> {
    let scope: String = r.try_get("scope")?;
    let rule: String = r.try_get("reviewer_rule")?;
    let bad = |what: &str| ReviewError::InvalidInput(format!("stored campaign has a bad {what}"));
    let scope: serde_json::Value = serde_json::from_str(&scope).map_err(|_| bad("scope"))?;
    let resources = scope["resources"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let reviewer: ReviewerRule = serde_json::from_str(&rule).map_err(|_| bad("reviewer rule"))?;
    let default: String = r.try_get("default_action")?;
    Ok(Campaign {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        owner: r.try_get("owner")?,
        resources,
        include_unmanaged: scope["include_unmanaged"].as_bool().unwrap_or(false),
        standing_only: scope["standing_only"].as_bool().unwrap_or(false),
        allow_self_review: scope["allow_self_review"].as_bool().unwrap_or(false),
        reviewer,
        fallback: r.try_get("fallback")?,
        default: DefaultAction::parse(&default).ok_or_else(|| bad("default"))?,
        due_at: r.try_get("due_at")?,
        state: r.try_get("state")?,
        created_at: r.try_get("created_at")?,
        closed_at: r.try_get("closed_at")?,
        audit_seq_start: r.try_get("audit_seq_start")?,
        recur: r.try_get("recur")?,
        next_run_at: r.try_get("next_run_at")?,
        parent_id: r.try_get("parent_id")?,
        run_at: r.try_get("run_at")?,
    })
}

fn item(r: &AnyRow) -> Result<Item, ReviewError> {
    Ok(Item {
        item_id: r.try_get("item_id")?,
        user_id: r.try_get("user_id")?,
        user_login: r.try_get("user_login")?,
        resource: r.try_get("resource")?,
        kind: r.try_get("kind")?,
        okta_id: r.try_get("okta_id")?,
        resource_set: r.try_get("resource_set")?,
        scope: r.try_get("scope")?,
        why: r.try_get("why")?,
        grant_id: r.try_get("grant_id")?,
        grants_90d: r.try_get("grants_90d")?,
        last_granted_at: r.try_get("last_granted_at")?,
        reviewer: r.try_get("reviewer")?,
        decision: r.try_get("decision")?,
        comment: r.try_get("comment")?,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get("decided_at")?,
        remediation: r.try_get("remediation")?,
        remediation_detail: r.try_get("remediation_detail")?,
        remediated_at: r.try_get("remediated_at")?,
        read_back: r.try_get("read_back")?,
        read_back_at: r.try_get("read_back_at")?,
        delegated_from: r.try_get("delegated_from")?,
    })
}

pub async fn get_campaign(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<Campaign>, ReviewError> {
    let r = sqlx::query("SELECT * FROM review_campaigns WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    r.as_ref().map(campaign).transpose()
}

pub async fn list_campaigns(conn: &mut AnyConnection) -> Result<Vec<Campaign>, ReviewError> {
    let rows = sqlx::query("SELECT * FROM review_campaigns ORDER BY created_at DESC, id")
        .fetch_all(conn)
        .await?;
    rows.iter().map(campaign).collect()
}

/// Open campaigns whose due date has passed.
pub async fn due_campaigns(conn: &mut AnyConnection, now: i64) -> Result<Vec<String>, ReviewError> {
    let rows = sqlx::query(
        "SELECT id FROM review_campaigns WHERE state = 'open' AND due_at <= $1 ORDER BY due_at",
    )
    .bind(now)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?)
}

/// Recurring campaigns whose next run is due: `(template id, next_run_at)`.
pub async fn due_runs(
    conn: &mut AnyConnection,
    now: i64,
) -> Result<Vec<(String, i64)>, ReviewError> {
    let rows = sqlx::query(
        "SELECT id, next_run_at FROM review_campaigns WHERE next_run_at IS NOT NULL \
         AND next_run_at <= $1 ORDER BY next_run_at",
    )
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("next_run_at")?)))
        .collect()
}

/// Moves a template's `next_run_at` from `from` to `to` (a compare-and-set); false when another
/// replica moved it first. On PostgreSQL the loser waits for the winner's commit, then matches
/// no row.
pub async fn advance_run(
    tx: &mut Tx,
    campaign: &str,
    from: i64,
    to: Option<i64>,
) -> Result<bool, ReviewError> {
    let r = sqlx::query(
        "UPDATE review_campaigns SET next_run_at = $3 WHERE id = $1 AND next_run_at = $2",
    )
    .bind(campaign)
    .bind(from)
    .bind(to)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Clears a template's `next_run_at`; false when it had none (already stopped).
pub async fn stop_runs(tx: &mut Tx, campaign: &str) -> Result<bool, ReviewError> {
    let r = sqlx::query(
        "UPDATE review_campaigns SET next_run_at = NULL \
         WHERE id = $1 AND next_run_at IS NOT NULL",
    )
    .bind(campaign)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Items and undecided items per campaign, of one reviewer or of everyone: one grouped read
/// for a list of campaigns, instead of loading every campaign's items to count them.
pub async fn item_counts(
    conn: &mut AnyConnection,
    reviewer: Option<&str>,
) -> Result<std::collections::HashMap<String, (i64, i64)>, ReviewError> {
    let rows = sqlx::query(
        "SELECT campaign_id, COUNT(*) AS n, \
         SUM(CASE WHEN decision IS NULL THEN 1 ELSE 0 END) AS undecided \
         FROM review_items WHERE ($1 = '' OR LOWER(reviewer) = LOWER($1)) \
         GROUP BY campaign_id",
    )
    .bind(reviewer.unwrap_or(""))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("campaign_id")?,
                (r.try_get::<i64, _>("n")?, r.try_get::<i64, _>("undecided")?),
            ))
        })
        .collect()
}

/// A campaign's items, optionally only those of one reviewer (case-insensitive login).
pub async fn items(
    conn: &mut AnyConnection,
    campaign: &str,
    reviewer: Option<&str>,
) -> Result<Vec<Item>, ReviewError> {
    let rows = match reviewer {
        Some(r) => {
            sqlx::query(&format!(
                "SELECT {ITEM_COLS} FROM review_items WHERE campaign_id = $1 \
                 AND LOWER(reviewer) = LOWER($2) ORDER BY item_id"
            ))
            .bind(campaign)
            .bind(r)
            .fetch_all(conn)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {ITEM_COLS} FROM review_items WHERE campaign_id = $1 ORDER BY item_id"
            ))
            .bind(campaign)
            .fetch_all(conn)
            .await?
        }
    };
    rows.iter().map(item).collect()
}

/// Items whose revoke is waiting to be carried out (across campaigns), oldest first.
pub async fn pending_remediations(
    conn: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<(String, Item)>, ReviewError> {
    let rows = sqlx::query(&format!(
        "SELECT campaign_id, {ITEM_COLS} FROM review_items WHERE remediation = 'pending' \
         ORDER BY campaign_id, item_id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>("campaign_id")?, item(r)?)))
        .collect()
}

/// Carried-out or flagged revokes whose Okta read-back is not recorded yet.
pub async fn pending_read_backs(
    conn: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<(String, Item)>, ReviewError> {
    let rows = sqlx::query(&format!(
        "SELECT campaign_id, {ITEM_COLS} FROM review_items \
         WHERE remediation IN ('done', 'flagged') AND read_back IS NULL \
         ORDER BY campaign_id, item_id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>("campaign_id")?, item(r)?)))
        .collect()
}

pub async fn set_decision(
    tx: &mut Tx,
    campaign: &str,
    item_id: i64,
    decision: &str,
    comment: Option<&str>,
    by: &str,
    at: i64,
) -> Result<(), ReviewError> {
    sqlx::query(
        "UPDATE review_items SET decision = $3, comment = $4, decided_by = $5, decided_at = $6 \
         WHERE campaign_id = $1 AND item_id = $2",
    )
    .bind(campaign)
    .bind(item_id)
    .bind(decision)
    .bind(comment.map(str::to_string))
    .bind(by)
    .bind(at)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Locks a campaign that is not closed for the rest of the transaction; false when it is closed.
pub async fn hold_open(tx: &mut Tx, campaign: &str) -> Result<bool, ReviewError> {
    let r = sqlx::query(
        "UPDATE review_campaigns SET state = state WHERE id = $1 AND state <> 'closed'",
    )
    .bind(campaign)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Moves a campaign from `from` to `to`; false when another caller moved it first.
pub async fn set_state(
    tx: &mut Tx,
    campaign: &str,
    from: &str,
    to: &str,
    closed_at: Option<i64>,
) -> Result<bool, ReviewError> {
    let r = sqlx::query(
        "UPDATE review_campaigns SET state = $3, closed_at = $4 WHERE id = $1 AND state = $2",
    )
    .bind(campaign)
    .bind(from)
    .bind(to)
    .bind(closed_at)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Reassigns the undecided items to `reviewer` (escalation).
pub async fn escalate_undecided(
    tx: &mut Tx,
    campaign: &str,
    reviewer: &str,
) -> Result<u64, ReviewError> {
    let r = sqlx::query(
        "UPDATE review_items SET reviewer = $2 WHERE campaign_id = $1 AND decision IS NULL",
    )
    .bind(campaign)
    .bind(reviewer)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected())
}

/// Applies `decision` to the undecided items, by the system.
pub async fn default_undecided(
    tx: &mut Tx,
    campaign: &str,
    decision: &str,
    at: i64,
) -> Result<u64, ReviewError> {
    let r = sqlx::query(
        "UPDATE review_items SET decision = $2, decided_by = $3, decided_at = $4, \
         comment = 'undecided at the due date: campaign default' \
         WHERE campaign_id = $1 AND decision IS NULL",
    )
    .bind(campaign)
    .bind(decision)
    .bind(super::SYSTEM_ACTOR)
    .bind(at)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected())
}

/// Marks every `revoke` item of a closed campaign for remediation.
pub async fn queue_revokes(tx: &mut Tx, campaign: &str) -> Result<u64, ReviewError> {
    let r = sqlx::query(
        "UPDATE review_items SET remediation = 'pending' \
         WHERE campaign_id = $1 AND decision = 'revoke' AND remediation IS NULL",
    )
    .bind(campaign)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected())
}

pub async fn set_remediation(
    tx: &mut Tx,
    campaign: &str,
    item_id: i64,
    outcome: &str,
    detail: Option<&str>,
    at: i64,
) -> Result<(), ReviewError> {
    sqlx::query(
        "UPDATE review_items SET remediation = $3, remediation_detail = $4, remediated_at = $5 \
         WHERE campaign_id = $1 AND item_id = $2",
    )
    .bind(campaign)
    .bind(item_id)
    .bind(outcome)
    .bind(detail.map(str::to_string))
    .bind(at)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn set_read_back(
    tx: &mut Tx,
    campaign: &str,
    item_id: i64,
    read_back: &str,
    at: i64,
) -> Result<(), ReviewError> {
    sqlx::query(
        "UPDATE review_items SET read_back = $3, read_back_at = $4 \
         WHERE campaign_id = $1 AND item_id = $2",
    )
    .bind(campaign)
    .bind(item_id)
    .bind(read_back)
    .bind(at)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The campaign's audit range: the highest seq of an entry about it, and the chain's head.
pub async fn audit_range(
    conn: &mut AnyConnection,
    campaign: &str,
) -> Result<(i64, i64, String), ReviewError> {
    let end: Option<i64> = sqlx::query("SELECT MAX(seq) FROM audit_log WHERE subject = $1")
        .bind(format!("review:{campaign}"))
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_one(&mut *conn)
        .await?;
    Ok((
        end.unwrap_or(0),
        head.try_get("seq")?,
        head.try_get("hash")?,
    ))
}

/// `(item, seq)` of the latest `review.decided` entry of each decided item of `campaign`.
pub async fn decision_entries(
    store: &crate::store::Store,
    campaign: &str,
) -> Result<Vec<(i64, i64)>, ReviewError> {
    let rows = sqlx::query(
        "SELECT seq, details FROM audit_log WHERE subject = $1 AND action = 'review.decided' \
         ORDER BY seq",
    )
    .bind(format!("review:{campaign}"))
    .fetch_all(store.reads())
    .await?;
    let mut latest = std::collections::BTreeMap::new();
    for r in rows {
        let seq: i64 = r.try_get(0)?;
        let details: String = r.try_get(1)?;
        let item = serde_json::from_str::<serde_json::Value>(&details)
            .ok()
            .and_then(|v| v.get("item").and_then(|i| i.as_i64()));
        if let Some(item) = item {
            latest.insert(item, seq);
        }
    }
    Ok(latest.into_iter().collect())
}

/// Items of campaigns not yet closed, by state (`undecided`, `keep`, `revoke`), and how many
/// undecided ones are past their campaign's due date.
pub async fn open_item_states(
    conn: &mut AnyConnection,
    now: i64,
) -> Result<(Vec<(String, i64)>, i64), ReviewError> {
    let rows = sqlx::query(
        "SELECT COALESCE(i.decision, 'undecided') AS state, COUNT(*) AS n FROM review_items i \
         JOIN review_campaigns c ON c.id = i.campaign_id WHERE c.state <> 'closed' \
         GROUP BY COALESCE(i.decision, 'undecided')",
    )
    .fetch_all(&mut *conn)
    .await?;
    let states = rows
        .iter()
        .map(|r| Ok((r.try_get::<String, _>("state")?, r.try_get::<i64, _>("n")?)))
        .collect::<Result<Vec<_>, ReviewError>>()?;
    let overdue: i64 = sqlx::query(
        "SELECT COUNT(*) FROM review_items i JOIN review_campaigns c ON c.id = i.campaign_id \
         WHERE c.state <> 'closed' AND c.due_at <= $1 AND i.decision IS NULL",
    )
    .bind(now)
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    Ok((states, overdue))
}
