//! The org held in memory: users, groups, apps, memberships, app assignments, admin roles.
//!
//! Why it exists: the simulator must be stateful (a PUT member then a GET members must agree),
//! fast for 50 000-user orgs (ordered maps give cursor pagination in O(log n + page)) and
//! deterministic (ids from a seeded RNG). App assignments are kept materialised per app, with
//! the direct flag and the set of groups that grant them, so a membership change updates
//! group-based assignments the way Okta does.
//!
//! What it must never do: be locked across an await or a network call (it sits behind a std
//! Mutex), or change without recording the events the change produces (`pending`).

mod lifecycle;
mod load;
mod mutate;
pub mod render;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand_chacha::ChaCha8Rng;

pub use mutate::RoleRequest;

use crate::hooks::events::{Actor, Event};

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub status: String,
    pub created: i64,
    pub activated: Option<i64>,
    pub status_changed: Option<i64>,
    pub last_updated: i64,
    pub password_changed: Option<i64>,
    pub login: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    /// The profile's `manager` (a display name, as Okta's base profile holds it).
    pub manager: Option<String>,
    /// The profile's `managerId` (the manager's login or id, as the org fills it).
    pub manager_id: Option<String>,
}

impl User {
    pub fn display_name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
            .trim()
            .to_string()
    }
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub description: Option<String>,
    pub created: i64,
    pub last_updated: i64,
    pub last_membership_updated: i64,
}

#[derive(Debug, Clone)]
pub struct App {
    pub id: String,
    pub name: String,
    pub label: String,
    pub status: String,
    pub created: i64,
    pub last_updated: i64,
}

/// One user's effective assignment to one app.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The `0ua…` id System Log uses for the AppUser target.
    pub id: String,
    pub created: i64,
    pub last_updated: i64,
    /// Assigned individually (scope USER).
    pub direct: bool,
    /// Assigned through these groups (scope GROUP while non-empty).
    pub via_groups: BTreeSet<String>,
}

impl Assignment {
    /// GROUP wins when both exist: Okta refuses to remove such an assignment per user
    /// (E0000046), which is what a client must learn from the scope.
    pub fn scope(&self) -> &'static str {
        if self.via_groups.is_empty() {
            "USER"
        } else {
            "GROUP"
        }
    }
}

#[derive(Debug, Clone)]
pub struct RoleAssignment {
    pub id: String,
    pub kind: String,
    pub label: String,
    pub role: Option<String>,
    pub resource_set: Option<String>,
    pub created: i64,
    pub last_updated: i64,
}

#[derive(Debug, Clone)]
pub struct CustomRole {
    pub id: String,
    pub label: String,
    pub resource_sets: Vec<String>,
}

/// The whole org. All fields are plain data; locking is the caller's business.
#[derive(Debug)]
pub struct Org {
    pub users: BTreeMap<String, User>,
    pub logins: HashMap<String, String>,
    pub groups: BTreeMap<String, Group>,
    pub apps: BTreeMap<String, App>,
    pub members: HashMap<String, BTreeSet<String>>,
    pub user_groups: HashMap<String, BTreeSet<String>>,
    /// app id → user id → assignment.
    pub app_users: HashMap<String, BTreeMap<String, Assignment>>,
    /// app id → group id → assignment time.
    pub app_groups: HashMap<String, BTreeMap<String, i64>>,
    /// group id → app ids the group is assigned to.
    pub group_apps: HashMap<String, BTreeSet<String>>,
    pub roles: HashMap<String, Vec<RoleAssignment>>,
    pub custom_roles: BTreeMap<String, CustomRole>,
    /// Times a user's sessions were cleared (for tests).
    pub sessions_cleared: HashMap<String, u64>,
    pub rng: ChaCha8Rng,
    /// Events produced by changes, drained by the caller after each operation.
    pub pending: Vec<Event>,
    last_ts: i64,
}

impl Org {
    /// A timestamp that never goes backwards and always moves on: two changes within one
    /// millisecond still get distinct `lastMembershipUpdated` values, which delta sync needs.
    pub fn tick(&mut self) -> i64 {
        let now = crate::ids::now_ms().max(self.last_ts + 1);
        self.last_ts = now;
        now
    }

    pub fn new_id(&mut self, prefix: &str) -> String {
        crate::ids::object_id(prefix, &mut self.rng)
    }

    /// Finds a user by id or (case-insensitive) login.
    pub fn user_by_id_or_login(&self, key: &str) -> Option<&User> {
        self.users.get(key).or_else(|| {
            self.logins
                .get(&key.to_ascii_lowercase())
                .and_then(|id| self.users.get(id))
        })
    }

    pub fn is_member(&self, group_id: &str, user_id: &str) -> bool {
        self.members
            .get(group_id)
            .is_some_and(|m| m.contains(user_id))
    }

    pub fn assignment(&self, app_id: &str, user_id: &str) -> Option<&Assignment> {
        self.app_users.get(app_id).and_then(|m| m.get(user_id))
    }

    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.pending)
    }

    fn push_event(&mut self, actor: &Actor, mut event: Event) {
        event.actor = actor.clone();
        event.published = self.last_ts.max(crate::ids::now_ms());
        self.pending.push(event);
    }
}
