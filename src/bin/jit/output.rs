//! What `jit` prints: the API's JSON as is with `--json` (one document on stdout, for scripts),
//! else short lines for people.
//!
//! Why it exists: one place decides the human layout, so every verb reads alike and `--json`
//! never gets a human line mixed in (progress and prompts go to stderr).
//!
//! What it must never do: print a token, or reshape the JSON (scripts read the API's fields).

use serde_json::Value;

use crate::oauth::now_s;

pub fn json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string(v).unwrap_or_else(|_| "null".into())
    );
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `1h 5m` left until `expires_at_ms`.
fn left(expires_at_ms: i64) -> String {
    let secs = expires_at_ms / 1000 - now_s();
    if secs <= 0 {
        return "ended".into();
    }
    let secs = u64::try_from(secs).unwrap_or(0);
    let (h, m) = (secs / 3600, (secs % 3600) / 60);
    match (h, m) {
        (0, 0) => format!("{secs}s left"),
        (0, m) => format!("{m}m left"),
        (h, m) => format!("{h}h {m}m left"),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    pub fn done(&self, v: &Value, human: &str) {
        if self.json {
            json(v);
        } else {
            println!("{human}");
        }
    }

    pub fn signed_in(&self, login: &str, broker: &str) {
        self.done(
            &serde_json::json!({"login": login, "broker": broker}),
            &format!("Signed in as {login} to {broker}."),
        );
    }

    pub fn resources(&self, v: &Value) {
        if self.json {
            return json(v);
        }
        let list = v["resources"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("Nothing you may request.");
        }
        for r in list {
            let mut notes = vec![format!(
                "{} by default, {} at most",
                s(&r["default_duration"]),
                s(&r["max_duration"])
            )];
            match r["approvals_required"].as_u64() {
                Some(0) => notes.push("no approval".into()),
                Some(1) => notes.push("1 approval".into()),
                Some(n) => notes.push(format!("{n} approvals")),
                None => {}
            }
            if r["require_reason"] == true {
                notes.push("reason required".into());
            }
            if let Some(p) = r["ticket_pattern"].as_str() {
                notes.push(format!("ticket {p}"));
            }
            if r["step_up"] == true {
                notes.push("approvers sign in again".into());
            }
            println!("{:<24} {}", s(&r["name"]), notes.join(", "));
            if !s(&r["description"]).is_empty() {
                println!("{:<24} {}", "", s(&r["description"]));
            }
        }
    }

    /// A request as `GET /v1/requests/{id}` shows it (with `grant`).
    pub fn request(&self, v: &Value) {
        if self.json {
            return json(v);
        }
        let g = &v["grant"];
        if s(&g["state"]) == "active" {
            println!(
                "Granted: {} until {} ({}); grant {}",
                s(&g["resource"]),
                time(g["expires_at"].as_i64().unwrap_or(0)),
                left(g["expires_at"].as_i64().unwrap_or(0)),
                s(&g["id"])
            );
        } else {
            println!(
                "Request {} for {} is {}.",
                s(&v["id"]),
                s(&v["resource"]),
                s(&v["state"])
            );
        }
    }

    pub fn grants(&self, v: &Value) {
        if self.json {
            return json(v);
        }
        let list = v["grants"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("No grants.");
        }
        for g in list {
            let when = if s(&g["state"]) == "active" {
                left(g["expires_at"].as_i64().unwrap_or(0))
            } else {
                s(&g["state"]).to_string()
            };
            println!("{}  {:<24} {}", s(&g["id"]), s(&g["resource"]), when);
        }
    }

    pub fn grant(&self, v: &Value, verb: &str) {
        if self.json {
            return json(v);
        }
        println!(
            "{verb}: {} ({}), grant {}",
            s(&v["resource"]),
            s(&v["state"]),
            s(&v["id"])
        );
    }

    /// `POST /v1/grants/{id}/extend`: 202 while the extension waits, 200 once given.
    pub fn extended(&self, status: u16, v: &Value) {
        if self.json {
            return json(v);
        }
        if status == 202 {
            println!(
                "Extension requested ({}), waiting for approval.",
                s(&v["request"]["id"])
            );
        } else {
            let g = if v["grant"].is_object() {
                &v["grant"]
            } else {
                v
            };
            println!(
                "Extended: {} until {} ({}).",
                s(&g["resource"]),
                time(g["expires_at"].as_i64().unwrap_or(0)),
                left(g["expires_at"].as_i64().unwrap_or(0))
            );
        }
    }

    pub fn requests(&self, v: &Value) {
        if self.json {
            return json(v);
        }
        let list = v["requests"].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("Nothing waiting for you.");
        }
        for r in list {
            println!(
                "{}  {} asks for {} for {}: {}",
                s(&r["id"]),
                s(&r["user_login"]),
                s(&r["resource"]),
                humantime::format_duration(std::time::Duration::from_millis(
                    u64::try_from(r["duration_ms"].as_i64().unwrap_or(0)).unwrap_or(0)
                )),
                s(&r["reason"])
            );
        }
    }

    pub fn decided(&self, v: &Value) {
        if self.json {
            return json(v);
        }
        println!("Request {} is {}.", s(&v["id"]), s(&v["state"]));
    }
}

/// A Unix-ms time as RFC 3339 UTC, to the second.
fn time(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}
