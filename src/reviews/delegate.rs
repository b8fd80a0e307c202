//! Delegation: an item's reviewer (or an admin) hands it to another Okta login, who then
//! decides it instead. The item keeps `delegated_from` (the reviewer it was taken from) and
//! every delegation is a `review.delegated` audit entry in the same transaction, so the report
//! and the audit chain show who was asked and who answered.
//!
//! What it must never do: let a reviewer hand away an item that is not theirs, give an item to
//! its holder (self-review) — also not through a holder who is their own fallback reviewer — or
//! change anything on a closed campaign. A bulk call is all or none.

use serde::Deserialize;
use serde_json::json;

use super::service::{check_comment, check_login, item_facts, items_held_open, pick, MAX_BULK};
use super::{Item, ReviewError, ReviewService};
use crate::audit::{self, NewEntry};
use crate::authz::{self, Actor, Role, Verb};
use crate::store::Tx;

/// One delegation (single or in a bulk body).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegateItem {
    pub item: i64,
    /// The new reviewer's Okta login.
    pub to: String,
    #[serde(default)]
    pub comment: Option<String>,
}

impl ReviewService {
    /// Hands `delegations` to their new reviewers, all or none, each with its audit entry.
    /// `actor` must be each item's reviewer, or an admin.
    pub async fn delegate(
        &self,
        actor: &Actor,
        id: &str,
        delegations: &[DelegateItem],
    ) -> Result<Vec<Item>, ReviewError> {
        let caller = actor.login.as_str();
        // Recorded with each delegation: whether an admin handed the item on.
        let admin = actor.has(Role::Admin);
        if delegations.is_empty() || delegations.len() > MAX_BULK {
            return Err(ReviewError::InvalidInput(format!(
                "delegations must hold 1-{MAX_BULK} items"
            )));
        }
        let mut tx = self.grants().store().begin().await?;
        // The same row lock as a decision (see `items_held_open`).
        let (c, all) = items_held_open(&mut tx, id).await?;
        let mut seen = std::collections::HashSet::new();
        let mut done = Vec::new();
        for d in delegations {
            let item = pick(&all, id, d.item, &mut seen)?;
            let to = d.to.trim();
            check_login("to", to)?;
            let comment = check_comment(d.comment.as_deref())?;
            // A holder who is their own fallback reviewer still may not pick who reviews their
            // access: that is an admin's call (the rules say so).
            authz::decide(
                Verb::DelegateReviewItem,
                actor,
                &item_facts(actor, &c, item),
            )
            .map_err(|e| ReviewError::denied(d.item, e))?;
            if !c.allow_self_review && item.user_login.eq_ignore_ascii_case(to) {
                return Err(ReviewError::SelfReview(d.item));
            }
            if item.reviewer.eq_ignore_ascii_case(to) {
                return Err(ReviewError::InvalidInput(format!(
                    "item {}: {to} already reviews it",
                    d.item
                )));
            }
            set_reviewer(&mut tx, id, d.item, to, &item.reviewer).await?;
            audit::append(
                &mut tx,
                self.grants().clock(),
                NewEntry::new(
                    caller,
                    "review.delegated",
                    format!("review:{id}"),
                    json!({
                        "item": d.item, "user_id": item.user_id, "user_login": item.user_login,
                        "resource": item.resource, "from": item.reviewer, "to": to,
                        "comment": comment, "by_admin": admin,
                    }),
                ),
            )
            .await?;
            let mut i = item.clone();
            i.delegated_from = Some(item.reviewer.clone());
            i.reviewer = to.to_string();
            done.push(i);
        }
        tx.commit().await?;
        metrics::counter!("jit_review_delegations_total").increment(done.len() as u64);
        Ok(done)
    }
}

/// Gives an item to `to`, remembering the reviewer it was taken from.
async fn set_reviewer(
    tx: &mut Tx,
    campaign: &str,
    item_id: i64,
    to: &str,
    from: &str,
) -> Result<(), ReviewError> {
    sqlx::query(
        "UPDATE review_items SET reviewer = $3, delegated_from = $4 \
         WHERE campaign_id = $1 AND item_id = $2",
    )
    .bind(campaign)
    .bind(item_id)
    .bind(to)
    .bind(from)
    .execute(tx.conn())
    .await?;
    Ok(())
}
