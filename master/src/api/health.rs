//! Liveness and readiness probes for load balancers and orchestrators, and
//! the Prometheus metrics of this master.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{IntoResponse, Response, handler};

use crate::api::AppState;

/// `GET /healthz`: the process is up and serving.
#[handler]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 when etcd answers, 503 (with the reason) when not.
#[handler]
pub(crate) async fn readyz(Data(state): Data<&Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")).into_response(),
    }
}

/// `GET /metrics`: this master's counters in the Prometheus text format.
#[handler]
pub(crate) async fn metrics(Data(state): Data<&Arc<AppState>>) -> Response {
    use std::fmt::Write;
    use std::sync::atomic::Ordering;
    let stats = &state.alert_stats;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "rcron_alerts_sent_total",
        "counter",
        "Alert deliveries accepted by a sink.",
        stats.sent.load(Ordering::Relaxed),
    );
    metric(
        "rcron_alerts_failed_total",
        "counter",
        "Alert delivery attempts that failed (and were retried).",
        stats.failed.load(Ordering::Relaxed),
    );
    metric(
        "rcron_alerts_suppressed_total",
        "counter",
        "Warnings dropped by storm control.",
        stats.suppressed.load(Ordering::Relaxed),
    );
    metric(
        "rcron_leader_changes_total",
        "counter",
        "Times this master gained or lost leadership.",
        state.leader.changes(),
    );
    metric(
        "rcron_is_leader",
        "gauge",
        "1 while this master is the leader.",
        u64::from(state.leader.is_leader()),
    );
    Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
