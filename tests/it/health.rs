//! Health, readiness, metrics, routing and body-limit behaviour.

use crate::helpers::*;
use jit_broker::error::ErrorBody;

async fn health_and_ready(db: Db) {
    let app = spawn_app(db).await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["sql"], "ok");
    assert_eq!(body["checks"]["redis"], "ok");
    app.stop().await.unwrap();
}

async fn unknown_route_is_json_404(db: Db) {
    let app = spawn_app(db).await;
    let r = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.code, "not_found");
    app.stop().await.unwrap();
}

both_backends!(health_and_ready, unknown_route_is_json_404);
