//! Sync runs and their drift reports (read-only).
//!
//! Why it exists: auditors and admins see when Okta was last compared with the broker's grants,
//! what differed, and what the sync did about it.
//!
//! What it must never do: start a run or act on a finding (the sync does, on its schedule).

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::error::ConsoleError;
use super::pages::{html, PageError};
use super::session::{Role, Viewer};
use super::views::{self, time, FindingRow, Layout, RunRow};
use super::ConsoleState;
use crate::sync::RunRecord;

const PAGE: i64 = 50;

#[derive(Debug, Deserialize, Default)]
pub struct RunsQuery {
    before: Option<i64>,
}

fn run_row(r: &RunRecord) -> RunRow {
    RunRow {
        id: r.id.clone(),
        started: time(r.started_at),
        mode: r.mode.clone(),
        dry_run: r.dry_run,
        outcome: r.outcome.clone(),
        findings: r.counts.findings,
        changed: r.counts.changed,
        errors: r.counts.action_errors,
        error: r.error.clone().unwrap_or_default(),
    }
}

pub async fn runs(
    State(state): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<RunsQuery>,
) -> Result<Response, PageError> {
    v.require(Role::Auditor)?;
    let runs = crate::sync::runs::page(&state.store, q.before, PAGE).await?;
    let older = match runs.last() {
        Some(r) if runs.len() as i64 == PAGE => format!("/admin/sync?before={}", r.started_at),
        _ => String::new(),
    };
    html(views::SyncRuns {
        l: Layout::new("Sync runs", "sync", Some(&v)),
        runs: runs.iter().map(run_row).collect(),
        older,
    })
}

pub async fn run(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    v.require(Role::Auditor)?;
    if id.is_empty() || id.len() > 64 {
        return Err(ConsoleError::NotFound.into());
    }
    let r = crate::sync::runs::fetch(&state.store, &id)
        .await?
        .ok_or(ConsoleError::NotFound)?;
    html(views::SyncRun {
        l: Layout::new("Sync run", "sync", Some(&v)),
        r: run_row(&r),
        warnings: r.warnings.clone(),
        findings: r
            .report
            .iter()
            .map(|f| FindingRow {
                finding: f.finding.clone(),
                resource: f.resource.clone(),
                user: f.login.clone().unwrap_or_else(|| f.user_id.clone()),
                grant: f.grant_id.clone().unwrap_or_default(),
                action: f.action.clone(),
                outcome: f.outcome.clone().unwrap_or_else(|| "dry run".into()),
            })
            .collect(),
    })
}
