//! Helpers shared by the okta-sim integration tests: the seeded tokens, a simulator with the
//! default config, `Api` (one client bound to one simulator sending SSWS-authorized calls),
//! polling and Link-header parsing.
//!
//! Why it exists: every test file made the same reqwest calls line by line; one helper keeps
//! the requests identical (same headers, same explicit `Content-Length: 0`) and the tests
//! short enough to read.
//!
//! What it must never do: add headers a test did not ask for (411 and auth tests depend on
//! exactly what is sent) or swallow a status (callers assert on the response).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use okta_sim::{SimConfig, SimHandle};
use serde::de::DeserializeOwned;
use serde_json::Value;

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

/// Asserts an Okta error answer (`status` and `errorCode`); returns its body for more checks.
pub async fn expect_error(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], code);
    body
}

/// One client talking to one simulator. Paths starting with `/` are relative to the
/// simulator's base URL; anything else (a `next` link, a prepared URL) is used as is.
pub struct Api {
    pub c: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(sim: &SimHandle) -> Self {
        Self {
            c: client(),
            base: sim.base_url(),
        }
    }

    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with('/') {
            format!("{}{path_or_url}", self.base)
        } else {
            path_or_url.to_string()
        }
    }

    /// A request with `Authorization: SSWS <token>` and nothing else added.
    pub fn req(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.c
            .request(method, self.url(path))
            .header("Authorization", ssws(token))
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        send(self.req(reqwest::Method::GET, path, token)).await
    }

    /// GET and parse the JSON body (whatever the status).
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str, token: &str) -> T {
        self.get(path, token).await.json().await.unwrap()
    }

    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        send(self.req(reqwest::Method::DELETE, path, token)).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        send(self.req(reqwest::Method::POST, path, token).json(body)).await
    }

    /// POST without a body, with the explicit `Content-Length: 0` Okta requires.
    pub async fn post_empty(&self, path: &str, token: &str) -> reqwest::Response {
        send(empty(self.req(reqwest::Method::POST, path, token))).await
    }

    /// PUT without a body and without `Content-Length` (what reqwest sends by default; Okta
    /// answers 411).
    pub async fn put_no_length(&self, path: &str, token: &str) -> reqwest::Response {
        send(self.req(reqwest::Method::PUT, path, token)).await
    }

    /// PUT without a body, with the explicit `Content-Length: 0` Okta requires.
    pub async fn put_empty(&self, path: &str, token: &str) -> reqwest::Response {
        send(empty(self.req(reqwest::Method::PUT, path, token))).await
    }
}

impl Api {
    /// A control-API (`/_sim/…`) request: no token, nothing added.
    pub fn ctl(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.c.request(method, self.url(path))
    }

    /// GET a control-API path and parse its JSON body.
    pub async fn ctl_get_json<T: DeserializeOwned>(&self, path: &str) -> T {
        send(self.ctl(reqwest::Method::GET, path))
            .await
            .json()
            .await
            .unwrap()
    }

    /// POST to a control-API path, with a JSON body or with no body at all.
    pub async fn ctl_post(&self, path: &str, body: Option<&Value>) -> reqwest::Response {
        let rb = self.ctl(reqwest::Method::POST, path);
        send(match body {
            Some(b) => rb.json(b),
            None => rb,
        })
        .await
    }

    /// PUT a JSON body to a control-API path.
    pub async fn ctl_put(&self, path: &str, body: &Value) -> reqwest::Response {
        send(self.ctl(reqwest::Method::PUT, path).json(body)).await
    }
}

fn empty(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    rb.header("Content-Length", "0")
}

async fn send(rb: reqwest::RequestBuilder) -> reqwest::Response {
    rb.send().await.unwrap()
}
