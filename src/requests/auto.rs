//! The policy's automatic approval of a request: the people `auto_approve` names, or the person
//! an on-call schedule says is on call now, within its duration and time windows.
//!
//! Why it exists: "on call now" is a fact of an outside system read at request time, and the
//! answer has three outcomes, not two: on call (approved, recorded with the source and schedule
//! that said so), not on call (pending), and "could not ask" (pending, with the reason the
//! requester reads). Keeping that here keeps `service.rs` about the request's life.
//!
//! What it must never do: approve on anything but a source's positive answer (a timeout, a 429,
//! a 5xx, an unknown source or an unreadable answer approves no one), or ask an on-call system
//! when the policy would not approve anyway (duration over the limit, outside the windows, no
//! on-call rule).

use std::collections::HashSet;

use super::directory::is_named;
use super::model::AutoApproval;
use super::RequestService;
use crate::grants::input::ms;
use crate::okta::User;
use crate::oncall::{OncallError, Target};
use crate::policy::{in_windows, Principals, Resource};

/// What `auto_approve` made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Auto {
    /// Not approved; with a note when the requester should know why.
    No(Option<AutoApproval>),
    /// Named by `okta_groups` or `users`.
    Named,
    /// On call now, per the source and schedule recorded.
    OnCall(AutoApproval),
}

impl Auto {
    pub(super) fn approved(&self) -> bool {
        matches!(self, Auto::Named | Auto::OnCall(_))
    }

    /// The record kept on the request (and shown to the requester).
    pub(super) fn record(&self) -> Option<AutoApproval> {
        match self {
            Auto::No(a) => a.clone(),
            Auto::Named => None,
            Auto::OnCall(a) => Some(a.clone()),
        }
    }

    /// The `rule` of the `request.approved` audit entry.
    pub(super) fn rule(&self) -> &'static str {
        match self {
            Auto::OnCall(_) => "auto_approve.on_call",
            _ => "auto_approve",
        }
    }
}

fn unavailable(e: &OncallError, source: &str, target: &Target) -> AutoApproval {
    AutoApproval {
        outcome: "unavailable".into(),
        source: Some(source.to_string()),
        schedule: match target {
            Target::Schedule(s) => Some(s.clone()),
            Target::EscalationPolicy(_) => None,
        },
        escalation_policy: match target {
            Target::EscalationPolicy(p) => Some(p.clone()),
            Target::Schedule(_) => None,
        },
        level: None,
        note: format!("not auto-approved: {e}; the request waits for its approvers"),
    }
}

impl RequestService {
    /// Decides `auto_approve` for `user` asking for `total_ms` of access on `res`, now.
    pub(super) async fn auto_decision(
        &self,
        res: &Resource,
        user: &User,
        groups: &HashSet<String>,
        total_ms: i64,
    ) -> Auto {
        let Some(a) = &res.auto_approve else {
            return Auto::No(None);
        };
        if total_ms > ms(a.max_duration) {
            return Auto::No(None);
        }
        let named = is_named(
            &Principals {
                okta_groups: a.okta_groups.clone(),
                users: a.users.clone(),
            },
            user,
            groups,
        );
        if !named && a.on_call.is_empty() {
            return Auto::No(None);
        }
        if !in_windows(&a.windows, self.clock().now_ms()) {
            return Auto::No(Some(AutoApproval {
                outcome: "outside_window".into(),
                source: None,
                schedule: None,
                escalation_policy: None,
                level: None,
                note: "not auto-approved: outside the resource's auto-approval hours; the \
                       request waits for its approvers"
                    .into(),
            }));
        }
        if named {
            return Auto::Named;
        }
        // The vendor's user is matched on the Okta login, which is unique and which people
        // cannot edit, never on `profile.email`: Okta allows duplicate primary emails and many
        // orgs let people change theirs, which would let anyone borrow the on-call engineer's
        // address. (Okta logins are email-shaped; an org whose logins are not must make them
        // the vendor's email.)
        let email = user.login.as_str();
        let mut failure = None;
        for rule in &a.on_call {
            // Validated at load: exactly one target.
            let Some(target) = rule.target() else {
                continue;
            };
            let answer = match self.oncall() {
                Some(oc) => oc.on_call(&rule.source, &target, email, &rule.levels).await,
                None => Err(OncallError::UnknownSource(rule.source.clone())),
            };
            match answer {
                Ok(Some(m)) => {
                    return Auto::OnCall(AutoApproval {
                        outcome: "on_call".into(),
                        source: Some(rule.source.clone()),
                        schedule: rule.schedule.clone(),
                        escalation_policy: rule.escalation_policy.clone(),
                        level: m.level,
                        note: format!(
                            "auto-approved: on call now in {} {} `{}`",
                            rule.source,
                            target.key().replace('_', " "),
                            target.id()
                        ),
                    })
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(resource = %res.name, source = %rule.source, error = %e,
                        "on-call source could not answer; falling back to approvers");
                    metrics::counter!("jit_oncall_unavailable_total", "source" => rule.source.clone())
                        .increment(1);
                    failure.get_or_insert_with(|| unavailable(&e, &rule.source, &target));
                }
            }
        }
        Auto::No(failure)
    }
}
