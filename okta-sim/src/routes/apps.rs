//! Apps and their user assignments: list, create, get, delete, lifecycle, assign (200 AppUser),
//! get/list app users, unassign (204; 403 E0000046 when a group grants the app).
//!
//! Why it exists: `okta_app` grants, and the group-based assignment trap (an app that arrives
//! through a group cannot be removed per user) the broker must detect instead of retrying.
//!
//! What it must never do: accept `scope: GROUP` on a user assignment (groups are assigned to
//! apps, not users to groups-of-apps).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use serde_json::Value;

use super::list::{activate_param, empty_ok, write_route, ListQuery};
use super::{json_body, ListResult};
use crate::auth::{Area, Principal};
use crate::error::OktaError;
use crate::http_util::{no_content, ok_json};
use crate::sim::Sim;
use crate::state::render;

pub async fn list(State(sim): State<Arc<Sim>>, p: Principal, RawQuery(q): RawQuery) -> ListResult {
    p.require_read(Area::Apps)?;
    let lq = ListQuery::parse(q.as_deref(), 200, 200)?;
    let (body, next) = lq.render_page(
        &sim.org().apps,
        |a| lq.q_matches(&[&a.label, &a.name]),
        |(_, a)| Some(render::app(&sim.base_url, a)),
    );
    Ok(lq.respond(&sim.base_url, "/api/v1/apps", body, next))
}

pub async fn create(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    RawQuery(q): RawQuery,
    body: axum::body::Bytes,
) -> ListResult {
    p.require_write(Area::Apps)?;
    let activate = activate_param(q.as_deref());
    let v = json_body(&body)?;
    let label = v["label"].as_str().unwrap_or("").to_string();
    let name = v["name"].as_str().unwrap_or("bookmark").to_string();
    let a = sim.mutate(|org| org.create_app(&p.actor, &name, &label, activate))?;
    Ok(ok_json(&render::app(&sim.base_url, &a)))
}

pub async fn get(State(sim): State<Arc<Sim>>, p: Principal, Path(id): Path<String>) -> ListResult {
    p.require_read(Area::Apps)?;
    let org = sim.org();
    Ok(ok_json(&render::app(&sim.base_url, org.app_or_404(&id)?)))
}

write_route!(delete, Area::Apps, id => String,
    |org, actor| org.delete_app(actor, &id), no_content());
write_route!(activate, Area::Apps, id => String,
    |org, actor| org.set_app_status(actor, &id, true), empty_ok());
write_route!(deactivate, Area::Apps, id => String,
    |org, actor| org.set_app_status(actor, &id, false), empty_ok());

pub async fn users(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ListResult {
    p.require_read(Area::Apps)?;
    let lq = ListQuery::parse(q.as_deref(), 50, 500)?;
    let (body, next) = {
        let org = sim.org();
        org.app_or_404(&id)?;
        let empty = Default::default();
        let map = org.app_users.get(&id).unwrap_or(&empty);
        lq.render_page(
            map,
            |_| true,
            |(uid, a)| {
                org.users
                    .get(uid)
                    .map(|u| render::app_user(&sim.base_url, &id, u, a))
            },
        )
    };
    let path = format!("/api/v1/apps/{id}/users");
    Ok(lq.respond(&sim.base_url, &path, body, next))
}

pub async fn assign(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ListResult {
    p.require_write(Area::Apps)?;
    let v = json_body(&body)?;
    let uid = v["id"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
        OktaError::validation("id").with_cause("id: The field cannot be left blank")
    })?;
    if let Some(scope) = v.get("scope").and_then(Value::as_str) {
        if scope != "USER" {
            return Err(OktaError::validation("scope")
                .with_cause("scope: Only USER scope can be assigned to a user"));
        }
    }
    let strict = sim.strict_duplicate_app_assign;
    let (a, _created) = sim.mutate(|org| org.assign_app_user(&p.actor, &id, uid, strict))?;
    let org = sim.org();
    let u = org.user_or_404(uid)?;
    Ok(ok_json(&render::app_user(&sim.base_url, &id, u, &a)))
}

pub async fn get_user(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path((id, uid)): Path<(String, String)>,
) -> ListResult {
    p.require_read(Area::Apps)?;
    let org = sim.org();
    org.app_or_404(&id)?;
    let u = org.user_or_404(&uid)?;
    let a = org
        .assignment(&id, &u.id)
        .ok_or_else(|| OktaError::not_found(&uid, "AppUser"))?;
    Ok(ok_json(&render::app_user(&sim.base_url, &id, u, a)))
}

write_route!(unassign, Area::Apps, (id, uid) => (String, String),
    |org, actor| org.unassign_app_user(actor, &id, &uid), no_content());
