//! `/v1/reviews…`: campaigns (admin creates and closes; admins and auditors read), a reviewer's
//! items, decisions and delegations (single and bulk), and the evidence report. Thin: parse,
//! check the role, call [`ReviewService`].
//!
//! What it must never do: decide for anyone but the caller (the token's name is the reviewer's
//! login), let anyone but the item's reviewer or an admin delegate it, or answer for an unknown
//! campaign with an empty list (404).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::{Caller, Role};
use super::ApiState;
use crate::error::ApiError;
use crate::grants::GrantError;
use crate::reviews::delegate::DelegateItem;
use crate::reviews::service::{CreateCampaign, DecideItem};
use crate::reviews::{report, Campaign, Decision, Item, ReviewService};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/reviews", post(create).get(list))
        .route("/v1/reviews/{id}", get(show))
        .route("/v1/reviews/{id}/items", get(items))
        .route("/v1/reviews/{id}/items/{item}/decide", post(decide_one))
        .route("/v1/reviews/{id}/decisions", post(decide_bulk))
        .route("/v1/reviews/{id}/items/{item}/delegate", post(delegate_one))
        .route("/v1/reviews/{id}/delegations", post(delegate_bulk))
        .route("/v1/reviews/{id}/close", post(close))
        .route("/v1/reviews/{id}/stop-recurring", post(stop_recurring))
        .route("/v1/reviews/{id}/report", get(report_of))
}

fn service(state: &ApiState) -> Result<ReviewService, ApiError> {
    state
        .grants
        .clone()
        .map(ReviewService::new)
        .ok_or_else(|| GrantError::OktaNotConfigured.into())
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(ApiError::bad_request(
            "invalid_input",
            "campaign id must be a UUID",
        ));
    }
    Ok(())
}

async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    b: Result<Json<CreateCampaign>, JsonRejection>,
) -> Result<(StatusCode, Json<Campaign>), ApiError> {
    caller.require_any(&[Role::Admin])?;
    let req = body(b)?;
    let c = service(&state)?.create(&caller.name, req).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

#[derive(Serialize)]
struct CampaignList {
    campaigns: Vec<Campaign>,
}

async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<CampaignList>, ApiError> {
    caller.require_any(&[Role::Admin, Role::Auditor])?;
    let campaigns = service(&state)?.list().await?;
    Ok(Json(CampaignList { campaigns }))
}

async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<report::Report>, ApiError> {
    caller.require_any(&[Role::Admin, Role::Auditor])?;
    check_id(&id)?;
    let mut r = service(&state)?.report(&id).await?;
    // The campaign view carries counts and the audit range; items are listed separately.
    r.items.clear();
    Ok(Json(r))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemsParams {
    /// `me` (the caller) or, for admins and auditors, a reviewer's login. Absent: all items
    /// (admins and auditors).
    reviewer: Option<String>,
}

#[derive(Serialize)]
struct ItemList {
    campaign: Campaign,
    items: Vec<Item>,
}

async fn items(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<ItemsParams>, QueryRejection>,
) -> Result<Json<ItemList>, ApiError> {
    check_id(&id)?;
    let q = query(q)?;
    let reviewer = match q.reviewer.as_deref() {
        Some("me") => Some(caller.name.clone()),
        other => {
            caller.require_any(&[Role::Admin, Role::Auditor])?;
            other.map(str::to_string)
        }
    };
    let (campaign, items) = service(&state)?.items(&id, reviewer.as_deref()).await?;
    Ok(Json(ItemList { campaign, items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    decision: Decision,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Serialize)]
struct Decided {
    items: Vec<Item>,
}

async fn decide_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, item)): Path<(String, i64)>,
    b: Result<Json<DecideBody>, JsonRejection>,
) -> Result<Json<Item>, ApiError> {
    check_id(&id)?;
    let b = body(b)?;
    let d = DecideItem {
        item,
        decision: b.decision,
        comment: b.comment,
    };
    let mut done = service(&state)?.decide(&caller.name, &id, &[d]).await?;
    done.pop()
        .map(Json)
        .ok_or_else(|| ApiError::bad_request("invalid_input", "no decision recorded"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    decisions: Vec<DecideItem>,
}

async fn decide_bulk(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<BulkBody>, JsonRejection>,
) -> Result<Json<Decided>, ApiError> {
    check_id(&id)?;
    let b = body(b)?;
    let items = service(&state)?
        .decide(&caller.name, &id, &b.decisions)
        .await?;
    Ok(Json(Decided { items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegateBody {
    to: String,
    #[serde(default)]
    comment: Option<String>,
}

async fn delegate_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, item)): Path<(String, i64)>,
    b: Result<Json<DelegateBody>, JsonRejection>,
) -> Result<Json<Item>, ApiError> {
    check_id(&id)?;
    let b = body(b)?;
    let d = DelegateItem {
        item,
        to: b.to,
        comment: b.comment,
    };
    let mut done = service(&state)?
        .delegate(&caller.name, caller.has(Role::Admin), &id, &[d])
        .await?;
    done.pop()
        .map(Json)
        .ok_or_else(|| ApiError::bad_request("invalid_input", "no delegation recorded"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegateBulkBody {
    delegations: Vec<DelegateItem>,
}

async fn delegate_bulk(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Json<DelegateBulkBody>, JsonRejection>,
) -> Result<Json<Decided>, ApiError> {
    check_id(&id)?;
    let b = body(b)?;
    let items = service(&state)?
        .delegate(&caller.name, caller.has(Role::Admin), &id, &b.delegations)
        .await?;
    Ok(Json(Decided { items }))
}

async fn close(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    caller.require_any(&[Role::Admin])?;
    check_id(&id)?;
    Ok(Json(service(&state)?.close(&caller.name, &id).await?))
}

async fn stop_recurring(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, ApiError> {
    caller.require_any(&[Role::Admin])?;
    check_id(&id)?;
    Ok(Json(
        service(&state)?.stop_recurring(&caller.name, &id).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportParams {
    format: Option<String>,
}

async fn report_of(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Role::Admin, Role::Auditor])?;
    check_id(&id)?;
    let q = query(q)?;
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv" | "pdf") {
        return Err(ApiError::bad_request(
            "invalid_query",
            "format must be json, csv or pdf",
        ));
    }
    let r = service(&state)?.report(&id).await?;
    match format {
        "json" => return Ok(Json(r).into_response()),
        "pdf" => {
            // Tens of thousands of rows take a noticeable moment to lay out: off the async
            // workers, like other CPU-bound work.
            let bytes = tokio::task::spawn_blocking(move || crate::reviews::pdf::to_pdf(&r))
                .await
                .map_err(|e| {
                    let mut err = ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal_error",
                        "cannot write the report",
                    );
                    err.source = Some(Box::new(e));
                    err
                })?;
            return Ok(([(header::CONTENT_TYPE, "application/pdf")], bytes).into_response());
        }
        _ => {}
    }
    let bytes = report::to_csv(&r).map_err(|e| {
        let mut err = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "cannot write the report",
        );
        err.source = Some(Box::new(e));
        err
    })?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], bytes).into_response())
}
