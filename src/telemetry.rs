//! Logging and metrics set-up.
//!
//! Why it exists: operators read the broker through its logs and its `/metrics`; both are
//! configured once here. Logs are human-readable on a terminal and JSON for shippers.
//!
//! What it must never do: log a secret. Secrets are `SecretString`s whose `Debug` prints
//! `[REDACTED]`, and request logging records method, path and status, never headers or bodies.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber, writing to standard error (standard output belongs to the
/// commands' results, e.g. `audit export`). `RUST_LOG` wins over `log.level`. Safe to call twice (tests):
/// the second call is a no-op.
pub fn init_logging(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match cfg.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colours for a person at a terminal, plain text for a file or a pipe.
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
    };
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder. `metrics` has one global recorder per process, so
/// every application instance in a test process shares it.
pub fn metrics_handle() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
                ])
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "jit_http_requests_total",
        "HTTP requests answered, by method, route and status"
    );
    metrics::describe_histogram!(
        "jit_http_request_duration_seconds",
        "HTTP request latency, by method and route"
    );
    metrics::describe_counter!("jit_audit_appends_total", "Audit log entries appended");
    metrics::describe_gauge!(
        "jit_ready",
        "1 when the last /readyz probe answered ready, 0 when it answered 503"
    );
    crate::okta::describe_metrics();
}
