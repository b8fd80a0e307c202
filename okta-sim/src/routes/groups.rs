//! Groups: list (filter/search/q/expand=stats), create, get, delete, members.
//!
//! Why it exists: group membership is the broker's main grant kind. Membership changes move
//! `lastMembershipUpdated`; only OKTA_GROUP membership can change (403 E0000006 otherwise).
//!
//! What it must never do: hold the org lock while building large responses longer than needed
//! (pages are bounded by `limit`).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use serde_json::Value;

use super::list::{write_route, ListQuery};
use super::{json_body, ListResult};
use crate::auth::{Area, Principal};
use crate::error::OktaError;
use crate::filter::Field;
use crate::http_util::{no_content, ok_json};
use crate::pagination::{page_set, Params};
use crate::sim::Sim;
use crate::state::{render, Group};

const GROUP_ATTRS: &[&str] = &[
    "id",
    "type",
    "created",
    "lastUpdated",
    "lastMembershipUpdated",
    "profile.name",
    "profile.description",
];

fn group_field(g: &Group, attr: &str) -> Field {
    match attr {
        "id" => Field::Str(g.id.clone()),
        "type" => Field::Str(g.kind.clone()),
        "created" => Field::Time(g.created),
        "lastUpdated" => Field::Time(g.last_updated),
        "lastMembershipUpdated" => Field::Time(g.last_membership_updated),
        "profile.name" => Field::Str(g.name.clone()),
        "profile.description" => g
            .description
            .clone()
            .map(Field::Str)
            .unwrap_or(Field::Missing),
        _ => Field::Missing,
    }
}

pub async fn list(State(sim): State<Arc<Sim>>, p: Principal, RawQuery(q): RawQuery) -> ListResult {
    p.require_read(Area::Groups)?;
    let lq = ListQuery::parse(q.as_deref(), 10_000, 10_000)?;
    let exprs = lq.exprs(GROUP_ATTRS)?;
    let stats = lq
        .params
        .get("expand")
        .is_some_and(|e| e.split(',').any(|x| x == "stats"));
    let (body, next) = {
        let org = sim.org();
        lq.render_page(
            &org.groups,
            |g| lq.q_matches(&[&g.name]) && exprs.iter().all(|e| e.eval(&|a| group_field(g, a))),
            |(_, g)| Some(render::group(&sim.base_url, &org, g, stats)),
        )
    };
    Ok(lq.respond(&sim.base_url, "/api/v1/groups", body, next))
}

pub async fn create(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    body: axum::body::Bytes,
) -> ListResult {
    p.require_write(Area::Groups)?;
    let v = json_body(&body)?;
    let name = v["profile"]["name"]
        .as_str()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            OktaError::validation("profile").with_cause("name: The field cannot be left blank")
        })?;
    let desc = v["profile"]["description"].as_str().map(str::to_string);
    let g = sim.mutate(|org| org.create_group(&p.actor, name, desc, "OKTA_GROUP"))?;
    let org = sim.org();
    Ok(ok_json(&render::group(&sim.base_url, &org, &g, false)))
}

pub async fn get(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(gid): Path<String>,
    RawQuery(q): RawQuery,
) -> ListResult {
    p.require_read(Area::Groups)?;
    let stats = Params::parse(q.as_deref())
        .get("expand")
        .is_some_and(|e| e.contains("stats"));
    let org = sim.org();
    let g = org.group_or_404(&gid)?;
    Ok(ok_json(&render::group(&sim.base_url, &org, g, stats)))
}

write_route!(delete, Area::Groups, gid => String,
    |org, actor| org.delete_group(actor, &gid), no_content());

pub async fn members(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(gid): Path<String>,
    RawQuery(q): RawQuery,
) -> ListResult {
    p.require_read(Area::Groups)?;
    let lq = ListQuery::parse(q.as_deref(), 1000, 10_000)?;
    let (body, next) = {
        let org = sim.org();
        org.group_or_404(&gid)?;
        let empty = Default::default();
        let set = org.members.get(&gid).unwrap_or(&empty);
        let (ids, next) = page_set(set, &lq.req, |_| true);
        let body: Vec<Value> = ids
            .iter()
            .filter_map(|id| org.users.get(*id))
            .map(|u| render::user(&sim.base_url, u))
            .collect();
        (body, next)
    };
    let path = format!("/api/v1/groups/{gid}/users");
    Ok(lq.respond(&sim.base_url, &path, body, next))
}

write_route!(add_member, Area::Groups, (gid, uid) => (String, String),
    |org, actor| org.add_member(actor, &gid, &uid), no_content());
write_route!(remove_member, Area::Groups, (gid, uid) => (String, String),
    |org, actor| org.remove_member(actor, &gid, &uid), no_content());
