//! Slack end to end: the real application over HTTP, okta-sim over HTTP, a fake Slack Web API
//! (`slack/fake.rs`), real Redis and both SQL backends. Inbound requests are signed like Slack
//! signs them; the deliverer is driven directly with notifications (the outbox feeding it is
//! another module), through a second `Slack` on the same database.

mod config;
mod deliver;
pub mod fake;
mod figures;
mod flows;
mod inbound;
mod workspace;

use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::notify::Notification;
use jit_broker::requests::RequestService;
use jit_broker::slack::verify::sign;
use jit_broker::slack::Slack;
use jit_broker::tasks::Tasks;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use fake::FakeSlack;

pub const SECRET: &str = "test-signing-secret";
pub const OLD_SECRET: &str = "previous-signing-secret";
pub const ALICE_S: &str = "U0ALICE";
pub const BOB_S: &str = "U0BOB";
pub const CAROL_S: &str = "U0CAROL";
pub const APPROVALS: &str = "C0APPROVALS";
pub const WAIT: Duration = Duration::from_secs(20);

/// The shared test env (`crate::helpers::Env`) with Slack: a fake Web API, and a second Slack on
/// the same database for driving the deliverer directly. Derefs to the shared env (`e.app`,
/// `e.sim`, the API helpers).
pub struct Env {
    pub env: crate::helpers::Env,
    pub fake: FakeSlack,
    /// A second Slack channel on the same database, for driving the deliverer directly.
    pub slack: Slack,
    pub requests: RequestService,
}

impl std::ops::Deref for Env {
    type Target = crate::helpers::Env;
    fn deref(&self) -> &crate::helpers::Env {
        &self.env
    }
}

impl std::ops::DerefMut for Env {
    fn deref_mut(&mut self) -> &mut crate::helpers::Env {
        &mut self.env
    }
}

pub async fn env(db: Db) -> Env {
    env_with(db, |_| {}).await
}

pub async fn env_with(db: Db, tweak: impl FnOnce(&mut jit_broker::Config) + Send) -> Env {
    env_full(db, true, tweak).await
}

/// `app_slack = false`: the application runs without Slack (no hooks, no Slack outbox), so a
/// test drives the deliverer alone and sees every Slack call it makes.
pub async fn env_full(
    db: Db,
    app_slack: bool,
    tweak: impl FnOnce(&mut jit_broker::Config) + Send,
) -> Env {
    let fake = FakeSlack::start().await;
    fake.add_user(ALICE_S, "alice@example.com");
    fake.add_user(BOB_S, "bob@example.com");
    fake.add_user(CAROL_S, "carol@example.com");
    let api = fake.api_url();
    let (env, config) = EnvBuilder::new(db, SLACK_POLICY)
        .tweak(move |c| {
            c.slack.bot_token = Some(secrecy::SecretString::from("xoxb-test-token"));
            c.slack.signing_secrets = vec![
                secrecy::SecretString::from(SECRET),
                secrecy::SecretString::from(OLD_SECRET),
            ];
            c.slack.api_base_url = api;
            c.slack.default_channel = "C0DEFAULT".into();
            c.slack.channel_interval = Duration::from_millis(50);
        })
        .tweak(tweak)
        .start_split(|c| {
            if !app_slack {
                c.slack.bot_token = None;
                c.slack.signing_secrets.clear();
            }
        })
        .await;
    let grants = grants_service(&env.app, Clock::system(), |_| {}).await;
    let requests = RequestService::new(grants, &config.requests, None);
    let slack = Slack::new(&config.slack, requests.clone(), Tasks::new()).unwrap();
    Env {
        env,
        fake,
        slack,
        requests,
    }
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Env {
    /// POSTs `body` to `path` signed with `secret` at `ts` (Unix seconds).
    pub async fn signed(&self, path: &str, body: &str, secret: &str, ts: i64) -> reqwest::Response {
        let ts = ts.to_string();
        let sig = sign(secret, &ts, body.as_bytes());
        self.app
            .http
            .post(self.app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Slack-Request-Timestamp", &ts)
            .header("X-Slack-Signature", sig)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// A slash command from `user` with `text`, its answers going to response_url `hook`.
    pub async fn command(&self, user: &str, text: &str, hook: &str) -> reqwest::Response {
        let body = command_body(user, text, &self.fake.response_url(hook));
        self.signed("/hooks/slack/commands", &body, SECRET, now_secs())
            .await
    }

    /// A button click by `user`, from the approval message.
    pub async fn click(
        &self,
        user: &str,
        action: &str,
        value: &str,
        hook: &str,
    ) -> reqwest::Response {
        let p = click_payload(user, action, value, &self.fake.response_url(hook));
        self.interaction(&p).await
    }

    pub async fn interaction(&self, payload: &Value) -> reqwest::Response {
        let body = form(&[("payload", &payload.to_string())]);
        self.signed("/hooks/slack/interactions", &body, SECRET, now_secs())
            .await
    }

    /// Waits for a `response_url` answer on `hook` and returns its text.
    pub async fn answer(&self, hook: &str) -> String {
        let m = format!("hook:{hook}");
        wait_until(WAIT, || async { !self.fake.calls_of(&m).is_empty() }).await;
        self.fake.calls_of(&m)[0].body["text"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn request_state(&self, id: &str) -> String {
        let v = self.requests.get(id).await.unwrap();
        v.request.state.as_str().to_string()
    }

    /// Alice asks for prod-admins through the slash command; returns the request id.
    pub async fn alice_requests_prod(&self) -> String {
        let r = self
            .command(ALICE_S, "request prod-admins 1h deploy hotfix", "req")
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let text = self.answer("req").await;
        assert!(text.contains("waiting for approval"), "{text}");
        let id = text.split('`').nth(1).unwrap().to_string();
        uuid::Uuid::parse_str(&id).unwrap();
        id
    }

    /// Waits until the outbox has posted the approval message of `id`; returns its blocks.
    pub async fn posted(&self, id: &str) -> Value {
        wait_until(WAIT, || async {
            self.slack.message_of(id).await.unwrap().is_some()
        })
        .await;
        let (channel, _) = self.slack.message_of(id).await.unwrap().unwrap();
        self.fake
            .calls_of("chat.postMessage")
            .into_iter()
            .find(|c| {
                c.body["channel"] == channel.as_str() && c.body["blocks"].to_string().contains(id)
            })
            .unwrap()
            .body
    }

    /// Alice asks for `resource` through the domain (no Slack involved); the request id.
    pub async fn alice_requests(&self, resource: &str) -> String {
        let c = self
            .requests
            .create(
                &jit_broker::requests::Actor::new(
                    "alice@example.com",
                    jit_broker::requests::Channel::Slack,
                ),
                jit_broker::requests::NewRequest {
                    resource: resource.into(),
                    duration: Some("1h".into()),
                    reason: Some("deploy hotfix".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        c.request.id
    }

    pub async fn deliver(
        &self,
        kind: &str,
        request_id: Option<&str>,
        grant_id: Option<&str>,
    ) -> Result<(), jit_broker::notify::DeliveryError> {
        use jit_broker::notify::Deliverer;
        self.slack
            .deliverer()
            .deliver(&notification(kind, request_id, grant_id))
            .await
    }

    pub async fn grant_of(&self, request_id: &str) -> Option<jit_broker::grants::Grant> {
        self.requests.grant_of(request_id).await.unwrap()
    }
}

pub fn notification(kind: &str, request_id: Option<&str>, grant_id: Option<&str>) -> Notification {
    Notification {
        id: uuid::Uuid::now_v7().to_string(),
        kind: kind.into(),
        request_id: request_id.map(str::to_string),
        grant_id: grant_id.map(str::to_string),
        audit_seq: None,
        payload: json!({}),
        created_at: chrono::Utc::now().timestamp_millis(),
    }
}

pub fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// The shape of `payloads/slash-command-real-encoding.form.txt`, with our fields.
pub fn command_body(user: &str, text: &str, response_url: &str) -> String {
    form(&[
        ("token", "xxx"),
        ("team_id", "T111"),
        ("team_domain", "test-workspace"),
        ("channel_id", "C111"),
        ("channel_name", "general"),
        ("user_id", user),
        ("user_name", "someone"),
        ("command", "/jit"),
        ("text", text),
        ("api_app_id", "A111"),
        ("response_url", response_url),
        ("trigger_id", "111.222.xxx"),
    ])
}

/// `payloads/block_actions-with-message-blocks.json` with our user, action and value.
pub fn click_payload(user: &str, action: &str, value: &str, response_url: &str) -> Value {
    let mut p: Value = serde_json::from_str(include_str!(
        "../fixtures/slack/block_actions-with-message-blocks.json"
    ))
    .unwrap();
    p["user"]["id"] = json!(user);
    // Our workspace, as in the slash commands (the fixture's own team is another one).
    p["team"]["id"] = json!(fake::TEAM);
    p["user"]["team_id"] = json!(fake::TEAM);
    p["response_url"] = json!(response_url);
    p["actions"][0]["action_id"] = json!(action);
    p["actions"][0]["value"] = json!(value);
    p["actions"][0]["action_ts"] = json!(format!(
        "{}.{}",
        now_secs(),
        uuid::Uuid::new_v4().as_u128() % 1_000_000
    ));
    p
}

/// The action block of an approval message's blocks, if it has one.
pub fn buttons(blocks: &Value) -> Vec<String> {
    blocks
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .map(|e| e["action_id"].as_str().unwrap().to_string())
        .collect()
}
