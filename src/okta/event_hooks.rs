//! Okta's event hook management API (`/api/v1/eventHooks`): list, create, activate, verify.
//!
//! Why it exists: `jit-broker okta event-hook register|status` sets up the hook the broker
//! listens on, with the event types it reacts to and the header secret it checks, instead of
//! an operator clicking it together in the Admin Console.
//!
//! What it must never do: log or return the hook's secret (Okta never renders it back either).

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::error::OktaError;
use super::types::Priority;
use super::OktaClient;

const T_HOOKS: &str = "/api/v1/eventHooks";
const T_HOOK_ACTIVATE: &str = "/api/v1/eventHooks/{eventHookId}/lifecycle/activate";
const T_HOOK_VERIFY: &str = "/api/v1/eventHooks/{eventHookId}/lifecycle/verify";

/// An event hook as Okta shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventHook {
    pub id: String,
    pub name: String,
    /// `ACTIVE` or `INACTIVE`.
    pub status: String,
    /// `VERIFIED` or `UNVERIFIED`.
    pub verification_status: String,
    pub uri: String,
    /// The header the secret is sent in.
    pub auth_header: Option<String>,
    pub events: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireHook {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    verification_status: String,
    #[serde(default)]
    events: Option<WireEvents>,
    #[serde(default)]
    channel: Option<WireChannel>,
}

#[derive(Deserialize)]
struct WireEvents {
    #[serde(default)]
    items: Vec<String>,
}

#[derive(Deserialize)]
struct WireChannel {
    #[serde(default)]
    config: Option<WireChannelConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireChannelConfig {
    #[serde(default)]
    uri: String,
    #[serde(default)]
    auth_scheme: Option<WireAuth>,
}

#[derive(Deserialize)]
struct WireAuth {
    #[serde(default)]
    key: Option<String>,
}

impl From<WireHook> for EventHook {
    fn from(w: WireHook) -> Self {
        let config = w.channel.and_then(|c| c.config);
        EventHook {
            id: w.id,
            name: w.name,
            status: w.status,
            verification_status: w.verification_status,
            uri: config.as_ref().map(|c| c.uri.clone()).unwrap_or_default(),
            auth_header: config.and_then(|c| c.auth_scheme).and_then(|a| a.key),
            events: w.events.map(|e| e.items).unwrap_or_default(),
        }
    }
}

/// What `create_event_hook` registers.
pub struct NewEventHook<'a> {
    pub name: &'a str,
    pub uri: &'a str,
    pub events: &'a [&'a str],
    pub auth_header: &'a str,
    pub secret: &'a SecretString,
}

impl OktaClient {
    pub async fn list_event_hooks(&self) -> Result<Vec<EventHook>, OktaError> {
        let url = self.url(&["api", "v1", "eventHooks"], &[])?;
        let r = self
            .call(
                "list_event_hooks",
                Method::GET,
                T_HOOKS,
                url,
                None,
                Priority::Read,
            )
            .await?;
        if r.status != 200 {
            return Err(r.error());
        }
        let hooks: Vec<WireHook> = r.json("list_event_hooks")?;
        Ok(hooks.into_iter().map(EventHook::from).collect())
    }

    /// Creates the hook (Okta creates it `ACTIVE` and `UNVERIFIED`).
    pub async fn create_event_hook(&self, h: &NewEventHook<'_>) -> Result<EventHook, OktaError> {
        let url = self.url(&["api", "v1", "eventHooks"], &[])?;
        let body = serde_json::json!({
            "name": h.name,
            "events": { "type": "EVENT_TYPE", "items": h.events },
            "channel": {
                "type": "HTTP",
                "version": "1.0.0",
                "config": {
                    "uri": h.uri,
                    "authScheme": {
                        "type": "HEADER",
                        "key": h.auth_header,
                        "value": h.secret.expose_secret(),
                    },
                },
            },
        });
        let r = self
            .call(
                "create_event_hook",
                Method::POST,
                T_HOOKS,
                url,
                Some(&body),
                Priority::Read,
            )
            .await?;
        if r.status != 200 {
            return Err(r.error());
        }
        Ok(r.json::<WireHook>("create_event_hook")?.into())
    }

    async fn hook_lifecycle(
        &self,
        op: &'static str,
        template: &'static str,
        id: &str,
        action: &str,
    ) -> Result<EventHook, OktaError> {
        let url = self.url(&["api", "v1", "eventHooks", id, "lifecycle", action], &[])?;
        let r = self
            .call(op, Method::POST, template, url, None, Priority::Read)
            .await?;
        if r.status != 200 {
            return Err(r.error());
        }
        Ok(r.json::<WireHook>(op)?.into())
    }

    pub async fn activate_event_hook(&self, id: &str) -> Result<EventHook, OktaError> {
        self.hook_lifecycle("activate_event_hook", T_HOOK_ACTIVATE, id, "activate")
            .await
    }

    /// Okta sends its one-time challenge to the hook's URL; the broker there must answer it.
    pub async fn verify_event_hook(&self, id: &str) -> Result<EventHook, OktaError> {
        self.hook_lifecycle("verify_event_hook", T_HOOK_VERIFY, id, "verify")
            .await
    }
}
