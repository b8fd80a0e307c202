//! Dead letters: outbound deliveries (webhooks, Slack) and inbound Okta events that ran out of
//! attempts, each with a retry.
//!
//! Why it exists: an admin sees which notifications never reached their channel and why, and
//! puts one back in its queue after fixing the cause.
//!
//! What it must never do: deliver anything itself, or retry a delivery that is not dead (the
//! outbox's retry only moves `dead` rows back to `pending`).

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Form;
use serde::Deserialize;

use super::error::ConsoleError;
use super::pages::{html, notice, see_other, CsrfOnly, PageError};
use super::session::{Role, Viewer};
use super::views::{self, time, DeadRow, Layout};
use super::ConsoleState;

#[derive(Debug, Deserialize, Default)]
pub struct DeadQuery {
    after: Option<i64>,
    done: Option<String>,
}

const PAGE: i64 = 100;

pub async fn dead(
    State(state): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<DeadQuery>,
) -> Result<Response, PageError> {
    v.require(Role::Admin)?;
    let rows = crate::outbox::list(&state.store, Some("dead"), None, q.after, PAGE).await?;
    let next = match rows.last() {
        Some(d) if rows.len() as i64 == PAGE => format!("/admin/outbox?after={}", d.id),
        _ => String::new(),
    };
    html(views::DeadLetters {
        l: Layout::new("Outbound dead letters", "outbox", Some(&v))
            .with_notice(notice(q.done.as_deref())),
        rows: rows
            .iter()
            .map(|d| DeadRow {
                id: d.id,
                channel: d.channel.clone(),
                kind: d.notification.kind.clone(),
                subject: d
                    .notification
                    .request_id
                    .as_ref()
                    .map(|r| format!("request {r}"))
                    .or_else(|| {
                        d.notification
                            .grant_id
                            .as_ref()
                            .map(|g| format!("grant {g}"))
                    })
                    .unwrap_or_default(),
                attempts: d.attempts,
                error: d.last_error.clone().unwrap_or_default(),
                created: time(d.created_at),
            })
            .collect(),
        next,
    })
}

/// The admin API's retry, from the console: the outbox moves the dead delivery back to
/// `pending`, and the retry is audited like the API's.
pub async fn retry(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    v.check_csrf(&f.csrf)?;
    v.require(Role::Admin)?;
    let id: i64 = id.parse().map_err(|_| ConsoleError::NotFound)?;
    if !crate::outbox::retry(&state.store, &state.clock, id, &v.actor().audit_name()).await? {
        return Err(ConsoleError::InvalidInput(format!(
            "delivery {id} does not exist or is not dead"
        ))
        .into());
    }
    Ok(see_other("/admin/outbox?done=redelivering"))
}

#[derive(Debug, Deserialize, Default)]
pub struct EventsQuery {
    done: Option<String>,
}

/// Inbound dead letters: Okta events the broker could not process after every attempt.
pub async fn events_dead(
    State(state): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<EventsQuery>,
) -> Result<Response, PageError> {
    v.require(Role::Admin)?;
    let rows = crate::events::inbox::list(&state.store, Some("dead"), PAGE).await?;
    html(views::EventsDead {
        l: Layout::new("Inbound dead letters", "events", Some(&v))
            .with_notice(notice(q.done.as_deref())),
        rows: rows
            .iter()
            .map(|e| views::EventRow {
                uuid: e.uuid.clone(),
                event_type: e.event_type.clone(),
                user: e.user_key.clone(),
                attempts: e.attempts,
                error: e.last_error.clone().unwrap_or_default(),
                published: time(e.published),
            })
            .collect(),
    })
}

/// Sends a dead Okta event back to the event worker (the events domain's retry, audited there).
pub async fn events_retry(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path(uuid): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    v.check_csrf(&f.csrf)?;
    v.require(Role::Admin)?;
    if uuid.is_empty() || uuid.len() > 128 {
        return Err(ConsoleError::NotFound.into());
    }
    if !crate::events::inbox::retry_dead(&state.store, &state.clock, &uuid, &v.actor().audit_name())
        .await?
    {
        return Err(ConsoleError::InvalidInput(format!(
            "event {uuid} does not exist or is not dead"
        ))
        .into());
    }
    Ok(see_other("/admin/events?done=redelivering"))
}
