//! The expected answer for every verb and every kind of actor: the table `docs/security.md`
//! shows ("Who may do what"), the unit tests check [`super::decide`] against, and the
//! integration tests run through every channel that offers each verb.
//!
//! Why it exists: a rule change must show up in three places at once or fail a test: here, in
//! the rules, and in the document people read. [`markdown`] renders the table; a test asserts
//! the document contains exactly that rendering.
//!
//! What it must never do: decide anything (it only states expectations).

use super::actor::{Actor, Channel, Role};
use super::rules::{Facts, StepUp, Verb};

/// The kinds of actor the table has a column for. Each is a credential (or channel) and a
/// relation to the object of the verb; [`Kind::actor`] and [`Kind::facts`] build one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An admin token (or console admin) acting on someone else's object.
    Admin,
    /// An auditor token, nothing else.
    Auditor,
    /// A person Okta names among the object's resource's approvers (read fresh).
    ApproverOfThis,
    /// A person with the approver role whom this resource's approvers do not name (dave).
    ApproverOfOther,
    /// A person with the requester role and no relation to the object.
    Requester,
    /// The person the object is about: holds the grant, asked for the request, holds the access
    /// the review item is about.
    Holder,
    /// A portal token acting on an object it did not submit.
    Portal,
    /// A portal token acting on a request it submitted for someone.
    PortalSubmitter,
    /// The review item's named reviewer (not its holder).
    Reviewer,
    /// A signed callback naming a person who approves this resource.
    Callback,
    /// A person mapped from Slack, with no relation to the object.
    SlackUser,
    /// A person signed in to the console, no admin or auditor group, no relation to the object.
    ConsoleUser,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Admin,
        Kind::Auditor,
        Kind::ApproverOfThis,
        Kind::ApproverOfOther,
        Kind::Requester,
        Kind::Holder,
        Kind::Portal,
        Kind::PortalSubmitter,
        Kind::Reviewer,
        Kind::Callback,
        Kind::SlackUser,
        Kind::ConsoleUser,
    ];

    /// The column heading.
    pub fn heading(self) -> &'static str {
        match self {
            Kind::Admin => "admin",
            Kind::Auditor => "auditor",
            Kind::ApproverOfThis => "approver of this resource",
            Kind::ApproverOfOther => "approver of another resource",
            Kind::Requester => "requester",
            Kind::Holder => "holder",
            Kind::Portal => "portal",
            Kind::PortalSubmitter => "portal that submitted it",
            Kind::Reviewer => "named reviewer",
            Kind::Callback => "callback integration",
            Kind::SlackUser => "Slack user",
            Kind::ConsoleUser => "console user",
        }
    }

    /// A representative actor of this kind.
    pub fn actor(self) -> Actor {
        let person = [Role::Requester, Role::Approver];
        match self {
            Kind::Admin => Actor::api("admin", &[Role::Admin]),
            Kind::Auditor => Actor::api("auditor", &[Role::Auditor]),
            Kind::ApproverOfThis => Actor::api("bob@example.com", &person),
            Kind::ApproverOfOther => Actor::api("dave@example.com", &person),
            Kind::Requester => Actor::api("eng1@example.com", &[Role::Requester]),
            Kind::Holder => Actor::api("alice@example.com", &[Role::Requester]),
            Kind::Portal | Kind::PortalSubmitter => Actor::api("portal", &[Role::Portal]),
            Kind::Reviewer => Actor::api("rita@example.com", &person),
            Kind::Callback => Actor::callback("servicenow", "bob@example.com", false),
            Kind::SlackUser => Actor::new("sam@example.com", Channel::Slack),
            Kind::ConsoleUser => Actor::console("cora@example.com", 0, false, false),
        }
    }

    /// What a service would read about this kind's relation to the object.
    pub fn facts(self) -> Facts {
        match self {
            Kind::ApproverOfThis | Kind::Callback => Facts {
                approver: true,
                ..Facts::default()
            },
            Kind::Holder => Facts {
                owner: true,
                submitter: true,
                ..Facts::default()
            },
            Kind::PortalSubmitter => Facts {
                submitter: true,
                ..Facts::default()
            },
            Kind::Reviewer => Facts {
                reviewer: true,
                ..Facts::default()
            },
            _ => Facts::default(),
        }
    }
}

/// One row: a verb (and any fact every column shares) and the answer per [`Kind::ALL`] column,
/// `Y` allowed, `-` refused.
pub struct Row {
    pub verb: Verb,
    pub label: &'static str,
    /// Every cell's request is a break-glass emergency.
    pub break_glass: bool,
    /// Every cell's extension skips approval.
    pub direct: bool,
    pub answers: &'static str,
}

const fn row(verb: Verb, label: &'static str, answers: &'static str) -> Row {
    Row {
        verb,
        label,
        break_glass: false,
        direct: false,
        answers,
    }
}

//                                                             admin
//                                                             |aud apT apO req hol por poS rev cb slk con
pub const ROWS: &[Row] = &[
    row(Verb::See, "see a request or grant", "YYY--Y-Y----"),
    row(
        Verb::ListAll,
        "list everyone's requests and grants",
        "YY----------",
    ),
    row(Verb::Request, "request access for oneself", "Y-YYYY--Y-YY"),
    row(
        Verb::RequestOnBehalf,
        "request on behalf of someone",
        "Y-----YY----",
    ),
    Row {
        verb: Verb::RequestOnBehalf,
        label: "request break-glass on behalf of someone",
        break_glass: true,
        direct: false,
        answers: "------------",
    },
    row(Verb::Approve, "approve a request", "--Y------Y--"),
    row(Verb::Deny, "deny a request", "--Y------Y--"),
    row(Verb::Cancel, "cancel a pending request", "Y----Y-Y----"),
    row(
        Verb::Extend,
        "extend a grant (asking for approval)",
        "Y----Y------",
    ),
    Row {
        verb: Verb::Extend,
        label: "extend a grant directly",
        break_glass: false,
        direct: true,
        answers: "Y-----------",
    },
    row(Verb::EndEarly, "end a grant early", "Y-Y--Y------"),
    row(Verb::RetryFailed, "retry a failed grant", "Y-Y--Y------"),
    row(
        Verb::DecideReviewItem,
        "decide a review item",
        "--------Y---",
    ),
    row(
        Verb::DelegateReviewItem,
        "delegate a review item",
        "Y-------Y---",
    ),
    row(
        Verb::ReadAudit,
        "read and verify the audit log",
        "YY----------",
    ),
    row(
        Verb::Export,
        "export the audit log or a review report",
        "YY----------",
    ),
    row(Verb::ReadSyncRuns, "read sync runs", "YY----------"),
    row(Verb::RunSync, "run a sync", "Y-----------"),
    row(Verb::SeeDeadLetters, "see dead letters", "Y-----------"),
    row(Verb::RetryDeadLetter, "retry a dead letter", "Y-----------"),
    row(Verb::CreateGrant, "create a grant directly", "Y-----------"),
    row(
        Verb::ManageReviews,
        "create, close or stop review campaigns",
        "Y-----------",
    ),
    row(
        Verb::ReadReviews,
        "read every review campaign",
        "YY----------",
    ),
    row(
        Verb::ReadInventory,
        "read the Okta inventory",
        "YY----------",
    ),
    row(Verb::ReadHealth, "see readiness details", "YY----------"),
];

impl Row {
    /// The expected answer for `kind`.
    pub fn allows(&self, kind: Kind) -> bool {
        let i = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.answers.as_bytes().get(i) == Some(&b'Y')
    }

    /// The facts this row's cell gives [`super::decide`] for `kind`.
    pub fn facts(&self, kind: Kind) -> Facts {
        Facts {
            break_glass: self.break_glass,
            direct: self.direct,
            ..kind.facts()
        }
    }
}

/// The expected answer for `verb` (its first row) and `kind`.
pub fn expected(verb: Verb, kind: Kind) -> bool {
    ROWS.iter()
        .find(|r| r.verb == verb)
        .is_some_and(|r| r.allows(kind))
}

/// Approving a step-up resource, by how the approver of this resource came in: (case, actor,
/// allowed). The approver's sign-in is 5 minutes old; the resource wants one within 10.
pub fn step_up_cases(now_ms: i64) -> Vec<(&'static str, Actor, bool)> {
    let five_min_ago = now_ms - 5 * 60_000;
    let hour_ago = now_ms - 3_600_000;
    vec![
        (
            "console, signed in 5 minutes ago",
            Actor::console("bob@example.com", five_min_ago, false, false),
            true,
        ),
        (
            "console, signed in an hour ago",
            Actor::console("bob@example.com", hour_ago, false, false),
            false,
        ),
        (
            "API token",
            Actor::api("bob@example.com", &[Role::Approver]),
            false,
        ),
        (
            "Slack",
            Actor::new("bob@example.com", Channel::Slack),
            false,
        ),
        (
            "command line (--as)",
            Actor::operator("bob@example.com"),
            false,
        ),
        (
            "callback trusted for step-up",
            Actor::callback("pagerduty", "bob@example.com", true),
            true,
        ),
        (
            "callback not trusted for step-up",
            Actor::callback("servicenow", "bob@example.com", false),
            false,
        ),
    ]
}

/// The facts of a step-up approval by an approver of this resource.
pub fn step_up_facts(now_ms: i64) -> Facts {
    Facts {
        approver: true,
        step_up: Some(StepUp {
            resource: "aws-prod".into(),
            max_age_ms: 10 * 60_000,
            now_ms,
        }),
        ..Facts::default()
    }
}

/// The table as `docs/security.md` shows it.
pub fn markdown() -> String {
    let mut s = String::from("| verb |");
    for k in Kind::ALL {
        s.push_str(&format!(" {} |", k.heading()));
    }
    s.push_str("\n|---|");
    for _ in Kind::ALL {
        s.push_str(":-:|");
    }
    s.push('\n');
    for r in ROWS {
        s.push_str(&format!("| {} |", r.label));
        for k in Kind::ALL {
            s.push_str(if r.allows(k) { " yes |" } else { " no |" });
        }
        s.push('\n');
    }
    s
}

/// The step-up table as `docs/security.md` shows it.
pub fn step_up_markdown() -> String {
    let mut s =
        String::from("| an approver of this resource approving through | allowed |\n|---|:-:|\n");
    for (case, _, ok) in step_up_cases(0) {
        s.push_str(&format!("| {case} | {} |\n", if ok { "yes" } else { "no" }));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::rules::decide;
    use super::*;

    #[test]
    fn every_cell_of_the_table_is_what_decide_answers() {
        let mut wrong = Vec::new();
        for r in ROWS {
            assert_eq!(r.answers.len(), Kind::ALL.len(), "{}", r.label);
            for k in Kind::ALL {
                let got = decide(r.verb, &k.actor(), &r.facts(k));
                if got.is_ok() != r.allows(k) {
                    wrong.push(format!(
                        "{} × {}: table {}, decide {got:?}",
                        r.label,
                        k.heading(),
                        r.allows(k)
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn every_verb_has_a_row() {
        for v in Verb::ALL {
            assert!(ROWS.iter().any(|r| r.verb == v), "{v:?} has no row");
        }
    }

    #[test]
    fn step_up_by_channel() {
        let now = 1_700_000_000_000;
        for (case, actor, ok) in step_up_cases(now) {
            let got = decide(Verb::Approve, &actor, &step_up_facts(now));
            assert_eq!(got.is_ok(), ok, "{case}: {got:?}");
            // Denying needs no fresh sign-in.
            assert!(
                decide(Verb::Deny, &actor, &step_up_facts(now)).is_ok(),
                "{case}"
            );
        }
    }

    #[test]
    fn auditors_never_write() {
        let reads = [
            Verb::See,
            Verb::ListAll,
            Verb::ReadAudit,
            Verb::Export,
            Verb::ReadSyncRuns,
            Verb::ReadReviews,
            Verb::ReadInventory,
            Verb::ReadHealth,
        ];
        let auditor = Actor::api("auditor", &[Role::Auditor]);
        let console_auditor = Actor::console("carol@example.com", 0, false, true);
        for v in Verb::ALL.into_iter().filter(|v| !reads.contains(v)) {
            // Whatever relation they have to someone else's object.
            for f in [
                Facts::default(),
                Kind::ApproverOfThis.facts(),
                Kind::Reviewer.facts(),
            ] {
                assert!(
                    decide(v, &auditor, &f).is_err(),
                    "auditor may {v:?} with {f:?}"
                );
            }
            // A console auditor is also a person, but gains nothing over others' objects.
            assert!(
                decide(v, &console_auditor, &Facts::default()).is_err()
                    || matches!(v, Verb::Request),
                "console auditor may {v:?}"
            );
        }
    }

    #[test]
    fn the_dave_case() {
        // dave approves payroll, not prod-admins: he may neither approve alice's prod-admins
        // request nor end her prod-admins grant. bob, who approves prod-admins, may end it.
        let dave = Actor::api("dave@example.com", &[Role::Approver, Role::Requester]);
        let none = Facts::default();
        assert_eq!(
            decide(Verb::Approve, &dave, &none),
            Err(super::super::rules::Denied::NotApprover)
        );
        assert!(decide(Verb::EndEarly, &dave, &none).is_err());
        let bob = Actor::api("bob@example.com", &[Role::Approver]);
        assert!(decide(Verb::EndEarly, &bob, &Kind::ApproverOfThis.facts()).is_ok());
    }

    #[test]
    fn codes_are_stable() {
        use crate::error::ErrorCode;
        let requester = Actor::api("eng1@example.com", &[Role::Requester]);
        let e = decide(Verb::RequestOnBehalf, &requester, &Facts::default()).unwrap_err();
        assert_eq!(e.code(), "on_behalf_forbidden");
        let e = decide(Verb::Approve, &requester, &Facts::default()).unwrap_err();
        assert_eq!(e.code(), "forbidden");
        let holder = Kind::Holder;
        let e = decide(
            Verb::Approve,
            &Actor::new("alice@example.com", Channel::Slack),
            &holder.facts(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "self_approval");
        let e = decide(Verb::DecideReviewItem, &holder.actor(), &holder.facts()).unwrap_err();
        assert_eq!(e.code(), "self_review");
        let e = decide(Verb::See, &Kind::Callback.actor(), &Kind::Callback.facts()).unwrap_err();
        assert_eq!(e.code(), "forbidden");
    }

    #[test]
    fn the_document_shows_this_table() {
        let doc = include_str!("../../docs/security.md");
        let table = markdown();
        assert!(
            doc.contains(&table),
            "docs/security.md must contain the rule table exactly as authz::table::markdown() renders it:\n{table}"
        );
        let step_up = step_up_markdown();
        assert!(
            doc.contains(&step_up),
            "docs/security.md must contain:\n{step_up}"
        );
    }
}
