//! Every change to the org, each validated like Okta validates it and each recording the
//! System Log events it produces.
//!
//! Why it exists: the management API and the control API must change the org the same way and
//! produce the same events (only the actor differs), so both call these functions.
//!
//! What it must never do: change anything before all validation has passed (bad input → clear
//! error and no state change), or change state without pushing its event.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::Value;

use super::{App, Assignment, Group, Org, RoleAssignment, User};
use crate::error::OktaError;
use crate::hooks::events::{Actor, Event, Target};

/// Standard admin role types the simulator accepts, with Okta's labels.
pub const STANDARD_ROLES: &[(&str, &str)] = &[
    ("SUPER_ADMIN", "Super Organization Administrator"),
    ("ORG_ADMIN", "Organizational Administrator"),
    ("APP_ADMIN", "Application Administrator"),
    ("USER_ADMIN", "User Administrator"),
    ("HELP_DESK_ADMIN", "Help Desk Administrator"),
    ("READ_ONLY_ADMIN", "Read Only Administrator"),
    ("MOBILE_ADMIN", "Mobile Administrator"),
    (
        "API_ACCESS_MANAGEMENT_ADMIN",
        "API Access Management Administrator",
    ),
    ("REPORT_ADMIN", "Report Administrator"),
    ("GROUP_MEMBERSHIP_ADMIN", "Group Membership Administrator"),
];

/// A role assignment request: `{"type": "USER_ADMIN"}` or
/// `{"type": "CUSTOM", "role": "cr0…", "resource-set": "iam…"}`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RoleRequest {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default, rename = "resource-set")]
    pub resource_set: Option<String>,
}

fn user_target(u: &User) -> Target {
    Target::new(&u.id, "User", &u.login, &u.display_name())
}
fn group_target(g: &Group) -> Target {
    Target::new(&g.id, "UserGroup", "unknown", &g.name)
}
fn app_target(a: &App) -> Target {
    Target::new(&a.id, "AppInstance", &a.label, &a.label)
}

impl Org {
    pub fn user_or_404(&self, id: &str) -> Result<&User, OktaError> {
        self.user_by_id_or_login(id)
            .ok_or_else(|| OktaError::not_found(id, "User"))
    }
    pub fn group_or_404(&self, id: &str) -> Result<&Group, OktaError> {
        self.groups
            .get(id)
            .ok_or_else(|| OktaError::not_found(id, "UserGroup"))
    }
    pub fn app_or_404(&self, id: &str) -> Result<&App, OktaError> {
        self.apps
            .get(id)
            .ok_or_else(|| OktaError::not_found(id, "AppInstance"))
    }

    /// Only OKTA_GROUP membership can be changed through the API.
    fn writable_group(&self, id: &str) -> Result<Group, OktaError> {
        let g = self.group_or_404(id)?.clone();
        if g.kind != "OKTA_GROUP" {
            // Okta refuses membership changes on APP_GROUP and BUILT_IN groups; the exact code
            // is unverified, 403 E0000006 is what the spec allows for this route.
            return Err(OktaError::forbidden().with_cause(format!(
                "Group membership of a {} group cannot be changed.",
                g.kind
            )));
        }
        Ok(g)
    }

    pub fn add_member(
        &mut self,
        actor: &Actor,
        group_id: &str,
        user_id: &str,
    ) -> Result<(), OktaError> {
        let g = self.writable_group(group_id)?;
        let u = self.user_or_404(user_id)?.clone();
        if self.is_member(group_id, &u.id) {
            return Ok(()); // Idempotent: no change, no event, no lastMembershipUpdated move.
        }
        let ts = self.tick();
        let gained = self.link_member(group_id, &u.id);
        self.membership_changed(
            actor,
            (&g, &u, ts),
            (
                "group.user_membership.add",
                "core.user_group_member.user_add",
                "Add user to group membership",
            ),
        );
        for app in gained {
            self.app_membership_event(actor, &app, &u, true);
        }
        Ok(())
    }

    pub fn remove_member(
        &mut self,
        actor: &Actor,
        group_id: &str,
        user_id: &str,
    ) -> Result<(), OktaError> {
        let g = self.writable_group(group_id)?;
        let u = self.user_or_404(user_id)?.clone();
        if !self.is_member(group_id, &u.id) {
            return Ok(()); // Removing a non-member: 204 and nothing happens (tolerant choice).
        }
        let ts = self.tick();
        let lost = self.unlink_member(group_id, &u.id);
        self.membership_changed(
            actor,
            (&g, &u, ts),
            (
                "group.user_membership.remove",
                "core.user_group_member.user_remove",
                "Remove user from group membership",
            ),
        );
        for (app, appuser_id) in lost {
            self.app_membership_removed_event(actor, &app, &u, &appuser_id);
        }
        Ok(())
    }

    /// After a membership change at `ts`: moves the group's `lastMembershipUpdated` and
    /// records the membership event `ev` (type, legacy type, message).
    fn membership_changed(
        &mut self,
        actor: &Actor,
        (g, u, ts): (&Group, &User, i64),
        ev: (&'static str, &'static str, &'static str),
    ) {
        if let Some(gm) = self.groups.get_mut(&g.id) {
            gm.last_membership_updated = ts;
        }
        let targets = vec![user_target(u), group_target(g)];
        self.push_event(actor, Event::new(ev.0, ev.1, ev.2, targets));
    }

    fn app_membership_event(&mut self, actor: &Actor, app_id: &str, u: &User, _add: bool) {
        let Some(a) = self.assignment(app_id, &u.id) else {
            return;
        };
        let appuser_id = a.id.clone();
        self.app_user_event(
            actor,
            (app_id, u, &appuser_id),
            (
                "application.user_membership.add",
                "app.generic.provision.assign_user_to_app",
                "Add user to application membership",
            ),
        );
    }

    fn app_membership_removed_event(
        &mut self,
        actor: &Actor,
        app_id: &str,
        u: &User,
        appuser_id: &str,
    ) {
        self.app_user_event(
            actor,
            (app_id, u, appuser_id),
            (
                "application.user_membership.remove",
                "app.generic.provision.deprovision_user_from_app",
                "Remove user from application membership",
            ),
        );
    }

    /// Records an app-membership event `ev` (type, legacy type, message) targeting the
    /// AppUser, the app and the user; nothing when the app is gone.
    fn app_user_event(
        &mut self,
        actor: &Actor,
        (app_id, u, appuser_id): (&str, &User, &str),
        ev: (&'static str, &'static str, &'static str),
    ) {
        let Some(app) = self.apps.get(app_id) else {
            return;
        };
        let targets = vec![
            Target::new(appuser_id, "AppUser", &u.login, &u.display_name()),
            app_target(app),
            user_target(u),
        ];
        self.push_event(actor, Event::new(ev.0, ev.1, ev.2, targets));
    }

    /// `POST /api/v1/apps/{appId}/users`. Returns the assignment and whether it was created.
    pub fn assign_app_user(
        &mut self,
        actor: &Actor,
        app_id: &str,
        user_id: &str,
        strict_duplicate: bool,
    ) -> Result<(Assignment, bool), OktaError> {
        self.app_or_404(app_id)?;
        let u = self.user_or_404(user_id)?.clone();
        if u.status == "DEPROVISIONED" {
            return Err(OktaError::wrong_status());
        }
        if let Some(a) = self.assignment(app_id, &u.id) {
            if a.direct {
                if strict_duplicate {
                    return Err(OktaError::new(
                        StatusCode::CONFLICT,
                        "E0000062",
                        "The specified user is already assigned to the application.",
                    ));
                }
                return Ok((a.clone(), false));
            }
        }
        let ts = self.tick();
        let id = self.new_id("0ua");
        let map = self.app_users.entry(app_id.into()).or_default();
        let existed = map.contains_key(&u.id);
        let a = map.entry(u.id.clone()).or_insert_with(|| Assignment {
            id,
            created: ts,
            last_updated: ts,
            direct: true,
            via_groups: BTreeSet::new(),
        });
        a.direct = true;
        a.last_updated = ts;
        let out = a.clone();
        if !existed {
            self.app_membership_event(actor, app_id, &u, true);
        }
        Ok((out, !existed))
    }

    /// `DELETE /api/v1/apps/{appId}/users/{userId}`: refused with 403 E0000046 while a group
    /// assignment grants the app (Okta: "Deactivate application for user forbidden.").
    pub fn unassign_app_user(
        &mut self,
        actor: &Actor,
        app_id: &str,
        user_id: &str,
    ) -> Result<(), OktaError> {
        self.app_or_404(app_id)?;
        let u = self.user_or_404(user_id)?.clone();
        let Some(a) = self.assignment(app_id, &u.id).cloned() else {
            return Err(OktaError::not_found(&u.id, "AppUser"));
        };
        if !a.via_groups.is_empty() {
            return Err(OktaError::new(
                StatusCode::FORBIDDEN,
                "E0000046",
                "Deactivate application for user forbidden.",
            )
            .with_cause("The application cannot be unassigned from the user while their group memberships grant them access"));
        }
        self.tick();
        if let Some(map) = self.app_users.get_mut(app_id) {
            map.remove(&u.id);
        }
        self.app_membership_removed_event(actor, app_id, &u, &a.id);
        Ok(())
    }

    /// Assigns a group to an app (control API): members gain GROUP-scope assignments.
    pub fn assign_app_group(
        &mut self,
        actor: &Actor,
        app_id: &str,
        group_id: &str,
    ) -> Result<(), OktaError> {
        let app = self.app_or_404(app_id)?.clone();
        let g = self.group_or_404(group_id)?.clone();
        if self
            .app_groups
            .get(app_id)
            .is_some_and(|m| m.contains_key(group_id))
        {
            return Ok(());
        }
        let ts = self.tick();
        let gained = self.link_app_group(app_id, group_id, ts);
        let ev = Event::new(
            "group.application_assignment.add",
            "app.generic.config.app_group_member_added",
            "Add assigned application to group",
            vec![app_target(&app), group_target(&g)],
        );
        self.push_event(actor, ev);
        for uid in gained {
            if let Some(u) = self.users.get(&uid).cloned() {
                self.app_membership_event(actor, app_id, &u, true);
            }
        }
        Ok(())
    }

    pub fn unassign_app_group(
        &mut self,
        actor: &Actor,
        app_id: &str,
        group_id: &str,
    ) -> Result<(), OktaError> {
        let app = self.app_or_404(app_id)?.clone();
        let g = self.group_or_404(group_id)?.clone();
        if self
            .app_groups
            .get_mut(app_id)
            .and_then(|m| m.remove(group_id))
            .is_none()
        {
            return Err(OktaError::not_found(group_id, "ApplicationGroupAssignment"));
        }
        self.tick();
        if let Some(s) = self.group_apps.get_mut(group_id) {
            s.remove(app_id);
        }
        let ev = Event::new(
            "group.application_assignment.remove",
            "app.generic.config.app_group_member_removed",
            "Remove assigned application from group",
            vec![app_target(&app), group_target(&g)],
        );
        self.push_event(actor, ev);
        let members: Vec<String> = self
            .members
            .get(group_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for uid in members {
            let lost = self.revoke_via_group(app_id, &uid, group_id);
            if let (Some(appuser), Some(u)) = (lost, self.users.get(&uid).cloned()) {
                self.app_membership_removed_event(actor, app_id, &u, &appuser);
            }
        }
        Ok(())
    }

    pub(super) fn role_assignment_id(&mut self) -> String {
        use rand::Rng;
        const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        (0..16)
            .map(|_| B32[self.rng.gen_range(0..32)] as char)
            .collect()
    }

    pub(super) fn role_label(&self, kind: &str, role: Option<&str>) -> Option<String> {
        if kind == "CUSTOM" {
            return role
                .and_then(|r| self.custom_roles.get(r))
                .map(|c| c.label.clone());
        }
        STANDARD_ROLES
            .iter()
            .find(|(t, _)| *t == kind)
            .map(|(_, l)| l.to_string())
    }

    /// `POST /api/v1/users/{userId}/roles` → 201; duplicate → 409 E0000090.
    pub fn assign_role(
        &mut self,
        actor: &Actor,
        user_id: &str,
        req: &RoleRequest,
    ) -> Result<RoleAssignment, OktaError> {
        let u = self.user_or_404(user_id)?.clone();
        let label = if req.kind == "CUSTOM" {
            let (Some(role), Some(rs)) = (req.role.as_deref(), req.resource_set.as_deref()) else {
                return Err(OktaError::validation("role, resource-set")
                    .with_cause("A CUSTOM role assignment needs both role and resource-set."));
            };
            let Some(c) = self.custom_roles.get(role) else {
                return Err(OktaError::validation("role")
                    .with_cause(format!("Unknown custom role: {role}")));
            };
            if !c.resource_sets.iter().any(|r| r == rs) {
                return Err(OktaError::validation("resource-set")
                    .with_cause(format!("Unknown resource set for this role: {rs}")));
            }
            c.label.clone()
        } else {
            self.role_label(&req.kind, None).ok_or_else(|| {
                OktaError::validation("type").with_cause(format!("Unknown role type: {}", req.kind))
            })?
        };
        if u.status == "DEPROVISIONED" {
            return Err(OktaError::wrong_status());
        }
        let dup = self.roles.get(&u.id).is_some_and(|rs| {
            rs.iter().any(|r| {
                r.kind == req.kind
                    && (req.kind != "CUSTOM"
                        || (r.role == req.role && r.resource_set == req.resource_set))
            })
        });
        if dup {
            return Err(OktaError::new(
                StatusCode::CONFLICT,
                "E0000090",
                "The role specified is already assigned to the user.",
            ));
        }
        let ts = self.tick();
        let id = if req.kind == "CUSTOM" {
            self.new_id("irb")
        } else {
            self.role_assignment_id()
        };
        let ra = RoleAssignment {
            id,
            kind: req.kind.clone(),
            label: label.clone(),
            role: req.role.clone(),
            resource_set: req.resource_set.clone(),
            created: ts,
            last_updated: ts,
        };
        self.roles.entry(u.id.clone()).or_default().push(ra.clone());
        let ev = Event::new(
            "user.account.privilege.grant",
            "core.user.admin_privilege.granted",
            "Grant user privilege",
            vec![user_target(&u)],
        )
        .with_debug("privilegeGranted", Value::String(label));
        self.push_event(actor, ev);
        Ok(ra)
    }

    /// `DELETE /api/v1/users/{userId}/roles/{roleAssignmentId}` → 204, then 404.
    pub fn unassign_role(
        &mut self,
        actor: &Actor,
        user_id: &str,
        assignment_id: &str,
    ) -> Result<(), OktaError> {
        let u = self.user_or_404(user_id)?.clone();
        let roles = self.roles.entry(u.id.clone()).or_default();
        let Some(pos) = roles.iter().position(|r| r.id == assignment_id) else {
            return Err(OktaError::not_found(assignment_id, "RoleAssignment"));
        };
        let ra = roles.remove(pos);
        self.tick();
        let ev = Event::new(
            "user.account.privilege.revoke",
            "core.user.admin_privilege.revoked",
            "Revoke user privilege",
            vec![user_target(&u)],
        )
        .with_debug("privilegeRevoked", Value::String(ra.label));
        self.push_event(actor, ev);
        Ok(())
    }
}
