//! The Okta side of a grant: is the access there, add it, remove it.
//!
//! Why it exists: the three resource kinds differ in every call (membership, app assignment,
//! role assignment with its own id); the service above decides *whether* to call, this module
//! only knows *how*. Adds use `Priority::Grant`, removals `Priority::Revoke` (the client serves
//! revocations first under rate limits).
//!
//! What it must never do: decide on standing access or overlapping grants (the service does, under
//! the access lock), or treat "already gone" as a failure (I4).

use super::access::Access;
use super::model::Grant;
use crate::okta::{OktaClient, OktaError, Priority, Removal, RoleSpec};
use crate::policy::{ResourceKind, RoleTarget};

/// Whether the user holds the access right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    No,
    Yes {
        /// For roles: the assignment found.
        role_assignment_id: Option<String>,
        /// App access through a group assignment: cannot be removed per user.
        inherited: bool,
    },
}

impl Holding {
    pub fn holds(&self) -> bool {
        matches!(self, Holding::Yes { .. })
    }
}

/// What a removal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Removed,
    AlreadyGone,
}

impl Removed {
    pub fn as_str(self) -> &'static str {
        match self {
            Removed::Removed => "removed",
            Removed::AlreadyGone => "already_gone",
        }
    }
}

fn role_spec(t: &RoleTarget) -> RoleSpec {
    match t {
        RoleTarget::Standard(role_type) => RoleSpec::Standard {
            role_type: role_type.clone(),
        },
        RoleTarget::Custom {
            role_id,
            resource_set,
        } => RoleSpec::Custom {
            role_id: role_id.clone(),
            resource_set: resource_set.clone(),
        },
    }
}

/// The user's active assignment of the access's role: `hint` (an assignment id seen before)
/// if the user still has it, otherwise the one of the same role type (or custom role and
/// resource set). `None` for other kinds, or when there is none.
pub(super) async fn find_role(
    okta: &OktaClient,
    access: &Access,
    hint: Option<&str>,
    p: Priority,
) -> Result<Option<String>, OktaError> {
    let Some(target) = access.role_target() else {
        return Ok(None);
    };
    let roles = okta.list_user_roles(&access.user_id, p).await?;
    Ok(roles
        .into_iter()
        .find(|r| {
            hint == Some(r.id.as_str())
                || match &target {
                    RoleTarget::Standard(t) => &r.role_type == t,
                    RoleTarget::Custom {
                        role_id,
                        resource_set,
                    } => {
                        r.role_id.as_deref() == Some(role_id.as_str())
                            && r.resource_set.as_deref() == Some(resource_set.as_str())
                    }
                }
        })
        .map(|r| r.id))
}

/// Whether the user holds `access` right now, read on lane `p`. For roles, `hint` is an
/// assignment id seen before (see [`find_role`]).
pub(super) async fn current(
    okta: &OktaClient,
    access: &Access,
    hint: Option<&str>,
    p: Priority,
) -> Result<Holding, OktaError> {
    let (user, object) = (access.user_id.as_str(), access.okta_id.as_str());
    Ok(match access.kind {
        ResourceKind::OktaGroup => {
            if okta.is_group_member(object, user, p).await? {
                Holding::Yes {
                    role_assignment_id: None,
                    inherited: false,
                }
            } else {
                Holding::No
            }
        }
        ResourceKind::OktaApp => match okta.get_app_user(object, user, p).await? {
            Some(au) => Holding::Yes {
                role_assignment_id: None,
                inherited: au.scope.eq_ignore_ascii_case("GROUP"),
            },
            None => Holding::No,
        },
        ResourceKind::OktaRole => match find_role(okta, access, hint, p).await? {
            Some(id) => Holding::Yes {
                role_assignment_id: Some(id),
                inherited: false,
            },
            None => Holding::No,
        },
    })
}

/// Adds the access. Returns the role assignment id for roles.
pub(super) async fn add(okta: &OktaClient, g: &Grant) -> Result<Option<String>, OktaError> {
    let p = Priority::Grant;
    match g.kind {
        ResourceKind::OktaGroup => {
            okta.add_group_member(&g.okta_id, &g.user_id, p).await?;
            Ok(None)
        }
        ResourceKind::OktaApp => {
            okta.assign_app_user(&g.okta_id, &g.user_id, p).await?;
            Ok(None)
        }
        ResourceKind::OktaRole => {
            let Some(target) = g.role_target() else {
                return Ok(None);
            };
            let a = okta.assign_role(&g.user_id, &role_spec(&target), p).await?;
            Ok(Some(a.id))
        }
    }
}

/// Removes the access; a 404 (user deleted, membership gone) counts as gone (I4).
pub(super) async fn remove(okta: &OktaClient, g: &Grant) -> Result<Removed, OktaError> {
    let role_id = match (&g.role_assignment_id, g.kind) {
        (Some(id), _) => Some(id.clone()),
        // Crashed between Okta's answer and our record: find it.
        (None, ResourceKind::OktaRole) => {
            match find_role(okta, &g.access(), None, Priority::Revoke).await {
                Ok(id) => id,
                Err(e) if is_not_found(&e) => None,
                Err(e) => return Err(e),
            }
        }
        (None, _) => None,
    };
    remove_access(okta, &g.user_id, g.kind, &g.okta_id, role_id.as_deref()).await
}

/// Removes one user's access to one Okta object through the revocation lane
/// (`Priority::Revoke`), whoever gave it: a grant's expiry and the removal of unexplained access
/// (`access`) share it.
/// For roles `role_assignment_id` is the assignment to delete; `None` means there is none
/// (already gone). A 404 counts as gone (I4).
pub(super) async fn remove_access(
    okta: &OktaClient,
    user_id: &str,
    kind: ResourceKind,
    okta_id: &str,
    role_assignment_id: Option<&str>,
) -> Result<Removed, OktaError> {
    let p = Priority::Revoke;
    let r = match kind {
        ResourceKind::OktaGroup => okta.remove_group_member(okta_id, user_id, p).await,
        ResourceKind::OktaApp => okta.unassign_app_user(okta_id, user_id, p).await,
        ResourceKind::OktaRole => match role_assignment_id {
            Some(id) => okta.unassign_role(user_id, id, p).await,
            None => Ok(Removal::AlreadyGone),
        },
    };
    match r {
        Ok(Removal::Removed) => Ok(Removed::Removed),
        Ok(Removal::AlreadyGone) => Ok(Removed::AlreadyGone),
        Err(e) if is_not_found(&e) => Ok(Removed::AlreadyGone),
        Err(e) => Err(e),
    }
}

/// Ends the user's Okta sessions; a deleted user has none.
pub(super) async fn end_sessions(okta: &OktaClient, g: &Grant) -> Result<(), OktaError> {
    match okta.end_sessions(&g.user_id, Priority::Revoke).await {
        Err(e) if is_not_found(&e) => Ok(()),
        r => r,
    }
}

pub(super) fn is_not_found(e: &OktaError) -> bool {
    matches!(e, OktaError::Api { status, .. } if *status == 404)
}
