//! The request pipeline every management route runs through.
//!
//! Why it exists: Okta's cross-cutting behaviour — 411 without Content-Length, the concurrency
//! cap, per-bucket rate limits with `X-Rate-Limit-*` on every answer, injected faults, request
//! and mutation counters, `X-Okta-Request-Id` and `Date` — must be identical on every route, so
//! it lives here and not in handlers.
//!
//! What it must never do: sleep past shutdown, or count a refused request as a mutation.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::OktaError;
use crate::ids;
use crate::ratelimit::{bucket_for, RateInfo};
use crate::sim::Sim;

/// Route-level pipeline (needs the matched route template).
pub async fn pipeline(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| crate::routes::spec_template(m.as_str()))
        .unwrap_or_else(|| req.uri().path().to_string());
    let bucket = bucket_for(&template);
    sim.counters.request(method.as_str(), &template, bucket);
    let now = ids::now_ms();

    if sim.require_content_length
        && (method == Method::PUT || method == Method::POST)
        && !crate::auth::has_length(req.headers())
    {
        let info = sim.limiter.peek(bucket, now);
        return with_rate(OktaError::length_required().into_response(), info);
    }

    let inflight = sim.inflight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InflightGuard(&sim);
    if inflight > sim.limiter.concurrency() {
        let cap = sim.limiter.concurrency();
        return with_rate(
            OktaError::rate_limited().into_response(),
            RateInfo {
                limit: cap,
                remaining: 0,
                reset: now / 1000 + 1,
            },
        );
    }

    let decision = sim.faults.decide(method.as_str(), &template, now);
    if let Some(lat) = decision.latency {
        if sleep_or_cancel(&sim, lat).await {
            return OktaError::internal(StatusCode::SERVICE_UNAVAILABLE).into_response();
        }
    }
    if decision.force_429 {
        let mut info = sim.limiter.peek(bucket, now);
        info.remaining = 0;
        return with_rate(OktaError::rate_limited().into_response(), info);
    }
    let info = match sim.limiter.check(bucket, now) {
        Ok(i) => i,
        Err(i) => return with_rate(OktaError::rate_limited().into_response(), i),
    };
    if let Some(status) = decision.error_status {
        let st = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return with_rate(OktaError::internal(st).into_response(), info);
    }
    let mut resp = match decision.hang {
        Some((d, false)) => {
            // Hang before applying: the change never happens; the client times out.
            sleep_or_cancel(&sim, d).await;
            return with_rate(
                OktaError::internal(StatusCode::GATEWAY_TIMEOUT).into_response(),
                info,
            );
        }
        Some((d, true)) => {
            let resp = next.run(req).await;
            if resp.status().is_success() && method != Method::GET {
                sim.counters.mutation(method.as_str(), &template);
            }
            sleep_or_cancel(&sim, d).await;
            resp
        }
        None => {
            let resp = next.run(req).await;
            if resp.status().is_success() && method != Method::GET {
                sim.counters.mutation(method.as_str(), &template);
            }
            resp
        }
    };
    if resp.status() == StatusCode::TOO_MANY_REQUESTS {
        return with_rate(
            resp,
            RateInfo {
                remaining: 0,
                ..info
            },
        );
    }
    resp = with_rate(resp, info);
    resp
}

struct InflightGuard<'a>(&'a Sim);
impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sleeps, returning true when the simulator is shutting down instead.
async fn sleep_or_cancel(sim: &Sim, d: std::time::Duration) -> bool {
    tokio::select! {
        _ = sim.cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

fn with_rate(mut resp: Response, info: RateInfo) -> Response {
    let h = resp.headers_mut();
    h.insert(
        HeaderName::from_static("x-rate-limit-limit"),
        HeaderValue::from(info.limit),
    );
    h.insert(
        HeaderName::from_static("x-rate-limit-remaining"),
        HeaderValue::from(info.remaining),
    );
    h.insert(
        HeaderName::from_static("x-rate-limit-reset"),
        HeaderValue::from(info.reset),
    );
    resp
}

/// Outer layer for every response, routed or not: `X-Okta-Request-Id`, `Date`, and the rate
/// limit headers (of the `other` bucket, uncounted) on `/api/` answers the pipeline did not see
/// (unknown paths, wrong methods).
pub async fn common_headers(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    if api && !resp.headers().contains_key("x-rate-limit-limit") {
        resp = with_rate(resp, sim.limiter.peek("other", ids::now_ms()));
    }
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ids::request_id()) {
        h.insert(HeaderName::from_static("x-okta-request-id"), v);
    }
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Ok(v) = HeaderValue::from_str(&date) {
        h.insert(axum::http::header::DATE, v);
    }
    resp
}
