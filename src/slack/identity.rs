//! Who a Slack user is in Okta, and which Slack user an Okta login is.
//!
//! Why it exists: every command and click acts as an Okta user (the requests domain knows no
//! one else). Slack proves the Slack user id; `users.info` gives that user's email, which must
//! be confirmed; the Okta user is found by that login (Okta logins are emails in most orgs).
//! A mapping is cached for `slack.identity_cache_ttl`, so a burst of clicks costs no Slack or
//! Okta reads, and a person deactivated in Slack or Okta is refused within that bound.
//!
//! What it must never do: map a user whose email is unconfirmed or who is deleted in Slack, or
//! guess an identity from a display name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::client::{SlackClient, SlackError};
use crate::clock::Clock;
use crate::requests::{RequestError, RequestService};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("your Slack account is deactivated")]
    SlackDeactivated,
    #[error("Slack does not know your user in this workspace")]
    UnknownSlackUser,
    #[error("your Slack profile has no confirmed email address, so the broker cannot tell who you are in Okta")]
    NoVerifiedEmail,
    #[error("no Okta user matches {0} by login or by email (or several do); ask an administrator to link your accounts")]
    NotInOkta(String),
    #[error("your Okta account ({login}) is {status}, so you cannot use the broker")]
    OktaInactive { login: String, status: String },
    #[error("Slack could not be asked who you are: {0}")]
    Slack(#[from] SlackError),
    #[error(transparent)]
    Okta(RequestError),
}

/// Bound on cached identities; past it the cache is cleared (the next reads refill it).
const MAX_CACHED: usize = 50_000;

#[derive(Clone)]
pub struct Identity {
    client: SlackClient,
    requests: RequestService,
    clock: Clock,
    ttl_ms: i64,
    /// Slack user id → (read at, Okta login).
    by_slack: Arc<Mutex<HashMap<String, (i64, String)>>>,
    /// Okta login (lowercase) → (read at, Slack user id), for direct messages.
    by_login: Arc<Mutex<HashMap<String, (i64, String)>>>,
}

impl Identity {
    pub fn new(client: SlackClient, requests: RequestService, clock: Clock, ttl: Duration) -> Self {
        Identity {
            client,
            requests,
            clock,
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            by_slack: Arc::default(),
            by_login: Arc::default(),
        }
    }

    /// The Okta login of Slack user `slack_user`.
    pub async fn okta_login(&self, slack_user: &str) -> Result<String, IdentityError> {
        let now = self.clock.now_ms();
        if let Some(login) = cached(&self.by_slack, slack_user, now, self.ttl_ms) {
            return Ok(login);
        }
        let v = match self
            .client
            .call_form("users.info", &[("user", slack_user)])
            .await
        {
            Ok(v) => v,
            Err(SlackError::Api(code)) if code == "user_not_found" => {
                return Err(IdentityError::UnknownSlackUser)
            }
            Err(e) => return Err(e.into()),
        };
        let user = v.get("user").cloned().unwrap_or(Value::Null);
        if user.get("deleted").and_then(Value::as_bool) == Some(true) {
            return Err(IdentityError::SlackDeactivated);
        }
        let email = user
            .pointer("/profile/email")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|e| !e.is_empty() && e.contains('@'))
            .ok_or(IdentityError::NoVerifiedEmail)?;
        // Slack sets `is_email_confirmed` on users; an unconfirmed address proves nothing.
        if user.get("is_email_confirmed").and_then(Value::as_bool) == Some(false) {
            return Err(IdentityError::NoVerifiedEmail);
        }
        let okta = match self.requests.directory().user(email).await {
            Ok(u) => u,
            Err(RequestError::UnknownUser(_)) | Err(RequestError::InvalidInput(_)) => {
                return Err(IdentityError::NotInOkta(email.to_string()))
            }
            Err(e) => return Err(IdentityError::Okta(e)),
        };
        if !matches!(
            okta.status.as_str(),
            "ACTIVE" | "RECOVERY" | "PASSWORD_EXPIRED" | "LOCKED_OUT"
        ) {
            return Err(IdentityError::OktaInactive {
                login: okta.login,
                status: okta.status,
            });
        }
        store(&self.by_slack, slack_user, &okta.login, now);
        store(
            &self.by_login,
            &okta.login.to_ascii_lowercase(),
            slack_user,
            now,
        );
        Ok(okta.login)
    }

    /// The Slack user id of an Okta login (for direct messages), by `users.lookupByEmail` with
    /// the login, then with the Okta profile's email.
    pub async fn slack_user(&self, okta_login: &str) -> Result<String, IdentityError> {
        let now = self.clock.now_ms();
        let key = okta_login.to_ascii_lowercase();
        if let Some(id) = cached(&self.by_login, &key, now, self.ttl_ms) {
            return Ok(id);
        }
        let mut candidates = vec![okta_login.to_string()];
        if let Ok(u) = self.requests.directory().user(okta_login).await {
            if let Some(e) = u.email.filter(|e| !e.eq_ignore_ascii_case(okta_login)) {
                candidates.push(e);
            }
        }
        for email in candidates {
            match self
                .client
                .call_form("users.lookupByEmail", &[("email", &email)])
                .await
            {
                Ok(v) => {
                    if let Some(id) = v.pointer("/user/id").and_then(Value::as_str) {
                        store(&self.by_login, &key, id, now);
                        return Ok(id.to_string());
                    }
                }
                Err(SlackError::Api(code)) if code == "users_not_found" => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IdentityError::NotInOkta(okta_login.to_string()))
    }
}

fn cached(
    m: &Mutex<HashMap<String, (i64, String)>>,
    key: &str,
    now: i64,
    ttl: i64,
) -> Option<String> {
    let g = m.lock().ok()?;
    let (at, v) = g.get(key)?;
    (now.saturating_sub(*at) < ttl).then(|| v.clone())
}

fn store(m: &Mutex<HashMap<String, (i64, String)>>, key: &str, value: &str, now: i64) {
    if let Ok(mut g) = m.lock() {
        if g.len() >= MAX_CACHED {
            g.clear();
        }
        g.insert(key.to_string(), (now, value.to_string()));
    }
}
