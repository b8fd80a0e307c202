//! Creating and deleting objects, and user/app lifecycle transitions.
//!
//! Why it exists: the broker reacts to `user.lifecycle.*` events (revoke everything a
//! deactivated, suspended or deleted user holds), and the recorded Okta flows create users,
//! groups and apps before using them.
//!
//! What it must never do: allow a transition Okta refuses (suspend a non-ACTIVE user, delete an
//! app still ACTIVE is tolerated, see below) without the matching error.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;

use super::{App, Group, Org, User};
use crate::error::OktaError;
use crate::hooks::events::{Actor, Event, Target};

fn user_target(u: &User) -> Target {
    Target::new(&u.id, "User", &u.login, &u.display_name())
}

impl Org {
    pub fn create_user(
        &mut self,
        actor: &Actor,
        login: &str,
        first: &str,
        last: &str,
        email: Option<&str>,
        activate: bool,
    ) -> Result<User, OktaError> {
        if login.trim().is_empty() {
            return Err(OktaError::validation(
                "login: The field cannot be left blank",
            ));
        }
        if self.logins.contains_key(&login.to_ascii_lowercase()) {
            return Err(OktaError::validation("login").with_cause(
                "login: An object with this field already exists in the current organization",
            ));
        }
        let ts = self.tick();
        let id = self.new_id("00u");
        let u = User {
            id: id.clone(),
            status: if activate {
                "ACTIVE".into()
            } else {
                "STAGED".into()
            },
            created: ts,
            activated: activate.then_some(ts),
            status_changed: activate.then_some(ts),
            last_updated: ts,
            password_changed: Some(ts),
            login: login.into(),
            first_name: first.into(),
            last_name: last.into(),
            email: email.unwrap_or(login).into(),
            manager: None,
            manager_id: None,
        };
        self.logins.insert(login.to_ascii_lowercase(), id.clone());
        self.users.insert(id.clone(), u.clone());
        // Every user is in the BUILT_IN Everyone group(s).
        let built_in: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.kind == "BUILT_IN")
            .map(|g| g.id.clone())
            .collect();
        for g in built_in {
            self.link_member(&g, &id);
            if let Some(gm) = self.groups.get_mut(&g) {
                gm.last_membership_updated = ts;
            }
        }
        let ev = Event::new(
            "user.lifecycle.create",
            "core.user.config.user_creation.success",
            "Create Okta user",
            vec![user_target(&u)],
        );
        self.push_event(actor, ev);
        if activate {
            let ev = Event::new(
                "user.lifecycle.activate",
                "core.user.config.user_activated",
                "Activate Okta user",
                vec![user_target(&u)],
            );
            self.push_event(actor, ev);
        }
        Ok(u)
    }

    fn set_status(
        &mut self,
        actor: &Actor,
        id: &str,
        status: &str,
        ev: (&'static str, &'static str, &'static str),
    ) -> Result<User, OktaError> {
        let ts = self.tick();
        let uid = self.user_or_404(id)?.id.clone();
        let Some(u) = self.users.get_mut(&uid) else {
            return Err(OktaError::not_found(id, "User"));
        };
        u.status = status.into();
        u.status_changed = Some(ts);
        u.last_updated = ts;
        if status == "ACTIVE" && u.activated.is_none() {
            u.activated = Some(ts);
        }
        let u = u.clone();
        self.push_event(actor, Event::new(ev.0, ev.1, ev.2, vec![user_target(&u)]));
        Ok(u)
    }

    /// Sets the profile's `manager` (display name) and `managerId`, as an admin editing the
    /// profile does; `lastUpdated` moves so a delta user sync reads the change.
    pub fn set_manager(
        &mut self,
        actor: &Actor,
        id: &str,
        manager_id: Option<&str>,
        manager: Option<&str>,
    ) -> Result<User, OktaError> {
        let ts = self.tick();
        let uid = self.user_or_404(id)?.id.clone();
        let Some(u) = self.users.get_mut(&uid) else {
            return Err(OktaError::not_found(id, "User"));
        };
        u.manager_id = manager_id.map(str::to_string);
        u.manager = manager.map(str::to_string);
        u.last_updated = ts;
        let u = u.clone();
        self.push_event(
            actor,
            Event::new(
                "user.account.update_profile",
                "core.user.config.profile_update.success",
                "Update user profile for Okta",
                vec![user_target(&u)],
            ),
        );
        Ok(u)
    }

    pub fn activate_user(&mut self, actor: &Actor, id: &str) -> Result<User, OktaError> {
        let u = self.user_or_404(id)?;
        if u.status == "ACTIVE" {
            return Err(OktaError::wrong_status()
                .with_cause("Activation failed because the user is already active"));
        }
        let ev = if u.status == "DEPROVISIONED" {
            (
                "user.lifecycle.reactivate",
                "core.user.config.user_reactivated",
                "Reactivate Okta user",
            )
        } else {
            (
                "user.lifecycle.activate",
                "core.user.config.user_activated",
                "Activate Okta user",
            )
        };
        self.set_status(actor, id, "ACTIVE", ev)
    }

    pub fn deactivate_user(&mut self, actor: &Actor, id: &str) -> Result<User, OktaError> {
        let u = self.user_or_404(id)?;
        if u.status == "DEPROVISIONED" {
            return Ok(u.clone());
        }
        self.set_status(
            actor,
            id,
            "DEPROVISIONED",
            (
                "user.lifecycle.deactivate",
                "core.user.config.user_deactivated",
                "Deactivate Okta user",
            ),
        )
    }

    pub fn suspend_user(&mut self, actor: &Actor, id: &str) -> Result<User, OktaError> {
        self.set_status_from(
            actor,
            id,
            ("ACTIVE", "SUSPENDED"),
            "Cannot suspend a user that is not active",
            (
                "user.lifecycle.suspend",
                "core.user.config.user_suspended",
                "Suspend Okta user",
            ),
        )
    }

    pub fn unsuspend_user(&mut self, actor: &Actor, id: &str) -> Result<User, OktaError> {
        self.set_status_from(
            actor,
            id,
            ("SUSPENDED", "ACTIVE"),
            "Cannot unsuspend a user that is not suspended",
            (
                "user.lifecycle.unsuspend",
                "core.user.config.user_unsuspended",
                "Unsuspend Okta user",
            ),
        )
    }

    /// Moves a user from status `from` to `to`; from any other status it is 400 E0000001
    /// with `cause` and nothing changes.
    fn set_status_from(
        &mut self,
        actor: &Actor,
        id: &str,
        (from, to): (&str, &str),
        cause: &str,
        ev: (&'static str, &'static str, &'static str),
    ) -> Result<User, OktaError> {
        if self.user_or_404(id)?.status != from {
            return Err(OktaError::new(
                StatusCode::BAD_REQUEST,
                "E0000001",
                "Api validation failed: status",
            )
            .with_cause(cause));
        }
        self.set_status(actor, id, to, ev)
    }

    /// `DELETE /api/v1/users/{id}`: deactivates a user that is not yet DEPROVISIONED (as
    /// Okta does), deletes a DEPROVISIONED one with all its memberships, assignments and roles.
    pub fn delete_user(&mut self, actor: &Actor, id: &str) -> Result<(), OktaError> {
        let u = self.user_or_404(id)?.clone();
        if u.status != "DEPROVISIONED" {
            self.deactivate_user(actor, id)?;
            return Ok(());
        }
        let ts = self.tick();
        for g in self.user_groups.remove(&u.id).unwrap_or_default() {
            if let Some(m) = self.members.get_mut(&g) {
                m.remove(&u.id);
            }
            if let Some(gm) = self.groups.get_mut(&g) {
                gm.last_membership_updated = ts;
            }
        }
        for map in self.app_users.values_mut() {
            map.remove(&u.id);
        }
        self.roles.remove(&u.id);
        self.users.remove(&u.id);
        self.logins.remove(&u.login.to_ascii_lowercase());
        let ev = Event::new(
            "user.lifecycle.delete.initiated",
            "core.user.config.user_deleted",
            "Delete Okta user",
            vec![user_target(&u)],
        );
        self.push_event(actor, ev);
        Ok(())
    }

    pub fn clear_sessions(&mut self, actor: &Actor, id: &str) -> Result<(), OktaError> {
        let u = self.user_or_404(id)?.clone();
        self.tick();
        *self.sessions_cleared.entry(u.id.clone()).or_default() += 1;
        let ev = Event::new(
            "user.session.clear",
            "core.user_auth.session_clear",
            "Clear user session",
            vec![user_target(&u)],
        );
        self.push_event(actor, ev);
        Ok(())
    }

    pub fn create_group(
        &mut self,
        actor: &Actor,
        name: &str,
        description: Option<String>,
        kind: &str,
    ) -> Result<Group, OktaError> {
        if !["OKTA_GROUP", "APP_GROUP", "BUILT_IN"].contains(&kind) {
            return Err(OktaError::validation("type"));
        }
        let ts = self.tick();
        let id = self.new_id("00g");
        let g = Group {
            id: id.clone(),
            kind: kind.into(),
            name: name.into(),
            description,
            created: ts,
            last_updated: ts,
            last_membership_updated: ts,
        };
        self.groups.insert(id.clone(), g.clone());
        self.members.insert(id, BTreeSet::new());
        let t = Target::new(&g.id, "UserGroup", "unknown", &g.name);
        self.push_event(
            actor,
            Event::new(
                "group.lifecycle.create",
                "core.user_group.created",
                "Create Okta group",
                vec![t],
            ),
        );
        Ok(g)
    }

    pub fn delete_group(&mut self, actor: &Actor, id: &str) -> Result<(), OktaError> {
        let g = self.group_or_404(id)?.clone();
        if g.kind != "OKTA_GROUP" {
            return Err(
                OktaError::forbidden().with_cause(format!("A {} group cannot be deleted.", g.kind))
            );
        }
        self.tick();
        let apps: Vec<String> = self
            .group_apps
            .get(id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for app in apps {
            self.unassign_app_group(actor, &app, id)?;
        }
        for u in self.members.remove(id).unwrap_or_default() {
            if let Some(s) = self.user_groups.get_mut(&u) {
                s.remove(id);
            }
        }
        self.group_apps.remove(id);
        self.groups.remove(id);
        let t = Target::new(&g.id, "UserGroup", "unknown", &g.name);
        self.push_event(
            actor,
            Event::new(
                "group.lifecycle.delete",
                "core.user_group.deleted",
                "Delete Okta group",
                vec![t],
            ),
        );
        Ok(())
    }

    pub fn create_app(
        &mut self,
        actor: &Actor,
        name: &str,
        label: &str,
        activate: bool,
    ) -> Result<App, OktaError> {
        if label.trim().is_empty() {
            return Err(OktaError::validation(
                "label: The field cannot be left blank",
            ));
        }
        let ts = self.tick();
        let id = self.new_id("0oa");
        let a = App {
            id: id.clone(),
            name: name.into(),
            label: label.into(),
            status: if activate {
                "ACTIVE".into()
            } else {
                "INACTIVE".into()
            },
            created: ts,
            last_updated: ts,
        };
        self.apps.insert(id.clone(), a.clone());
        self.app_users.insert(id.clone(), BTreeMap::new());
        self.app_groups.insert(id, BTreeMap::new());
        let t = Target::new(&a.id, "AppInstance", &a.label, &a.label);
        self.push_event(
            actor,
            Event::new(
                "application.lifecycle.create",
                "app.generic.config.app_created",
                "Add application",
                vec![t],
            ),
        );
        Ok(a)
    }

    pub fn set_app_status(
        &mut self,
        actor: &Actor,
        id: &str,
        active: bool,
    ) -> Result<(), OktaError> {
        self.app_or_404(id)?;
        let ts = self.tick();
        let Some(a) = self.apps.get_mut(id) else {
            return Err(OktaError::not_found(id, "AppInstance"));
        };
        let status = if active { "ACTIVE" } else { "INACTIVE" };
        if a.status == status {
            return Ok(());
        }
        a.status = status.into();
        a.last_updated = ts;
        let t = Target::new(&a.id, "AppInstance", &a.label, &a.label);
        let ev = if active {
            Event::new(
                "application.lifecycle.activate",
                "app.generic.config.app_activated",
                "Activate application",
                vec![t],
            )
        } else {
            Event::new(
                "application.lifecycle.deactivate",
                "app.generic.config.app_deactivated",
                "Deactivate application",
                vec![t],
            )
        };
        self.push_event(actor, ev);
        Ok(())
    }

    /// Deleting an ACTIVE app: Okta wants it deactivated first (the recordings always do);
    /// the simulator tolerates it (unverified which error Okta gives).
    pub fn delete_app(&mut self, actor: &Actor, id: &str) -> Result<(), OktaError> {
        let a = self.app_or_404(id)?.clone();
        self.tick();
        for g in self.app_groups.remove(id).unwrap_or_default().into_keys() {
            if let Some(s) = self.group_apps.get_mut(&g) {
                s.remove(id);
            }
        }
        self.app_users.remove(id);
        self.apps.remove(id);
        let t = Target::new(&a.id, "AppInstance", &a.label, &a.label);
        self.push_event(
            actor,
            Event::new(
                "application.lifecycle.delete",
                "app.generic.config.app_deleted",
                "Delete application",
                vec![t],
            ),
        );
        Ok(())
    }
}
