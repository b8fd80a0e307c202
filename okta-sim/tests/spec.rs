//! Every management route the simulator serves exists in Okta's management OpenAPI spec
//! (shared `okta/openapi/management-minimal.yaml`), and every status it can answer is one the
//! spec lists for that operation — apart from documented deviations and cross-cutting answers.
//! A second test exercises each route with good and bad input and checks that what the
//! simulator actually answered is among the statuses it declares.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::*;
use okta_sim::routes::{ROUTES, SPEC_DEVIATIONS};
use okta_sim::seed::{ALICE, AWS_PROD, DAVE, ENGINEERING, PAYROLL, PROD_ADMINS};
use serde_json::json;

/// Answers any route can give that the spec does not list per operation: 401 (bad token; the
/// spec documents auth globally), 411 (missing Content-Length, from Okta's front end) and
/// injected 5xx faults.
const CROSS_CUTTING: &[u16] = &[401, 411, 500, 502, 503, 504];

fn spec() -> serde_yaml::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/okta/openapi/management-minimal.yaml");
    serde_yaml::from_str(
        &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

#[test]
fn served_routes_and_statuses_are_in_the_spec() {
    let spec = spec();
    let paths = &spec["paths"];
    let mut errs = Vec::new();
    for (method, template, statuses) in ROUTES {
        let op = &paths[*template][method.to_ascii_lowercase().as_str()];
        if op.is_null() {
            errs.push(format!("{method} {template}: not in the spec"));
            continue;
        }
        let responses = op["responses"].as_mapping().unwrap();
        let listed: Vec<u16> = responses
            .keys()
            .filter_map(|k| k.as_str().and_then(|s| s.parse().ok()))
            .collect();
        if !listed.contains(&429) {
            errs.push(format!(
                "{method} {template}: spec lacks 429 though every route can rate-limit"
            ));
        }
        for s in *statuses {
            let deviation = SPEC_DEVIATIONS
                .iter()
                .any(|(m, t, st, _)| m == method && t == template && st == s);
            if !listed.contains(s) && !deviation {
                errs.push(format!(
                    "{method} {template}: answers {s}, spec lists {listed:?}"
                ));
            }
        }
    }
    for (m, t, s, why) in SPEC_DEVIATIONS {
        assert!(!why.is_empty());
        assert!(
            ROUTES
                .iter()
                .any(|(rm, rt, st)| rm == m && rt == t && st.contains(s)),
            "stale deviation {m} {t} {s}"
        );
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// Concrete URLs for a template: one with real ids, one with unknown ids.
fn urls(template: &str, role_id: &str) -> Vec<String> {
    let fill = |g: &str, u: &str, a: &str, r: &str| {
        template
            .replace("{groupId}", g)
            .replace("{userId}", u)
            .replace("{id}", u)
            .replace("{appId}", a)
            .replace("{roleAssignmentId}", r)
    };
    vec![
        fill(PROD_ADMINS, ALICE, PAYROLL, role_id),
        fill(ENGINEERING, DAVE, AWS_PROD, role_id),
        fill(
            "00gunknown0000000000",
            "00uunknown0000000000",
            "0oaunknown0000000000",
            "NOSUCHROLE",
        ),
    ]
}

#[tokio::test]
async fn every_route_answers_only_declared_statuses() {
    let sim = start().await;
    let c = client();
    let base = sim.base_url();
    let role_id = sim
        .admin("admin@example.com")
        .assign_role(ALICE, "REPORT_ADMIN")
        .unwrap();
    let bodies = [
        json!({}),
        json!({"id": ALICE, "scope": "USER"}),
        json!({"type": "USER_ADMIN"}),
        json!({"type": "BOGUS"}),
        json!({"profile": {"name": "g", "login": "x@example.com"}, "label": "l"}),
    ];
    let mut errs = Vec::new();
    // Order: GETs and POST/PUT before DELETEs so deletions do not hide other answers.
    let mut routes: Vec<_> = ROUTES.to_vec();
    routes.sort_by_key(|(m, _, _)| *m == "DELETE");
    for (method, template, declared) in routes {
        for url in urls(template, &role_id) {
            for token in [SUPER, READ_ONLY, "bad-token"] {
                for body in &bodies {
                    let mut rb = c
                        .request(method.parse().unwrap(), format!("{base}{url}"))
                        .header("Authorization", ssws(token));
                    if method == "POST" || method == "PUT" {
                        rb = rb.json(body);
                    }
                    let st = rb.send().await.unwrap().status().as_u16();
                    if !declared.contains(&st) && !CROSS_CUTTING.contains(&st) {
                        errs.push(format!(
                            "{method} {url} ({token}, {body}): {st} not in {declared:?}"
                        ));
                    }
                    if method != "POST" && method != "PUT" {
                        break;
                    }
                }
            }
        }
    }
    errs.dedup();
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    sim.shutdown().await;
}
