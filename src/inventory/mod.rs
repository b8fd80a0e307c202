//! The inventory: what the sync last saw in Okta (users, groups, apps, memberships, app
//! assignments, admin roles), each access row saying why it is there: `grant` (a live grant of
//! ours explains it), `standing` (allowed without one) or `unexplained`.
//!
//! Why it exists: drift reconciliation, access reviews and the console all need one answer to
//! "who can reach what, and why" without asking Okta each time. The sync writes it
//! (`crate::sync`); this module owns the tables, their writes and the read API.
//!
//! What it must never do: change Okta or a grant (it is a record of what was seen, never a
//! cause), or write outside the sync's fenced transactions (every write function takes the
//! caller's `Tx`, which the sync opened with its fencing check).

pub mod repo;

use serde::{Deserialize, Serialize};

/// Why a user holds an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// A live grant of ours explains it (`grant_id`).
    Grant,
    /// Allowed without a grant: the resource is not `jit_only`, the user is in its
    /// `allow_standing`, the access is inherited through a group, or an unmanaged object.
    Standing,
    /// Neither: a `jit_only` resource's member with no live grant and no standing allowance.
    Unexplained,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Grant => "grant",
            Why::Standing => "standing",
            Why::Unexplained => "unexplained",
        }
    }

    pub fn parse(s: &str) -> Option<Why> {
        match s {
            "grant" => Some(Why::Grant),
            "standing" => Some(Why::Standing),
            "unexplained" => Some(Why::Unexplained),
            _ => None,
        }
    }
}

/// A user as last seen in Okta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryUser {
    pub user_id: String,
    pub login: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub department: Option<String>,
    pub manager: Option<String>,
    /// The profile's `managerId` (migration 0011).
    pub manager_id: Option<String>,
    pub status: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// One (user, access) row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRow {
    pub user_id: String,
    /// `okta_group`, `okta_app` or `okta_role`.
    pub kind: String,
    /// Group id, app id, standard role type or custom role id.
    pub okta_id: String,
    /// Custom roles only; empty otherwise.
    pub resource_set: String,
    /// App assignment scope (`USER`/`GROUP`) or role assignment id.
    pub scope: Option<String>,
    pub why: Why,
    pub grant_id: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    /// When the object had last been listed before this row first appeared (`None`: never).
    pub prev_listed_at: Option<i64>,
}
