//! Configuration: layering, environment overrides, secrets from files, and errors that name the
//! key; `check-config` and `migrate` exit codes through the real binary.

use std::io::Write;
use std::time::Duration;

use jit_broker::config::ConfigError;
use jit_broker::Config;
use secrecy::ExposeSecret;

use crate::helpers::*;

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn errors(file: Option<&std::path::Path>, vars: &[(&str, &str)]) -> String {
    match Config::load_with_env(file, env(vars)) {
        Ok(_) => panic!("expected an invalid configuration"),
        Err(errs) => errs
            .iter()
            .map(ConfigError::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn file_then_env_override_defaults() {
    let f = file("[server]\nlisten = \"127.0.0.1:9999\"\n[database]\nmax_connections = 3\n");
    let c = Config::load_with_env(Some(f.path()), Vec::new()).unwrap();
    assert_eq!(c.server.listen.port(), 9999);
    assert_eq!(c.database.max_connections, 3);
    assert_eq!(c.redis.key_prefix, "jit");

    let c = Config::load_with_env(
        Some(f.path()),
        env(&[
            ("JIT_DATABASE__MAX_CONNECTIONS", "7"),
            ("JIT_SERVER__SHUTDOWN_GRACE", "3s"),
            ("JIT_DATABASE__MIGRATE_ON_START", "false"),
            // A numeric-looking value for a string key stays a string.
            ("JIT_REDIS__KEY_PREFIX", "123"),
            ("JIT_DATABASE__PASSWORD", "0042"),
            // Not ours: ignored.
            ("PATH", "/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(c.database.max_connections, 7);
    assert_eq!(c.server.shutdown_grace.as_secs(), 3);
    assert!(!c.database.migrate_on_start);
    assert_eq!(c.redis.key_prefix, "123");
    assert_eq!(c.database.password.unwrap().expose_secret(), "0042");
}

#[test]
fn lists_can_come_from_env() {
    let sha = jit_broker::api::auth::hash_token("t");
    let c = Config::load_with_env(
        None,
        env(&[(
            "JIT_AUTH__TOKENS",
            &format!("[{{name = \"bot\", roles = [\"auditor\"], sha256 = \"{sha}\"}}]"),
        )]),
    )
    .unwrap();
    assert_eq!(c.auth.tokens[0].name, "bot");
}

#[test]
fn missing_file_is_an_error() {
    let e = errors(Some(std::path::Path::new("no-such-config.toml")), &[]);
    assert!(e.contains("no-such-config.toml"), "{e}");
}

#[test]
fn unknown_key_in_file_is_named() {
    let f = file("[database]\nmax_conections = 3\n");
    let e = errors(Some(f.path()), &[]);
    assert!(e.contains("`database.max_conections`: unknown key"), "{e}");
    assert!(e.contains("max_connections"), "lists the valid keys: {e}");
    let f = file("[bogus]\nx = 1\n");
    let e = errors(Some(f.path()), &[]);
    assert!(e.contains("`bogus`: unknown key"), "{e}");
}

#[test]
fn unknown_key_in_env_is_named() {
    let e = errors(None, &[("JIT_REDIS__URLX", "redis://x")]);
    assert!(e.contains("`redis.urlx`: unknown key"), "{e}");
    assert!(e.contains("JIT_REDIS__URLX"), "{e}");
    // A single underscore where `__` belongs.
    let e = errors(None, &[("JIT_REDIS_URL", "redis://x")]);
    assert!(e.contains("JIT_REDIS_URL"), "{e}");
}

#[test]
fn bad_values_name_the_key_and_what_is_expected() {
    let f = file("[database]\nmax_connections = \"x\"\n");
    let e = errors(Some(f.path()), &[]);
    assert!(e.contains("`database.max_connections`"), "{e}");
    assert!(e.contains("expected a whole number"), "{e}");

    let e = errors(None, &[("JIT_SERVER__REQUEST_TIMEOUT", "3 parsecs")]);
    assert!(e.contains("`server.request_timeout`"), "{e}");
    assert!(e.contains("expected a duration"), "{e}");
    assert!(e.contains("JIT_SERVER__REQUEST_TIMEOUT"), "{e}");

    let e = errors(None, &[("JIT_LOG__FORMAT", "xml")]);
    assert!(e.contains("`log.format`") && e.contains("json"), "{e}");

    let e = errors(None, &[("JIT_SERVER__LISTEN", "localhost")]);
    assert!(
        e.contains("`server.listen`") && e.contains("socket address"),
        "{e}"
    );

    // Checks serde cannot express are collected together.
    let e = errors(
        None,
        &[
            ("JIT_DATABASE__URL", "mysql://x"),
            ("JIT_REDIS__KEY_PREFIX", "a b"),
            ("JIT_SERVER__BODY_LIMIT_BYTES", "10"),
        ],
    );
    for key in [
        "database.url",
        "redis.key_prefix",
        "server.body_limit_bytes",
    ] {
        assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
    }
}

#[test]
fn events_retention_is_between_a_day_and_ten_years() {
    for bad in ["1h", "23h 59m", "11years", "0s"] {
        let e = errors(None, &[("JIT_EVENTS__RETENTION", bad)]);
        assert!(
            e.contains("`events.retention`") && e.contains("between 1d and 10 years"),
            "{bad}: {e}"
        );
    }
    let e = errors(None, &[("JIT_EVENTS__RETENTION", "forever")]);
    assert!(
        e.contains("`events.retention`") && e.contains("expected a duration"),
        "{e}"
    );
    // `1d` is the floor, and it holds only with a window that fits in it (`max_age + max_skew`).
    let c = Config::load_with_env(
        None,
        env(&[
            ("JIT_EVENTS__RETENTION", "1d"),
            ("JIT_EVENTS__MAX_AGE", "23h"),
        ]),
    )
    .unwrap();
    assert_eq!(c.events.retention.as_secs(), 86_400);
    for good in ["2d", "30d", "365d"] {
        let c = Config::load_with_env(None, env(&[("JIT_EVENTS__RETENTION", good)])).unwrap();
        assert_eq!(
            c.events.retention,
            humantime::parse_duration(good).unwrap(),
            "{good}"
        );
    }
}

/// `events.max_age` (at least 1m, with `max_skew` at most `events.retention`, so a replay after retention is
/// outside the window) and `events.max_skew` (at most 1h); defaults 24h and 5m.
#[test]
fn events_freshness_window_is_checked() {
    let c = Config::load_with_env(None, Vec::new()).unwrap();
    assert_eq!(c.events.max_age, std::time::Duration::from_secs(86_400));
    assert_eq!(c.events.max_skew, std::time::Duration::from_secs(300));
    for (vars, key, why) in [
        (
            vec![("JIT_EVENTS__MAX_AGE", "59s")],
            "events.max_age",
            "at least 1m",
        ),
        (
            vec![("JIT_EVENTS__MAX_AGE", "31d")],
            "events.max_age",
            "at most events.retention",
        ),
        (
            vec![
                ("JIT_EVENTS__MAX_AGE", "2d"),
                ("JIT_EVENTS__RETENTION", "1d"),
            ],
            "events.max_age",
            "at most events.retention",
        ),
        (
            // Together with the skew a future-dated replay would outlive its duplicate row.
            vec![
                ("JIT_EVENTS__MAX_AGE", "1d"),
                ("JIT_EVENTS__RETENTION", "1d"),
            ],
            "events.max_age",
            "with events.max_skew at most events.retention",
        ),
        (
            vec![("JIT_EVENTS__MAX_AGE", "a while")],
            "events.max_age",
            "expected a duration",
        ),
        (
            vec![("JIT_EVENTS__MAX_SKEW", "2h")],
            "events.max_skew",
            "at most 1h",
        ),
        (
            vec![("JIT_EVENTS__MAX_SKEW", "-5m")],
            "events.max_skew",
            "expected a duration",
        ),
    ] {
        let e = errors(None, &vars);
        assert!(
            e.contains(&format!("`{key}`")) && e.contains(why),
            "{vars:?}: {e}"
        );
    }
    let c = Config::load_with_env(
        None,
        env(&[
            ("JIT_EVENTS__MAX_AGE", "1h"),
            ("JIT_EVENTS__MAX_SKEW", "0s"),
        ]),
    )
    .unwrap();
    assert_eq!(c.events.max_age, std::time::Duration::from_secs(3600));
    assert!(c.events.max_skew.is_zero());
}

/// `server.metrics_listen`: a socket address other than `server.listen`.
#[test]
fn metrics_listen_is_checked() {
    let c = Config::load_with_env(None, Vec::new()).unwrap();
    assert_eq!(c.server.metrics_listen, None);
    let e = errors(None, &[("JIT_SERVER__METRICS_LISTEN", "metrics-host")]);
    assert!(
        e.contains("`server.metrics_listen`") && e.contains("socket address"),
        "{e}"
    );
    let e = errors(
        None,
        &[
            ("JIT_SERVER__LISTEN", "127.0.0.1:8080"),
            ("JIT_SERVER__METRICS_LISTEN", "127.0.0.1:8080"),
        ],
    );
    assert!(
        e.contains("`server.metrics_listen`") && e.contains("must differ"),
        "{e}"
    );
    let c = Config::load_with_env(
        None,
        env(&[("JIT_SERVER__METRICS_LISTEN", "127.0.0.1:9090")]),
    )
    .unwrap();
    assert_eq!(
        c.server.metrics_listen,
        Some("127.0.0.1:9090".parse().unwrap())
    );
}

#[test]
fn secret_from_file() {
    let secret = file("s3cr3t-from-file\n");
    let f = file(&format!(
        "[database]\npassword_file = \"{}\"\n",
        secret.path().display()
    ));
    let c = Config::load_with_env(Some(f.path()), Vec::new()).unwrap();
    assert_eq!(
        c.database.password.as_ref().unwrap().expose_secret(),
        "s3cr3t-from-file"
    );
    // Never in Debug output.
    assert!(!format!("{c:?}").contains("s3cr3t-from-file"));

    // Both forms at once: ambiguous.
    let e = errors(
        Some(f.path()),
        &[("JIT_DATABASE__PASSWORD", "s3cr3t-from-env")],
    );
    assert!(e.contains("`database.password`"), "{e}");
    assert!(!e.contains("s3cr3t"), "secret leaked into the error: {e}");

    let e = errors(
        None,
        &[("JIT_DATABASE__PASSWORD_FILE", "no-such-secret-file")],
    );
    assert!(
        e.contains("`database.password`") && e.contains("no-such-secret-file"),
        "{e}"
    );
}

#[test]
fn check_config_exit_codes() {
    let out = broker_cmd().arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let f = file("[database]\nmax_connections = \"x\"\npassword = \"hunter2-secret\"\n");
    let out = broker_cmd()
        .args(["--config", f.path().to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`database.max_connections`"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let out = broker_cmd()
        .env("JIT_CONFIG", "no-such-config.toml")
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    let out = broker_cmd()
        .env("JIT_REDIS__URLX", "x")
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("JIT_REDIS__URLX"));

    // Other verbs refuse to start on a bad configuration (exit 2).
    let out = broker_cmd()
        .env("JIT_REDIS__URLX", "x")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn help_names_every_flags_env_var() {
    for args in [
        vec!["--help"],
        vec!["audit", "export", "--help"],
        vec!["healthcheck", "--help"],
    ] {
        let out = broker_cmd().args(&args).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for line in help.lines().filter(|l| l.trim_start().starts_with("--")) {
            if line.contains("--help") || line.contains("--version") {
                continue;
            }
            assert!(line.contains("[env: JIT_"), "{args:?}: {line}");
        }
    }
    let out = broker_cmd().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("jit-broker "));
}

/// Replicas starting together on one fresh database: four `jit-broker migrate` processes and
/// an in-process migrate at once all succeed (sqlx holds an advisory lock on PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_on_postgres() {
    let db = TestDb::new(Db::Postgres).await;
    let children: Vec<std::process::Child> = (0..4)
        .map(|_| {
            broker_cmd()
                .env("JIT_DATABASE__URL", &db.url)
                .arg("migrate")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let store = jit_broker::store::Store::connect(&base_config(&db).database)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for out in outputs {
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    // The schema is there once and usable.
    assert!(jit_broker::audit::verify(&store).await.unwrap().ok());
}

#[test]
fn hash_token_prints_the_sha256() {
    use std::io::Write as _;
    let mut child = broker_cmd()
        .arg("hash-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"my-token\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        jit_broker::api::auth::hash_token("my-token")
    );
}

#[test]
fn reviews_remind_before_is_a_duration_of_at_most_90_days() {
    let c = Config::load_with_env(None, Vec::new()).unwrap();
    assert_eq!(
        c.reviews.remind_before,
        std::time::Duration::from_secs(2 * 24 * 3600)
    );
    let e = errors(None, &[("JIT_REVIEWS__REMIND_BEFORE", "soon")]);
    assert!(e.contains("`reviews.remind_before`"), "{e}");
    assert!(e.contains("expected a duration"), "{e}");
    let e = errors(None, &[("JIT_REVIEWS__REMIND_BEFORE", "91d")]);
    assert!(
        e.contains("`reviews.remind_before`") && e.contains("at most 90 days"),
        "{e}"
    );
    let c = Config::load_with_env(None, env(&[("JIT_REVIEWS__REMIND_BEFORE", "0s")])).unwrap();
    assert!(c.reviews.remind_before.is_zero());
}

/// The example configs' `REPLACE_ME` values are named as placeholders, each by its key, and the
/// default OAuth scopes cover every feature (session ending and the event hook verbs included).
#[test]
fn placeholders_are_named_and_default_scopes_cover_every_feature() {
    let e = errors(
        None,
        &[
            ("JIT_OKTA__BASE_URL", "https://REPLACE_ME.okta.com"),
            ("JIT_OKTA__API_TOKEN", "t"),
            ("JIT_CONSOLE__ISSUER", "https://REPLACE_ME.okta.com"),
            ("JIT_CONSOLE__CLIENT_ID", "REPLACE_ME_console_client_id"),
            ("JIT_CONSOLE__CLIENT_SECRET", "s"),
            (
                "JIT_CONSOLE__ADMIN_GROUPS",
                r#"["REPLACE_ME_GROUP_ID_admins"]"#,
            ),
        ],
    );
    for key in [
        "okta.base_url",
        "console.issuer",
        "console.client_id",
        "console.admin_groups",
    ] {
        assert!(
            e.contains(&format!(
                "`{key}`: still the example's `REPLACE_ME` placeholder"
            )),
            "{key}: {e}"
        );
    }
    assert_eq!(e.lines().count(), 4, "{e}");
    let c = Config::load_with_env(None, Vec::new()).unwrap();
    for scope in [
        "okta.users.manage",
        "okta.eventHooks.manage",
        "okta.groups.manage",
        "okta.apps.manage",
        "okta.roles.manage",
        "okta.roles.read",
    ] {
        assert!(c.okta.scopes.iter().any(|s| s == scope), "{scope}");
    }
}

#[test]
fn access_tokens_need_an_https_issuer_an_audience_and_sane_intervals() {
    // Off by default: nothing to check.
    let c = Config::load_with_env(None, Vec::new()).unwrap();
    assert!(!c.access_tokens.is_enabled());
    let e = errors(
        None,
        &[(
            "JIT_ACCESS_TOKENS__ISSUER",
            "http://example.okta.com/oauth2/default",
        )],
    );
    assert!(e.contains("`access_tokens.issuer`"), "{e}");
    assert!(e.contains("`access_tokens.audience`"), "{e}");
    let e = errors(
        None,
        &[
            (
                "JIT_ACCESS_TOKENS__ISSUER",
                "https://example.okta.com/oauth2/default",
            ),
            ("JIT_ACCESS_TOKENS__AUDIENCE", "api://jit-broker"),
            ("JIT_ACCESS_TOKENS__JWKS_REFRESH_MIN_INTERVAL", "0s"),
            ("JIT_ACCESS_TOKENS__CLOCK_SKEW", "1h"),
        ],
    );
    assert!(
        e.contains("`access_tokens.jwks_refresh_min_interval`"),
        "{e}"
    );
    assert!(e.contains("`access_tokens.clock_skew`"), "{e}");
    // The person behind a token is read from Okta: access tokens need `[okta]`; a person cache
    // longer than 10 minutes is refused.
    let e = errors(
        None,
        &[
            (
                "JIT_ACCESS_TOKENS__ISSUER",
                "https://example.okta.com/oauth2/default",
            ),
            ("JIT_ACCESS_TOKENS__AUDIENCE", "api://jit-broker"),
            ("JIT_ACCESS_TOKENS__PERSON_CACHE_TTL", "1h"),
        ],
    );
    assert!(e.contains("needs [okta] configured"), "{e}");
    assert!(e.contains("`access_tokens.person_cache_ttl`"), "{e}");
    let c = Config::load_with_env(
        None,
        env(&[
            (
                "JIT_ACCESS_TOKENS__ISSUER",
                "https://example.okta.com/oauth2/default",
            ),
            ("JIT_ACCESS_TOKENS__AUDIENCE", "api://jit-broker"),
            ("JIT_OKTA__BASE_URL", "https://example.okta.com"),
            ("JIT_OKTA__API_TOKEN", "t"),
        ]),
    )
    .unwrap();
    assert_eq!(c.access_tokens.person_cache_ttl, Duration::from_secs(60));
    assert_eq!(
        c.access_tokens.jwks_url(),
        "https://example.okta.com/oauth2/default/v1/keys"
    );
}

/// Issue 22: `check-config` stopped at the first problem of the configuration and did not look
/// at the policy file at all while the configuration had one. Now one run lists a bad value in
/// one section, an unknown key in another, a malformed environment variable and the policy
/// file's own problem.
#[test]
fn check_config_lists_every_problem_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[resource]]\nname = \"prod-admins\"\nkind = \"okta_group\"\nokta_id = \"00g1prodadmins000001\"\n\
         default_duration = \"1h\"\nmax_duration = \"10m\"\n\n\
         [[resource]]\nname = \"payroll\"\nkind = \"not_a_kind\"\nokta_id = \"0oa1payroll000000001\"\n",
    )
    .unwrap();
    let f = file(&format!(
        "[server]\nrequest_timeout = \"soon\"\n\n[okta]\nbase_urll = \"https://x\"\n\n\
         [policy]\nfile = \"{}\"\n",
        policy.display()
    ));
    let out = broker_cmd()
        .args(["--config", f.path().to_str().unwrap(), "check-config"])
        .env("JIT_DATABASE__MAX_CONNECTIONS", "many")
        .env("JIT_REDISURL", "redis://x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "`server.request_timeout`",
        "`okta.base_urll`",
        "JIT_REDISURL",
        "database.max_connections",
        "policy has 3 problem(s)",
        "`prod-admins`",
        "`payroll`",
    ] {
        assert!(stderr.contains(expected), "missing {expected}: {stderr}");
    }
}
