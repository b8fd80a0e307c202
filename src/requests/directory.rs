//! Who people are in Okta and which groups they are in, for eligibility and approval checks.
//!
//! Why it exists: "may this person request / approve this?" is decided from Okta group
//! membership, and asking Okta on every request would spend the org's rate limit on reads.
//! Requesters' groups are cached per user for a bounded age (`requests.group_cache_ttl`): an
//! entry past half its age is still served but refreshed in the background; one past its age is
//! read again before answering. Approvers are always read fresh, at the moment they decide: a
//! person removed from the approver group must not approve from a cache.
//!
//! What it must never do: serve a membership older than the configured age, or grant anything
//! (it only answers questions).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::RequestError;
use crate::clock::Clock;
use crate::okta::{OktaClient, Priority, User};
use crate::policy::Principals;
use crate::tasks::Tasks;

type Groups = Arc<HashSet<String>>;

#[derive(Clone)]
pub struct Directory {
    okta: OktaClient,
    clock: Clock,
    ttl_ms: i64,
    cache: Arc<Mutex<HashMap<String, (i64, Groups)>>>,
    refreshing: Arc<Mutex<HashSet<String>>>,
    tasks: Option<Tasks>,
}

/// More users than this and the cache is cleared rather than grown (a bound on memory; the
/// next reads refill it).
const MAX_CACHED_USERS: usize = 50_000;

impl Directory {
    pub fn new(okta: OktaClient, clock: Clock, ttl: Duration, tasks: Option<Tasks>) -> Self {
        Directory {
            okta,
            clock,
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            cache: Arc::new(Mutex::new(HashMap::new())),
            refreshing: Arc::new(Mutex::new(HashSet::new())),
            tasks,
        }
    }

    /// The Okta user behind a login or id (or, failing both, the one user with that email),
    /// which must exist.
    pub async fn user(&self, login_or_id: &str) -> Result<User, RequestError> {
        let u = login_or_id.trim();
        if u.is_empty() || u.len() > 255 || u.chars().any(|c| c.is_control() || c == '/') {
            return Err(RequestError::InvalidInput(
                "user must be an Okta user id or login".into(),
            ));
        }
        if let Some(user) = self.okta.get_user(u, Priority::Grant).await? {
            return Ok(user);
        }
        // Not a login or id: in orgs where logins are not email addresses, a person (a Slack
        // user, say) is known by their email. It must name exactly one user.
        if u.contains('@') {
            use futures::TryStreamExt;
            let found: Vec<User> = self
                .okta
                .find_users_by_email(u, Priority::Grant)
                .try_collect()
                .await?;
            let mut live = found.into_iter().filter(|f| f.status != "DEPROVISIONED");
            if let (Some(one), None) = (live.next(), live.next()) {
                return Ok(one);
            }
        }
        Err(RequestError::UnknownUser(u.to_string()))
    }

    /// Group ids of `user_id`, from the cache when young enough.
    pub async fn groups_cached(&self, user_id: &str) -> Result<Groups, RequestError> {
        let now = self.clock.now_ms();
        let hit = self.cache.lock().ok().and_then(|c| c.get(user_id).cloned());
        if let Some((at, groups)) = hit {
            let age = now.saturating_sub(at);
            if age < self.ttl_ms {
                if age >= self.ttl_ms / 2 {
                    self.refresh_in_background(user_id);
                }
                return Ok(groups);
            }
        }
        self.groups_fresh(user_id).await
    }

    /// Group ids of `user_id`, read from Okta now (and cached for requesters).
    pub async fn groups_fresh(&self, user_id: &str) -> Result<Groups, RequestError> {
        let ids = self.okta.user_group_ids(user_id, Priority::Grant).await?;
        let groups: Groups = Arc::new(ids.into_iter().collect());
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= MAX_CACHED_USERS {
                c.clear();
            }
            c.insert(user_id.to_string(), (self.clock.now_ms(), groups.clone()));
        }
        Ok(groups)
    }

    fn refresh_in_background(&self, user_id: &str) {
        let Some(tasks) = &self.tasks else { return };
        let fresh = self
            .refreshing
            .lock()
            .map(|mut r| r.insert(user_id.to_string()))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        let (me, uid) = (self.clone(), user_id.to_string());
        tasks.spawn("requests-group-refresh", async move {
            if let Err(e) = me.groups_fresh(&uid).await {
                tracing::debug!(user = %uid, error = %e, "group membership refresh failed");
            }
            if let Ok(mut r) = me.refreshing.lock() {
                r.remove(&uid);
            }
        });
    }
}

/// Whether `user` is named in `p` (by login or id) or is in one of its groups.
pub fn is_named(p: &Principals, user: &User, groups: &HashSet<String>) -> bool {
    p.names(&user.login, &user.id, groups)
}
