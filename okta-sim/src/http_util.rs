//! Small response helpers shared by the management and control routes.
//!
//! Why it exists: Okta answers JSON with `application/json;charset=UTF-8` and 204s without a
//! body; building those in one place keeps every route identical.
//!
//! What it must never do: add headers that belong to the middleware (request id, rate limits).

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

pub const JSON_CT: &str = "application/json;charset=UTF-8";

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CT));
    resp
}

pub fn ok_json(value: &serde_json::Value) -> Response {
    json_response(StatusCode::OK, value)
}

pub fn no_content() -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}
