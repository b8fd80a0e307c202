//! Event hooks: create, list, get, activate, deactivate, verify, delete (`/api/v1/eventHooks`).
//!
//! Why it exists: the broker registers its own hook (`jit-broker okta event-hook register`)
//! the way an operator would against Okta: create it with the event types and the auth header,
//! then verify it (Okta sends the one-time challenge GET to the hook URL), and read its status.
//!
//! What it must never do: echo the hook's secret (`authScheme.value` is never rendered), or
//! mark a hook verified whose endpoint did not answer the challenge.

use std::sync::Arc;

use axum::extract::{Path, State};
use serde_json::{json, Value};

use super::{json_body, ListResult};
use crate::auth::{Area, Principal};
use crate::error::OktaError;
use crate::hooks::{Hook, HookDetails};
use crate::http_util::{no_content, ok_json};
use crate::ids;
use crate::sim::Sim;

/// Managing event hooks takes a super admin; in the simulator that is the role-writing level.
fn require_admin(p: &Principal, write: bool) -> Result<(), OktaError> {
    if write {
        p.require_write(Area::Roles)
    } else {
        p.require_read(Area::Roles)
    }
}

fn render(base: &str, h: &Hook) -> Value {
    let href = format!("{base}/api/v1/eventHooks/{}", h.id);
    let post = |op: &str| json!({ "href": format!("{href}/lifecycle/{op}"), "hints": { "allow": ["POST"] } });
    // The lifecycle links the status allows, as recorded: an active hook can be verified and
    // deactivated, an inactive one activated or deleted.
    let links = if h.active {
        json!({ "self": { "href": href }, "verify": post("verify"), "deactivate": post("deactivate") })
    } else {
        json!({
            "activate": post("activate"),
            "self": { "href": href },
            "delete": { "href": href, "hints": { "allow": ["DELETE"] } },
        })
    };
    let headers: Vec<Value> = h
        .headers
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    json!({
        "id": h.id,
        "status": if h.active { "ACTIVE" } else { "INACTIVE" },
        "verificationStatus": if h.verified { "VERIFIED" } else { "UNVERIFIED" },
        "name": h.name,
        "description": null,
        "created": ids::fmt_ms(h.created),
        "createdBy": h.created_by,
        "lastUpdated": ids::fmt_ms(h.last_updated),
        "events": { "type": "EVENT_TYPE", "items": h.events, "filter": null },
        "channel": {
            "type": "HTTP",
            "version": "1.0.0",
            "config": {
                "uri": h.url,
                "headers": headers,
                "method": "POST",
                // The secret is write-only, as in Okta.
                "authScheme": { "type": "HEADER", "key": h.auth_header },
            },
        },
        "_links": links,
    })
}

/// `channel.config.headers`: `[{key, value}]` (null entries skipped, as the SDKs may send
/// them); a header without a name, or whose value is not a string, is a validation error.
fn parse_headers(v: &Value) -> Result<Vec<(String, String)>, OktaError> {
    let Some(items) = v.as_array() else {
        return if v.is_null() {
            Ok(Vec::new())
        } else {
            Err(OktaError::validation(
                "channel.config.headers: must be a list",
            ))
        };
    };
    let mut out = Vec::new();
    for item in items.iter().filter(|i| !i.is_null()) {
        match (item["key"].as_str(), item["value"].as_str()) {
            (Some(k), Some(val)) if !k.trim().is_empty() => {
                // reqwest refuses invalid header names and values at send time; refuse them
                // here instead, so a hook that cannot be called is never stored.
                if axum::http::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || axum::http::HeaderValue::from_str(val).is_err()
                {
                    return Err(OktaError::validation(
                        "channel.config.headers: invalid header name or value",
                    ));
                }
                out.push((k.to_string(), val.to_string()));
            }
            _ => {
                return Err(OktaError::validation(
                    "channel.config.headers: each header needs a key and a value",
                ))
            }
        }
    }
    Ok(out)
}

fn hook_or_404(sim: &Sim, id: &str) -> Result<Hook, OktaError> {
    sim.hooks
        .hook(id)
        .ok_or_else(|| OktaError::not_found(id, "EventHook"))
}

pub async fn list(State(sim): State<Arc<Sim>>, p: Principal) -> ListResult {
    require_admin(&p, false)?;
    let all: Vec<Value> = sim
        .hooks
        .hooks()
        .iter()
        .map(|h| render(&sim.base_url, h))
        .collect();
    Ok(ok_json(&Value::Array(all)))
}

pub async fn get(State(sim): State<Arc<Sim>>, p: Principal, Path(id): Path<String>) -> ListResult {
    require_admin(&p, false)?;
    Ok(ok_json(&render(&sim.base_url, &hook_or_404(&sim, &id)?)))
}

pub async fn create(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    body: axum::body::Bytes,
) -> ListResult {
    require_admin(&p, true)?;
    let v = json_body(&body)?;
    let name = v["name"]
        .as_str()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| OktaError::validation("name: The field cannot be left blank"))?;
    if v["events"]["type"].as_str() != Some("EVENT_TYPE") {
        return Err(OktaError::validation("events.type: must be EVENT_TYPE"));
    }
    let items: Vec<String> = v["events"]["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if items.is_empty() {
        return Err(OktaError::validation(
            "events.items: The field cannot be left blank",
        ));
    }
    let config = &v["channel"]["config"];
    let uri = config["uri"]
        .as_str()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .ok_or_else(|| OktaError::validation("channel.config.uri: must be an https URL"))?;
    let auth = &config["authScheme"];
    let (key, value) = match (
        auth["type"].as_str(),
        auth["key"].as_str(),
        auth["value"].as_str(),
    ) {
        (Some("HEADER"), Some(k), Some(val)) if !k.is_empty() && !val.is_empty() => (k, val),
        _ => {
            return Err(OktaError::validation(
                "channel.config.authScheme: type HEADER with key and value is required",
            ))
        }
    };
    let headers = parse_headers(&config["headers"])?;
    // A custom header named like the auth header would be sent twice (unverified what Okta
    // does; refusing it keeps the secret the only value of its header).
    if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
        return Err(OktaError::validation(
            "channel.config.headers: a header may not have the authScheme's name",
        ));
    }
    let details = HookDetails {
        name: name.to_string(),
        events: items,
        created_by: p.actor.id.clone(),
        headers,
    };
    let hook = sim.hooks.register_with(uri, key, value, details);
    Ok(ok_json(&render(&sim.base_url, &hook)))
}

pub async fn activate(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
) -> ListResult {
    require_admin(&p, true)?;
    if !sim.hooks.set_active(&id, true) {
        return Err(OktaError::not_found(&id, "EventHook"));
    }
    Ok(ok_json(&render(&sim.base_url, &hook_or_404(&sim, &id)?)))
}

pub async fn deactivate(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
) -> ListResult {
    require_admin(&p, true)?;
    if !sim.hooks.set_active(&id, false) {
        return Err(OktaError::not_found(&id, "EventHook"));
    }
    Ok(ok_json(&render(&sim.base_url, &hook_or_404(&sim, &id)?)))
}

/// Okta's one-time verification: the challenge GET to the hook's URL must be answered.
pub async fn verify(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
) -> ListResult {
    require_admin(&p, true)?;
    hook_or_404(&sim, &id)?;
    sim.hooks
        .verify(&id)
        .await
        .map_err(|e| OktaError::validation(&format!("Verification failed: {e}")))?;
    Ok(ok_json(&render(&sim.base_url, &hook_or_404(&sim, &id)?)))
}

/// Deletes a hook. Okta deletes only `INACTIVE` hooks ("As a safety precaution, you can only
/// delete event hooks with a status of `INACTIVE`", the spec); the answer to deleting an active
/// one is unrecorded: 403 (a status the spec lists for this route) with E0000006 and a cause
/// saying why, chosen so a client that skips the deactivation fails loudly.
pub async fn delete(
    State(sim): State<Arc<Sim>>,
    p: Principal,
    Path(id): Path<String>,
) -> ListResult {
    require_admin(&p, true)?;
    let hook = hook_or_404(&sim, &id)?;
    if hook.active {
        return Err(OktaError::forbidden()
            .with_cause("Only INACTIVE event hooks can be deleted: deactivate it first."));
    }
    if !sim.hooks.remove(&id) {
        return Err(OktaError::not_found(&id, "EventHook"));
    }
    Ok(no_content())
}
