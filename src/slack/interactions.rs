//! Button clicks (`block_actions`) and modal submissions (`view_submission`).
//!
//! Why it exists: Approve, Deny and Extend are decisions by a person in Slack; each is mapped to
//! that person's Okta login and handed to the requests domain, which decides whether it counts.
//! Clicks are acknowledged at once and carried out as tracked tasks; a refusal is told to the
//! clicker alone (ephemeral) and changes nothing. Modal submissions wait up to ~2.5 s for the
//! domain, so a refusal can be shown under the field it concerns, as Slack expects.
//!
//! What it must never do: approve from a click whose user it could not map, count a click twice
//! (the domain keys decisions per person; a replayed delivery is dropped before this), or show a
//! refusal to anyone but the person who clicked.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::blocks::{self, ACTION_APPROVE, ACTION_CONSOLE, ACTION_DENY, ACTION_EXTEND};
use super::commands::{created_text, is_user_id};
use super::{InboundError, Slack};
use crate::requests::{Actor, Channel, NewRequest, Verdict};

/// How long a modal submission waits for the domain before closing the modal and telling the
/// result by direct message instead (Slack drops answers after 3 s).
const SUBMIT_WAIT: Duration = Duration::from_millis(2500);

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn is_request_id(s: &str) -> bool {
    s.len() <= 64 && uuid::Uuid::parse_str(s).is_ok()
}

pub(super) struct Click {
    user: String,
    /// The workspace the click was made in (or the user's, for org-wide installs).
    team: Option<String>,
    action: String,
    value: String,
    response_url: String,
    trigger_id: String,
}

/// A verified interaction whose shape was checked, before anything is recorded or done.
pub(super) enum Interaction {
    Click(Click),
    Submission(String, Value),
    /// `view_closed`, a link button, and anything newer: acknowledged, nothing to do.
    Nothing,
}

/// Checks an interaction's shape; a malformed one is refused before it is recorded.
pub(super) fn parse(p: Value) -> Result<Interaction, InboundError> {
    let user = s(&p, "/user/id")
        .filter(|u| is_user_id(u))
        .ok_or_else(|| InboundError::Malformed("`user.id` is missing or invalid".into()))?
        .to_string();
    match s(&p, "/type") {
        Some("block_actions") => {
            let action = p
                .pointer("/actions/0")
                .ok_or_else(|| InboundError::Malformed("no action in the payload".into()))?;
            let click = Click {
                user,
                team: super::workspace::Origin::of_interaction(&p)
                    .workspace()
                    .map(str::to_string),
                action: s(action, "/action_id").unwrap_or("").to_string(),
                value: s(action, "/value").unwrap_or("").to_string(),
                response_url: s(&p, "/response_url").unwrap_or("").to_string(),
                trigger_id: s(&p, "/trigger_id").unwrap_or("").to_string(),
            };
            match click.action.as_str() {
                ACTION_APPROVE | ACTION_DENY if !is_request_id(&click.value) => Err(
                    InboundError::Malformed("the button names no request".into()),
                ),
                ACTION_APPROVE | ACTION_DENY => Ok(Interaction::Click(click)),
                ACTION_EXTEND if click.value.is_empty() || click.value.len() > 64 => {
                    Err(InboundError::Malformed("the button names no grant".into()))
                }
                ACTION_EXTEND => Ok(Interaction::Click(click)),
                // A link button still reports its click; the browser does the rest.
                ACTION_CONSOLE => Ok(Interaction::Nothing),
                _ => Err(InboundError::Malformed("unknown action".into())),
            }
        }
        Some("view_submission") => Ok(Interaction::Submission(user, p)),
        Some(_) => Ok(Interaction::Nothing),
        None => Err(InboundError::Malformed("the payload has no `type`".into())),
    }
}

impl Slack {
    pub(super) async fn on_interaction(&self, i: Interaction) -> Response {
        match i {
            Interaction::Click(c) => {
                let me = self.clone();
                self.later("slack.click", async move { me.run_click(c).await });
                StatusCode::OK.into_response()
            }
            Interaction::Submission(user, p) => self.on_submission(user, &p).await,
            Interaction::Nothing => StatusCode::OK.into_response(),
        }
    }

    async fn run_click(&self, c: Click) {
        let login = match self.identity().okta_login(&c.user, c.team.as_deref()).await {
            Ok(l) => l,
            Err(e) => {
                self.answer(&c.response_url, &format!("{e}. Nothing was done."))
                    .await;
                return;
            }
        };
        let actor = Actor::new(login.clone(), Channel::Slack);
        match c.action.as_str() {
            ACTION_APPROVE => {
                match self
                    .requests()
                    .decide(&c.value, &actor, Verdict::Approve, None)
                    .await
                {
                    Ok(_) => self.refresh_quietly(&c.value).await,
                    Err(e) => self.answer(&c.response_url, &blocks::explain(&e)).await,
                }
            }
            ACTION_DENY => self.open_deny(&c, &actor).await,
            ACTION_EXTEND => {
                let Some(d) = self.default_extension(&c.value).await else {
                    self.answer(&c.response_url, "That grant no longer exists.")
                        .await;
                    return;
                };
                let text = match self.requests().extend(&c.value, &actor, &d, None).await {
                    Ok(created) => created_text(&created),
                    Err(e) => blocks::explain(&e),
                };
                self.answer(&c.response_url, &text).await;
            }
            _ => {}
        }
    }

    /// Deny asks for a reason first; someone who may not decide is told why instead (the
    /// domain's refusal, in words).
    async fn open_deny(&self, c: &Click, actor: &Actor) {
        let r = match self.requests().get(&c.value).await {
            Ok(v) => v.request,
            Err(e) => return self.answer(&c.response_url, &blocks::explain(&e)).await,
        };
        if let Err(e) = self.requests().check_decide(&r, actor, Verdict::Deny).await {
            return self.answer(&c.response_url, &blocks::explain(&e)).await;
        }
        let body = json!({"trigger_id": c.trigger_id, "view": blocks::deny_modal(&r.id)});
        if let Err(e) = self.client().call_retrying("views.open", &body).await {
            tracing::warn!(error = %e, "views.open failed");
            self.answer(
                &c.response_url,
                "The form asking for a reason could not be opened; click Deny again.",
            )
            .await;
        }
    }

    /// Updates the approval message now (the notification will do the same; both read the
    /// request as it stands, so the order does not matter).
    async fn refresh_quietly(&self, request_id: &str) {
        if let Err(e) = self.refresh_message(request_id).await {
            tracing::debug!(error = %e, "approval message not refreshed now; the outbox will");
        }
    }

    async fn on_submission(&self, user: String, p: &Value) -> Response {
        let callback = s(p, "/view/callback_id").unwrap_or("");
        let values = p
            .pointer("/view/state/values")
            .cloned()
            .unwrap_or(Value::Null);
        let input = |block: &str| -> Option<String> {
            let v = values.get(block)?.get("value")?;
            s(v, "/selected_option/value")
                .or_else(|| s(v, "/value"))
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        };
        let login = match self
            .identity()
            .okta_login(
                &user,
                super::workspace::Origin::of_interaction(p).workspace(),
            )
            .await
        {
            Ok(l) => l,
            Err(e) => return field_errors(&[("reason", format!("{e}. Nothing was done."))]),
        };
        let actor = Actor::new(login, Channel::Slack);
        match callback {
            blocks::VIEW_REQUEST => {
                let Some(resource) = input("resource") else {
                    return field_errors(&[("resource", "Choose a resource.".into())]);
                };
                let req = NewRequest {
                    resource,
                    duration: input("duration"),
                    reason: input("reason"),
                    ticket: input("ticket"),
                    on_behalf_of: None,
                    break_glass: false,
                };
                let me = self.clone();
                let (tx, rx) = tokio::sync::oneshot::channel();
                let user2 = user.clone();
                self.later("slack.submit", async move {
                    let r = me.requests().create(&actor, req).await;
                    if let Err(r) = tx.send(r) {
                        // The modal closed before the answer: tell the person by message.
                        let text = match r {
                            Ok(c) => created_text(&c),
                            Err(e) => blocks::explain(&e),
                        };
                        me.direct(&user2, &text).await;
                    }
                });
                match tokio::time::timeout(SUBMIT_WAIT, rx).await {
                    Ok(Ok(Ok(c))) => {
                        let text = created_text(&c);
                        let me = self.clone();
                        self.later("slack.submit", async move { me.direct(&user, &text).await });
                        StatusCode::OK.into_response()
                    }
                    Ok(Ok(Err(e))) => field_errors(&[(
                        blocks::field_of(&e).unwrap_or("resource"),
                        blocks::explain(&e),
                    )]),
                    _ => StatusCode::OK.into_response(),
                }
            }
            blocks::VIEW_DENY => {
                let id = s(p, "/view/private_metadata").unwrap_or("").to_string();
                if !is_request_id(&id) {
                    return field_errors(&[("reason", "This form names no request.".into())]);
                }
                let Some(reason) = input("reason") else {
                    return field_errors(&[("reason", "Say why the request is denied.".into())]);
                };
                // The decision runs as a tracked task: a slow Okta must not leave it half-way
                // when Slack stops waiting; its message update tells the outcome either way.
                let me = self.clone();
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.later("slack.submit", async move {
                    let r = me
                        .requests()
                        .decide(&id, &actor, Verdict::Deny, Some(&reason))
                        .await;
                    if r.is_ok() {
                        me.refresh_quietly(&id).await;
                    }
                    let _ = tx.send(r.map(|_| ()));
                });
                match tokio::time::timeout(SUBMIT_WAIT, rx).await {
                    Ok(Ok(Err(e))) => field_errors(&[("reason", blocks::explain(&e))]),
                    _ => StatusCode::OK.into_response(),
                }
            }
            _ => StatusCode::OK.into_response(),
        }
    }

    /// A direct message to a Slack user (`chat.postMessage` to the user id opens the DM).
    pub(super) async fn direct(&self, slack_user: &str, text: &str) {
        let body = json!({"channel": slack_user, "text": text, "blocks": blocks::simple(&blocks::esc(text))});
        if let Err(e) = self.client().post_paced(slack_user, &body).await {
            tracing::warn!(error = %e, "direct message not sent");
        }
    }
}

fn field_errors(errs: &[(&str, String)]) -> Response {
    let map: serde_json::Map<String, Value> = errs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
        .collect();
    Json(json!({"response_action": "errors", "errors": map})).into_response()
}
