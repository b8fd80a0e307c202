//! jit-broker: just-in-time access for Okta.
//!
//! A person asks for access, a policy or an approver says yes, the broker grants the Okta group
//! membership, app assignment or admin role for a fixed time, and a Redis-backed scheduler
//! removes it on time. Every step lands in a tamper-evident audit log.
//!
//! # Layers
//!
//! Each layer imports only the layers below it; a module never imports one of its own layer
//! (the foundation excepted, where the order is the list's), and channels never import each
//! other. `tests/it/layers.rs` reads `src/` and fails on an import that goes up or sideways, so
//! a second path cannot grow back. See `docs/architecture.md` for the picture.
//!
//! 1. **Foundation**: [`error`] (one error type, `{code, message}`), [`redact`] (errors without
//!    the values they are about), [`clock`] (the one "now"), [`tasks`] (named tracked tasks,
//!    drained on shutdown), [`crash`] (crash points of test builds), [`config`] (layers,
//!    secrets, the foundation's sections),
//!    [`csv_safe`] (CSV cells a spreadsheet cannot run), [`authz`] (who may do what: one rule
//!    per verb for every channel), [`telemetry`] (logs, metrics), [`webhooks`] (Standard Webhooks
//!    signatures), [`store`] (SQL, the record), [`redis_conn`] (Redis, the index), [`okta`]
//!    (the Okta client), [`oncall`] (who is on call now, from PagerDuty, Opsgenie or Jira
//!    Service Management).
//! 2. **Audit, policy, scheduler**: [`audit`] (the append-only, hash-chained log), [`policy`]
//!    (resources and their rules), [`scheduler`] (the Redis expiry index and its worker).
//! 3. **Grants**: [`grants`], the only module that adds or removes access in Okta.
//! 4. **Requests, drift, inventory**: [`requests`] (asking and approving), [`drift`] (the one
//!    reaction to access no grant explains), [`inventory`] (what the sync saw in Okta).
//! 5. **Notify, events, sync, reviews**: [`notify`] (notifications derived from the audit
//!    log), [`events`] (Okta event hooks: inbox, worker, reactions), [`sync`] (the inventory
//!    sync), [`reviews`] (access review campaigns).
//! 6. **Outbox**: [`outbox`], delivery of notifications to webhooks and Slack, with retries.
//! 7. **Channels**: [`api`] (HTTP API and hooks), [`console`] (web console), [`slack`],
//!    [`callbacks`] (signed approval callbacks), [`cli`] (the command line's verbs). A channel
//!    authenticates, calls the domain and maps the result; it never decides.
//! 8. **App**: [`app`] wires everything: the aggregate configuration, each channel's state, the
//!    router, the background tasks, the command line's dispatcher, `serve` and `demo`.
//!
//! [`run`] starts the whole application on a listener the caller bound, so tests start the real
//! thing on port 0.

// 1. Foundation.
pub mod authz;
pub mod clock;
pub mod config;
pub mod crash;
pub mod csv_safe;
pub mod error;
pub mod okta;
pub mod oncall;
pub mod redact;
pub mod redis_conn;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod webhooks;
// 2.
pub mod audit;
pub mod policy;
pub mod scheduler;
// 3.
pub mod grants;
// 4.
pub mod drift;
pub mod inventory;
pub mod requests;
// 5.
pub mod events;
pub mod notify;
pub mod reviews;
pub mod sync;
// 6.
pub mod outbox;
// 7. Channels.
pub mod api;
pub mod callbacks;
pub mod cli;
pub mod console;
pub mod slack;
// 8.
pub mod app;

pub use app::{run, run_with, shutdown_signal, start_scheduler, Config, RunError, RunOptions};
