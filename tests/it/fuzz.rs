//! Property tests ("fuzzing") of every parser of outside input: the Okta event hook envelope,
//! Slack commands and interactions, Standard Webhooks headers, the policy file and config
//! values. Generated inputs (random bytes, random JSON, and mutations of real payloads) must
//! never panic; sent through the running broker they never get a 5xx, and an input that is
//! refused (4xx) changes nothing.
//!
//! Cases per target: `JIT_FUZZ_CASES` (default 256, what CI runs); e.g. `JIT_FUZZ_CASES=20000
//! cargo test --test it fuzz -- --nocapture` for a longer run. Each target prints how many
//! inputs it executed. Pure targets shrink a failure to a minimal input (proptest); targets
//! through the broker draw their inputs up front and print the failing one.

use std::sync::atomic::{AtomicU64, Ordering};

use jit_broker::Config;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::Value;

use crate::helpers::*;

mod broker;

fn cases() -> u32 {
    std::env::var("JIT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn runner() -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: cases(),
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

/// Inputs drawn from `s` for a target that runs through the broker (async, so no shrinking).
pub fn draw<T>(s: impl Strategy<Value = T>) -> Vec<T> {
    let mut r = runner();
    (0..cases())
        .map(|_| s.new_tree(&mut r).unwrap().current())
        .collect()
}

pub fn report(target: &str, n: &AtomicU64) {
    eprintln!("fuzz {target}: {} executions", n.load(Ordering::Relaxed));
}

/// Keys that the parsers look for, so random JSON often has the right shape.
const KEYS: &[&str] = &[
    "uuid",
    "eventType",
    "published",
    "actor",
    "target",
    "id",
    "type",
    "alternateId",
    "displayName",
    "data",
    "events",
    "user",
    "team",
    "team_id",
    "enterprise",
    "api_app_id",
    "actions",
    "action_id",
    "value",
    "view",
    "state",
    "values",
    "private_metadata",
    "response_url",
    "trigger_id",
    "callback_id",
    "selected_option",
    "request_id",
    "decision",
    "approver",
    "comment",
];

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        "[a-zA-Z0-9_.:@-]{0,40}",
        Just(String::new()),
        Just("approve".to_string()),
        Just("user.lifecycle.deactivate".to_string()),
        Just("2001-01-01T00:00:00Z".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("\u{0}\u{202e}=cmd|' /C calc'!A0".to_string()),
        "[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
    ]
}

/// Any JSON value, keys often the ones the parsers read.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    let key = prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => ".{0,12}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer inside `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(c, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// `doc` with one to four of its values (anywhere, nested or not) replaced by random JSON.
pub fn mutated(doc: Value) -> impl Strategy<Value = Value> {
    let mut ptrs = Vec::new();
    pointers(&doc, String::new(), &mut ptrs);
    prop::collection::vec((prop::sample::select(ptrs), json_value()), 1..4).prop_map(move |edits| {
        let mut d = doc.clone();
        for (p, v) in edits {
            if p.is_empty() {
                d = v;
            } else if let Some(slot) = d.pointer_mut(&p) {
                *slot = v;
            }
        }
        d
    })
}

/// Bytes a parser of JSON might be handed: garbage, any JSON, or a real document mutated.
pub fn json_bytes(real: Value) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        4 => mutated(real).prop_map(|v| v.to_string().into_bytes()),
    ]
}

fn okta_delivery() -> Value {
    serde_json::from_str(include_str!(
        "../fixtures/okta/event-hook-delivery-sample.json"
    ))
    .unwrap()
}

// --- Okta event hook envelope ------------------------------------------------------------

#[test]
fn okta_hook_envelope_never_panics() {
    static N: AtomicU64 = AtomicU64::new(0);
    runner()
        .run(&json_bytes(okta_delivery()), |body| {
            N.fetch_add(1, Ordering::Relaxed);
            if let Ok(d) = jit_broker::events::envelope::parse(&body) {
                for (ev, raw) in &d.events {
                    prop_assert!(!ev.uuid.is_empty());
                    prop_assert!(serde_json::from_str::<Value>(raw).is_ok());
                }
            }
            Ok(())
        })
        .unwrap();
    report("okta hook envelope (parse)", &N);
}

both_backends!(okta_hook_deliveries_through_the_broker);

async fn okta_events(store: &jit_broker::store::Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM okta_events")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn okta_hook_deliveries_through_the_broker(db: Db) {
    let n = AtomicU64::new(0);
    let e = crate::helpers::env_with(db, crate::helpers::GRANTS_POLICY, |c| {
        c.events.secret = Some(secrecy::SecretString::from("fuzz-hook-secret"));
    })
    .await;
    let store = e.app.store().await;
    for body in draw(json_bytes(okta_delivery())) {
        n.fetch_add(1, Ordering::Relaxed);
        let before = okta_events(&store).await;
        let r = e
            .app
            .http
            .post(e.app.url("/hooks/okta"))
            .header("authorization", "fuzz-hook-secret")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let s = r.status();
        let shown = String::from_utf8_lossy(&body).to_string();
        assert!(!s.is_server_error(), "{s} for {shown}");
        if s.is_client_error() {
            assert_eq!(
                okta_events(&store).await,
                before,
                "{s} changed the inbox: {shown}"
            );
        }
    }
    report("okta hook deliveries (through /hooks/okta)", &n);
}

// --- Standard Webhooks ---------------------------------------------------------------------

pub const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        text(),
        any::<i64>().prop_map(|n| n.to_string()),
        Just(" 1700000000 ".to_string()),
        "(v1,[A-Za-z0-9+/=]{0,60} ?){0,3}",
        "v[0-9],.{0,20}",
    ]
}

#[test]
fn standard_webhooks_headers_never_panic() {
    static N: AtomicU64 = AtomicU64::new(0);
    let secret = jit_broker::webhooks::WebhookSecret::parse(WHSEC).unwrap();
    let now = chrono::Utc::now().timestamp();
    // What the first run found: the extreme timestamps overflowed `now - ts` (a 500).
    for ts in [i64::MIN, i64::MAX] {
        let ts = ts.to_string();
        let h = jit_broker::webhooks::Signed {
            id: "msg_1",
            timestamp: &ts,
            signatures: "v1,AAAA",
        };
        assert_eq!(
            jit_broker::webhooks::verify(&[&secret], h, b"{}", now, 300),
            Err(jit_broker::webhooks::VerifyError::Timestamp)
        );
    }
    runner()
        .run(
            &(
                header_text(),
                header_text(),
                header_text(),
                any::<Vec<u8>>(),
                any::<bool>(),
            ),
            |(id, ts, sigs, body, sign)| {
                N.fetch_add(1, Ordering::Relaxed);
                // Half of the cases carry a real signature over the generated parts.
                let sigs = match (sign, ts.trim().parse::<i64>()) {
                    (true, Ok(t)) => format!("{sigs} {}", secret.sign(&id, t, &body)),
                    _ => sigs,
                };
                let h = jit_broker::webhooks::Signed {
                    id: &id,
                    timestamp: &ts,
                    signatures: &sigs,
                };
                let _ = jit_broker::webhooks::verify(&[&secret], h, &body, now, 300);
                let _ = jit_broker::webhooks::WebhookSecret::parse(&id);
                Ok(())
            },
        )
        .unwrap();
    report("standard webhooks (verify)", &N);
}

// --- Policy file -----------------------------------------------------------------------------

const POLICY_SAMPLE: &str = r#"
[[resource]]
name = "prod-admins"
kind = "okta_group"
okta_id = "00g1prodadmins000001"
description = "Administer production"
default_duration = "1h"
max_duration = "4h"
require_reason = true
ticket_pattern = "^INC-[0-9]+$"
approvers = { users = ["bob@example.com"], groups = ["00g1dbowners00000002"] }
requesters = { groups = ["00g1engineering00004"] }
approval_step_up = "10m"
break_glass = true

[[resource]]
name = "payroll"
kind = "okta_app"
okta_id = "0oa1payroll000000001"
default_duration = "30m"
max_duration = "2h"
approvals_required = 2
"#;

/// A TOML value of any kind, as text.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        text().prop_map(|s| toml::Value::String(s).to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        prop::collection::vec(text(), 0..3)
            .prop_map(|v| toml::Value::try_from(v).unwrap().to_string()),
        Just("{ users = [\"x\"] }".to_string()),
        Just("\"0s\"".to_string()),
        Just("\"9999999999999h\"".to_string()),
        ".{0,12}",
    ]
}

#[test]
fn policy_files_never_panic() {
    static N: AtomicU64 = AtomicU64::new(0);
    let lines: Vec<String> = POLICY_SAMPLE.lines().map(str::to_string).collect();
    let edited = prop::collection::vec((0..lines.len(), toml_value(), any::<bool>()), 1..5)
        .prop_map(move |edits| {
            let mut l = lines.clone();
            for (i, v, drop) in edits {
                if drop {
                    l[i].clear();
                } else if let Some((k, _)) = l[i].split_once(" = ") {
                    l[i] = format!("{k} = {v}");
                }
            }
            l.join("\n")
        });
    let input = prop_oneof![3 => edited, 1 => ".{0,200}"];
    runner()
        .run(&input, |text| {
            N.fetch_add(1, Ordering::Relaxed);
            match jit_broker::policy::Policy::parse(&text) {
                Ok(p) => {
                    for r in &p.resources {
                        prop_assert!(!r.name.is_empty());
                        prop_assert!(r.default_duration <= r.max_duration);
                    }
                }
                Err(errors) => prop_assert!(!errors.is_empty()),
            }
            Ok(())
        })
        .unwrap();
    report("policy file (parse)", &N);
}

// --- Config values ---------------------------------------------------------------------------

/// Every environment variable of the configuration: each key of the defaults, and the keys
/// that have no default (secrets and their files).
fn env_keys() -> Vec<(String, bool)> {
    let defaults: toml::Table = jit_broker::config::DEFAULT_TOML.parse().unwrap();
    let mut keys = Vec::new();
    for (section, table) in &defaults {
        if let Some(t) = table.as_table() {
            for k in t.keys() {
                keys.push(format!("{section}.{k}"));
            }
        }
    }
    for k in [
        "database.password",
        "database.password_file",
        "okta.api_token",
        "okta.private_key",
        "console.client_secret",
        "events.secret",
        "events.previous_secret",
        "slack.bot_token",
        "slack.signing_secrets_file",
        "policy.file",
    ] {
        keys.push(k.to_string());
    }
    keys.into_iter()
        .map(|k| {
            let path: Vec<String> = k.split('.').map(str::to_string).collect();
            let secret = jit_broker::redact::is_secret_key(&path) && !k.ends_with("_file");
            (
                format!("JIT_{}", k.replace('.', "__").to_ascii_uppercase()),
                secret,
            )
        })
        .collect()
}

const CONFIG_MARKER: &str = "Qx9CONFIGMARKER";

#[test]
fn config_values_never_panic_nor_print_a_secret() {
    static N: AtomicU64 = AtomicU64::new(0);
    let keys = env_keys();
    let value = prop_oneof![
        text(),
        toml_value(),
        "\\[\\{name = \"[a-z]{1,8}\", (url|secret) = \".{0,12}\"\\}\\]?",
    ]
    .prop_map(|v| format!("{v}{CONFIG_MARKER}"));
    let var = (prop::sample::select(keys), value);
    runner()
        .run(&prop::collection::vec(var, 1..4), |vars| {
            N.fetch_add(1, Ordering::Relaxed);
            let env: Vec<(String, String)> = vars
                .iter()
                .map(|((k, _), v)| (k.clone(), v.clone()))
                .collect();
            if let Err(errors) = Config::load_with_env(None, env) {
                let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                prop_assert!(!text.is_empty());
                // Only secret-bearing keys were given a marked value that must not show; a
                // non-secret value may be quoted (it helps), but then no secret key may share it.
                let secrets_only = vars.iter().all(|((_, secret), _)| *secret);
                if secrets_only {
                    for t in &text {
                        prop_assert!(!t.contains(CONFIG_MARKER), "{t}");
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    report("config values (load)", &N);
}
