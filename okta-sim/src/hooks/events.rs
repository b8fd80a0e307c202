//! System Log `LogEvent`s and the event hook envelope, in Okta's shapes.
//!
//! Why it exists: the broker reads `eventType`, `actor`, `target[]` (by type) and
//! `debugContext.debugData`, and deduplicates on `uuid`; the shapes here follow the recorded
//! samples (`fixtures/`), with the fields clients ignore filled plausibly.
//!
//! What it must never do: order targets in a way clients could rely on instead of `type`
//! (the simulator puts them in the order Okta's samples use, but that order is no contract).

use serde_json::{json, Map, Value};

use crate::ids;

/// Who made a change: the token's principal (API calls) or a named admin (control calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub kind: String,
    pub alternate_id: String,
    pub display_name: String,
}

impl Actor {
    pub fn user(id: &str, login: &str, display_name: &str) -> Self {
        Self {
            id: id.into(),
            kind: "User".into(),
            alternate_id: login.into(),
            display_name: display_name.into(),
        }
    }

    /// The OAuth service app Okta logs as the actor of client-credentials calls.
    pub fn service_app(client_id: &str) -> Self {
        Self {
            id: client_id.into(),
            kind: "PublicClientApp".into(),
            alternate_id: client_id.into(),
            display_name: client_id.into(),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.kind,
            "alternateId": self.alternate_id,
            "displayName": self.display_name,
            "detailEntry": null,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    pub kind: &'static str,
    pub alternate_id: String,
    pub display_name: String,
}

impl Target {
    pub fn new(id: &str, kind: &'static str, alternate_id: &str, display_name: &str) -> Self {
        Self {
            id: id.into(),
            kind,
            alternate_id: alternate_id.into(),
            display_name: display_name.into(),
        }
    }
}

/// One change, before it is rendered as a LogEvent.
#[derive(Debug, Clone)]
pub struct Event {
    pub uuid: String,
    pub event_type: &'static str,
    pub legacy_event_type: &'static str,
    pub display_message: &'static str,
    pub actor: Actor,
    pub targets: Vec<Target>,
    pub debug_data: Map<String, Value>,
    pub published: i64,
}

impl Event {
    pub fn new(
        event_type: &'static str,
        legacy_event_type: &'static str,
        display_message: &'static str,
        targets: Vec<Target>,
    ) -> Self {
        Self {
            uuid: ids::uuid(),
            event_type,
            legacy_event_type,
            display_message,
            actor: Actor::user("", "", ""),
            targets,
            debug_data: Map::new(),
            published: 0,
        }
    }

    pub fn with_debug(mut self, key: &str, value: Value) -> Self {
        self.debug_data.insert(key.into(), value);
        self
    }

    /// The System Log `LogEvent` JSON.
    pub fn log_event(&self) -> Value {
        let tx = format!("sim{}", &self.uuid.replace('-', "")[..24]);
        let mut debug = self.debug_data.clone();
        debug.insert("requestId".into(), Value::String(tx.clone()));
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "type": t.kind,
                    "alternateId": t.alternate_id,
                    "displayName": t.display_name,
                    "detailEntry": null,
                })
            })
            .collect();
        json!({
            "uuid": self.uuid,
            "published": ids::fmt_ms(self.published),
            "eventType": self.event_type,
            "version": "0",
            "displayMessage": self.display_message,
            "severity": "INFO",
            "client": {
                "userAgent": { "rawUserAgent": "okta-sim", "os": "Unknown", "browser": "UNKNOWN" },
                "zone": "null",
                "device": "Unknown",
                "id": null,
                "ipAddress": "127.0.0.1",
                "geographicalContext": null,
            },
            "device": null,
            "actor": self.actor.json(),
            "outcome": { "result": "SUCCESS", "reason": null },
            "target": targets,
            "transaction": { "type": "WEB", "id": tx, "detail": {} },
            "debugContext": { "debugData": debug },
            "legacyEventType": self.legacy_event_type,
            "authenticationContext": {
                "authenticationProvider": null,
                "credentialProvider": null,
                "credentialType": null,
                "issuer": null,
                "interface": null,
                "authenticationStep": 0,
                "externalSessionId": null,
            },
            "securityContext": {
                "asNumber": null, "asOrg": null, "isp": null, "domain": null, "isProxy": null,
            },
            "request": { "ipChain": [] },
        })
    }
}

/// The event hook delivery body (`com.okta.event_hook` envelope) for one batch.
pub fn envelope(source: &str, events: &[Value]) -> Value {
    json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": source,
        "eventId": ids::uuid(),
        "eventTime": ids::fmt_ms(ids::now_ms()),
        "contentType": "application/json",
        "data": { "events": events },
    })
}
