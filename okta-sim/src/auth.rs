//! Who is calling and what they may do: `SSWS` API tokens and OAuth `Bearer` access tokens.
//!
//! Why it exists: the broker must be tested against Okta's authorisation model — a read-only
//! token is refused every write (403 E0000006), a group/app admin cannot touch admin roles, a
//! bad or expired token gets 401 E0000011 — and every change is attributed to the token's
//! principal, which is how the broker tells its own changes from out-of-band ones.
//!
//! What it must never do: log or echo a token, compare tokens in variable time (tokens are
//! looked up by hash-map key, then compared with `subtle`), or let a write through on ReadOnly.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use crate::config::PermissionLevel;
use crate::error::OktaError;
use crate::hooks::events::Actor;
use crate::sim::Sim;

/// Every OAuth scope the simulator understands (`okta.<area>.read|manage`).
pub const ALL_SCOPES: &[&str] = &[
    "okta.users.read",
    "okta.users.manage",
    "okta.groups.read",
    "okta.groups.manage",
    "okta.apps.read",
    "okta.apps.manage",
    "okta.roles.read",
    "okta.roles.manage",
    "okta.eventHooks.read",
    "okta.eventHooks.manage",
];

/// The resource area a route touches (selects both the admin permission and the OAuth scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Users,
    Groups,
    Apps,
    Roles,
}

impl Area {
    fn scope_name(self) -> &'static str {
        match self {
            Area::Users => "users",
            Area::Groups => "groups",
            Area::Apps => "apps",
            Area::Roles => "roles",
        }
    }
}

/// The authenticated caller of a management route.
#[derive(Debug, Clone)]
pub struct Principal {
    pub level: PermissionLevel,
    pub actor: Actor,
    /// OAuth scopes; `None` for SSWS tokens (which carry their admin's full permissions).
    pub scopes: Option<Vec<String>>,
}

impl Principal {
    pub fn require_read(&self, area: Area) -> Result<(), OktaError> {
        self.require_scope(area, false)
    }

    pub fn require_write(&self, area: Area) -> Result<(), OktaError> {
        let allowed = match self.level {
            PermissionLevel::ReadOnly => false,
            PermissionLevel::GroupAppAdmin => area != Area::Roles,
            PermissionLevel::SuperAdmin => true,
        };
        if !allowed {
            return Err(OktaError::forbidden());
        }
        self.require_scope(area, true)
    }

    fn require_scope(&self, area: Area, write: bool) -> Result<(), OktaError> {
        let Some(scopes) = &self.scopes else {
            return Ok(());
        };
        let manage = format!("okta.{}.manage", area.scope_name());
        let read = format!("okta.{}.read", area.scope_name());
        let ok = scopes
            .iter()
            .any(|s| *s == manage || (!write && *s == read));
        if ok {
            Ok(())
        } else {
            Err(OktaError::forbidden()
                .with_cause("The access token provided does not contain the required scopes."))
        }
    }
}

impl FromRequestParts<Arc<Sim>> for Principal {
    type Rejection = OktaError;

    async fn from_request_parts(
        parts: &mut Parts,
        sim: &Arc<Sim>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(OktaError::invalid_token)?;
        let (scheme, value) = split_scheme(header).ok_or_else(OktaError::invalid_token)?;
        if scheme.eq_ignore_ascii_case("SSWS") {
            let t = sim.tokens.get(value).ok_or_else(OktaError::invalid_token)?;
            if !bool::from(t.token.as_bytes().ct_eq(value.as_bytes())) {
                return Err(OktaError::invalid_token());
            }
            Ok(Principal {
                level: t.level,
                actor: sim.actor_for(&t.principal_id),
                scopes: None,
            })
        } else if scheme.eq_ignore_ascii_case("Bearer") {
            sim.oauth_principal(value)
                .ok_or_else(OktaError::invalid_token)
        } else {
            Err(OktaError::invalid_token())
        }
    }
}

/// Splits `Authorization` into scheme and credential. Okta accepts `SSWS<token>` without the
/// space as well as `SSWS <token>` (Okta's Python SDK 3.x sends the former), so an `SSWS`
/// prefix needs no separator; every other scheme does.
fn split_scheme(header: &str) -> Option<(&str, &str)> {
    let header = header.trim();
    if header.len() > 4 && header.is_char_boundary(4) && header[..4].eq_ignore_ascii_case("SSWS") {
        let (scheme, rest) = header.split_at(4);
        let value = rest.trim();
        return (!value.is_empty()).then_some((scheme, value));
    }
    let (scheme, value) = header.split_once(' ')?;
    let value = value.trim();
    (!value.is_empty()).then_some((scheme, value))
}

/// Checks that a request's `Content-Length` is present for PUT/POST (Okta answers 411 when it
/// is missing). `Content-Length: 0` is fine, and so is a chunked body.
pub fn has_length(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(axum::http::header::CONTENT_LENGTH)
        || headers.contains_key(axum::http::header::TRANSFER_ENCODING)
}
