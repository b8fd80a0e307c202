//! `/v1/outbox…`: deliveries of notifications (outbound webhooks, Slack), for admins: what is
//! pending or dead and why, and a retry for a dead one.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::{Caller, Role};
use super::ApiState;
use crate::error::ApiError;
use crate::outbox::Delivery;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/outbox", get(list))
        .route("/v1/outbox/{id}/retry", post(retry))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `pending`, `delivered` or `dead`.
    pub state: Option<String>,
    pub channel: Option<String>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Page {
    pub deliveries: Vec<Delivery>,
    pub next_after: Option<i64>,
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    caller.require_any(&[Role::Admin])?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if let Some(s) = p.state.as_deref() {
        if !matches!(s, "pending" | "delivered" | "dead") {
            return Err(ApiError::bad_request(
                "invalid_state",
                format!("unknown delivery state `{s}` (pending, delivered, dead)"),
            ));
        }
    }
    let limit = super::paging::limit(p.limit, 100, 500)?;
    let deliveries = crate::outbox::list(
        &state.store,
        p.state.as_deref(),
        p.channel.as_deref(),
        p.after,
        limit,
    )
    .await?;
    let next_after = super::paging::next_after(&deliveries, limit, |d| d.id);
    Ok(Json(Page {
        deliveries,
        next_after,
    }))
}

async fn retry(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_any(&[Role::Admin])?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no delivery `{id}`")))?;
    if !crate::outbox::retry(&state.store, &state.clock, id, &caller.name).await? {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not_dead",
            format!("delivery {id} does not exist or is not dead"),
        ));
    }
    Ok(Json(serde_json::json!({ "id": id, "state": "pending" })))
}
