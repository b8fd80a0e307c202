//! A campaign's snapshot: who the inventory says holds each resource in scope, why, their recent
//! grant history, and who reviews each holding under the campaign's reviewer rule.
//!
//! Why it exists: creating a campaign (and each recurring run) freezes the list reviewers work
//! on, so later syncs do not move it under them. It reads only the inventory the sync keeps
//! (never Okta), in the caller's transaction.
//!
//! What it must never do: give an item to its own holder (self-review goes to the fallback), or
//! guess a manager: a profile value that resolves to no inventory user and does not look like a
//! login is no manager, and the item goes to the fallback.

use std::collections::HashMap;

use sqlx::Row;

use super::{Item, ReviewError, ReviewerRule};
use crate::policy::Resource;
use crate::store::Tx;

/// How far back "grants in the last 90 days" looks.
const HISTORY_MS: i64 = 90 * 24 * 3600 * 1000;

/// One Okta object under review.
pub(super) struct Target {
    /// The policy resource's name.
    pub name: String,
    pub kind: String,
    pub okta_id: String,
    pub resource_set: String,
    /// Named approvers (the `approvers` rule).
    pub approvers: Vec<String>,
}

impl From<&Resource> for Target {
    fn from(r: &Resource) -> Self {
        Target {
            name: r.name.clone(),
            kind: r.kind.as_str().into(),
            okta_id: r.okta_id.clone(),
            resource_set: r.resource_set.clone().unwrap_or_default(),
            approvers: r.approvers.users.clone(),
        }
    }
}

/// A campaign's options that shape its items.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Options {
    /// Leave out access a live grant explains.
    pub standing_only: bool,
    /// The rule's choice stands even when it is the holder.
    pub allow_self_review: bool,
}

/// The items of `targets`, numbered from 1 in target then login order.
pub(super) async fn items(
    tx: &mut Tx,
    targets: &[Target],
    rule: &ReviewerRule,
    fallback: &str,
    opts: Options,
    now: i64,
) -> Result<Vec<Item>, ReviewError> {
    let Options {
        standing_only,
        allow_self_review,
    } = opts;
    if inventory_users(tx).await? == 0 {
        return Err(ReviewError::NoInventory);
    }
    let history = grant_history(tx, now - HISTORY_MS).await?;
    // Only the manager rule needs the profiles; one read, not one per holder.
    let managers = match rule {
        ReviewerRule::Manager {} => Some(Managers::load(tx).await?),
        _ => None,
    };
    let mut items = Vec::new();
    for t in targets {
        for h in holders(tx, &t.kind, &t.okta_id, &t.resource_set).await? {
            // `grant` is the only reason a live grant gives; `unexplained` is standing access
            // nothing justifies, exactly what a standing-only review is for.
            if standing_only && h.why == "grant" {
                continue;
            }
            let (n, last) = history
                .get(&(h.user_id.clone(), t.kind.clone(), t.okta_id.clone()))
                .map(|(n, l)| (*n, Some(*l)))
                .unwrap_or((0, None));
            let manager = managers.as_ref().and_then(|m| m.of(&h.user_id));
            let reviewer = if allow_self_review {
                chosen(rule, &t.approvers, manager)
                    .unwrap_or(fallback)
                    .to_string()
            } else {
                reviewer_for(rule, &t.approvers, &h.login, manager, fallback)
            };
            items.push(Item {
                item_id: items.len() as i64 + 1,
                user_id: h.user_id,
                user_login: h.login,
                resource: t.name.clone(),
                kind: t.kind.clone(),
                okta_id: t.okta_id.clone(),
                resource_set: t.resource_set.clone(),
                scope: h.scope,
                why: h.why,
                grant_id: h.grant_id,
                grants_90d: n,
                last_granted_at: last,
                reviewer,
                decision: None,
                comment: None,
                decided_by: None,
                decided_at: None,
                remediation: None,
                remediation_detail: None,
                remediated_at: None,
                read_back: None,
                read_back_at: None,
                delegated_from: None,
            });
        }
    }
    Ok(items)
}

/// The inventory's Okta groups and apps that no policy resource manages, in kind then name
/// order. Their name in the items is the Okta name (group name, app label); they have no
/// approvers, so the `approvers` rule gives them to the fallback.
pub(super) async fn unmanaged(
    tx: &mut Tx,
    managed: &[Resource],
) -> Result<Vec<Target>, ReviewError> {
    let rows = sqlx::query(
        "SELECT kind, okta_id, name FROM inventory_objects \
         WHERE kind IN ('okta_group', 'okta_app') ORDER BY kind, name, okta_id",
    )
    .fetch_all(tx.conn())
    .await?;
    let mut v = Vec::new();
    for r in &rows {
        let (kind, okta_id): (String, String) = (r.try_get("kind")?, r.try_get("okta_id")?);
        if managed
            .iter()
            .any(|m| m.kind.as_str() == kind && m.okta_id == okta_id)
        {
            continue;
        }
        v.push(Target {
            name: r.try_get("name")?,
            kind,
            okta_id,
            resource_set: String::new(),
            approvers: Vec::new(),
        });
    }
    Ok(v)
}

/// The reviewer of one holding: the rule's choice unless there is none or it is the holder (no
/// self-review), else the fallback.
pub(super) fn reviewer_for(
    rule: &ReviewerRule,
    approvers: &[String],
    holder: &str,
    manager: Option<&str>,
    fallback: &str,
) -> String {
    let chosen = match rule {
        ReviewerRule::Person { login } => Some(login.as_str()),
        ReviewerRule::Approvers => approvers
            .iter()
            .map(String::as_str)
            .find(|u| !u.eq_ignore_ascii_case(holder)),
        ReviewerRule::Manager {} => manager,
    };
    match chosen {
        Some(r) if !r.eq_ignore_ascii_case(holder) => r.to_string(),
        _ => fallback.to_string(),
    }
}

/// The rule's first choice, the holder included (campaigns that allow self-review).
fn chosen<'a>(
    rule: &'a ReviewerRule,
    approvers: &'a [String],
    manager: Option<&'a str>,
) -> Option<&'a str> {
    match rule {
        ReviewerRule::Person { login } => Some(login.as_str()),
        ReviewerRule::Approvers => approvers.first().map(String::as_str),
        ReviewerRule::Manager {} => manager,
    }
}

/// Every inventory user's manager, as the sync stored the Okta profile.
pub(super) struct Managers {
    /// user id → (login, profile `manager`, profile `managerId`).
    by_id: HashMap<String, (String, Option<String>, Option<String>)>,
    /// Lower-cased login → login.
    by_login: HashMap<String, String>,
}

impl Managers {
    async fn load(tx: &mut Tx) -> Result<Self, ReviewError> {
        let rows = sqlx::query("SELECT user_id, login, manager, manager_id FROM inventory_users")
            .fetch_all(tx.conn())
            .await?;
        let mut m = Managers {
            by_id: HashMap::with_capacity(rows.len()),
            by_login: HashMap::with_capacity(rows.len()),
        };
        for r in &rows {
            let login: String = r.try_get("login")?;
            m.by_login.insert(login.to_lowercase(), login.clone());
            m.by_id.insert(
                r.try_get("user_id")?,
                (login, r.try_get("manager")?, r.try_get("manager_id")?),
            );
        }
        Ok(m)
    }

    /// The login of `user_id`'s manager. `managerId` is preferred (an Okta id or a login,
    /// resolved through the inventory users); then `manager`, which Okta's base profile holds as
    /// a display name, counts only when it is a login or looks like one. A value that resolves
    /// to nobody is used as is only when it looks like a login (has an `@`): a display name or
    /// an unknown id names no one a token could belong to.
    pub fn of(&self, user_id: &str) -> Option<&str> {
        let (_, manager, manager_id) = self.by_id.get(user_id)?;
        [manager_id, manager]
            .into_iter()
            .flatten()
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .find_map(|v| self.resolve(v))
    }

    fn resolve<'a>(&'a self, v: &'a str) -> Option<&'a str> {
        if let Some((login, ..)) = self.by_id.get(v) {
            return Some(login);
        }
        if let Some(login) = self.by_login.get(&v.to_lowercase()) {
            return Some(login);
        }
        v.contains('@').then_some(v)
    }
}

/// One inventory holding, with the holder's login.
pub struct Held {
    pub user_id: String,
    pub login: String,
    pub scope: Option<String>,
    pub why: String,
    pub grant_id: Option<String>,
}

/// Everyone the inventory says holds one Okta object, by login.
pub async fn holders(
    tx: &mut Tx,
    kind: &str,
    okta_id: &str,
    resource_set: &str,
) -> Result<Vec<Held>, ReviewError> {
    let rows = sqlx::query(
        "SELECT a.user_id, u.login, a.scope, a.why, a.grant_id FROM inventory_access a \
         JOIN inventory_users u ON u.user_id = a.user_id \
         WHERE a.kind = $1 AND a.okta_id = $2 AND a.resource_set = $3 ORDER BY u.login",
    )
    .bind(kind)
    .bind(okta_id)
    .bind(resource_set)
    .fetch_all(tx.conn())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Held {
                user_id: r.try_get("user_id")?,
                login: r.try_get("login")?,
                scope: r.try_get("scope")?,
                why: r.try_get("why")?,
                grant_id: r.try_get("grant_id")?,
            })
        })
        .collect()
}

pub async fn inventory_users(tx: &mut Tx) -> Result<i64, ReviewError> {
    let r = sqlx::query("SELECT COUNT(*) FROM inventory_users")
        .fetch_one(tx.conn())
        .await?;
    Ok(r.try_get::<i64, _>(0)?)
}

/// Grants since `since` per (user, kind, okta id): how many and the latest start.
pub async fn grant_history(
    tx: &mut Tx,
    since: i64,
) -> Result<HashMap<(String, String, String), (i64, i64)>, ReviewError> {
    let rows = sqlx::query(
        "SELECT user_id, kind, okta_id, COUNT(*) AS n, MAX(created_at) AS latest FROM grants \
         WHERE created_at >= $1 GROUP BY user_id, kind, okta_id",
    )
    .bind(since)
    .fetch_all(tx.conn())
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                (
                    r.try_get::<String, _>("user_id")?,
                    r.try_get::<String, _>("kind")?,
                    r.try_get::<String, _>("okta_id")?,
                ),
                (r.try_get::<i64, _>("n")?, r.try_get::<i64, _>("latest")?),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managers(rows: &[(&str, &str, Option<&str>, Option<&str>)]) -> Managers {
        let mut m = Managers {
            by_id: HashMap::new(),
            by_login: HashMap::new(),
        };
        for (id, login, manager, manager_id) in rows {
            m.by_login.insert(login.to_lowercase(), login.to_string());
            m.by_id.insert(
                id.to_string(),
                (
                    login.to_string(),
                    manager.map(str::to_string),
                    manager_id.map(str::to_string),
                ),
            );
        }
        m
    }

    #[test]
    fn manager_prefers_manager_id_resolved_through_the_inventory() {
        let m = managers(&[
            ("u1", "ann@x.com", Some("Bob Boss"), Some("u2")),
            ("u2", "bob@x.com", None, None),
            ("u3", "cy@x.com", Some("BOB@x.com"), None),
            ("u4", "di@x.com", Some("Some Name"), Some("00uunknown")),
            ("u5", "ed@x.com", None, Some("outside@x.com")),
        ]);
        assert_eq!(m.of("u1"), Some("bob@x.com"));
        assert_eq!(m.of("u3"), Some("bob@x.com"));
        assert_eq!(m.of("u4"), None);
        assert_eq!(m.of("u5"), Some("outside@x.com"));
        assert_eq!(m.of("u2"), None);
        assert_eq!(m.of("nobody"), None);
    }

    #[test]
    fn the_manager_rule_never_makes_a_holder_review_themselves() {
        let rule = ReviewerRule::Manager {};
        assert_eq!(
            reviewer_for(&rule, &[], "a@x.com", Some("A@x.com"), "fb"),
            "fb"
        );
        assert_eq!(reviewer_for(&rule, &[], "a@x.com", None, "fb"), "fb");
        assert_eq!(
            reviewer_for(&rule, &[], "a@x.com", Some("m@x.com"), "fb"),
            "m@x.com"
        );
    }
}
