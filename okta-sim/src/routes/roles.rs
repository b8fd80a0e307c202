//! Admin role assignments of users: list, assign (201), get, unassign (204, then 404).
//!
//! Why it exists: `okta_role` grants. Only SuperAdmin tokens may touch roles (Okta requires a
//! super admin to assign admin roles); duplicates answer 409 E0000090.
//!
//! What it must never do: accept an unknown role type or custom role (400 E0000001).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

use super::{json_body, ListResult};
use crate::auth::{Area, Principal};
use crate::error::OktaError;
use crate::http_util::{json_response, no_content, ok_json};
use crate::sim::Sim;
use crate::state::{render, RoleRequest};

pub async fn list(State(sim): State<Arc<Sim>>, p: Principal, Path(id): Path<String>) -> ListResult {
    p.require_read(Area::Roles)?;
    let org = sim.org();
    let u = org.user_or_404(&id)?;
    let body: Vec<Value> = org
        .roles
        .get(&u.id)
        .into_iter()
        .flatten()
        .map(|r| render::role(&sim.base_url, &u.id, r))
        .collect();
    Ok(ok_json(&Value::Array(body)))
}

pub async fn assign(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ListResult {
    p.require_write(Area::Roles)?;
    let v = json_body(&body)?;
    let req: RoleRequest = serde_json::from_value(v).map_err(|_| {
        OktaError::validation("type").with_cause("type: The field cannot be left blank")
    })?;
    let uid = sim.org().user_or_404(&id)?.id.clone();
    let ra = sim.mutate(|org| org.assign_role(&p.actor, &uid, &req))?;
    Ok(json_response(
        StatusCode::CREATED,
        &render::role(&sim.base_url, &uid, &ra),
    ))
}

pub async fn get(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path((id, rid)): Path<(String, String)>,
) -> ListResult {
    p.require_read(Area::Roles)?;
    let org = sim.org();
    let u = org.user_or_404(&id)?;
    let r = org
        .roles
        .get(&u.id)
        .and_then(|rs| rs.iter().find(|r| r.id == rid))
        .ok_or_else(|| OktaError::not_found(&rid, "RoleAssignment"))?;
    Ok(ok_json(&render::role(&sim.base_url, &u.id, r)))
}

pub async fn unassign(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path((id, rid)): Path<(String, String)>,
) -> ListResult {
    p.require_write(Area::Roles)?;
    sim.mutate(|org| org.unassign_role(&p.actor, &id, &rid))?;
    Ok(no_content())
}
