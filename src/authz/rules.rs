//! The rules: one pure function, [`decide`], answers "may this actor do this verb to this
//! object?" from the actor and the [`Facts`] the calling service read about the object.
//!
//! Why it is pure: the answer must be the same whichever channel asked, and a table of every
//! verb and actor kind can be checked without a database (see [`super::table`]). Reading the
//! facts (who holds the grant, whether Okta names the actor among the resource's approvers
//! right now) is the services' job; deciding from them is only this file's.
//!
//! What it must never do: read anything, or allow a verb that is not listed for the actor.

use axum::http::StatusCode;

use super::actor::{Actor, Channel, Role};
use crate::error::ErrorCode;

/// Everything an actor can ask to do. Each has exactly one rule in [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Read one request or grant.
    See,
    /// List every request or grant, unfiltered (others see their list filtered by [`Verb::See`]).
    ListAll,
    /// Ask for access for oneself (break-glass included).
    Request,
    /// Ask for access for someone else.
    RequestOnBehalf,
    Approve,
    Deny,
    /// Withdraw a pending request.
    Cancel,
    /// More time on an active grant (the holder asks; an admin gives it directly).
    Extend,
    /// End a grant before its expiry.
    EndEarly,
    /// Try a failed grant's removal again.
    RetryFailed,
    DecideReviewItem,
    DelegateReviewItem,
    /// Read the audit log and verify its chain.
    ReadAudit,
    /// Export the audit log or a review's evidence report.
    Export,
    ReadSyncRuns,
    /// Start a sync run.
    RunSync,
    /// Read dead letters: outbound deliveries and inbound events.
    SeeDeadLetters,
    RetryDeadLetter,
    /// Give access directly, without a request.
    CreateGrant,
    /// Create, close or stop review campaigns.
    ManageReviews,
    /// Read every campaign and its items (a reviewer always reads their own items).
    ReadReviews,
    ReadInventory,
    /// See `/readyz` in detail: failing dependencies and their errors, the Okta principal and
    /// capabilities (anonymous callers see only ready or not).
    ReadHealth,
}

impl Verb {
    pub const ALL: [Verb; 23] = [
        Verb::See,
        Verb::ListAll,
        Verb::Request,
        Verb::RequestOnBehalf,
        Verb::Approve,
        Verb::Deny,
        Verb::Cancel,
        Verb::Extend,
        Verb::EndEarly,
        Verb::RetryFailed,
        Verb::DecideReviewItem,
        Verb::DelegateReviewItem,
        Verb::ReadAudit,
        Verb::Export,
        Verb::ReadSyncRuns,
        Verb::RunSync,
        Verb::SeeDeadLetters,
        Verb::RetryDeadLetter,
        Verb::CreateGrant,
        Verb::ManageReviews,
        Verb::ReadReviews,
        Verb::ReadInventory,
        Verb::ReadHealth,
    ];

    /// The verb as people read it (the rule table, error messages).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::See => "see a request or grant",
            Verb::ListAll => "list everyone's requests and grants",
            Verb::Request => "request access",
            Verb::RequestOnBehalf => "request on behalf of someone",
            Verb::Approve => "approve",
            Verb::Deny => "deny",
            Verb::Cancel => "cancel a pending request",
            Verb::Extend => "extend a grant",
            Verb::EndEarly => "end a grant early",
            Verb::RetryFailed => "retry a failed grant",
            Verb::DecideReviewItem => "decide a review item",
            Verb::DelegateReviewItem => "delegate a review item",
            Verb::ReadAudit => "read and verify the audit log",
            Verb::Export => "export the audit log or a review report",
            Verb::ReadSyncRuns => "read sync runs",
            Verb::RunSync => "run a sync",
            Verb::SeeDeadLetters => "see dead letters",
            Verb::RetryDeadLetter => "retry a dead letter",
            Verb::CreateGrant => "create a grant directly",
            Verb::ManageReviews => "create, close or stop review campaigns",
            Verb::ReadReviews => "read every review campaign",
            Verb::ReadInventory => "read the Okta inventory",
            Verb::ReadHealth => "see readiness details",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step-up resource's demand on an approval: a sign-in to Okta no older than `max_age_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    pub resource: String,
    pub max_age_ms: i64,
    pub now_ms: i64,
}

/// What the calling service read about the actor's relation to the object. Every field defaults
/// to "no relation"; a service sets only what it read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The object is the actor's own: they hold the grant, the request asks access for them, or
    /// the review item is their own access.
    pub owner: bool,
    /// The actor submitted the request (for themself or on someone's behalf).
    pub submitter: bool,
    /// Okta names the actor among this resource's approvers, read fresh when they act. For an
    /// approval in progress: among the approvers of the stage the decision would count for.
    pub approver: bool,
    /// The actor has recorded a decision on this request.
    pub decided: bool,
    /// The actor is the review item's reviewer.
    pub reviewer: bool,
    /// The review campaign lets people review their own access.
    pub self_review_allowed: bool,
    /// The request is a break-glass emergency (granted at once, reviewed afterwards).
    pub break_glass: bool,
    /// The extension is given directly, without a request to approve.
    pub direct: bool,
    /// Approving needs a recent Okta sign-in.
    pub step_up: Option<StepUp>,
}

/// A refusal, with the stable code every channel shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this credential may not {verb} (it needs the role {})", names(needed))]
    Role { verb: Verb, needed: &'static [Role] },
    #[error("a signed callback may only approve or deny requests, not {verb}")]
    Channel { verb: Verb },
    #[error("{}", not_yours(*verb))]
    NotYours { verb: Verb },
    #[error("only an admin or a portal may request on behalf of someone else")]
    OnBehalf,
    #[error("break-glass is for the person in the emergency: they must ask themself")]
    BreakGlassForOthers,
    #[error("you cannot approve your own request")]
    SelfApproval,
    #[error("you are not an approver of this request's current stage")]
    NotApprover,
    #[error("approving `{resource}` needs a fresh Okta sign-in: approve it in the console")]
    StepUpRequired { resource: String },
    #[error("that item is not yours to review")]
    NotYourItem,
    #[error("you cannot review your own access")]
    SelfReview,
}

fn names(roles: &[Role]) -> String {
    let v: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    v.join(" or ")
}

fn not_yours(verb: Verb) -> &'static str {
    match verb {
        Verb::Cancel => "only the requester or an admin may cancel this request",
        Verb::Extend => "you may only extend your own grants",
        Verb::EndEarly | Verb::RetryFailed => {
            "only the grant's holder, an approver of its resource or an admin may end it"
        }
        _ => "this is not yours to see",
    }
}

impl ErrorCode for Denied {
    fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }

    fn code(&self) -> &'static str {
        match self {
            Denied::Role { .. } | Denied::Channel { .. } | Denied::NotYours { .. } => "forbidden",
            Denied::OnBehalf => "on_behalf_forbidden",
            Denied::BreakGlassForOthers => "break_glass_on_behalf",
            Denied::SelfApproval => "self_approval",
            Denied::NotApprover => "not_approver",
            Denied::StepUpRequired { .. } => "step_up_required",
            Denied::NotYourItem => "not_your_item",
            Denied::SelfReview => "self_review",
        }
    }
}

/// People acting as themselves (an admin holds these too).
const PERSON: &[Role] = &[Role::Requester, Role::Approver];
const READER: &[Role] = &[Role::Auditor];
const ADMIN: &[Role] = &[Role::Admin];
const APPROVER: &[Role] = &[Role::Approver];
/// Whoever may write anything at all about requests: people and portals, never auditors alone.
const WRITER: &[Role] = &[Role::Requester, Role::Approver, Role::Portal];

fn need(verb: Verb, actor: &Actor, roles: &'static [Role]) -> Result<(), Denied> {
    if roles.iter().any(|r| actor.has(*r)) {
        Ok(())
    } else {
        Err(Denied::Role {
            verb,
            needed: roles,
        })
    }
}

fn yes_if(ok: bool, verb: Verb) -> Result<(), Denied> {
    if ok {
        Ok(())
    } else {
        Err(Denied::NotYours { verb })
    }
}

/// The one answer to "may `actor` do `verb` to the object `f` describes?".
///
/// Checks run in a fixed order, so a refusal names the first rule that fails: the channel's
/// scope, then the credential's roles, then the actor's relation to the object, then step-up.
pub fn decide(verb: Verb, actor: &Actor, f: &Facts) -> Result<(), Denied> {
    // A callback integration's secret proves only that the integration sent a decision.
    if matches!(actor.channel, Channel::Callback(_)) && !matches!(verb, Verb::Approve | Verb::Deny)
    {
        return Err(Denied::Channel { verb });
    }
    let admin = actor.has(Role::Admin);
    match verb {
        Verb::See => yes_if(
            actor.has(Role::Auditor)
                || f.owner
                || f.submitter
                || f.decided
                || (f.approver && actor.has(Role::Approver)),
            verb,
        ),
        Verb::ListAll
        | Verb::ReadAudit
        | Verb::Export
        | Verb::ReadSyncRuns
        | Verb::ReadReviews
        | Verb::ReadInventory
        | Verb::ReadHealth => need(verb, actor, READER),
        Verb::RunSync
        | Verb::SeeDeadLetters
        | Verb::RetryDeadLetter
        | Verb::CreateGrant
        | Verb::ManageReviews => need(verb, actor, ADMIN),
        Verb::Request => need(verb, actor, PERSON),
        Verb::RequestOnBehalf => {
            if !actor.has(Role::Portal) {
                return Err(Denied::OnBehalf);
            }
            if f.break_glass {
                return Err(Denied::BreakGlassForOthers);
            }
            Ok(())
        }
        Verb::Approve | Verb::Deny => {
            need(verb, actor, APPROVER)?;
            if f.owner {
                return Err(Denied::SelfApproval);
            }
            if !f.approver {
                return Err(Denied::NotApprover);
            }
            if verb == Verb::Approve {
                if let Some(s) = &f.step_up {
                    // Only the console knows when the person last signed in to Okta; another
                    // system may vouch for its own MFA when configured to.
                    let fresh = matches!(actor.channel, Channel::Console)
                        && actor
                            .authenticated_at
                            .is_some_and(|at| s.now_ms.saturating_sub(at) <= s.max_age_ms);
                    if !(fresh || actor.trusted_for_step_up) {
                        return Err(Denied::StepUpRequired {
                            resource: s.resource.clone(),
                        });
                    }
                }
            }
            Ok(())
        }
        Verb::Cancel => {
            need(verb, actor, WRITER)?;
            yes_if(admin || f.owner || f.submitter, verb)
        }
        // The holder asks (and the policy or an approver says yes); only an admin gives time
        // directly.
        Verb::Extend => {
            need(verb, actor, PERSON)?;
            yes_if(admin || (f.owner && !f.direct), verb)
        }
        // Retrying a failed removal is ending the grant again: the same people may.
        Verb::EndEarly | Verb::RetryFailed => {
            need(verb, actor, PERSON)?;
            yes_if(admin || f.owner || f.approver, verb)
        }
        Verb::DecideReviewItem | Verb::DelegateReviewItem => {
            need(verb, actor, PERSON)?;
            // An admin hands any item to a reviewer, but decides only their own.
            if verb == Verb::DelegateReviewItem && admin {
                return Ok(());
            }
            if f.owner && !f.self_review_allowed {
                return Err(Denied::SelfReview);
            }
            if !f.reviewer {
                return Err(Denied::NotYourItem);
            }
            Ok(())
        }
    }
}

/// [`decide`] for a verb about no particular object.
pub fn require(verb: Verb, actor: &Actor) -> Result<(), Denied> {
    decide(verb, actor, &Facts::default())
}

/// Whether [`decide`] allows it.
pub fn allows(verb: Verb, actor: &Actor, f: &Facts) -> bool {
    decide(verb, actor, f).is_ok()
}

/// Whether the answer depends on the one fact that costs an Okta read: whether Okta names the
/// actor among the resource's approvers right now. Services read it only then, so an admin, an
/// auditor or the holder costs no Okta call, and a refusal that does not depend on it (self-
/// approval, a missing role) is given without one.
pub fn depends_on_approver(verb: Verb, actor: &Actor, f: &Facts) -> bool {
    if f.approver {
        return false;
    }
    let without = decide(verb, actor, f);
    without.is_err()
        && without
            != decide(
                verb,
                actor,
                &Facts {
                    approver: true,
                    ..f.clone()
                },
            )
}
