//! Creating, reading, cancelling requests, and asking for more time on a grant.
//!
//! Why it exists: the checks a request must pass (resource, eligibility, duration, reason,
//! ticket, one pending per person and resource, not already held) and its three outcomes
//! (refused, approved by policy, pending) are decided here for every channel.
//!
//! What it must never do: write anything for a request that fails a check, or make a grant
//! before the approved request is durable (the request row is the intent the recovery task
//! honours if the process dies before the grant exists).

use serde_json::json;
use sqlx::Row;

use super::access::owner_and_submitter;
use super::directory::is_named;
use super::error::RequestError;
use super::model::{
    Actor, DecisionRecord, Request, RequestKind, RequestState, RequestView, StageStatus, Verdict,
};
use super::repo::{self, Bind};
use super::RequestService;
use crate::audit::{self, NewEntry};
use crate::authz::{self, Facts, Verb};
use crate::grants::input::{self, ms};
use crate::grants::{CreateGrant, Grant, GrantError, GrantState, Holder};
use crate::policy::{parse_duration, Resource};

const MAX_TICKET: usize = 128;

/// What a person asks for.
#[derive(Debug, Clone, Default)]
pub struct NewRequest {
    pub resource: String,
    /// `1h`, `90m`; `None`: the resource's default.
    pub duration: Option<String>,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    /// Okta login or id of the person who would get the access, when not the caller (admins and
    /// portals only).
    pub on_behalf_of: Option<String>,
    /// An emergency: the requester approves it themself (resources with `break_glass = true`).
    pub break_glass: bool,
}

/// The outcome of a request that passed its checks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Created {
    pub request: Request,
    /// Set when the request was approved at once (policy or break-glass) and the grant made.
    pub grant: Option<Grant>,
}

/// A decision comment (see [`input::text`]).
pub(super) fn check_comment(c: Option<&str>) -> Result<String, RequestError> {
    Ok(input::text("comment", c)?)
}

impl RequestService {
    /// Checks, records and (when policy or break-glass approves it) grants. Invalid input changes
    /// nothing.
    pub async fn create(&self, actor: &Actor, req: NewRequest) -> Result<Created, RequestError> {
        let on_behalf = req
            .on_behalf_of
            .as_deref()
            .map(str::trim)
            .filter(|who| !who.is_empty() && !actor.is(who));
        authz::decide(
            if on_behalf.is_some() {
                Verb::RequestOnBehalf
            } else {
                Verb::Request
            },
            actor,
            &Facts {
                break_glass: req.break_glass,
                ..Facts::default()
            },
        )?;
        let res = input::resource(&self.policy().current(), &req.resource)?;
        let asked = req
            .duration
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let mut duration = input::duration(&res, asked)?;
        let reason = input::reason(
            &res,
            req.reason.as_deref(),
            res.require_reason || req.break_glass,
        )?;
        let ticket = check_ticket(&res, req.ticket.as_deref())?;
        if req.break_glass {
            let max = match (res.break_glass, res.break_glass_max_duration) {
                (true, Some(m)) => m,
                _ => return Err(RequestError::BreakGlassNotAllowed(res.name.clone())),
            };
            if asked.is_some() && duration > max {
                return Err(RequestError::BreakGlassTooLong {
                    requested: input::fmt_duration(duration),
                    max: input::fmt_duration(max),
                });
            }
            duration = duration.min(max);
        }
        let target = on_behalf.unwrap_or(&actor.login).to_string();
        let user = self.directory().user(&target).await?;
        input::user_status(&user, &target)?;
        // Okta is asked for the user's groups only when a rule names groups.
        let needs_groups = res
            .requesters
            .as_ref()
            .is_some_and(|p| !p.okta_groups.is_empty())
            || res
                .auto_approve
                .as_ref()
                .is_some_and(|a| !a.okta_groups.is_empty());
        let groups = if needs_groups {
            self.directory().groups_cached(&user.id).await?
        } else {
            Default::default()
        };
        if let Some(who) = &res.requesters {
            if !is_named(who, &user, &groups) {
                return Err(RequestError::NotEligible(res.name.clone()));
            }
        }
        if let Some(g) = self.live_grant(&user.id, &res.name).await? {
            return Err(RequestError::AlreadyGranted {
                grant_id: g,
                resource: res.name.clone(),
            });
        }
        let auto = if req.break_glass {
            super::auto::Auto::No(None)
        } else {
            self.auto_decision(&res, &user, &groups, ms(duration)).await
        };
        let stages = res.approval_stages();
        let now = self.clock().now_ms();
        let approved = req.break_glass || auto.approved() || stages.is_empty();
        let r = Request {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user.id.clone(),
            user_login: user.login.clone(),
            resource: res.name.clone(),
            kind: RequestKind::Access,
            grant_id: None,
            duration_ms: ms(duration),
            reason: reason.clone(),
            ticket: ticket.clone(),
            requested_by: actor.login.clone(),
            channel: actor.channel.as_string(),
            state: if approved {
                RequestState::Approved
            } else {
                RequestState::Pending
            },
            break_glass: req.break_glass,
            review_pending: req.break_glass && !stages.is_empty(),
            created_at: now,
            expires_at: now.saturating_add(ms(res.pending_timeout)),
            decided_at: approved.then_some(now),
            end_reason: None,
            auto_approval: auto.record(),
            version: 0,
        };
        let audit_actor = actor.audit_name();
        let mut tx = self
            .begin_with_request(
                &r,
                &audit_actor,
                json!({
                    "ticket": r.ticket, "on_behalf": r.is_on_behalf(),
                    "break_glass": r.break_glass, "auto_approval": r.auto_approval,
                    "stages": stages.iter().map(|s| json!({"name": s.name, "approvals_required": s.approvals_required})).collect::<Vec<_>>(),
                }),
            )
            .await?;
        if req.break_glass {
            repo::insert_decision(
                &mut tx,
                &r.id,
                &DecisionRecord {
                    approver: user.login.to_ascii_lowercase(),
                    stage: 0,
                    decision: Verdict::BreakGlass,
                    channel: r.channel.clone(),
                    comment: reason.clone(),
                    decided_at: now,
                },
            )
            .await?;
            audit::append(
                &mut tx,
                self.clock(),
                NewEntry::new(
                    &audit_actor,
                    "request.break_glass",
                    r.subject(),
                    json!({
                        "resource": r.resource, "user_login": r.user_login, "reason": reason,
                        "duration_ms": r.duration_ms, "review_pending": r.review_pending,
                    }),
                ),
            )
            .await?;
        } else if approved {
            let rule = if auto.approved() {
                auto.rule()
            } else {
                "no_approval_required"
            };
            self.append_approved_without_decision(&mut tx, &r, "policy", rule)
                .await?;
        }
        tx.commit().await?;
        if !approved {
            self.count("pending");
            return Ok(Created {
                request: r,
                grant: None,
            });
        }
        self.count(if req.break_glass {
            "break_glass"
        } else {
            "auto_approved"
        });
        let grant_actor = if req.break_glass {
            audit_actor
        } else {
            "policy".to_string()
        };
        let grant = self.make_grant(&r, &grant_actor).await?;
        let request = self.get_request(&r.id).await?;
        Ok(Created { request, grant })
    }

    /// Opens the transaction that records a new request: inserts it (a second pending request
    /// of the same person for the same resource is refused by the partial unique index and
    /// answered with the first one's id) and appends `request.created` with `extra` details.
    async fn begin_with_request(
        &self,
        r: &Request,
        audit_actor: &str,
        extra: serde_json::Value,
    ) -> Result<crate::store::Tx, RequestError> {
        let mut tx = self.store().begin().await?;
        if let Err(e) = repo::insert(&mut tx, r).await {
            let _ = tx.rollback().await;
            if is_unique_violation(&e) {
                if let Some(p) = repo::pending_for(self.store(), &r.user_id, &r.resource).await? {
                    self.count("duplicate");
                    return Err(RequestError::AlreadyPending {
                        id: p.id,
                        resource: r.resource.clone(),
                    });
                }
            }
            return Err(RequestError::Store(e.into()));
        }
        let mut details = json!({
            "user_id": r.user_id, "user_login": r.user_login, "resource": r.resource,
            "kind": r.kind.as_str(), "duration_ms": r.duration_ms, "reason": r.reason,
            "channel": r.channel, "expires_at": r.expires_at,
        });
        if let (Some(d), Some(extra)) = (details.as_object_mut(), extra.as_object()) {
            d.extend(extra.clone());
        }
        audit::append(
            &mut tx,
            self.clock(),
            NewEntry::new(audit_actor, "request.created", r.subject(), details),
        )
        .await?;
        Ok(tx)
    }

    /// Records an approval that needed no approver's decision: the policy (`auto_approve`, no
    /// stages) or an admin extending someone's grant.
    async fn append_approved_without_decision(
        &self,
        tx: &mut crate::store::Tx,
        r: &Request,
        by: &str,
        rule: &str,
    ) -> Result<(), RequestError> {
        audit::append(
            tx,
            self.clock(),
            NewEntry::new(
                by,
                "request.approved",
                r.subject(),
                json!({
                    "resource": r.resource, "user_login": r.user_login, "by": by, "rule": rule,
                    "auto_approval": r.auto_approval,
                }),
            ),
        )
        .await?;
        Ok(())
    }

    /// An active or provisioning grant of `user_id` on `resource`, if any.
    async fn live_grant(
        &self,
        user_id: &str,
        resource: &str,
    ) -> Result<Option<String>, RequestError> {
        let live = self
            .grants()
            .live_of_user(Holder::Id(user_id), Some(resource), false)
            .await?;
        Ok(live.into_iter().next().map(|g| g.id))
    }

    /// Makes the grant an approved access request is owed, or extends the grant of an approved
    /// extension. Idempotent: the unique `grants.request_id` makes a second attempt find the
    /// first grant. A definite refusal (the user left, the policy changed) ends the request
    /// `failed`; a transient one (Okta unreachable) is left for the recovery task.
    pub(super) async fn make_grant(
        &self,
        r: &Request,
        actor: &str,
    ) -> Result<Option<Grant>, RequestError> {
        let result = match r.kind {
            RequestKind::Access => {
                if let Some(g) = self.grant_of(&r.id).await? {
                    return Ok(Some(g));
                }
                let d = std::time::Duration::from_millis(u64::try_from(r.duration_ms).unwrap_or(0));
                self.grants()
                    .create(
                        actor,
                        CreateGrant {
                            user: r.user_id.clone(),
                            resource: r.resource.clone(),
                            duration: Some(format!("{}s", d.as_secs().max(1))),
                            reason: Some(r.reason.clone()),
                            request_id: Some(r.id.clone()),
                            // The grant was asked for by the requester, not by the approver
                            // whose decision made it (the audit entry's actor).
                            requested_by: Some(r.requested_by.clone()),
                        },
                    )
                    .await
            }
            RequestKind::Extension => {
                let Some(gid) = &r.grant_id else {
                    return Ok(None);
                };
                let secs = (r.duration_ms / 1000).max(1);
                self.grants().extend(actor, gid, &format!("{secs}s")).await
            }
        };
        match result {
            Ok(g) => Ok(Some(g)),
            Err(e) if is_unique_violation_grant(&e) => Ok(self.grant_of(&r.id).await?),
            Err(e) if is_definite(&e) => {
                self.fail(r, &e).await?;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Ends an approved request whose grant cannot be made.
    async fn fail(&self, r: &Request, e: &GrantError) -> Result<(), RequestError> {
        let cur = self.get_request(&r.id).await?;
        if cur.state != RequestState::Approved {
            return Ok(());
        }
        let msg = e.to_string();
        let mut tx = self.store().begin().await?;
        let won = repo::cas(
            tx.conn(),
            &cur.id,
            cur.version,
            "state = 'failed', end_reason = $3",
            vec![Bind::S(format!("the grant could not be made: {msg}"))],
        )
        .await?;
        if !won {
            tx.rollback().await?;
            return Ok(());
        }
        audit::append(
            &mut tx,
            self.clock(),
            NewEntry::new(
                "system:broker",
                "request.failed",
                cur.subject(),
                json!({ "resource": cur.resource, "user_login": cur.user_login, "error": msg }),
            ),
        )
        .await?;
        tx.commit().await?;
        self.count("failed");
        Ok(())
    }

    /// The grant made for an access request.
    pub async fn grant_of(&self, request_id: &str) -> Result<Option<Grant>, RequestError> {
        let mut conn = self.store().reads().acquire().await?;
        let row = sqlx::query("SELECT id FROM grants WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional(&mut *conn)
            .await?;
        drop(conn);
        match row {
            Some(r) => {
                let id: String = r.try_get("id")?;
                Ok(Some(self.grants().get(&id).await?))
            }
            None => Ok(None),
        }
    }

    pub(super) async fn get_request(&self, id: &str) -> Result<Request, RequestError> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(RequestError::NotFound(id.to_string()));
        }
        repo::get(self.store(), id)
            .await?
            .ok_or_else(|| RequestError::NotFound(id.to_string()))
    }

    /// A request with its decisions, its grant and where its stages stand.
    pub async fn get(&self, id: &str) -> Result<RequestView, RequestError> {
        let request = self.get_request(id).await?;
        let decisions = {
            let mut conn = self.store().reads().acquire().await?;
            repo::decisions(&mut conn, id).await?
        };
        let grant = match (&request.kind, &request.grant_id) {
            (RequestKind::Extension, Some(g)) => self.grants().get(g).await.ok(),
            _ => self.grant_of(id).await?,
        };
        let policy = self.policy().current();
        let stages: Vec<StageStatus> = policy
            .get(&request.resource)
            .map(|res| {
                res.approval_stages()
                    .iter()
                    .enumerate()
                    .map(|(i, s)| StageStatus {
                        name: s.name.clone(),
                        approvals_required: s.approvals_required,
                        approvals: approvals_in(&decisions, i),
                    })
                    .collect()
            })
            .unwrap_or_default();
        // An access request's grant is found through `grants.request_id`; show its id here too.
        let mut request = request;
        if request.grant_id.is_none() {
            request.grant_id = grant.as_ref().map(|g| g.id.clone());
        }
        let current_stage = if request.state == RequestState::Pending {
            stages
                .iter()
                .position(|s| s.approvals < s.approvals_required)
        } else {
            None
        };
        Ok(RequestView {
            request,
            decisions,
            grant,
            stages,
            current_stage,
        })
    }

    pub async fn list(&self, f: &repo::ListFilter) -> Result<Vec<Request>, RequestError> {
        Ok(repo::list(self.store(), f).await?)
    }

    /// Cancels a pending request: its requester (or whoever submitted it) or an admin.
    pub async fn cancel(&self, id: &str, actor: &Actor) -> Result<Request, RequestError> {
        for _ in 0..5 {
            let r = self.get_request(id).await?;
            let (owner, submitter) = owner_and_submitter(actor, &r);
            authz::decide(
                Verb::Cancel,
                actor,
                &Facts {
                    owner,
                    submitter,
                    ..Facts::default()
                },
            )?;
            if r.state != RequestState::Pending {
                return Err(RequestError::NotPending(r.state.as_str()));
            }
            if self
                .end_pending(
                    &r,
                    "cancelled",
                    &actor.audit_name(),
                    &format!("cancelled by {}", actor.login),
                )
                .await?
            {
                self.count("cancelled");
                return self.get_request(id).await;
            }
        }
        Err(RequestError::Conflict)
    }

    /// Cancels every pending request of a user (offboarding: the user was deactivated,
    /// suspended or deleted in Okta). Returns how many were cancelled.
    pub async fn cancel_pending_of_user(
        &self,
        user_id: &str,
        actor: &str,
        why: &str,
    ) -> Result<usize, RequestError> {
        let mut n = 0;
        for r in repo::pending_of_user(self.store(), user_id).await? {
            if self.end_pending(&r, "cancelled", actor, why).await? {
                self.count("cancelled");
                n += 1;
            }
        }
        Ok(n)
    }

    /// Moves a pending request to `state` (cancelled or expired) with its audit entry. `false`
    /// when it changed meanwhile.
    pub(super) async fn end_pending(
        &self,
        r: &Request,
        state: &'static str,
        actor: &str,
        why: &str,
    ) -> Result<bool, RequestError> {
        let now = self.clock().now_ms();
        let mut tx = self.store().begin().await?;
        let won = repo::cas(
            tx.conn(),
            &r.id,
            r.version,
            "state = $3, decided_at = $4, end_reason = $5",
            vec![Bind::S(state.into()), Bind::I(now), Bind::S(why.into())],
        )
        .await?;
        if !won {
            tx.rollback().await?;
            return Ok(false);
        }
        audit::append(
            &mut tx,
            self.clock(),
            NewEntry::new(
                actor,
                format!("request.{state}"),
                r.subject(),
                json!({ "resource": r.resource, "user_login": r.user_login, "reason": why }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// More time on an active grant, asked by its holder: approved at once within the resource's
    /// `auto_approve.max_duration` of total time (for people the auto-approval names) or when
    /// the resource needs no approval; otherwise a pending extension request with the same
    /// approval rules as a new one. An admin extends directly.
    pub async fn extend(
        &self,
        grant_id: &str,
        actor: &Actor,
        duration: &str,
        reason: Option<&str>,
    ) -> Result<Created, RequestError> {
        let g = self.grants().get(grant_id).await?;
        let holder = actor.is(&g.user_login) || actor.login == g.user_id;
        authz::decide(
            Verb::Extend,
            actor,
            &Facts {
                owner: holder,
                ..Facts::default()
            },
        )?;
        let d = parse_duration(duration).map_err(GrantError::InvalidDuration)?;
        // Someone else allowed to give time (an admin) extends it at once: recorded as an
        // extension request approved by them, so the history shows who gave the extra time.
        let by_admin = !holder;
        if g.state != GrantState::Active {
            return Err(GrantError::NotActive(g.state.as_str()).into());
        }
        let res = input::resource(&self.policy().current(), &g.resource)?;
        // The holder explains why they need more time; an admin giving it is recorded as the
        // approver, and their reason is optional (as the admin API's extension always was).
        let reason = input::reason(&res, reason, res.require_reason && !by_admin)?;
        let user = self.directory().user(&g.user_id).await?;
        let groups = self.directory().groups_cached(&user.id).await?;
        let total = g.duration_ms.saturating_add(ms(d));
        let auto = if by_admin {
            super::auto::Auto::No(None)
        } else {
            self.auto_decision(&res, &user, &groups, total).await
        };
        let stages = res.approval_stages();
        let approved = auto.approved() || by_admin || stages.is_empty();
        let now = self.clock().now_ms();
        let r = Request {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: g.user_id.clone(),
            user_login: g.user_login.clone(),
            resource: g.resource.clone(),
            kind: RequestKind::Extension,
            grant_id: Some(g.id.clone()),
            duration_ms: ms(d),
            reason: reason.clone(),
            ticket: None,
            requested_by: actor.login.clone(),
            channel: actor.channel.as_string(),
            state: if approved {
                RequestState::Approved
            } else {
                RequestState::Pending
            },
            break_glass: false,
            review_pending: false,
            created_at: now,
            expires_at: now
                .saturating_add(ms(res.pending_timeout))
                .min(g.expires_at.max(now)),
            decided_at: approved.then_some(now),
            end_reason: None,
            auto_approval: auto.record(),
            version: 0,
        };
        if approved {
            // Checked before anything is written: an extension past the resource's maximum is
            // refused, not recorded as approved and then failed.
            input::extension(&res, g.expires_at, d, now)?;
        }
        let mut tx = self
            .begin_with_request(&r, &actor.audit_name(), json!({ "grant_id": g.id }))
            .await?;
        let (by, rule) = match (by_admin, auto.approved()) {
            (true, _) => (actor.audit_name(), "admin"),
            (false, true) => ("policy".to_string(), auto.rule()),
            (false, false) => ("policy".to_string(), "no_approval_required"),
        };
        if approved {
            self.append_approved_without_decision(&mut tx, &r, &by, rule)
                .await?;
        }
        tx.commit().await?;
        if !approved {
            self.count("pending");
            return Ok(Created {
                request: r,
                grant: Some(g),
            });
        }
        self.count("auto_approved");
        let grant = self.make_grant(&r, &by).await?;
        Ok(Created {
            request: self.get_request(&r.id).await?,
            grant,
        })
    }
}

/// Approvals counted in stage `i`.
pub(super) fn approvals_in(decisions: &[DecisionRecord], i: usize) -> u32 {
    let n = decisions
        .iter()
        .filter(|d| d.decision == Verdict::Approve && d.stage == i as i64)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The first stage still short of approvals; `None` when every stage is satisfied.
pub(super) fn current_stage(
    stages: &[crate::policy::Stage],
    decisions: &[DecisionRecord],
) -> Option<usize> {
    stages
        .iter()
        .enumerate()
        .position(|(i, s)| approvals_in(decisions, i) < s.approvals_required)
}

fn check_ticket(res: &Resource, ticket: Option<&str>) -> Result<Option<String>, RequestError> {
    let t = ticket.map(str::trim).filter(|t| !t.is_empty());
    if let Some(t) = t {
        if t.len() > MAX_TICKET || t.chars().any(char::is_control) {
            return Err(RequestError::InvalidInput(format!(
                "ticket must be at most {MAX_TICKET} characters of text"
            )));
        }
    }
    match (&res.ticket_pattern, t) {
        (Some(p), None) => Err(RequestError::TicketRequired {
            resource: res.name.clone(),
            pattern: p.clone(),
        }),
        (Some(p), Some(t)) => {
            // Validated when the policy was loaded; a pattern that fails here refuses.
            let ok = regex::Regex::new(p)
                .map(|re| re.is_match(t))
                .unwrap_or(false);
            if ok {
                Ok(Some(t.to_string()))
            } else {
                Err(RequestError::InvalidTicket {
                    ticket: t.to_string(),
                    pattern: p.clone(),
                })
            }
        }
        (None, t) => Ok(t.map(str::to_string)),
    }
}

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation()
                || d.code()
                    .is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
        }
        _ => false,
    }
}

/// A refusal that retrying will not change.
fn is_definite(e: &GrantError) -> bool {
    use GrantError::*;
    matches!(
        e,
        UnknownResource(_)
            | InvalidDuration(_)
            | DurationTooLong { .. }
            | ExtensionTooLong { .. }
            | ReasonRequired(_)
            | InvalidInput(_)
            | UnknownUser(_)
            | UserNotActive { .. }
            | NotActive(_)
            | NotFound(_)
    )
}

fn is_unique_violation_grant(e: &GrantError) -> bool {
    match e {
        GrantError::Store(crate::store::StoreError::Query(q)) => is_unique_violation(q),
        _ => false,
    }
}
