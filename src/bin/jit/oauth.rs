//! Signing in with Okta: the broker names its authorization server (RFC 9728 protected-resource
//! metadata), the server's metadata names its endpoints (RFC 8414), the device grant (RFC 8628)
//! signs the person in, and refresh tokens keep them signed in.
//!
//! Why it exists: a terminal has no browser redirect to receive a code; the device grant shows a
//! URL and a short code, the person approves in any browser, and the client polls. Okta rotates
//! refresh tokens, so every refresh stores the new one.
//!
//! What it must never do: print a token, poll faster than the server's interval (a `slow_down`
//! adds 5 seconds, as RFC 8628 says), or keep polling past the code's lifetime.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{unreachable, CliError};
use crate::store::Credentials;

/// What `jit` asks Okta for: an ID token, a refresh token, and the broker's scopes a person's
/// client needs (docs/cli.md). Never `jit.admin`: operator verbs stay off terminals by default.
pub const SCOPES: &str = "openid offline_access jit.read jit.request jit.approve";

#[derive(Debug, Deserialize)]
struct ResourceMetadata {
    #[serde(default)]
    authorization_servers: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct ServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub device_authorization_endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    what: &str,
    url: &str,
) -> Result<T, CliError> {
    let r = http
        .get(url)
        .send()
        .await
        .map_err(|e| unreachable(what, e))?;
    if !r.status().is_success() {
        return Err(CliError::Other(format!("{what} answered {}", r.status())));
    }
    r.json()
        .await
        .map_err(|e| CliError::Other(format!("{what} sent an unexpected answer: {e}")))
}

/// The authorization server the broker trusts (`issuer` when given), and its endpoints.
pub async fn discover(
    http: &reqwest::Client,
    broker: &str,
    issuer: Option<&str>,
) -> Result<ServerMetadata, CliError> {
    let issuer = match issuer {
        Some(i) => i.trim_end_matches('/').to_string(),
        None => {
            let url = format!("{broker}/.well-known/oauth-protected-resource");
            let m: ResourceMetadata = get_json(http, "the broker", &url).await?;
            m.authorization_servers.into_iter().next().ok_or_else(|| {
                CliError::Other(
                    "the broker names no authorization server: is [access_tokens] configured?"
                        .into(),
                )
            })?
        }
    };
    let url = format!("{issuer}/.well-known/oauth-authorization-server");
    let m: ServerMetadata = get_json(http, "Okta", &url).await?;
    if m.issuer.trim_end_matches('/') != issuer {
        return Err(CliError::Other(format!(
            "Okta's metadata names issuer {} instead of {issuer}",
            m.issuer
        )));
    }
    Ok(m)
}

/// Runs the device grant: shows the URL and code on stderr, polls until the person decides.
pub async fn device_login(
    http: &reqwest::Client,
    broker: &str,
    server: &ServerMetadata,
    client_id: &str,
) -> Result<Credentials, CliError> {
    let endpoint = server
        .device_authorization_endpoint
        .as_deref()
        .ok_or_else(|| {
            CliError::Other("the authorization server does not offer the device grant".into())
        })?;
    let r = http
        .post(endpoint)
        .form(&[("client_id", client_id), ("scope", SCOPES)])
        .send()
        .await
        .map_err(|e| unreachable("Okta", e))?;
    if !r.status().is_success() {
        return Err(oauth_refusal("start the sign-in", r).await);
    }
    let d: DeviceAuthorization = r
        .json()
        .await
        .map_err(|e| CliError::Other(format!("Okta sent an unexpected answer: {e}")))?;
    eprintln!("To sign in, open {}", d.verification_uri);
    eprintln!("and enter the code: {}", d.user_code);
    if let Some(c) = &d.verification_uri_complete {
        eprintln!("(or open {c})");
    }
    let mut interval = Duration::from_secs(d.interval.unwrap_or(5).max(1));
    let deadline = Instant::now() + Duration::from_secs(d.expires_in);
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() > deadline {
            return Err(CliError::Auth(
                "the sign-in code expired before it was approved; run `jit login` again".into(),
            ));
        }
        let r = http
            .post(&server.token_endpoint)
            .form(&[
                ("client_id", client_id),
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", d.device_code.as_str()),
            ])
            .send()
            .await
            .map_err(|e| unreachable("Okta", e))?;
        if r.status().is_success() {
            let t: TokenAnswer = r
                .json()
                .await
                .map_err(|e| CliError::Other(format!("Okta sent an unexpected answer: {e}")))?;
            return credentials(broker, server, client_id, t, None);
        }
        let e: OAuthError = r
            .json()
            .await
            .map_err(|_| CliError::Other("Okta refused the sign-in without saying why".into()))?;
        match e.error.as_str() {
            "authorization_pending" => {}
            "slow_down" => interval += Duration::from_secs(5),
            "access_denied" => {
                return Err(CliError::Auth(
                    "the sign-in was refused in the browser".into(),
                ))
            }
            "expired_token" => {
                return Err(CliError::Auth(
                    "the sign-in code expired; run `jit login` again".into(),
                ))
            }
            other => {
                return Err(CliError::Auth(format!(
                    "Okta refused the sign-in: {other}{}",
                    e.error_description
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                )))
            }
        }
    }
}

/// A new access token from the stored refresh token; the rotated refresh token replaces it.
pub async fn refresh(http: &reqwest::Client, c: &Credentials) -> Result<Credentials, CliError> {
    let r = http
        .post(&c.token_endpoint)
        .form(&[
            ("client_id", c.client_id.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", c.refresh_token.as_str()),
            ("scope", SCOPES),
        ])
        .send()
        .await
        .map_err(|e| unreachable("Okta", e))?;
    if !r.status().is_success() {
        let status = r.status();
        let e: Option<OAuthError> = r.json().await.ok();
        return Err(match e {
            Some(e) if e.error == "invalid_grant" => CliError::Auth(
                "the sign-in is over (refresh refused); run `jit login` again".into(),
            ),
            _ => CliError::Other(format!("Okta answered {status} to a refresh")),
        });
    }
    let t: TokenAnswer = r
        .json()
        .await
        .map_err(|e| CliError::Other(format!("Okta sent an unexpected answer: {e}")))?;
    let server = ServerMetadata {
        issuer: c.issuer.clone(),
        token_endpoint: c.token_endpoint.clone(),
        device_authorization_endpoint: None,
    };
    credentials(&c.broker, &server, &c.client_id, t, Some(&c.refresh_token))
}

fn credentials(
    broker: &str,
    server: &ServerMetadata,
    client_id: &str,
    t: TokenAnswer,
    old_refresh: Option<&str>,
) -> Result<Credentials, CliError> {
    let refresh_token = t
        .refresh_token
        .or_else(|| old_refresh.map(str::to_string))
        .ok_or_else(|| {
            CliError::Other(
                "Okta issued no refresh token: allow the refresh token grant and offline_access"
                    .into(),
            )
        })?;
    let claims = payload(&t.access_token);
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .or_else(|| t.expires_in.map(|s| now_s() + s))
        .unwrap_or_else(now_s);
    Ok(Credentials {
        broker: broker.to_string(),
        issuer: server.issuer.clone(),
        token_endpoint: server.token_endpoint.clone(),
        client_id: client_id.to_string(),
        refresh_token,
        login: claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        access_token: t.access_token,
        access_expires_at: exp,
    })
}

/// The access token's claims, read for display and expiry only: the broker verifies it.
fn payload(token: &str) -> serde_json::Map<String, Value> {
    token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default()
}

async fn oauth_refusal(what: &str, r: reqwest::Response) -> CliError {
    let status = r.status();
    match r.json::<OAuthError>().await {
        Ok(e) => CliError::Auth(format!(
            "Okta refused to {what}: {}{}",
            e.error,
            e.error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )),
        Err(_) => CliError::Other(format!("Okta answered {status} when asked to {what}")),
    }
}
