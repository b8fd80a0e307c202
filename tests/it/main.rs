//! The one integration-test binary: every test starts the real application (`jit_broker::run`)
//! on port 0 with a fresh database and a unique Redis key prefix, and talks to it over HTTP.
//! Tests that touch SQL run once per backend (SQLite and PostgreSQL) via `both_backends!`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod helpers;

mod access_tokens;
mod api_tokens;
mod audit;
mod audit_merkle;
mod authz;
mod config;
mod console;
// Aimed kills at crash points compiled only with `test-hooks`.
#[cfg(feature = "test-hooks")]
mod crash_points;
#[cfg(feature = "demo")]
mod demo;
mod deploy;
mod e2e_faults;
mod events;
mod fuzz;
mod grants;
// The re-check under the access lock is raced through a hook compiled only with `test-hooks`.
#[cfg(feature = "test-hooks")]
mod grants_access;
mod grants_batch;
mod grants_input;
mod grants_races;
mod health;
mod jit_cli;
mod layers;
mod migrations;
mod okta_auth;
mod okta_client;
mod okta_limits;
mod policy;
mod redis_ha;
mod replay_purge;
mod requests;
mod reviews;
mod scheduler;
mod secrets;
mod shutdown;
mod slack;
mod sync;
