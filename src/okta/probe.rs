//! The capability probe: which of read, provision groups, provision apps and manage roles the
//! broker's credential allows, found without changing anything in Okta.
//!
//! Why it exists: a broker whose token is a read-only admin must say so on `/readyz` and refuse
//! to offer resources it cannot grant, instead of failing at the first expiry. The probe reads
//! the credential's own admin roles (SSWS: `GET /api/v1/users/me`, then that user's roles;
//! OAuth: the service app's roles via `GET /oauth2/v1/clients/{clientId}/roles`, narrowed by
//! the scopes the token was granted).
//!
//! What it must never do: write to Okta to find out (no test assignment), or report a
//! capability it did not see (an unknown or unreadable role grants nothing).

use reqwest::Method;
use serde::Deserialize;

use super::auth::Credentials;
use super::error::OktaError;
use super::types::{Capabilities, Priority, WireRole};
use super::OktaClient;

const T_ME: &str = "/api/v1/users/me";
const T_USER_ROLES: &str = "/api/v1/users/{userId}/roles";
const T_CLIENT_ROLES: &str = "/oauth2/v1/clients/{clientId}/roles";
const T_ROLE_PERMISSIONS: &str = "/api/v1/iam/roles/{roleId}/permissions";

#[derive(Deserialize)]
struct Me {
    id: String,
}

#[derive(Deserialize)]
struct Permissions {
    #[serde(default)]
    permissions: Vec<Permission>,
}

#[derive(Deserialize)]
struct Permission {
    #[serde(default)]
    label: String,
}

/// What one admin role allows, for the four things the broker does. Roles can be scoped to
/// some groups or apps; the probe cannot see that, and Okta's 403 still answers per call.
fn role_capabilities(role_type: &str) -> Capabilities {
    let (read, groups, apps, roles) = match role_type {
        "SUPER_ADMIN" => (true, true, true, true),
        // Org admins manage users, groups and apps but cannot assign admin roles.
        "ORG_ADMIN" => (true, true, true, false),
        "APP_ADMIN" => (true, false, true, false),
        "USER_ADMIN" | "GROUP_MEMBERSHIP_ADMIN" => (true, true, false, false),
        // Every other admin role can read the directory.
        _ => (true, false, false, false),
    };
    Capabilities {
        read,
        provision_groups: groups,
        provision_apps: apps,
        manage_roles: roles,
        principal_id: None,
    }
}

fn permission_capabilities(labels: &[String]) -> Capabilities {
    let has = |p: &str| labels.iter().any(|l| l == p);
    Capabilities {
        read: !labels.is_empty(),
        provision_groups: has("okta.groups.members.manage") || has("okta.groups.manage"),
        provision_apps: has("okta.apps.assignment.manage") || has("okta.apps.manage"),
        manage_roles: false,
        principal_id: None,
    }
}

fn union(a: &mut Capabilities, b: &Capabilities) {
    a.read |= b.read;
    a.provision_groups |= b.provision_groups;
    a.provision_apps |= b.provision_apps;
    a.manage_roles |= b.manage_roles;
}

/// An OAuth token can do only what both its app's roles and its granted scopes allow.
fn narrow_by_scopes(c: &mut Capabilities, scopes: &[String]) {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    c.read &= has("okta.users.read")
        || has("okta.users.manage")
        || has("okta.groups.read")
        || has("okta.groups.manage");
    c.provision_groups &= has("okta.groups.manage");
    c.provision_apps &= has("okta.apps.manage");
    c.manage_roles &= has("okta.roles.manage");
}

impl OktaClient {
    /// Reads the credential's roles and records what they allow; later writes the credential
    /// cannot make fail fast with [`OktaError::NotPermitted`].
    pub async fn probe_capabilities(&self) -> Result<Capabilities, OktaError> {
        let result = self.probe().await;
        *self
            .inner
            .probe_error
            .write()
            .unwrap_or_else(|p| p.into_inner()) =
            result.as_ref().err().map(|e| crate::error::chain(e));
        result
    }

    async fn probe(&self) -> Result<Capabilities, OktaError> {
        let p = Priority::Read;
        let (principal, roles_url, template, scopes) = match &self.inner.credentials {
            Credentials::Ssws(_) => {
                let url = self.url(&["api", "v1", "users", "me"], &[])?;
                let r = self
                    .call("probe_me", Method::GET, T_ME, url, None, p)
                    .await?;
                if r.status != 200 {
                    return Err(r.error());
                }
                let me: Me = r.json("probe_me")?;
                let roles = self.url(&["api", "v1", "users", &me.id, "roles"], &[])?;
                (me.id, roles, T_USER_ROLES, None)
            }
            Credentials::Oauth(o) => {
                let scopes = self
                    .inner
                    .credentials
                    .granted_scopes(&self.inner.http, &self.inner.clock)
                    .await?;
                let roles = self.url(&["oauth2", "v1", "clients", &o.client_id, "roles"], &[])?;
                (o.client_id.clone(), roles, T_CLIENT_ROLES, scopes)
            }
        };
        let r = self
            .call("probe_roles", Method::GET, template, roles_url, None, p)
            .await?;
        let mut caps = Capabilities {
            principal_id: Some(principal),
            ..Capabilities::default()
        };
        match r.status {
            200 => {
                let roles: Vec<WireRole> = r.json("probe_roles")?;
                for role in roles {
                    let a = role.into_assignment(false);
                    if a.status != "ACTIVE" && !a.status.is_empty() {
                        continue;
                    }
                    if a.role_type == "CUSTOM" {
                        if let Some(role_id) = &a.role_id {
                            union(&mut caps, &self.custom_role_capabilities(role_id).await?);
                        }
                    } else {
                        union(&mut caps, &role_capabilities(&a.role_type));
                    }
                }
            }
            // No admin role can read even its own roles: nothing is allowed.
            403 => {}
            _ => return Err(r.error()),
        }
        if let Some(scopes) = scopes {
            narrow_by_scopes(&mut caps, &scopes);
        }
        *self
            .inner
            .capabilities
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(caps.clone());
        tracing::info!(
            read = caps.read,
            provision_groups = caps.provision_groups,
            provision_apps = caps.provision_apps,
            manage_roles = caps.manage_roles,
            "Okta capabilities probed"
        );
        Ok(caps)
    }

    /// A custom role's permissions; unreadable ones grant nothing.
    async fn custom_role_capabilities(&self, role_id: &str) -> Result<Capabilities, OktaError> {
        let url = self.url(&["api", "v1", "iam", "roles", role_id, "permissions"], &[])?;
        let r = self
            .call(
                "probe_role_permissions",
                Method::GET,
                T_ROLE_PERMISSIONS,
                url,
                None,
                Priority::Read,
            )
            .await?;
        if r.status != 200 {
            return Ok(Capabilities::default());
        }
        let perms: Permissions = r.json("probe_role_permissions")?;
        let labels: Vec<String> = perms.permissions.into_iter().map(|p| p.label).collect();
        Ok(permission_capabilities(&labels))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scopes_narrow_roles() {
        let mut c = role_capabilities("SUPER_ADMIN");
        narrow_by_scopes(&mut c, &["okta.groups.manage".to_string()]);
        assert!(c.read && c.provision_groups && !c.provision_apps && !c.manage_roles);
    }

    #[test]
    fn read_only_admin_reads_only() {
        let c = role_capabilities("READ_ONLY_ADMIN");
        assert!(c.read && !c.provision_groups && !c.provision_apps && !c.manage_roles);
    }
}
