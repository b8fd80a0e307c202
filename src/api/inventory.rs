//! `GET /v1/inventory/users/{login}` and `GET /v1/inventory/resources/{name}`: what a person can
//! reach and who holds a managed resource, each with why (grant, standing, unexplained), as the
//! last sync saw it. For admins and auditors; the console and access reviews read these.
//!
//! What it must never do: call Okta (it answers from the inventory; `last_synced_at` says how
//! fresh that is), or answer for a user or resource it does not know with an empty list (404).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::{Caller, Role};
use super::ApiState;
use crate::error::ApiError;
use crate::inventory::{repo, AccessRow, InventoryUser, Why};

const MAX_LIMIT: i64 = 10_000;
const DEFAULT_LIMIT: i64 = 1_000;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/inventory/users/{login}", get(user))
        .route("/v1/inventory/resources/{name}", get(resource))
}

fn check_name(what: &'static str, s: &str) -> Result<(), ApiError> {
    if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("{what} must be 1-255 characters without control characters"),
        ));
    }
    Ok(())
}

/// One access of a user.
#[derive(Debug, Serialize, Deserialize)]
pub struct Holding {
    pub kind: String,
    pub okta_id: String,
    pub resource_set: Option<String>,
    /// The Okta group's or app's name, when known.
    pub name: Option<String>,
    /// The policy resource this is, when managed.
    pub resource: Option<String>,
    pub why: Why,
    pub grant_id: Option<String>,
    pub scope: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserView {
    pub user: InventoryUser,
    pub groups: Vec<Holding>,
    pub apps: Vec<Holding>,
    pub roles: Vec<Holding>,
}

fn holding(a: AccessRow, name: Option<String>, resource: Option<String>) -> Holding {
    Holding {
        kind: a.kind,
        okta_id: a.okta_id,
        resource_set: (!a.resource_set.is_empty()).then_some(a.resource_set),
        name,
        resource,
        why: a.why,
        grant_id: a.grant_id,
        scope: a.scope,
        first_seen: a.first_seen,
        last_seen: a.last_seen,
    }
}

async fn user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(login): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    caller.require_any(&[Role::Auditor, Role::Admin])?;
    check_name("login", &login)?;
    let mut conn = state.store.reads().acquire().await.map_err(store_err)?;
    let Some(u) = repo::find_user(&mut conn, &login).await? else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_user",
            format!("no user `{login}` in the inventory (has a sync run?)"),
        ));
    };
    let rows = repo::access_of_user(&mut conn, &u.user_id).await?;
    let policy = state.policy.current();
    let mut view = UserView {
        user: u,
        groups: Vec::new(),
        apps: Vec::new(),
        roles: Vec::new(),
    };
    for (a, name) in rows {
        let resource = policy
            .resources
            .iter()
            .find(|r| {
                r.kind.as_str() == a.kind
                    && r.okta_id == a.okta_id
                    && r.resource_set.as_deref().unwrap_or("") == a.resource_set
            })
            .map(|r| r.name.clone());
        let list = match a.kind.as_str() {
            "okta_group" => &mut view.groups,
            "okta_app" => &mut view.apps,
            _ => &mut view.roles,
        };
        list.push(holding(a, name, resource));
    }
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldersParams {
    /// The last `user_id` of the previous page.
    pub after: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Holder {
    pub user_id: String,
    pub login: Option<String>,
    pub why: Why,
    pub grant_id: Option<String>,
    pub scope: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ResourceView {
    pub resource: String,
    pub kind: String,
    pub okta_id: String,
    pub holders: Vec<Holder>,
    /// Pass as `after` for the next page; absent on the last one.
    pub next_after: Option<String>,
}

async fn resource(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    params: Result<Query<HoldersParams>, QueryRejection>,
) -> Result<Json<ResourceView>, ApiError> {
    caller.require_any(&[Role::Auditor, Role::Admin])?;
    check_name("resource", &name)?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = super::paging::limit(p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = p.after.unwrap_or_default();
    if after.len() > 255 || after.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_after",
            "after must be a user id from a previous page",
        ));
    }
    let policy = state.policy.current();
    let Some(r) = policy.get(&name) else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_resource",
            format!("no resource named `{name}` in the policy"),
        ));
    };
    let mut conn = state.store.reads().acquire().await.map_err(store_err)?;
    let rows = repo::holders(
        &mut conn,
        r.kind.as_str(),
        &r.okta_id,
        r.resource_set.as_deref().unwrap_or(""),
        &after,
        limit,
    )
    .await?;
    let next_after = super::paging::next_after(&rows, limit, |(a, _)| a.user_id.clone());
    Ok(Json(ResourceView {
        resource: r.name.clone(),
        kind: r.kind.as_str().to_string(),
        okta_id: r.okta_id.clone(),
        holders: rows
            .into_iter()
            .map(|(a, login)| Holder {
                user_id: a.user_id,
                login,
                why: a.why,
                grant_id: a.grant_id,
                scope: a.scope,
                first_seen: a.first_seen,
                last_seen: a.last_seen,
            })
            .collect(),
        next_after,
    }))
}

fn store_err(e: sqlx::Error) -> ApiError {
    crate::store::StoreError::Query(e).into()
}
