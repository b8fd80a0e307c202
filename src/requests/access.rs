//! Requests as people read them through a channel: one request, a list, and whether a person
//! may decide one now. Each answer reads the facts and asks [`crate::authz::decide`].
//!
//! Why it exists: the API, the console and Slack each had their own idea of who may read a
//! request (any approver token, only its approvers, …). The rule is now one: admins and
//! auditors; the person it is for and whoever submitted it; anyone who decided it; and a person
//! Okta names among its resource's approvers when they look (read fresh).
//!
//! What it must never do: reveal a request the actor may not see (it is answered as not found),
//! or read Okta when the answer does not depend on it.

use std::collections::HashSet;

use super::directory::is_named;
use super::error::RequestError;
use super::model::{same_person, Actor, Request, RequestState, RequestView, Verdict};
use super::repo::{self, ListFilter};
use super::service::current_stage;
use super::RequestService;
use crate::authz::{self, Facts, Role, Verb};
use crate::error::ErrorCode;
use crate::okta::User;

/// Rows read per page when a list is filtered by who may see each request.
const SCAN_PAGE: i64 = 500;

/// Whether the request is for `actor`, or `actor` submitted it.
pub(super) fn owner_and_submitter(actor: &Actor, r: &Request) -> (bool, bool) {
    (
        actor.is(&r.user_login) || actor.login == r.user_id,
        actor.is(&r.requested_by),
    )
}

impl RequestService {
    /// The Okta user behind `actor` and their groups, read fresh; `None` for a name Okta does
    /// not know (a portal's token).
    pub(super) async fn fresh_person(
        &self,
        actor: &Actor,
    ) -> Result<Option<(User, std::sync::Arc<HashSet<String>>)>, RequestError> {
        let me = match self.directory().user(&actor.login).await {
            Ok(u) => u,
            Err(RequestError::UnknownUser(_)) | Err(RequestError::InvalidInput(_)) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let groups = self.directory().groups_fresh(&me.id).await?;
        Ok(Some((me, groups)))
    }

    /// One request with its decisions, if `actor` may see it.
    pub async fn get_as(&self, actor: &Actor, id: &str) -> Result<RequestView, RequestError> {
        let view = self.get(id).await?;
        let r = &view.request;
        let (owner, submitter) = owner_and_submitter(actor, r);
        let mut f = Facts {
            owner,
            submitter,
            decided: view
                .decisions
                .iter()
                .any(|d| same_person(&d.approver, &actor.login)),
            ..Facts::default()
        };
        if authz::depends_on_approver(Verb::See, actor, &f) {
            let policy = self.policy().current();
            f.approver = match (policy.get(&r.resource), self.fresh_person(actor).await?) {
                (Some(res), Some((me, groups))) => res.approved_by(&me.login, &me.id, &groups),
                _ => false,
            };
        }
        if authz::decide(Verb::See, actor, &f).is_err() {
            return Err(RequestError::NotFound(id.to_string()));
        }
        Ok(view)
    }

    /// The requests matching `filter` that `actor` may see, in id order: everything for those
    /// who may list everyone's; a person's own requests (one indexed query); a portal's
    /// submissions; and for approvers also the requests of the resources they approve and the
    /// ones they decided (pages filtered in memory).
    pub async fn list_as(
        &self,
        actor: &Actor,
        filter: &ListFilter,
    ) -> Result<Vec<Request>, RequestError> {
        if authz::require(Verb::ListAll, actor).is_ok() {
            return self.list(filter).await;
        }
        let person = actor.has(Role::Requester) || actor.has(Role::Approver);
        // Approvers see more than a column can say, as does someone both person and portal.
        let scan = actor.has(Role::Approver) || (person && actor.has(Role::Portal));
        if !scan {
            // Only their own (a person) or only their submissions (a portal): both are columns.
            let mut own = filter.clone();
            if person {
                own.user = Some(actor.login.clone());
            } else {
                own.requested_by = Some(actor.login.clone());
            }
            return self.list(&own).await;
        }
        let (approves, decided) = if actor.has(Role::Approver) {
            let policy = self.policy().current();
            let approves: HashSet<String> = match self.fresh_person(actor).await? {
                Some((me, groups)) => policy
                    .resources
                    .iter()
                    .filter(|r| r.approved_by(&me.login, &me.id, &groups))
                    .map(|r| r.name.clone())
                    .collect(),
                None => HashSet::new(),
            };
            (
                approves,
                repo::decided_by(self.store(), &actor.login).await?,
            )
        } else {
            (HashSet::new(), HashSet::new())
        };
        let mut out = Vec::new();
        let mut page_filter = ListFilter {
            limit: SCAN_PAGE,
            ..filter.clone()
        };
        loop {
            let page = self.list(&page_filter).await?;
            let n = page.len() as i64;
            for r in page {
                page_filter.after = Some(r.id.clone());
                let (owner, submitter) = owner_and_submitter(actor, &r);
                let f = Facts {
                    owner,
                    submitter,
                    approver: approves.contains(&r.resource),
                    decided: decided.contains(&r.id),
                    ..Facts::default()
                };
                if authz::allows(Verb::See, actor, &f) {
                    out.push(r);
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

    /// Why `actor` may not decide `r` now (`Ok` when they may): the authorization rules, then
    /// the request's state, a decision already given, and whose stage it is. Nothing is written.
    pub async fn check_decide(
        &self,
        r: &Request,
        actor: &Actor,
        verdict: Verdict,
    ) -> Result<(), RequestError> {
        let who = self.may_act_on(r, actor, verdict).await?;
        let decisions = {
            let mut conn = self.store().reads().acquire().await?;
            repo::decisions(&mut conn, &r.id).await?
        };
        if decisions
            .iter()
            .any(|d| same_person(&d.approver, &who.me.login))
        {
            return Err(RequestError::AlreadyDecided);
        }
        let policy = self.policy().current();
        let stages = policy
            .get(&r.resource)
            .map(|res| res.approval_stages())
            .unwrap_or_default();
        if r.state == RequestState::Pending {
            let named = current_stage(&stages, &decisions)
                .is_some_and(|i| is_named(&stages[i].approvers, &who.me, &who.groups));
            authz::decide(
                who.verb,
                actor,
                &Facts {
                    approver: named,
                    ..who.facts
                },
            )?;
        }
        Ok(())
    }

    /// Whether `actor` may decide `r` now (Slack and the console show the others why not).
    pub async fn may_decide(&self, r: &Request, actor: &Actor) -> Result<bool, RequestError> {
        match self.check_decide(r, actor, Verdict::Deny).await {
            Ok(()) => Ok(true),
            Err(e) if e.status().is_client_error() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Pending requests whose current stage `actor` may decide now (approvers read fresh once).
    pub async fn to_approve(
        &self,
        actor: &Actor,
        after: Option<String>,
        limit: i64,
    ) -> Result<Vec<Request>, RequestError> {
        let Some((me, groups)) = self.fresh_person(actor).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut cursor = after;
        // Pages of pending requests are filtered in memory: which ones a person may decide
        // depends on the policy in force and their groups, not on a column.
        loop {
            let page = repo::list(
                self.store(),
                &ListFilter {
                    state: Some(RequestState::Pending),
                    after: cursor.clone(),
                    limit: SCAN_PAGE,
                    ..Default::default()
                },
            )
            .await?;
            let n = page.len() as i64;
            for r in page {
                cursor = Some(r.id.clone());
                if self.may_decide_with(&r, actor, &me, &groups).await? {
                    out.push(r);
                    if out.len() as i64 >= limit {
                        return Ok(out);
                    }
                }
            }
            if n < SCAN_PAGE {
                return Ok(out);
            }
        }
    }

    /// Whether `actor` (Okta user `me` with `groups`) may decide `r` now.
    async fn may_decide_with(
        &self,
        r: &Request,
        actor: &Actor,
        me: &User,
        groups: &HashSet<String>,
    ) -> Result<bool, RequestError> {
        let policy = self.policy().current();
        let Some(res) = policy.get(&r.resource) else {
            return Ok(false);
        };
        let stages = res.approval_stages();
        let decisions = {
            let mut conn = self.store().reads().acquire().await?;
            repo::decisions(&mut conn, &r.id).await?
        };
        if decisions
            .iter()
            .any(|d| same_person(&d.approver, &me.login))
        {
            return Ok(false);
        }
        let named = match r.state {
            RequestState::Pending => current_stage(&stages, &decisions)
                .is_some_and(|i| is_named(&stages[i].approvers, me, groups)),
            RequestState::Approved if r.review_pending => {
                stages.iter().any(|s| is_named(&s.approvers, me, groups))
            }
            _ => return Ok(false),
        };
        let (owner, _) = owner_and_submitter(actor, r);
        let f = Facts {
            owner: owner || same_person(&me.login, &r.user_login) || me.id == r.user_id,
            approver: named,
            ..Facts::default()
        };
        Ok(authz::allows(Verb::Deny, actor, &f))
    }
}
