//! A fake of the three on-call systems on one port, as okta-sim is Okta's: PagerDuty
//! `GET /oncalls`, Opsgenie `GET /v2/schedules/{id}/on-calls`, Jira Service Management
//! `GET /jsm/ops/api/{cloudId}/v1/schedules/{id}/on-calls` and the Jira site's
//! `GET /rest/api/3/user/search`, with the vendors' headers, response shapes and error bodies
//! (docs/oncall.md). Tests set who is on call, a latency, and a failure mode (down: 503; rate
//! limited: 429 with `Retry-After`; slow: an answer after the broker's timeout), and read how
//! many calls arrived.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub const PD_TOKEN: &str = "pd-test-token-0123456789";
pub const OG_KEY: &str = "og-test-key-0123456789";
pub const JSM_USER: &str = "ops-bot@example.com";
pub const JSM_TOKEN: &str = "jsm-test-token-0123456789";
pub const JSM_CLOUD: &str = "7f1e6c2a-cloud-0001";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// 503 with the vendor's error body.
    Down,
    /// 429 with `Retry-After` (seconds) and the vendor's error body.
    RateLimited(u64),
}

/// Someone on call: an email (PagerDuty, Opsgenie) with an account id (JSM) and a level.
#[derive(Debug, Clone)]
pub struct Shift {
    pub email: String,
    pub account_id: String,
    pub level: u32,
}

#[derive(Default)]
struct State_ {
    /// target id (schedule or escalation policy) → who is on call.
    on_call: HashMap<String, Vec<Shift>>,
    mode: Option<Mode>,
    latency: Duration,
}

#[derive(Clone)]
pub struct FakeOncall {
    pub base: String,
    state: Arc<Mutex<State_>>,
    calls: Arc<AtomicU64>,
}

impl FakeOncall {
    pub async fn spawn() -> FakeOncall {
        let state = Arc::new(Mutex::new(State_::default()));
        let calls = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route("/oncalls", get(pagerduty))
            .route("/v2/schedules/{id}/on-calls", get(opsgenie))
            .route("/jsm/ops/api/{cloud}/v1/schedules/{id}/on-calls", get(jsm))
            .route("/rest/api/3/user/search", get(jira_user_search))
            .with_state((state.clone(), calls.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeOncall {
            base: format!("http://{addr}"),
            state,
            calls,
        }
    }

    /// `who` (emails; account id `acct-<local part>`) on call for `target` at level 1.
    pub fn set(&self, target: &str, who: &[&str]) {
        self.set_levels(target, &who.iter().map(|w| (*w, 1)).collect::<Vec<_>>());
    }

    pub fn set_levels(&self, target: &str, who: &[(&str, u32)]) {
        let shifts = who
            .iter()
            .map(|(e, l)| Shift {
                email: e.to_string(),
                account_id: account_of(e),
                level: *l,
            })
            .collect();
        self.state
            .lock()
            .unwrap()
            .on_call
            .insert(target.to_string(), shifts);
    }

    pub fn mode(&self, m: Mode) {
        self.state.lock().unwrap().mode = Some(m);
    }

    pub fn latency(&self, d: Duration) {
        self.state.lock().unwrap().latency = d;
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The fake's Atlassian account id for an email.
pub fn account_of(email: &str) -> String {
    format!("acct-{}", email.split('@').next().unwrap_or(email))
}

type St = State<(Arc<Mutex<State_>>, Arc<AtomicU64>)>;

/// Counts the call, waits the latency, and answers the failure mode if one is set.
async fn common(
    st: &(Arc<Mutex<State_>>, Arc<AtomicU64>),
    vendor: &str,
) -> Result<HashMap<String, Vec<Shift>>, Response> {
    st.1.fetch_add(1, Ordering::SeqCst);
    let (latency, mode, on_call) = {
        let s = st.0.lock().unwrap();
        (s.latency, s.mode, s.on_call.clone())
    };
    tokio::time::sleep(latency).await;
    match mode.unwrap_or(Mode::Up) {
        Mode::Up => Ok(on_call),
        Mode::Down => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(error_body(vendor, "Service Unavailable", 503)),
        )
            .into_response()),
        Mode::RateLimited(after) => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(match vendor {
                    "pagerduty" => json!({"error": {"message": "Rate Limit Exceeded", "code": 2020}}),
                    "opsgenie" => json!({
                        "message": "You are making too many requests! To avoid errors, we recommend you limit requests.",
                        "took": 0.001, "requestId": "0b7a1c1e-rl"
                    }),
                    _ => json!({"errorMessages": ["Rate limit exceeded."], "errors": {}}),
                }),
            )
                .into_response();
            r.headers_mut()
                .insert("retry-after", after.to_string().parse().unwrap());
            if vendor == "pagerduty" {
                r.headers_mut()
                    .insert("ratelimit-reset", after.to_string().parse().unwrap());
            }
            if vendor == "opsgenie" {
                r.headers_mut()
                    .insert("x-ratelimit-state", "THROTTLED".parse().unwrap());
            }
            Err(r)
        }
    }
}

fn error_body(vendor: &str, message: &str, code: u32) -> Value {
    match vendor {
        "pagerduty" => json!({"error": {"message": message, "code": code}}),
        "opsgenie" => json!({"message": message, "took": 0.002, "requestId": "0b7a1c1e-err"}),
        _ => json!({"errorMessages": [message], "errors": {}}),
    }
}

fn unauthorized(vendor: &str) -> Response {
    let body = match vendor {
        "pagerduty" => json!({"error": {"message": "Unauthorized", "code": 2006}}),
        "opsgenie" => json!({
            "message": "Could not authenticate", "took": 0.0, "requestId": "0b7a1c1e-401"
        }),
        _ => json!({"code": 401, "message": "Unauthorized; scope does not match"}),
    };
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// `a[]=1&a[]=2&b=3` into pairs (axum's `Query` does not take repeated `[]` keys).
fn pairs(q: &Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn pagerduty(State(st): St, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Token token={PD_TOKEN}"))
    {
        return unauthorized("pagerduty");
    }
    if headers.get("accept").and_then(|v| v.to_str().ok())
        != Some("application/vnd.pagerduty+json;version=2")
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(error_body("pagerduty", "Invalid Accept header", 2001)),
        )
            .into_response();
    }
    let on_call = match common(&st, "pagerduty").await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let p = pairs(&q);
    let wanted = |k: &str| -> Vec<String> {
        p.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let include_users = wanted("include[]").iter().any(|v| v == "users");
    let mut oncalls = Vec::new();
    for (filter, is_schedule) in [("schedule_ids[]", true), ("escalation_policy_ids[]", false)] {
        for id in wanted(filter) {
            for s in on_call.get(&id).cloned().unwrap_or_default() {
                let user = if include_users {
                    json!({"id": account_of(&s.email), "type": "user", "name": s.email,
                           "summary": s.email, "email": s.email, "time_zone": "Etc/UTC",
                           "self": format!("https://api.pagerduty.com/users/{}", account_of(&s.email))})
                } else {
                    json!({"id": account_of(&s.email), "type": "user_reference", "summary": s.email,
                           "self": format!("https://api.pagerduty.com/users/{}", account_of(&s.email))})
                };
                let schedule = if is_schedule {
                    json!({"id": id, "type": "schedule_reference", "summary": "Primary"})
                } else {
                    Value::Null
                };
                oncalls.push(json!({
                    "escalation_policy": {"id": if is_schedule { "PEP0001".to_string() } else { id.clone() },
                                          "type": "escalation_policy_reference", "summary": "Ops"},
                    "escalation_level": s.level,
                    "schedule": schedule,
                    "user": user,
                    "start": "2026-12-07T00:00:00Z",
                    "end": "2026-12-14T00:00:00Z",
                }));
            }
        }
    }
    let limit: usize = p
        .iter()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(25);
    let offset: usize = p
        .iter()
        .find(|(k, _)| k == "offset")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let more = oncalls.len() > offset + limit;
    let page: Vec<Value> = oncalls.into_iter().skip(offset).take(limit).collect();
    Json(json!({"oncalls": page, "limit": limit, "offset": offset, "more": more, "total": null}))
        .into_response()
}

async fn opsgenie(
    State(st): St,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("GenieKey {OG_KEY}"))
    {
        return unauthorized("opsgenie");
    }
    let on_call = match common(&st, "opsgenie").await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some(shifts) = on_call.get(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(
                json!({"message": format!("Schedule with identifier [{id}] could not be found"),
                        "took": 0.003, "requestId": "0b7a1c1e-404"}),
            ),
        )
            .into_response();
    };
    let flat = pairs(&q).iter().any(|(k, v)| k == "flat" && v == "true");
    let parent = json!({"id": id, "name": "Ops_schedule", "enabled": true});
    let data = if flat {
        json!({"_parent": parent, "onCallRecipients": shifts.iter().map(|s| s.email.clone()).collect::<Vec<_>>()})
    } else {
        json!({"_parent": parent, "onCallParticipants": shifts.iter().map(|s| json!({
            "id": account_of(&s.email), "name": s.email, "type": "user"})).collect::<Vec<_>>()})
    };
    Json(json!({"data": data, "took": 0.012, "requestId": "0b7a1c1e-ok"})).into_response()
}

fn jsm_auth_ok(headers: &HeaderMap) -> bool {
    use base64::Engine;
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{JSM_USER}:{JSM_TOKEN}"))
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

async fn jsm(
    State(st): St,
    Path((cloud, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if !jsm_auth_ok(&headers) {
        return unauthorized("jsm");
    }
    let on_call = match common(&st, "jsm").await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let missing = || {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"errorMessages": ["Schedule not found"], "errors": {}})),
        )
            .into_response()
    };
    if cloud != JSM_CLOUD {
        return missing();
    }
    let Some(shifts) = on_call.get(&id) else {
        return missing();
    };
    let flat = pairs(&q).iter().any(|(k, v)| k == "flat" && v == "true");
    if flat {
        Json(
            json!({"onCallUsers": shifts.iter().map(|s| s.account_id.clone()).collect::<Vec<_>>()}),
        )
        .into_response()
    } else {
        Json(json!({"onCallParticipants": shifts.iter().map(|s| json!({
            "id": s.account_id, "type": "user"})).collect::<Vec<_>>()}))
        .into_response()
    }
}

async fn jira_user_search(State(st): St, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    if !jsm_auth_ok(&headers) {
        return unauthorized("jsm");
    }
    if let Err(r) = common(&st, "jsm").await {
        return r;
    }
    let query = pairs(&q)
        .into_iter()
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    // Jira's search matches the start of names and emails too: a second, longer address comes
    // back first, and the broker must keep only the exact email.
    let users: Vec<Value> = match query.split_once('@') {
        Some((local, domain)) => [format!("{local}.lead@{domain}"), query.clone()]
            .iter()
            .map(|e| {
                json!({"accountId": account_of(e), "accountType": "atlassian", "emailAddress": e,
                       "displayName": e, "active": true})
            })
            .collect(),
        None => Vec::new(),
    };
    Json(Value::Array(users)).into_response()
}
