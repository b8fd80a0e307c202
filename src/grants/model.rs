//! The grant record and its states.
//!
//! Lifecycle: `requested → provisioning → active → revoking → revoked`, or `failed` from
//! `provisioning`, `active` or `revoking`. A `failed` grant is retried periodically (I8) and ends
//! `revoked` once its access is confirmed gone. `active → removed_externally` when someone other
//! than the broker removed the access in Okta (an event hook or the sync saw it): terminal, like
//! `revoked`, and nothing is re-added or removed for it.

use serde::{Deserialize, Serialize};

use crate::policy::{ResourceKind, RoleTarget};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    Requested,
    Provisioning,
    Active,
    Revoking,
    Revoked,
    Failed,
    RemovedExternally,
}

impl GrantState {
    pub const ALL: [GrantState; 7] = [
        GrantState::Requested,
        GrantState::Provisioning,
        GrantState::Active,
        GrantState::Revoking,
        GrantState::Revoked,
        GrantState::Failed,
        GrantState::RemovedExternally,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Requested => "requested",
            GrantState::Provisioning => "provisioning",
            GrantState::Active => "active",
            GrantState::Revoking => "revoking",
            GrantState::Revoked => "revoked",
            GrantState::Failed => "failed",
            GrantState::RemovedExternally => "removed_externally",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        GrantState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the grant is over: nothing of it is left to add or remove.
    pub fn is_terminal(self) -> bool {
        matches!(self, GrantState::Revoked | GrantState::RemovedExternally)
    }
}

/// One grant, as stored. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    /// Okta user id (`00u…`), resolved when the grant was created.
    pub user_id: String,
    pub user_login: String,
    /// The policy resource's name; kind, Okta id and resource set are copied so a grant can be
    /// expired even after its resource left the policy.
    pub resource: String,
    pub kind: ResourceKind,
    pub okta_id: String,
    pub resource_set: Option<String>,
    pub state: GrantState,
    /// `None` until the broker looked at Okta under the access lock: then no Okta write was ever
    /// attempted for this grant. `Some(true)`: the user held the access before, not through
    /// another of our grants; expiry leaves it alone (I5).
    pub standing: Option<bool>,
    pub duration_ms: i64,
    pub reason: String,
    pub requested_by: String,
    pub request_id: Option<String>,
    pub end_sessions: bool,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    /// While `provisioning`: provisional (creation + duration). Once active: activation +
    /// duration (+ extensions). After an early revoke: the time of the revoke.
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    pub role_assignment_id: Option<String>,
    pub last_error: Option<String>,
    pub next_retry_at: Option<i64>,
    pub attempts: i64,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
    pub version: i64,
}

impl Grant {
    pub fn subject(&self) -> String {
        format!("grant:{}", self.id)
    }

    pub fn role_target(&self) -> Option<RoleTarget> {
        RoleTarget::of(self.kind, &self.okta_id, self.resource_set.as_deref())
    }

    /// The Okta access this grant gives.
    pub fn access(&self) -> super::access::Access {
        super::access::Access::new(
            &self.user_id,
            self.kind,
            &self.okta_id,
            self.resource_set.as_deref(),
        )
    }

    /// The per-(user, resource) lock name. Keyed on the Okta object, not the policy name, so two
    /// policy resources pointing at the same group still serialize.
    pub fn access_key(&self) -> String {
        access_key(
            &self.user_id,
            self.kind,
            &self.okta_id,
            self.resource_set.as_deref(),
        )
    }
}

pub fn access_key(user_id: &str, kind: ResourceKind, okta_id: &str, rs: Option<&str>) -> String {
    // An empty resource set is no resource set (as `COALESCE(resource_set, '')` in SQL).
    match rs.filter(|s| !s.is_empty()) {
        Some(rs) => format!("{}:{}:{}:{}", user_id, kind.as_str(), okta_id, rs),
        None => format!("{}:{}:{}", user_id, kind.as_str(), okta_id),
    }
}
