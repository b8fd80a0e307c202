//! The `[slack]` section: secrets from the environment or files, several signing secrets,
//! and malformed values refused with an error naming the key.

use std::io::Write;

use jit_broker::config::ConfigError;
use jit_broker::Config;
use secrecy::ExposeSecret;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn errors(pairs: &[(&str, &str)]) -> String {
    match Config::load_with_env(None, vars(pairs)) {
        Ok(_) => panic!("expected an invalid configuration"),
        Err(e) => e
            .iter()
            .map(ConfigError::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn off_by_default_and_on_from_the_environment() {
    let c = Config::load_with_env(None, Vec::new()).unwrap();
    assert!(!c.slack.is_configured());
    let c = Config::load_with_env(
        None,
        vars(&[
            ("JIT_SLACK__BOT_TOKEN", "xoxb-1"),
            ("JIT_SLACK__SIGNING_SECRETS", r#"["new", "old"]"#),
            ("JIT_SLACK__DEFAULT_CHANNEL", "C0APPROVALS"),
            ("JIT_SLACK__MAX_RETRIES", "2"),
        ]),
    )
    .unwrap();
    assert!(c.slack.is_configured());
    assert_eq!(c.slack.signing_secrets.len(), 2);
    assert_eq!(c.slack.signing_secrets[1].expose_secret(), "old");
    assert_eq!(c.slack.max_retries, 2);
    // Secrets never show in Debug.
    let dbg = format!("{:?}", c.slack);
    assert!(!dbg.contains("xoxb-1") && !dbg.contains("\"old\""), "{dbg}");
}

#[test]
fn secrets_from_files() {
    let mut token = tempfile::NamedTempFile::new().unwrap();
    writeln!(token, "xoxb-from-file").unwrap();
    let mut secrets = tempfile::NamedTempFile::new().unwrap();
    writeln!(secrets, "first\n\nsecond").unwrap();
    let c = Config::load_with_env(
        None,
        vars(&[
            ("JIT_SLACK__BOT_TOKEN_FILE", token.path().to_str().unwrap()),
            (
                "JIT_SLACK__SIGNING_SECRETS_FILE",
                secrets.path().to_str().unwrap(),
            ),
        ]),
    )
    .unwrap();
    assert_eq!(c.slack.bot_token.unwrap().expose_secret(), "xoxb-from-file");
    let s: Vec<_> = c
        .slack
        .signing_secrets
        .iter()
        .map(|s| s.expose_secret().to_string())
        .collect();
    assert_eq!(s, vec!["first", "second"]);
    // Both forms at once is ambiguous.
    let e = errors(&[
        ("JIT_SLACK__BOT_TOKEN", "xoxb-1"),
        ("JIT_SLACK__SIGNING_SECRETS", r#"["a"]"#),
        (
            "JIT_SLACK__SIGNING_SECRETS_FILE",
            secrets.path().to_str().unwrap(),
        ),
    ]);
    assert!(e.contains("slack.signing_secrets"), "{e}");
    let empty = tempfile::NamedTempFile::new().unwrap();
    let e = errors(&[
        ("JIT_SLACK__BOT_TOKEN", "xoxb-1"),
        (
            "JIT_SLACK__SIGNING_SECRETS_FILE",
            empty.path().to_str().unwrap(),
        ),
    ]);
    assert!(
        e.contains("slack.signing_secrets") && e.contains("empty"),
        "{e}"
    );
    let e = errors(&[("JIT_SLACK__BOT_TOKEN_FILE", "/nonexistent/slack-token")]);
    assert!(e.contains("slack.bot_token"), "{e}");
}

#[test]
fn malformed_values_name_their_key() {
    let on = [
        ("JIT_SLACK__BOT_TOKEN", "xoxb-1"),
        ("JIT_SLACK__SIGNING_SECRETS", r#"["s"]"#),
    ];
    let cases: &[(&str, &str, &str)] = &[
        (
            "JIT_SLACK__API_BASE_URL",
            "http://slack.example.com/api",
            "slack.api_base_url",
        ),
        ("JIT_SLACK__API_BASE_URL", "not a url", "slack.api_base_url"),
        (
            "JIT_SLACK__DEFAULT_CHANNEL",
            "#approvals",
            "slack.default_channel",
        ),
        ("JIT_SLACK__CONSOLE_URL", "console", "slack.console_url"),
        ("JIT_SLACK__REQUEST_TIMEOUT", "0s", "slack.request_timeout"),
        (
            "JIT_SLACK__REQUEST_TIMEOUT",
            "soon",
            "slack.request_timeout",
        ),
        ("JIT_SLACK__MAX_RETRIES", "50", "slack.max_retries"),
        ("JIT_SLACK__MAX_RETRIES", "many", "slack.max_retries"),
        (
            "JIT_SLACK__CHANNEL_INTERVAL",
            "5m",
            "slack.channel_interval",
        ),
        (
            "JIT_SLACK__SIGNING_SECRETS",
            r#"[""]"#,
            "slack.signing_secrets",
        ),
        ("JIT_SLACK__SURPRISE", "1", "surprise"),
    ];
    for (k, v, key) in cases {
        let mut all = on.to_vec();
        all.retain(|(ok, _)| ok != k);
        all.push((k, v));
        let e = errors(&all);
        assert!(e.contains(key), "{k}={v}: {e}");
    }
    // A token without a signing secret could call Slack but never verify it.
    let e = errors(&[("JIT_SLACK__BOT_TOKEN", "xoxb-1")]);
    assert!(e.contains("slack.bot_token"), "{e}");
    // http:// is fine on loopback (tests, a local fake).
    let mut all = on.to_vec();
    all.push(("JIT_SLACK__API_BASE_URL", "http://127.0.0.1:9/api"));
    Config::load_with_env(None, vars(&all)).unwrap();
}
