//! Admin role assignments of users: list, assign (201), get, unassign (204, then 404).
//!
//! Why it exists: `okta_role` grants. Only SuperAdmin tokens may touch roles (Okta requires a
//! super admin to assign admin roles); duplicates answer 409 E0000090.
//!
//! What it must never do: accept an unknown role type or custom role (400 E0000001).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{json, Value};

use super::list::write_route;
use super::{json_body, ListResult};
use crate::auth::{Area, Principal};
use crate::config::PermissionLevel;
use crate::error::OktaError;
use crate::http_util::{json_response, no_content, ok_json};
use crate::sim::Sim;
use crate::state::{render, RoleRequest};

pub async fn list(State(sim): State<Arc<Sim>>, p: Principal, Path(id): Path<String>) -> ListResult {
    p.require_read(Area::Roles)?;
    let id = resolve_me(&p, id);
    let org = sim.org();
    let u = org.user_or_404(&id)?;
    let mut body: Vec<Value> = Vec::new();
    // A token's permission level *is* its admin's role in this simulator, so the token's own
    // principal lists that role first: this is what the broker's capability probe reads.
    if u.id == p.actor.id && p.scopes.is_none() {
        body.extend(level_roles(p.level, "USER"));
    }
    body.extend(
        org.roles
            .get(&u.id)
            .into_iter()
            .flatten()
            .map(|r| render::role(&sim.base_url, &u.id, r)),
    );
    Ok(ok_json(&Value::Array(body)))
}

/// `me` names the token's own user, as in Okta.
pub fn resolve_me(p: &Principal, id: String) -> String {
    if id == "me" {
        p.actor.id.clone()
    } else {
        id
    }
}

/// The standard roles that stand for a permission level.
fn level_roles(level: PermissionLevel, assignment_type: &str) -> Vec<Value> {
    let types: &[(&str, &str)] = match level {
        PermissionLevel::SuperAdmin => &[("SUPER_ADMIN", "Super Administrator")],
        PermissionLevel::GroupAppAdmin => &[
            ("GROUP_MEMBERSHIP_ADMIN", "Group Membership Administrator"),
            ("APP_ADMIN", "Application Administrator"),
        ],
        PermissionLevel::ReadOnly => &[("READ_ONLY_ADMIN", "Read Only Administrator")],
    };
    types
        .iter()
        .map(|(t, label)| {
            json!({
                "id": format!("ra1level{}", t.to_ascii_lowercase().replace('_', "")),
                "label": label,
                "type": t,
                "status": "ACTIVE",
                "created": "2024-01-01T00:00:00.000Z",
                "lastUpdated": "2024-01-01T00:00:00.000Z",
                "assignmentType": assignment_type,
            })
        })
        .collect()
}

/// `GET /oauth2/v1/clients/{clientId}/roles`: the admin roles of the OAuth service app.
pub async fn client_roles(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(client_id): Path<String>,
) -> ListResult {
    p.require_read(Area::Roles)?;
    match &sim.oauth {
        Some(o) if o.principal_id() == client_id => {
            Ok(ok_json(&Value::Array(level_roles(o.level(), "CLIENT"))))
        }
        _ => Err(OktaError::not_found(&client_id, "Client")),
    }
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

write_route!(unassign, Area::Roles, (id, rid) => (String, String),
    |org, actor| org.unassign_role(actor, &id, &rid), no_content());

/// `GET /api/v1/iam/assignees/users`: the users holding at least one admin role, by id, paged
/// like Okta's IAM lists: `{"value": [...], "_links": {"next": {"href": ...}}}` in the body (not
/// a `Link` header). This is how a caller finds role holders it has no other reason to know of
/// (a role given by hand in the Admin Console).
pub async fn assignees(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> ListResult {
    p.require_read(Area::Roles)?;
    let lq = super::list::ListQuery::parse(q.as_deref(), 100, 100)?;
    let org = sim.org();
    let (items, next) = crate::pagination::page(&org.users, &lq.req, |u| {
        org.roles.get(&u.id).is_some_and(|r| !r.is_empty())
    });
    let base = &sim.base_url;
    let value: Vec<Value> = items
        .into_iter()
        .map(|(id, _)| {
            json!({
                "id": id,
                "orn": format!("orn:okta:directory:sim:users:{id}"),
                "_links": {
                    "self": {"href": format!("{base}/api/v1/users/{id}")},
                    "roles": {"href": format!("{base}/api/v1/users/{id}/roles")},
                },
            })
        })
        .collect();
    let mut links = json!({});
    if let Some(n) = next {
        links["next"] = json!({"href": format!(
            "{base}/api/v1/iam/assignees/users?after={}&limit={}",
            crate::pagination::encode_cursor(&n),
            lq.req.limit
        )});
    }
    Ok(ok_json(&json!({"value": value, "_links": links})))
}
