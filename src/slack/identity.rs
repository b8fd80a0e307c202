//! Who a Slack user is in Okta, and which Slack user an Okta login is.
//!
//! Why it exists: every command and click acts as an Okta user (the requests domain knows no
//! one else). Slack proves the Slack user id; `users.info` gives that user's email, which must
//! be confirmed; the Okta user is found by that login (Okta logins are emails in most orgs).
//! A mapping is cached for `slack.identity_cache_ttl`, so a burst of clicks costs no Slack or
//! Okta reads, and a person deactivated in Slack or Okta is refused within that bound.
//!
//! Only our own people: `users.info` must say the user is not a stranger (`is_stranger`, a
//! Slack Connect user of another organisation), belongs to a configured workspace
//! (`slack.team_ids`, or the organisation `slack.enterprise_id`; with neither, the workspace the
//! request came from), is not a guest (`is_restricted`, `is_ultra_restricted`) unless
//! `slack.allow_guests`, and has `is_email_confirmed: true` (absent counts as unconfirmed). The
//! same rules apply to the user a direct message is sent to.
//!
//! What it must never do: map a user whose email is unconfirmed, who is deleted in Slack, a
//! stranger or a member of another workspace, or guess an identity from a display name.

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
    #[error(
        "your Slack account belongs to another workspace or organisation than this broker serves"
    )]
    ForeignUser,
    #[error("guest accounts of this Slack workspace cannot use the broker")]
    Guest,
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

/// Who may be mapped at all: from `[slack]`.
#[derive(Debug, Clone, Default)]
pub struct Members {
    pub team_ids: Vec<String>,
    pub enterprise_id: String,
    pub allow_guests: bool,
}

impl Members {
    /// Checks a `users.info` / `users.lookupByEmail` user object. `request_team`: the workspace
    /// the request came from, the only one accepted when none is configured (`None` for direct
    /// messages, where only the configured workspaces are checked).
    fn check(&self, user: &Value, request_team: Option<&str>) -> Result<(), IdentityError> {
        let flag = |k: &str| user.get(k).and_then(Value::as_bool) == Some(true);
        if flag("deleted") {
            return Err(IdentityError::SlackDeactivated);
        }
        if flag("is_stranger") {
            return Err(IdentityError::ForeignUser);
        }
        let team = user.get("team_id").and_then(Value::as_str);
        let ours = if !self.team_ids.is_empty() {
            team.is_some_and(|t| self.team_ids.iter().any(|x| x == t))
        } else if !self.enterprise_id.is_empty() {
            user.pointer("/enterprise_user/enterprise_id")
                .and_then(Value::as_str)
                == Some(self.enterprise_id.as_str())
        } else {
            match request_team {
                Some(r) => team == Some(r),
                None => true,
            }
        };
        if !ours {
            return Err(IdentityError::ForeignUser);
        }
        if !self.allow_guests && (flag("is_restricted") || flag("is_ultra_restricted")) {
            return Err(IdentityError::Guest);
        }
        Ok(())
    }
}

/// A cached mapping: the Okta login and the Slack workspace it was read in.
#[derive(Clone)]
struct Mapped {
    login: String,
    team: Option<String>,
}

#[derive(Clone)]
pub struct Identity {
    client: SlackClient,
    requests: RequestService,
    clock: Clock,
    ttl_ms: i64,
    members: Members,
    /// Slack user id → (read at, mapping).
    by_slack: Arc<Mutex<HashMap<String, (i64, Mapped)>>>,
    /// Okta login (lowercase) → (read at, Slack user id), for direct messages.
    by_login: Arc<Mutex<HashMap<String, (i64, String)>>>,
}

impl Identity {
    pub fn new(
        client: SlackClient,
        requests: RequestService,
        clock: Clock,
        ttl: Duration,
        members: Members,
    ) -> Self {
        Identity {
            client,
            requests,
            clock,
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            members,
            by_slack: Arc::default(),
            by_login: Arc::default(),
        }
    }

    /// The Okta login of Slack user `slack_user`, acting in workspace `team` (the request's).
    pub async fn okta_login(
        &self,
        slack_user: &str,
        team: Option<&str>,
    ) -> Result<String, IdentityError> {
        let now = self.clock.now_ms();
        if let Some(m) = cached(&self.by_slack, slack_user, now, self.ttl_ms) {
            // Read in another workspace than this request's: only our rules may say yes.
            if self.members.team_ids.is_empty()
                && self.members.enterprise_id.is_empty()
                && team.is_some()
                && m.team.as_deref() != team
            {
                return Err(IdentityError::ForeignUser);
            }
            return Ok(m.login);
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
        self.members.check(&user, team)?;
        let email = user
            .pointer("/profile/email")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|e| !e.is_empty() && e.contains('@'))
            .ok_or(IdentityError::NoVerifiedEmail)?;
        // Slack sets `is_email_confirmed` on users; an unconfirmed address proves nothing, and
        // neither does a user object without the field.
        if user.get("is_email_confirmed").and_then(Value::as_bool) != Some(true) {
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
        let mapped = Mapped {
            login: okta.login.clone(),
            team: user
                .get("team_id")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        store(&self.by_slack, slack_user, mapped, now);
        store(
            &self.by_login,
            &okta.login.to_ascii_lowercase(),
            slack_user.to_string(),
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
                    let user = v.get("user").cloned().unwrap_or(Value::Null);
                    if let Some(id) = user.get("id").and_then(Value::as_str) {
                        // A message about someone's access goes only to one of our people.
                        self.members.check(&user, None)?;
                        store(&self.by_login, &key, id.to_string(), now);
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

fn cached<T: Clone>(
    m: &Mutex<HashMap<String, (i64, T)>>,
    key: &str,
    now: i64,
    ttl: i64,
) -> Option<T> {
    let g = m.lock().ok()?;
    let (at, v) = g.get(key)?;
    (now.saturating_sub(*at) < ttl).then(|| v.clone())
}

fn store<T>(m: &Mutex<HashMap<String, (i64, T)>>, key: &str, value: T, now: i64) {
    if let Ok(mut g) = m.lock() {
        if g.len() >= MAX_CACHED {
            g.clear();
        }
        g.insert(key.to_string(), (now, value));
    }
}
