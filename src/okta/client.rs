//! The typed calls. Each one decides what Okta's answer *means* for the broker: `Ok` for
//! success and for "already so" (I4), a typed error otherwise.
//!
//! Why it exists: the grants service must not know that a removed member answers 404 the
//! second time or that a duplicate role is a 409: it asks for an outcome and gets one.
//!
//! What it must never do: treat access inherited through a group as removable (it reports
//! [`OktaError::InheritedAccess`] instead), or send a write the probed capabilities rule out.

use futures::TryStreamExt;
use reqwest::Method;

use super::error::OktaError;
use super::transport::{Call, Reply};
use super::types::*;
use super::OktaClient;

/// Path templates: metric labels and rate-limit buckets, never carrying ids.
const T_USER: &str = "/api/v1/users/{userId}";
const T_USER_GROUPS: &str = "/api/v1/users/{userId}/groups";
const T_USER_ROLES: &str = "/api/v1/users/{userId}/roles";
const T_USER_ROLE: &str = "/api/v1/users/{userId}/roles/{roleAssignmentId}";
const T_USER_SESSIONS: &str = "/api/v1/users/{userId}/sessions";
const T_GROUP: &str = "/api/v1/groups/{groupId}";
const T_GROUP_USER: &str = "/api/v1/groups/{groupId}/users/{userId}";
const T_APP: &str = "/api/v1/apps/{appId}";
const T_APP_USERS: &str = "/api/v1/apps/{appId}/users";
const T_APP_USER: &str = "/api/v1/apps/{appId}/users/{userId}";

pub(crate) fn check_id(id: &str) -> Result<&str, OktaError> {
    if id.is_empty()
        || id == "."
        || id == ".."
        || id.len() > 512
        || id.chars().any(char::is_control)
    {
        return Err(OktaError::InvalidId(id.chars().take(64).collect()));
    }
    Ok(id)
}

impl OktaClient {
    /// `base` + percent-encoded segments (an id can never add a path level) + query.
    pub(crate) fn url(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<url::Url, OktaError> {
        let mut u = self.inner.base.clone();
        {
            let mut path = u
                .path_segments_mut()
                .map_err(|_| OktaError::Config("okta.base_url cannot be a base".into()))?;
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
        }
        if !query.is_empty() {
            u.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(u)
    }

    pub(crate) async fn call(
        &self,
        op: &'static str,
        method: Method,
        template: &'static str,
        url: url::Url,
        body: Option<&serde_json::Value>,
        priority: Priority,
    ) -> Result<Reply, OktaError> {
        self.inner
            .execute(Call {
                op,
                method,
                template,
                url,
                body,
                priority,
            })
            .await
    }

    /// Refuses a write the probed capabilities rule out; unprobed, Okta decides.
    fn require(
        &self,
        capability: &'static str,
        ok: fn(&Capabilities) -> bool,
    ) -> Result<(), OktaError> {
        match self.capabilities() {
            Some(c) if !ok(&c) => Err(OktaError::NotPermitted { capability }),
            _ => Ok(()),
        }
    }

    async fn get_optional<W, T>(
        &self,
        op: &'static str,
        template: &'static str,
        segments: &[&str],
        p: Priority,
    ) -> Result<Option<T>, OktaError>
    where
        W: serde::de::DeserializeOwned + Into<T>,
    {
        let url = self.url(segments, &[])?;
        let r = self.call(op, Method::GET, template, url, None, p).await?;
        match r.status {
            200 => Ok(Some(r.json::<W>(op)?.into())),
            404 => Ok(None),
            _ => Err(r.error()),
        }
    }

    /// A DELETE read the way every removal is: 2xx removed, 404 already gone (FACTS: treat both
    /// as gone); any other answer is handed back for the caller to classify.
    async fn delete(
        &self,
        op: &'static str,
        template: &'static str,
        segments: &[&str],
        p: Priority,
    ) -> Result<Result<Removal, Reply>, OktaError> {
        let url = self.url(segments, &[])?;
        let r = self
            .call(op, Method::DELETE, template, url, None, p)
            .await?;
        Ok(match r.status {
            200..=299 => Ok(Removal::Removed),
            404 => Ok(Removal::AlreadyGone),
            _ => Err(r),
        })
    }

    pub async fn get_user(
        &self,
        id_or_login: &str,
        p: Priority,
    ) -> Result<Option<User>, OktaError> {
        let id = check_id(id_or_login)?;
        self.get_optional::<WireUser, User>("get_user", T_USER, &["api", "v1", "users", id], p)
            .await
    }

    pub async fn get_group(&self, group_id: &str, p: Priority) -> Result<Option<Group>, OktaError> {
        let id = check_id(group_id)?;
        self.get_optional::<WireGroup, Group>("get_group", T_GROUP, &["api", "v1", "groups", id], p)
            .await
    }

    pub async fn get_app(&self, app_id: &str, p: Priority) -> Result<Option<App>, OktaError> {
        let id = check_id(app_id)?;
        self.get_optional::<WireApp, App>("get_app", T_APP, &["api", "v1", "apps", id], p)
            .await
    }

    /// Okta has no single-membership read; a user's group list is usually far shorter than a
    /// group's member list, so that is the one walked. A missing user is a member of nothing.
    pub async fn is_group_member(
        &self,
        group_id: &str,
        user_id: &str,
        p: Priority,
    ) -> Result<bool, OktaError> {
        let gid = check_id(group_id)?.to_string();
        let uid = check_id(user_id)?;
        let first = self.url(&["api", "v1", "users", uid, "groups"], &[]);
        let mut groups =
            self.paginate::<WireGroup, Group>("list_user_groups", T_USER_GROUPS, first, p);
        loop {
            match groups.try_next().await {
                Ok(Some(g)) if g.id == gid => return Ok(true),
                Ok(Some(_)) => {}
                Ok(None) => return Ok(false),
                Err(e) if e.status() == Some(404) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Every group id the user is a member of (one walk of the user's group list). A missing
    /// user is a member of nothing. Used to decide who may request and who may approve.
    pub async fn user_group_ids(
        &self,
        user_id: &str,
        p: Priority,
    ) -> Result<Vec<String>, OktaError> {
        let uid = check_id(user_id)?;
        let first = self.url(&["api", "v1", "users", uid, "groups"], &[]);
        let mut groups =
            self.paginate::<WireGroup, Group>("list_user_groups", T_USER_GROUPS, first, p);
        let mut out = Vec::new();
        loop {
            match groups.try_next().await {
                Ok(Some(g)) => out.push(g.id),
                Ok(None) => return Ok(out),
                Err(e) if e.status() == Some(404) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Adding a member who is already there succeeds (Okta answers 204 either way).
    pub async fn add_group_member(
        &self,
        group_id: &str,
        user_id: &str,
        p: Priority,
    ) -> Result<(), OktaError> {
        self.require("provision_groups", |c| c.provision_groups)?;
        let url = self.url(
            &[
                "api",
                "v1",
                "groups",
                check_id(group_id)?,
                "users",
                check_id(user_id)?,
            ],
            &[],
        )?;
        let r = self
            .call("add_group_member", Method::PUT, T_GROUP_USER, url, None, p)
            .await?;
        match r.status {
            200..=299 => Ok(()),
            _ => Err(r.error()),
        }
    }

    /// 204 is removed; 404 (not a member, or user/group gone) is already gone (FACTS: treat
    /// both as gone).
    pub async fn remove_group_member(
        &self,
        group_id: &str,
        user_id: &str,
        p: Priority,
    ) -> Result<Removal, OktaError> {
        self.require("provision_groups", |c| c.provision_groups)?;
        let (g, u) = (check_id(group_id)?, check_id(user_id)?);
        self.delete(
            "remove_group_member",
            T_GROUP_USER,
            &["api", "v1", "groups", g, "users", u],
            p,
        )
        .await?
        .map_err(|r| r.error())
    }

    pub async fn get_app_user(
        &self,
        app_id: &str,
        user_id: &str,
        p: Priority,
    ) -> Result<Option<AppUser>, OktaError> {
        let (a, u) = (check_id(app_id)?, check_id(user_id)?);
        self.get_optional::<WireAppUser, AppUser>(
            "get_app_user",
            T_APP_USER,
            &["api", "v1", "apps", a, "users", u],
            p,
        )
        .await
    }

    /// Assigns with scope USER. Already assigned (409 E0000062) answers with the existing
    /// assignment, which may have scope GROUP.
    pub async fn assign_app_user(
        &self,
        app_id: &str,
        user_id: &str,
        p: Priority,
    ) -> Result<AppUser, OktaError> {
        self.require("provision_apps", |c| c.provision_apps)?;
        let (a, u) = (check_id(app_id)?, check_id(user_id)?);
        let url = self.url(&["api", "v1", "apps", a, "users"], &[])?;
        let body = serde_json::json!({ "id": u, "scope": "USER" });
        let r = self
            .call(
                "assign_app_user",
                Method::POST,
                T_APP_USERS,
                url,
                Some(&body),
                p,
            )
            .await?;
        match r.status {
            200 | 201 => Ok(r.json::<WireAppUser>("assign_app_user")?.into()),
            409 if r.error_code().as_deref() == Some("E0000062") => {
                match self.get_app_user(a, u, p).await? {
                    Some(existing) => Ok(existing),
                    None => Err(r.error()),
                }
            }
            _ => Err(r.error()),
        }
    }

    /// 204 removed, 404 already gone. Okta refuses to remove a group-scoped assignment per
    /// user; on any refusal the assignment is read back, and scope GROUP becomes the permanent
    /// [`OktaError::InheritedAccess`] (never retried: it cannot succeed).
    pub async fn unassign_app_user(
        &self,
        app_id: &str,
        user_id: &str,
        p: Priority,
    ) -> Result<Removal, OktaError> {
        self.require("provision_apps", |c| c.provision_apps)?;
        let (a, u) = (check_id(app_id)?, check_id(user_id)?);
        let r = match self
            .delete(
                "unassign_app_user",
                T_APP_USER,
                &["api", "v1", "apps", a, "users", u],
                p,
            )
            .await?
        {
            Ok(removal) => return Ok(removal),
            Err(r) => r,
        };
        match r.status {
            // A plain lack of permission (E0000006) or a bad credential is not inheritance.
            401 => Err(r.error()),
            400..=499 if r.error_code().as_deref() != Some("E0000006") => {
                match self.get_app_user(a, u, p).await {
                    Ok(Some(au)) if au.scope.eq_ignore_ascii_case("GROUP") => {
                        Err(OktaError::InheritedAccess {
                            app_id: a.to_string(),
                            user_id: u.to_string(),
                        })
                    }
                    _ => Err(r.error()),
                }
            }
            _ => Err(r.error()),
        }
    }

    pub async fn list_user_roles(
        &self,
        user_id: &str,
        p: Priority,
    ) -> Result<Vec<RoleAssignment>, OktaError> {
        let url = self.url(&["api", "v1", "users", check_id(user_id)?, "roles"], &[])?;
        let r = self
            .call("list_user_roles", Method::GET, T_USER_ROLES, url, None, p)
            .await?;
        match r.status {
            200 => Ok(r
                .json::<Vec<WireRole>>("list_user_roles")?
                .into_iter()
                .map(|w| w.into_assignment(false))
                .collect()),
            _ => Err(r.error()),
        }
    }

    /// 201 assigned; 409 E0000090 (already assigned) answers with the existing assignment and
    /// `already_assigned = true`. E0000268 (concurrent change) is retried by the transport.
    pub async fn assign_role(
        &self,
        user_id: &str,
        role: &RoleSpec,
        p: Priority,
    ) -> Result<RoleAssignment, OktaError> {
        self.require("manage_roles", |c| c.manage_roles)?;
        let uid = check_id(user_id)?;
        let url = self.url(&["api", "v1", "users", uid, "roles"], &[])?;
        let body = role.body();
        let r = self
            .call(
                "assign_role",
                Method::POST,
                T_USER_ROLES,
                url,
                Some(&body),
                p,
            )
            .await?;
        match r.status {
            200 | 201 => Ok(r.json::<WireRole>("assign_role")?.into_assignment(false)),
            409 if r.error_code().as_deref() == Some("E0000090") => {
                let existing = self.list_user_roles(uid, p).await?;
                match existing.into_iter().find(|a| role.matches(a)) {
                    Some(mut a) => {
                        a.already_assigned = true;
                        Ok(a)
                    }
                    None => Err(r.error()),
                }
            }
            _ => Err(r.error()),
        }
    }

    pub async fn unassign_role(
        &self,
        user_id: &str,
        assignment_id: &str,
        p: Priority,
    ) -> Result<Removal, OktaError> {
        self.require("manage_roles", |c| c.manage_roles)?;
        let (u, ra) = (check_id(user_id)?, check_id(assignment_id)?);
        self.delete(
            "unassign_role",
            T_USER_ROLE,
            &["api", "v1", "users", u, "roles", ra],
            p,
        )
        .await?
        .map_err(|r| r.error())
    }

    /// Ends all of the user's Okta sessions. A user who no longer exists has none: success.
    pub async fn end_sessions(&self, user_id: &str, p: Priority) -> Result<(), OktaError> {
        let u = check_id(user_id)?;
        self.delete(
            "end_sessions",
            T_USER_SESSIONS,
            &["api", "v1", "users", u, "sessions"],
            p,
        )
        .await?
        .map(|_| ())
        .map_err(|r| r.error())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_change_the_path_or_query() {
        let cfg = crate::app::Config::load_with_env(
            None,
            vec![
                (
                    "JIT_OKTA__BASE_URL".to_string(),
                    "https://example.okta.com".to_string(),
                ),
                ("JIT_OKTA__API_TOKEN".to_string(), "t".to_string()),
            ],
        )
        .unwrap()
        .okta;
        let c = OktaClient::new(&cfg, crate::clock::Clock::system()).unwrap();
        let u = c
            .url(
                &["api", "v1", "users", "a/../b?x=1#f"],
                &[("limit", "2".into())],
            )
            .unwrap();
        assert_eq!(u.path(), "/api/v1/users/a%2F..%2Fb%3Fx=1%23f");
        assert_eq!(u.query(), Some("limit=2"));
        assert!(check_id("..").is_err());
        assert!(check_id("").is_err());
        assert!(check_id("bob@example.com").is_ok());
    }
}
