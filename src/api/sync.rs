//! `/v1/sync/runs…`: the sync runs' history for auditors and admins. Thin: parse, check the
//! caller, read through [`crate::sync::runs`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::{Caller, Role};
use super::ApiState;
use crate::error::ApiError;
use crate::sync::runs::{fetch, page, RunRecord};
use crate::sync::SyncError;

const MAX_LIMIT: i64 = 500;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/sync/runs", get(list_runs))
        .route("/v1/sync/runs/{id}", get(show_run))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Runs started before this time (Unix ms): the previous page's `next_before`.
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RunsPage {
    pub runs: Vec<RunRecord>,
    pub next_before: Option<i64>,
}

async fn list_runs(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<RunsPage>, ApiError> {
    caller.require_any(&[Role::Auditor, Role::Admin])?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = super::paging::limit(p.limit, 50, MAX_LIMIT)?;
    if p.before.is_some_and(|b| b <= 0) {
        return Err(ApiError::bad_request(
            "invalid_before",
            "before must be a positive Unix time in milliseconds",
        ));
    }
    let runs = page(&state.store, p.before, limit).await?;
    let next_before = super::paging::next_after(&runs, limit, |r| r.started_at);
    Ok(Json(RunsPage { runs, next_before }))
}

async fn show_run(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunRecord>, ApiError> {
    caller.require_any(&[Role::Auditor, Role::Admin])?;
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(ApiError::bad_request(
            "invalid_input",
            "a sync run id is a UUID",
        ));
    }
    match fetch(&state.store, &id).await? {
        Some(r) => Ok(Json(r)),
        None => Err(SyncError::NotFound(id).into()),
    }
}
