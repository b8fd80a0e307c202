//! `GET /v1/resources`: what the caller may request, with what each asks of them (duration
//! bounds, reason, ticket pattern, approvals). What a terminal client or an assistant lists.
//!
//! Why it exists: the console and Slack offered the requestable resources; the API did not, so
//! a client could only guess names. The answer is the requests service's (`requestable`), the
//! same for every channel.
//!
//! What it must never do: filter the policy itself, or list a resource's approvers or Okta ids
//! (a script or an assistant needs the rules of asking, not the org's layout; a person sees who
//! approves on the console's `/request` page, shown to the signed-in person asking).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::requests::service;
use super::ApiState;
use crate::authz::{require, Verb};
use crate::error::ApiError;
use crate::policy::Resource;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/v1/resources", get(list))
}

/// One requestable resource, as a requester sees it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Requestable {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub default_duration: String,
    pub max_duration: String,
    pub require_reason: bool,
    pub ticket_pattern: Option<String>,
    /// Approvals needed across every stage; 0 when granted without one.
    pub approvals_required: u32,
    pub break_glass: bool,
    /// Approvals need a recent Okta sign-in (the console).
    pub step_up: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Resources {
    pub resources: Vec<Requestable>,
}

fn view(r: &Resource) -> Requestable {
    let approvals = if r.stages.is_empty() {
        r.approvals_required
    } else {
        r.stages.iter().map(|s| s.approvals_required).sum()
    };
    Requestable {
        name: r.name.clone(),
        kind: serde_json::to_value(r.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        description: r.description.clone(),
        default_duration: humantime::format_duration(r.default_duration).to_string(),
        max_duration: humantime::format_duration(r.max_duration).to_string(),
        require_reason: r.require_reason,
        ticket_pattern: r.ticket_pattern.clone(),
        approvals_required: approvals,
        break_glass: r.break_glass,
        step_up: r.approval_step_up.is_some(),
    }
}

async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Json<Resources>, ApiError> {
    let svc = service(&state)?;
    let actor = caller.actor();
    require(Verb::Request, &actor)?;
    let resources = svc.requestable(&actor.login).await?;
    Ok(Json(Resources {
        resources: resources.iter().map(view).collect(),
    }))
}
