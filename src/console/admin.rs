//! Admin and auditor pages: all grants with filters, failed grants with a retry, the audit log
//! with filters, its chain status and export.
//!
//! Why it exists: operators look for who holds what, fix what did not reach Okta, and show
//! auditors the log and that its hash chain is intact ("verified up to #N").
//!
//! What it must never do: change a grant except through the grants service, or let a requester
//! see these pages (auditors read; only admins retry).

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use super::error::ConsoleError;
use super::pages::{grant_row, html, notice, requests, see_other, CsrfOnly, PageError};
use super::session::Viewer;
use super::views::{self, time, AuditFilter, AuditRow, Filter, Layout};
use super::ConsoleState;
use crate::authz::{self, Verb};
use crate::grants::GrantState;

const PAGE: i64 = 100;

#[derive(Debug, Deserialize, Default)]
pub struct GrantQuery {
    #[serde(default)]
    user: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    state: String,
    after: Option<String>,
    done: Option<String>,
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn check_text(name: &str, s: &str) -> Result<(), PageError> {
    if s.len() > 256 || s.chars().any(char::is_control) {
        return Err(ConsoleError::InvalidInput(format!("{name} is too long or not text")).into());
    }
    Ok(())
}

async fn grant_list(
    state: &ConsoleState,
    v: &Viewer,
    q: GrantQuery,
    failed_view: bool,
) -> Result<Response, PageError> {
    authz::require(Verb::ListAll, &v.actor())?;
    for (n, s) in [("user", &q.user), ("resource", &q.resource)] {
        check_text(n, s)?;
    }
    let st = if failed_view {
        Some(GrantState::Failed)
    } else {
        match opt(&q.state) {
            None => None,
            Some(s) => Some(GrantState::parse(&s).ok_or_else(|| {
                PageError::from(ConsoleError::InvalidInput(format!("no grant state `{s}`")))
            })?),
        }
    };
    if let Some(a) = &q.after {
        if uuid::Uuid::parse_str(a).is_err() {
            return Err(ConsoleError::InvalidInput("after must be a grant id".into()).into());
        }
    }
    let svc = requests(state)?;
    let grants = svc
        .grants()
        .list(&crate::grants::ListFilter {
            user: opt(&q.user),
            resource: opt(&q.resource),
            state: st,
            after: q.after.clone(),
            limit: PAGE,
        })
        .await?;
    let now = state.clock.now_ms();
    let next = match grants.last() {
        Some(g) if grants.len() as i64 == PAGE => {
            let mut u = url::form_urlencoded::Serializer::new(String::new());
            u.append_pair("user", &q.user)
                .append_pair("resource", &q.resource)
                .append_pair("state", &q.state)
                .append_pair("after", &g.id);
            let base = if failed_view {
                "/admin/failed"
            } else {
                "/admin/grants"
            };
            format!("{base}?{}", u.finish())
        }
        _ => String::new(),
    };
    let (title, nav) = if failed_view {
        ("Failed grants", "failed")
    } else {
        ("All grants", "grants")
    };
    html(views::AdminGrants {
        l: Layout::new(title, nav, Some(v)).with_notice(notice(q.done.as_deref())),
        failed_view,
        f: Filter {
            user: q.user,
            resource: q.resource,
            state: q.state,
        },
        states: GrantState::ALL.iter().map(|s| s.as_str()).collect(),
        grants: grants.iter().map(|g| grant_row(g, now)).collect(),
        next,
    })
}

pub async fn grants(
    State(state): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<GrantQuery>,
) -> Result<Response, PageError> {
    grant_list(&state, &v, q, false).await
}

pub async fn failed(
    State(state): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<GrantQuery>,
) -> Result<Response, PageError> {
    grant_list(&state, &v, q, true).await
}

/// Tries a failed grant's removal again: the grants service's retry (who may: the rules), which
/// goes through the expiry path once more.
pub async fn retry(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    v.check_csrf(&f.csrf)?;
    let svc = requests(&state)?;
    svc.grants()
        .retry_failed_as(&v.actor(), &id, "removal retried from the console")
        .await?;
    Ok(see_other("/admin/failed?done=retried"))
}

#[derive(Debug, Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    before: Option<i64>,
    done: Option<String>,
}

/// `YYYY-MM-DD` (UTC midnight) to Unix ms.
fn day(name: &str, s: &str) -> Result<Option<i64>, PageError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    crate::clock::parse_time(s)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|e| ConsoleError::InvalidInput(format!("{name}: {e}")).into())
}

pub async fn audit(
    State(state): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    authz::require(Verb::ReadAudit, &v.actor())?;
    for (n, s) in [
        ("actor", &q.actor),
        ("action", &q.action),
        ("subject", &q.subject),
    ] {
        check_text(n, s)?;
    }
    let since = day("since", &q.since)?;
    let until = day("until", &q.until)?;
    if let (Some(a), Some(b)) = (since, until) {
        if a >= b {
            return Err(ConsoleError::InvalidInput("since must be before until".into()).into());
        }
    }
    // Newest first, filtered, through the audit module's reader. The action filter is a prefix
    // (`grant.` for every grant event).
    let rows = crate::audit::query::search(
        &state.store,
        &crate::audit::query::Search {
            before: q.before,
            since_ms: since,
            until_ms: until,
            actor: opt(&q.actor),
            action_prefix: opt(&q.action),
            subject: opt(&q.subject),
            limit: PAGE,
        },
    )
    .await?;
    let out: Vec<AuditRow> = rows
        .into_iter()
        .map(|r| AuditRow {
            seq: r.seq,
            at: time(r.at_ms),
            actor: r.actor,
            action: r.action,
            subject: r.subject,
            fields: super::views::detail_fields(&r.details),
        })
        .collect();
    let older = match out.last() {
        Some(e) if out.len() as i64 == PAGE => {
            let mut u = url::form_urlencoded::Serializer::new(String::new());
            u.append_pair("actor", &q.actor)
                .append_pair("action", &q.action)
                .append_pair("subject", &q.subject)
                .append_pair("since", &q.since)
                .append_pair("until", &q.until)
                .append_pair("before", &e.seq.to_string());
            format!("/admin/audit?{}", u.finish())
        }
        _ => String::new(),
    };
    let last = state.console.as_ref().and_then(|c| c.last_verified());
    let (chain, chain_ok, checked) = match &last {
        None => ("Not verified yet.".to_string(), true, None),
        Some((at, r)) => match &r.first_broken {
            None => (
                format!("Audit chain: verified up to #{}", r.head_seq),
                true,
                Some(time(*at)),
            ),
            Some(b) => (
                format!("Audit chain broken at #{}: {}", b.seq, b.reason),
                false,
                Some(time(*at)),
            ),
        },
    };
    // The head moves with every change; verification runs every 10 minutes or on demand.
    let head = crate::audit::query::head_seq(&state.store).await?;
    let verified_to = last.as_ref().map(|(_, r)| r.head_seq).unwrap_or(0);
    let pending = match head {
        Some(h) if h > verified_to => format!(
            "Entries #{} to #{h} were written since and are checked at the next verification.",
            verified_to + 1
        ),
        _ => String::new(),
    };
    html(views::AdminAudit {
        l: Layout::new("Audit log", "audit", Some(&v)).with_notice(notice(q.done.as_deref())),
        f: AuditFilter {
            actor: q.actor,
            action: q.action,
            subject: q.subject,
            since: q.since,
            until: q.until,
        },
        rows: out,
        older,
        chain,
        chain_ok,
        checked,
        pending,
    })
}

pub async fn verify(
    State(state): State<ConsoleState>,
    v: Viewer,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    v.check_csrf(&f.csrf)?;
    authz::require(Verb::ReadAudit, &v.actor())?;
    if let Some(c) = &state.console {
        c.verify_now(&state.store, &state.clock).await;
    }
    Ok(see_other("/admin/audit?done=verified"))
}

#[derive(Debug, Deserialize, Default)]
pub struct ExportQuery {
    #[serde(default)]
    format: String,
}

pub async fn export(
    State(state): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<ExportQuery>,
) -> Result<Response, PageError> {
    authz::require(Verb::Export, &v.actor())?;
    let (format, ctype, ext) = match q.format.as_str() {
        "" | "jsonl" => (
            crate::audit::export::ExportFormat::Jsonl,
            "application/x-ndjson",
            "jsonl",
        ),
        "csv" => (crate::audit::export::ExportFormat::Csv, "text/csv", "csv"),
        _ => return Err(ConsoleError::InvalidInput("format must be jsonl or csv".into()).into()),
    };
    let mut buf = Vec::new();
    crate::audit::export::export(&state.store, None, None, format, &mut buf).await?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"jit-audit.{ext}\""),
            ),
        ],
        buf,
    )
        .into_response())
}
