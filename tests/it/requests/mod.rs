//! Requests and approvals end to end: the real application over HTTP, okta-sim over HTTP, real
//! Redis and both SQL backends. Tokens are named after Okta logins, as in production: a
//! requester token asks for itself, an approver token decides as that person.

mod api;
mod callbacks;
mod cli;
mod oncall;
mod outbound;
mod races;

use std::time::Duration;

use jit_broker::Config;

use crate::helpers::*;

pub const CALLBACK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The requests env: people's tokens (and [`ENGINEERS`] more requesters), the requests policy,
/// the `servicenow` callback integration, fast notification polling.
pub async fn env(db: Db) -> Env {
    env_with(db, |_| {}).await
}

pub async fn env_with(db: Db, tweak: impl FnOnce(&mut Config) + Send) -> Env {
    EnvBuilder::new(db, REQUESTS_POLICY)
        .people()
        .engineers()
        .tweak(|c| {
            c.notify.poll_interval = Duration::from_millis(20);
            c.callbacks.integrations = vec![jit_broker::callbacks::IntegrationConfig {
                name: "servicenow".into(),
                secret: Some(secrecy::SecretString::from(CALLBACK_SECRET)),
                secret_file: None,
                trusted_for_step_up: false,
                allowed_resources: None,
                allowed_approvers: None,
            }];
        })
        .tweak(tweak)
        .start()
        .await
}
