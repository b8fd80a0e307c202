//! Server-side console sessions and the CSRF check.
//!
//! Why it exists: a session is a row in SQL referenced by a random cookie, so sign-out and the
//! idle and absolute timeouts are enforced by the server (a stolen cookie dies with its row) and
//! every replica sees the same sessions. Only SHA-256 hashes of cookies are stored. Each session has its own CSRF token, which every state-changing form carries.
//!
//! What it must never do: accept a session past either timeout, store a cookie value in
//! clear, or compare a CSRF token in variable time.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;

use super::error::ConsoleError;
use super::ConsoleState;
use crate::store::Store;

pub const COOKIE: &str = "jit_session";
/// `last_seen_ms` is written at most this often per session (a page view is not worth a write),
/// and at most a quarter of the idle timeout, so a person in use is never taken for idle.
const TOUCH_EVERY_MS: i64 = 60_000;

/// The signed-in person behind a request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub login: String,
    pub user_id: String,
    pub name: String,
    pub admin: bool,
    pub auditor: bool,
    pub auth_time_ms: i64,
    pub csrf: String,
    id_hash: String,
}

impl Viewer {
    /// The actor the domain sees: a person through the console, with Okta's `auth_time` and
    /// the admin and auditor roles their groups gave them at sign-in. What they may do is
    /// [`crate::authz`]'s answer, never a page's.
    pub fn actor(&self) -> crate::authz::Actor {
        crate::authz::Actor::console(&self.login, self.auth_time_ms, self.admin, self.auditor)
    }

    /// Constant-time check of a form's CSRF token against the session's.
    pub fn check_csrf(&self, given: &str) -> Result<(), ConsoleError> {
        if !given.is_empty() && bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(ConsoleError::Csrf)
        }
    }
}

pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

pub fn hash(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn cookie_value(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

/// The `Set-Cookie` for a new session; `Secure` when `console.public_url` is https.
pub fn set_cookie(value: &str, secure: bool) -> Option<HeaderValue> {
    let c = cookie::Cookie::build((COOKIE, value.to_string()))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Lax)
        .build();
    HeaderValue::from_str(&c.to_string()).ok()
}

pub fn clear_cookie(secure: bool) -> Option<HeaderValue> {
    let c = cookie::Cookie::build((COOKIE, ""))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    HeaderValue::from_str(&c.to_string()).ok()
}

/// A new session row; returns the cookie value (never stored).
pub struct NewSession<'a> {
    pub login: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub admin: bool,
    pub auditor: bool,
    pub auth_time_ms: i64,
}

/// Opens the session and records the sign-in in the audit log, in one transaction.
pub async fn create(
    store: &Store,
    clock: &crate::clock::Clock,
    now: i64,
    s: NewSession<'_>,
) -> Result<String, ConsoleError> {
    let cookie = random_token();
    let roles = match (s.admin, s.auditor) {
        (true, true) => "admin,auditor",
        (true, false) => "admin",
        (false, true) => "auditor",
        (false, false) => "",
    };
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, login, user_id, name, roles, auth_time_ms, \
         created_ms, last_seen_ms, csrf) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(hash(&cookie))
    .bind(s.login)
    .bind(s.user_id)
    .bind(s.name)
    .bind(roles)
    .bind(s.auth_time_ms)
    .bind(now)
    .bind(now)
    .bind(random_token())
    .execute(tx.conn())
    .await?;
    crate::audit::append(
        &mut tx,
        clock,
        crate::audit::NewEntry::new(
            s.login,
            "console.sign_in",
            format!("user:{}", s.user_id),
            serde_json::json!({
                "admin": s.admin, "auditor": s.auditor, "auth_time_ms": s.auth_time_ms,
            }),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(cookie)
}

/// Ends a session without an audit entry: the one a new sign-in in the same browser replaces
/// (that sign-in is recorded).
pub async fn delete(store: &Store, v: &Viewer) -> Result<(), ConsoleError> {
    sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
        .bind(&v.id_hash)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Ends the session on the person's own sign-out, recorded in the audit log.
pub async fn sign_out(
    store: &Store,
    clock: &crate::clock::Clock,
    v: &Viewer,
) -> Result<(), ConsoleError> {
    let mut tx = store.begin().await?;
    sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
        .bind(&v.id_hash)
        .execute(tx.conn())
        .await?;
    crate::audit::append(
        &mut tx,
        clock,
        crate::audit::NewEntry::new(
            &v.login,
            "console.sign_out",
            format!("user:{}", v.user_id),
            serde_json::json!({}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes sessions past either timeout. (Sign-ins in progress live in the browser's
/// `jit_login` cookie, see `pending`, and expire there.)
pub async fn sweep(
    store: &Store,
    now: i64,
    cfg: &super::ConsoleConfig,
) -> Result<u64, ConsoleError> {
    let idle = now - ms(cfg.session_idle_timeout);
    let absolute = now - ms(cfg.session_absolute_timeout);
    let n = sqlx::query("DELETE FROM console_sessions WHERE last_seen_ms < $1 OR created_ms < $2")
        .bind(idle)
        .bind(absolute)
        .execute(store.pool())
        .await?
        .rows_affected();
    Ok(n)
}

pub fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// No valid session: a page view goes to sign-in and comes back; a form post is refused (its
/// body is not replayed after sign-in).
fn sign_in(parts: &Parts) -> super::pages::PageError {
    if parts.method == axum::http::Method::GET {
        super::pages::PageError::SignIn(super::pages::here(&parts.uri))
    } else {
        ConsoleError::SignInRequired.into()
    }
}

impl FromRequestParts<ConsoleState> for Viewer {
    type Rejection = super::pages::PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let Some(cookie) = cookie_value(parts) else {
            return Err(sign_in(parts));
        };
        let cfg = &state.config;
        let store = &state.store;
        let now = state.clock.now_ms();
        let id_hash = hash(&cookie);
        let row = sqlx::query(
            "SELECT login, user_id, name, roles, auth_time_ms, created_ms, last_seen_ms, csrf \
             FROM console_sessions WHERE id_hash = $1",
        )
        .bind(&id_hash)
        .fetch_optional(store.reads())
        .await
        .map_err(ConsoleError::from)?;
        let Some(row) = row else {
            return Err(sign_in(parts));
        };
        let get = |e: sqlx::Error| super::pages::PageError::from(ConsoleError::from(e));
        let created: i64 = row.try_get("created_ms").map_err(get)?;
        let last_seen: i64 = row.try_get("last_seen_ms").map_err(get)?;
        if now - last_seen > ms(cfg.session_idle_timeout)
            || now - created > ms(cfg.session_absolute_timeout)
        {
            let _ = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
                .bind(&id_hash)
                .execute(store.pool())
                .await;
            return Err(sign_in(parts));
        }
        if now - last_seen >= TOUCH_EVERY_MS.min(ms(cfg.session_idle_timeout) / 4) {
            sqlx::query("UPDATE console_sessions SET last_seen_ms = $1 WHERE id_hash = $2")
                .bind(now)
                .bind(&id_hash)
                .execute(store.pool())
                .await
                .map_err(get)?;
        }
        let roles: String = row.try_get("roles").map_err(get)?;
        Ok(Viewer {
            login: row.try_get("login").map_err(get)?,
            user_id: row.try_get("user_id").map_err(get)?,
            name: row.try_get("name").map_err(get)?,
            admin: roles.split(',').any(|r| r == "admin"),
            auditor: roles.split(',').any(|r| r == "auditor"),
            auth_time_ms: row.try_get("auth_time_ms").map_err(get)?,
            csrf: row.try_get("csrf").map_err(get)?,
            id_hash,
        })
    }
}
