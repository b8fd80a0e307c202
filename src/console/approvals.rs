//! Approvals: my inbox, a request's details, approve or deny, and step-up.
//!
//! Why it exists: approvers see what they are asked (who, what, for how long, why, the person's
//! current access and recent history) and decide with a comment. A resource with
//! `approval_step_up` takes an approval only from a recent Okta sign-in; the requests service
//! says `step_up_required`, and the console sends the person through Okta again with `max_age`,
//! then back to the request.
//!
//! A comment typed before a step-up survives the round trip through Okta: it is kept in a
//! short-lived cookie scoped to that request's page (`jit_comment`, not a secret: the
//! approver's own words) and put back in the form when they return.
//!
//! What it must never do: decide whether someone may approve (the service does, with fresh
//! groups), or treat a step-up sign-in as the approval itself (the person clicks again).

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::Form;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use sqlx::Row;

use super::pages::{
    grant_row, html, live_grants, notice, request_row, requests, see_other, Done, PageError,
};
use super::session::Viewer;
use super::views::{self, time, DecidedRow, DecisionRow, Layout};
use super::ConsoleState;
use crate::authz::Denied;
use crate::requests::{RequestError, Verdict};

pub async fn inbox(
    State(state): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<Done>,
) -> Result<Response, PageError> {
    let svc = requests(&state)?;
    let inbox = svc.to_approve(&v.actor(), None, 200).await?;
    // The person's own decisions, newest first (a read-only view of the decisions table).
    let rows = sqlx::query(
        "SELECT d.request_id, d.decision, d.decided_at, r.resource, r.user_login \
         FROM request_decisions d JOIN requests r ON r.id = d.request_id \
         WHERE LOWER(d.approver) = $1 ORDER BY d.decided_at DESC LIMIT 50",
    )
    .bind(v.login.to_ascii_lowercase())
    .fetch_all(state.store.reads())
    .await
    .map_err(super::error::ConsoleError::from)?;
    let mut decided = Vec::with_capacity(rows.len());
    for r in rows {
        let get = |e: sqlx::Error| PageError::from(super::error::ConsoleError::from(e));
        decided.push(DecidedRow {
            id: r.try_get("request_id").map_err(get)?,
            decision: r.try_get("decision").map_err(get)?,
            at: time(r.try_get("decided_at").map_err(get)?),
            resource: r.try_get("resource").map_err(get)?,
            user: r.try_get("user_login").map_err(get)?,
        });
    }
    html(views::Approvals {
        l: Layout::new("Approvals", "approvals", Some(&v)).with_notice(notice(q.done.as_deref())),
        inbox: inbox.iter().map(request_row).collect(),
        decided,
    })
}

/// The cookie that carries a comment across a step-up sign-in.
const COMMENT_COOKIE: &str = "jit_comment";
/// The longest comment kept (the form's own limit).
const MAX_COMMENT: usize = 1000;

fn comment_cookie(id: &str, value: &str, max_age_s: i64, secure: bool) -> Option<HeaderValue> {
    let c = cookie::Cookie::build((COMMENT_COOKIE, value.to_string()))
        .path(format!("/approvals/{id}"))
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age_s))
        .build();
    HeaderValue::from_str(&c.to_string()).ok()
}

/// The comment kept for this page, if any (decoded, bounded, text only).
fn kept_comment(headers: &HeaderMap) -> Option<String> {
    let raw = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COMMENT_COOKIE)
        .map(|c| c.value().to_string())?;
    let bytes = URL_SAFE_NO_PAD.decode(raw.as_bytes()).ok()?;
    String::from_utf8(bytes)
        .ok()
        .filter(|c| c.len() <= MAX_COMMENT && !c.chars().any(|ch| ch.is_control() && ch != '\n'))
}

pub async fn detail(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    Query(q): Query<Done>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let svc = requests(&state)?;
    // Who may look is the rules' answer (the requester, its approvers, whoever decided it,
    // auditors and admins); anyone else is told there is nothing here.
    let view = svc.get_as(&v.actor(), &id).await?;
    let r = &view.request;
    let may_decide = svc.may_decide(r, &v.actor()).await?;
    let now = state.clock.now_ms();
    let current = live_grants(svc, &r.user_id).await?;
    let mut history = svc
        .list(&crate::requests::repo::ListFilter {
            user: Some(r.user_id.clone()),
            limit: 200,
            ..Default::default()
        })
        .await?;
    history.retain(|h| h.id != r.id);
    history.reverse();
    history.truncate(10);
    let policy = svc.policy().current();
    let step_up = policy
        .get(&r.resource)
        .and_then(|res| res.approval_step_up)
        .map(|d| {
            format!(
                "Approving needs an Okta sign-in within the last {}; you may be asked to sign in again.",
                views::span(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            )
        })
        .unwrap_or_default();
    let comment = kept_comment(&headers);
    let secure = state.console.as_ref().is_some_and(|c| c.secure_cookie);
    let mut page = html(views::Approval {
        comment: comment.clone().unwrap_or_default(),
        l: Layout::new(format!("Request for {}", r.resource), "approvals", Some(&v))
            .with_notice(notice(q.done.as_deref())),
        r: request_row(r),
        ticket: r.ticket.clone().unwrap_or_default(),
        stages: view
            .stages
            .iter()
            .map(|s| format!("{}: {} of {}", s.name, s.approvals, s.approvals_required))
            .collect(),
        step_up,
        decisions: view
            .decisions
            .iter()
            .map(|d| DecisionRow {
                approver: d.approver.clone(),
                decision: d.decision.as_str().to_string(),
                comment: d.comment.clone(),
                at: time(d.decided_at),
            })
            .collect(),
        may_decide,
        current: current.iter().map(|g| grant_row(g, now)).collect(),
        history: history.iter().map(request_row).collect(),
    })?;
    // Put back in the form once; then forgotten.
    if comment.is_some() {
        if let Some(c) = comment_cookie(&r.id, "", 0, secure) {
            page.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    Ok(page)
}

/// `/requests/{id}` (the link in Slack's step-up message) is the request's approval page.
pub async fn link(Path(id): Path<String>) -> Result<Response, PageError> {
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(super::error::ConsoleError::NotFound.into());
    }
    Ok(see_other(&format!("/approvals/{id}")))
}

#[derive(Debug, Deserialize, Default)]
pub struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    comment: String,
}

pub async fn decide(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<DecideForm>,
) -> Result<Response, PageError> {
    v.check_csrf(&f.csrf)?;
    let svc = requests(&state)?;
    let verdict = match f.verdict.as_str() {
        "approve" => Verdict::Approve,
        "deny" => Verdict::Deny,
        _ => {
            return Err(
                super::error::ConsoleError::InvalidInput("choose approve or deny".into()).into(),
            )
        }
    };
    match svc
        .decide(&id, &v.actor(), verdict, Some(f.comment.as_str()))
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/approvals?done={}",
            if verdict == Verdict::Approve {
                "approved"
            } else {
                "denied"
            }
        ))),
        Err(RequestError::Denied(Denied::StepUpRequired { resource })) => {
            // Okta is asked for a sign-in no older than half the resource's window (a margin, so
            // an Okta session just inside the window cannot bounce the person back and forth);
            // the person comes back to this request and approves again.
            let window = svc
                .policy()
                .current()
                .get(&resource)
                .and_then(|r| r.approval_step_up)
                .map(|d| d.as_secs() / 2)
                .unwrap_or(0);
            let back = format!("/approvals/{id}?done=stepped_up");
            let back: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
            let mut resp = see_other(&format!("/login?max_age={window}&return_to={back}"));
            // The comment comes back with the person (the service already checked `id`).
            let comment = f.comment.trim();
            if !comment.is_empty() && comment.len() <= MAX_COMMENT {
                let c = state.console.as_ref();
                let max_age = c.map_or(600, |c| {
                    i64::try_from(c.cfg.login_timeout.as_secs()).unwrap_or(600) + 60
                });
                let secure = c.is_some_and(|c| c.secure_cookie);
                let value = URL_SAFE_NO_PAD.encode(comment.as_bytes());
                if let Some(h) = comment_cookie(&id, &value, max_age, secure) {
                    resp.headers_mut().append(header::SET_COOKIE, h);
                }
            }
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}
