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

use super::{json_body, ListResult};
use crate::auth::{Area, Principal};
use crate::filter::{self, Field};
use crate::http_util::{no_content, ok_json};
use crate::pagination::{page, page_req, with_links, Params};
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
    let params = Params::parse(q.as_deref());
    let req = page_req(&params, 200, 200)?;
    let mut exprs = Vec::new();
    for key in ["filter", "search"] {
        if let Some(f) = params.get(key).filter(|f| !f.trim().is_empty()) {
            let e = filter::parse(f)?;
            e.check_attrs(&|a| USER_ATTRS.contains(&a))?;
            exprs.push(e);
        }
    }
    let prefix = params.get("q").map(str::to_lowercase);
    let (body, next) = {
        let org = sim.org();
        let (items, next) = page(&org.users, &req, |u| {
            (!exprs.is_empty() || u.status != "DEPROVISIONED")
                && prefix.as_deref().is_none_or(|p| {
                    [&u.login, &u.email, &u.first_name, &u.last_name]
                        .iter()
                        .any(|f| f.to_lowercase().starts_with(p))
                })
                && exprs.iter().all(|e| e.eval(&|a| user_field(u, a)))
        });
        let body: Vec<Value> = items
            .iter()
            .map(|(_, u)| render::user(&sim.base_url, u))
            .collect();
        (body, next)
    };
    Ok(with_links(
        ok_json(&Value::Array(body)),
        &sim.base_url,
        "/api/v1/users",
        &params,
        req.limit,
        next.as_deref(),
    ))
}

pub async fn create(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    RawQuery(q): RawQuery,
    body: axum::body::Bytes,
) -> ListResult {
    p.require_write(Area::Users)?;
    let params = Params::parse(q.as_deref());
    let activate = params.get("activate").is_none_or(|a| a != "false");
    let v = json_body(&body)?;
    let prof = &v["profile"];
    let login = prof["login"].as_str().unwrap_or("");
    let first = prof["firstName"].as_str().unwrap_or("");
    let last = prof["lastName"].as_str().unwrap_or("");
    let email = prof["email"].as_str();
    let u = sim.mutate(|org| org.create_user(&p.actor, login, first, last, email, activate))?;
    Ok(ok_json(&render::user(&sim.base_url, &u)))
}

pub async fn get(State(sim): State<Arc<Sim>>, p: Principal, Path(id): Path<String>) -> ListResult {
    p.require_read(Area::Users)?;
    let id = super::roles::resolve_me(&p, id);
    let org = sim.org();
    Ok(ok_json(&render::user(&sim.base_url, org.user_or_404(&id)?)))
}

pub async fn delete(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
) -> ListResult {
    p.require_write(Area::Users)?;
    sim.mutate(|org| org.delete_user(&p.actor, &id))?;
    Ok(no_content())
}

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

pub async fn activate(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
) -> ListResult {
    p.require_write(Area::Users)?;
    sim.mutate(|org| org.activate_user(&p.actor, &id))?;
    Ok(ok_json(&serde_json::json!({})))
}

pub async fn deactivate(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
) -> ListResult {
    p.require_write(Area::Users)?;
    sim.mutate(|org| org.deactivate_user(&p.actor, &id))?;
    Ok(ok_json(&serde_json::json!({})))
}

pub async fn suspend(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
) -> ListResult {
    p.require_write(Area::Users)?;
    sim.mutate(|org| org.suspend_user(&p.actor, &id))?;
    Ok(ok_json(&serde_json::json!({})))
}

pub async fn unsuspend(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
) -> ListResult {
    p.require_write(Area::Users)?;
    sim.mutate(|org| org.unsuspend_user(&p.actor, &id))?;
    Ok(ok_json(&serde_json::json!({})))
}

pub async fn clear_sessions(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
) -> ListResult {
    p.require_write(Area::Users)?;
    sim.mutate(|org| org.clear_sessions(&p.actor, &id))?;
    Ok(no_content())
}
