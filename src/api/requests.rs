//! `/v1/requests…`: ask for access, read requests, decide, cancel. Thin: parse, check the
//! token's role, call [`crate::requests::RequestService`], map the result.
//!
//! Who is who: a token's name is its holder's Okta login, so a requester token asks for itself
//! and an approver token decides as the approver it is named after. Admin and `portal` tokens
//! may ask on behalf of someone (`on_behalf_of`, recorded as such).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::{Caller, Role};
use super::ApiState;
use crate::error::ApiError;
use crate::grants::GrantError;
use crate::requests::model::same_person;
use crate::requests::repo::ListFilter;
use crate::requests::{
    Actor, Channel, Created, NewRequest, Request, RequestService, RequestState, RequestView,
    Verdict,
};

const MAX_LIMIT: i64 = 500;
const DEFAULT_LIMIT: i64 = 100;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/requests", post(create).get(list))
        .route("/v1/requests/{id}", get(show))
        .route("/v1/requests/{id}/cancel", post(cancel))
        .route("/v1/requests/{id}/approve", post(approve))
        .route("/v1/requests/{id}/deny", post(deny))
}

pub(crate) fn service(state: &ApiState) -> Result<&RequestService, ApiError> {
    state
        .requests
        .as_ref()
        .ok_or_else(|| GrantError::OktaNotConfigured.into())
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))
}

/// The person behind an API token, as the requests domain sees them.
pub(crate) fn actor(caller: &Caller) -> Actor {
    let mut a = Actor::new(caller.name.clone(), Channel::Api);
    a.is_admin = caller.has(Role::Admin);
    a.may_request_for_others = caller.has(Role::Admin) || caller.roles.contains(&Role::Portal);
    a
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub resource: String,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    /// An emergency on a `break_glass` resource: granted at once, reviewed afterwards.
    #[serde(default)]
    pub break_glass: bool,
}

/// 201 with the grant when approved at once; 202 while it waits for approvals.
async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    b: Result<Json<CreateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    caller.require_any(&[Role::Requester, Role::Approver, Role::Portal])?;
    let svc = service(&state)?;
    let b = body(b)?;
    let created = svc
        .create(
            &actor(&caller),
            NewRequest {
                resource: b.resource,
                duration: b.duration,
                reason: b.reason,
                ticket: b.ticket,
                on_behalf_of: b.on_behalf_of,
                break_glass: b.break_glass,
            },
        )
        .await?;
    let status = if created.request.state == RequestState::Pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(created)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Okta login or id of the person the access is for.
    pub requester: Option<String>,
    pub resource: Option<String>,
    pub state: Option<String>,
    /// `true`: only pending requests the caller may decide now.
    pub mine_to_approve: Option<bool>,
    pub after: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Page {
    pub requests: Vec<Request>,
    pub next_after: Option<String>,
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    caller.require_any(&[Role::Auditor, Role::Approver, Role::Requester, Role::Portal])?;
    let svc = service(&state)?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = super::paging::limit(p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    if let Some(a) = &p.after {
        if uuid::Uuid::parse_str(a).is_err() {
            return Err(ApiError::bad_request(
                "invalid_after",
                "`after` must be a request id from `next_after`",
            ));
        }
    }
    let requests = if p.mine_to_approve == Some(true) {
        svc.to_approve(&caller.name, p.after, limit).await?
    } else {
        let st = match p.state.as_deref() {
            None => None,
            Some(s) => Some(RequestState::parse(s).ok_or_else(|| {
                ApiError::bad_request("invalid_state", format!("unknown request state `{s}`"))
            })?),
        };
        // Requesters see their own requests only (their token's name is their login).
        let user = if caller.has(Role::Auditor) || caller.has(Role::Approver) {
            p.requester
        } else {
            Some(caller.name.clone())
        };
        svc.list(&ListFilter {
            user,
            resource: p.resource,
            state: st,
            after: p.after,
            limit,
        })
        .await?
    };
    let next_after = super::paging::next_after(&requests, limit, |r| r.id.clone());
    Ok(Json(Page {
        requests,
        next_after,
    }))
}

fn may_read(caller: &Caller, r: &Request) -> bool {
    caller.has(Role::Auditor)
        || caller.has(Role::Approver)
        || same_person(&caller.name, &r.user_login)
        || caller.name == r.user_id
        || same_person(&caller.name, &r.requested_by)
}

async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    caller.require_any(&[Role::Auditor, Role::Approver, Role::Requester, Role::Portal])?;
    let svc = service(&state)?;
    let view = svc.get(&id).await?;
    if !may_read(&caller, &view.request) {
        return Err(ApiError::not_found(format!("no request `{id}`")));
    }
    Ok(Json(view))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[serde(default)]
    pub comment: Option<String>,
}

async fn decide(
    state: ApiState,
    caller: Caller,
    id: String,
    b: Result<Json<DecisionBody>, JsonRejection>,
    verdict: Verdict,
) -> Result<Json<RequestView>, ApiError> {
    caller.require_any(&[Role::Approver])?;
    let svc = service(&state)?;
    let b = body(b)?;
    Ok(Json(
        svc.decide(&id, &actor(&caller), verdict, b.comment.as_deref())
            .await?,
    ))
}

async fn approve(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<DecisionBody>, JsonRejection>,
) -> Result<Json<RequestView>, ApiError> {
    decide(state, caller, id, b, Verdict::Approve).await
}

async fn deny(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<DecisionBody>, JsonRejection>,
) -> Result<Json<RequestView>, ApiError> {
    decide(state, caller, id, b, Verdict::Deny).await
}

async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Request>, ApiError> {
    caller.require_any(&[Role::Requester, Role::Approver, Role::Portal])?;
    let svc = service(&state)?;
    Ok(Json(svc.cancel(&id, &actor(&caller)).await?))
}
