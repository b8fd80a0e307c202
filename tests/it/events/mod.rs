//! Okta event hooks and the drift reaction: okta-sim over HTTP, real Redis, both SQL backends.

mod confirm;
mod drift;
mod hooks;
mod intake;
mod register;
