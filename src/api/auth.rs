//! API authentication: static bearer tokens mapped to roles, and Okta access tokens for people.
//!
//! Why it exists: every `/v1` call changes or reveals access, so each one must say who is
//! calling and what they may do (invariant I7). Static tokens are configured only as SHA-256
//! hashes, so neither the config file nor a log line can leak a usable credential. A bearer that
//! looks like a JWT, when `[access_tokens]` is on, is an Okta access token instead: the verifier
//! (`okta::jwt`, keys cached) checks it, the route's scope ([`super::scopes`]) must be in it, and
//! the person is the token's Okta user, read through `requests::people` (login, status, and
//! admin/auditor from the same groups the console uses), cached briefly.
//!
//! What it must never do: compare a token with `==` (timing leaks), log a presented token, fall
//! back from a refused JWT to the static tokens (a JWT is never a configured secret), or decide
//! what a role may do: a [`Caller`] becomes an [`Actor`] and [`crate::authz`] decides.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::authz::Actor;
use crate::error::{ApiError, ErrorCode};
use crate::okta::jwt::{AccessTokenVerifier, Rejection, TokenError};
use crate::requests::people::People;
use crate::requests::RequestError;

/// Roles are the authorization domain's; re-exported here, where tokens are configured.
pub use crate::authz::Role;

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A configured static token (bots, portals, operators).
    Static,
    /// An Okta access token: the person's Okta user id and the OAuth client they signed in with.
    Okta { user_id: String, client_id: String },
}

/// A caller whose token matched a configured hash, or whose Okta access token verified.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's configured name, or the person's Okta login: the actor in the audit log.
    pub name: String,
    pub roles: Vec<Role>,
    pub credential: Credential,
}

impl Caller {
    /// The actor the domain sees: the name and roles, through the API. Whether the caller may
    /// do anything is [`crate::authz::decide`]'s answer, never the handler's.
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
    /// An Okta access token refused by the verifier or for its scopes.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token's user is no longer active in Okta.
    #[error("the person behind the access token is not active in Okta")]
    Inactive,
    /// Okta could not say who the token's user is.
    #[error("cannot read the person behind the access token from Okta")]
    Person(#[source] RequestError),
}

impl ErrorCode for AuthError {
    fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Invalid | AuthError::Inactive => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::Token(e) => match e.rejection() {
                Rejection::Unauthorized => StatusCode::UNAUTHORIZED,
                Rejection::Forbidden => StatusCode::FORBIDDEN,
                Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
            AuthError::Person(e) => e.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "unauthenticated",
            AuthError::Invalid | AuthError::Inactive => "invalid_token",
            AuthError::Token(e) => match e.rejection() {
                Rejection::Unauthorized => "invalid_token",
                Rejection::Forbidden => "insufficient_scope",
                Rejection::Unavailable => "okta_keys_unavailable",
            },
            AuthError::Person(e) => e.code(),
        }
    }
}

/// Okta access tokens: the verifier and who their users are.
#[derive(Clone)]
pub struct OktaTokens {
    pub verifier: AccessTokenVerifier,
    pub people: People,
}

/// The configured tokens, decoded once at start, and the Okta access token verifier when
/// `[access_tokens]` is on.
#[derive(Default)]
pub struct Authenticator {
    tokens: Vec<(String, Vec<Role>, [u8; 32])>,
    okta: Option<OktaTokens>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .field("okta", &self.okta.is_some())
            .finish()
    }
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
        Authenticator { tokens, okta: None }
    }

    /// Also accepts Okta access tokens.
    pub fn with_okta(mut self, okta: OktaTokens) -> Self {
        self.okta = Some(okta);
        self
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
                credential: Credential::Static,
            })
            .ok_or(AuthError::Invalid)
    }

    /// Authenticates a bearer presented for `scope`: an Okta access token when it looks like a
    /// JWT and access tokens are on, else a static token.
    pub async fn authenticate_for(
        &self,
        presented: &str,
        scope: &str,
    ) -> Result<Caller, AuthError> {
        match &self.okta {
            Some(okta) if looks_like_jwt(presented) => okta.caller(presented, scope).await,
            _ => self.authenticate(presented),
        }
    }
}

impl OktaTokens {
    async fn caller(&self, token: &str, scope: &str) -> Result<Caller, AuthError> {
        let t = self.verifier.verify(token).await?;
        // The scope before Okta is asked anything: a token that may not do this costs no read.
        t.require_scopes(&[scope])?;
        let person = self.people.by_id(&t.user_id).await.map_err(|e| match e {
            RequestError::UnknownUser(_) => AuthError::Inactive,
            e => AuthError::Person(e),
        })?;
        if !person.is_active() {
            return Err(AuthError::Inactive);
        }
        // A person's token acts with their admin role only when it was issued for admin work
        // (`jit.admin`). The route's scope alone is not enough: `jit.request` routes (extend,
        // end) take an admin branch in the rules, and a terminal's token, which never asks for
        // `jit.admin`, must not carry it there.
        let mut roles = person.roles.roles();
        if t.require_scopes(&[super::scopes::ADMIN]).is_err() {
            roles.retain(|r| *r != Role::Admin);
        }
        Ok(Caller {
            name: person.login,
            roles,
            credential: Credential::Okta {
                user_id: person.user_id,
                client_id: t.client_id,
            },
        })
    }
}

/// Three base64url segments whose header starts with `{"` (`eyJ`): a JWT's shape. Static tokens
/// are operator-chosen strings; one shaped like a JWT would be read as one when access tokens are
/// on (docs/api.md says so).
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ")
        && token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
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
        let token = bearer_token(&parts.headers)?;
        // The route's pattern, not the concrete path: `/v1/requests/{id}/approve`. Without one
        // (never for a routed handler) the strictest scope applies.
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let scope = super::scopes::required(&parts.method, &path);
        Ok(state.authenticator().authenticate_for(token, scope).await?)
    }
}

/// The caller a request's `Authorization: Bearer` header names: [`AuthError::Missing`] without
/// one, [`AuthError::Invalid`] for a token no configured hash matches. For handlers that answer
/// anonymous callers too (`/readyz`), which call it themselves instead of extracting a [`Caller`].
/// Static tokens only: the readiness details are for operators' tokens, not people's.
pub fn caller_of(
    headers: &axum::http::HeaderMap,
    auth: &Authenticator,
) -> Result<Caller, AuthError> {
    auth.authenticate(bearer_token(headers)?)
}

/// The token of an `Authorization: Bearer` header: [`AuthError::Missing`] without one or with an
/// empty one, [`AuthError::Invalid`] for a header that is not text.
fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, AuthError> {
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
    Ok(token)
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
            credential: Credential::Static,
        };
        let a = c.actor();
        assert_eq!(a.channel, crate::authz::Channel::Api);
        assert!(a.has(Role::Auditor), "admin implies every role");
        let c = Caller {
            name: "y".into(),
            roles: vec![Role::Requester],
            credential: Credential::Static,
        };
        assert!(!c.actor().has(Role::Auditor));
    }

    #[test]
    fn only_jwt_shaped_bearers_go_to_the_verifier() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt("test-admin-token"));
        assert!(!looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0"));
        assert!(!looks_like_jwt("eyJ.a b.c"));
    }
}
