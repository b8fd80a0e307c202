//! Who a signed-in person is and what their Okta groups make them: the one place both the
//! console (at sign-in) and the API (for an Okta access token) turn an Okta user into a login
//! and roles.
//!
//! Why it exists: the console derived admin and auditor from `console.admin_groups` and
//! `console.auditor_groups`; the API, accepting Okta access tokens, must derive them the same way
//! for the same person. One function ([`Directory::person`]) reads the user and their groups and
//! applies [`GroupRoles`]; [`People`] puts a brief cache in front of it for the API, where every
//! call carries a token and reading Okta per call would spend the org's rate limit.
//!
//! What it must never do: keep an answer longer than its configured age (a person removed from
//! the admin group, or deactivated, loses the role within it), cache a failure, or decide what a
//! role may do (that is [`crate::authz::decide`]'s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::directory::Directory;
use super::error::RequestError;
use crate::authz::{GroupRoles, PersonRoles};
use crate::clock::Clock;

/// A person as Okta knows them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub user_id: String,
    pub login: String,
    /// Okta's lifecycle status (`ACTIVE`, `SUSPENDED`, `DEPROVISIONED`, …).
    pub status: String,
    pub roles: PersonRoles,
}

impl Person {
    pub fn is_active(&self) -> bool {
        self.status == "ACTIVE"
    }
}

impl Directory {
    /// The person behind `login_or_id` with their roles, read from Okta now (groups fresh).
    pub async fn person(
        &self,
        login_or_id: &str,
        roles: &GroupRoles,
    ) -> Result<Person, RequestError> {
        let user = self.user(login_or_id).await?;
        let groups = self.groups_fresh(&user.id).await?;
        Ok(Person {
            roles: roles.of(&groups),
            user_id: user.id,
            login: user.login,
            status: user.status,
        })
    }
}

/// More people than this and the cache is cleared rather than grown (a bound on memory).
const MAX_CACHED: usize = 50_000;

/// [`Directory::person`] behind a cache of bounded age, keyed by Okta user id. Cheap to clone.
#[derive(Clone)]
pub struct People {
    directory: Directory,
    roles: Arc<GroupRoles>,
    clock: Clock,
    ttl_ms: i64,
    cache: Arc<Mutex<HashMap<String, (i64, Person)>>>,
}

impl People {
    pub fn new(directory: Directory, roles: GroupRoles, clock: Clock, ttl: Duration) -> Self {
        People {
            directory,
            roles: Arc::new(roles),
            clock,
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The person with Okta id `user_id`, from the cache when younger than the configured age.
    pub async fn by_id(&self, user_id: &str) -> Result<Person, RequestError> {
        let now = self.clock.now_ms();
        let hit = self.cache.lock().ok().and_then(|c| c.get(user_id).cloned());
        if let Some((at, person)) = hit {
            if now.saturating_sub(at) < self.ttl_ms {
                return Ok(person);
            }
        }
        let person = self.directory.person(user_id, &self.roles).await?;
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= MAX_CACHED {
                c.clear();
            }
            c.insert(user_id.to_string(), (now, person.clone()));
        }
        Ok(person)
    }
}
