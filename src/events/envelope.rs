//! Okta's event hook envelope and System Log events, read tolerantly.
//!
//! Why it exists: Okta's `LogEvent` is large, grows, and leaves fields null or out (Admin
//! Console preview deliveries have `actor: null` and `target: null`). The broker needs a few
//! fields, read by name and targets picked by `type`, never by position.
//!
//! What it must never do: fail a whole delivery because one event lacks an optional field, or
//! pick a target by its index in `target[]`.

use serde_json::value::RawValue;
use serde_json::Value;

/// An `actor` or a `target[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    pub id: String,
    pub kind: String,
    pub alternate_id: Option<String>,
}

impl Party {
    fn from_value(v: &Value) -> Option<Party> {
        let o = v.as_object()?;
        let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Party {
            id: s("id").unwrap_or_default(),
            kind: s("type").unwrap_or_default(),
            alternate_id: s("alternateId"),
        })
    }
}

/// One System Log event, with only what the broker reads.
#[derive(Debug, Clone, PartialEq)]
pub struct OktaEvent {
    pub uuid: String,
    pub event_type: String,
    /// `published` in Unix ms; `None` when absent or unreadable.
    pub published_ms: Option<i64>,
    pub actor: Option<Party>,
    pub targets: Vec<Party>,
    pub debug_data: serde_json::Map<String, Value>,
}

/// The largest `uuid` accepted; Okta's are 36 characters.
const MAX_UUID: usize = 128;

impl OktaEvent {
    /// Reads one event; `None` without a usable `uuid` (nothing to deduplicate on).
    pub fn from_value(v: &Value) -> Option<OktaEvent> {
        let o = v.as_object()?;
        let uuid = o.get("uuid").and_then(Value::as_str)?.trim().to_string();
        if uuid.is_empty() || uuid.len() > MAX_UUID || uuid.chars().any(char::is_control) {
            return None;
        }
        let event_type = o
            .get("eventType")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let published_ms = o
            .get("published")
            .and_then(Value::as_str)
            .and_then(|p| chrono::DateTime::parse_from_rfc3339(p).ok())
            .map(|t| t.timestamp_millis());
        let actor = o.get("actor").and_then(Party::from_value);
        let targets = o
            .get("target")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Party::from_value).collect())
            .unwrap_or_default();
        let debug_data = o
            .get("debugContext")
            .and_then(|d| d.get("debugData"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Some(OktaEvent {
            uuid,
            event_type,
            published_ms,
            actor,
            targets,
            debug_data,
        })
    }

    /// The first target of `kind` (`User`, `UserGroup`, `AppInstance`, …).
    pub fn target(&self, kind: &str) -> Option<&Party> {
        self.targets
            .iter()
            .find(|t| t.kind.eq_ignore_ascii_case(kind) && !t.id.is_empty())
    }

    /// The user the event is about: its `User` target.
    pub fn user(&self) -> Option<&Party> {
        self.target("User")
    }
}

/// Why a body is not an event hook delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("the body is not an Okta event hook delivery: `data.events` must be an array")]
    NotADelivery,
}

/// A delivery's events, each with its JSON exactly as Okta sent it (what the inbox stores):
/// events without a `uuid` are counted in `unusable` and skipped.
pub struct Delivery<'a> {
    pub events: Vec<(OktaEvent, &'a str)>,
    pub unusable: usize,
}

/// A JSON object's members, each value left as its raw bytes. A map, unlike a derived struct,
/// accepts only `{…}`: serde lets a struct be written as an array, which would let
/// `[{"events": […]}]` pass for a delivery.
type Members<'a> = std::collections::BTreeMap<std::borrow::Cow<'a, str>, &'a RawValue>;

/// Parses a delivery body (already authenticated). Each event's bytes are borrowed from the
/// body: an event is parsed once to read its fields and stored as received, never serialized
/// again (re-serializing every event was most of a 50-event delivery's cost).
pub fn parse(body: &[u8]) -> Result<Delivery<'_>, EnvelopeError> {
    // A syntax error says the body is not JSON; JSON of another shape is not a delivery.
    let shape = |e: serde_json::Error| match e.classify() {
        serde_json::error::Category::Data => EnvelopeError::NotADelivery,
        _ => EnvelopeError::Json(e.to_string()),
    };
    let top: Members<'_> = serde_json::from_slice(body).map_err(shape)?;
    let data: Members<'_> = top
        .get("data")
        .map(|d| serde_json::from_str(d.get()))
        .ok_or(EnvelopeError::NotADelivery)?
        .map_err(shape)?;
    let events: Vec<&RawValue> = data
        .get("events")
        .map(|e| serde_json::from_str(e.get()))
        .ok_or(EnvelopeError::NotADelivery)?
        .map_err(shape)?;
    let mut out = Vec::with_capacity(events.len());
    let mut unusable = 0;
    for raw in events {
        let parsed = serde_json::from_str::<Value>(raw.get())
            .ok()
            .and_then(|v| OktaEvent::from_value(&v));
        match parsed {
            Some(ev) => out.push((ev, raw.get())),
            None => unusable += 1,
        }
    }
    Ok(Delivery {
        events: out,
        unusable,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_are_picked_by_type_and_nulls_tolerated() {
        let body = json!({"data": {"events": [
            {"uuid": "a", "eventType": "group.user_membership.add", "published": "2026-01-01T00:00:00.123Z",
             "actor": null,
             "target": [{"id": "00g1", "type": "UserGroup"}, {"id": "00u1", "type": "User"}]},
            {"uuid": "b", "eventType": "x", "target": null},
            {"eventType": "no uuid"},
            null
        ]}});
        let body = body.to_string();
        let d = parse(body.as_bytes()).unwrap();
        assert_eq!(d.events.len(), 2);
        assert_eq!(d.unusable, 2);
        let (e, _) = &d.events[0];
        assert_eq!(e.user().unwrap().id, "00u1");
        assert_eq!(e.target("UserGroup").unwrap().id, "00g1");
        assert_eq!(e.actor, None);
        assert_eq!(e.published_ms, Some(1_767_225_600_123));
        assert!(d.events[1].0.targets.is_empty());
    }

    #[test]
    fn non_deliveries_are_refused() {
        assert!(matches!(parse(b"{\"data\":"), Err(EnvelopeError::Json(_))));
        assert_eq!(
            parse(b"{\"data\": {}}").err(),
            Some(EnvelopeError::NotADelivery)
        );
        assert_eq!(parse(b"[]").err(), Some(EnvelopeError::NotADelivery));
        // Objects only: serde would read a struct written as an array.
        let ev = r#"{"uuid": "a", "eventType": "x"}"#;
        for body in [
            format!(r#"[{{"events": [{ev}]}}]"#),
            format!(r#"{{"data": [[{ev}]]}}"#),
            r#"{"data": null}"#.to_string(),
            r#"{"data": {"events": null}}"#.to_string(),
            r#"{"data": {"events": {"0": 1}}}"#.to_string(),
        ] {
            assert_eq!(
                parse(body.as_bytes()).err(),
                Some(EnvelopeError::NotADelivery),
                "{body}"
            );
        }
        assert!(matches!(
            parse(br#"{"data": {"events": [}}"#),
            Err(EnvelopeError::Json(_))
        ));
    }
}
