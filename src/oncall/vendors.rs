//! The three vendors' requests and answers: paths, headers, query parameters and the fields read
//! (the facts are listed with their sources in docs/oncall.md).
//!
//! What it must never do: read a field the vendor does not document as the one that names the
//! person, or guess: a shape it cannot read is an error (the request falls back to approvers).

use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{OnCaller, Oncall, OncallError, Source, Target, Vendor};

/// PagerDuty's `earliest=true` answers one entry per (policy, level, schedule) and user; a page
/// holds at most 100. More than this many pages for one schedule is not a schedule.
const PD_MAX_PAGES: usize = 5;
const PD_ACCEPT: &str = "application/vnd.pagerduty+json;version=2";

#[derive(Deserialize)]
struct PdPage {
    oncalls: Vec<PdOncall>,
    #[serde(default)]
    more: bool,
}

#[derive(Deserialize)]
struct PdOncall {
    user: PdUser,
    escalation_level: Option<u32>,
}

#[derive(Deserialize)]
struct PdUser {
    /// Present with `include[]=users` (the full user object), absent on a reference.
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct OgAnswer {
    data: OgData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OgData {
    /// With `flat=true`: the on-call users' usernames (Opsgenie usernames are emails).
    #[serde(default)]
    on_call_recipients: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsmAnswer {
    /// With `flat=true`: the on-call users' Atlassian account ids.
    #[serde(default)]
    on_call_users: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JiraUser {
    account_id: String,
    #[serde(default)]
    email_address: Option<String>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

fn malformed(src: &Source, e: impl std::fmt::Display) -> OncallError {
    OncallError::Malformed {
        src: src.cfg.name.clone(),
        message: e.to_string(),
    }
}

fn token(src: &Source) -> &str {
    src.cfg
        .token
        .as_ref()
        .map(|t| t.expose_secret())
        .unwrap_or("")
}

/// The request for one page of a target's on-call list.
fn request(
    oc: &Oncall,
    src: &Source,
    target: &Target,
    offset: usize,
) -> Result<reqwest::RequestBuilder, OncallError> {
    let http = &oc.inner.http;
    Ok(match (src.cfg.kind, target) {
        (Vendor::Pagerduty, _) => {
            let filter = match target {
                Target::Schedule(_) => "schedule_ids[]",
                Target::EscalationPolicy(_) => "escalation_policy_ids[]",
            };
            http.get(format!("{}/oncalls", src.base))
                .header("Authorization", format!("Token token={}", token(src)))
                .header("Accept", PD_ACCEPT)
                .query(&[
                    (filter, target.id()),
                    ("earliest", "true"),
                    ("include[]", "users"),
                    ("limit", "100"),
                    ("offset", &offset.to_string()),
                ])
        }
        (Vendor::Opsgenie, Target::Schedule(id)) => http
            .get(format!(
                "{}/v2/schedules/{}/on-calls",
                src.base,
                urlencode(id)
            ))
            .header("Authorization", format!("GenieKey {}", token(src)))
            .query(&[("scheduleIdentifierType", "id"), ("flat", "true")]),
        (Vendor::Jsm, Target::Schedule(id)) => http
            .get(format!(
                "{}/jsm/ops/api/{}/v1/schedules/{}/on-calls",
                src.base,
                urlencode(src.cfg.cloud_id.as_deref().unwrap_or("")),
                urlencode(id)
            ))
            .basic_auth(src.cfg.user.as_deref().unwrap_or(""), Some(token(src)))
            .header("Accept", "application/json")
            .query(&[("flat", "true")]),
        (_, Target::EscalationPolicy(_)) => {
            return Err(malformed(
                src,
                "only PagerDuty sources answer for escalation policies",
            ))
        }
    })
}

/// Who is on call for `target` now.
pub(super) async fn roster(
    oc: &Oncall,
    src: &Source,
    target: &Target,
) -> Result<Vec<OnCaller>, OncallError> {
    match src.cfg.kind {
        Vendor::Pagerduty => {
            let mut out = Vec::new();
            for page in 0..PD_MAX_PAGES {
                let v = oc.get(src, request(oc, src, target, page * 100)?).await?;
                let p: PdPage = serde_json::from_value(v).map_err(|e| malformed(src, e))?;
                out.extend(p.oncalls.into_iter().map(|o| OnCaller {
                    email: o.user.email,
                    account_id: None,
                    level: o.escalation_level,
                }));
                if !p.more {
                    break;
                }
            }
            Ok(out)
        }
        Vendor::Opsgenie => {
            let v = oc.get(src, request(oc, src, target, 0)?).await?;
            let a: OgAnswer = serde_json::from_value(v).map_err(|e| malformed(src, e))?;
            Ok(a.data
                .on_call_recipients
                .into_iter()
                .map(|e| OnCaller {
                    email: Some(e),
                    account_id: None,
                    level: None,
                })
                .collect())
        }
        Vendor::Jsm => {
            let v = oc.get(src, request(oc, src, target, 0)?).await?;
            let a: JsmAnswer = serde_json::from_value(v).map_err(|e| malformed(src, e))?;
            Ok(a.on_call_users
                .into_iter()
                .map(|id| OnCaller {
                    email: None,
                    account_id: Some(id),
                    level: None,
                })
                .collect())
        }
    }
}

/// JSM answers with Atlassian account ids: the requester's is found by email through the Jira
/// site's user search (`GET /rest/api/3/user/search?query=`), keeping only an active account
/// whose visible email is exactly theirs (a search matches prefixes and display names too).
pub(super) async fn jsm_account(
    oc: &Oncall,
    src: &Source,
    email: &str,
) -> Result<Option<String>, OncallError> {
    let site = src
        .cfg
        .site_url
        .as_deref()
        .unwrap_or("")
        .trim_end_matches('/');
    let req = oc
        .inner
        .http
        .get(format!("{site}/rest/api/3/user/search"))
        .basic_auth(src.cfg.user.as_deref().unwrap_or(""), Some(token(src)))
        .header("Accept", "application/json")
        .query(&[("query", email)]);
    let v = oc.get(src, req).await?;
    let users: Vec<JiraUser> = serde_json::from_value(v).map_err(|e| malformed(src, e))?;
    Ok(users
        .into_iter()
        .find(|u| {
            u.active
                && u.email_address
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .map(|u| u.account_id))
}

/// One cheap authenticated read: a schedule that does not exist. A 404 (Opsgenie, JSM) or an
/// empty list (PagerDuty) proves the credential; 401/403 and failures are returned.
pub(super) async fn probe(oc: &Oncall, src: &Source) -> Result<(), OncallError> {
    let target = Target::Schedule("jit-broker-credential-check".into());
    let req = match src.cfg.kind {
        Vendor::Pagerduty => oc
            .inner
            .http
            .get(format!("{}/oncalls", src.base))
            .header("Authorization", format!("Token token={}", token(src)))
            .header("Accept", PD_ACCEPT)
            .query(&[("limit", "1")]),
        _ => request(oc, src, &target, 0)?,
    };
    match oc.get(src, req).await {
        Ok(_) => Ok(()),
        Err(OncallError::Status { status: 404, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Seconds from `Retry-After` (delta-seconds form) or, failing it, PagerDuty's
/// `ratelimit-reset`; capped at an hour.
pub(super) fn retry_after(h: &reqwest::header::HeaderMap) -> Option<u64> {
    ["retry-after", "ratelimit-reset"]
        .iter()
        .find_map(|k| h.get(*k)?.to_str().ok()?.trim().parse::<u64>().ok())
        .map(|s| s.min(3600))
}

/// The vendor's own error text: PagerDuty `{"error": {"message", "code"}}`, Opsgenie
/// `{"message", "took", "requestId"}`, Atlassian `{"errorMessages": [..]}` or `{"message"}`.
/// At most 200 characters, control characters removed.
pub(super) fn error_message(kind: Vendor, body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let msg = match kind {
        Vendor::Pagerduty => v["error"]["message"].as_str().map(str::to_string),
        Vendor::Opsgenie => v["message"].as_str().map(str::to_string),
        Vendor::Jsm => v["errorMessages"][0]
            .as_str()
            .or_else(|| v["message"].as_str())
            .map(str::to_string),
    };
    let msg = msg.unwrap_or_else(|| "(no error message)".into());
    msg.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
