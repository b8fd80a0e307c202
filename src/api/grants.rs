//! `/v1/grants…`: create, list and read, extend, revoke. Thin: parse, call
//! [`crate::grants::GrantService`] with the token's actor; the service asks [`crate::authz`] who
//! may (revoke: the holder, an admin, or an approver of the grant's resource).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::ApiState;
use crate::error::ApiError;
use crate::grants::{CreateGrant, Grant, GrantError, GrantService, GrantState, ListFilter};

const MAX_LIMIT: i64 = 500;
const DEFAULT_LIMIT: i64 = 100;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/grants", post(create).get(list))
        .route("/v1/grants/{id}", get(show))
        .route("/v1/grants/{id}/extend", post(extend))
        .route("/v1/grants/{id}/revoke", post(revoke))
}

fn service(state: &ApiState) -> Result<&GrantService, ApiError> {
    state
        .grants
        .as_ref()
        .ok_or_else(|| GrantError::OktaNotConfigured.into())
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))
}

fn valid_id(id: &str) -> Result<(), ApiError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(ApiError::not_found(format!("no grant `{id}`")));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub user: String,
    pub resource: String,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    b: Result<Json<CreateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Grant>), ApiError> {
    let svc = service(&state)?;
    let b = body(b)?;
    let g = svc
        .create_as(
            &caller.actor(),
            CreateGrant {
                user: b.user,
                resource: b.resource,
                duration: b.duration,
                reason: b.reason,
                request_id: None,
                requested_by: None,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(g)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub user: Option<String>,
    pub resource: Option<String>,
    pub state: Option<String>,
    /// The previous page's `next_after`.
    pub after: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Page {
    pub grants: Vec<Grant>,
    pub next_after: Option<String>,
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let svc = service(&state)?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = super::paging::limit(p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let st = match p.state.as_deref() {
        None => None,
        Some(s) => Some(GrantState::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_state", format!("unknown grant state `{s}`"))
        })?),
    };
    // Only what the caller may see (a requester: their own grants).
    let grants = svc
        .list_as(
            &caller.actor(),
            &ListFilter {
                user: p.user,
                resource: p.resource,
                state: st,
                after: p.after,
                limit,
            },
        )
        .await?;
    let next_after = super::paging::next_after(&grants, limit, |g| g.id.clone());
    Ok(Json(Page { grants, next_after }))
}

async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Grant>, ApiError> {
    let svc = service(&state)?;
    valid_id(&id)?;
    Ok(Json(svc.get_as(&caller.actor(), &id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    pub duration: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Every extension goes through the requests domain, so the history is the same whichever
/// channel asked. An admin's is approved at once (200 with the grant, recorded as an extension
/// request approved by that admin). The holder's: 200 with `{request, grant}` when approved at
/// once (within `auto_approve.max_duration` of total time, or a resource needing no approval),
/// 202 while the extension waits for approvals.
async fn extend(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<ExtendBody>, JsonRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let b = body(b)?;
    valid_id(&id)?;
    let actor = caller.actor();
    // One path for everyone: the requests service asks the rule, records an admin's extension
    // as an approved extension request, and makes the holder's a request.
    let requests = super::requests::service(&state)?;
    let created = requests
        .extend(&id, &actor, &b.duration, b.reason.as_deref())
        .await?;
    let pending = created.request.state == crate::requests::RequestState::Pending;
    // Someone other than the holder gave the time directly (an admin): answer with the grant.
    if !pending && !actor.is(&created.request.user_login) {
        if let Some(g) = created.grant {
            return Ok(Json(g).into_response());
        }
    }
    let status = if pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(created)).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    #[serde(default)]
    pub reason: Option<String>,
}

async fn revoke(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<RevokeBody>, JsonRejection>,
) -> Result<Json<Grant>, ApiError> {
    let svc = service(&state)?;
    let b = body(b)?;
    valid_id(&id)?;
    let reason = b.reason.unwrap_or_default();
    Ok(Json(
        svc.end_early_as(&caller.actor(), &id, reason.trim())
            .await?,
    ))
}
