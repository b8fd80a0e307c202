//! `jit-broker demo` (cargo feature `demo`, which the README's `cargo test --workspace
//! --all-features` turns on): the binary started as a user would, its printed admin token used to
//! take a grant through it, and the grant seen revoked in the simulated org.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

/// The demo process (killed on drop) and its log, printed when the test fails.
struct Running(Child, std::path::PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- demo log ---\n{}",
                std::fs::read_to_string(&self.1).unwrap_or_default()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_a_grant_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("demo.log");
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_jit-broker"))
            .arg("demo")
            .arg("--dir")
            .arg(dir.path())
            .env_clear()
            .env("JIT_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("JIT_REDIS__URL", redis_url())
            .env("JIT_REDIS__KEY_PREFIX", unique_prefix())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
        log.clone(),
    );
    // The instructions name the token. Standard output is read to its end on a thread of its
    // own, so the demo never writes into a closed pipe.
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(t) = line.strip_prefix("admin token: ") {
                let _ = tx.send(t.to_string());
            }
        }
    });
    let token = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the demo printed no admin token");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    crate::helpers::wait_healthy(&http, &base, Duration::from_secs(60)).await;
    let r = http
        .post(format!("{base}/v1/grants"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({"user": "alice@example.com", "resource": "prod-admins",
                                  "duration": "2s", "reason": "demo test"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let g: serde_json::Value = r.json().await.unwrap();
    let gid = id(&g);
    assert_eq!(g["state"], "active");
    wait_until(Duration::from_secs(30), || async {
        let g: serde_json::Value = http
            .get(format!("{base}/v1/grants/{gid}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        g["state"] == "revoked"
    })
    .await;
    // A wrong token is refused: the demo's only credential is the printed one.
    let r = http
        .get(format!("{base}/v1/grants"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
}

#[test]
fn a_bad_demo_directory_or_setting_is_an_error_that_says_so() {
    let file = tempfile::NamedTempFile::new().unwrap();
    // A directory inside a regular file cannot be created.
    let bad_dir = file.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_jit-broker"))
        .arg("demo")
        .arg("--dir")
        .arg(&bad_dir)
        .env_clear()
        .env("JIT_SERVER__LISTEN", "127.0.0.1:0")
        .env("JIT_REDIS__URL", redis_url())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write the demo files"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_jit-broker"))
        .arg("demo")
        .env_clear()
        .env("JIT_REDIS__URL", "redis+sentinel://127.0.0.1:26379")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("redis.url"), "{err}");
}

/// Issue 22: without Redis the demo printed its guide (whose every command then failed) and
/// only logged a raw connection error. Now it checks Redis first, names the URL and
/// `JIT_REDIS__URL`, and prints no guide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_without_redis_says_where_it_looked_and_how_to_point_it() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_jit-broker"))
            .arg("demo")
            .arg("--dir")
            .arg(dir.path())
            .env_clear()
            .env("JIT_SERVER__LISTEN", "127.0.0.1:0")
            .env("JIT_REDIS__URL", &url)
            .env("JIT_REDIS__CONNECT_TIMEOUT", "2s")
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout} {stderr}");
    assert!(!stdout.contains("admin token"), "{stdout}");
    assert!(stderr.contains(&url), "{stderr}");
    assert!(stderr.contains("JIT_REDIS__URL"), "{stderr}");
}
