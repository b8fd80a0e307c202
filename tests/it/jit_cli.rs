//! `jit`, the terminal client, as a person runs it: the built binary against the real broker and
//! okta-sim. Device login (the code read from its output and approved in okta-sim as the person
//! would in a browser), resources, a request that waits and is approved by another person through
//! their own `jit`, `--json` parsed, the sign-in refreshed when the access token has expired or
//! is refused, and the exit codes of a broker that is down, no sign-in, bad input.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use okta_sim::authz::DeviceDecision;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::*;

both_backends!(
    login_request_wait_and_approve_as_another_person,
    an_expired_or_refused_access_token_is_refreshed,
);

/// The `jit` binary with a clean environment, its sign-in kept in `home`.
fn jit(home: &Path, broker: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jit"));
    c.env_clear()
        .env("JIT_CONFIG_DIR", home)
        .env("JIT_BROKER_URL", broker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Runs `jit --json ARGS`: exit code and stdout parsed.
async fn run(home: &Path, broker: &str, args: &[&str]) -> (i32, Value) {
    let out = jit(home, broker)
        .arg("--json")
        .args(args)
        .output()
        .await
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "jit {args:?} printed no JSON (exit {code}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, v)
}

async fn env(db: Db) -> Env {
    EnvBuilder::new(db, REQUESTS_POLICY)
        .sim(|s| s.auth_servers[0].device_poll_interval = Duration::from_secs(1))
        .okta_tokens()
        .tweak(|c| c.access_tokens.clock_skew = Duration::ZERO)
        .start()
        .await
}

/// `jit login` as `login`: reads the code from its output, approves it in okta-sim.
async fn login(e: &Env, home: &Path, login: &str) {
    let mut child = jit(home, &e.app.base)
        .args(["--json", "login"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let code = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(c) = l.strip_prefix("and enter the code: ") {
                return c.trim().to_string();
            }
        }
        panic!("jit login printed no code");
    })
    .await
    .unwrap();
    e.sim
        .decide_device(&code, login, DeviceDecision::Approve)
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "jit login failed");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["login"], login, "{v}");
}

async fn login_request_wait_and_approve_as_another_person(db: Db) {
    let e = env(db).await;
    let (alice, bob) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    login(&e, alice.path(), "alice@example.com").await;
    // The sign-in is stored for the person alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(alice.path().join("credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "credentials file mode {mode:o}");
    }
    let stored = std::fs::read_to_string(alice.path().join("credentials.json")).unwrap();
    assert!(stored.contains("refresh_token"));
    let (code, r) = run(alice.path(), &e.app.base, &["resources"]).await;
    assert_eq!(code, 0, "{r}");
    assert!(
        r["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "prod-admins"),
        "{r}"
    );
    // Alice asks and waits; Bob approves through his own jit; Alice's jit prints the grant.
    let waiting = jit(alice.path(), &e.app.base)
        .args([
            "--json",
            "request",
            "prod-admins",
            "1h",
            "--reason",
            "deploy",
            "--poll-interval",
            "100ms",
        ])
        .spawn()
        .unwrap();
    login(&e, bob.path(), "bob@example.com").await;
    // Bob's inbox shows it once Alice's jit has made it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let id = loop {
        let (code, v) = run(bob.path(), &e.app.base, &["approvals"]).await;
        assert_eq!(code, 0, "{v}");
        if let Some(found) = v["requests"][0]["id"].as_str() {
            break found.to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "no request: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (code, v) = run(
        bob.path(),
        &e.app.base,
        &["approve", &id, "--comment", "ok"],
    )
    .await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["state"], "approved", "{v}");
    let out = tokio::time::timeout(Duration::from_secs(20), waiting.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["id"], id.as_str(), "{done}");
    assert_eq!(done["grant"]["state"], "active", "{done}");
    assert!(e.sim.is_member(PROD_ADMINS, ALICE));
    let grant = done["grant"]["id"].as_str().unwrap().to_string();
    let (code, v) = run(alice.path(), &e.app.base, &["access"]).await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["grants"][0]["id"], grant.as_str(), "{v}");
    // The decision is Bob's, through the API.
    let r = e.show(&id).await;
    assert_eq!(r["decisions"][0]["approver"], "bob@example.com", "{r}");
    assert_eq!(r["decisions"][0]["channel"], "api", "{r}");
    // Alice cannot approve Bob's way in: deny of a decided request is refused (exit 6), and an
    // id that is not one is refused before anything is sent (exit 6).
    let (code, v) = run(alice.path(), &e.app.base, &["deny", &id]).await;
    assert_ne!(code, 0, "{v}");
    assert!(v["error"]["code"].is_string(), "{v}");
    let (code, v) = run(alice.path(), &e.app.base, &["approve", "../../v1/grants"]).await;
    assert_eq!(code, 6, "{v}");
    assert_eq!(v["error"]["code"], "invalid_argument", "{v}");
    // She ends her grant.
    let (code, v) = run(alice.path(), &e.app.base, &["end", &grant]).await;
    assert_eq!(code, 0, "{v}");
    assert!(
        matches!(v["state"].as_str(), Some("revoked" | "revoking")),
        "{v}"
    );
    // A request the policy grants at once returns at once with the grant (Carol is on call).
    let carol = tempfile::tempdir().unwrap();
    login(&e, carol.path(), "carol@example.com").await;
    let (code, v) = run(
        carol.path(),
        &e.app.base,
        &["request", "prod-admins", "30m", "--reason", "pager"],
    )
    .await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["grant"]["state"], "active", "{v}");
    e.audit_ok().await;
}

async fn an_expired_or_refused_access_token_is_refreshed(db: Db) {
    let e = env(db).await;
    let home = tempfile::tempdir().unwrap();
    login(&e, home.path(), "alice@example.com").await;
    let file = home.path().join("credentials.json");
    let read = || serde_json::from_str::<Value>(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let first = read();
    // Expired by the clock: refreshed before the call, the rotated refresh token stored.
    let mut c = first.clone();
    c["access_expires_at"] = 0.into();
    std::fs::write(&file, c.to_string()).unwrap();
    let (code, v) = run(home.path(), &e.app.base, &["access"]).await;
    assert_eq!(code, 0, "{v}");
    let second = read();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    // Refused by the broker (here: a token signed by no one): one refresh, one retry.
    let mut c = second.clone();
    c["access_token"] = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".into();
    std::fs::write(&file, c.to_string()).unwrap();
    let (code, v) = run(home.path(), &e.app.base, &["access"]).await;
    assert_eq!(code, 0, "{v}");
    let third = read();
    assert_ne!(third["refresh_token"], second["refresh_token"]);
    // A refresh token Okta no longer honours (rotated away): sign in again, exit 3.
    let mut c = third.clone();
    c["refresh_token"] = first["refresh_token"].clone();
    c["access_expires_at"] = 0.into();
    std::fs::write(&file, c.to_string()).unwrap();
    let (code, v) = run(home.path(), &e.app.base, &["access"]).await;
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["error"]["code"], "not_signed_in", "{v}");
}

/// No sign-in, a broker that is down, a bad command line: each its own exit code and message;
/// completions print.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_for_no_sign_in_a_broker_down_and_bad_usage() {
    let home = tempfile::tempdir().unwrap();
    let (code, v) = run(home.path(), "http://127.0.0.1:9", &["access"]).await;
    assert_eq!(code, 3, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("jit login"),
        "{v}"
    );
    // A stored sign-in whose broker is not listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let creds = serde_json::json!({
        "broker": down, "issuer": down, "token_endpoint": format!("{down}/token"),
        "client_id": "jit-cli", "refresh_token": "r", "access_token": "a",
        "access_expires_at": 4_000_000_000i64, "login": "alice@example.com",
    });
    std::fs::write(home.path().join("credentials.json"), creds.to_string()).unwrap();
    let out = jit(home.path(), &down)
        .arg("access")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the broker"), "{err}");
    assert!(!err.contains("access_token"), "{err}");
    // Another broker named on the command line or in the environment never gets the stored
    // bearer: the sign-in belongs to the broker it was made for.
    let (code, v) = run(home.path(), "http://127.0.0.1:9", &["access"]).await;
    assert_eq!(code, 3, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("signed in to") && msg.contains("jit login"),
        "{v}"
    );
    // Usage errors are clap's exit code 2; completions are printed for a shell.
    let out = jit(home.path(), &down)
        .args(["request"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = jit(home.path(), &down)
        .args(["completions", "bash"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("approvals"));
}
