//! The parts of `auto_approve` beyond "these people": on-call rules (who the live schedule says
//! is on call) and time windows (when auto-approval applies at all).
//!
//! Why it exists: the rule's shape and its offline checks belong with the policy; asking the
//! on-call system is the `oncall` client's job and deciding the request is the requests
//! service's. Windows are evaluated here with the tz database (`chrono-tz`): a local
//! "09:00–18:00 Europe/Berlin" moves with daylight saving without any arithmetic of ours.
//!
//! What it must never do: accept a window or rule it cannot evaluate exactly (an unknown time
//! zone, `25:00`, a rule naming both a schedule and an escalation policy), or treat a local time
//! that does not exist (the skipped hour) as inside a window by accident: a window is tested on
//! the local wall-clock time of the instant, which always exists.

use std::str::FromStr;

use chrono::{Datelike, NaiveTime, TimeZone, Timelike, Weekday};
use serde::{Deserialize, Serialize};

use crate::oncall::Target;

/// `auto_approve.on_call[]`: a source (`oncall.sources[].name`) and what to ask it about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnCallRule {
    pub source: String,
    /// A schedule id (PagerDuty `P…`, an Opsgenie or JSM schedule UUID).
    #[serde(default)]
    pub schedule: Option<String>,
    /// A PagerDuty escalation policy id.
    #[serde(default)]
    pub escalation_policy: Option<String>,
    /// PagerDuty escalation levels that count (1 = first responder); empty: any level.
    #[serde(default)]
    pub levels: Vec<u32>,
}

impl OnCallRule {
    pub fn target(&self) -> Option<Target> {
        match (&self.schedule, &self.escalation_policy) {
            (Some(s), None) => Some(Target::Schedule(s.clone())),
            (None, Some(p)) => Some(Target::EscalationPolicy(p.clone())),
            _ => None,
        }
    }
}

/// `auto_approve.windows[]`: days, a local time range and the zone it is read in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// `mon` … `sun`; empty: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM`, inclusive.
    pub from: String,
    /// `HH:MM`, exclusive; `24:00` for the end of the day.
    pub to: String,
    /// An IANA zone (`Europe/Berlin`, `America/New_York`, `UTC`).
    pub time_zone: String,
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

/// Minutes since midnight of `HH:MM` (`24:00` allowed as 1440).
fn minutes(s: &str) -> Option<u32> {
    if s == "24:00" {
        return Some(24 * 60);
    }
    if s.len() != 5 {
        return None;
    }
    let t = NaiveTime::parse_from_str(s, "%H:%M").ok()?;
    Some(t.hour() * 60 + t.minute())
}

impl Window {
    /// What is wrong with it, each with the key (`days`, `from`, `to`, `time_zone`).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for d in &self.days {
            if weekday(d).is_none() {
                out.push((
                    "days",
                    format!("`{d}` is not a day: use mon, tue, wed, thu, fri, sat, sun"),
                ));
            }
        }
        let from = minutes(&self.from);
        let to = minutes(&self.to);
        if from.is_none() || from == Some(24 * 60) {
            out.push((
                "from",
                format!("`{}` is not a time like `09:00`", self.from),
            ));
        }
        if to.is_none() {
            out.push((
                "to",
                format!("`{}` is not a time like `18:00` (or `24:00`)", self.to),
            ));
        }
        if let (Some(f), Some(t)) = (from, to) {
            if f >= t {
                out.push((
                    "to",
                    "must be later than `from` (split a window across midnight in two)".into(),
                ));
            }
        }
        if chrono_tz::Tz::from_str(&self.time_zone).is_err() {
            out.push((
                "time_zone",
                format!(
                    "`{}` is not an IANA time zone such as `Europe/Berlin`",
                    self.time_zone
                ),
            ));
        }
        out
    }

    /// Whether the instant `at_ms` (Unix ms) falls in the window, read as wall-clock time in its
    /// zone. An invalid window contains nothing (validation refuses it at load).
    pub fn contains(&self, at_ms: i64) -> bool {
        let (Ok(tz), Some(from), Some(to)) = (
            chrono_tz::Tz::from_str(&self.time_zone),
            minutes(&self.from),
            minutes(&self.to),
        ) else {
            return false;
        };
        let Some(local) = tz.timestamp_millis_opt(at_ms).single() else {
            return false;
        };
        let day_ok = self.days.is_empty()
            || self
                .days
                .iter()
                .any(|d| weekday(d) == Some(local.weekday()));
        let m = local.hour() * 60 + local.minute();
        day_ok && m >= from && m < to
    }
}

/// Whether `windows` allow auto-approval at `at_ms`: no windows means always.
pub fn in_windows(windows: &[Window], at_ms: i64) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(at_ms))
}

/// The policy's on-call rules against the configured sources (`oncall.sources`, name and
/// vendor): a rule naming a source that does not exist, an escalation policy or levels on a
/// vendor without them, is a problem of the resource and key.
pub fn check_sources(
    policy: &super::Policy,
    sources: &[(String, crate::oncall::Vendor)],
) -> Vec<super::PolicyError> {
    use crate::oncall::Vendor;
    let mut errors = Vec::new();
    for r in &policy.resources {
        let Some(a) = &r.auto_approve else { continue };
        for (i, rule) in a.on_call.iter().enumerate() {
            let key = format!("auto_approve.on_call[{i}]");
            match sources.iter().find(|(n, _)| n == &rule.source) {
                None => errors.push(super::PolicyError::invalid(
                    &r.name,
                    format!("{key}.source"),
                    format!(
                        "`{}` is not a configured on-call source (oncall.sources[].name)",
                        rule.source
                    ),
                )),
                Some((_, v)) if *v != Vendor::Pagerduty => {
                    if rule.escalation_policy.is_some() {
                        errors.push(super::PolicyError::invalid(
                            &r.name,
                            format!("{key}.escalation_policy"),
                            format!(
                                "only PagerDuty sources have escalation policies; `{}` is {}",
                                rule.source,
                                v.as_str()
                            ),
                        ));
                    }
                    if !rule.levels.is_empty() {
                        errors.push(super::PolicyError::invalid(
                            &r.name,
                            format!("{key}.levels"),
                            format!(
                                "only PagerDuty answers with escalation levels; `{}` is {}",
                                rule.source,
                                v.as_str()
                            ),
                        ));
                    }
                }
                Some(_) => {}
            }
        }
    }
    errors
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn w(days: &[&str], from: &str, to: &str, tz: &str) -> Window {
        Window {
            days: days.iter().map(|s| s.to_string()).collect(),
            from: from.into(),
            to: to.into(),
            time_zone: tz.into(),
        }
    }

    fn ms(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn business_hours_follow_daylight_saving() {
        // Berlin left summer time on Sunday 2026-10-25 at 03:00 CEST (01:00 UTC).
        let win = w(
            &["mon", "tue", "wed", "thu", "fri"],
            "09:00",
            "18:00",
            "Europe/Berlin",
        );
        // Friday before: 09:00 CEST is 07:00 UTC.
        assert!(!win.contains(ms("2026-10-23T06:59:00Z")));
        assert!(win.contains(ms("2026-10-23T07:00:00Z")));
        // Monday after: 09:00 CET is 08:00 UTC; 07:30 UTC is 08:30 local, outside.
        assert!(!win.contains(ms("2026-10-26T07:30:00Z")));
        assert!(win.contains(ms("2026-10-26T08:00:00Z")));
        assert!(win.contains(ms("2026-10-26T16:59:00Z")));
        assert!(!win.contains(ms("2026-10-26T17:00:00Z")));
        // Sunday is not listed.
        assert!(!win.contains(ms("2026-10-25T10:00:00Z")));
    }

    #[test]
    fn bad_windows_name_the_key() {
        let keys: Vec<&str> = w(&["funday"], "9am", "25:00", "Mars/Olympus")
            .problems()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["days", "from", "to", "time_zone"]);
        assert_eq!(w(&[], "18:00", "09:00", "UTC").problems()[0].0, "to");
        assert!(w(&[], "00:00", "24:00", "UTC").problems().is_empty());
    }
}
