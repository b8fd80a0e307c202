//! The device authorization grant (RFC 8628): `POST /oauth2/{authServerId}/v1/device/authorize`,
//! the verification page (`/activate`, where Okta sends people to enter the user code), and the
//! polling state the token endpoint reads.
//!
//! Why it exists: `jit login` on a terminal shows a URL and a code, the person approves in a
//! browser, and the terminal polls until tokens arrive. Tests approve without a browser through
//! `SimHandle::decide_device` or `POST /_sim/oauth2/device`.
//!
//! What it must never do: approve a code for a user who is not ACTIVE, let a code be approved
//! after it expired, or answer a poll with tokens more than once.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use super::token::{authenticate_client, bad_client};
use super::{oauth_error, random_token, ttl_ms, AuthzState};
use crate::http_util::json_response;
use crate::ids::now_ms;
use crate::oidc::page::esc;
use crate::sim::Sim;

/// Letters RFC 8628 §6.1 suggests for user codes (no vowels, no look-alikes).
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Pending,
    Approved { user_id: String, auth_time_ms: i64 },
    Denied,
}

#[derive(Debug, Clone)]
pub(crate) struct DeviceGrant {
    server: String,
    client_id: String,
    user_code: String,
    scopes: Vec<String>,
    expires_ms: i64,
    interval_ms: i64,
    last_poll_ms: Option<i64>,
    decision: Decision,
}

/// What a poll of the token endpoint finds.
pub(crate) enum Poll {
    Pending,
    SlowDown,
    Expired,
    Denied,
    Invalid,
    Approved {
        user_id: String,
        scopes: Vec<String>,
        auth_time_ms: i64,
    },
}

/// A person's answer on the verification page (or a test's, through the control API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceDecision {
    Approve,
    Deny,
}

fn user_code() -> String {
    let mut rng = rand::thread_rng();
    (0..8)
        .map(|_| USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())] as char)
        .collect()
}

/// User codes are compared without case, spaces or dashes (people type them).
fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl AuthzState {
    /// One poll by the client holding `device_code`.
    pub(crate) fn poll_device(&self, server: &str, client_id: &str, code: &str, now: i64) -> Poll {
        let Ok(mut devices) = self.devices.lock() else {
            return Poll::Invalid;
        };
        let Some(g) = devices.get_mut(code) else {
            return Poll::Invalid;
        };
        if g.server != server || g.client_id != client_id {
            return Poll::Invalid;
        }
        if g.expires_ms <= now {
            devices.remove(code);
            return Poll::Expired;
        }
        // Faster than the interval: slow_down (the client must add 5 s, RFC 8628 §3.5; the
        // simulator enforces only the interval itself).
        let too_fast = g
            .last_poll_ms
            .is_some_and(|last| now - last < g.interval_ms);
        g.last_poll_ms = Some(now);
        match g.decision.clone() {
            Decision::Pending if too_fast => Poll::SlowDown,
            Decision::Pending => Poll::Pending,
            Decision::Denied => {
                devices.remove(code);
                Poll::Denied
            }
            Decision::Approved {
                user_id,
                auth_time_ms,
            } => {
                let scopes = g.scopes.clone();
                devices.remove(code);
                Poll::Approved {
                    user_id,
                    scopes,
                    auth_time_ms,
                }
            }
        }
    }

    /// Approves or denies the pending device code with `user_code` as the user with `login`.
    pub fn decide_device(
        &self,
        sim: &Sim,
        user_code: &str,
        login: &str,
        decision: DeviceDecision,
    ) -> Result<(), String> {
        let user_id = {
            let org = sim.org();
            org.users
                .values()
                .find(|u| u.status == "ACTIVE" && u.login.eq_ignore_ascii_case(login.trim()))
                .map(|u| u.id.clone())
                .ok_or("no active user with that login")?
        };
        let wanted = normalise(user_code);
        let now = now_ms();
        let mut devices = self.devices.lock().map_err(|_| "state poisoned")?;
        let g = devices
            .values_mut()
            .find(|g| g.user_code == wanted && g.expires_ms > now)
            .ok_or("no pending device code with that user code (wrong or expired)")?;
        if g.decision != Decision::Pending {
            return Err("that code was already used".into());
        }
        g.decision = match decision {
            DeviceDecision::Approve => Decision::Approved {
                user_id,
                auth_time_ms: now,
            },
            DeviceDecision::Deny => Decision::Denied,
        };
        Ok(())
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct AuthorizeForm {
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

pub async fn authorize(
    State(sim): State<Arc<Sim>>,
    Path(server_id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<AuthorizeForm>,
) -> Response {
    let Some(st) = sim.authz.as_ref() else {
        return super::not_found();
    };
    let Some(server) = st.server(&server_id) else {
        return super::not_found();
    };
    let client_id = match authenticate_client(
        server,
        &headers,
        f.client_id.as_deref(),
        f.client_secret.as_deref(),
    ) {
        Some(c) => c,
        None => return bad_client(),
    };
    let scopes: Vec<String> = f
        .scope
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        return oauth_error(
            "invalid_scope",
            "The authorization server requires a scope.",
        );
    }
    if let Some(bad) = scopes.iter().find(|s| !server.scopes.contains(s)) {
        return oauth_error(
            "invalid_scope",
            &format!("One or more scopes are not configured for the authorization server resource: {bad}"),
        );
    }
    let device_code = random_token();
    let code = user_code();
    let now = now_ms();
    if let Ok(mut d) = st.devices.lock() {
        d.retain(|_, g| g.expires_ms > now);
        d.insert(
            device_code.clone(),
            DeviceGrant {
                server: server.id.clone(),
                client_id,
                user_code: code.clone(),
                scopes,
                expires_ms: now + ttl_ms(server.device_code_ttl),
                interval_ms: ttl_ms(server.device_poll_interval),
                last_poll_ms: None,
                decision: Decision::Pending,
            },
        );
    }
    let verify = format!("{}/activate", sim.base_url);
    json_response(
        StatusCode::OK,
        &json!({
            "device_code": device_code,
            "user_code": code,
            "verification_uri": verify,
            "verification_uri_complete": format!("{verify}?user_code={code}"),
            "expires_in": server.device_code_ttl.as_secs(),
            "interval": server.device_poll_interval.as_secs(),
        }),
    )
}

#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    user_code: Option<String>,
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Activate your device</title></head><body>{body}</body></html>"
        ),
    )
        .into_response()
}

fn form(user_code: &str, error: Option<&str>) -> String {
    let err = error
        .map(|e| format!("<p role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    format!(
        "<h1>Activate your device</h1>{err}<form method=\"post\" action=\"/activate\">\
         <label>Code <input name=\"user_code\" value=\"{}\"></label>\
         <label>Login <input name=\"login\" autocomplete=\"username\"></label>\
         <button name=\"action\" value=\"approve\">Allow</button>\
         <button name=\"action\" value=\"deny\">Deny</button></form>",
        esc(user_code)
    )
}

/// The verification page: enter (or confirm) the code and sign in by login (no passwords here).
pub async fn page(Query(q): Query<PageQuery>) -> Response {
    html(
        StatusCode::OK,
        form(q.user_code.as_deref().unwrap_or(""), None),
    )
}

#[derive(Debug, Deserialize)]
pub struct SubmitForm {
    user_code: String,
    login: String,
    action: DeviceDecision,
}

pub async fn submit(State(sim): State<Arc<Sim>>, Form(f): Form<SubmitForm>) -> Response {
    let Some(st) = sim.authz.as_ref() else {
        return html(
            StatusCode::NOT_FOUND,
            "<p>No authorization server.</p>".into(),
        );
    };
    match st.decide_device(&sim, &f.user_code, &f.login, f.action) {
        Ok(()) if f.action == DeviceDecision::Approve => html(
            StatusCode::OK,
            "<h1>Device activated</h1><p>You can close this window and return to your device.</p>"
                .into(),
        ),
        Ok(()) => html(
            StatusCode::OK,
            "<h1>Request denied</h1><p>The device was not signed in.</p>".into(),
        ),
        Err(e) => html(StatusCode::BAD_REQUEST, form(&f.user_code, Some(&e))),
    }
}
