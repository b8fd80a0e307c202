//! On-call auto-approval against the fake PagerDuty, Opsgenie and Jira Service Management
//! (helpers/oncall.rs): on call → approved and granted, with the source and schedule on the
//! request and in the audit; off call → pending; a source down, rate-limiting or slow →
//! pending with the reason and nothing granted; the auto-approval windows around a daylight-
//! saving change on the controlled clock; bad policy and config keys named.

use std::time::Duration;

use jit_broker::clock::Clock;
use jit_broker::oncall::{SourceConfig, Vendor};
use jit_broker::policy::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const POLICY: &str = r#"
[[resource]]
name = "pd-schedule"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com"] }
auto_approve = { max_duration = "2h", on_call = [{ source = "pd", schedule = "PSCHED1" }] }

[[resource]]
name = "pd-first-responder"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com"] }
auto_approve = { max_duration = "2h", on_call = [{ source = "pd", escalation_policy = "PEPOPS1", levels = [1] }] }

[[resource]]
name = "og-schedule"
kind = "okta_app"
okta_id = "0oa1awsprod000000002"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com"] }
auto_approve = { max_duration = "2h", on_call = [{ source = "og", schedule = "4f1c2a9e-og-sched" }] }

[[resource]]
name = "jsm-schedule"
kind = "okta_role"
okta_id = "USER_ADMIN"
default_duration = "30m"
max_duration = "2h"
approvers = { users = ["bob@example.com"] }
auto_approve = { max_duration = "1h", on_call = [{ source = "jsm", schedule = "9d2e-jsm-sched" }] }
"#;

fn source(name: &str, kind: Vendor, fake: &FakeOncall, timeout: Duration) -> SourceConfig {
    let (token, user, cloud_id, site_url) = match kind {
        Vendor::Pagerduty => (PD_TOKEN, None, None, None),
        Vendor::Opsgenie => (OG_KEY, None, None, None),
        Vendor::Jsm => (
            JSM_TOKEN,
            Some(JSM_USER.to_string()),
            Some(JSM_CLOUD.to_string()),
            Some(fake.base.clone()),
        ),
    };
    SourceConfig {
        name: name.into(),
        kind,
        base_url: Some(fake.base.clone()),
        token: Some(secrecy::SecretString::from(token)),
        token_file: None,
        user,
        cloud_id,
        site_url,
        timeout,
        cache_ttl: Duration::ZERO,
    }
}

async fn env_with_fake(db: Db, fake: &FakeOncall, timeout: Duration) -> Env {
    let sources = vec![
        source("pd", Vendor::Pagerduty, fake, timeout),
        source("og", Vendor::Opsgenie, fake, timeout),
        source("jsm", Vendor::Jsm, fake, timeout),
    ];
    EnvBuilder::new(db, POLICY)
        .people()
        .engineers()
        .tweak(move |c| c.oncall.sources = sources)
        .start()
        .await
}

/// The audit entry `action` about request `id`.
async fn audit_of(e: &Env, id: &str, action: &str) -> Value {
    let (_, audit) = e.get("/v1/audit?limit=500").await;
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == action && a["subject"] == format!("request:{id}"))
        .cloned()
        .unwrap_or_else(|| panic!("no {action} for {id} in {audit}"))
}

async fn on_call_is_auto_approved(db: Db) {
    let fake = FakeOncall::spawn().await;
    let e = env_with_fake(db, &fake, Duration::from_secs(2)).await;
    fake.set("PSCHED1", &["bob@example.com", "alice@example.com"]);
    fake.set_levels("PEPOPS1", &[("alice@example.com", 1)]);
    fake.set("4f1c2a9e-og-sched", &["alice@example.com"]);
    fake.set("9d2e-jsm-sched", &["alice@example.com"]);
    for (resource, src, key, target) in [
        ("pd-schedule", "pd", "schedule", "PSCHED1"),
        ("pd-first-responder", "pd", "escalation_policy", "PEPOPS1"),
        ("og-schedule", "og", "schedule", "4f1c2a9e-og-sched"),
        ("jsm-schedule", "jsm", "schedule", "9d2e-jsm-sched"),
    ] {
        let before = fake.calls();
        let (s, b) = e
            .request("alice@example.com", json!({"resource": resource}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{resource}: {b}");
        assert_eq!(b["request"]["state"], "approved", "{b}");
        assert_eq!(b["grant"]["state"], "active", "{b}");
        let a = &b["request"]["auto_approval"];
        assert_eq!(
            (&a["outcome"], &a["source"], &a[key]),
            (&json!("on_call"), &json!(src), &json!(target)),
            "{b}"
        );
        // One read of the schedule (JSM: and one user search to learn alice's account id).
        let expected = if src == "jsm" { 2 } else { 1 };
        assert_eq!(fake.calls() - before, expected, "{resource}");
        let id = b["request"]["id"].as_str().unwrap();
        let approved = audit_of(&e, id, "request.approved").await;
        assert_eq!(approved["actor"], "policy", "{approved}");
        let d = &approved["details"];
        assert_eq!(d["rule"], "auto_approve.on_call", "{approved}");
        assert_eq!(
            (&d["auto_approval"]["source"], &d["auto_approval"][key]),
            (&json!(src), &json!(target)),
            "{approved}"
        );
        // The request read back says the same.
        let shown = e.show(id).await;
        assert_eq!(shown["auto_approval"]["source"], src, "{shown}");
    }
    assert_eq!(e.count("grants").await, 4);
    e.audit_ok().await;
}

async fn off_call_is_pending(db: Db) {
    let fake = FakeOncall::spawn().await;
    let e = env_with_fake(db, &fake, Duration::from_secs(2)).await;
    fake.set("PSCHED1", &["bob@example.com"]);
    // On call, but at the second level where the rule wants the first.
    fake.set_levels(
        "PEPOPS1",
        &[("bob@example.com", 1), ("alice@example.com", 2)],
    );
    fake.set("4f1c2a9e-og-sched", &["carol@example.com"]);
    // JSM: a longer address that the user search also returns is on call, not alice.
    fake.set("9d2e-jsm-sched", &["alice.lead@example.com"]);
    let grants_before = e.count("grants").await;
    for resource in [
        "pd-schedule",
        "pd-first-responder",
        "og-schedule",
        "jsm-schedule",
    ] {
        let (s, b) = e
            .request("alice@example.com", json!({"resource": resource}))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{resource}: {b}");
        assert_eq!(b["request"]["state"], "pending", "{b}");
        assert_eq!(b["request"]["auto_approval"], Value::Null, "{b}");
    }
    assert_eq!(e.count("grants").await, grants_before);
}

/// A source that cannot answer approves no one: the request waits with the reason.
async fn unavailable_source_falls_back(db: Db) {
    let fake = FakeOncall::spawn().await;
    let e = env_with_fake(db, &fake, Duration::from_millis(300)).await;
    fake.set(
        "PSCHED1",
        &[
            "eng1@example.com",
            "eng2@example.com",
            "eng3@example.com",
            "eng4@example.com",
        ],
    );
    let before = e.footprint().await;
    let cases = [
        (
            "eng1@example.com",
            Mode::Down,
            "HTTP 503: Service Unavailable",
        ),
        ("eng2@example.com", Mode::RateLimited(120), "rate-limiting"),
    ];
    for (who, mode, reason) in cases {
        fake.mode(mode);
        let (s, b) = e.request(who, json!({"resource": "pd-schedule"})).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        assert_eq!(b["request"]["state"], "pending", "{b}");
        let a = &b["request"]["auto_approval"];
        assert_eq!(
            (&a["outcome"], &a["source"], &a["schedule"]),
            (&json!("unavailable"), &json!("pd"), &json!("PSCHED1")),
            "{b}"
        );
        let note = a["note"].as_str().unwrap();
        assert!(
            note.contains(reason) && note.contains("waits for its approvers"),
            "{note}"
        );
        assert!(!note.contains(PD_TOKEN), "{note}");
        let created = audit_of(&e, b["request"]["id"].as_str().unwrap(), "request.created").await;
        assert_eq!(created["details"]["auto_approval"], *a, "{created}");
    }
    // After the 429 the source is left alone until its Retry-After: no call, same answer.
    fake.mode(Mode::Up);
    let calls = fake.calls();
    let (_, b) = e
        .request("eng3@example.com", json!({"resource": "pd-schedule"}))
        .await;
    assert_eq!(b["request"]["state"], "pending", "{b}");
    assert!(
        b["request"]["auto_approval"]["note"]
            .as_str()
            .unwrap()
            .contains("rate-limiting"),
        "{b}"
    );
    assert_eq!(
        fake.calls(),
        calls,
        "a rate-limited source was called again"
    );
    // Slow: an answer after the 300 ms timeout is no answer (Opsgenie is not rate-limited).
    fake.latency(Duration::from_secs(2));
    fake.set("4f1c2a9e-og-sched", &["eng4@example.com"]);
    let (_, b) = e
        .request("eng4@example.com", json!({"resource": "og-schedule"}))
        .await;
    assert_eq!(b["request"]["state"], "pending", "{b}");
    let note = b["request"]["auto_approval"]["note"].as_str().unwrap();
    assert!(note.contains("did not answer within 300ms"), "{note}");
    // Four pending requests, no decision, no grant.
    let after = e.footprint().await;
    assert_eq!(
        (after.0 - before.0, after.1 - before.1, after.2 - before.2),
        (4, 0, 0)
    );
    // An approver still decides them as usual.
    let (_, list) = e.get("/v1/requests?state=pending").await;
    let id = list["requests"][0]["id"].as_str().unwrap().to_string();
    let (s, b) = e.decide("bob@example.com", &id, "approve", "ok").await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

const WINDOW_POLICY: &str = r#"
[[resource]]
name = "business-hours"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com"] }

[resource.auto_approve]
users = ["alice@example.com"]
max_duration = "2h"
windows = [{ days = ["mon", "tue", "wed", "thu", "fri"], from = "09:00", to = "18:00", time_zone = "Europe/Berlin" }]
"#;

fn at(rfc3339: &str) -> Clock {
    Clock::tokio_at(
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis(),
    )
}

/// Berlin left summer time on Sunday 2026-10-25. 07:30 UTC is 09:30 on the Friday before
/// (CEST, inside 09:00–18:00) but 08:30 on the Monday after (CET, outside): a window computed
/// with a fixed offset would get one of them wrong.
async fn window_around_dst(db: Db) {
    for (now, approved) in [
        ("2026-10-23T07:30:00Z", true),
        ("2026-10-26T07:30:00Z", false),
    ] {
        let e = EnvBuilder::new(db, WINDOW_POLICY)
            .people()
            .clock(at(now))
            .start()
            .await;
        let (s, b) = e
            .request("alice@example.com", json!({"resource": "business-hours"}))
            .await;
        if approved {
            assert_eq!(s, StatusCode::CREATED, "{now}: {b}");
            assert_eq!(b["request"]["state"], "approved", "{b}");
        } else {
            assert_eq!(s, StatusCode::ACCEPTED, "{now}: {b}");
            assert_eq!(b["request"]["state"], "pending", "{b}");
            assert_eq!(b["request"]["auto_approval"]["outcome"], "outside_window");
            assert_eq!(e.count("grants").await, 0);
        }
    }
}

both_backends!(
    on_call_is_auto_approved,
    off_call_is_pending,
    unavailable_source_falls_back,
    window_around_dst,
);

fn policy_errors(auto: &str) -> String {
    let text = format!(
        r#"
[[resource]]
name = "r1"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
default_duration = "1h"
max_duration = "4h"
approvals_required = 0
auto_approve = {auto}
"#
    );
    Policy::parse(&text)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn bad_on_call_and_window_keys_are_named() {
    let cases = [
        (
            r#"{ max_duration = "1h", on_call = [{ source = "pd", schedule = "P1", escalation_policy = "P2" }] }"#,
            "auto_approve.on_call[0]`",
        ),
        (
            r#"{ max_duration = "1h", on_call = [{ source = "pd" }] }"#,
            "auto_approve.on_call[0]`",
        ),
        (
            r#"{ max_duration = "1h", on_call = [{ source = "pd", schedule = "P 1" }] }"#,
            "auto_approve.on_call[0].schedule",
        ),
        (
            r#"{ max_duration = "1h", on_call = [{ source = "p d", schedule = "P1" }] }"#,
            "auto_approve.on_call[0].source",
        ),
        (
            r#"{ max_duration = "1h", on_call = [{ source = "pd", schedule = "P1", levels = [0] }] }"#,
            "auto_approve.on_call[0].levels",
        ),
        (
            r#"{ max_duration = "1h", on_call = [{ source = "pd", schedul = "P1" }] }"#,
            "schedul",
        ),
        (
            r#"{ max_duration = "1h", on_call = [{ source = "pd", schedule = "REPLACE_ME_SCHEDULE" }] }"#,
            "placeholder",
        ),
        (r#"{ max_duration = "1h" }"#, "`auto_approve`"),
        (
            r#"{ users = ["a@example.com"], max_duration = "1h", windows = [{ from = "9", to = "18:00", time_zone = "UTC" }] }"#,
            "auto_approve.windows[0].from",
        ),
        (
            r#"{ users = ["a@example.com"], max_duration = "1h", windows = [{ from = "09:00", to = "18:00", time_zone = "Europe/Atlantis" }] }"#,
            "auto_approve.windows[0].time_zone",
        ),
        (
            r#"{ users = ["a@example.com"], max_duration = "1h", windows = [{ days = ["someday"], from = "09:00", to = "18:00", time_zone = "UTC" }] }"#,
            "auto_approve.windows[0].days",
        ),
        (
            r#"{ users = ["a@example.com"], max_duration = "1h", windows = [{ from = "18:00", to = "09:00", time_zone = "UTC" }] }"#,
            "auto_approve.windows[0].to",
        ),
        (
            r#"{ users = ["a@example.com"], max_duration = "1h", windows = [{ from = "09:00", to = "18:00", tz = "UTC" }] }"#,
            "tz",
        ),
    ];
    for (auto, key) in cases {
        let errs = policy_errors(auto);
        assert!(
            errs.contains("r1") && errs.contains(key),
            "expected `{key}` in: {errs}"
        );
    }
}

#[test]
fn rules_must_name_configured_sources_of_the_right_vendor() {
    let p = Policy::parse(POLICY).unwrap();
    let errs: Vec<String> = jit_broker::policy::auto::check_sources(
        &p,
        &[
            ("pd".into(), Vendor::Pagerduty),
            ("og".into(), Vendor::Opsgenie),
        ],
    )
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("jsm-schedule") && errs[0].contains("auto_approve.on_call[0].source"),
        "{errs:?}"
    );
    let text = POLICY.replace(
        r#"{ source = "og", schedule = "4f1c2a9e-og-sched" }"#,
        r#"{ source = "og", escalation_policy = "E1", levels = [1] }"#,
    );
    let errs: Vec<String> = jit_broker::policy::auto::check_sources(
        &Policy::parse(&text).unwrap(),
        &[
            ("pd".into(), Vendor::Pagerduty),
            ("og".into(), Vendor::Opsgenie),
            ("jsm".into(), Vendor::Jsm),
        ],
    )
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].contains("on_call[0].escalation_policy"), "{errs:?}");
    assert!(errs[1].contains("on_call[0].levels"), "{errs:?}");
}

#[test]
fn bad_oncall_config_is_named_and_never_shows_the_token() {
    let env = [(
        "JIT_ONCALL__SOURCES".to_string(),
        r#"[{ name = "pd", kind = "pagerduty", token = "s3cr3t-pd-token", timeout = "1h", cache_ttl = "10m" }, { name = "jsm", kind = "jsm", token = "s3cr3t-jsm" }, { name = "og", kind = "opsgenie", base_url = "ftp://x", cloud_id = "c" }]"#
            .to_string(),
    )];
    let errs: Vec<String> = jit_broker::Config::load_with_env(None, env)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    let all = errs.join("\n");
    for key in [
        "oncall.sources[0].timeout",
        "oncall.sources[0].cache_ttl",
        "oncall.sources[1].user",
        "oncall.sources[1].cloud_id",
        "oncall.sources[1].site_url",
        "oncall.sources[2].token",
        "oncall.sources[2].base_url",
        "oncall.sources[2].cloud_id",
    ] {
        assert!(all.contains(key), "expected `{key}` in: {all}");
    }
    assert!(!all.contains("s3cr3t"), "{all}");
    // A malformed list names the variable, never its text.
    let env = [(
        "JIT_ONCALL__SOURCES".to_string(),
        r#"[{ name = "pd", token = "s3cr3t-pd-token""#.to_string(),
    )];
    let errs: Vec<String> = jit_broker::Config::load_with_env(None, env)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(!errs.join("\n").contains("s3cr3t"), "{errs:?}");
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Figures, printed, never asserted: request → active grant through the API with the on-call
/// check against the fake at 100 ms latency (no cache, and a 30 s cache), and the same request
/// auto-approved by `users` (no outside call) in the same run; outside calls per request.
/// `cargo test --all-features --test it oncall_latency_figures -- --ignored --nocapture`
/// (`ONCALL_FIGURES_N`, default 100 requests per row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn oncall_latency_figures() {
    let n: usize = std::env::var("ONCALL_FIGURES_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let fake = FakeOncall::spawn().await;
    fake.latency(Duration::from_millis(100));
    fake.set("PSCHED1", &["alice@example.com"]);
    let mut cached = source(
        "pd-cached",
        Vendor::Pagerduty,
        &fake,
        Duration::from_secs(2),
    );
    cached.cache_ttl = Duration::from_secs(30);
    let policy = format!(
        "{POLICY}{}",
        r#"
[[resource]]
name = "named"
kind = "okta_group"
okta_id = "00g1dbowners00000002"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com"] }
auto_approve = { max_duration = "2h", users = ["alice@example.com"] }

[[resource]]
name = "pd-cached"
kind = "okta_group"
okta_id = "00g1oncall0000000003"
default_duration = "1h"
max_duration = "4h"
approvers = { users = ["bob@example.com"] }
auto_approve = { max_duration = "2h", on_call = [{ source = "pd-cached", schedule = "PSCHED1" }] }
"#
    );
    let sources = vec![
        source("pd", Vendor::Pagerduty, &fake, Duration::from_secs(2)),
        source("og", Vendor::Opsgenie, &fake, Duration::from_secs(2)),
        source("jsm", Vendor::Jsm, &fake, Duration::from_secs(2)),
        cached,
    ];
    let e = EnvBuilder::new(Db::Sqlite, &policy)
        .people()
        .tweak(move |c| c.oncall.sources = sources)
        .start()
        .await;
    println!("request -> active grant, n = {n} per row, fake on-call latency 100 ms, SQLite");
    for resource in ["named", "pd-schedule", "pd-cached"] {
        let mut ms = Vec::with_capacity(n);
        let calls = fake.calls();
        for _ in 0..n {
            let t = std::time::Instant::now();
            let (s, b) = e
                .request("alice@example.com", json!({"resource": resource}))
                .await;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(s, StatusCode::CREATED, "{b}");
            let gid = b["grant"]["id"].as_str().unwrap().to_string();
            let (s, b) = e
                .post(
                    &format!("/v1/grants/{gid}/revoke"),
                    json!({"reason": "bench"}),
                )
                .await;
            assert!(s.is_success(), "{b}");
        }
        let per = (fake.calls() - calls) as f64 / n as f64;
        println!(
            "{resource:>12}: p50 {:7.1} ms  p99 {:7.1} ms  on-call calls/request {per:.2}",
            pct(&mut ms, 0.5),
            pct(&mut ms, 0.99)
        );
    }
}

/// The client alone: `probe` (one cheap authenticated read per source) proves each credential
/// and names a refused one; a cached answer is served without a call until `cache_ttl` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_probe_and_cache() {
    use jit_broker::oncall::{Oncall, OncallConfig, OncallError, Target};
    let fake = FakeOncall::spawn().await;
    let t = Duration::from_secs(2);
    let mut cached = source("pd", Vendor::Pagerduty, &fake, t);
    cached.cache_ttl = Duration::from_secs(30);
    let mut wrong = source("og-wrong", Vendor::Opsgenie, &fake, t);
    wrong.token = Some(secrecy::SecretString::from("not-the-key"));
    let cfg = OncallConfig {
        sources: vec![
            cached,
            source("og", Vendor::Opsgenie, &fake, t),
            source("jsm", Vendor::Jsm, &fake, t),
            wrong,
        ],
    };
    let clock = Clock::tokio_at(1_800_000_000_000);
    let oc = Oncall::new(&cfg, clock).unwrap();
    for s in ["pd", "og", "jsm"] {
        oc.probe(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    match oc.probe("og-wrong").await {
        Err(OncallError::Status {
            status: 401,
            message,
            ..
        }) => {
            assert_eq!(message, "Could not authenticate")
        }
        other => panic!("{other:?}"),
    }
    fake.set("PSCHED1", &["alice@example.com"]);
    let target = Target::Schedule("PSCHED1".into());
    let calls = fake.calls();
    for _ in 0..5 {
        let m = oc
            .on_call("pd", &target, "Alice@Example.com", &[])
            .await
            .unwrap();
        assert_eq!(m.map(|m| m.level), Some(Some(1)));
    }
    assert_eq!(fake.calls() - calls, 1, "one read, then the cache");
    assert!(matches!(
        oc.on_call("nope", &target, "alice@example.com", &[]).await,
        Err(OncallError::UnknownSource(_))
    ));
}
