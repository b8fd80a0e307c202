//! Access reviews in the console: a reviewer's campaigns, their items, keep or revoke.
//!
//! Why it exists: reviewers are managers and resource owners, not API users. Slack's review
//! DMs link here (`/reviews/{id}`); each item shows who holds what and why (a grant, standing
//! access, or nothing that explains it) and how often it was granted lately, and takes a
//! decision with a comment until the campaign closes.
//!
//! What it must never do: decide whose item this is, whether a comment is needed, or whether
//! the campaign still takes decisions: the reviews service does, exactly as for the API.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::error::ConsoleError;
use super::pages::{html, notice, see_other, Done, PageError};
use super::session::Viewer;
use super::views::{self, time, Layout};
use super::ConsoleState;
use crate::reviews::delegate::DelegateItem;
use crate::reviews::service::DecideItem;
use crate::reviews::{Decision, ReviewService};

fn service(state: &ConsoleState) -> Result<ReviewService, PageError> {
    state
        .grants
        .clone()
        .map(ReviewService::new)
        .ok_or_else(|| ConsoleError::OktaNotConfigured.into())
}

/// Campaign ids are UUIDs; anything else is not a page.
fn check_id(id: &str) -> Result<(), PageError> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| ConsoleError::NotFound.into())
}

/// `/reviews`: the campaigns with items for me (undecided first), and for auditors and admins
/// every campaign with its progress.
pub async fn list(State(state): State<ConsoleState>, v: Viewer) -> Result<Response, PageError> {
    let svc = service(&state)?;
    let campaigns = svc.list().await?;
    // Counts come from one grouped read each: a campaign can hold tens of thousands of items.
    let mine_n = svc.item_counts(Some(&v.login)).await?;
    let all_n = if v.auditor || v.admin {
        svc.item_counts(None).await?
    } else {
        Default::default()
    };
    let row = |c: &crate::reviews::Campaign, (items, undecided): (i64, i64)| views::CampaignRow {
        id: c.id.clone(),
        name: c.name.clone(),
        state: c.state.clone(),
        due: time(c.due_at),
        items: usize::try_from(items).unwrap_or(0),
        undecided: usize::try_from(undecided).unwrap_or(0),
    };
    let mut mine: Vec<_> = campaigns
        .iter()
        .filter_map(|c| mine_n.get(&c.id).map(|n| row(c, *n)))
        .collect();
    mine.sort_by_key(|r| std::cmp::Reverse(r.undecided));
    let all = if v.auditor || v.admin {
        campaigns
            .iter()
            .map(|c| row(c, all_n.get(&c.id).copied().unwrap_or((0, 0))))
            .collect()
    } else {
        Vec::new()
    };
    html(views::Reviews {
        l: Layout::new("Access reviews", "reviews", Some(&v)),
        mine,
        all,
    })
}

/// `/reviews/{id}`: my items of one campaign, each with its decision form.
pub async fn campaign(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    Query(q): Query<Done>,
) -> Result<Response, PageError> {
    check_id(&id)?;
    let svc = service(&state)?;
    let (c, items) = svc.items(&id, Some(&v.login)).await?;
    let open = c.state != "closed";
    html(views::Review {
        l: Layout::new(format!("Review: {}", c.name), "reviews", Some(&v))
            .with_notice(notice(q.done.as_deref())),
        id: c.id.clone(),
        name: c.name.clone(),
        state: c.state.clone(),
        due: time(c.due_at),
        open,
        items: items
            .iter()
            .map(|i| views::ReviewItemRow {
                item: i.item_id,
                user: i.user_login.clone(),
                resource: i.resource.clone(),
                why: i.why.clone(),
                grants_90d: i.grants_90d,
                last_granted: i.last_granted_at.map(time),
                decision: i.decision.clone().unwrap_or_default(),
                comment: i.comment.clone().unwrap_or_default(),
                remediation: i.remediation.clone().unwrap_or_default(),
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    comment: String,
}

/// A decision on one item, through the reviews service (the same checks as the API's).
pub async fn decide(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path((id, item)): Path<(String, String)>,
    Form(f): Form<DecideForm>,
) -> Result<Response, PageError> {
    v.check_csrf(&f.csrf)?;
    check_id(&id)?;
    let item: i64 = item.parse().map_err(|_| ConsoleError::NotFound)?;
    let decision = Decision::parse(&f.decision)
        .ok_or_else(|| ConsoleError::InvalidInput("choose keep or revoke".into()))?;
    let comment = Some(f.comment.trim().to_string()).filter(|c| !c.is_empty());
    service(&state)?
        .decide(
            &v.login,
            &id,
            &[DecideItem {
                item,
                decision,
                comment,
            }],
        )
        .await?;
    Ok(see_other(&format!("/reviews/{id}?done=reviewed")))
}

#[derive(Debug, Deserialize, Default)]
pub struct DelegateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: String,
}

/// Hands one item to another reviewer (the reviews service checks who may, and to whom).
pub async fn delegate(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path((id, item)): Path<(String, String)>,
    Form(f): Form<DelegateForm>,
) -> Result<Response, PageError> {
    v.check_csrf(&f.csrf)?;
    check_id(&id)?;
    let item: i64 = item.parse().map_err(|_| ConsoleError::NotFound)?;
    service(&state)?
        .delegate(
            &v.login,
            v.admin,
            &id,
            &[DelegateItem {
                item,
                to: f.to.trim().to_string(),
                comment: None,
            }],
        )
        .await?;
    Ok(see_other(&format!("/reviews/{id}?done=delegated")))
}
