//! The `okta-sim` binary starts, prints its URL and serves a generated org.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

#[tokio::test]
async fn binary_prints_url_and_serves_generated_org() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_okta-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--users",
            "300",
            "--groups",
            "20",
            "--seed",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let r = client()
        .get(format!("{url}/api/v1/users?limit=200"))
        .header("Authorization", ssws(READ_ONLY))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(next_link(&r).is_some());
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}
