//! `/_sim/…` HTTP routes (see the README for the full list).
//!
//! Why it exists: tests written in any language, and the binary's users, drive out-of-band
//! changes, faults and hooks over HTTP. The actor of a change is named by the `X-Sim-Actor`
//! header or `?actor=` (default `admin@example.com`).
//!
//! What it must never do: apply a change without the same validation the management API uses.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin_actor, delete_user_outright, dump, DEFAULT_ADMIN};
use crate::error::OktaError;
use crate::faults::FaultConfig;
use crate::hooks::events::Actor;
use crate::http_util::{json_response, no_content, ok_json};
use crate::ratelimit::RateLimitConfig;
use crate::sim::Sim;
use crate::state::{render, RoleRequest};

type R = Result<Response, OktaError>;

#[derive(Debug, Deserialize, Default)]
pub struct ActorQ {
    actor: Option<String>,
}

/// The actor of a control change: `X-Sim-Actor`, else `?actor=`, else the default admin.
/// A query string that does not parse is refused exactly as `Query<ActorQ>` refuses it.
pub struct ControlActor(Actor);

impl FromRequestParts<Arc<Sim>> for ControlActor {
    type Rejection = QueryRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        sim: &Arc<Sim>,
    ) -> Result<Self, Self::Rejection> {
        let Query(q) = Query::<ActorQ>::from_request_parts(parts, sim).await?;
        let name = parts
            .headers
            .get("x-sim-actor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or(q.actor)
            .unwrap_or_else(|| DEFAULT_ADMIN.to_string());
        Ok(Self(admin_actor(sim, &name)))
    }
}

/// Defines a control handler that calls one `Org` change with the control actor and the two
/// path parameters (plus fixed extra arguments) and answers 204:
/// `change_route!(handler => org_method(first_param, second_param, extra...));`
macro_rules! change_route {
    ($name:ident => $method:ident($a:ident, $b:ident $(, $extra:expr)*)) => {
        async fn $name(
            State(sim): State<Arc<Sim>>,
            ControlActor(actor): ControlActor,
            Path(($a, $b)): Path<(String, String)>,
        ) -> R {
            sim.mutate(|o| o.$method(&actor, &$a, &$b $(, $extra)*))?;
            Ok(no_content())
        }
    };
}

pub fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/state", get(state))
        .route("/counters", get(counters).delete(reset_counters))
        .route("/faults", get(get_faults).put(put_faults))
        .route("/rate-limits", get(get_limits).put(put_limits))
        .route("/events", get(events))
        .route("/hooks", get(list_hooks).post(add_hook))
        .route("/hooks/deliveries", get(deliveries))
        .route("/hooks/{id}", delete(del_hook))
        .route("/hooks/{id}/verify", post(verify_hook))
        .route("/admin/users", post(create_user))
        .route("/admin/users/{userId}", delete(delete_user))
        .route("/admin/users/{userId}/lifecycle/{op}", post(lifecycle))
        .route("/admin/users/{userId}/roles", post(assign_role))
        .route(
            "/admin/users/{userId}/roles/{roleAssignmentId}",
            delete(unassign_role),
        )
        .route("/admin/groups", post(create_group))
        .route(
            "/admin/groups/{groupId}/users/{userId}",
            post(add_member).delete(remove_member),
        )
        .route("/admin/apps", post(create_app))
        .route(
            "/admin/apps/{appId}/users/{userId}",
            post(assign_app).delete(unassign_app),
        )
        .route(
            "/admin/apps/{appId}/groups/{groupId}",
            post(assign_app_group).delete(unassign_app_group),
        )
}

async fn state(State(sim): State<Arc<Sim>>) -> Response {
    ok_json(&dump(&sim))
}

async fn counters(State(sim): State<Arc<Sim>>) -> Response {
    ok_json(&sim.counters.snapshot())
}

async fn reset_counters(State(sim): State<Arc<Sim>>) -> Response {
    sim.counters.reset();
    no_content()
}

async fn get_faults(State(sim): State<Arc<Sim>>) -> Response {
    ok_json(&serde_json::to_value(sim.faults.get()).unwrap_or_default())
}

async fn put_faults(State(sim): State<Arc<Sim>>, Json(f): Json<FaultConfig>) -> Response {
    sim.faults.set(f, crate::ids::now_ms());
    no_content()
}

async fn get_limits(State(sim): State<Arc<Sim>>) -> Response {
    ok_json(&serde_json::to_value(sim.limiter.config()).unwrap_or_default())
}

async fn put_limits(State(sim): State<Arc<Sim>>, Json(r): Json<RateLimitConfig>) -> Response {
    sim.limiter.set(r);
    no_content()
}

async fn events(State(sim): State<Arc<Sim>>) -> Response {
    ok_json(&Value::Array(sim.hooks.event_log()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewHook {
    url: String,
    #[serde(default = "default_auth_header")]
    auth_header: String,
    #[serde(default)]
    auth_value: String,
    /// Run the verification GET right away (default true).
    #[serde(default = "yes")]
    verify: bool,
}
fn default_auth_header() -> String {
    "Authorization".into()
}
fn yes() -> bool {
    true
}

async fn add_hook(State(sim): State<Arc<Sim>>, Json(h): Json<NewHook>) -> Response {
    let hook = sim.hooks.register(&h.url, &h.auth_header, &h.auth_value);
    let (verified, error) = if h.verify {
        match sim.hooks.verify(&hook.id).await {
            Ok(()) => (true, None),
            Err(e) => (false, Some(e)),
        }
    } else {
        (false, None)
    };
    json_response(
        StatusCode::CREATED,
        &json!({ "id": hook.id, "verified": verified, "error": error }),
    )
}

async fn list_hooks(State(sim): State<Arc<Sim>>) -> Response {
    ok_json(&serde_json::to_value(sim.hooks.hooks()).unwrap_or_default())
}

async fn del_hook(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> R {
    if sim.hooks.remove(&id) {
        Ok(no_content())
    } else {
        Err(OktaError::not_found(&id, "EventHook"))
    }
}

async fn verify_hook(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> R {
    match sim.hooks.verify(&id).await {
        Ok(()) => Ok(ok_json(&json!({ "id": id, "verified": true }))),
        Err(e) => Err(OktaError::validation("verification").with_cause(e)),
    }
}

async fn deliveries(State(sim): State<Arc<Sim>>) -> Response {
    ok_json(&serde_json::to_value(sim.hooks.deliveries()).unwrap_or_default())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewUser {
    login: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default = "yes")]
    activate: bool,
}

async fn create_user(
    State(sim): State<Arc<Sim>>,
    ControlActor(a): ControlActor,
    Json(b): Json<NewUser>,
) -> R {
    let u = sim.mutate(|o| {
        o.create_user(
            &a,
            &b.login,
            &b.first_name,
            &b.last_name,
            b.email.as_deref(),
            b.activate,
        )
    })?;
    Ok(json_response(
        StatusCode::CREATED,
        &render::user(&sim.base_url, &u),
    ))
}

async fn delete_user(
    State(sim): State<Arc<Sim>>,
    ControlActor(a): ControlActor,
    Path(uid): Path<String>,
) -> R {
    sim.mutate(|o| delete_user_outright(o, &a, &uid))?;
    Ok(no_content())
}

async fn lifecycle(
    State(sim): State<Arc<Sim>>,
    ControlActor(a): ControlActor,
    Path((uid, op)): Path<(String, String)>,
) -> R {
    sim.mutate(|o| match op.as_str() {
        "deactivate" => o.deactivate_user(&a, &uid).map(|_| ()),
        "suspend" => o.suspend_user(&a, &uid).map(|_| ()),
        "unsuspend" => o.unsuspend_user(&a, &uid).map(|_| ()),
        "activate" | "reactivate" => o.activate_user(&a, &uid).map(|_| ()),
        "delete" => delete_user_outright(o, &a, &uid),
        _ => Err(OktaError::validation("lifecycle operation")),
    })?;
    Ok(no_content())
}

async fn assign_role(
    State(sim): State<Arc<Sim>>,
    ControlActor(a): ControlActor,
    Path(uid): Path<String>,
    Json(r): Json<RoleRequest>,
) -> R {
    let ra = sim.mutate(|o| o.assign_role(&a, &uid, &r))?;
    Ok(json_response(
        StatusCode::CREATED,
        &render::role(&sim.base_url, &uid, &ra),
    ))
}

#[derive(Debug, Deserialize)]
struct NewGroup {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

async fn create_group(
    State(sim): State<Arc<Sim>>,
    ControlActor(a): ControlActor,
    Json(b): Json<NewGroup>,
) -> R {
    let kind = b.kind.unwrap_or_else(|| "OKTA_GROUP".into());
    let g = sim.mutate(|o| o.create_group(&a, &b.name, b.description.clone(), &kind))?;
    let org = sim.org();
    Ok(json_response(
        StatusCode::CREATED,
        &render::group(&sim.base_url, &org, &g, false),
    ))
}

#[derive(Debug, Deserialize)]
struct NewApp {
    label: String,
    #[serde(default)]
    name: Option<String>,
}

async fn create_app(
    State(sim): State<Arc<Sim>>,
    ControlActor(a): ControlActor,
    Json(b): Json<NewApp>,
) -> R {
    let name = b.name.unwrap_or_else(|| "bookmark".into());
    let app = sim.mutate(|o| o.create_app(&a, &name, &b.label, true))?;
    Ok(json_response(
        StatusCode::CREATED,
        &render::app(&sim.base_url, &app),
    ))
}

change_route!(unassign_role => unassign_role(uid, rid));
change_route!(add_member => add_member(gid, uid));
change_route!(remove_member => remove_member(gid, uid));
change_route!(assign_app => assign_app_user(app, uid, false));
change_route!(unassign_app => unassign_app_user(app, uid));
change_route!(assign_app_group => assign_app_group(app, gid));
change_route!(unassign_app_group => unassign_app_group(app, gid));
