//! The policy file: which Okta resources the broker manages, and the rules for each.
//!
//! Why it exists: what people may ask for, for how long, and who approves, is reviewed in git
//! like code, separately from the runtime config. This module parses that TOML file and checks
//! everything that can be checked without Okta ([`Policy::parse`]); [`online`] checks each
//! resource against Okta and the token's capabilities; [`reload`] holds the policy in force and
//! swaps it on SIGHUP only when the new file is fully valid.
//!
//! What it must never do: accept a key it does not know (a typo in `drift = "enforce"` silently
//! ignored is a security bug), or replace a working policy with one that failed validation.

pub mod auto;
pub mod online;
pub mod reload;
pub mod validate;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use auto::{in_windows, OnCallRule, Window};
pub use reload::PolicyHandle;
pub use validate::{validate_resource, STANDARD_ROLE_TYPES};

/// The `[policy]` config section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy file (resources and their rules). Absent: no resources are managed, and every
    /// grant is refused as `unknown_resource`.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl PolicyConfig {
    /// Loads the configured file (offline checks), or the empty policy.
    pub fn load(&self) -> Result<Policy, Vec<PolicyError>> {
        match &self.file {
            Some(path) => Policy::load(path),
            None => Ok(Policy::empty()),
        }
    }
}

/// Everything wrong with a policy file. Each message names the resource and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file {path}: cannot be read: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("policy file: {0}")]
    Syntax(String),
    /// Okta could not be asked (timeout, 5xx, rate limit): no verdict on the resource.
    #[error("resource `{resource}`: cannot be checked in Okta now: {message}")]
    Unchecked { resource: String, message: String },
    #[error("resource `{resource}`: `{key}`: {message}")]
    Invalid {
        resource: String,
        key: String,
        message: String,
    },
}

impl PolicyError {
    pub fn invalid(
        resource: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PolicyError::Invalid {
            resource: resource.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    OktaGroup,
    OktaApp,
    OktaRole,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::OktaGroup => "okta_group",
            ResourceKind::OktaApp => "okta_app",
            ResourceKind::OktaRole => "okta_role",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "okta_group" => Some(ResourceKind::OktaGroup),
            "okta_app" => Some(ResourceKind::OktaApp),
            "okta_role" => Some(ResourceKind::OktaRole),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Drift {
    #[default]
    Report,
    Enforce,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principals {
    #[serde(default)]
    pub okta_groups: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
}

impl Principals {
    pub fn is_empty(&self) -> bool {
        self.okta_groups.is_empty() && self.users.is_empty()
    }

    /// Whether the person with this Okta login and id is named, by login (case-insensitive) or
    /// id, or through one of `groups` (their Okta group ids).
    pub fn names(
        &self,
        login: &str,
        user_id: &str,
        groups: &std::collections::HashSet<String>,
    ) -> bool {
        self.users
            .iter()
            .any(|u| u.trim().eq_ignore_ascii_case(login.trim()) || u == user_id)
            || self.okta_groups.iter().any(|g| groups.contains(g))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoApprove {
    #[serde(default)]
    pub okta_groups: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// Also approves whoever an on-call schedule says is on call now (read at request time; a
    /// source that cannot answer approves no one, see docs/oncall.md).
    #[serde(default)]
    pub on_call: Vec<OnCallRule>,
    /// When auto-approval applies at all; empty: always.
    #[serde(default)]
    pub windows: Vec<Window>,
}

/// One managed resource, as written in the policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub name: String,
    pub kind: ResourceKind,
    /// Group id (`00g…`), app id (`0oa…`), standard role type (`USER_ADMIN`) or custom role id
    /// (`cr0…`, which then needs `resource_set`).
    pub okta_id: String,
    #[serde(default)]
    pub resource_set: Option<String>,
    #[serde(with = "humantime_serde")]
    pub default_duration: Duration,
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    #[serde(default)]
    pub require_reason: bool,
    #[serde(default)]
    pub approvers: Principals,
    #[serde(default = "one")]
    pub approvals_required: u32,
    /// Who may ask; absent means anyone with a requester token.
    #[serde(default)]
    pub requesters: Option<Principals>,
    #[serde(default)]
    pub auto_approve: Option<AutoApprove>,
    #[serde(default)]
    pub jit_only: bool,
    #[serde(default)]
    pub drift: Drift,
    /// Logins or user ids whose standing access is expected (service accounts).
    #[serde(default)]
    pub allow_standing: Vec<String>,
    #[serde(default)]
    pub end_sessions_on_expiry: bool,
    /// Shown to people choosing what to request (console, Slack resource lists).
    #[serde(default)]
    pub description: String,
    /// Approval stages, decided in order (for example the owners, then security). Empty: one
    /// stage made of `approvers` and `approvals_required`.
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// A regex a request's ticket reference must match (`^[A-Z]+-[0-9]+$`); when set, a ticket
    /// is required.
    #[serde(default)]
    pub ticket_pattern: Option<String>,
    /// How long a request may wait for its approvals; separate from how long access lasts.
    #[serde(default = "default_pending_timeout", with = "humantime_serde")]
    pub pending_timeout: Duration,
    /// Lets an eligible requester approve their own request in an emergency (audited, reviewed
    /// after the fact by the approvers).
    #[serde(default)]
    pub break_glass: bool,
    /// The longest break-glass grant; required when `break_glass = true`.
    #[serde(default, with = "humantime_serde::option")]
    pub break_glass_max_duration: Option<Duration>,
    /// Approvals count only from a person whose Okta sign-in is at most this old (the console's
    /// step-up); the API and callbacks refuse them unless an integration is trusted for it.
    #[serde(default, with = "humantime_serde::option")]
    pub approval_step_up: Option<Duration>,
    /// Slack channel id for this resource's approval messages; absent: the Slack default.
    #[serde(default)]
    pub slack_channel: Option<String>,
    /// Access one of our live grants gave that someone removed in Okta: `end` the grant as
    /// `removed_externally`, or `restore` it (the sync re-adds it).
    #[serde(default)]
    pub on_external_removal: ExternalRemoval,
}

/// One approval stage: its approvers and how many distinct ones must approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Shown to people ("owners", "security").
    pub name: String,
    pub approvers: Principals,
    #[serde(default = "one")]
    pub approvals_required: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExternalRemoval {
    #[default]
    End,
    Restore,
}

fn one() -> u32 {
    1
}

fn default_pending_timeout() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// What a grant of a role resource assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleTarget {
    Standard(String),
    Custom {
        role_id: String,
        resource_set: String,
    },
}

impl RoleTarget {
    /// The role an `okta_role` resource (or a grant of one) names: a custom role id (`cr…`) with
    /// its resource set, or a standard role type. `None` for other kinds.
    pub fn of(kind: ResourceKind, okta_id: &str, resource_set: Option<&str>) -> Option<RoleTarget> {
        if kind != ResourceKind::OktaRole {
            return None;
        }
        match resource_set {
            Some(rs) if okta_id.starts_with("cr") => Some(RoleTarget::Custom {
                role_id: okta_id.to_string(),
                resource_set: rs.to_string(),
            }),
            _ => Some(RoleTarget::Standard(okta_id.to_string())),
        }
    }
}

impl Resource {
    /// Whether `allow_standing` names the user (by Okta id, or by login in any case): standing
    /// access the drift reaction and the sync leave alone on a `jit_only` resource.
    pub fn allows_standing(&self, user_id: &str, login: Option<&str>) -> bool {
        self.allow_standing
            .iter()
            .any(|a| a == user_id || login.is_some_and(|l| a.eq_ignore_ascii_case(l)))
    }

    /// For `okta_role` resources: which role. `None` for other kinds.
    pub fn role_target(&self) -> Option<RoleTarget> {
        RoleTarget::of(self.kind, &self.okta_id, self.resource_set.as_deref())
    }

    /// The approval stages in force: `stages`, or one stage from `approvers` and
    /// `approvals_required`; empty when no approval is needed (`approvals_required = 0`).
    pub fn approval_stages(&self) -> Vec<Stage> {
        if !self.stages.is_empty() {
            return self.stages.clone();
        }
        if self.approvals_required == 0 {
            return Vec::new();
        }
        vec![Stage {
            name: "approvers".into(),
            approvers: self.approvers.clone(),
            approvals_required: self.approvals_required,
        }]
    }

    /// Whether any approval stage names this person: "an approver of this resource". Groups
    /// must be read fresh by the caller (a person removed from the approver group is not one).
    pub fn approved_by(
        &self,
        login: &str,
        user_id: &str,
        groups: &std::collections::HashSet<String>,
    ) -> bool {
        self.approval_stages()
            .iter()
            .any(|s| s.approvers.names(login, user_id, groups))
    }
}

/// A validated policy: resources by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub resources: Vec<Resource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    resource: Vec<toml::Table>,
}

impl Policy {
    pub fn empty() -> Self {
        Policy::default()
    }

    pub fn get(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }

    /// Reads and validates a policy file (offline checks only).
    pub fn load(path: &Path) -> Result<Policy, Vec<PolicyError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![PolicyError::Unreadable {
                path: path.to_path_buf(),
                message: e.to_string(),
            }]
        })?;
        Self::parse(&text)
    }

    /// Parses and validates policy text, collecting every problem. Each `[[resource]]` table is
    /// deserialized on its own so an error can name the resource it belongs to.
    pub fn parse(text: &str) -> Result<Policy, Vec<PolicyError>> {
        let raw: RawFile =
            toml::from_str(text).map_err(|e| vec![PolicyError::Syntax(e.to_string())])?;
        let mut errors = Vec::new();
        let mut resources = Vec::new();
        for (i, table) in raw.resource.into_iter().enumerate() {
            let label = match table.get("name") {
                Some(toml::Value::String(s)) if !s.is_empty() => s.clone(),
                _ => format!("#{}", i + 1),
            };
            // Re-serialized and parsed on its own so the error carries a span we can turn into
            // the key's name (a `toml::Value` conversion loses positions).
            let one = toml::to_string(&table).unwrap_or_default();
            match toml::from_str::<Resource>(&one) {
                Ok(r) => resources.push(r),
                Err(e) => errors.push(describe_de_error(&label, &one, &e)),
            }
        }
        let mut names = HashSet::new();
        for r in &resources {
            if !names.insert(r.name.clone()) {
                errors.push(PolicyError::invalid(
                    &r.name,
                    "name",
                    "defined more than once",
                ));
            }
            errors.extend(validate_resource(r));
        }
        if errors.is_empty() {
            Ok(Policy { resources })
        } else {
            Err(errors)
        }
    }
}

/// Names the key an error is about: from the message for unknown/missing fields, else from the
/// line the error's span points at (with its `[section]`, for nested tables).
fn describe_de_error(resource: &str, text: &str, e: &toml::de::Error) -> PolicyError {
    let msg = e.message().trim().to_string();
    let from_msg = msg
        .split('`')
        .nth(1)
        .filter(|_| msg.starts_with("unknown field") || msg.starts_with("missing field"))
        .map(str::to_string);
    let from_span = e.span().and_then(|sp| {
        let before = text.get(..sp.start)?;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line = text.get(line_start..)?.lines().next()?;
        let key = line.split('=').next()?.trim().trim_matches('"').to_string();
        if key.is_empty() || key.starts_with('[') {
            return None;
        }
        let section = before[..line_start]
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('['))
            .map(|l| l.trim().trim_matches(|c| c == '[' || c == ']').to_string());
        Some(match section {
            Some(sec) => format!("{sec}.{key}"),
            None => key,
        })
    });
    let key = match (from_msg, from_span) {
        (Some(k), _) => k,
        (None, Some(k)) => k,
        (None, None) => "-".to_string(),
    };
    PolicyError::Invalid {
        resource: resource.to_string(),
        key,
        message: msg,
    }
}

use crate::redact::shown;

/// Parses a requested duration such as `1h` or `90m`: it must be positive and whole seconds.
/// Every error quotes the input as written (see [`shown`]) and gives an example.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let example = "a duration such as `30m`, `4h` or `1h30m` (units: s, m, h, d)";
    if t.is_empty() {
        return Err(format!("the duration is empty; expected {example}"));
    }
    if t.starts_with('-') {
        return Err(format!("`{}` is negative; expected {example}", shown(s)));
    }
    let d = humantime::parse_duration(t).map_err(|e| {
        let why = match e {
            humantime::DurationError::UnknownUnit { unit, .. } => {
                format!("unknown unit `{}`", shown(&unit))
            }
            humantime::DurationError::NumberExpected(_) => "a number must come first".into(),
            humantime::DurationError::InvalidCharacter(_) => "unexpected character".into(),
            humantime::DurationError::NumberOverflow => "too large".into(),
            humantime::DurationError::Empty => "empty".into(),
        };
        format!(
            "`{}` is not a duration ({why}); expected {example}",
            shown(s)
        )
    })?;
    if d < Duration::from_secs(1) {
        return Err(format!(
            "`{}`: a duration must be at least one second; expected {example}",
            shown(s)
        ));
    }
    Ok(d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[resource]]
name = "prod-db-admin"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
max_duration = "4h"
default_duration = "1h"
require_reason = true
approvers = { okta_groups = ["00g1dbowners00000002"], users = [] }
approvals_required = 1
jit_only = true
drift = "enforce"
allow_standing = ["svc-backup@example.com"]
requesters = { okta_groups = ["00g1engineering00004"] }
auto_approve = { okta_groups = ["00g1oncall0000000003"], max_duration = "1h" }
end_sessions_on_expiry = false
"#;

    #[test]
    fn sketch_from_product_brief_parses() {
        let p = Policy::parse(GOOD).unwrap();
        let r = p.get("prod-db-admin").unwrap();
        assert_eq!(r.kind, ResourceKind::OktaGroup);
        assert_eq!(r.max_duration, Duration::from_secs(4 * 3600));
        assert_eq!(r.drift, Drift::Enforce);
    }

    #[test]
    fn unknown_key_names_resource_and_key() {
        let bad = GOOD.replace("jit_only", "jit_onyl");
        let errs = Policy::parse(&bad).unwrap_err();
        let text = errs[0].to_string();
        assert!(
            text.contains("prod-db-admin") && text.contains("jit_onyl"),
            "{text}"
        );
    }

    #[test]
    fn custom_role_needs_resource_set() {
        let t = r#"
[[resource]]
name = "custom"
kind = "okta_role"
okta_id = "cr0custom00000000001"
max_duration = "1h"
default_duration = "1h"
approvals_required = 0
"#;
        let errs = Policy::parse(t).unwrap_err();
        assert!(errs[0].to_string().contains("resource_set"), "{errs:?}");
    }

    #[test]
    fn placeholders_are_named_once_per_value() {
        let t = r#"
[[resource]]
name = "prod-admins"
kind = "okta_group"
okta_id = "REPLACE_ME_GROUP_ID_prod_admins"
max_duration = "1h"
default_duration = "1h"
approvers = { okta_groups = ["REPLACE_ME_GROUP_ID_owners"], users = ["REPLACE_ME_LOGIN_lead"] }
"#;
        let errs: Vec<String> = Policy::parse(t)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs.len(), 3, "{errs:?}");
        for (e, key) in errs
            .iter()
            .zip(["okta_id", "approvers.okta_groups", "approvers.users"])
        {
            assert!(
                e.starts_with(&format!("resource `prod-admins`: `{key}`: `REPLACE_ME_"))
                    && e.contains("is a placeholder"),
                "{e}"
            );
        }
        // The real ids in their place validate.
        let real = t
            .replace("REPLACE_ME_GROUP_ID_prod_admins", "00g1prodadmins000001")
            .replace("REPLACE_ME_GROUP_ID_owners", "00g1dbowners00000002")
            .replace("REPLACE_ME_LOGIN_lead", "lead@example.com");
        assert!(Policy::parse(&real).is_ok());
    }

    #[test]
    fn durations_are_checked() {
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1h").is_err());
        assert!(parse_duration("soon").is_err());
        // Errors quote the input as written and give an example.
        for bad in ["-5m", "1 fortnight", "soon", "0s"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
            assert!(e.contains("`30m`"), "{e}");
        }
        assert!(parse_duration("1 fortnight")
            .unwrap_err()
            .contains("unknown unit `fortnight`"));
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
    }
}
