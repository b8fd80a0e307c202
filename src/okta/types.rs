//! The typed view of the Okta objects the broker reads and changes, and their wire forms.
//!
//! Why it exists: callers (grants, sync, reviews) work with small, stable structs; Okta's JSON
//! is large and grows. Only the fields the broker decides on are kept.
//!
//! What it must never do: fail on a field Okta adds (unknown fields are ignored), or invent a
//! value for a field Okta left out that a decision depends on (those stay `Option`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who is waiting: revocations first, then grants, then reads and sync. Within one priority,
/// first come first served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Revoke,
    Grant,
    Read,
}

impl Priority {
    /// 0 is served first.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Priority::Revoke => 0,
            Priority::Grant => 1,
            Priority::Read => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Revoke => "revoke",
            Priority::Grant => "grant",
            Priority::Read => "read",
        }
    }
}

/// `Revoke > Grant > Read`: the order in which waiting calls are admitted.
impl Ord for Priority {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.rank().cmp(&self.rank())
    }
}

impl PartialOrd for Priority {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The outcome of a removal. Both are success (I4); the difference is for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Removal {
    Removed,
    AlreadyGone,
}

/// An admin role to assign: a standard role by type, or a custom role bound to a resource set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleSpec {
    Standard {
        role_type: String,
    },
    Custom {
        role_id: String,
        resource_set: String,
    },
}

impl RoleSpec {
    /// Whether an existing assignment is this role.
    pub fn matches(&self, a: &RoleAssignment) -> bool {
        match self {
            RoleSpec::Standard { role_type } => a.role_type == *role_type && a.role_id.is_none(),
            RoleSpec::Custom {
                role_id,
                resource_set,
            } => {
                a.role_type == "CUSTOM"
                    && a.role_id.as_deref() == Some(role_id)
                    && a.resource_set.as_deref() == Some(resource_set)
            }
        }
    }

    pub(crate) fn body(&self) -> serde_json::Value {
        match self {
            RoleSpec::Standard { role_type } => serde_json::json!({ "type": role_type }),
            RoleSpec::Custom {
                role_id,
                resource_set,
            } => serde_json::json!({
                "type": "CUSTOM",
                "role": role_id,
                "resource-set": resource_set,
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleAssignment {
    pub id: String,
    pub role_type: String,
    pub role_id: Option<String>,
    pub resource_set: Option<String>,
    pub status: String,
    /// True when the assignment existed before our call (409 E0000090 answered with it).
    pub already_assigned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub status: String,
    pub login: String,
    pub email: Option<String>,
}

/// A user with the profile fields access reviews show, as the inventory sync reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    pub id: String,
    pub status: String,
    pub login: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub department: Option<String>,
    /// The profile's `manager` (a name or login, as the org fills it).
    pub manager: Option<String>,
    /// The profile's `managerId` (the manager's login or Okta id, as the org fills it): what
    /// the reviews' manager rule prefers, since a display name names no one unambiguously.
    pub manager_id: Option<String>,
    pub last_updated: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub id: String,
    /// `OKTA_GROUP`, `APP_GROUP` or `BUILT_IN`; only `OKTA_GROUP` membership can be changed.
    pub group_type: String,
    pub name: String,
    pub last_membership_updated: Option<DateTime<Utc>>,
}

impl Group {
    pub fn membership_is_writable(&self) -> bool {
        self.group_type == "OKTA_GROUP"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    pub id: String,
    pub label: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppUser {
    pub id: String,
    /// `USER` (assigned directly, removable per user) or `GROUP` (inherited through a group).
    pub scope: String,
    pub status: String,
}

/// What the broker's Okta credential may do, found at start by [`super::OktaClient::probe_capabilities`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub read: bool,
    pub provision_groups: bool,
    pub provision_apps: bool,
    pub manage_roles: bool,
    /// The Okta principal the credential acts as (user id for SSWS, client id for OAuth):
    /// event hooks whose actor is this principal are the broker's own changes.
    pub principal_id: Option<String>,
}

/// Parameters of `GET /api/v1/groups`; all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupQuery {
    /// SCIM filter expression, e.g. `type eq "OKTA_GROUP"`.
    pub search: Option<String>,
    pub filter: Option<String>,
    /// Name prefix.
    pub q: Option<String>,
}

// ---- wire forms -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(crate) struct WireUser {
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    profile: WireUserProfile,
}

#[derive(Debug, Default, Deserialize)]
struct WireUserProfile {
    #[serde(default)]
    login: String,
    #[serde(default)]
    email: Option<String>,
}

impl From<WireUser> for User {
    fn from(w: WireUser) -> Self {
        User {
            id: w.id,
            status: w.status,
            login: w.profile.login,
            email: w.profile.email,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireUserRecord {
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    last_updated: Option<DateTime<Utc>>,
    #[serde(default)]
    profile: WireFullProfile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireFullProfile {
    #[serde(default)]
    login: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    manager: Option<String>,
    #[serde(default)]
    manager_id: Option<String>,
}

impl From<WireUserRecord> for UserRecord {
    fn from(w: WireUserRecord) -> Self {
        UserRecord {
            id: w.id,
            status: w.status,
            login: w.profile.login,
            email: w.profile.email,
            first_name: w.profile.first_name,
            last_name: w.profile.last_name,
            department: w.profile.department,
            manager: w.profile.manager,
            manager_id: w.profile.manager_id,
            last_updated: w.last_updated,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireGroup {
    id: String,
    #[serde(rename = "type", default)]
    group_type: String,
    #[serde(default)]
    profile: WireGroupProfile,
    #[serde(default)]
    last_membership_updated: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Deserialize)]
struct WireGroupProfile {
    #[serde(default)]
    name: String,
}

impl From<WireGroup> for Group {
    fn from(w: WireGroup) -> Self {
        Group {
            id: w.id,
            group_type: w.group_type,
            name: w.profile.name,
            last_membership_updated: w.last_membership_updated,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireApp {
    id: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    status: String,
}

impl From<WireApp> for App {
    fn from(w: WireApp) -> Self {
        App {
            id: w.id,
            label: w.label,
            status: w.status,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireAppUser {
    id: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    status: String,
}

impl From<WireAppUser> for AppUser {
    fn from(w: WireAppUser) -> Self {
        AppUser {
            id: w.id,
            scope: w.scope,
            status: w.status,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireRole {
    id: String,
    #[serde(rename = "type", default)]
    role_type: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(rename = "resource-set", default)]
    resource_set: Option<String>,
    #[serde(default)]
    status: String,
}

impl WireRole {
    pub(crate) fn into_assignment(self, already_assigned: bool) -> RoleAssignment {
        RoleAssignment {
            id: self.id,
            role_type: self.role_type,
            role_id: self.role,
            resource_set: self.resource_set,
            status: self.status,
            already_assigned,
        }
    }
}
