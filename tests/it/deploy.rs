//! deploy/: every metric the Grafana dashboard and the Prometheus alert rules query is one the
//! broker exports. A broker (its own process, so `/metrics` is its own) is taken through a
//! grant, a rate-limited and slow expiry and a readiness probe, then scraped; each metric name in
//! the dashboard's and the rules' expressions must appear in the scrape. The manifests and rules
//! themselves are checked by `.ci/run` (`.ci/check-deploy.py` renders and validates every
//! Kubernetes overlay; promtool tests the rules).

use std::collections::BTreeSet;
use std::time::Duration;

use okta_sim::{FaultConfig, FaultSpec, RateLimitConfig};
use serde_json::Value;

use crate::e2e_faults::child::{ChildBroker, MEMBERSHIP};
use crate::helpers::*;

const DASHBOARD: &str = include_str!("../../deploy/grafana/jit-broker.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/alerts.yaml");

/// PromQL functions and keywords that look like identifiers.
const PROMQL: &[&str] = &[
    "sum",
    "rate",
    "increase",
    "histogram_quantile",
    "max",
    "min",
    "by",
    "without",
    "changes",
    "min_over_time",
    "max_over_time",
    "avg",
    "count",
    "on",
    "ignoring",
    "bool",
    "and",
    "or",
    "unless",
    "time",
    "abs",
];

/// The metric names an expression reads: identifiers outside label matchers, grouping lists and
/// range selectors, minus PromQL's own words; a histogram's `_bucket` etc. suffix is dropped.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let strip =
        regex::Regex::new(r"\{[^}]*\}|\b(by|without|on|ignoring)\s*\([^)]*\)|\[[^\]]*\]").unwrap();
    let ident = regex::Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").unwrap();
    let bare = strip.replace_all(expr, " ");
    ident
        .find_iter(&bare)
        .map(|m| m.as_str())
        .filter(|w| !PROMQL.contains(w))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .fold(w.to_string(), |n, s| {
                    n.strip_suffix(s).unwrap_or(&n).to_string()
                })
        })
        .collect()
}

fn used_metrics() -> (BTreeSet<String>, usize) {
    let dash: Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    // The rules file is YAML; each rule's expression is one `expr:` line.
    for line in ALERTS.lines() {
        if let Some(e) = line.trim().strip_prefix("expr:") {
            exprs.push(e.trim().to_string());
        }
    }
    let names = exprs
        .iter()
        .flat_map(|e| metric_names(e))
        // kube-state-metrics, not the broker: the audit-verify CronJob's Job status.
        .filter(|n| !n.starts_with("kube_"))
        .collect();
    (names, exprs.len())
}

fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .fold(n.to_string(), |n, s| {
                    n.strip_suffix(s).unwrap_or(&n).to_string()
                })
        })
        .collect()
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(jit_http_request_duration_seconds_bucket{route="/x"}[5m]))) > 2"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["jit_http_request_duration_seconds".to_string()])
    );
    let (used, exprs) = used_metrics();
    assert!(exprs >= 20, "{exprs} expressions");
    assert!(used.contains("jit_expiry_lateness_seconds"));
    assert!(used.contains("jit_ready"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_metric_is_exported() {
    let sim = okta_sim::spawn(okta_sim::SimConfig::default())
        .await
        .unwrap();
    // Short windows so a forced 429 costs about a second.
    sim.set_rate_limits(RateLimitConfig::uniform(1_000_000, Duration::from_secs(1)));
    // One outbound endpoint, so the outbox's per-channel gauges exist (nothing listens on its
    // port: its deliveries back off, which is all this test needs of it).
    let b = ChildBroker::start_with_config(
        TestDb::new(Db::Sqlite).await,
        &sim.base_url(),
        crate::helpers::GRANTS_POLICY,
        "[[outbound.endpoints]]\nname = \"siem\"\nurl = \"http://127.0.0.1:9/events\"\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
        vec![("JIT_SCHEDULER__SWEEP_INTERVAL", "1s".into())],
    )
    .await;
    let g = b.grant("alice@example.com", "prod-db-admin", "1s").await;
    // The expiry meets one 429 and then a removal slow enough for a lease renewal.
    sim.set_faults(FaultConfig::route(
        "DELETE",
        MEMBERSHIP,
        FaultSpec {
            force_429_next: 1,
            latency_ms: Some((1_500, 1_500)),
            ..FaultSpec::default()
        },
    ));
    let gid = id(&g);
    wait_until(Duration::from_secs(60), || async {
        b.get(&format!("/v1/grants/{gid}")).await.1["state"] == "revoked"
    })
    .await;
    let ready = b
        .http
        .get(format!("{}/readyz", b.base))
        .send()
        .await
        .unwrap();
    assert!(ready.status().is_success());
    let (used, _) = used_metrics();
    // The sweep sets the overdue gauge within a second of start; poll with a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let have = exported(&b.metrics().await);
        let missing: Vec<&String> = used.difference(&have).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "used by deploy/ but not exported: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
