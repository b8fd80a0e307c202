//! The HTTP API channel: `/v1…` for people, portals and auditors, `/hooks/okta` for Okta's
//! event hooks, and `/healthz`, `/readyz`, `/metrics` for the platform.
//!
//! Why it exists: one home for every HTTP handler of the API. Handlers are thin: parse,
//! authenticate (static API tokens or Okta access tokens, [`auth`]; scopes per verb,
//! [`scopes`]), call the domain, map the result.
//!
//! What it must never do: decide who may do what (the domain does), parse a webhook body before
//! its signature is verified on the raw bytes (I7), log headers (they carry tokens and webhook
//! secrets), or import another channel (console, slack, callbacks, cli).

pub mod audit;
pub mod auth;
pub mod events;
pub mod grants;
pub mod health;
pub mod inventory;
pub mod metadata;
pub mod outbox;
pub mod paging;
pub mod requests;
pub mod resources;
pub mod reviews;
pub mod scopes;
pub mod sync;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::clock::Clock;
use crate::redis_conn::RedisConn;
use crate::store::Store;
use crate::tasks::Tasks;
use auth::{Authenticator, HasAuthenticator};

/// What the API's handlers need. Cheap to clone: all fields are handles.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub redis: RedisConn,
    pub clock: Clock,
    pub auth: Arc<Authenticator>,
    pub metrics: PrometheusHandle,
    pub tasks: Tasks,
    pub policy: crate::policy::PolicyHandle,
    /// `None` when Okta is not configured: the grants API answers 503 `okta_not_configured`.
    pub grants: Option<crate::grants::GrantService>,
    /// `None` when Okta is not configured (no grants service to make grants through).
    pub requests: Option<crate::requests::RequestService>,
    /// `None` when `[okta]` is not configured.
    pub okta: Option<crate::okta::OktaClient>,
    /// The expiry worker; `None` when there is no grants service to hand due grants to.
    pub scheduler: Option<crate::scheduler::Scheduler>,
    /// The Okta event hook intake (`/hooks/okta`).
    pub events: crate::events::Events,
    /// RFC 9728 metadata; `None` when `[access_tokens]` is off.
    pub resource_metadata: Option<Arc<metadata::ResourceMetadata>>,
}

impl HasAuthenticator for ApiState {
    fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }
}

/// Every API route, with its state. The app adds the middleware every channel shares.
/// `/metrics` is here unless `metrics_elsewhere` (then [`metrics_routes`] serves it on its own
/// listener).
pub fn routes(state: ApiState, metrics_elsewhere: bool) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    if !metrics_elsewhere {
        r = r.route("/metrics", get(health::metrics));
    }
    r.merge(audit::routes())
        .merge(grants::routes())
        .merge(requests::routes())
        .merge(resources::routes())
        .merge(metadata::routes())
        .merge(outbox::routes())
        .merge(events::routes())
        .merge(inventory::routes())
        .merge(sync::routes())
        .merge(reviews::routes())
        .with_state(state)
}

/// `/metrics` alone, for `server.metrics_listen`.
pub fn metrics_routes(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .with_state(state)
}
