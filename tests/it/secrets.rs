//! Secrets are never printed: a malformed value for every secret-bearing key (from the
//! environment and from a config file) is reported by `check-config` and `serve` with its key
//! and what is wrong, and the value (a unique marker) appears nowhere in their output. An
//! outbound endpoint's URL (which may carry a credential) stays out of delivery errors.

use std::io::Write;

use crate::helpers::*;

const MARKER: &str = "Zq7MARKERsecret9x";
/// A `whsec_` secret that is not base64, and one whose key is too short: both carry the marker.
const BAD_WHSEC: &str = "whsec_Zq7MARKERsecret9x!!";

/// One malformed configuration: environment variables and an optional file.
struct Case {
    what: &'static str,
    env: Vec<(&'static str, String)>,
    file: Option<String>,
}

fn env_case(what: &'static str, key: &'static str, value: String) -> Case {
    Case {
        what,
        env: vec![(key, value)],
        file: None,
    }
}

fn file_case(what: &'static str, text: String) -> Case {
    Case {
        what,
        env: Vec::new(),
        file: Some(text),
    }
}

/// Every secret-bearing key, each with values malformed in every way its type allows.
fn cases() -> Vec<Case> {
    let m = MARKER;
    let mut c = vec![
        // Slack signing secrets: a list of strings.
        env_case("signing secrets not a list", "JIT_SLACK__SIGNING_SECRETS", m.to_string()),
        env_case("signing secrets broken TOML", "JIT_SLACK__SIGNING_SECRETS", format!("[\"{m}\"")),
        env_case("signing secrets unquoted", "JIT_SLACK__SIGNING_SECRETS", format!("[{m}]")),
        env_case("signing secrets as a table", "JIT_SLACK__SIGNING_SECRETS", format!("{{ a = \"{m}\" }}")),
        Case {
            what: "signing secrets without a bot token",
            env: vec![("JIT_SLACK__SIGNING_SECRETS", format!("[\"{m}\"]"))],
            file: None,
        },
        // Callbacks and outbound endpoints: lists of tables with an inline `whsec_…`.
        env_case("integrations broken TOML", "JIT_CALLBACKS__INTEGRATIONS", format!("[{{name = \"x\", secret = \"whsec_{m}\"")),
        env_case("integrations not base64", "JIT_CALLBACKS__INTEGRATIONS", format!("[{{name = \"x\", secret = \"{BAD_WHSEC}\"}}]")),
        env_case("integrations without whsec_", "JIT_CALLBACKS__INTEGRATIONS", format!("[{{name = \"x\", secret = \"{m}\"}}]")),
        env_case("integrations as a table", "JIT_CALLBACKS__INTEGRATIONS", format!("{{name = \"x\", secret = \"whsec_{m}\"}}")),
        env_case("integrations secret as a list", "JIT_CALLBACKS__INTEGRATIONS", format!("[{{name = \"x\", secret = [\"whsec_{m}\"]}}]")),
        env_case("integrations secret as a key", "JIT_CALLBACKS__INTEGRATIONS", format!("[{{name = \"x\", \"whsec_{m}\" = 1}}]")),
        env_case("integrations name the secret", "JIT_CALLBACKS__INTEGRATIONS", format!("[{{name = \"whsec_{m}\", secret = \"whsec_{m}\"}}]")),
        env_case("endpoints broken TOML", "JIT_OUTBOUND__ENDPOINTS", format!("[{{name = \"s\", url = \"https://x.example\", secret = \"whsec_{m}\"")),
        env_case("endpoints not base64", "JIT_OUTBOUND__ENDPOINTS", format!("[{{name = \"s\", url = \"https://x.example\", secret = \"{BAD_WHSEC}\"}}]")),
        env_case("endpoints url with a password, cleartext", "JIT_OUTBOUND__ENDPOINTS", format!("[{{name = \"s\", url = \"http://u:{m}@siem.example/x\", secret = \"whsec_MDEyMzQ1Njc4OWFiY2RlZg==\"}}]")),
        env_case("endpoints url with a password, bad scheme", "JIT_OUTBOUND__ENDPOINTS", format!("[{{name = \"s\", url = \"ftp://u:{m}@siem.example/x\", secret = \"whsec_MDEyMzQ1Njc4OWFiY2RlZg==\"}}]")),
        env_case("endpoints url not a url", "JIT_OUTBOUND__ENDPOINTS", format!("[{{name = \"s\", url = \"{m} x\", secret = \"whsec_MDEyMzQ1Njc4OWFiY2RlZg==\"}}]")),
        env_case("endpoints secret a number", "JIT_OUTBOUND__ENDPOINTS", format!("[{{name = \"s\", url = \"https://x.example\", secret = 1, events = [\"grant.*\"], name2 = \"{m}\"}}]")),
        // API token hashes (not secrets, but a token pasted there must not be printed).
        env_case("auth tokens broken TOML", "JIT_AUTH__TOKENS", format!("[{{name = \"a\", roles = [\"admin\"], sha256 = \"{m}\"")),
        env_case("auth tokens not a hash", "JIT_AUTH__TOKENS", format!("[{{name = \"a\", roles = [\"admin\"], sha256 = \"{m}\"}}]")),
        // URLs that may carry a password.
        env_case("database url with a password", "JIT_DATABASE__URL", format!("mysql://u:{m}@db.example/jit")),
        env_case("redis url with a password", "JIT_REDIS__URL", format!("redis://:{m}@127.0.0.1:notaport")),
        env_case("redis sentinel url with a password", "JIT_REDIS__URL", format!("redis+sentinel://:{m}@127.0.0.1:26379/")),
        // String secrets from the environment: wrong when given twice, or where they cannot be.
        Case {
            what: "database password twice",
            env: vec![
                ("JIT_DATABASE__PASSWORD", m.to_string()),
                ("JIT_DATABASE__PASSWORD_FILE", "/nonexistent".into()),
            ],
            file: None,
        },
        Case {
            what: "okta private key not PEM",
            env: vec![
                ("JIT_OKTA__BASE_URL", "https://example.okta.com".into()),
                ("JIT_OKTA__AUTH", "oauth".into()),
                ("JIT_OKTA__CLIENT_ID", "0oa1".into()),
                ("JIT_OKTA__PRIVATE_KEY", format!("-----BEGIN RSA PRIVATE KEY-----\n{m}\n-----END RSA PRIVATE KEY-----")),
            ],
            file: None,
        },
    ];
    // Every string secret, from a config file: as the wrong type, and in broken TOML.
    for (section, key) in [
        ("slack", "bot_token"),
        ("okta", "api_token"),
        ("okta", "private_key"),
        ("console", "client_secret"),
        ("events", "secret"),
        ("events", "previous_secret"),
        ("database", "password"),
    ] {
        c.push(file_case(
            "a secret as a list",
            format!("[{section}]\n{key} = [\"{m}\"]\n"),
        ));
        c.push(file_case(
            "a secret as a table",
            format!("[{section}]\n{key} = {{ v = \"{m}\" }}\n"),
        ));
        c.push(file_case(
            "a secret in broken TOML",
            format!("[{section}]\n{key} = \"{m}\n"),
        ));
        c.push(file_case(
            "a secret unquoted",
            format!("[{section}]\n{key} = {m}\n"),
        ));
        c.push(file_case(
            "a secret twice",
            format!("[{section}]\n{key} = \"{m}\"\n{key} = \"{m}\"\n"),
        ));
    }
    c.push(file_case(
        "integrations in a file, broken",
        format!("[callbacks]\nintegrations = [{{name = \"x\", secret = \"whsec_{m}\" }}\n"),
    ));
    c.push(file_case(
        "signing secrets in a file, not a list",
        format!("[slack]\nsigning_secrets = \"{m}\"\n"),
    ));
    c
}

fn run(case: &Case, verb: &str, dir: &std::path::Path) -> std::process::Output {
    let mut cmd = broker_cmd();
    // A database and a Redis prefix of its own, should the configuration pass.
    cmd.env(
        "JIT_DATABASE__URL",
        format!("sqlite://{}", dir.join("jit.db").display()),
    )
    .env("JIT_REDIS__KEY_PREFIX", unique_prefix())
    .env("JIT_SERVER__LISTEN", "127.0.0.1:0")
    .env("RUST_LOG", "debug");
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    if let Some(text) = &case.file {
        let path = dir.join("config.toml");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        cmd.args(["--config", path.to_str().unwrap()]);
    }
    cmd.arg(verb);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Every case is invalid, so `serve` exits at once; one that started would be killed here
    // (and then fail the exit-code check below).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn no_malformed_secret_is_ever_printed() {
    let cases = cases();
    for case in &cases {
        for verb in ["check-config", "serve"] {
            let dir = tempfile::tempdir().unwrap();
            let out = run(case, verb, dir.path());
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                !text.contains("MARKER"),
                "{verb}, {}: the value was printed:\n{text}",
                case.what
            );
            let code = if verb == "check-config" { 1 } else { 2 };
            assert_eq!(
                out.status.code(),
                Some(code),
                "{verb}, {}: {text}",
                case.what
            );
            // Each says which key is wrong.
            assert!(
                text.contains('`') || text.contains("not valid TOML at line"),
                "{verb}, {}: no key or place named: {text}",
                case.what
            );
        }
    }
    eprintln!("{} malformed configurations, none printed", cases.len());
}

/// A delivery to an endpoint whose URL carries a credential fails without that URL in its
/// error (which becomes the delivery's `last_error`, a log line and the dead-letter page).
#[tokio::test]
async fn delivery_errors_leave_the_url_out() {
    use jit_broker::notify::Deliverer;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg: jit_broker::outbox::webhook::EndpointConfig = toml::from_str(&format!(
        "name = \"siem\"\nurl = \"http://user:{MARKER}@127.0.0.1:{port}/hook?token={MARKER}\"\n"
    ))
    .unwrap();
    let ep = jit_broker::outbox::webhook::WebhookEndpoint::new(
        &cfg,
        &secrecy::SecretString::from("whsec_MDEyMzQ1Njc4OWFiY2RlZg=="),
        std::time::Duration::from_secs(2),
        jit_broker::clock::Clock::system(),
    )
    .unwrap();
    let n = jit_broker::notify::Notification {
        id: uuid::Uuid::now_v7().to_string(),
        kind: "grant.created".into(),
        request_id: None,
        grant_id: None,
        audit_seq: None,
        payload: serde_json::json!({}),
        created_at: chrono::Utc::now().timestamp_millis(),
    };
    let err = ep.deliver(&n).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("cannot reach the endpoint"), "{text}");
    assert!(
        !text.contains(MARKER) && !text.contains("127.0.0.1"),
        "{text}"
    );
}
