//! Decisions: approve and deny, through any channel.
//!
//! Why it exists: the rules of approval are the product's safety argument, so they live in one
//! function. The requester never approves their own request; a person counts once per request
//! (the decisions table's key, so a double click or a redelivery is the same row); approvers are
//! resolved from Okta at the moment they decide; stages are decided in order; one deny ends the
//! request; step-up resources need a fresh Okta sign-in. Every decision bumps the request's
//! version inside its transaction, so concurrent deciders serialize: two clicks on a request
//! needing one approval make one grant, and N approvals arriving together for N required are
//! all counted (no write skew) and make one grant.
//!
//! What it must never do: count a decision whose transaction did not commit, make a grant before
//! the approval is durable, or let a channel skip a check.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use super::access::owner_and_submitter;
use super::directory::is_named;
use super::error::RequestError;
use super::model::{
    same_person, Actor, DecisionRecord, Request, RequestState, RequestView, Verdict,
};
use super::repo::{self, Bind};
use super::service::{approvals_in, check_comment, current_stage};
use super::RequestService;
use crate::audit::{self, NewEntry};
use crate::authz::{self, Denied, Facts, StepUp, Verb};
use crate::okta::User;

/// Attempts at the compare-and-set before answering `concurrent_update`; each retry re-reads
/// the request, so only a pathological storm on one request reaches it.
const MAX_ATTEMPTS: usize = 20;

/// Who is deciding, as read when they act: their Okta user and groups (fresh), the verb and the
/// facts the authorization rules were given.
pub(super) struct Decider {
    pub me: User,
    pub groups: Arc<HashSet<String>>,
    pub verb: Verb,
    pub facts: Facts,
}

impl RequestService {
    /// The checks before a decision is recorded: the authorization rules (the requester never
    /// decides their own request; Okta must name the person among the resource's approvers now;
    /// a step-up resource needs a recent sign-in), then the request's state. Approvers are
    /// resolved now, not when the request was made: someone removed from the approver group
    /// since can no longer decide.
    pub(super) async fn may_act_on(
        &self,
        r: &Request,
        actor: &Actor,
        verdict: Verdict,
    ) -> Result<Decider, RequestError> {
        let verb = match verdict {
            Verdict::Approve => Verb::Approve,
            Verdict::Deny => Verb::Deny,
            Verdict::BreakGlass => {
                return Err(RequestError::InvalidInput(
                    "break-glass is requested with the request, not decided".into(),
                ))
            }
        };
        let policy = self.policy().current();
        let res = policy
            .get(&r.resource)
            .ok_or_else(|| RequestError::UnknownResource(r.resource.clone()))?
            .clone();
        let now = self.clock().now_ms();
        let (owner, _) = owner_and_submitter(actor, r);
        let mut facts = Facts {
            owner,
            step_up: res.approval_step_up.map(|max_age| StepUp {
                resource: res.name.clone(),
                max_age_ms: i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX),
                now_ms: now,
            }),
            ..Facts::default()
        };
        // Okta is read only when the answer depends on it (a self-approval or a missing role
        // is refused without a call).
        let person = if authz::depends_on_approver(verb, actor, &facts) {
            self.fresh_person(actor).await?
        } else {
            None
        };
        if let Some((me, groups)) = &person {
            // The same person under another name (their id, their email).
            facts.owner |= same_person(&me.login, &r.user_login) || me.id == r.user_id;
            facts.approver = res.approved_by(&me.login, &me.id, groups);
        }
        authz::decide(verb, actor, &facts)?;
        let reviewing = r.state == RequestState::Approved && r.review_pending;
        if r.state != RequestState::Pending && !reviewing {
            return Err(RequestError::NotPending(r.state.as_str()));
        }
        if r.state == RequestState::Pending && now >= r.expires_at {
            return Err(RequestError::Expired);
        }
        // The rules allow only a person Okta names, so they were read above.
        let (me, groups) = person.ok_or(RequestError::Denied(Denied::NotApprover))?;
        Ok(Decider {
            me,
            groups,
            verb,
            facts,
        })
    }

    /// Records `actor`'s decision on request `id` and carries it out (an approval that completes
    /// the last stage makes the grant; a deny of a break-glass request revokes it).
    pub async fn decide(
        &self,
        id: &str,
        actor: &Actor,
        verdict: Verdict,
        comment: Option<&str>,
    ) -> Result<RequestView, RequestError> {
        if verdict == Verdict::BreakGlass {
            return Err(RequestError::InvalidInput(
                "break-glass is requested with the request, not decided".into(),
            ));
        }
        let comment = check_comment(comment)?;
        let r = self.get_request(id).await?;
        let Decider {
            me,
            groups,
            verb,
            facts,
        } = self.may_act_on(&r, actor, verdict).await?;
        let policy = self.policy().current();
        let stages = policy
            .get(&r.resource)
            .map(|res| res.approval_stages())
            .unwrap_or_default();
        let approver = me.login.to_ascii_lowercase();
        let now = self.clock().now_ms();

        for _ in 0..MAX_ATTEMPTS {
            let mut tx = self.store().begin().await?;
            let cur = repo::get_conn(tx.conn(), id)
                .await?
                .ok_or_else(|| RequestError::NotFound(id.to_string()))?;
            let decisions = repo::decisions(tx.conn(), id).await?;
            if decisions
                .iter()
                .any(|d| same_person(&d.approver, &approver))
            {
                tx.rollback().await?;
                return Err(RequestError::AlreadyDecided);
            }
            let reviewing = cur.state == RequestState::Approved && cur.review_pending;
            if cur.state != RequestState::Pending && !reviewing {
                tx.rollback().await?;
                return Err(RequestError::NotPending(cur.state.as_str()));
            }
            // Which stage this decision belongs to, as the request stands in this transaction:
            // the person must be among that stage's approvers (the same rule, asked again).
            let stage = if reviewing {
                stages
                    .iter()
                    .position(|s| is_named(&s.approvers, &me, &groups))
            } else {
                match current_stage(&stages, &decisions) {
                    Some(i) => Some(i).filter(|i| is_named(&stages[*i].approvers, &me, &groups)),
                    // Every stage is satisfied but the row still says pending: the decision that
                    // completed it committed between our two reads. Read again.
                    None => {
                        tx.rollback().await?;
                        continue;
                    }
                }
            };
            let allowed = authz::decide(
                verb,
                actor,
                &Facts {
                    approver: stage.is_some(),
                    ..facts.clone()
                },
            );
            let stage = match (allowed, stage) {
                (Ok(()), Some(i)) => i,
                (Err(e), _) => {
                    tx.rollback().await?;
                    return Err(e.into());
                }
                (Ok(()), None) => {
                    tx.rollback().await?;
                    return Err(Denied::NotApprover.into());
                }
            };
            let record = DecisionRecord {
                approver: approver.clone(),
                stage: stage as i64,
                decision: verdict,
                channel: actor.channel.as_string(),
                comment: comment.clone(),
                decided_at: now,
            };
            if !repo::insert_decision(&mut tx, id, &record).await? {
                tx.rollback().await?;
                return Err(RequestError::AlreadyDecided);
            }
            let mut all = decisions.clone();
            all.push(record.clone());
            let (set, binds, action, outcome): (&str, Vec<Bind>, &str, Outcome) = if reviewing {
                match verdict {
                    Verdict::Deny => (
                        "state = 'denied', review_pending = 0, end_reason = $3",
                        vec![Bind::S(deny_reason(&comment, &approver))],
                        "request.break_glass_denied",
                        Outcome::RevokeBreakGlass,
                    ),
                    _ => (
                        "review_pending = 0",
                        vec![],
                        "request.break_glass_confirmed",
                        Outcome::Nothing,
                    ),
                }
            } else {
                match verdict {
                    Verdict::Deny => (
                        "state = 'denied', decided_at = $3, end_reason = $4",
                        vec![Bind::I(now), Bind::S(deny_reason(&comment, &approver))],
                        "request.denied",
                        Outcome::Nothing,
                    ),
                    _ if current_stage(&stages, &all).is_none() => (
                        "state = 'approved', decided_at = $3",
                        vec![Bind::I(now)],
                        "request.approved",
                        Outcome::Grant,
                    ),
                    _ => ("", vec![], "request.approval_recorded", Outcome::Nothing),
                }
            };
            // Every decision bumps the version: a concurrent decider's compare-and-set fails and
            // it re-reads, so no two decisions are counted against stale state.
            if !repo::cas(tx.conn(), id, cur.version, set, binds).await? {
                tx.rollback().await?;
                continue;
            }
            let st = &stages.get(stage);
            audit::append(
                &mut tx,
                self.clock(),
                NewEntry::new(
                    actor.audit_name(),
                    action,
                    cur.subject(),
                    json!({
                        "approver": approver, "decision": verdict.as_str(),
                        "channel": record.channel, "comment": comment,
                        "stage": stage, "stage_name": st.map(|s| s.name.clone()),
                        "stage_approvals": approvals_in(&all, stage),
                        "stage_required": st.map(|s| s.approvals_required),
                        "resource": cur.resource, "user_login": cur.user_login,
                    }),
                ),
            )
            .await?;
            tx.commit().await?;
            self.count_decision(verdict.as_str(), &actor.channel);
            match outcome {
                Outcome::Grant => {
                    self.count("approved");
                    let approved = self.get_request(id).await?;
                    // The approval is durable: if this fails transiently, the recovery task
                    // makes the grant the request is owed.
                    if let Err(e) = self.make_grant(&approved, &actor.audit_name()).await {
                        tracing::warn!(request = %id, error = %crate::error::chain(&e), "grant after approval failed");
                        if !matches!(e, RequestError::Grant(_)) {
                            return Err(e);
                        }
                    }
                }
                Outcome::RevokeBreakGlass => {
                    if let Some(g) = self.grant_of(id).await? {
                        self.grants()
                            .revoke(
                                &actor.audit_name(),
                                &g.id,
                                &format!("break-glass denied on review by {approver}"),
                            )
                            .await?;
                    }
                }
                Outcome::Nothing => {
                    if verdict == Verdict::Deny && !reviewing {
                        self.count("denied");
                    }
                }
            }
            return self.get(id).await;
        }
        Err(RequestError::Conflict)
    }
}

enum Outcome {
    Nothing,
    Grant,
    RevokeBreakGlass,
}

fn deny_reason(comment: &str, approver: &str) -> String {
    if comment.is_empty() {
        format!("denied by {approver}")
    } else {
        format!("denied by {approver}: {comment}")
    }
}
