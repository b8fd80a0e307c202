//! The broker's HTTP API as `jit` uses it: a bearer from the stored sign-in, refreshed shortly
//! before it expires and once more if the broker says it is no longer valid.
//!
//! Why it exists: every verb is one or two API calls; the token handling and the mapping of an
//! error answer to a [`CliError`] (and so an exit code) happen here once.
//!
//! What it must never do: decide anything the API decides (who may approve, what is
//! requestable), or print the bearer.

use reqwest::Method;
use serde_json::Value;

use crate::error::{unreachable, CliError};
use crate::oauth;
use crate::store::{self, Credentials};

/// Refresh when the access token has less than this left (seconds).
const REFRESH_MARGIN_S: i64 = 30;

pub struct Api {
    http: reqwest::Client,
    base: String,
    creds: Credentials,
}

impl Api {
    /// The stored sign-in against `broker` (the stored broker when `None`).
    pub fn signed_in(http: reqwest::Client, broker: Option<&str>) -> Result<Api, CliError> {
        let creds = store::load()?
            .ok_or_else(|| CliError::Auth("not signed in: run `jit login` first".into()))?;
        // The sign-in's bearer goes only to the broker it was made for: a `--broker` or
        // `JIT_BROKER_URL` naming another host (a repository's environment file, a stale
        // runbook) would otherwise collect a token that works on the real one.
        if let Some(b) = broker {
            if b.trim_end_matches('/') != creds.broker.trim_end_matches('/') {
                return Err(CliError::Auth(format!(
                    "signed in to {}, not to {}: run `jit login --broker {}` to use that broker",
                    creds.broker,
                    b.trim_end_matches('/'),
                    b.trim_end_matches('/')
                )));
            }
        }
        let base = creds.broker.trim_end_matches('/').to_string();
        Ok(Api { http, base, creds })
    }

    pub fn login(&self) -> &str {
        &self.creds.login
    }

    async fn refresh(&mut self) -> Result<(), CliError> {
        let fresh = oauth::refresh(&self.http, &self.creds).await?;
        store::save(&fresh)?;
        self.creds = fresh;
        Ok(())
    }

    /// `method path` with `body`: the JSON answer of a 2xx, else the broker's error.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), CliError> {
        if self.creds.access_expires_at - oauth::now_s() < REFRESH_MARGIN_S {
            self.refresh().await?;
        }
        let mut retried = false;
        loop {
            let mut rq = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.creds.access_token);
            if let Some(b) = body {
                rq = rq.json(b);
            }
            let r = rq.send().await.map_err(|e| unreachable("the broker", e))?;
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if (200..300).contains(&status) {
                return Ok((status, v));
            }
            // Revoked or expired early (clock skew): one refresh, one retry.
            if status == 401 && !retried {
                retried = true;
                self.refresh().await?;
                continue;
            }
            return Err(CliError::Api {
                status,
                code: v["code"].as_str().unwrap_or("error").to_string(),
                message: v["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("HTTP {status}")),
            });
        }
    }

    pub async fn get(&mut self, path: &str) -> Result<Value, CliError> {
        Ok(self.call(Method::GET, path, None).await?.1)
    }

    pub async fn post(&mut self, path: &str, body: &Value) -> Result<(u16, Value), CliError> {
        self.call(Method::POST, path, Some(body)).await
    }
}

/// An id or name from the command line, checked before it goes into a path: letters, digits,
/// `-`, `_` and `.` only (ids are UUIDs, names are the policy's).
pub fn seg(s: &str) -> Result<&str, CliError> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != "..";
    if ok {
        Ok(s)
    } else {
        Err(CliError::Api {
            status: 400,
            code: "invalid_argument".into(),
            message: format!("`{s}` is not an id: letters, digits, `-`, `_` and `.` only"),
        })
    }
}
