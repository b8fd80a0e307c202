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

pub use actor::{same_person, Actor, Channel, Role};
pub use rules::{allows, decide, depends_on_approver, require, Denied, Facts, StepUp, Verb};
