//! Okta's official Python management SDK (`okta` 3.x, unmodified) against okta-sim: users,
//! groups, apps, admin roles, event hooks with a live receiver, paging and a 429 the SDK waits
//! out. The checks live in `tests/sdk/okta_sdk_check.py`; this test starts the simulator on
//! port 0, runs the script and fails with its PASS/FAIL lines when any check failed.
//!
//! Skipped (with a message) only when `python3` itself is missing; a missing SDK fails, with the
//! install command (CI installs it in `.ci/run`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use okta_sim::SimConfig;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/okta_sdk_check.py");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_works_against_the_simulator() {
    let sim = okta_sim::spawn(SimConfig::default()).await.unwrap();
    // The SDK reads okta.yaml from the working directory and `~/.okta`, and OKTA_* variables:
    // run it from an empty directory with a clean environment, so only our settings count.
    let dir = std::env::temp_dir().join(format!("okta-sdk-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(SCRIPT)
        .arg(sim.base_url())
        .current_dir(&dir)
        .env("HOME", &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("OKTA_") {
            cmd.env_remove(k);
        }
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: python3 is not installed, so Okta's Python SDK cannot be run");
            sim.shutdown().await;
            return;
        }
        Err(e) => panic!("cannot start python3: {e}"),
    };
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the SDK script did not finish within 5 minutes")
        .unwrap();
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(2),
        "Okta's Python SDK is not installed (pip install 'okta>=3,<4'):\n{stdout}{stderr}"
    );
    assert!(
        out.status.success(),
        "the SDK checks failed:\n{stdout}\n--- stderr ---\n{stderr}"
    );
    for check in [
        "auth header",
        "users",
        "groups",
        "apps",
        "roles",
        "event hooks",
        "paging",
        "rate limit 429",
    ] {
        assert!(
            stdout.lines().any(|l| l == format!("PASS {check}")),
            "no PASS line for `{check}`:\n{stdout}"
        );
    }
}
