//! Health, readiness, metrics, request ids, routing, body limit and Redis key naming.

use std::time::Duration;

use crate::helpers::*;
use jit_broker::error::ErrorBody;
use jit_broker::RunOptions;

async fn health_and_ready(db: Db) {
    let app = spawn_app(db).await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "generated id {id}");
    let (status, body) = ready_status(&app).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["sql"], "ok");
    assert_eq!(body["checks"]["redis"], "ok");
    app.stop().await.unwrap();
}

/// Anonymous callers learn ready or not, nothing else; the details need an admin or auditor
/// token; a bad token is refused rather than treated as anonymous.
async fn anonymous_readyz_reveals_only_the_state(db: Db) {
    let app = spawn_app(db).await;
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ready"}));
    for token in [ADMIN_TOKEN, AUDITOR_TOKEN] {
        let r = app
            .http
            .get(app.url("/readyz"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["checks"]["sql"], "ok", "{body}");
        assert!(body.get("okta").is_some(), "{body}");
    }
    for (token, status, code) in [
        (REQUESTER_TOKEN, 403, "forbidden"),
        ("not-a-token", 401, "invalid_token"),
    ] {
        let r = app
            .http
            .get(app.url("/readyz"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        let body: ErrorBody = r.json().await.unwrap();
        assert_eq!(body.code, code);
        assert!(!body.message.contains("sql"), "{}", body.message);
    }
    app.stop().await.unwrap();
}

/// With `server.metrics_listen`, `/metrics` is served there and no longer on the main listener;
/// the second listener drains at shutdown like every tracked task.
async fn metrics_move_to_their_own_listener(db: Db) {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let maddr = free.local_addr().unwrap();
    drop(free);
    let test_db = TestDb::new(db).await;
    let mut config = base_config(&test_db);
    config.server.metrics_listen = Some(maddr);
    let app = spawn_app_with(test_db, config, RunOptions::default()).await;
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .http
        .get(format!("http://{maddr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("jit_"));
    // Only /metrics there.
    let r = app
        .http
        .get(format!("http://{maddr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await.unwrap();
    assert!(
        reqwest::get(format!("http://{maddr}/metrics"))
            .await
            .is_err(),
        "the metrics listener stopped with the broker"
    );
}

async fn unknown_route_is_json_404(db: Db) {
    let app = spawn_app(db).await;
    let r = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.code, "not_found");
    let r = app.http.delete(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.code, "method_not_allowed");
    app.stop().await.unwrap();
}

async fn readyz_names_redis_while_it_is_unreachable(db: Db) {
    let proxy = TcpProxy::start(url_addr(&redis_url())).await;
    let test_db = TestDb::new(db).await;
    let mut config = base_config(&test_db);
    config.redis.url = with_port(&redis_url(), proxy.port());
    config.redis.connect_timeout = Duration::from_millis(500);
    config.redis.response_timeout = Duration::from_millis(500);
    let app = spawn_app_with(test_db, config, RunOptions::default()).await;
    assert_eq!(ready_status(&app).await.0, 200);

    proxy.cut();
    wait_until(Duration::from_secs(30), || async {
        let (status, body) = ready_status(&app).await;
        status == 503
            && body["failing"] == serde_json::json!(["redis"])
            && body["checks"]["sql"] == "ok"
    })
    .await;
    // Liveness does not depend on Redis: a restart would not help.
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    proxy.restore();
    wait_until(Duration::from_secs(30), || async {
        ready_status(&app).await.0 == 200
    })
    .await;
    app.stop().await.unwrap();
}

/// `/readyz` in detail (an admin token).
async fn ready_status(app: &TestApp) -> (u16, serde_json::Value) {
    let r = app
        .http
        .get(app.url("/readyz"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// PostgreSQL is a network dependency, so it can disappear like Redis; SQLite is a local file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_sql_while_postgres_is_unreachable() {
    let test_db = TestDb::new(Db::Postgres).await;
    let proxy = TcpProxy::start(url_addr(&test_db.url)).await;
    let mut config = base_config(&test_db);
    config.database.url = with_port(&test_db.url, proxy.port());
    let app = spawn_app_with(test_db, config, RunOptions::default()).await;
    assert_eq!(ready_status(&app).await.0, 200);

    proxy.cut();
    wait_until(Duration::from_secs(30), || async {
        let (status, body) = ready_status(&app).await;
        status == 503 && body["failing"] == serde_json::json!(["sql"])
    })
    .await;

    proxy.restore();
    wait_until(Duration::from_secs(30), || async {
        ready_status(&app).await.0 == 200
    })
    .await;
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_propagated_when_given() {
    let app = spawn_app(Db::Sqlite).await;
    for path in ["/healthz", "/nope", "/v1/audit"] {
        let r = app
            .http
            .get(app.url(path))
            .header("x-request-id", "req-abc-123")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-request-id"], "req-abc-123", "{path}");
    }
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_body_is_json_413() {
    let test_db = TestDb::new(Db::Sqlite).await;
    let mut config = base_config(&test_db);
    config.server.body_limit_bytes = 2048;
    let app = spawn_app_with(test_db, config, RunOptions::default()).await;
    let r = app
        .http
        .post(app.url("/v1/audit"))
        .bearer_auth(ADMIN_TOKEN)
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.code, "payload_too_large");
    // A body within the limit reaches routing (and is refused for the method, not the size).
    let r = app
        .http
        .post(app.url("/v1/audit"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() {
    let app = spawn_app(Db::Sqlite).await;
    app.http.get(app.url("/healthz")).send().await.unwrap();
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(
        text.contains("jit_http_requests_total{") && text.contains("route=\"/healthz\""),
        "{text}"
    );
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_are_hash_tagged_under_the_prefix() {
    let test_db = TestDb::new(Db::Sqlite).await;
    let config = base_config(&test_db);
    let redis = jit_broker::redis_conn::RedisConn::connect(&config.redis)
        .await
        .unwrap();
    let prefix = config.redis.key_prefix.clone();
    assert_eq!(redis.key("expiry"), format!("{{{prefix}}}:expiry"));
    assert_eq!(redis.key("lock:g1"), format!("{{{prefix}}}:lock:g1"));
    redis.ping().await.unwrap();
}

both_backends!(
    health_and_ready,
    unknown_route_is_json_404,
    readyz_names_redis_while_it_is_unreachable,
    anonymous_readyz_reveals_only_the_state,
    metrics_move_to_their_own_listener
);

/// A request that outlives `server.request_timeout` is answered 408 JSON. The slow path is a
/// real one: `/readyz` waiting on a Redis PING that a proxy holds back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_times_out_with_json_408() {
    let proxy = TcpProxy::start(url_addr(&redis_url())).await;
    let test_db = TestDb::new(Db::Sqlite).await;
    let mut config = base_config(&test_db);
    config.redis.url = with_port(&redis_url(), proxy.port());
    config.server.request_timeout = Duration::from_millis(200);
    let app = spawn_app_with(test_db, config, RunOptions::default()).await;
    proxy.stall();
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 408);
    assert!(r.headers().contains_key("x-request-id"));
    let body: ErrorBody = r.json().await.unwrap();
    assert_eq!(body.code, "request_timeout");
    proxy.restore();
    app.stop().await.unwrap();
}

/// `jit-broker migrate` on a path that does not exist yet creates the SQLite file in WAL mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_is_created_in_wal_mode_by_migrate() {
    let test_db = TestDb::new(Db::Sqlite).await;
    let out = broker_cmd()
        .env("JIT_DATABASE__URL", &test_db.url)
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let store = jit_broker::store::Store::connect(&base_config(&test_db).database)
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // The writer checkpoints every 64 MiB of WAL, not SQLite's 1,000 pages (see store docs).
    let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(pages, 16384);
    let limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(limit, 64 << 20);
    assert!(jit_broker::audit::verify(&store).await.unwrap().ok());
}

/// On a SQLite file the WAL is synced and copied into the database within about a second of a
/// commit (`store.checkpoint`), not only once 64 MiB have piled up: a quiet broker's commits do
/// not wait hours for their sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_checkpointed_within_seconds() {
    let app = spawn_app(Db::Sqlite).await;
    let path = std::path::PathBuf::from(app.db.url.trim_start_matches("sqlite://"));
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let before = size();
    // 2 MB through a second writer (its own checkpoint threshold is the same 64 MiB): only the
    // broker's checkpointer moves it from the WAL into the database file.
    let store = app.store().await;
    sqlx::query("CREATE TABLE wal_probe (b BLOB)")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO wal_probe VALUES (zeroblob(2000000))")
        .execute(store.pool())
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        size() >= before + 2_000_000
    })
    .await;
    store.close().await;
    app.stop().await.unwrap();
}
