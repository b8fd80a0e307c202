//! Graceful shutdown: stop accepting, drain in-flight requests, stop tracked tasks in time.
//!
//! The in-flight request is a real one, not a test-only route: `/readyz` waits on a Redis PING,
//! and the test holds that PING in a TCP proxy in front of Redis. So the request is provably
//! inside the handler when the shutdown signal arrives, and its answer proves it was completed
//! rather than cut off.

use std::time::Duration;

use jit_broker::tasks::Tasks;
use jit_broker::RunOptions;

use crate::helpers::*;

async fn drains_in_flight_request(db: Db) {
    let proxy = TcpProxy::start(url_addr(&redis_url())).await;
    let test_db = TestDb::new(db).await;
    let mut config = base_config(&test_db);
    config.redis.url = with_port(&redis_url(), proxy.port());
    config.server.shutdown_grace = Duration::from_secs(20);
    let mut app = spawn_app_with(test_db, config, RunOptions::default()).await;

    proxy.stall();
    let before = proxy.seen();
    let client = app.http.clone();
    let url = app.url("/readyz");
    // With an admin token: the details say what ran.
    let in_flight =
        tokio::spawn(async move { client.get(url).bearer_auth(ADMIN_TOKEN).send().await });
    // The handler has sent its PING: the request is in flight.
    wait_until(Duration::from_secs(10), || async { proxy.seen() > before }).await;

    app.signal_shutdown();
    // New connections are refused while the old request is still held.
    let addr = app.addr;
    wait_until(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(!in_flight.is_finished());

    proxy.restore();
    let r = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    let body: serde_json::Value = r.json().await.unwrap();
    // It ran to completion (Redis answered) and reports that the broker is going away.
    assert_eq!(body["checks"]["redis"], "ok", "{body}");
    assert_eq!(body["shutting_down"], true);
    app.join().await.unwrap();
}

both_backends!(drains_in_flight_request);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_app_stops_promptly() {
    let app = spawn_app(Db::Sqlite).await;
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("run returns after the signal")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn tracked_tasks_stop_on_cancel_within_grace() {
    let tasks = Tasks::new();
    let token = tasks.cancel_token();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tasks.spawn("cooperative", async move {
        token.cancelled().await;
        // Finishing the unit of work it was in.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = done_tx.send(());
    });
    assert_eq!(tasks.running(), vec!["cooperative".to_string()]);
    let left = tasks.shutdown(Duration::from_secs(5)).await;
    assert!(left.is_empty(), "{left:?}");
    done_rx.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stubborn_tasks_are_named_after_the_grace_period() {
    let tasks = Tasks::new();
    tasks.spawn("stubborn", std::future::pending::<()>());
    tasks.spawn("quick", async {});
    let left = tasks.shutdown(Duration::from_secs(1)).await;
    assert_eq!(left, vec!["stubborn".to_string()]);
}

/// The real binary: `serve` on port 0 (the address is read from its log), `healthcheck` against
/// it, then SIGTERM or SIGINT stops it cleanly with exit code 0.
async fn binary_stops_on_signal(signal: &str) {
    use std::io::BufRead;
    let test_db = TestDb::new(Db::Sqlite).await;
    let mut child = broker_cmd()
        .env("RUST_LOG", "info")
        .env("JIT_SERVER__LISTEN", "127.0.0.1:0")
        .env("JIT_DATABASE__URL", &test_db.url)
        .env("JIT_REDIS__URL", redis_url())
        .env("JIT_REDIS__KEY_PREFIX", unique_prefix())
        .arg("serve")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let reader = std::thread::spawn(move || {
        let mut addr_tx = Some(addr_tx);
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.split("addr=").nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                if let Some(tx) = addr_tx.take() {
                    let _ = tx.send(addr);
                }
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let addr = tokio::time::timeout(Duration::from_secs(60), addr_rx)
        .await
        .expect("serve logs its address")
        .unwrap();

    let out = broker_cmd()
        .env("JIT_SERVER__LISTEN", &addr)
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let log = reader.join().unwrap();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");

    // Nothing answers any more.
    let out = broker_cmd()
        .env("JIT_SERVER__LISTEN", &addr)
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_stops_cleanly_on_sigterm() {
    binary_stops_on_signal("-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_stops_cleanly_on_sigint() {
    binary_stops_on_signal("-INT").await;
}
