//! `GET /v1/audit`: pages through the audit log for auditors and admins;
//! `GET /v1/audit/checkpoint`: the newest signed checkpoint of its Merkle tree;
//! `GET /v1/audit/{seq}/proof`: an entry's inclusion proof, checkable offline with
//! `jit-broker audit verify-proof`.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::ApiState;
use crate::audit::checkpoint::{self, StoredCheckpoint};
use crate::audit::proof::{self, InclusionProof};
use crate::audit::{self, AuditEntry};
use crate::authz::Verb;
use crate::error::ApiError;

const MAX_LIMIT: i64 = 1000;
const DEFAULT_LIMIT: i64 = 100;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/audit", get(list))
        .route("/v1/audit/checkpoint", get(latest_checkpoint))
        .route("/v1/audit/{seq}/proof", get(entry_proof))
}

async fn latest_checkpoint(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<StoredCheckpoint>, ApiError> {
    crate::authz::require(Verb::ReadAudit, &caller.actor())?;
    let c = checkpoint::latest(&state.store)
        .await?
        .ok_or(checkpoint::CheckpointError::NoneYet)?;
    Ok(Json(c))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofParams {
    /// Prove against the stored checkpoint of this size (default: the newest).
    pub tree_size: Option<u64>,
}

async fn entry_proof(
    State(state): State<ApiState>,
    caller: Caller,
    Path(seq): Path<String>,
    params: Result<Query<ProofParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InclusionProof>, ApiError> {
    crate::authz::require(Verb::ReadAudit, &caller.actor())?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let seq: i64 =
        seq.parse().ok().filter(|s| *s >= 1).ok_or_else(|| {
            ApiError::bad_request("invalid_seq", "seq must be a positive integer")
        })?;
    let c = match p.tree_size {
        Some(size) => checkpoint::at_size(&state.store, size)
            .await?
            .ok_or_else(|| {
                ApiError::not_found(format!("no checkpoint of {size} entries was taken"))
            })?,
        None => checkpoint::latest(&state.store)
            .await?
            .ok_or(checkpoint::CheckpointError::NoneYet)?,
    };
    if seq as u64 > c.tree_size {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not_checkpointed",
            format!(
                "entry {seq} is not in the checkpoint of {} entries yet; ask again after the next checkpoint",
                c.tree_size
            ),
        ));
    }
    Ok(Json(
        proof::prove(&state.store, seq, &c.note, c.tree_size).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Return entries with a sequence number greater than this (the previous page's `next_after`).
    pub after: Option<i64>,
    pub limit: Option<i64>,
    /// Bounds on the entry time, `since <= at < until`: a date (midnight UTC) or an RFC 3339
    /// time (see [`crate::clock::parse_time`]).
    pub since: Option<String>,
    pub until: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Page {
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<i64>,
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    crate::authz::require(Verb::ReadAudit, &caller.actor())?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = super::paging::limit(p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = p.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request(
            "invalid_after",
            "after must not be negative",
        ));
    }
    let time = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| {
                crate::clock::parse_time(s)
                    .map_err(|e| ApiError::bad_request("invalid_time", format!("{name}: {e}")))
            })
            .transpose()
    };
    let since = time("since", &p.since)?;
    let until = time("until", &p.until)?;
    if let (Some(since), Some(until)) = (since, until) {
        if since >= until {
            return Err(ApiError::bad_request(
                "invalid_range",
                "since must be earlier than until",
            ));
        }
    }
    let entries = audit::page(
        &state.store,
        after,
        limit,
        since.map(|t| t.timestamp_millis()),
        until.map(|t| t.timestamp_millis()),
    )
    .await?;
    let next_after = super::paging::next_after(&entries, limit, |e| e.seq);
    Ok(Json(Page {
        entries,
        next_after,
    }))
}
