//! Authorization: who may do what, decided in one place for every channel (invariant I9).
//!
//! Why it exists: the broker is reached through the API, the console, Slack, signed callbacks
//! and the command line (and later an assistant). Each channel authenticates someone and builds
//! an [`Actor`]; the domain service that owns the object reads the [`Facts`] (who holds the
//! grant, whether Okta names the actor among the resource's approvers right now) and asks
//! [`decide`]. So the answer to "may this person end this grant?" is the same whichever door
//! they came through. Verbs about no object (read the audit log, dead letters, sync runs) need
//! no facts: the channel asks [`require`] before the read. [`table`] states the expected answer
//! for every verb and actor kind; `docs/security.md` shows it and a test keeps the two equal.
//!
//! What it must never do: import anything above the foundation (grants, requests, channels…):
//! it decides from plain facts, so every layer can ask it and it can be tested as a table; read
//! a database or Okta (the services do, fresh where the rule needs it).

mod actor;
mod rules;
pub mod table;

pub use actor::{same_person, Actor, Channel, GroupRoles, PersonRoles, Role};
pub use rules::{allows, decide, depends_on_approver, require, Denied, Facts, StepUp, Verb};

#[cfg(test)]
mod tests {
    /// The rules stay below every domain module: this module may import only the foundation
    /// (errors, time) and itself, so any layer can ask it and it can be tested as a table.
    #[test]
    fn imports_nothing_above_the_foundation() {
        let files = [
            ("mod.rs", include_str!("mod.rs")),
            ("actor.rs", include_str!("actor.rs")),
            ("rules.rs", include_str!("rules.rs")),
            ("table.rs", include_str!("table.rs")),
        ];
        let allowed = ["crate::error", "crate::clock", "crate::authz"];
        for (name, text) in files {
            for (i, line) in text.lines().enumerate() {
                let l = line.trim_start();
                if !(l.starts_with("use ") || l.starts_with("pub use ")) {
                    continue;
                }
                let Some(at) = l.find("crate::") else {
                    continue;
                };
                let path = &l[at..];
                assert!(
                    allowed.iter().any(|a| path.starts_with(a)),
                    "src/authz/{name}:{}: imports {path}",
                    i + 1
                );
            }
        }
    }
}
