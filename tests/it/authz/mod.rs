//! The authorization table through every channel: each (verb, kind of actor) cell of
//! `jit_broker::authz::table` is tried through every channel that offers the verb (the API,
//! the console, Slack, the command line, signed callbacks), and must get the table's answer;
//! a refusal must change nothing (requests, decisions, grants, audit log length, and the
//! object's state and Okta access).
//!
//! One org for all of it: alice asks and holds, bob approves prod-admins and aws-prod (the
//! break-glass resource), dave approves payroll only (the "dave case"), erin is a requester with
//! no relation to anything, olivia is a console admin, carol a console auditor.

mod grants;
mod operators;
mod requests;
mod reviews;

use std::collections::HashMap;
use std::time::Duration;

use jit_broker::api::auth::{hash_token, Role, TokenConfig};
use jit_broker::authz::table::{expected, Kind};
use jit_broker::authz::Verb;
use jit_broker::RunOptions;
use okta_sim::seed::{SeedGroup, SeedUser};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::console::Browser;
use crate::helpers::*;
use crate::slack::fake::FakeSlack;

pub const ALICE: &str = "00u1alice00000000001";
pub const PROD_ADMINS: &str = "00g1prodadmins000001";
pub const AWS_PROD: &str = "0oa1awsprod000000002";
const OPS: &str = "00g1ops0000000000007";
const ON_CALL: &str = "00g1oncall0000000003";
pub const CALLBACK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const WAIT: Duration = Duration::from_secs(20);

const POLICY: &str = r#"
[[resource]]
name = "prod-admins"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com"] }
approvals_required = 1

[[resource]]
name = "payroll"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["dave@example.com"] }
approvals_required = 1

[[resource]]
name = "aws-prod"
kind = "okta_app"
okta_id = "0oa1awsprod000000002"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com"] }
approvals_required = 1
break_glass = true
break_glass_max_duration = "1h"

[[resource]]
name = "engineering"
kind = "okta_group"
okta_id = "00g1engineering00004"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
"#;

/// Who each kind is, by channel: an API token's login, a console or Slack person's login.
pub fn login_of(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::ApproverOfThis | Kind::Reviewer | Kind::Callback => "bob@example.com",
        Kind::ApproverOfOther => "dave@example.com",
        Kind::Requester | Kind::SlackUser | Kind::ConsoleUser => "erin@example.com",
        Kind::Holder => "alice@example.com",
        Kind::Portal | Kind::PortalSubmitter => "portal",
        Kind::Admin | Kind::Auditor => return None,
    })
}

/// The API token of a kind.
pub fn token(kind: Kind) -> String {
    match kind {
        Kind::Admin => ADMIN_TOKEN.into(),
        Kind::Auditor => AUDITOR_TOKEN.into(),
        k => format!("tok-{}", login_of(k).unwrap_or("nobody")),
    }
}

/// The console's person for a kind (none for tokens-only kinds).
pub fn console_login(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Admin => Some("olivia@example.com"),
        Kind::Auditor => Some("carol@example.com"),
        Kind::Portal | Kind::PortalSubmitter | Kind::Callback | Kind::SlackUser => None,
        k => login_of(k),
    }
}

/// The Slack user id of a kind's person.
pub fn slack_id(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::ApproverOfThis | Kind::Reviewer => Some("U0BOB"),
        Kind::ApproverOfOther => Some("U0DAVE"),
        Kind::Requester | Kind::SlackUser => Some("U0ERIN"),
        Kind::Holder => Some("U0ALICE"),
        _ => None,
    }
}

pub struct Env {
    pub app: TestApp,
    pub sim: okta_sim::SimHandle,
    pub fake: FakeSlack,
    browsers: tokio::sync::Mutex<HashMap<&'static str, (std::sync::Arc<Browser>, String)>>,
    _dir: tempfile::TempDir,
}

fn seed_user(id: &str, login: &str) -> SeedUser {
    SeedUser {
        id: id.into(),
        login: login.into(),
        first_name: login.split('@').next().unwrap_or("x").into(),
        last_name: "Test".into(),
        email: None,
        status: "ACTIVE".into(),
    }
}

pub async fn env(db: Db) -> Env {
    let mut sc = okta_sim::SimConfig::default();
    sc.seed
        .users
        .push(seed_user("00u1erin000000000006", "erin@example.com"));
    sc.seed
        .users
        .push(seed_user("00u1olivia0000000007", "olivia@example.com"));
    sc.seed.groups.push(SeedGroup {
        id: OPS.into(),
        name: "ops".into(),
        description: None,
        kind: "OKTA_GROUP".into(),
        members: vec!["00u1olivia0000000007".into()],
    });
    let sim = okta_sim::spawn(sc).await.unwrap();
    let fake = FakeSlack::start().await;
    for (id, email) in [
        ("U0ALICE", "alice@example.com"),
        ("U0BOB", "bob@example.com"),
        ("U0DAVE", "dave@example.com"),
        ("U0ERIN", "erin@example.com"),
    ] {
        fake.add_user(id, email);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();
    let tdb = TestDb::new(db).await;
    let mut c = base_config(&tdb);
    crate::helpers::okta_config(&mut c, &sim.base_url());
    c.policy.file = Some(path);
    c.notify.poll_interval = Duration::from_millis(20);
    for (login, roles) in [
        ("alice@example.com", vec![Role::Requester]),
        ("bob@example.com", vec![Role::Approver, Role::Requester]),
        ("dave@example.com", vec![Role::Approver, Role::Requester]),
        ("erin@example.com", vec![Role::Requester]),
        ("portal", vec![Role::Portal]),
    ] {
        c.auth.tokens.push(TokenConfig {
            name: login.into(),
            roles,
            sha256: hash_token(&format!("tok-{login}")),
        });
    }
    c.callbacks.integrations = vec![jit_broker::callbacks::IntegrationConfig {
        name: "servicenow".into(),
        secret: Some(secrecy::SecretString::from(CALLBACK_SECRET)),
        secret_file: None,
        trusted_for_step_up: false,
        allowed_resources: None,
        allowed_approvers: None,
    }];
    c.console.issuer = c.okta.base_url.clone();
    c.console.client_id = okta_sim::oidc::DEFAULT_CLIENT_ID.into();
    c.console.client_secret = Some(secrecy::SecretString::from(
        okta_sim::oidc::DEFAULT_CLIENT_SECRET,
    ));
    c.console.admin_groups = vec![OPS.into()];
    c.console.auditor_groups = vec![ON_CALL.into()];
    c.slack.bot_token = Some(secrecy::SecretString::from("xoxb-test-token"));
    c.slack.signing_secrets = vec![secrecy::SecretString::from(crate::slack::SECRET)];
    c.slack.api_base_url = fake.api_url();
    c.slack.default_channel = "C0DEFAULT".into();
    let app = spawn_app_with(tdb, c, RunOptions::default()).await;
    Env {
        app,
        sim,
        fake,
        browsers: Default::default(),
        _dir: dir,
    }
}

/// What a refusal must leave as it was.
#[derive(Debug, PartialEq, Eq)]
pub struct Footprint {
    counts: (i64, i64, i64, i64),
    object: Value,
    okta: bool,
}

/// The table's answer must be what the channel did.
pub fn assert_cell(verb: Verb, kind: Kind, channel: &str, allowed: bool, detail: &str) {
    assert_eq!(
        allowed,
        expected(verb, kind),
        "{verb:?} × {kind:?} through {channel}: {}, the table says {} ({detail})",
        if allowed { "allowed" } else { "refused" },
        if expected(verb, kind) { "yes" } else { "no" },
    );
}

impl Env {
    pub async fn api(
        &self,
        method: reqwest::Method,
        kind: Kind,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .app
            .http
            .request(method, self.app.url(path))
            .bearer_auth(token(kind));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn api_post(&self, kind: Kind, path: &str, body: Value) -> (StatusCode, Value) {
        self.api(reqwest::Method::POST, kind, path, Some(body))
            .await
    }

    pub async fn api_get(&self, kind: Kind, path: &str) -> (StatusCode, Value) {
        self.api(reqwest::Method::GET, kind, path, None).await
    }

    /// A signed-in console browser for `login` and its CSRF token (signed in once per test).
    pub async fn browser(&self, login: &'static str) -> (std::sync::Arc<Browser>, String) {
        let mut all = self.browsers.lock().await;
        if let Some(b) = all.get(login) {
            return b.clone();
        }
        let b = Browser::new(&self.app.base);
        let page = b.sign_in(login).await;
        assert_eq!(page.status, StatusCode::OK, "{login}: {}", page.body);
        let entry = (std::sync::Arc::new(b), page.csrf());
        all.insert(login, entry.clone());
        entry
    }

    /// A console form post as `kind`'s person: `Some(true)` followed (303), `Some(false)`
    /// refused (403/404), `None` when the console has no such person.
    pub async fn console_post(
        &self,
        kind: Kind,
        path: &str,
        form: &[(&str, &str)],
    ) -> Option<(bool, String)> {
        let login = console_login(kind)?;
        let (b, csrf) = self.browser(login).await;
        let mut f: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        f.extend_from_slice(form);
        let p = b.post(path, &f).await;
        Some((
            p.status == StatusCode::SEE_OTHER,
            format!("{} {}", p.status, p.body),
        ))
    }

    pub async fn console_get(&self, kind: Kind, path: &str) -> Option<(StatusCode, String)> {
        let login = console_login(kind)?;
        let (b, _) = self.browser(login).await;
        let p = b.get(path).await;
        Some((p.status, p.body))
    }

    /// A slash command as `slack_user`; the text of its answer.
    pub async fn slack_command(&self, slack_user: &str, text: &str) -> String {
        let hook = uuid::Uuid::new_v4().simple().to_string();
        let body = crate::slack::command_body(slack_user, text, &self.fake.response_url(&hook));
        let r = self.slack_signed("/hooks/slack/commands", &body).await;
        assert_eq!(r.status(), StatusCode::OK);
        self.slack_answer(&hook).await
    }

    /// A button click; `Some(text)` when Slack was answered (a refusal), `None` after `done`
    /// holds first (the click was carried out).
    pub async fn slack_click<F, Fut>(
        &self,
        slack_user: &str,
        action: &str,
        value: &str,
        done: F,
    ) -> Option<String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let hook = uuid::Uuid::new_v4().simple().to_string();
        let p =
            crate::slack::click_payload(slack_user, action, value, &self.fake.response_url(&hook));
        let body = crate::slack::form(&[("payload", &p.to_string())]);
        let r = self.slack_signed("/hooks/slack/interactions", &body).await;
        assert_eq!(r.status(), StatusCode::OK);
        let m = format!("hook:{hook}");
        wait_until(WAIT, || async {
            !self.fake.calls_of(&m).is_empty() || done().await
        })
        .await;
        self.fake
            .calls_of(&m)
            .first()
            .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
    }

    /// The deny form of request `id`, submitted by `slack_user` with a reason: the field error
    /// when refused.
    pub async fn slack_deny(&self, slack_user: &str, id: &str) -> Option<String> {
        let sub = json!({
            "type": "view_submission",
            "user": {"id": slack_user, "name": "x", "team_id": "T111"},
            "team": null, "api_app_id": "A111", "trigger_id": "1.2.3",
            "view": {"id": "V0001", "callback_id": "jit_deny", "private_metadata": id,
                     "state": {"values": {"reason": {"value": {"type": "plain_text_input", "value": "no"}}}}},
        });
        let body = crate::slack::form(&[("payload", &sub.to_string())]);
        let r = self.slack_signed("/hooks/slack/interactions", &body).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap_or(Value::Null);
        v["errors"]["reason"].as_str().map(str::to_string)
    }

    async fn slack_signed(&self, path: &str, body: &str) -> reqwest::Response {
        let ts = crate::slack::now_secs().to_string();
        let sig = jit_broker::slack::verify::sign(crate::slack::SECRET, &ts, body.as_bytes());
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

    async fn slack_answer(&self, hook: &str) -> String {
        let m = format!("hook:{hook}");
        wait_until(WAIT, || async { !self.fake.calls_of(&m).is_empty() }).await;
        self.fake.calls_of(&m)[0].body["text"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// `jit-broker <args>` against this app: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let c = &self.app.config;
        let out = broker_cmd()
            .args(args)
            .env("JIT_DATABASE__URL", &c.database.url)
            .env("JIT_REDIS__URL", &c.redis.url)
            .env("JIT_REDIS__KEY_PREFIX", &c.redis.key_prefix)
            .env("JIT_OKTA__BASE_URL", &c.okta.base_url)
            .env("JIT_OKTA__API_TOKEN", "sim-super-admin-token")
            .env(
                "JIT_POLICY__FILE",
                c.policy.file.as_ref().unwrap().to_str().unwrap(),
            )
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A signed approval callback naming `approver`: (status, body).
    pub async fn callback(&self, approver: &str, id: &str, decision: &str) -> (StatusCode, Value) {
        let body = serde_json::to_vec(&json!({
            "request_id": id, "decision": decision, "approver": approver,
        }))
        .unwrap();
        let mid = uuid::Uuid::new_v4().to_string();
        let ts = chrono::Utc::now().timestamp();
        let sig = jit_broker::webhooks::WebhookSecret::parse(CALLBACK_SECRET)
            .unwrap()
            .sign(&mid, ts, &body);
        let r = self
            .app
            .http
            .post(self.app.url("/hooks/approvals"))
            .header("webhook-id", &mid)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Rows of `table`, which may carry a `WHERE` clause.
    pub async fn count(&self, table: &str) -> i64 {
        use sqlx::Row;
        let store = self.app.store().await;
        let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(store.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        store.close().await;
        n
    }

    /// Rows of requests, decisions, grants and the audit log; `object` as the admin reads it
    /// (`/v1/requests/{id}` or `/v1/grants/{id}`); whether alice holds prod-admins in Okta.
    pub async fn footprint(&self, object: &str) -> Footprint {
        let (_, mut o) = self.api_get(Kind::Admin, object).await;
        // Reading it is not changing it; what people see of it is.
        if let Some(m) = o.as_object_mut() {
            m.remove("stages");
        }
        Footprint {
            counts: (
                self.count("requests").await,
                self.count("request_decisions").await,
                self.count("grants").await,
                // Signing in to the console to try a verb is not the verb: the sign-in's own
                // audit entries (`console.sign_in`, `console.sign_out`) are left out.
                self.count("audit_log WHERE action NOT IN ('console.sign_in', 'console.sign_out')")
                    .await,
            ),
            object: o,
            okta: self.sim.is_member(PROD_ADMINS, ALICE),
        }
    }

    /// An active grant of prod-admins for alice, made by the admin; its id.
    pub async fn alice_grant(&self) -> String {
        let g = create_active_grant(
            &self.app.http,
            &self.app.base,
            "alice@example.com",
            "prod-admins",
            "1h",
            "authz table",
        )
        .await;
        g["id"].as_str().unwrap().to_string()
    }

    /// A pending prod-admins request of alice (ending her live grants and pending requests of
    /// it first, so she may ask again); its id.
    pub async fn alice_pending(&self, submitter: Kind) -> String {
        self.clear_alice().await;
        let mut body = json!({"resource": "prod-admins", "reason": "authz table"});
        if submitter != Kind::Holder {
            body["on_behalf_of"] = json!("alice@example.com");
        }
        let (s, b) = self.api_post(submitter, "/v1/requests", body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        b["request"]["id"].as_str().unwrap().to_string()
    }

    /// Ends alice's live prod-admins grants and cancels her pending requests (as the admin).
    pub async fn clear_alice(&self) {
        let (_, g) = self
            .api_get(Kind::Admin, "/v1/grants?user=alice@example.com&limit=500")
            .await;
        for g in g["grants"].as_array().unwrap() {
            if matches!(
                g["state"].as_str(),
                Some("active" | "provisioning" | "failed")
            ) {
                let id = g["id"].as_str().unwrap();
                let (s, b) = self
                    .api_post(Kind::Admin, &format!("/v1/grants/{id}/revoke"), json!({}))
                    .await;
                assert_eq!(s, StatusCode::OK, "{b}");
            }
        }
        let (_, r) = self
            .api_get(
                Kind::Admin,
                "/v1/requests?requester=alice@example.com&state=pending&limit=500",
            )
            .await;
        for r in r["requests"].as_array().unwrap() {
            let id = r["id"].as_str().unwrap();
            let (s, b) = self
                .api_post(Kind::Admin, &format!("/v1/requests/{id}/cancel"), json!({}))
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
    }

    pub async fn request_state(&self, id: &str) -> String {
        let (_, v) = self
            .api_get(Kind::Admin, &format!("/v1/requests/{id}"))
            .await;
        v["state"].as_str().unwrap_or("").to_string()
    }

    pub async fn grant_state(&self, id: &str) -> String {
        let (_, v) = self.api_get(Kind::Admin, &format!("/v1/grants/{id}")).await;
        v["state"].as_str().unwrap_or("").to_string()
    }

    pub async fn audit_ok(&self) {
        let store = self.app.store().await;
        let report = jit_broker::audit::verify(&store).await.unwrap();
        assert!(report.ok(), "audit chain broken: {:?}", report.first_broken);
        store.close().await;
    }
}
