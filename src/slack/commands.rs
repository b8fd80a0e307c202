//! `/jit …`: request, list, extend, resources, help.
//!
//! Why it exists: a slash command must be answered within 3 s, but mapping the user and asking
//! Okta can take longer. So each command is parsed and acknowledged at once, and its work runs
//! as a tracked task that answers through the command's `response_url` (or opens a modal).
//!
//! What it must never do: act for a user it could not map to Okta, or add a check of its own to
//! what the requests domain decides.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::blocks::{self, esc, fmt_ms};
use super::{InboundError, Slack};
use crate::grants::Holder;
use crate::requests::{Actor, Channel, Created, NewRequest, RequestState};

const MAX_TEXT: usize = 4000;

pub const HELP: &str = "*/jit* asks for just-in-time access.\n\
• `/jit request` opens a form; `/jit request <resource> <duration> <reason…>` asks directly\n\
• `/jit breakglass <resource> <duration> <reason…>` for an emergency (resources that allow it)\n\
• `/jit list`: your grants with the time left, and your pending requests\n\
• `/jit extend <grant id> [duration] [reason…]`: more time on a grant you hold\n\
• `/jit resources`: what you may request\n\
• `/jit help`: this text";

#[derive(Debug, Clone)]
pub struct Command {
    pub user_id: String,
    /// The workspace the command was run in (checked by `workspace` before this is built).
    pub team_id: Option<String>,
    pub text: String,
    pub response_url: String,
    pub trigger_id: String,
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Slack user ids: `U…` or `W…`, upper-case letters and digits.
pub fn is_user_id(s: &str) -> bool {
    (2..=32).contains(&s.len())
        && matches!(s.as_bytes()[0], b'U' | b'W')
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

impl Command {
    pub fn parse(form: &[(String, String)]) -> Result<Command, InboundError> {
        let user_id = field(form, "user_id")
            .filter(|u| is_user_id(u))
            .ok_or_else(|| InboundError::Malformed("`user_id` is missing or invalid".into()))?;
        let text = field(form, "text").unwrap_or("");
        if text.len() > MAX_TEXT {
            return Err(InboundError::Malformed(format!(
                "`text` is longer than {MAX_TEXT} bytes"
            )));
        }
        let response_url = field(form, "response_url")
            .filter(|u| url::Url::parse(u).is_ok())
            .ok_or_else(|| {
                InboundError::Malformed("`response_url` is missing or invalid".into())
            })?;
        Ok(Command {
            user_id: user_id.to_string(),
            team_id: field(form, "team_id")
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            text: text.trim().to_string(),
            response_url: response_url.to_string(),
            trigger_id: field(form, "trigger_id").unwrap_or("").to_string(),
        })
    }
}

fn ephemeral(text: &str) -> Response {
    Json(json!({"response_type": "ephemeral", "text": text})).into_response()
}

impl Slack {
    /// Acknowledges a verified command at once; the work runs after it.
    pub(super) async fn on_command(&self, cmd: Command) -> Response {
        let mut words = cmd.text.split_whitespace();
        let verb = words.next().unwrap_or("help").to_ascii_lowercase();
        let args: Vec<String> = words.map(str::to_string).collect();
        match verb.as_str() {
            "help" => ephemeral(HELP),
            "request" | "breakglass" | "break-glass" | "list" | "extend" | "resources" => {
                let form = verb == "request" && args.is_empty();
                let me = self.clone();
                self.later("slack.command", async move {
                    me.run_command(&verb, args, cmd).await;
                });
                if form {
                    // The modal opens on its own; an empty acknowledgement shows nothing.
                    ephemeral("Opening the request form…")
                } else {
                    ephemeral("Working on it…")
                }
            }
            other => ephemeral(&format!(
                "Unknown command `{}`.\n{HELP}",
                esc(&other.chars().take(40).collect::<String>())
            )),
        }
    }

    async fn run_command(&self, verb: &str, args: Vec<String>, cmd: Command) {
        let login = match self
            .identity()
            .okta_login(&cmd.user_id, cmd.team_id.as_deref())
            .await
        {
            Ok(l) => l,
            Err(e) => {
                self.answer(&cmd.response_url, &format!("{e}. Nothing was done."))
                    .await;
                return;
            }
        };
        let actor = Actor::new(login.clone(), Channel::Slack);
        let text = match verb {
            "request" if args.is_empty() => {
                self.open_request_form(&login, &cmd).await;
                return;
            }
            "request" | "breakglass" | "break-glass" => {
                self.request_now(&actor, &args, verb != "request").await
            }
            "list" => self.list(&login).await,
            "extend" => self.extend_now(&actor, &args).await,
            "resources" => self.resources_text(&login).await,
            _ => HELP.to_string(),
        };
        self.answer(&cmd.response_url, &text).await;
    }

    async fn request_now(&self, actor: &Actor, args: &[String], break_glass: bool) -> String {
        if args.len() < 2 {
            return "Usage: `/jit request <resource> <duration> <reason…>` (or `/jit request` for the form).".into();
        }
        let reason = args[2..].join(" ");
        let req = NewRequest {
            resource: args[0].clone(),
            duration: Some(args[1].clone()),
            reason: (!reason.is_empty()).then_some(reason),
            ticket: None,
            on_behalf_of: None,
            break_glass,
        };
        match self.requests().create(actor, req).await {
            Ok(c) => created_text(&c),
            Err(e) => blocks::explain(&e),
        }
    }

    async fn extend_now(&self, actor: &Actor, args: &[String]) -> String {
        let Some(grant_id) = args.first() else {
            return "Usage: `/jit extend <grant id> [duration] [reason…]` (see `/jit list`)."
                .into();
        };
        let duration = match args.get(1) {
            Some(d) => d.clone(),
            None => match self.default_extension(grant_id).await {
                Some(d) => d,
                None => return "No such grant of yours; see `/jit list`.".into(),
            },
        };
        let reason = args.get(2..).map(|r| r.join(" ")).unwrap_or_default();
        match self
            .requests()
            .extend(grant_id, actor, &duration, Some(&reason))
            .await
        {
            Ok(c) => created_text(&c),
            Err(e) => blocks::explain(&e),
        }
    }

    /// The resource's default duration, as the amount an Extend asks for.
    pub(super) async fn default_extension(&self, grant_id: &str) -> Option<String> {
        let g = self.requests().grants().get(grant_id).await.ok()?;
        let policy = self.requests().policy().current();
        let d = policy.get(&g.resource)?.default_duration;
        Some(format!("{}s", d.as_secs().max(1)))
    }

    async fn list(&self, login: &str) -> String {
        let grants = self
            .requests()
            .grants()
            .live_of_user(Holder::Login(login), None, false)
            .await;
        let pending = self
            .requests()
            .list(&crate::requests::repo::ListFilter {
                user: Some(login.to_string()),
                state: Some(RequestState::Pending),
                limit: 50,
                ..Default::default()
            })
            .await;
        let (Ok(grants), Ok(pending)) = (grants, pending) else {
            return "Something went wrong on the broker's side; try again in a minute.".into();
        };
        let now = self.inner.clock.now_ms();
        let mut out = String::from("*Your grants*\n");
        if grants.is_empty() {
            out.push_str("none\n");
        }
        for g in &grants {
            out.push_str(&format!(
                "• {} (`{}`): {} left\n",
                g.resource,
                g.id,
                fmt_ms(g.expires_at.saturating_sub(now).max(0))
            ));
        }
        out.push_str("*Your pending requests*\n");
        if pending.is_empty() {
            out.push_str("none\n");
        }
        for r in &pending {
            out.push_str(&format!(
                "• {} for {} (`{}`)\n",
                r.resource,
                fmt_ms(r.duration_ms),
                r.id
            ));
        }
        out
    }

    async fn resources_text(&self, login: &str) -> String {
        match self.requests().requestable(login).await {
            Ok(list) if list.is_empty() => "There is nothing you may request.".into(),
            Ok(list) => {
                let mut out = String::from("*You may request*\n");
                for r in list {
                    out.push_str(&format!(
                        "• `{}` up to {}{}\n",
                        r.name,
                        humantime::format_duration(r.max_duration),
                        if r.description.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", r.description)
                        }
                    ));
                }
                out
            }
            Err(e) => blocks::explain(&e),
        }
    }

    async fn open_request_form(&self, login: &str, cmd: &Command) {
        let list = match self.requests().requestable(login).await {
            Ok(l) if l.is_empty() => {
                self.answer(&cmd.response_url, "There is nothing you may request.")
                    .await;
                return;
            }
            Ok(l) => l,
            Err(e) => {
                self.answer(&cmd.response_url, &blocks::explain(&e)).await;
                return;
            }
        };
        let refs: Vec<&crate::policy::Resource> = list.iter().collect();
        let body = json!({"trigger_id": cmd.trigger_id, "view": blocks::request_modal(&refs)});
        if let Err(e) = self.client().call_retrying("views.open", &body).await {
            tracing::warn!(error = %e, "views.open failed");
            self.answer(
                &cmd.response_url,
                "The request form could not be opened (Slack allows 3 seconds). Try again, or use `/jit request <resource> <duration> <reason…>`.",
            )
            .await;
        }
    }
}

/// What a person is told after a request or an extension passed its checks.
pub(super) fn created_text(c: &Created) -> String {
    let r = &c.request;
    match (&c.grant, r.state) {
        // A pending extension carries the grant it would extend: it is not granted yet.
        (_, RequestState::Pending) => format!(
            "Your request for {} ({}) is waiting for approval (request `{}`).",
            r.resource,
            fmt_ms(r.duration_ms),
            r.id
        ),
        (Some(g), _) => format!(
            "Granted: {} until {} (grant `{}`).",
            g.resource,
            crate::clock::ms_to_datetime(g.expires_at).format("%Y-%m-%d %H:%M UTC"),
            g.id
        ),
        (None, RequestState::Approved) => format!(
            "Your request for {} is approved; the grant is being made (request `{}`).",
            r.resource, r.id
        ),
        (None, s) => format!("Your request for {} is {}.", r.resource, s.as_str()),
    }
}
