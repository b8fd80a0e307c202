//! Grants as people reach them through a channel: see, list, create directly, extend directly,
//! end early, retry a failed removal. Each method reads the facts the rule needs and asks
//! [`crate::authz::decide`], then does the work through the service's own methods.
//!
//! Why it exists: "who may end this grant?" had three answers (any approver through the API,
//! holder or admin in the console, the documentation's "approvers of what they approved").
//! Now there is one: its holder, an admin, or a person Okta names among the approvers of the
//! grant's resource at the moment they ask (read fresh, never cached).
//!
//! What it must never do: change anything after a refusal, or read Okta when the answer does
//! not depend on it (an admin, an auditor or the holder costs no Okta call).

use std::collections::HashSet;

use super::repo::{self, ListFilter};
use super::{CreateGrant, Grant, GrantError, GrantService, GrantState};
use crate::authz::{self, Actor, Facts, Role, Verb};
use crate::okta::Priority;

/// Rows read per page when a list is filtered by who may see each grant.
const SCAN_PAGE: i64 = 500;

impl GrantService {
    /// Whether Okta names `login` among the approvers of policy resource `resource` now. An
    /// unknown person (a token named after no Okta user) approves nothing.
    pub async fn approves(&self, login: &str, resource: &str) -> Result<bool, GrantError> {
        let policy = self.policy().current();
        let Some(res) = policy.get(resource) else {
            return Ok(false);
        };
        if res.approval_stages().is_empty() {
            return Ok(false);
        }
        Ok(self
            .approved_resources_of(login)
            .await?
            .is_some_and(|set| set.contains(&res.name)))
    }

    /// The policy resources whose approvers name `login`, from one fresh read of the person and
    /// their groups; `None` when Okta knows no such person.
    async fn approved_resources_of(
        &self,
        login: &str,
    ) -> Result<Option<HashSet<String>>, GrantError> {
        let u = login.trim();
        if u.is_empty() || u.len() > 255 || u.chars().any(|c| c.is_control() || c == '/') {
            return Ok(None);
        }
        let Some(user) = self.okta().get_user(u, Priority::Grant).await? else {
            return Ok(None);
        };
        let groups: HashSet<String> = self
            .okta()
            .user_group_ids(&user.id, Priority::Grant)
            .await?
            .into_iter()
            .collect();
        let policy = self.policy().current();
        Ok(Some(
            policy
                .resources
                .iter()
                .filter(|r| r.approved_by(&user.login, &user.id, &groups))
                .map(|r| r.name.clone())
                .collect(),
        ))
    }

    /// The facts about `actor` and grant `g` that `verb`'s rule needs (Okta only if it matters).
    async fn facts_for(&self, actor: &Actor, g: &Grant, verb: Verb) -> Result<Facts, GrantError> {
        let mut f = Facts {
            owner: holds(actor, g),
            ..Facts::default()
        };
        if authz::depends_on_approver(verb, actor, &f) {
            f.approver = self.approves(&actor.login, &g.resource).await?;
        }
        Ok(f)
    }

    /// One grant, if `actor` may see it; one they may not see is answered as not found.
    pub async fn get_as(&self, actor: &Actor, id: &str) -> Result<Grant, GrantError> {
        let g = self.get(id).await?;
        let f = self.facts_for(actor, &g, Verb::See).await?;
        if authz::decide(Verb::See, actor, &f).is_err() {
            return Err(GrantError::NotFound(id.to_string()));
        }
        Ok(g)
    }

    /// The grants matching `filter` that `actor` may see, in id order: everything for those who
    /// may list everyone's; otherwise their own (one indexed query), and for approvers also the
    /// grants of the resources they approve (pages filtered in memory).
    pub async fn list_as(
        &self,
        actor: &Actor,
        filter: &ListFilter,
    ) -> Result<Vec<Grant>, GrantError> {
        if authz::require(Verb::ListAll, actor).is_ok() {
            return self.list(filter).await;
        }
        if !actor.has(Role::Approver) {
            let own = ListFilter {
                user: Some(actor.login.clone()),
                resource: filter.resource.clone(),
                state: filter.state,
                after: filter.after.clone(),
                limit: filter.limit,
            };
            return self.list(&own).await;
        }
        let approves = self
            .approved_resources_of(&actor.login)
            .await?
            .unwrap_or_default();
        let mut out = Vec::new();
        let mut after = filter.after.clone();
        loop {
            let page = repo::list(
                self.store(),
                &ListFilter {
                    user: filter.user.clone(),
                    resource: filter.resource.clone(),
                    state: filter.state,
                    after: after.clone(),
                    limit: SCAN_PAGE,
                },
            )
            .await?;
            let n = page.len() as i64;
            for g in page {
                after = Some(g.id.clone());
                let f = Facts {
                    owner: holds(actor, &g),
                    approver: approves.contains(&g.resource),
                    ..Facts::default()
                };
                if authz::allows(Verb::See, actor, &f) {
                    out.push(g);
                    if out.len() as i64 >= filter.limit {
                        return Ok(out);
                    }
                }
            }
            if n < SCAN_PAGE {
                return Ok(out);
            }
        }
    }

    /// A grant given directly, without a request (an admin's).
    pub async fn create_as(&self, actor: &Actor, req: CreateGrant) -> Result<Grant, GrantError> {
        authz::require(Verb::CreateGrant, actor)?;
        self.create(&actor.audit_name(), req).await
    }

    /// More time on a grant, given directly without approval: `None` when `actor` may not give
    /// time directly (they ask through the requests service instead).
    pub async fn extend_directly_as(
        &self,
        actor: &Actor,
        id: &str,
        duration: &str,
    ) -> Result<Option<Grant>, GrantError> {
        let g = self.get(id).await?;
        let f = Facts {
            direct: true,
            ..self.facts_for(actor, &g, Verb::Extend).await?
        };
        if authz::decide(Verb::Extend, actor, &f).is_err() {
            return Ok(None);
        }
        self.extend(&actor.audit_name(), id, duration)
            .await
            .map(Some)
    }

    /// Ends a grant before its expiry: its holder, an admin, or an approver of its resource.
    /// Ending a failed grant tries its removal again.
    pub async fn end_early_as(
        &self,
        actor: &Actor,
        id: &str,
        reason: &str,
    ) -> Result<Grant, GrantError> {
        let g = self.get(id).await?;
        let verb = if g.state == GrantState::Failed {
            Verb::RetryFailed
        } else {
            Verb::EndEarly
        };
        let f = self.facts_for(actor, &g, verb).await?;
        authz::decide(verb, actor, &f)?;
        self.revoke(&actor.audit_name(), id, reason).await
    }

    /// Tries a failed grant's removal again (the operators' queue of failed grants).
    pub async fn retry_failed_as(
        &self,
        actor: &Actor,
        id: &str,
        reason: &str,
    ) -> Result<Grant, GrantError> {
        let g = self.get(id).await?;
        let f = self.facts_for(actor, &g, Verb::RetryFailed).await?;
        authz::decide(Verb::RetryFailed, actor, &f)?;
        if g.state != GrantState::Failed {
            return Err(GrantError::InvalidInput(format!(
                "only failed grants are retried; this one is {}",
                g.state.as_str()
            )));
        }
        self.revoke(&actor.audit_name(), id, reason).await
    }
}

/// Whether `actor` is the grant's holder.
fn holds(actor: &Actor, g: &Grant) -> bool {
    actor.is(&g.user_login) || actor.login == g.user_id
}
