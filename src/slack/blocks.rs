//! Block Kit builders: the approval message, direct messages, and sentences for people.
//!
//! Why it exists: what people see in Slack is built in one place from the domain's records, so
//! a message posted first and the same message updated after a decision look alike, and every
//! refusal the requests domain can give reads as a sentence, not a code.
//!
//! What it must never do: decide anything (who may approve, whether a step-up is needed comes
//! from the policy and the domain), or put unescaped user text into mrkdwn.

use serde_json::{json, Value};

use crate::authz::Denied;
use crate::error::ErrorCode;
use crate::grants::Grant;
use crate::policy::Resource;
use crate::requests::{RequestError, RequestState, RequestView, Verdict};

pub const ACTION_APPROVE: &str = "approve";
pub const ACTION_DENY: &str = "deny";
pub const ACTION_EXTEND: &str = "extend";
pub const ACTION_CONSOLE: &str = "approve_in_console";
pub const VIEW_REQUEST: &str = "jit_request";
pub const VIEW_DENY: &str = "jit_deny";

/// Escapes `&`, `<`, `>` (Slack's mrkdwn control characters) in user-supplied text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn fmt_ms(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

fn when(ms: i64) -> String {
    crate::clock::ms_to_datetime(ms)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// What the approval message needs beyond the request itself.
pub struct MessageContext<'a> {
    pub resource: Option<&'a Resource>,
    /// The requester's live grants of this resource (their current access to it).
    pub current_access: &'a [Grant],
    /// Base URL of the console (empty: none).
    pub console_url: &'a str,
}

/// The approval message for a request as it stands: posted when it is created, and the same
/// builder gives the `chat.update` after each decision (buttons only while it can be decided).
pub fn approval_message(v: &RequestView, ctx: &MessageContext<'_>) -> (String, Vec<Value>) {
    let r = &v.request;
    let title = if r.break_glass {
        "Break-glass access used"
    } else if r.kind == crate::requests::RequestKind::Extension {
        "Extension request"
    } else {
        "Access request"
    };
    let text = format!(
        "{title}: {} asks for {} for {}",
        r.user_login,
        r.resource,
        fmt_ms(r.duration_ms)
    );
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Who*\n{}", esc(&r.user_login))}),
        json!({"type": "mrkdwn", "text": format!("*What*\n{}", esc(&r.resource))}),
        json!({"type": "mrkdwn", "text": format!("*How long*\n{}", fmt_ms(r.duration_ms))}),
        json!({"type": "mrkdwn", "text": format!("*Ticket*\n{}", esc(r.ticket.as_deref().unwrap_or("none")))}),
    ];
    if r.is_on_behalf() {
        fields.push(
            json!({"type": "mrkdwn", "text": format!("*Asked by*\n{}", esc(&r.requested_by))}),
        );
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title}}),
        json!({"type": "section", "block_id": "request", "fields": fields}),
        json!({"type": "section", "block_id": "reason", "text": {"type": "mrkdwn", "text": format!("*Why*\n{}", if r.reason.is_empty() { "_no reason given_".to_string() } else { esc(&r.reason) })}}),
    ];
    let access = if ctx.current_access.is_empty() {
        "Current access: none".to_string()
    } else {
        let list: Vec<String> = ctx
            .current_access
            .iter()
            .map(|g| format!("{} until {}", g.state.as_str(), when(g.expires_at)))
            .collect();
        format!("Current access: {}", list.join(", "))
    };
    blocks.push(json!({"type": "context", "block_id": "access", "elements": [{"type": "mrkdwn", "text": access}]}));
    let mut progress: Vec<String> = v
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mark = if s.approvals >= s.approvals_required {
                "done"
            } else if v.current_stage == Some(i) {
                "waiting"
            } else {
                "later"
            };
            format!(
                "Stage {} ({}): {}/{} approvals, {mark}",
                i + 1,
                esc(&s.name),
                s.approvals,
                s.approvals_required
            )
        })
        .collect();
    for d in &v.decisions {
        let verb = match d.decision {
            Verdict::Approve => "approved",
            Verdict::Deny => "denied",
            Verdict::BreakGlass => "used break-glass",
        };
        let mut line = format!("{} {verb} at {}", esc(&d.approver), when(d.decided_at));
        if !d.comment.is_empty() && d.decision != Verdict::BreakGlass {
            line.push_str(&format!(": {}", esc(&d.comment)));
        }
        progress.push(line);
    }
    if !progress.is_empty() {
        blocks.push(json!({"type": "section", "block_id": "progress", "text": {"type": "mrkdwn", "text": progress.join("\n")}}));
    }
    let status = match r.state {
        RequestState::Pending => None,
        RequestState::Approved if r.review_pending => {
            Some("Granted at once (break-glass): waiting for an approver's review".to_string())
        }
        RequestState::Approved => Some(format!(
            "*Approved* at {}",
            r.decided_at.map(when).unwrap_or_default()
        )),
        RequestState::Denied => Some(format!(
            "*Denied*{}",
            r.end_reason
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| format!(": {}", esc(s)))
                .unwrap_or_default()
        )),
        RequestState::Expired => Some("*Expired* unanswered".to_string()),
        RequestState::Cancelled => Some(format!(
            "*Cancelled*{}",
            r.end_reason
                .as_deref()
                .map(|s| format!(" ({})", esc(s)))
                .unwrap_or_default()
        )),
        RequestState::Failed => Some(format!(
            "*Failed*: {}",
            esc(r
                .end_reason
                .as_deref()
                .unwrap_or("the grant could not be made"))
        )),
    };
    if let Some(s) = status {
        blocks.push(
            json!({"type": "section", "block_id": "status", "text": {"type": "mrkdwn", "text": s}}),
        );
    }
    let decidable =
        r.state == RequestState::Pending || (r.state == RequestState::Approved && r.review_pending);
    if decidable {
        let step_up = ctx.resource.and_then(|res| res.approval_step_up).is_some();
        let mut elements = Vec::new();
        if step_up {
            if ctx.console_url.is_empty() {
                blocks.push(json!({"type": "context", "block_id": "step_up", "elements": [{"type": "mrkdwn", "text": "Approving this resource needs a fresh Okta sign-in: approve it in the console."}]}));
            } else {
                elements.push(json!({
                    "type": "button", "action_id": ACTION_CONSOLE,
                    "text": {"type": "plain_text", "text": "Approve in console"},
                    "url": format!("{}/requests/{}", ctx.console_url.trim_end_matches('/'), r.id),
                }));
            }
        } else {
            elements.push(json!({
                "type": "button", "action_id": ACTION_APPROVE, "style": "primary",
                "text": {"type": "plain_text", "text": if r.review_pending { "Confirm" } else { "Approve" }},
                "value": r.id,
            }));
        }
        elements.push(json!({
            "type": "button", "action_id": ACTION_DENY, "style": "danger",
            "text": {"type": "plain_text", "text": "Deny"},
            "value": r.id,
        }));
        blocks.push(json!({"type": "actions", "block_id": "decide", "elements": elements}));
    }
    (text, blocks)
}

/// A plain message with one section.
pub fn simple(text: &str) -> Vec<Value> {
    vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})]
}

/// The "about to expire" direct message, with an Extend button when the policy allows more time.
pub fn expiring_message(g: &Grant, extendable: bool, now_ms: i64) -> (String, Vec<Value>) {
    let text = format!(
        "Your access to {} ends in {} (at {}).",
        g.resource,
        fmt_ms(g.expires_at.saturating_sub(now_ms).max(0)),
        when(g.expires_at)
    );
    let mut blocks = simple(&esc(&text));
    if extendable {
        blocks.push(
            json!({"type": "actions", "block_id": "extend", "elements": [{
                "type": "button", "action_id": ACTION_EXTEND, "style": "primary",
                "text": {"type": "plain_text", "text": "Extend"}, "value": g.id,
            }]}),
        );
    }
    (text, blocks)
}

/// A sentence for a person about a refusal or failure of the requests domain.
pub fn explain(e: &RequestError) -> String {
    if e.status().is_server_error() {
        return "Something went wrong on the broker's side; nothing was changed. Try again in a minute.".into();
    }
    match e {
        RequestError::Denied(Denied::StepUpRequired { resource }) => format!(
            "Approving {resource} needs a fresh Okta sign-in, which Slack cannot give: approve it in the console."
        ),
        RequestError::Denied(Denied::SelfApproval) => {
            "You cannot approve or deny your own request.".into()
        }
        RequestError::Denied(Denied::NotApprover) => {
            "You are not an approver of this request's current stage, so nothing was changed.".into()
        }
        RequestError::AlreadyDecided => "You have already decided on this request.".into(),
        RequestError::NotPending(state) => {
            format!("This request is already {state}; it can no longer be decided.")
        }
        RequestError::Expired => "This request expired unanswered.".into(),
        RequestError::NotFound(_) => "That request does not exist (any more).".into(),
        RequestError::AlreadyGranted { grant_id, resource } => format!(
            "You already hold {resource} (grant {grant_id}). Use `/jit extend {grant_id} <duration>` for more time."
        ),
        RequestError::AlreadyPending { resource, .. } => {
            format!("You already have a pending request for {resource}.")
        }
        other => {
            let mut s = other.to_string();
            if let Some(first) = s.get(..1) {
                let up = first.to_uppercase();
                s.replace_range(..1, &up);
            }
            if !s.ends_with('.') {
                s.push('.');
            }
            s
        }
    }
}

/// The modal `/jit request` opens: resources this person may request, duration, reason, ticket.
pub fn request_modal(resources: &[&Resource]) -> Value {
    let options: Vec<Value> = resources
        .iter()
        .take(100)
        .map(|r| {
            let label: String = r.name.chars().take(75).collect();
            json!({"text": {"type": "plain_text", "text": label}, "value": r.name})
        })
        .collect();
    let mut blocks = vec![
        json!({"type": "input", "block_id": "resource", "label": {"type": "plain_text", "text": "Resource"},
               "element": {"type": "static_select", "action_id": "value", "options": options}}),
        json!({"type": "input", "block_id": "duration", "label": {"type": "plain_text", "text": "Duration (e.g. 1h, 30m)"},
               "optional": true, "element": {"type": "plain_text_input", "action_id": "value"}}),
        json!({"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "Reason"},
               "optional": true, "element": {"type": "plain_text_input", "action_id": "value", "multiline": true, "max_length": 1000}}),
    ];
    if resources.iter().any(|r| r.ticket_pattern.is_some()) {
        blocks.push(json!({"type": "input", "block_id": "ticket", "label": {"type": "plain_text", "text": "Ticket"},
               "optional": true, "element": {"type": "plain_text_input", "action_id": "value", "max_length": 128}}));
    }
    json!({
        "type": "modal", "callback_id": VIEW_REQUEST,
        "title": {"type": "plain_text", "text": "Request access"},
        "submit": {"type": "plain_text", "text": "Request"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    })
}

/// The modal a Deny click opens, asking for the reason; `metadata` carries the request id.
pub fn deny_modal(request_id: &str) -> Value {
    json!({
        "type": "modal", "callback_id": VIEW_DENY, "private_metadata": request_id,
        "title": {"type": "plain_text", "text": "Deny request"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "Why?"},
                    "element": {"type": "plain_text_input", "action_id": "value", "multiline": true, "max_length": 1000}}],
    })
}

/// Which modal field a refusal belongs under (Slack shows it there); `None`: a general one.
pub fn field_of(e: &RequestError) -> Option<&'static str> {
    use RequestError::*;
    match e {
        UnknownResource(_)
        | NotEligible(_)
        | AlreadyPending { .. }
        | AlreadyGranted { .. }
        | BreakGlassNotAllowed(_) => Some("resource"),
        InvalidDuration(_) | DurationTooLong { .. } | BreakGlassTooLong { .. } => Some("duration"),
        ReasonRequired(_) | InvalidInput(_) => Some("reason"),
        TicketRequired { .. } | InvalidTicket { .. } => Some("ticket"),
        // The grants service's one input check answers for requests too.
        Grant(g) => match g {
            crate::grants::GrantError::UnknownResource(_) => Some("resource"),
            crate::grants::GrantError::InvalidDuration(_)
            | crate::grants::GrantError::DurationTooLong { .. } => Some("duration"),
            crate::grants::GrantError::ReasonRequired(_)
            | crate::grants::GrantError::InvalidInput(_) => Some("reason"),
            _ => None,
        },
        _ => None,
    }
}
