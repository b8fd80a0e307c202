//! Helpers shared by the okta-sim integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use okta_sim::{SimConfig, SimHandle};

pub const SUPER: &str = "sim-super-admin-token";
pub const GROUP_APP: &str = "sim-group-app-admin-token";
pub const READ_ONLY: &str = "sim-read-only-token";

pub async fn start() -> SimHandle {
    okta_sim::spawn(SimConfig::default()).await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn ssws(token: &str) -> String {
    format!("SSWS {token}")
}

/// Polls `cond` until true or the deadline passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `rel="next"` URL among a response's Link headers.
pub fn next_link(resp: &reqwest::Response) -> Option<String> {
    resp.headers().get_all("link").iter().find_map(|v| {
        let s = v.to_str().ok()?;
        if s.contains("rel=\"next\"") {
            Some(s.trim_start_matches('<').split('>').next()?.to_string())
        } else {
            None
        }
    })
}
