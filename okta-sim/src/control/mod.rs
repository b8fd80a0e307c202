//! The control side of the simulator: out-of-band admin changes, counters, state, faults,
//! rate limits and event hooks — as a Rust API (`Admin`) and as HTTP under `/_sim/`.
//!
//! Why it exists: tests must change Okta behind the broker's back (someone adds a member by
//! hand, a user is deactivated) and then watch the broker react through event hooks. Changes
//! made here go through the same code as the management API and produce the same events, with
//! the named admin as actor.
//!
//! What it must never do: bypass validation (a control change Okta would refuse is refused),
//! or require management tokens (it is a test harness, bound to loopback).

mod http;
mod oauth;

use std::sync::Arc;

/// Every control route (`/_sim/…`).
pub fn router() -> axum::Router<std::sync::Arc<crate::sim::Sim>> {
    http::router().merge(oauth::router())
}

use crate::error::OktaError;
use crate::hooks::events::Actor;
use crate::sim::Sim;
use crate::state::{render, Org, RoleRequest};

/// The default out-of-band actor.
pub const DEFAULT_ADMIN: &str = "admin@example.com";

/// A named Okta admin making changes in the Admin Console.
pub struct Admin {
    sim: Arc<Sim>,
    actor: Actor,
}

/// The actor for a named admin: the org's user with that login or id when one exists, else a
/// synthetic admin whose id is derived from the name (stable across runs).
pub(crate) fn admin_actor(sim: &Sim, name: &str) -> Actor {
    let org = sim.org();
    if let Some(u) = org.user_by_id_or_login(name) {
        return Actor::user(&u.id, &u.login, &u.display_name());
    }
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let id = format!("00uadm{:014x}", h & 0x00ff_ffff_ffff_ffff);
    Actor::user(&id, name, &format!("Okta Admin ({name})"))
}

/// Deletes a user outright, deactivating first when needed, as the Admin Console does.
pub(crate) fn delete_user_outright(o: &mut Org, actor: &Actor, uid: &str) -> Result<(), OktaError> {
    o.deactivate_user(actor, uid)?;
    o.delete_user(actor, uid)
}

impl Admin {
    pub(crate) fn new(sim: Arc<Sim>, name: &str) -> Self {
        let actor = admin_actor(&sim, name);
        Self { sim, actor }
    }

    /// Runs one org change with this admin as actor.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut Org, &Actor) -> Result<T, OktaError>,
    ) -> Result<T, OktaError> {
        self.sim.mutate(|o| f(o, &self.actor))
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn add_member(&self, group_id: &str, user_id: &str) -> Result<(), OktaError> {
        self.change(|o, a| o.add_member(a, group_id, user_id))
    }

    pub fn remove_member(&self, group_id: &str, user_id: &str) -> Result<(), OktaError> {
        self.change(|o, a| o.remove_member(a, group_id, user_id))
    }

    pub fn assign_app(&self, app_id: &str, user_id: &str) -> Result<(), OktaError> {
        self.change(|o, a| o.assign_app_user(a, app_id, user_id, false))
            .map(|_| ())
    }

    pub fn unassign_app(&self, app_id: &str, user_id: &str) -> Result<(), OktaError> {
        self.change(|o, a| o.unassign_app_user(a, app_id, user_id))
    }

    pub fn assign_app_group(&self, app_id: &str, group_id: &str) -> Result<(), OktaError> {
        self.change(|o, a| o.assign_app_group(a, app_id, group_id))
    }

    pub fn unassign_app_group(&self, app_id: &str, group_id: &str) -> Result<(), OktaError> {
        self.change(|o, a| o.unassign_app_group(a, app_id, group_id))
    }

    /// Assigns a standard role; returns the assignment id.
    pub fn assign_role(&self, user_id: &str, role_type: &str) -> Result<String, OktaError> {
        let req = RoleRequest {
            kind: role_type.into(),
            role: None,
            resource_set: None,
        };
        self.change(|o, a| o.assign_role(a, user_id, &req))
            .map(|r| r.id)
    }

    pub fn assign_custom_role(
        &self,
        user_id: &str,
        role: &str,
        resource_set: &str,
    ) -> Result<String, OktaError> {
        let req = RoleRequest {
            kind: "CUSTOM".into(),
            role: Some(role.into()),
            resource_set: Some(resource_set.into()),
        };
        self.change(|o, a| o.assign_role(a, user_id, &req))
            .map(|r| r.id)
    }

    pub fn unassign_role(&self, user_id: &str, assignment_id: &str) -> Result<(), OktaError> {
        self.change(|o, a| o.unassign_role(a, user_id, assignment_id))
    }

    pub fn deactivate_user(&self, user_id: &str) -> Result<(), OktaError> {
        self.change(|o, a| o.deactivate_user(a, user_id))
            .map(|_| ())
    }

    pub fn suspend_user(&self, user_id: &str) -> Result<(), OktaError> {
        self.change(|o, a| o.suspend_user(a, user_id)).map(|_| ())
    }

    pub fn unsuspend_user(&self, user_id: &str) -> Result<(), OktaError> {
        self.change(|o, a| o.unsuspend_user(a, user_id)).map(|_| ())
    }

    pub fn activate_user(&self, user_id: &str) -> Result<(), OktaError> {
        self.change(|o, a| o.activate_user(a, user_id)).map(|_| ())
    }

    /// Deletes a user outright (deactivating first when needed, as the Admin Console does).
    pub fn delete_user(&self, user_id: &str) -> Result<(), OktaError> {
        self.change(|o, a| delete_user_outright(o, a, user_id))
    }

    /// Creates an ACTIVE user; returns its id.
    pub fn create_user(&self, login: &str, first: &str, last: &str) -> Result<String, OktaError> {
        self.change(|o, a| o.create_user(a, login, first, last, None, true))
            .map(|u| u.id)
    }

    /// Creates an ACTIVE user whose profile email differs from its login (orgs whose logins are
    /// not email addresses); returns its id.
    pub fn create_user_with_email(
        &self,
        login: &str,
        email: &str,
        first: &str,
        last: &str,
    ) -> Result<String, OktaError> {
        self.change(|o, a| o.create_user(a, login, first, last, Some(email), true))
            .map(|u| u.id)
    }

    /// Sets a user's profile `managerId` and `manager` (display name); `None` clears them.
    pub fn set_manager(
        &self,
        user_id: &str,
        manager_id: Option<&str>,
        manager: Option<&str>,
    ) -> Result<(), OktaError> {
        self.change(|o, a| o.set_manager(a, user_id, manager_id, manager))
            .map(|_| ())
    }

    /// Creates a group of `kind` (OKTA_GROUP, APP_GROUP); returns its id.
    pub fn create_group(&self, name: &str, kind: &str) -> Result<String, OktaError> {
        self.change(|o, a| o.create_group(a, name, None, kind))
            .map(|g| g.id)
    }

    /// Creates an ACTIVE bookmark app; returns its id.
    pub fn create_app(&self, label: &str) -> Result<String, OktaError> {
        self.change(|o, a| o.create_app(a, "bookmark", label, true))
            .map(|a| a.id)
    }
}

/// The whole org as JSON (`GET /_sim/state`).
pub fn dump(sim: &Sim) -> serde_json::Value {
    let org = sim.org();
    let base = &sim.base_url;
    let users: Vec<_> = org.users.values().map(|u| render::user(base, u)).collect();
    let groups: Vec<_> = org
        .groups
        .values()
        .map(|g| {
            let mut v = render::group(base, &org, g, false);
            v["members"] = serde_json::json!(org
                .members
                .get(&g.id)
                .map(|m| m.iter().collect::<Vec<_>>())
                .unwrap_or_default());
            v
        })
        .collect();
    let apps: Vec<_> = org
        .apps
        .values()
        .map(|a| {
            let mut v = render::app(base, a);
            let users: serde_json::Map<String, serde_json::Value> = org
                .app_users
                .get(&a.id)
                .map(|m| {
                    m.iter()
                        .map(|(u, asg)| (u.clone(), asg.scope().into()))
                        .collect()
                })
                .unwrap_or_default();
            v["assignments"] = serde_json::Value::Object(users);
            v["groups"] = serde_json::json!(org
                .app_groups
                .get(&a.id)
                .map(|m| m.keys().collect::<Vec<_>>())
                .unwrap_or_default());
            v
        })
        .collect();
    let roles: serde_json::Map<String, serde_json::Value> = org
        .roles
        .iter()
        .filter(|(_, rs)| !rs.is_empty())
        .map(|(u, rs)| {
            (
                u.clone(),
                rs.iter().map(|r| render::role(base, u, r)).collect(),
            )
        })
        .collect();
    serde_json::json!({ "users": users, "groups": groups, "apps": apps, "roles": roles })
}
