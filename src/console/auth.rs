//! Sign-in, callback and sign-out.
//!
//! Why it exists: the start of a sign-in seals its `state`, nonce and PKCE verifier into the
//! browser's encrypted `jit_login` cookie (see `pending`; nothing is written on the server) and
//! sends the browser to Okta; the callback takes that sign-in out of the same browser's cookie
//! (a callback opened in another browser is refused: login CSRF), has the OIDC library verify
//! the ID token, reads the person's Okta groups for their console role, and opens a fresh
//! session (a new cookie on every sign-in, so no session is fixed in advance).
//!
//! Every sign-in and sign-out is recorded in the audit log (`console.sign_in`,
//! `console.sign_out`) in the transaction that opens or ends the session.
//!
//! What it must never do: redirect anywhere but a path on this console after sign-in (no open
//! redirect), open a session from an unverified token or from a callback this browser did not
//! start, end the browser's current session on such a callback, or keep the old session alive
//! when a new one starts.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use super::error::ConsoleError;
use super::pages::{html, notice, see_other, CsrfOnly, Done, PageError};
use super::pending::{self, PendingLogin};
use super::session::{self, NewSession, Viewer};
use super::views::{Landing, Layout};
use super::Console;
use super::ConsoleState;

/// The longest `max_age` a step-up may ask for.
const MAX_AGE_LIMIT_S: i64 = 86_400;

fn console(state: &ConsoleState) -> Result<&Console, PageError> {
    state
        .console
        .as_ref()
        .ok_or_else(|| ConsoleError::NotConfigured.into())
}

pub async fn home(
    State(state): State<ConsoleState>,
    v: Result<Viewer, PageError>,
    Query(q): Query<Done>,
) -> Result<Response, PageError> {
    console(&state)?;
    if v.is_ok() {
        return Ok(see_other("/access"));
    }
    html(Landing {
        l: Layout::new("Just-in-time access", "", None).with_notice(notice(q.done.as_deref())),
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct LoginQuery {
    return_to: Option<String>,
    /// Seconds: ask Okta for a sign-in at most this old (step-up).
    max_age: Option<String>,
}

/// Only a path on this console: `/x`, never `//host` or `/\host` or a scheme.
fn safe_return(r: Option<&str>) -> String {
    match r {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && p.len() <= 512
                && !p.chars().any(|c| c.is_control()) =>
        {
            p.to_string()
        }
        _ => "/access".to_string(),
    }
}

pub async fn login(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Result<Response, PageError> {
    let c = console(&state)?;
    let max_age = match q.max_age.as_deref() {
        None | Some("") => None,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (0..=MAX_AGE_LIMIT_S).contains(&n) => Some(n),
            _ => {
                return Err(ConsoleError::InvalidInput(format!(
                    "max_age must be a number of seconds from 0 to {MAX_AGE_LIMIT_S}"
                ))
                .into())
            }
        },
    };
    let started = c
        .oidc
        .start(max_age.map(|s| std::time::Duration::from_secs(s.unsigned_abs())))
        .await?;
    // Sealed into this browser's cookie, next to the sign-ins it already has going.
    let now = state.clock.now_ms();
    let timeout = session::ms(c.cfg.login_timeout);
    let mut list = c.pending.open(&headers, now, timeout);
    list.push(PendingLogin {
        state: started.state,
        nonce: started.nonce,
        pkce_verifier: started.pkce_verifier,
        return_to: safe_return(q.return_to.as_deref()),
        created_ms: now,
    });
    let cookie = c.pending.seal(&list, c.secure_cookie, timeout)?;
    let mut resp = see_other(started.url.as_str());
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

#[derive(Debug, Deserialize, Default)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub async fn callback(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    old: Result<Viewer, PageError>,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, PageError> {
    let c = console(&state)?;
    let now = state.clock.now_ms();
    let Some(st) = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 256)
    else {
        return Err(ConsoleError::BadState.into());
    };
    // Only a sign-in this browser started, within the login timeout (refused before anything
    // else, so a foreign callback changes nothing: not even this browser's own session). Taken
    // out of the cookie whatever the outcome: a state is good for one callback.
    let timeout = session::ms(c.cfg.login_timeout);
    let (pending, rest) = pending::take(c.pending.open(&headers, now, timeout), st)?;
    let rest_cookie = c.pending.seal(&rest, c.secure_cookie, timeout)?;
    let refused = |e: PageError| {
        let mut r = e.into_response();
        r.headers_mut()
            .append(header::SET_COOKIE, rest_cookie.clone());
        r
    };
    if let Some(e) = q.error.as_deref() {
        return Ok(refused(
            ConsoleError::SignInRejected(format!("Okta answered `{e}`")).into(),
        ));
    }
    match finish(&state, c, &pending, q.code.as_deref(), old, now).await {
        Ok(cookie) => {
            let mut resp = see_other(&pending.return_to);
            if let Some(v) = session::set_cookie(&cookie, c.secure_cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp.headers_mut()
                .append(header::SET_COOKIE, rest_cookie.clone());
            Ok(resp)
        }
        Err(e) => Ok(refused(e)),
    }
}

/// Redeems the code, reads the person's roles and opens their session: the new cookie.
async fn finish(
    state: &ConsoleState,
    c: &Console,
    pending: &PendingLogin,
    code: Option<&str>,
    old: Result<Viewer, PageError>,
    now: i64,
) -> Result<String, PageError> {
    let code = code
        .filter(|c| !c.is_empty() && c.len() <= 1024)
        .ok_or_else(|| ConsoleError::SignInRejected("no code".into()))?;
    let id = c
        .oidc
        .finish(code, &pending.nonce, &pending.pkce_verifier)
        .await?;
    // Roles from Okta group membership, read now (a person removed from the admin group loses
    // the role at their next sign-in, and sessions end within the absolute timeout).
    // The same mapping the API applies to an Okta access token (`requests::people`).
    let (user_id, admin, auditor) = match state.requests.as_ref() {
        Some(svc) => {
            let person = svc
                .directory()
                .person(&id.subject, &c.cfg.group_roles())
                .await?;
            (person.user_id, person.roles.admin, person.roles.auditor)
        }
        None => (id.subject.clone(), false, false),
    };
    if let Ok(old) = old {
        session::delete(&state.store, &old).await?;
    }
    let cookie = session::create(
        &state.store,
        &state.clock,
        now,
        NewSession {
            login: &id.login,
            user_id: &user_id,
            name: &id.name,
            admin,
            auditor,
            auth_time_ms: id.auth_time_ms,
        },
    )
    .await?;
    tracing::info!(login = %id.login, admin, auditor, "console sign-in");
    Ok(cookie)
}

pub async fn logout(
    State(state): State<ConsoleState>,
    v: Viewer,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    let c = console(&state)?;
    v.check_csrf(&f.csrf)?;
    session::sign_out(&state.store, &state.clock, &v).await?;
    let mut resp = see_other("/?done=signed_out").into_response();
    let clear = session::clear_cookie(c.secure_cookie)
        .unwrap_or(HeaderValue::from_static("jit_session=; Max-Age=0; Path=/"));
    resp.headers_mut().insert(header::SET_COOKIE, clear);
    Ok(resp)
}
