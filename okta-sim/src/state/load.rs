//! Building an `Org` from a `Seed`, checking references as it goes.
//!
//! Why it exists: a seed with a dangling id (a member that is not a user) must fail loudly at
//! start, not produce an org that answers inconsistently later.
//!
//! What it must never do: emit events (seeding is not a change anyone made).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{App, Assignment, CustomRole, Group, Org, RoleAssignment, User};
use crate::error::SimError;
use crate::seed::Seed;

const STATUSES: &[&str] = &[
    "STAGED",
    "PROVISIONED",
    "ACTIVE",
    "RECOVERY",
    "PASSWORD_EXPIRED",
    "LOCKED_OUT",
    "SUSPENDED",
    "DEPROVISIONED",
];

impl Org {
    pub fn from_seed(seed: &Seed, rng_seed: u64) -> Result<Org, SimError> {
        let t0 = crate::ids::now_ms() - 86_400_000;
        let mut org = Org {
            users: BTreeMap::new(),
            logins: HashMap::new(),
            groups: BTreeMap::new(),
            apps: BTreeMap::new(),
            members: HashMap::new(),
            user_groups: HashMap::new(),
            app_users: HashMap::new(),
            app_groups: HashMap::new(),
            group_apps: HashMap::new(),
            roles: HashMap::new(),
            custom_roles: BTreeMap::new(),
            sessions_cleared: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
            pending: Vec::new(),
            last_ts: t0,
        };
        for u in &seed.users {
            if !STATUSES.contains(&u.status.as_str()) {
                return Err(SimError::Seed(format!(
                    "user {}: unknown status {}",
                    u.id, u.status
                )));
            }
            let login_key = u.login.to_ascii_lowercase();
            if org.users.contains_key(&u.id) || org.logins.contains_key(&login_key) {
                return Err(SimError::Seed(format!(
                    "duplicate user {} / {}",
                    u.id, u.login
                )));
            }
            let active = u.status != "STAGED";
            org.logins.insert(login_key, u.id.clone());
            org.users.insert(
                u.id.clone(),
                User {
                    id: u.id.clone(),
                    status: u.status.clone(),
                    created: t0,
                    activated: active.then_some(t0),
                    status_changed: active.then_some(t0),
                    last_updated: t0,
                    password_changed: Some(t0),
                    login: u.login.clone(),
                    first_name: u.first_name.clone(),
                    last_name: u.last_name.clone(),
                    email: u.email.clone().unwrap_or_else(|| u.login.clone()),
                    manager: None,
                    manager_id: None,
                },
            );
        }
        for g in &seed.groups {
            if !["OKTA_GROUP", "APP_GROUP", "BUILT_IN"].contains(&g.kind.as_str()) {
                return Err(SimError::Seed(format!(
                    "group {}: unknown type {}",
                    g.id, g.kind
                )));
            }
            if org.groups.contains_key(&g.id) {
                return Err(SimError::Seed(format!("duplicate group {}", g.id)));
            }
            org.groups.insert(
                g.id.clone(),
                Group {
                    id: g.id.clone(),
                    kind: g.kind.clone(),
                    name: g.name.clone(),
                    description: g.description.clone(),
                    created: t0,
                    last_updated: t0,
                    last_membership_updated: t0,
                },
            );
            org.members.insert(g.id.clone(), BTreeSet::new());
            // A BUILT_IN group (Everyone) holds every user, whatever the seed lists.
            let members: Vec<String> = if g.kind == "BUILT_IN" {
                org.users.keys().cloned().collect()
            } else {
                g.members.clone()
            };
            for m in members {
                if !org.users.contains_key(&m) {
                    return Err(SimError::Seed(format!(
                        "group {}: unknown member {m}",
                        g.id
                    )));
                }
                org.link_member(&g.id, &m);
            }
        }
        for c in &seed.custom_roles {
            org.custom_roles.insert(
                c.id.clone(),
                CustomRole {
                    id: c.id.clone(),
                    label: c.label.clone(),
                    resource_sets: c.resource_sets.clone(),
                },
            );
        }
        for a in &seed.apps {
            if org.apps.contains_key(&a.id) {
                return Err(SimError::Seed(format!("duplicate app {}", a.id)));
            }
            org.apps.insert(
                a.id.clone(),
                App {
                    id: a.id.clone(),
                    name: a.name.clone().unwrap_or_else(|| "bookmark".into()),
                    label: a.label.clone(),
                    status: a.status.clone(),
                    created: t0,
                    last_updated: t0,
                },
            );
            org.app_users.insert(a.id.clone(), BTreeMap::new());
            org.app_groups.insert(a.id.clone(), BTreeMap::new());
            for u in &a.users {
                if !org.users.contains_key(u) {
                    return Err(SimError::Seed(format!("app {}: unknown user {u}", a.id)));
                }
                let id = org.new_id("0ua");
                let entry = org.app_users.entry(a.id.clone()).or_default();
                entry
                    .entry(u.clone())
                    .or_insert_with(|| Assignment {
                        id,
                        created: t0,
                        last_updated: t0,
                        direct: true,
                        via_groups: BTreeSet::new(),
                    })
                    .direct = true;
            }
            for g in &a.groups {
                if !org.groups.contains_key(g) {
                    return Err(SimError::Seed(format!("app {}: unknown group {g}", a.id)));
                }
                org.link_app_group(&a.id, g, t0);
            }
        }
        for r in &seed.roles {
            if !org.users.contains_key(&r.user_id) {
                return Err(SimError::Seed(format!("role: unknown user {}", r.user_id)));
            }
            let id = r.id.clone().unwrap_or_else(|| org.role_assignment_id());
            let label = org
                .role_label(&r.kind, r.role.as_deref())
                .ok_or_else(|| SimError::Seed(format!("role: unknown type {}", r.kind)))?;
            org.roles
                .entry(r.user_id.clone())
                .or_default()
                .push(RoleAssignment {
                    id,
                    kind: r.kind.clone(),
                    label,
                    role: r.role.clone(),
                    resource_set: r.resource_set.clone(),
                    created: t0,
                    last_updated: t0,
                });
        }
        Ok(org)
    }

    /// Adds `user` to `group` in the indexes and to every app the group is assigned to.
    /// Returns the apps where the user gained a new assignment.
    pub(super) fn link_member(&mut self, group_id: &str, user_id: &str) -> Vec<String> {
        self.members
            .entry(group_id.into())
            .or_default()
            .insert(user_id.into());
        self.user_groups
            .entry(user_id.into())
            .or_default()
            .insert(group_id.into());
        let apps: Vec<String> = self
            .group_apps
            .get(group_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let ts = self.last_ts;
        apps.into_iter()
            .filter(|app| self.grant_via_group(app, user_id, group_id, ts))
            .collect()
    }

    /// Removes `user` from `group`; returns the apps where the user lost their assignment.
    pub(super) fn unlink_member(&mut self, group_id: &str, user_id: &str) -> Vec<(String, String)> {
        if let Some(m) = self.members.get_mut(group_id) {
            m.remove(user_id);
        }
        if let Some(g) = self.user_groups.get_mut(user_id) {
            g.remove(group_id);
        }
        let apps: Vec<String> = self
            .group_apps
            .get(group_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        apps.into_iter()
            .filter_map(|app| {
                let id = self.revoke_via_group(&app, user_id, group_id)?;
                Some((app, id))
            })
            .collect()
    }

    /// Assigns `group` to `app`: every member gains a GROUP-scope assignment.
    pub(super) fn link_app_group(&mut self, app_id: &str, group_id: &str, ts: i64) -> Vec<String> {
        self.app_groups
            .entry(app_id.into())
            .or_default()
            .insert(group_id.into(), ts);
        self.group_apps
            .entry(group_id.into())
            .or_default()
            .insert(app_id.into());
        let members: Vec<String> = self
            .members
            .get(group_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        members
            .into_iter()
            .filter(|u| self.grant_via_group(app_id, u, group_id, ts))
            .collect()
    }

    /// Records that `group` grants `user` the app (creating a GROUP-scope assignment stamped
    /// `ts` when the user had none); true when the assignment is new. An assignment id is
    /// drawn either way, so id sequences stay what they were before this was shared.
    fn grant_via_group(&mut self, app_id: &str, user_id: &str, group_id: &str, ts: i64) -> bool {
        let id = self.new_id("0ua");
        let mut created = false;
        let a = self
            .app_users
            .entry(app_id.into())
            .or_default()
            .entry(user_id.into())
            .or_insert_with(|| {
                created = true;
                Assignment {
                    id,
                    created: ts,
                    last_updated: ts,
                    direct: false,
                    via_groups: BTreeSet::new(),
                }
            });
        a.via_groups.insert(group_id.into());
        created
    }

    /// Withdraws `group`'s grant of the app from `user`; when nothing else grants it (no other
    /// group, no direct assignment) the assignment goes and its id is returned.
    pub(super) fn revoke_via_group(
        &mut self,
        app_id: &str,
        user_id: &str,
        group_id: &str,
    ) -> Option<String> {
        let map = self.app_users.get_mut(app_id)?;
        let a = map.get_mut(user_id)?;
        a.via_groups.remove(group_id);
        if a.via_groups.is_empty() && !a.direct {
            let id = a.id.clone();
            map.remove(user_id);
            return Some(id);
        }
        None
    }
}
