//! The checks on what a person asks for, written once for a direct grant, a request and an
//! extension: the resource, the duration and its maximum, the reason, who the access is for and
//! whether their Okta account may take access.
//!
//! Why it exists: the grants API and the requests service used to check the same fields each in
//! their own way (two reason limits, two duration parsers, two lists of usable account states).
//! Both now call these functions, so the same input gets the same answer and the same error code
//! whichever door it came through.
//!
//! What it must never do: read or write anything (the callers check before they write), or
//! accept text a log or a CSV could be tricked by (control characters).

use std::time::Duration;

use super::error::GrantError;
use crate::clock::ms_to_datetime;
use crate::okta::User;
use crate::policy::{parse_duration, Policy, Resource};
use crate::redact::shown;

/// The longest reason or comment, in bytes.
pub const MAX_REASON: usize = 1000;

/// How a duration is shown in an error (`4h`, `1h 30m`).
pub fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Milliseconds of `d`, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The policy resource named `name` (surrounding spaces ignored).
pub fn resource(policy: &Policy, name: &str) -> Result<Resource, GrantError> {
    policy
        .get(name.trim())
        .cloned()
        .ok_or_else(|| GrantError::UnknownResource(name.to_string()))
}

/// The duration asked for (`None`: the resource's default), within its `max_duration`.
pub fn duration(res: &Resource, asked: Option<&str>) -> Result<Duration, GrantError> {
    let d = match asked {
        Some(s) => parse_duration(s).map_err(GrantError::InvalidDuration)?,
        None => res.default_duration,
    };
    if d > res.max_duration {
        return Err(GrantError::DurationTooLong {
            // As written (`99h`), not as re-rendered (`4days 3h`): what the person typed.
            requested: asked.map_or_else(|| fmt_duration(d), |s| format!("`{}`", shown(s))),
            max: fmt_duration(res.max_duration),
        });
    }
    Ok(d)
}

/// Free text (a reason, a decision comment): trimmed, at most [`MAX_REASON`] bytes, no control
/// characters but newlines. `what` names the field in the error.
pub fn text(what: &str, asked: Option<&str>) -> Result<String, GrantError> {
    let t = asked.unwrap_or("").trim().to_string();
    if t.len() > MAX_REASON || t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(GrantError::InvalidInput(format!(
            "{what} must be at most {MAX_REASON} bytes of text"
        )));
    }
    Ok(t)
}

/// The reason (see [`text`]); refused when empty and `required` (the resource's
/// `require_reason`, or a break-glass request).
pub fn reason(res: &Resource, asked: Option<&str>, required: bool) -> Result<String, GrantError> {
    let r = text("reason", asked)?;
    if required && r.is_empty() {
        return Err(GrantError::ReasonRequired(res.name.clone()));
    }
    Ok(r)
}

/// An Okta user id or login as typed: not empty, not too long, nothing that could walk a URL.
pub fn user_ref(asked: &str) -> Result<&str, GrantError> {
    let u = asked.trim();
    if u.is_empty() || u.len() > 255 || u.chars().any(|c| c.is_control() || c == '/') {
        return Err(GrantError::InvalidInput(
            "user must be an Okta user id or login".into(),
        ));
    }
    Ok(u)
}

/// Whether the account may take access. Temporary states of an active account (password reset,
/// lockout) may; staged, suspended and deactivated accounts may not. `asked` is how the caller
/// named the user, for the error.
pub fn user_status(user: &User, asked: &str) -> Result<(), GrantError> {
    if matches!(
        user.status.as_str(),
        "ACTIVE" | "RECOVERY" | "PASSWORD_EXPIRED" | "LOCKED_OUT"
    ) {
        return Ok(());
    }
    Err(GrantError::UserNotActive {
        user: asked.to_string(),
        status: user.status.clone(),
    })
}

/// The new expiry of a grant expiring at `expires_at` extended by `by` at `now_ms`: refused
/// past now + the resource's `max_duration`.
pub fn extension(
    res: &Resource,
    expires_at: i64,
    by: Duration,
    now_ms: i64,
) -> Result<i64, GrantError> {
    let new_expiry = expires_at.saturating_add(ms(by));
    let latest = now_ms.saturating_add(ms(res.max_duration));
    if new_expiry > latest {
        return Err(GrantError::ExtensionTooLong {
            latest: ms_to_datetime(latest).to_rfc3339(),
            max: fmt_duration(res.max_duration),
        });
    }
    Ok(new_expiry)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn res() -> Resource {
        Policy::parse(
            r#"
[[resource]]
name = "r"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
require_reason = true
approvals_required = 0
"#,
        )
        .unwrap()
        .resources[0]
            .clone()
    }

    #[test]
    fn durations_default_and_stop_at_the_maximum() {
        let r = res();
        assert_eq!(duration(&r, None).unwrap(), Duration::from_secs(3600));
        assert_eq!(duration(&r, Some("4h")).unwrap(), r.max_duration);
        assert!(matches!(
            duration(&r, Some("5h")),
            Err(GrantError::DurationTooLong { .. })
        ));
        for bad in ["", "0s", "-1h", "soon"] {
            assert!(
                matches!(duration(&r, Some(bad)), Err(GrantError::InvalidDuration(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reasons_are_bounded_text() {
        let r = res();
        assert_eq!(reason(&r, Some("  why \n"), true).unwrap(), "why");
        assert!(matches!(
            reason(&r, Some("   "), true),
            Err(GrantError::ReasonRequired(_))
        ));
        assert_eq!(reason(&r, None, false).unwrap(), "");
        assert!(reason(&r, Some(&"x".repeat(MAX_REASON)), true).is_ok());
        for bad in ["x".repeat(MAX_REASON + 1), "a\u{7}b".into()] {
            assert!(matches!(
                reason(&r, Some(&bad), false),
                Err(GrantError::InvalidInput(_))
            ));
        }
    }

    #[test]
    fn users_and_extensions() {
        assert!(user_ref(" alice@example.com ").is_ok());
        for bad in ["", "a/b", "a\nb"] {
            assert!(user_ref(bad).is_err(), "{bad:?}");
        }
        let r = res();
        let now = 1_000_000;
        let hour = Duration::from_secs(3600);
        assert_eq!(
            extension(&r, now + 3_600_000, hour, now).unwrap(),
            now + 7_200_000
        );
        assert!(matches!(
            extension(&r, now + 3_600_000, 4 * hour, now),
            Err(GrantError::ExtensionTooLong { .. })
        ));
    }
}
