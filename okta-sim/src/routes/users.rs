//! Users: list/search, create, get by id or login, delete, groups, lifecycle, sessions.
//!
//! Why it exists: the broker resolves requesters by login, watches their status and ends their
//! sessions at expiry; the recorded flows create and delete users.
//!
//! What it must never do: list DEPROVISIONED users without a filter or search asking for them
//! (Okta's default listing hides them).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use serde_json::Value;

use super::list::{activate_param, empty_ok, write_route, ListQuery};
use super::{json_body, ListResult};
use crate::auth::{Area, Principal};
use crate::filter::Field;
use crate::http_util::{no_content, ok_json};
use crate::sim::Sim;
use crate::state::{render, User};

const USER_ATTRS: &[&str] = &[
    "id",
    "status",
    "created",
    "lastUpdated",
    "statusChanged",
    "profile.login",
    "profile.email",
    "profile.firstName",
    "profile.lastName",
];

fn user_field(u: &User, attr: &str) -> Field {
    match attr {
        "id" => Field::Str(u.id.clone()),
        "status" => Field::Str(u.status.clone()),
        "created" => Field::Time(u.created),
        "lastUpdated" => Field::Time(u.last_updated),
        "statusChanged" => u.status_changed.map(Field::Time).unwrap_or(Field::Missing),
        "profile.login" => Field::Str(u.login.clone()),
        "profile.email" => Field::Str(u.email.clone()),
        "profile.firstName" => Field::Str(u.first_name.clone()),
        "profile.lastName" => Field::Str(u.last_name.clone()),
        _ => Field::Missing,
    }
}

pub async fn list(State(sim): State<Arc<Sim>>, p: Principal, RawQuery(q): RawQuery) -> ListResult {
    p.require_read(Area::Users)?;
    let lq = ListQuery::parse(q.as_deref(), 200, 200)?;
    let exprs = lq.exprs(USER_ATTRS)?;
    let (body, next) = lq.render_page(
        &sim.org().users,
        |u| {
            (!exprs.is_empty() || u.status != "DEPROVISIONED")
                && lq.q_matches(&[&u.login, &u.email, &u.first_name, &u.last_name])
                && exprs.iter().all(|e| e.eval(&|a| user_field(u, a)))
        },
        |(_, u)| Some(render::user(&sim.base_url, u)),
    );
    Ok(lq.respond(&sim.base_url, "/api/v1/users", body, next))
}

pub async fn create(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    RawQuery(q): RawQuery,
    body: axum::body::Bytes,
) -> ListResult {
    p.require_write(Area::Users)?;
    let activate = activate_param(q.as_deref());
    let v = json_body(&body)?;
    let prof = &v["profile"];
    let login = prof["login"].as_str().unwrap_or("");
    let first = prof["firstName"].as_str().unwrap_or("");
    let last = prof["lastName"].as_str().unwrap_or("");
    let email = prof["email"].as_str();
    let u = sim.mutate(|org| org.create_user(&p.actor, login, first, last, email, activate))?;
    Ok(ok_json(&render::user_full(&sim.base_url, &u)))
}

pub async fn get(State(sim): State<Arc<Sim>>, p: Principal, Path(id): Path<String>) -> ListResult {
    p.require_read(Area::Users)?;
    let id = super::roles::resolve_me(&p, id);
    let org = sim.org();
    Ok(ok_json(&render::user_full(
        &sim.base_url,
        org.user_or_404(&id)?,
    )))
}

write_route!(delete, Area::Users, id => String,
    |org, actor| org.delete_user(actor, &id), no_content());

pub async fn groups(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
) -> ListResult {
    p.require_read(Area::Users)?;
    let org = sim.org();
    let u = org.user_or_404(&id)?;
    let body: Vec<Value> = org
        .user_groups
        .get(&u.id)
        .into_iter()
        .flatten()
        .filter_map(|g| org.groups.get(g))
        .map(|g| render::group(&sim.base_url, &org, g, false))
        .collect();
    Ok(ok_json(&Value::Array(body)))
}

write_route!(activate, Area::Users, id => String,
    |org, actor| org.activate_user(actor, &id), empty_ok());
write_route!(deactivate, Area::Users, id => String,
    |org, actor| org.deactivate_user(actor, &id), empty_ok());
write_route!(suspend, Area::Users, id => String,
    |org, actor| org.suspend_user(actor, &id), empty_ok());
write_route!(unsuspend, Area::Users, id => String,
    |org, actor| org.unsuspend_user(actor, &id), empty_ok());
write_route!(clear_sessions, Area::Users, id => String,
    |org, actor| org.clear_sessions(actor, &id), no_content());
