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
use sqlx::Row;

use super::error::ConsoleError;
use super::pages::{grant_row, html, notice, requests, see_other, CsrfOnly, PageError};
use super::session::{Role, Viewer};
use super::views::{self, time, AuditFilter, AuditRow, Filter, Layout};
use super::ConsoleState;
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
    v.require(Role::Auditor)?;
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
        .list(&crate::grants::repo::ListFilter {
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

/// Tries a failed grant's removal again: the grants service's revoke, which for a `failed`
/// grant goes through the expiry path once more.
pub async fn retry(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    v.check_csrf(&f.csrf)?;
    v.require(Role::Admin)?;
    let svc = requests(&state)?;
    let g = svc.grants().get(&id).await?;
    if g.state != GrantState::Failed {
        return Err(ConsoleError::InvalidInput(format!(
            "only failed grants are retried; this one is {}",
            g.state.as_str()
        ))
        .into());
    }
    svc.grants()
        .revoke(
            &v.actor().audit_name(),
            &id,
            "removal retried from the console",
        )
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
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Some(t.and_utc().timestamp_millis()))
        .ok_or_else(|| {
            ConsoleError::InvalidInput(format!("{name} must be a date like 2026-01-31")).into()
        })
}

pub async fn audit(
    State(state): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    v.require(Role::Auditor)?;
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
    // Newest first, filtered; read-only over the audit table. The action filter is a prefix
    // (`grant.` for every grant event); `%` and `_` typed by a person are matched literally.
    let action_like = opt(&q.action).map(|a| {
        let escaped = a
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{escaped}%")
    });
    // Only the filters given become predicates: a predicate like `at_ms >= <minimum>` would
    // make the planner prefer the time index and sort the whole table instead of walking the
    // primary key backwards from the newest entry.
    let mut sql = String::from(
        "SELECT seq, at_ms, actor, action, subject, details FROM audit_log WHERE seq < $1",
    );
    let mut ints: Vec<i64> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    if let Some(t) = since {
        ints.push(t);
        sql.push_str(&format!(" AND at_ms >= ${}", 1 + ints.len()));
    }
    if let Some(t) = until {
        ints.push(t);
        sql.push_str(&format!(" AND at_ms < ${}", 1 + ints.len()));
    }
    let first_text = 2 + ints.len();
    for (col, v) in [
        ("actor", opt(&q.actor)),
        ("action", action_like),
        ("subject", opt(&q.subject)),
    ] {
        if let Some(v) = v {
            let n = first_text + texts.len();
            if col == "action" {
                sql.push_str(&format!(" AND action LIKE ${n} ESCAPE '\\'"));
            } else {
                sql.push_str(&format!(" AND {col} = ${n}"));
            }
            texts.push(v);
        }
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {PAGE}"));
    let mut query = sqlx::query(&sql).bind(q.before.unwrap_or(i64::MAX));
    for i in &ints {
        query = query.bind(*i);
    }
    for t in &texts {
        query = query.bind(t.as_str());
    }
    let rows = query
        .fetch_all(state.store.reads())
        .await
        .map_err(ConsoleError::from)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let get = |e: sqlx::Error| PageError::from(ConsoleError::from(e));
        out.push(AuditRow {
            seq: r.try_get("seq").map_err(get)?,
            at: time(r.try_get("at_ms").map_err(get)?),
            actor: r.try_get("actor").map_err(get)?,
            action: r.try_get("action").map_err(get)?,
            subject: r.try_get("subject").map_err(get)?,
            details: r.try_get("details").map_err(get)?,
        });
    }
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
    let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit_log")
        .fetch_one(state.store.reads())
        .await
        .map_err(ConsoleError::from)?;
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
    v.require(Role::Auditor)?;
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
    v.require(Role::Auditor)?;
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
