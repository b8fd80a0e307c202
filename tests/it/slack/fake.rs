//! An in-process fake of the Slack Web API (and of `response_url`s): an axum server on a
//! loopback port 0 that records every call and fails on demand (429 + `Retry-After`, 5xx,
//! `ok:false`). Users are registered with their email so `users.info` and
//! `users.lookupByEmail` answer like Slack, with the fields of Slack's user object the broker
//! checks (`team_id`, `is_stranger`, `is_restricted`, `is_ultra_restricted`,
//! `is_email_confirmed`, `deleted`, `enterprise_user`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub auth: Option<String>,
    pub at: Instant,
    /// Whether the fake answered it successfully (not an injected failure or outage).
    pub ok: bool,
}

#[derive(Debug, Clone)]
pub enum Failure {
    RateLimited(u64),
    Status(u16),
    Api(&'static str),
    /// The call is carried out (a post is stored), then answered with this status, as when
    /// Slack's answer is lost on the way back.
    Lost(u16),
}

/// The workspace every user of the fake belongs to unless told otherwise.
pub const TEAM: &str = "T111";

/// A Slack user as the fake serves it.
#[derive(Debug, Clone)]
pub struct FakeUser {
    pub email: String,
    pub team_id: String,
    pub deleted: bool,
    /// `None`: the field is absent from the answer.
    pub email_confirmed: Option<bool>,
    /// A Slack Connect user of another organisation (`is_stranger: true`).
    pub stranger: bool,
    /// Multi-channel guest.
    pub restricted: bool,
    /// Single-channel guest.
    pub ultra_restricted: bool,
}

impl FakeUser {
    /// Slack's user object (the shape of `users.info` in Slack's method reference).
    fn json(&self, id: &str) -> Value {
        let name = self.email.split('@').next().unwrap_or("");
        let mut u = json!({
            "id": id, "team_id": self.team_id, "name": name, "deleted": self.deleted,
            "real_name": name, "tz": "Europe/Amsterdam",
            "profile": {"email": self.email, "real_name": name, "display_name": name,
                        "team": self.team_id},
            "is_admin": false, "is_owner": false, "is_primary_owner": false,
            "is_restricted": self.restricted, "is_ultra_restricted": self.ultra_restricted,
            "is_bot": false, "is_app_user": false, "updated": 1_700_000_000,
        });
        if let Some(c) = self.email_confirmed {
            u["is_email_confirmed"] = json!(c);
        }
        if self.stranger {
            u["is_stranger"] = json!(true);
        }
        u
    }
}

#[derive(Default)]
struct State_ {
    calls: Vec<Call>,
    /// Failures for the next calls of a method ("*" for any).
    failures: HashMap<String, VecDeque<Failure>>,
    /// While set, every Web API call answers 503.
    outage: bool,
    /// Slack user id → the user.
    users: HashMap<String, FakeUser>,
    ts: u64,
    /// Messages posted, in order: (conversation id, ts, body as posted).
    messages: Vec<(String, String, Value)>,
}

#[derive(Clone)]
pub struct FakeSlack {
    state: Arc<Mutex<State_>>,
    pub base: String,
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let state = Arc::new(Mutex::new(State_::default()));
        let app = Router::new()
            .route("/api/{method}", post(api))
            .route("/hooks/{id}", post(hook))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSlack {
            state,
            base: format!("http://{addr}"),
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.base)
    }

    /// A `response_url` this fake records calls to.
    pub fn response_url(&self, id: &str) -> String {
        format!("{}/hooks/{id}", self.base)
    }

    /// A confirmed member of [`TEAM`].
    pub fn add_user(&self, slack_id: &str, email: &str) {
        self.add_user_with(slack_id, email, |_| {});
    }

    /// A user of [`TEAM`] with `tweak` applied (another team, a guest, an unconfirmed email…).
    pub fn add_user_with(&self, slack_id: &str, email: &str, tweak: impl FnOnce(&mut FakeUser)) {
        let mut u = FakeUser {
            email: email.into(),
            team_id: TEAM.into(),
            deleted: false,
            email_confirmed: Some(true),
            stranger: false,
            restricted: false,
            ultra_restricted: false,
        };
        tweak(&mut u);
        self.state.lock().unwrap().users.insert(slack_id.into(), u);
    }

    pub fn deactivate_user(&self, slack_id: &str) {
        if let Some(u) = self.state.lock().unwrap().users.get_mut(slack_id) {
            u.deleted = true;
        }
    }

    pub fn fail(&self, method: &str, f: Failure) {
        self.state
            .lock()
            .unwrap()
            .failures
            .entry(method.into())
            .or_default()
            .push_back(f);
    }

    pub fn set_outage(&self, on: bool) {
        self.state.lock().unwrap().outage = on;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Calls of `method` that the fake answered successfully.
    pub fn ok_calls_of(&self, method: &str) -> Vec<Call> {
        self.calls_of(method).into_iter().filter(|c| c.ok).collect()
    }

    /// Messages stored by `chat.postMessage` (including those whose answer was lost), whose
    /// JSON contains `needle`.
    pub fn messages_containing(&self, needle: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .messages
            .iter()
            .filter(|(_, _, b)| b.to_string().contains(needle))
            .map(|(_, _, b)| b.clone())
            .collect()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Value {
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form {
        let m: serde_json::Map<String, Value> = url::form_urlencoded::parse(body)
            .into_owned()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        Value::Object(m)
    } else {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    }
}

async fn hook(
    State(state): State<Arc<Mutex<State_>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    s.calls.push(Call {
        method: format!("hook:{id}"),
        body: parse_body(&headers, &body),
        auth: None,
        at: Instant::now(),
        ok: true,
    });
    StatusCode::OK.into_response()
}

async fn api(
    State(state): State<Arc<Mutex<State_>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse_body(&headers, &body);
    let mut s = state.lock().unwrap();
    let failure = if s.outage {
        Some(Failure::Status(503))
    } else {
        s.failures
            .get_mut(&method)
            .and_then(|q| q.pop_front())
            .or_else(|| s.failures.get_mut("*").and_then(|q| q.pop_front()))
    };
    s.calls.push(Call {
        method: method.clone(),
        body: body.clone(),
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        at: Instant::now(),
        ok: failure.is_none() || matches!(failure, Some(Failure::Lost(_))),
    });
    match &failure {
        Some(Failure::RateLimited(secs)) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                Json(json!({"ok": false, "error": "ratelimited"})),
            )
                .into_response()
        }
        Some(Failure::Status(code)) => {
            return StatusCode::from_u16(*code).unwrap().into_response();
        }
        Some(Failure::Api(code)) => {
            return Json(json!({"ok": false, "error": code})).into_response()
        }
        Some(Failure::Lost(_)) | None => {}
    }
    let answer = match method.as_str() {
        "chat.postMessage" => {
            s.ts += 1;
            let channel = body["channel"].as_str().unwrap_or("");
            // DMs to a user id land in a DM channel, as in Slack.
            let channel = if channel.starts_with('U') || channel.starts_with('W') {
                format!("D{}", &channel[1..])
            } else {
                channel.to_string()
            };
            // Slack's clock: now, so history reads with `oldest` find it.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let ts = format!("{now}.{:06}", s.ts);
            s.messages.push((channel.clone(), ts.clone(), body.clone()));
            json!({"ok": true, "channel": channel, "ts": ts, "message": {"text": body["text"]}})
        }
        "conversations.open" => {
            let user = body["users"].as_str().unwrap_or("");
            json!({"ok": true, "channel": {"id": format!("D{}", &user[1.min(user.len())..])}})
        }
        "conversations.history" => {
            let channel = body["channel"].as_str().unwrap_or("");
            let oldest: f64 = body["oldest"]
                .as_str()
                .and_then(|o| o.parse().ok())
                .unwrap_or(0.0);
            let meta = body["include_all_metadata"] == "true";
            let mut msgs: Vec<Value> = s
                .messages
                .iter()
                .filter(|(c, ts, _)| c == channel && ts.parse::<f64>().unwrap_or(0.0) >= oldest)
                .map(|(_, ts, b)| {
                    let mut m = json!({"type": "message", "ts": ts, "text": b["text"]});
                    if meta && !b["metadata"].is_null() {
                        m["metadata"] = b["metadata"].clone();
                    }
                    m
                })
                .collect();
            msgs.reverse();
            json!({"ok": true, "messages": msgs, "has_more": false})
        }
        "chat.update" => json!({"ok": true, "channel": body["channel"], "ts": body["ts"]}),
        "chat.postEphemeral" => json!({"ok": true, "message_ts": "1.1"}),
        "views.open" => json!({"ok": true, "view": {"id": "V0001"}}),
        "users.info" => {
            let id = body["user"].as_str().unwrap_or("");
            match s.users.get(id) {
                Some(u) => json!({"ok": true, "user": u.json(id)}),
                None => json!({"ok": false, "error": "user_not_found"}),
            }
        }
        "users.lookupByEmail" => {
            let email = body["email"].as_str().unwrap_or("");
            match s
                .users
                .iter()
                .find(|(_, u)| u.email.eq_ignore_ascii_case(email))
            {
                Some((id, u)) => json!({"ok": true, "user": u.json(id)}),
                None => json!({"ok": false, "error": "users_not_found"}),
            }
        }
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    if let Some(Failure::Lost(code)) = failure {
        return StatusCode::from_u16(code).unwrap().into_response();
    }
    Json(answer).into_response()
}
