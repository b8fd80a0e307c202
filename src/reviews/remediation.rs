//! Carrying out `revoke` decisions, then reading Okta back.
//!
//! Why it exists: a review is worth nothing if a rejected access stays. A live grant is ended
//! through the grants service (the same path as an expiry); standing or unexplained access is
//! removed by the grants service's `remove_unexplained` (the path the drift reaction and the
//! sync use), which re-checks under the per-(user, access) lock that no grant made since the
//! snapshot explains it. Then Okta is read again (a separate pass,
//! [`ReviewService::read_back_pending`]) and the item records whether the access is really gone.
//!
//! What it must never do: remove access through any other path, remove access a grant made
//! since the snapshot explains (it is `flagged` for a person instead), or mark an access that
//! cannot be removed per user (an app assignment inherited from a group) as done: it is
//! `flagged` with the reason, for a person to act on.

use futures::StreamExt;
use serde_json::json;

use super::{repo, Item, ReviewError, ReviewService, SYSTEM_ACTOR};
use crate::audit::{self, NewEntry};
use crate::error::ErrorCode;
use crate::grants::{is_not_found, Access, AuditNote, GrantError, Removed, Settled, Unexplained};
use crate::okta::{OktaError, Priority};
use crate::policy::ResourceKind;

/// Pending revokes handled per pass; the next pass takes the rest.
const BATCH: i64 = 500;

/// Revokes carried out at once. Okta's rate limit, not this, bounds the pace: the client paces
/// each bucket's budget, and the revocation lane goes first.
const CONCURRENCY: usize = 16;

/// What carrying out one revoke came to.
enum Outcome {
    Done(String),
    Flagged(String),
    Failed(String),
    /// Retryable (Okta, Redis): stays `pending` for the next pass.
    Later,
}

impl ReviewService {
    /// Carries out pending revokes (of closed campaigns). Durable: the `pending` rows were written
    /// with the close; a crash or a retryable failure leaves them for the next pass.
    pub async fn remediate_pending(&self) -> Result<usize, ReviewError> {
        let pending = {
            let mut conn = self
                .grants()
                .store()
                .reads()
                .acquire()
                .await
                .map_err(crate::store::StoreError::Query)?;
            repo::pending_remediations(&mut conn, BATCH).await?
        };
        // Several at once: each waits mostly on Okta (and its rate limit's pacing), and the
        // per-access lock keeps two removals of one access apart.
        let results: Vec<Result<bool, ReviewError>> = futures::stream::iter(pending)
            .map(|(campaign, item)| async move { self.settle(&campaign, &item).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut n = 0;
        for r in results {
            if r? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Carries out one revoke and records its outcome with its audit entry; `false` when it is
    /// left `pending` for the next pass.
    async fn settle(&self, campaign: &str, item: &Item) -> Result<bool, ReviewError> {
        let (state, detail) = match self.remediate(campaign, item).await {
            Outcome::Later => return Ok(false),
            Outcome::Done(d) => ("done", d),
            Outcome::Flagged(d) => ("flagged", d),
            Outcome::Failed(d) => ("failed", d),
        };
        let now = self.grants().clock().now_ms();
        let mut tx = self.grants().store().begin().await?;
        repo::set_remediation(&mut tx, campaign, item.item_id, state, Some(&detail), now).await?;
        audit::append(
            &mut tx,
            self.grants().clock(),
            NewEntry::new(
                SYSTEM_ACTOR,
                "review.remediated",
                format!("review:{campaign}"),
                json!({
                    "item": item.item_id, "user_id": item.user_id, "resource": item.resource,
                    "why": item.why, "outcome": state, "detail": detail,
                    "decided_by": item.decided_by,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("jit_review_remediations_total", "outcome" => state).increment(1);
        Ok(true)
    }

    /// Reads Okta back for carried-out and flagged revokes not yet confirmed, and records
    /// whether the access is gone. A separate pass on the read lane: removals are never held up
    /// by reads, and a read that fails is simply retried by the next pass.
    pub async fn read_back_pending(&self) -> Result<usize, ReviewError> {
        let pending = {
            let mut conn = self
                .grants()
                .store()
                .reads()
                .acquire()
                .await
                .map_err(crate::store::StoreError::Query)?;
            repo::pending_read_backs(&mut conn, BATCH).await?
        };
        let mut n = 0;
        for (campaign, item) in pending {
            let holds = match self.holds(&item).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(campaign = %campaign, item = item.item_id, error = %e,
                        "cannot read Okta back after a review revoke; retrying on the next pass");
                    continue;
                }
            };
            let now = self.grants().clock().now_ms();
            let rb = if holds { "present" } else { "gone" };
            let mut tx = self.grants().store().begin().await?;
            repo::set_read_back(&mut tx, &campaign, item.item_id, rb, now).await?;
            audit::append(
                &mut tx,
                self.grants().clock(),
                NewEntry::new(
                    SYSTEM_ACTOR,
                    "review.read_back",
                    format!("review:{campaign}"),
                    json!({ "item": item.item_id, "user_id": item.user_id, "read_back": rb }),
                ),
            )
            .await?;
            tx.commit().await?;
            metrics::counter!("jit_review_read_backs_total", "read_back" => rb).increment(1);
            n += 1;
        }
        Ok(n)
    }

    async fn remediate(&self, campaign: &str, item: &Item) -> Outcome {
        let Some(kind) = ResourceKind::parse(&item.kind) else {
            return Outcome::Failed(format!("unknown kind `{}`", item.kind));
        };
        if kind == ResourceKind::OktaApp && item.scope.as_deref() == Some("GROUP") {
            return Outcome::Flagged(
                "app assignment inherited from a group: remove the user from the group that \
                 assigns the app, or change the group's assignment"
                    .into(),
            );
        }
        let reason = format!(
            "access review {campaign}: revoked by {}",
            item.decided_by.as_deref().unwrap_or(SYSTEM_ACTOR)
        );
        if let Some(gid) = &item.grant_id {
            return match self.grants().revoke(SYSTEM_ACTOR, gid, &reason).await {
                Ok(g) => Outcome::Done(format!("grant {gid} {}", g.state.as_str())),
                // The grant row is gone (should not happen): the access is treated as standing.
                Err(GrantError::NotFound(_)) => self.remove_standing(campaign, kind, item).await,
                Err(e) if e.status().is_client_error() => Outcome::Failed(e.to_string()),
                Err(e) => {
                    tracing::warn!(grant = %gid, error = %e, "review revoke of a grant failed; retrying later");
                    Outcome::Later
                }
            };
        }
        self.remove_standing(campaign, kind, item).await
    }

    /// Standing or unexplained access: the grants service's removal of unexplained access. The
    /// reviewer's decision is about exactly this access, so `allow_standing` does not keep it;
    /// a grant made since the snapshot does (flagged: end it or review it again).
    async fn remove_standing(&self, campaign: &str, kind: ResourceKind, item: &Item) -> Outcome {
        let u = Unexplained {
            access: self.access_of(kind, item),
            user_login: Some(item.user_login.clone()),
            resource: None,
            ended_since: None,
            role_assignment: item
                .scope
                .clone()
                .filter(|_| kind == ResourceKind::OktaRole),
            note: AuditNote {
                actor: SYSTEM_ACTOR.into(),
                action: "review.access_removed".into(),
                subject: format!("review:{campaign}"),
                details: json!({
                    "item": item.item_id, "user_id": item.user_id, "resource": item.resource,
                    "kind": item.kind, "okta_id": item.okta_id, "why": item.why,
                    "decided_by": item.decided_by,
                }),
            },
        };
        match self.grants().remove_unexplained(&u).await {
            Ok(Settled::Removed(r)) => Outcome::Done(format!("okta {}", r.as_str())),
            Ok(Settled::NotPresent) => {
                Outcome::Done(format!("okta {}", Removed::AlreadyGone.as_str()))
            }
            Ok(Settled::Explained { grant_id }) => Outcome::Flagged(format!(
                "grant {grant_id}, made since the review's snapshot, explains this access: it \
                 was left in place; end that grant or review the access again"
            )),
            // Not asked for (no resource given), but a settled answer all the same.
            Ok(Settled::AllowedStanding | Settled::Reported) => {
                Outcome::Flagged("the access was left in place".into())
            }
            Err(GrantError::Okta(e)) if !e.is_retryable() => {
                Outcome::Failed(crate::error::chain(&e))
            }
            Err(e) => {
                tracing::warn!(campaign = %campaign, item = item.item_id, error = %e,
                    "review removal failed; retrying on the next pass");
                Outcome::Later
            }
        }
    }

    fn access_of(&self, kind: ResourceKind, item: &Item) -> Access {
        let rs = (!item.resource_set.is_empty()).then_some(item.resource_set.as_str());
        Access::new(&item.user_id, kind, &item.okta_id, rs)
    }

    /// Whether Okta says the user still holds the item's access (read lane).
    async fn holds(&self, item: &Item) -> Result<bool, OktaError> {
        let Some(kind) = ResourceKind::parse(&item.kind) else {
            return Ok(false);
        };
        let access = self.access_of(kind, item);
        let g = self.grants();
        let r = match kind {
            // The assignment the snapshot saw, or any of the same role.
            ResourceKind::OktaRole => g
                .find_role_assignment(&access, item.scope.as_deref(), Priority::Read)
                .await
                .map(|a| a.is_some()),
            _ => g.holds(&access, Priority::Read).await.map(|h| h.holds()),
        };
        match r {
            Err(e) if is_not_found(&e) => Ok(false),
            r => r,
        }
    }
}
