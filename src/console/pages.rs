//! The requester's pages: my access (extend, end, cancel) and request access; and how any
//! console handler answers with a page or an error page.
//!
//! Why it exists: people see their grants with the time left and their pending requests, and
//! ask for what the policy lets them ask for, in one place. Each action is one call to a domain
//! service with the session's actor.
//!
//! What it must never do: decide who may do what (the services do), or change anything on a
//! form whose CSRF token does not match.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::error::{sentence, ConsoleError, Shown};
use super::session::Viewer;
use super::views::{self, time, GrantRow, Layout, RequestRow, ResourceRow};
use super::ConsoleState;
use crate::grants::{Grant, Holder};
use crate::requests::{Request, RequestService};

/// A console handler's failure: back to sign-in (a GET without a session), or an error page.
pub enum PageError {
    SignIn(String),
    Page(Shown),
}

impl<E> From<E> for PageError
where
    E: crate::error::ErrorCode + std::error::Error + Send + Sync + 'static,
{
    fn from(e: E) -> Self {
        PageError::Page(Shown::from(e))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn(return_to) => {
                let mut u = String::from("/login?return_to=");
                u.push_str(
                    &url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>(),
                );
                Redirect::to(&u).into_response()
            }
            PageError::Page(s) => {
                let shown = ErrorShown {
                    status: s.status,
                    code: s.code,
                    detail: s.detail,
                };
                // Rendered here without the navigation (no viewer at hand);
                // `with_navigation` renders it again for a signed-in viewer.
                let mut resp = error_page(&shown, None);
                resp.extensions_mut().insert(shown);
                resp
            }
        }
    }
}

/// What an error page shows, kept on its response so that [`with_navigation`] can render it
/// again with the signed-in person's navigation.
#[derive(Clone, Debug)]
pub struct ErrorShown {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

/// The error page, with the navigation of `v` when someone is signed in.
pub fn error_page(s: &ErrorShown, v: Option<&Viewer>) -> Response {
    let page = views::ErrorPage {
        l: Layout::new("Something went wrong", "", v),
        code: s.code.to_string(),
        sentence: sentence(s.code).to_string(),
        detail: s.detail.clone(),
        back: "/".into(),
    };
    match page.render() {
        Ok(body) => (s.status, Html(body)).into_response(),
        Err(_) => (s.status, s.code).into_response(),
    }
}

/// Middleware: an error page answered to someone signed in keeps the navigation (and the
/// sign-out button), so a refused action does not strand them on a bare page. The session is
/// read again only for error pages.
pub async fn with_navigation(
    State(state): State<ConsoleState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::extract::FromRequestParts;
    let (method, uri, headers) = (
        req.method().clone(),
        req.uri().clone(),
        req.headers().clone(),
    );
    let resp = next.run(req).await;
    let Some(shown) = resp.extensions().get::<ErrorShown>().cloned() else {
        return resp;
    };
    let (mut parts, ()) = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .map(axum::http::Request::into_parts)
        .unwrap_or_else(|_| axum::http::Request::new(()).into_parts());
    parts.headers = headers;
    match Viewer::from_request_parts(&mut parts, &state).await {
        Ok(v) => {
            let mut again = error_page(&shown, Some(&v));
            // Keep what the handler set beyond the page itself (cookies, cache headers).
            for (k, val) in resp.headers() {
                if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
                    again.headers_mut().append(k.clone(), val.clone());
                }
            }
            again
        }
        Err(_) => resp,
    }
}

/// Renders a template as a 200 page.
pub fn html<T: Template>(t: T) -> Result<Response, PageError> {
    Ok(Html(t.render().map_err(ConsoleError::from)?).into_response())
}

/// 303 to `to` (after a form, the browser GETs the next page).
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

pub fn requests(state: &ConsoleState) -> Result<&RequestService, PageError> {
    state
        .requests
        .as_ref()
        .ok_or_else(|| ConsoleError::OktaNotConfigured.into())
}

/// Fixed notices shown after an action (never text from the URL).
pub fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "requested" => "Your request was sent to its approvers.",
        "granted" => "Your access was granted.",
        "extended" => "Your access was extended.",
        "extension_requested" => "Your extension was sent to its approvers.",
        "revoked" => "Your access is being removed.",
        "cancelled" => "Your request was cancelled.",
        "approved" => "You approved the request.",
        "denied" => "You denied the request.",
        "retried" => "The removal is being tried again.",
        "redelivering" => "The delivery is queued again.",
        "verified" => "The audit chain was verified.",
        "signed_out" => "You are signed out.",
        "stepped_up" => "You signed in again. You can decide now.",
        "reviewed" => "Your review decision was recorded.",
        "delegated" => "The item was handed to its new reviewer.",
        _ => return None,
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct Done {
    pub done: Option<String>,
}

pub fn grant_row(g: &Grant, now: i64) -> GrantRow {
    GrantRow {
        id: g.id.clone(),
        user: g.user_login.clone(),
        resource: g.resource.clone(),
        state: g.state.as_str().to_string(),
        expires: time(g.expires_at),
        left: views::span(g.expires_at - now),
        reason: g.reason.clone(),
        error: g.last_error.clone().unwrap_or_default(),
        attempts: g.attempts,
    }
}

pub fn request_row(r: &Request) -> RequestRow {
    RequestRow {
        id: r.id.clone(),
        user: r.user_login.clone(),
        resource: r.resource.clone(),
        kind: r.kind.as_str().to_string(),
        state: r.state.as_str().to_string(),
        duration: views::span(r.duration_ms),
        reason: r.reason.clone(),
        created: time(r.created_at),
    }
}

/// The grants a person holds or is losing (not the ended ones).
pub async fn live_grants(svc: &RequestService, user_id: &str) -> Result<Vec<Grant>, PageError> {
    Ok(svc
        .grants()
        .live_of_user(Holder::Id(user_id), None, true)
        .await?)
}

pub async fn access(
    State(state): State<ConsoleState>,
    v: Viewer,
    Query(q): Query<Done>,
) -> Result<Response, PageError> {
    let svc = requests(&state)?;
    let now = state.clock.now_ms();
    let grants = live_grants(svc, &v.user_id).await?;
    let pending = svc
        .list(&crate::requests::repo::ListFilter {
            user: Some(v.user_id.clone()),
            state: Some(crate::requests::RequestState::Pending),
            limit: 200,
            ..Default::default()
        })
        .await?;
    html(views::Access {
        l: Layout::new("My access", "access", Some(&v)).with_notice(notice(q.done.as_deref())),
        grants: grants.iter().map(|g| grant_row(g, now)).collect(),
        pending: pending.iter().map(request_row).collect(),
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct ExtendForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    reason: String,
}

pub async fn extend(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<ExtendForm>,
) -> Result<Response, PageError> {
    v.check_csrf(&f.csrf)?;
    let svc = requests(&state)?;
    let out = svc
        .extend(&id, &v.actor(), f.duration.trim(), Some(f.reason.as_str()))
        .await?;
    let done = if out.grant.is_some() {
        "extended"
    } else {
        "extension_requested"
    };
    Ok(see_other(&format!("/access?done={done}")))
}

#[derive(Debug, Deserialize, Default)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

/// Ends access early: the grants service asks the rules (the holder, an admin, or an approver
/// of the grant's resource).
pub async fn revoke(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    v.check_csrf(&f.csrf)?;
    let svc = requests(&state)?;
    svc.grants()
        .end_early_as(&v.actor(), &id, "ended early from the console")
        .await?;
    Ok(see_other("/access?done=revoked"))
}

pub async fn cancel(
    State(state): State<ConsoleState>,
    v: Viewer,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    v.check_csrf(&f.csrf)?;
    requests(&state)?.cancel(&id, &v.actor()).await?;
    Ok(see_other("/access?done=cancelled"))
}

/// The people a stage names, as the policy names them: logins, then Okta groups by id (the
/// page makes no Okta call to look names up).
fn who_approves(p: &crate::policy::Principals) -> String {
    let mut who: Vec<String> = p.users.clone();
    who.extend(
        p.okta_groups
            .iter()
            .map(|g| format!("the members of Okta group {g}")),
    );
    match who.len() {
        0 => "nobody named".into(),
        1 => who.remove(0),
        _ => {
            let last = who.pop().unwrap_or_default();
            format!("{} or {last}", who.join(", "))
        }
    }
}

fn fmt_d(d: std::time::Duration) -> String {
    views::span(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub async fn request_form(
    State(state): State<ConsoleState>,
    v: Viewer,
) -> Result<Response, PageError> {
    let svc = requests(&state)?;
    let resources = svc
        .requestable(&v.user_id)
        .await?
        .iter()
        .map(|r| {
            let stages = r.approval_stages();
            let mut approvers = if stages.is_empty() {
                "No approval needed".to_string()
            } else {
                let names: Vec<String> = stages
                    .iter()
                    .map(|s| {
                        let n = s.approvals_required;
                        format!(
                            "{}: {} ({n} approval{} needed)",
                            s.name,
                            who_approves(&s.approvers),
                            if n == 1 { "" } else { "s" }
                        )
                    })
                    .collect();
                format!("Approved by {}", names.join(", then "))
            };
            if let Some(s) = r.approval_step_up {
                approvers.push_str(&format!(
                    "; approvers must have signed in within {}",
                    fmt_d(s)
                ));
            }
            ResourceRow {
                name: r.name.clone(),
                description: r.description.clone(),
                default_duration: fmt_d(r.default_duration),
                max_duration: fmt_d(r.max_duration),
                approvers,
                needs_reason: r.require_reason,
                ticket_pattern: r.ticket_pattern.clone().unwrap_or_default(),
            }
        })
        .collect();
    html(views::RequestForm {
        l: Layout::new("Request access", "request", Some(&v)),
        resources,
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct RequestFormBody {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    ticket: String,
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

pub async fn request_submit(
    State(state): State<ConsoleState>,
    v: Viewer,
    Form(f): Form<RequestFormBody>,
) -> Result<Response, PageError> {
    v.check_csrf(&f.csrf)?;
    let created = requests(&state)?
        .create(
            &v.actor(),
            crate::requests::NewRequest {
                resource: f.resource.trim().to_string(),
                duration: non_empty(&f.duration),
                reason: non_empty(&f.reason),
                ticket: non_empty(&f.ticket),
                on_behalf_of: None,
                break_glass: false,
            },
        )
        .await?;
    let done = if created.grant.is_some() {
        "granted"
    } else {
        "requested"
    };
    Ok(see_other(&format!("/access?done={done}")))
}

/// The path and query of a request, for coming back after sign-in.
pub fn here(uri: &Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into())
}
