//! Crash points: named places where a test build can make the process die on the spot.
//!
//! Why it exists: the crash tests aim `kill -9` at the windows between two durable steps (a
//! grant committed `revoking` and its index entry moved; a grant row and its Okta add; an event
//! half processed). A signal sent from outside lands wherever the process happens to be; a crash
//! point lands exactly in the window, every time. With the `test-hooks` feature, the process
//! whose environment sets `BROKER_TEST_CRASH_AT` (not `JIT_`: that prefix is configuration) to a
//! point's name aborts (`std::process::abort`:
//! no destructor, no lock release, no settle, as `kill -9`) the first time it reaches it.
//!
//! What it must never do: exist in a production build. Without `test-hooks`, [`point`] is an
//! empty inline function, and the variable is not read.

/// Between the `revoking` commit of an early revoke (or a departure) and the index update.
pub const REVOKING_COMMITTED: &str = "grants.revoking_committed";
/// A new grant's row, standing decision and index entry are durable; Okta not yet called.
pub const BEFORE_OKTA_ADD: &str = "grants.before_okta_add";
/// Okta has applied the add; the grant is not yet recorded `active`.
pub const AFTER_OKTA_ADD: &str = "grants.after_okta_add";
/// An Okta event is claimed from the inbox and about to be reacted to.
pub const EVENT_PROCESSING: &str = "events.processing";
/// A signed callback's receipt is `processing`; the decision is not yet made.
pub const CALLBACK_PROCESSING: &str = "callbacks.processing";

/// The environment variable naming the point this process dies at (test builds only).
pub const ENV: &str = "BROKER_TEST_CRASH_AT";

/// Aborts the process if it was started to die at `name` (test builds only; see module docs).
#[cfg(feature = "test-hooks")]
pub fn point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()));
    if at.as_deref() == Some(name) {
        eprintln!("crash point {name} reached: aborting");
        std::process::abort();
    }
}

/// Without `test-hooks`: nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn point(_name: &str) {}
