//! Offline checks of one policy resource: everything that can be known without asking Okta.
//!
//! What it must never do: stop at the first problem (operators fix a file in one pass when
//! every error is listed), accept a role type Okta does not define, or let an example policy's
//! `REPLACE_ME_…` placeholder through (it is named as such, not as a malformed id).

use std::time::Duration;

use super::{PolicyError, Resource, ResourceKind};

/// Standard Okta admin role types that can be assigned to a user (`RoleType` in the management
/// API spec, without `CUSTOM`, which is expressed as a `cr0…` role id plus a resource set).
pub const STANDARD_ROLE_TYPES: &[&str] = &[
    "ACCESS_CERTIFICATIONS_ADMIN",
    "ACCESS_REQUESTS_ADMIN",
    "API_ACCESS_MANAGEMENT_ADMIN",
    "APP_ADMIN",
    "GROUP_MEMBERSHIP_ADMIN",
    "HELP_DESK_ADMIN",
    "ORG_ADMIN",
    "READ_ONLY_ADMIN",
    "REPORT_ADMIN",
    "SUPER_ADMIN",
    "USER_ADMIN",
    "WORKFLOWS_ADMIN",
];

pub(crate) fn valid_okta_id(id: &str, prefix: &str) -> bool {
    id.starts_with(prefix) && id.len() >= 6 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

pub use crate::config::PLACEHOLDER;

/// Every id, login and channel a resource names, with its key, for the placeholder check.
fn named_values(r: &Resource) -> Vec<(String, &str)> {
    fn principals<'a>(out: &mut Vec<(String, &'a str)>, key: &str, p: &'a super::Principals) {
        for v in &p.okta_groups {
            out.push((format!("{key}.okta_groups"), v.as_str()));
        }
        for v in &p.users {
            out.push((format!("{key}.users"), v.as_str()));
        }
    }
    let mut out = vec![("okta_id".to_string(), r.okta_id.as_str())];
    out.extend(
        r.resource_set
            .iter()
            .map(|v| ("resource_set".into(), v.as_str())),
    );
    out.extend(
        r.slack_channel
            .iter()
            .map(|v| ("slack_channel".into(), v.as_str())),
    );
    principals(&mut out, "approvers", &r.approvers);
    if let Some(p) = &r.requesters {
        principals(&mut out, "requesters", p);
    }
    for (i, st) in r.stages.iter().enumerate() {
        principals(&mut out, &format!("stages[{i}].approvers"), &st.approvers);
    }
    if let Some(a) = &r.auto_approve {
        out.extend(
            a.okta_groups
                .iter()
                .map(|v| ("auto_approve.okta_groups".into(), v.as_str())),
        );
        out.extend(
            a.users
                .iter()
                .map(|v| ("auto_approve.users".into(), v.as_str())),
        );
    }
    out.extend(
        r.allow_standing
            .iter()
            .map(|v| ("allow_standing".into(), v.as_str())),
    );
    out
}

fn placeholder_errors(r: &Resource) -> Vec<PolicyError> {
    named_values(r)
        .into_iter()
        .filter(|(_, v)| v.contains(PLACEHOLDER))
        .map(|(key, v)| {
            PolicyError::invalid(
                &r.name,
                key,
                format!(
                    "`{v}` is a placeholder: replace it with the real value from your Okta org"
                ),
            )
        })
        .collect()
}

/// Rules serde cannot express.
pub fn validate_resource(r: &Resource) -> Vec<PolicyError> {
    let mut errors = placeholder_errors(r);
    let placeholder = |v: &str| v.contains(PLACEHOLDER);
    let n = r.name.as_str();
    let mut err = |key: &str, msg: String| errors.push(PolicyError::invalid(n, key, msg));
    if n.is_empty()
        || n.len() > 64
        || !n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
    {
        err(
            "name",
            "1 to 64 characters: lowercase letters, digits, `-`, `_` and `.`".into(),
        );
    }
    match r.kind {
        _ if placeholder(&r.okta_id) => {}
        ResourceKind::OktaGroup => {
            if !valid_okta_id(&r.okta_id, "00g") {
                err("okta_id", "expected an Okta group id (`00g…`)".into());
            }
        }
        ResourceKind::OktaApp => {
            if !valid_okta_id(&r.okta_id, "0oa") {
                err("okta_id", "expected an Okta app id (`0oa…`)".into());
            }
        }
        ResourceKind::OktaRole => {
            let custom = r.okta_id.starts_with("cr");
            if custom {
                if !valid_okta_id(&r.okta_id, "cr") {
                    err("okta_id", "expected a custom role id (`cr0…`)".into());
                }
                match &r.resource_set {
                    None => err(
                        "resource_set",
                        "a custom role needs the resource set (`iam…`) it applies to".into(),
                    ),
                    Some(rs) if !valid_okta_id(rs, "iam") && !placeholder(rs) => {
                        err("resource_set", "expected a resource set id (`iam…`)".into())
                    }
                    Some(_) => {}
                }
            } else if !STANDARD_ROLE_TYPES.contains(&r.okta_id.as_str()) {
                err(
                    "okta_id",
                    format!(
                        "`{}` is neither a standard role type ({}) nor a custom role id (`cr0…`)",
                        r.okta_id,
                        STANDARD_ROLE_TYPES.join(", ")
                    ),
                );
            }
        }
    }
    if r.resource_set.is_some()
        && !(r.kind == ResourceKind::OktaRole && r.okta_id.starts_with("cr"))
    {
        err(
            "resource_set",
            "only a custom role (`kind = \"okta_role\"`, `okta_id = \"cr0…\"`) takes a resource set"
                .into(),
        );
    }
    if r.max_duration.is_zero() {
        err("max_duration", "must be greater than zero".into());
    }
    if r.default_duration.is_zero() {
        err("default_duration", "must be greater than zero".into());
    }
    if r.default_duration > r.max_duration {
        err("default_duration", "must not exceed `max_duration`".into());
    }
    // A grant longer than a year is standing access with extra steps.
    if r.max_duration > Duration::from_secs(366 * 24 * 3600) {
        err("max_duration", "must not exceed 366 days".into());
    }
    if r.approvals_required > 10 {
        err("approvals_required", "must be between 0 and 10".into());
    }
    if !r.stages.is_empty() {
        if !r.approvers.is_empty() {
            err(
                "stages",
                "name approvers either in `stages` or in `approvers`, not both".into(),
            );
        }
        if r.stages.len() > 5 {
            err("stages", "at most 5 stages".into());
        }
        for (i, st) in r.stages.iter().enumerate() {
            let key = format!("stages[{i}]");
            if st.name.trim().is_empty() || st.name.len() > 64 {
                err(&key, "`name` must be 1 to 64 characters".into());
            }
            if st.approvals_required == 0 || st.approvals_required > 10 {
                err(&key, "`approvals_required` must be between 1 and 10".into());
            }
            if st.approvers.is_empty() {
                err(&key, "names no approvers".into());
            }
            for g in &st.approvers.okta_groups {
                if !valid_okta_id(g, "00g") && !placeholder(g) {
                    err(&key, format!("`{g}` is not an Okta group id (`00g…`)"));
                }
            }
        }
    } else if r.approvals_required > 0 && r.approvers.is_empty() {
        err(
            "approvers",
            format!(
                "`approvals_required = {}` but no approvers are named",
                r.approvals_required
            ),
        );
    }
    if let Some(a) = &r.auto_approve {
        if a.okta_groups.is_empty() && a.users.is_empty() && a.on_call.is_empty() {
            err(
                "auto_approve",
                "names no `okta_groups`, `users` or `on_call`; remove it or name who is auto-approved"
                    .into(),
            );
        }
        if a.on_call.len() > 10 {
            err("auto_approve.on_call", "at most 10 on-call rules".into());
        }
        for (i, rule) in a.on_call.iter().enumerate() {
            let key = format!("auto_approve.on_call[{i}]");
            if !crate::config::valid_name(&rule.source) {
                err(
                    &format!("{key}.source"),
                    "expected the name of an `oncall.sources` entry".into(),
                );
            }
            if rule.target().is_none() {
                err(
                    &key,
                    "name exactly one of `schedule` or `escalation_policy`".into(),
                );
            }
            for (k, v) in [
                ("schedule", &rule.schedule),
                ("escalation_policy", &rule.escalation_policy),
            ] {
                if let Some(v) = v {
                    if v.contains(PLACEHOLDER) {
                        err(
                            &format!("{key}.{k}"),
                            format!("`{v}` is a placeholder: replace it with the real id"),
                        );
                    } else if v.is_empty()
                        || v.len() > 64
                        || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    {
                        err(
                            &format!("{key}.{k}"),
                            "expected a schedule or escalation policy id (letters, digits, `-`)"
                                .into(),
                        );
                    }
                }
            }
            if rule.levels.iter().any(|l| *l == 0 || *l > 20) {
                err(
                    &format!("{key}.levels"),
                    "escalation levels are 1 to 20".into(),
                );
            }
        }
        for (i, w) in a.windows.iter().enumerate() {
            for (k, msg) in w.problems() {
                err(&format!("auto_approve.windows[{i}].{k}"), msg);
            }
        }
        if a.max_duration.is_zero() || a.max_duration > r.max_duration {
            err(
                "auto_approve.max_duration",
                "must be greater than zero and at most `max_duration`".into(),
            );
        }
    }
    if let Some(p) = &r.ticket_pattern {
        if let Err(e) = regex::Regex::new(p) {
            err("ticket_pattern", format!("not a valid regex: {e}"));
        }
    }
    if r.pending_timeout < Duration::from_secs(60)
        || r.pending_timeout > Duration::from_secs(30 * 24 * 3600)
    {
        err(
            "pending_timeout",
            "must be between 1 minute and 30 days".into(),
        );
    }
    match (r.break_glass, r.break_glass_max_duration) {
        (true, None) => err(
            "break_glass_max_duration",
            "required when `break_glass = true`".into(),
        ),
        (true, Some(d)) if d.is_zero() || d > r.max_duration => err(
            "break_glass_max_duration",
            "must be greater than zero and at most `max_duration`".into(),
        ),
        (false, Some(_)) => err(
            "break_glass_max_duration",
            "only meaningful with `break_glass = true`".into(),
        ),
        _ => {}
    }
    if let Some(d) = r.approval_step_up {
        if d < Duration::from_secs(30) || d > Duration::from_secs(24 * 3600) {
            err(
                "approval_step_up",
                "must be between 30 seconds and 24 hours".into(),
            );
        }
    }
    if let Some(c) = r.slack_channel.as_ref().filter(|c| !placeholder(c)) {
        if c.is_empty() || c.len() > 32 || !c.chars().all(|ch| ch.is_ascii_alphanumeric()) {
            err("slack_channel", "expected a Slack channel id (`C…`)".into());
        }
    }
    if r.description.len() > 500 {
        err("description", "at most 500 characters".into());
    }
    for (key, groups) in [
        ("approvers.okta_groups", &r.approvers.okta_groups),
        (
            "requesters.okta_groups",
            &r.requesters.clone().unwrap_or_default().okta_groups,
        ),
        (
            "auto_approve.okta_groups",
            &r.auto_approve
                .as_ref()
                .map(|a| a.okta_groups.clone())
                .unwrap_or_default(),
        ),
    ] {
        for g in groups {
            if !valid_okta_id(g, "00g") && !placeholder(g) {
                err(key, format!("`{g}` is not an Okta group id (`00g…`)"));
            }
        }
    }
    errors
}
