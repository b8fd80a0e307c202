//! API authentication: bearer tokens mapped to roles.
//!
//! Why it exists: every `/v1` call changes or reveals access, so each one must say who is
//! calling and what they may do (invariant I7). Tokens are configured only as SHA-256 hashes, so
//! neither the config file nor a log line can leak a usable credential.
//!
//! What it must never do: compare a token with `==` (timing leaks), log a presented token, or
//! decide what a role may do: a [`Caller`] becomes an [`Actor`] and [`crate::authz`] decides.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::authz::Actor;
use crate::error::{ApiError, ErrorCode};

/// Roles are the authorization domain's; re-exported here, where tokens are configured.
pub use crate::authz::Role;

/// A caller whose token matched a configured hash.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's configured name: the actor recorded in the audit log.
    pub name: String,
    pub roles: Vec<Role>,
}

impl Caller {
    /// The actor the domain sees: the token's name and roles, through the API. Whether the
    /// caller may do anything is [`crate::authz::decide`]'s answer, never the handler's.
    pub fn actor(&self) -> Actor {
        Actor::api(self.name.clone(), &self.roles)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the token is not valid")]
    Invalid,
}

impl ErrorCode for AuthError {
    fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Invalid => StatusCode::UNAUTHORIZED,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "unauthenticated",
            AuthError::Invalid => "invalid_token",
        }
    }
}

/// The configured tokens, decoded once at start.
#[derive(Debug, Default)]
pub struct Authenticator {
    tokens: Vec<(String, Vec<Role>, [u8; 32])>,
}

impl Authenticator {
    pub fn from_config(tokens: &[TokenConfig]) -> Self {
        let tokens = tokens
            .iter()
            .filter_map(|t| {
                // Config validation already refused malformed hashes; a failure here is skipped
                // rather than trusted.
                let bytes = hex::decode(&t.sha256).ok()?;
                let arr: [u8; 32] = bytes.try_into().ok()?;
                Some((t.name.clone(), t.roles.clone(), arr))
            })
            .collect();
        Authenticator { tokens }
    }

    /// Checks a presented token against every configured hash. The loop visits all entries so
    /// the time taken does not reveal which one matched.
    pub fn authenticate(&self, presented: &str) -> Result<Caller, AuthError> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&(String, Vec<Role>, [u8; 32])> = None;
        for entry in &self.tokens {
            if bool::from(entry.2.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        found
            .map(|(name, roles, _)| Caller {
                name: name.clone(),
                roles: roles.clone(),
            })
            .ok_or(AuthError::Invalid)
    }
}

pub use crate::config::hash_token;

/// Anything that can hand out the authenticator (the application state).
pub trait HasAuthenticator {
    fn authenticator(&self) -> &Arc<Authenticator>;
}

impl<S> FromRequestParts<S> for Caller
where
    S: HasAuthenticator + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(caller_of(&parts.headers, state.authenticator())?)
    }
}

/// The caller a request's `Authorization: Bearer` header names: [`AuthError::Missing`] without
/// one, [`AuthError::Invalid`] for a token no configured hash matches. For handlers that answer
/// anonymous callers too (`/readyz`), which call it themselves instead of extracting a [`Caller`].
pub fn caller_of(
    headers: &axum::http::HeaderMap,
    auth: &Authenticator,
) -> Result<Caller, AuthError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let value = header.to_str().map_err(|_| AuthError::Invalid)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AuthError::Missing)?
        .trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    auth.authenticate(token)
}

/// The API channel's section of the configuration (`[auth]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub tokens: Vec<TokenConfig>,
}

/// An API token as configured: only its SHA-256 is ever stored, so a leaked config file does not
/// leak a credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub roles: Vec<Role>,
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::from_config(&[TokenConfig {
            name: "a".into(),
            roles: vec![Role::Auditor],
            sha256: hash_token("s3cret"),
        }])
    }

    #[test]
    fn matches_only_the_right_token() {
        let a = auth();
        assert_eq!(a.authenticate("s3cret").unwrap().name, "a");
        assert!(matches!(a.authenticate("s3cret "), Err(AuthError::Invalid)));
        assert!(matches!(a.authenticate(""), Err(AuthError::Invalid)));
    }

    #[test]
    fn a_caller_acts_with_its_token_roles_through_the_api() {
        let c = Caller {
            name: "x".into(),
            roles: vec![Role::Admin],
        };
        let a = c.actor();
        assert_eq!(a.channel, crate::authz::Channel::Api);
        assert!(a.has(Role::Auditor), "admin implies every role");
        let c = Caller {
            name: "y".into(),
            roles: vec![Role::Requester],
        };
        assert!(!c.actor().has(Role::Auditor));
    }
}
