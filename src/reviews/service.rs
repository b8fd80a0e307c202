//! The review domain service: campaigns, decisions, closing at the due date. Every channel (HTTP,
//! CLI) is a thin adapter over it.
//!
//! What it must never do: change an item without its audit entry in the same transaction, let a
//! caller decide an item that is not theirs or their own access, or decide on a closed campaign.

use serde::Deserialize;
use serde_json::json;

use super::snapshot::{self, Target};
use super::{
    repo, Campaign, Decision, DefaultAction, Item, ReviewError, ReviewerRule, SYSTEM_ACTOR,
};
use crate::audit::{self, NewEntry};
use crate::authz::{self, Actor, Facts, Verb};
use crate::grants::GrantService;
use crate::policy::Resource;
use crate::store::Tx;

/// Longest comment a reviewer may write.
pub const MAX_COMMENT: usize = 2_000;
/// Most decisions in one bulk call.
pub const MAX_BULK: usize = 1_000;
const MAX_NAME: usize = 200;

/// `POST /v1/reviews`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    pub name: String,
    /// Policy resource names, or `["*"]` for every managed resource.
    pub resources: Vec<String>,
    /// Also snapshot the inventory's Okta groups and apps the policy does not manage.
    #[serde(default)]
    pub include_unmanaged: bool,
    /// Leave out access a live grant explains: review standing access only.
    #[serde(default)]
    pub standing_only: bool,
    /// Let reviewers review their own access (default: never; it goes to the fallback).
    #[serde(default)]
    pub allow_self_review: bool,
    pub reviewer: ReviewerRule,
    /// Who reviews what the rule cannot assign, and every reviewer's own access.
    pub fallback: String,
    /// RFC 3339.
    pub due_at: String,
    pub default: DefaultAction,
    /// Makes the campaign recurring: a cron expression with seconds (`0 0 9 1 */3 *`, UTC).
    /// Each run is a new campaign (see [`super::recur`]).
    #[serde(default)]
    pub recur: Option<String>,
}

/// A campaign about to be opened, checked and resolved: what [`ReviewService::create`] and a
/// recurring run have in common.
pub(super) struct Spec {
    pub name: String,
    pub resources: Vec<Resource>,
    pub include_unmanaged: bool,
    pub standing_only: bool,
    pub allow_self_review: bool,
    pub reviewer: ReviewerRule,
    pub fallback: String,
    pub default: DefaultAction,
    pub due_at: i64,
    /// `(expression, first run)` of a recurring template.
    pub recur: Option<(String, i64)>,
    pub parent_id: Option<String>,
    pub run_at: Option<i64>,
}

/// One decision (single or in a bulk body).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideItem {
    pub item: i64,
    pub decision: Decision,
    #[serde(default)]
    pub comment: Option<String>,
}

/// The review service. Cheap to clone.
#[derive(Clone)]
pub struct ReviewService {
    grants: GrantService,
}

/// The campaign's items, for a change that must not race its close: the campaign must exist and
/// be open, and its row is locked in `tx` (PostgreSQL; SQLite has one writer anyway), so a close
/// cannot commit between this check and the change. A decision or a delegation is either
/// before the close (and remediated with it) or refused.
pub(super) async fn items_held_open(
    tx: &mut Tx,
    id: &str,
) -> Result<(Campaign, Vec<Item>), ReviewError> {
    let c = repo::get_campaign(tx.conn(), id)
        .await?
        .ok_or_else(|| ReviewError::UnknownCampaign(id.into()))?;
    if c.state == "closed" || !repo::hold_open(tx, id).await? {
        return Err(ReviewError::Closed(id.into()));
    }
    let items = repo::items(tx.conn(), id, None).await?;
    Ok((c, items))
}

/// Item number `n` of a campaign's items (numbered from 1 in order), at most once per request.
pub(super) fn pick<'a>(
    all: &'a [Item],
    id: &str,
    n: i64,
    seen: &mut std::collections::HashSet<i64>,
) -> Result<&'a Item, ReviewError> {
    if !seen.insert(n) {
        return Err(ReviewError::InvalidInput(format!("item {n} appears twice")));
    }
    usize::try_from(n - 1)
        .ok()
        .and_then(|i| all.get(i))
        .filter(|i| i.item_id == n)
        .ok_or(ReviewError::UnknownItem(id.into(), n))
}

pub(super) fn check_login(what: &str, s: &str) -> Result<(), ReviewError> {
    if s.trim().is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
        return Err(ReviewError::InvalidInput(format!(
            "{what} must be 1-255 characters without control characters"
        )));
    }
    Ok(())
}

/// What the authorization rules need about `actor` and one item of campaign `c`.
pub(super) fn item_facts(actor: &Actor, c: &Campaign, item: &Item) -> Facts {
    Facts {
        owner: actor.is(&item.user_login),
        reviewer: actor.is(&item.reviewer),
        self_review_allowed: c.allow_self_review,
        ..Facts::default()
    }
}

/// A comment trimmed (empty is none), at most [`MAX_COMMENT`] bytes of text.
pub(super) fn check_comment(c: Option<&str>) -> Result<Option<&str>, ReviewError> {
    let c = c.map(str::trim).filter(|c| !c.is_empty());
    if c.is_some_and(|c| c.len() > MAX_COMMENT || c.chars().any(|ch| ch.is_control() && ch != '\n'))
    {
        return Err(ReviewError::InvalidInput(format!(
            "comment must be at most {MAX_COMMENT} bytes of text"
        )));
    }
    Ok(c)
}

impl ReviewService {
    pub fn new(grants: GrantService) -> Self {
        ReviewService { grants }
    }

    pub fn grants(&self) -> &GrantService {
        &self.grants
    }

    /// Creates a campaign and snapshots its items from the inventory, in one transaction with
    /// its `review.created` audit entry.
    pub async fn create(&self, actor: &str, req: CreateCampaign) -> Result<Campaign, ReviewError> {
        if req.name.trim().is_empty()
            || req.name.len() > MAX_NAME
            || req.name.chars().any(char::is_control)
        {
            return Err(ReviewError::InvalidInput(format!(
                "name must be 1-{MAX_NAME} characters without control characters"
            )));
        }
        check_login("fallback", &req.fallback)?;
        if let ReviewerRule::Person { login } = &req.reviewer {
            check_login("reviewer.login", login)?;
        }
        let due_at = crate::clock::parse_time(&req.due_at)
            .map_err(|e| ReviewError::InvalidInput(format!("due_at: {e}")))?
            .timestamp_millis();
        let now = self.grants.clock().now_ms();
        if due_at <= now {
            return Err(ReviewError::InvalidInput(
                "due_at must be in the future".into(),
            ));
        }
        let recur = match req.recur.as_deref() {
            Some(expr) => Some((
                expr.trim().to_string(),
                super::recur::schedule(expr, now)?.1,
            )),
            None => None,
        };
        let spec = Spec {
            resources: self.resolve(&req.resources)?,
            include_unmanaged: req.include_unmanaged,
            standing_only: req.standing_only,
            allow_self_review: req.allow_self_review,
            name: req.name,
            reviewer: req.reviewer,
            fallback: req.fallback,
            default: req.default,
            due_at,
            recur,
            parent_id: None,
            run_at: None,
        };
        let mut tx = self.grants.store().begin().await?;
        let (c, n) = self.open_in(&mut tx, actor, spec, now).await?;
        tx.commit().await?;
        metrics::counter!("jit_review_items_total", "state" => "created").increment(n as u64);
        Ok(c)
    }

    /// Policy resources by name, or every one for `["*"]`.
    pub(super) fn resolve(&self, names: &[String]) -> Result<Vec<Resource>, ReviewError> {
        let policy = self.grants.policy().current();
        if names == ["*"] {
            return Ok(policy.resources.clone());
        }
        if names.is_empty() || names.len() > 1_000 {
            return Err(ReviewError::InvalidInput(
                "resources must name 1-1000 policy resources, or be [\"*\"]".into(),
            ));
        }
        let mut v = Vec::new();
        for name in names {
            let r = policy
                .get(name)
                .ok_or_else(|| ReviewError::UnknownResource(name.clone()))?;
            if !v.iter().any(|x: &Resource| x.name == r.name) {
                v.push(r.clone());
            }
        }
        Ok(v)
    }

    /// Snapshots the items of `spec` from the inventory and stores the campaign with its
    /// `review.created` entry, in the caller's transaction. Returns it with its item count.
    pub(super) async fn open_in(
        &self,
        tx: &mut Tx,
        actor: &str,
        spec: Spec,
        now: i64,
    ) -> Result<(Campaign, usize), ReviewError> {
        let Spec {
            name,
            resources,
            include_unmanaged,
            standing_only,
            allow_self_review,
            reviewer: rule,
            fallback,
            default,
            due_at,
            recur,
            parent_id,
            run_at,
        } = spec;
        let id = uuid::Uuid::now_v7().to_string();
        let mut targets: Vec<Target> = resources.iter().map(Target::from).collect();
        if include_unmanaged {
            let policy = self.grants.policy().current();
            targets.extend(snapshot::unmanaged(tx, &policy.resources).await?);
        }
        let items = snapshot::items(
            tx,
            &targets,
            &rule,
            &fallback,
            snapshot::Options {
                standing_only,
                allow_self_review,
            },
            now,
        )
        .await?;
        // Who reviews how many: what the `review.opened` notice tells each reviewer.
        let mut reviewers = std::collections::BTreeMap::<&str, u64>::new();
        for i in &items {
            *reviewers.entry(i.reviewer.as_str()).or_default() += 1;
        }
        let entry = audit::append(
            tx,
            self.grants.clock(),
            NewEntry::new(
                actor,
                "review.created",
                format!("review:{id}"),
                json!({
                    "campaign": id,
                    "name": name, "resources": resources.iter().map(|r| &r.name).collect::<Vec<_>>(),
                    "include_unmanaged": include_unmanaged, "standing_only": standing_only,
                    "allow_self_review": allow_self_review,
                    "reviewer": rule, "fallback": fallback, "due_at": due_at,
                    "default": default.as_str(), "items": items.len(),
                    "reviewers": reviewers,
                    "recur": recur.as_ref().map(|r| &r.0), "parent_id": parent_id, "run_at": run_at,
                }),
            ),
        )
        .await?;
        let c = Campaign {
            id: id.clone(),
            name,
            owner: actor.into(),
            resources: resources.iter().map(|r| r.name.clone()).collect(),
            include_unmanaged,
            standing_only,
            allow_self_review,
            reviewer: rule,
            fallback,
            default,
            due_at,
            state: "open".into(),
            created_at: now,
            closed_at: None,
            audit_seq_start: entry.seq,
            next_run_at: recur.as_ref().map(|r| r.1),
            recur: recur.map(|r| r.0),
            parent_id,
            run_at,
        };
        repo::insert_campaign(tx, &c).await?;
        repo::insert_items(tx, &id, &items).await?;
        Ok((c, items.len()))
    }

    pub async fn get(&self, id: &str) -> Result<Campaign, ReviewError> {
        let mut conn = self.conn().await?;
        repo::get_campaign(&mut conn, id)
            .await?
            .ok_or_else(|| ReviewError::UnknownCampaign(id.into()))
    }

    pub async fn list(&self) -> Result<Vec<Campaign>, ReviewError> {
        let mut conn = self.conn().await?;
        repo::list_campaigns(&mut conn).await
    }

    /// `(items, undecided)` per campaign id, of `reviewer`'s items or of all.
    pub async fn item_counts(
        &self,
        reviewer: Option<&str>,
    ) -> Result<std::collections::HashMap<String, (i64, i64)>, ReviewError> {
        let mut conn = self.conn().await?;
        repo::item_counts(&mut conn, reviewer).await
    }

    pub async fn items(
        &self,
        id: &str,
        reviewer: Option<&str>,
    ) -> Result<(Campaign, Vec<Item>), ReviewError> {
        let mut conn = self.conn().await?;
        let c = repo::get_campaign(&mut conn, id)
            .await?
            .ok_or_else(|| ReviewError::UnknownCampaign(id.into()))?;
        let items = repo::items(&mut conn, id, reviewer).await?;
        Ok((c, items))
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, ReviewError> {
        Ok(self
            .grants
            .store()
            .reads()
            .acquire()
            .await
            .map_err(crate::store::StoreError::Query)?)
    }

    /// Records `decisions` by `reviewer`, all or none, each with its audit entry, in one
    /// transaction. Every item must be the caller's and not their own access; the campaign must
    /// not be closed.
    pub async fn decide(
        &self,
        actor: &Actor,
        id: &str,
        decisions: &[DecideItem],
    ) -> Result<Vec<Item>, ReviewError> {
        let reviewer = actor.login.as_str();
        if decisions.is_empty() || decisions.len() > MAX_BULK {
            return Err(ReviewError::InvalidInput(format!(
                "decisions must hold 1-{MAX_BULK} items"
            )));
        }
        let mut tx = self.grants.store().begin().await?;
        let (c, all) = items_held_open(&mut tx, id).await?;
        let now = self.grants.clock().now_ms();
        let mut seen = std::collections::HashSet::new();
        let mut decided = Vec::new();
        for d in decisions {
            let item = pick(&all, id, d.item, &mut seen)?;
            authz::decide(Verb::DecideReviewItem, actor, &item_facts(actor, &c, item))
                .map_err(|e| ReviewError::denied(d.item, e))?;
            let comment = check_comment(d.comment.as_deref())?;
            if d.decision == Decision::Keep && item.why == "unexplained" && comment.is_none() {
                return Err(ReviewError::InvalidInput(format!(
                    "item {}: keeping unexplained access needs a comment",
                    d.item
                )));
            }
            repo::set_decision(
                &mut tx,
                id,
                d.item,
                d.decision.as_str(),
                comment,
                reviewer,
                now,
            )
            .await?;
            audit::append(
                &mut tx,
                self.grants.clock(),
                NewEntry::new(
                    reviewer,
                    "review.decided",
                    format!("review:{id}"),
                    json!({
                        "item": d.item, "user_id": item.user_id, "user_login": item.user_login,
                        "resource": item.resource, "why": item.why,
                        "decision": d.decision.as_str(), "comment": comment,
                        "previous": item.decision,
                    }),
                ),
            )
            .await?;
            let mut i = item.clone();
            i.decision = Some(d.decision.as_str().into());
            i.comment = comment.map(str::to_string);
            i.decided_by = Some(reviewer.into());
            i.decided_at = Some(now);
            decided.push(i);
        }
        tx.commit().await?;
        for d in decisions {
            metrics::counter!("jit_review_decisions_total", "decision" => d.decision.as_str())
                .increment(1);
        }
        Ok(decided)
    }

    /// Creates the runs of recurring campaigns that are due, closes every open campaign whose
    /// due date has passed (applying its default to undecided items), then carries out pending
    /// revokes. The periodic task calls it; tests call it with a
    /// clock ahead. Returns the ids of the campaigns closed or escalated.
    pub async fn check_once(&self) -> Result<Vec<String>, ReviewError> {
        let now = self.grants.clock().now_ms();
        let due = {
            let mut conn = self.conn().await?;
            repo::due_campaigns(&mut conn, now).await?
        };
        self.run_recurring().await?;
        let mut moved = Vec::new();
        for id in due {
            if self.close_due(&id, now).await? {
                moved.push(id);
            }
        }
        self.remediate_pending().await?;
        self.read_back_pending().await?;
        self.record_gauges(now).await?;
        Ok(moved)
    }

    /// `jit_review_open_items{state}` and `jit_review_overdue_items`, refreshed each check.
    async fn record_gauges(&self, now: i64) -> Result<(), ReviewError> {
        let mut conn = self.conn().await?;
        let (states, overdue) = repo::open_item_states(&mut conn, now).await?;
        for s in ["undecided", "keep", "revoke"] {
            let n = states.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
            metrics::gauge!("jit_review_open_items", "state" => s).set(n as f64);
        }
        metrics::gauge!("jit_review_overdue_items").set(overdue as f64);
        Ok(())
    }

    /// At the due date: `keep`/`revoke` decide the undecided items and close the campaign (its
    /// revokes queued for remediation in the same transaction); `escalate` hands them to the
    /// fallback reviewer and leaves the campaign `escalated` (open to their decisions).
    async fn close_due(&self, id: &str, now: i64) -> Result<bool, ReviewError> {
        let mut tx = self.grants.store().begin().await?;
        let Some(c) = repo::get_campaign(tx.conn(), id).await? else {
            return Ok(false);
        };
        let (to, defaulted) = match c.default {
            DefaultAction::Escalate => (
                "escalated",
                repo::escalate_undecided(&mut tx, id, &c.fallback).await?,
            ),
            d => (
                "closed",
                repo::default_undecided(&mut tx, id, d.as_str(), now).await?,
            ),
        };
        let closed_at = (to == "closed").then_some(now);
        if defaulted > 0 {
            // The owner's alert (`review.overdue`), derived by the notification layer.
            audit::append(
                &mut tx,
                self.grants.clock(),
                NewEntry::new(
                    SYSTEM_ACTOR,
                    "review.overdue",
                    format!("review:{id}"),
                    json!({ "owner": c.owner, "name": c.name, "undecided": defaulted,
                        "default": c.default.as_str(), "fallback": c.fallback }),
                ),
            )
            .await?;
        }
        if !repo::set_state(&mut tx, id, "open", to, closed_at).await? {
            return Ok(false);
        }
        let queued = if to == "closed" {
            repo::queue_revokes(&mut tx, id).await?
        } else {
            0
        };
        audit::append(
            &mut tx,
            self.grants.clock(),
            NewEntry::new(
                SYSTEM_ACTOR,
                if to == "closed" { "review.closed" } else { "review.escalated" },
                format!("review:{id}"),
                json!({ "default": c.default.as_str(), "undecided": defaulted, "revokes": queued, "fallback": c.fallback }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Closes a campaign now (its owner's or an admin's call, e.g. an escalated campaign once the
    /// fallback decided): undecided items stay undecided (nothing is removed for them).
    pub async fn close(&self, actor: &str, id: &str) -> Result<Campaign, ReviewError> {
        let mut tx = self.grants.store().begin().await?;
        let c = repo::get_campaign(tx.conn(), id)
            .await?
            .ok_or_else(|| ReviewError::UnknownCampaign(id.into()))?;
        if c.state == "closed" {
            return Err(ReviewError::Closed(id.into()));
        }
        let now = self.grants.clock().now_ms();
        if !repo::set_state(&mut tx, id, &c.state, "closed", Some(now)).await? {
            return Err(ReviewError::Closed(id.into()));
        }
        let queued = repo::queue_revokes(&mut tx, id).await?;
        audit::append(
            &mut tx,
            self.grants.clock(),
            NewEntry::new(
                actor,
                "review.closed",
                format!("review:{id}"),
                json!({ "revokes": queued, "by": "hand" }),
            ),
        )
        .await?;
        tx.commit().await?;
        self.get(id).await
    }
}
