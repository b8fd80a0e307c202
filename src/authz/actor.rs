//! Who is acting: the [`Actor`] every channel builds from what it authenticated, its [`Role`]s
//! and the [`Channel`] it came through.
//!
//! Why it exists: the authorization rules ([`super::decide`]) must not care whether a person
//! clicked in Slack or called the API, only what the channel proved about them. Each channel
//! maps its identity here once (see `docs/security.md`, "How a channel becomes an actor").
//!
//! What it must never do: grant a role the channel did not prove (a console session's roles
//! come from Okta groups read at sign-in, an API token's from its configured hash).

use serde::{Deserialize, Serialize};

/// What a credential may do. `Admin` implies every other role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including direct grants and operator actions on failed grants.
    Admin,
    /// Read the audit log, grants, requests, sync runs, reviews and the inventory; change nothing.
    Auditor,
    /// A person who decides on requests for the resources whose approvers name them (read fresh
    /// from Okta), sees those requests and grants, and may end those grants early.
    Approver,
    /// A person asking for access for themself (portals' users, CLIs, CI jobs).
    Requester,
    /// A trusted portal: asks for access on behalf of the users it has authenticated.
    Portal,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Approver => "approver",
            Role::Requester => "requester",
            Role::Portal => "portal",
        }
    }
}

/// Where an actor comes from; recorded with every decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    Api,
    Slack,
    Console,
    Cli,
    /// A signed HTTP callback from a named integration (ServiceNow, Jira, …).
    Callback(String),
    /// An assistant acting for a signed-in person (reserved: no such channel is served yet).
    Mcp,
    /// The broker itself (pending timeout, auto-approval, offboarding).
    System,
}

impl Channel {
    pub fn as_string(&self) -> String {
        match self {
            Channel::Api => "api".into(),
            Channel::Slack => "slack".into(),
            Channel::Console => "console".into(),
            Channel::Cli => "cli".into(),
            Channel::Callback(name) => format!("callback:{name}"),
            Channel::Mcp => "mcp".into(),
            Channel::System => "system".into(),
        }
    }
}

/// Okta logins are case-insensitive.
pub fn same_person(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// A person or system acting through a channel. `login` is their Okta login (or id): API tokens
/// are named after it, Slack users are mapped to it, console sessions carry it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub login: String,
    pub channel: Channel,
    /// What the channel proved this actor may do (see [`Actor::has`]).
    pub roles: Vec<Role>,
    /// When this person last proved who they are to Okta (Unix ms): the console's `auth_time`.
    /// Approvals of `approval_step_up` resources need it to be recent.
    pub authenticated_at: Option<i64>,
    /// A signed-callback integration configured as trusted for step-up resources.
    pub trusted_for_step_up: bool,
}

/// What a signed-in person may do as themself: ask for access, and decide where the policy
/// names them (whether it does is read from Okta when they act).
const PERSON: [Role; 2] = [Role::Requester, Role::Approver];

/// The Okta groups whose members are admins or auditors (`console.admin_groups` and
/// `console.auditor_groups`): the one mapping from a person's groups to their roles, whichever
/// channel signed them in (the console at sign-in, the API for an Okta access token).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRoles {
    pub admin_groups: Vec<String>,
    pub auditor_groups: Vec<String>,
}

/// What a person's Okta groups make them, besides requester and approver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PersonRoles {
    pub admin: bool,
    pub auditor: bool,
}

impl GroupRoles {
    /// Whether `groups` (the person's Okta group ids, read by the caller) include an admin or
    /// an auditor group.
    pub fn of(&self, groups: &std::collections::HashSet<String>) -> PersonRoles {
        let any = |list: &[String]| list.iter().any(|g| groups.contains(g));
        PersonRoles {
            admin: any(&self.admin_groups),
            auditor: any(&self.auditor_groups),
        }
    }
}

impl PersonRoles {
    /// A signed-in person's roles: requester and approver, plus admin and auditor from groups.
    pub fn roles(self) -> Vec<Role> {
        let mut roles = PERSON.to_vec();
        if self.admin {
            roles.push(Role::Admin);
        }
        if self.auditor {
            roles.push(Role::Auditor);
        }
        roles
    }
}

impl Actor {
    fn with(login: impl Into<String>, channel: Channel, roles: Vec<Role>) -> Self {
        Actor {
            login: login.into(),
            channel,
            roles,
            authenticated_at: None,
            trusted_for_step_up: false,
        }
    }

    /// A person acting as themself through `channel` (Slack, the console, an assistant): the
    /// requester and approver roles, nothing more.
    pub fn new(login: impl Into<String>, channel: Channel) -> Self {
        Self::with(login, channel, PERSON.to_vec())
    }

    /// An API token: its name and configured roles; or, for an Okta access token, the person's
    /// login and [`PersonRoles::roles`].
    pub fn api(name: impl Into<String>, roles: &[Role]) -> Self {
        Self::with(name, Channel::Api, roles.to_vec())
    }

    /// A console session: a person, plus admin and auditor from `console.admin_groups` and
    /// `console.auditor_groups` at sign-in; `auth_time_ms` is Okta's `auth_time`.
    pub fn console(
        login: impl Into<String>,
        auth_time_ms: i64,
        admin: bool,
        auditor: bool,
    ) -> Self {
        let roles = PersonRoles { admin, auditor }.roles();
        let mut a = Self::with(login, Channel::Console, roles);
        a.authenticated_at = Some(auth_time_ms);
        a
    }

    /// A signed callback from `integration` naming `approver` as the person who decided. The
    /// integration's credential is scoped to decisions (see [`super::decide`]).
    pub fn callback(integration: &str, approver: impl Into<String>, trusted: bool) -> Self {
        let mut a = Self::with(
            approver,
            Channel::Callback(integration.to_string()),
            vec![Role::Approver],
        );
        a.trusted_for_step_up = trusted;
        a
    }

    /// The command line: it runs with the broker's own database and Okta credentials, so it acts
    /// as an operator (admin); `login` names the person at the keyboard (`--as`).
    pub fn operator(login: impl Into<String>) -> Self {
        Self::with(login, Channel::Cli, vec![Role::Admin])
    }

    /// Whether the actor holds `role`; an admin holds every role.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&Role::Admin) || self.roles.contains(&role)
    }

    /// Whether the actor is the person with this login or Okta id.
    pub fn is(&self, login_or_id: &str) -> bool {
        same_person(&self.login, login_or_id)
    }

    /// The audit log's actor: the person, prefixed by channel when it is not the API.
    pub fn audit_name(&self) -> String {
        match &self.channel {
            Channel::Api | Channel::Console | Channel::Cli | Channel::System => self.login.clone(),
            Channel::Slack => format!("slack:{}", self.login),
            Channel::Mcp => format!("mcp:{}", self.login),
            Channel::Callback(name) => format!("callback:{name}:{}", self.login),
        }
    }
}
