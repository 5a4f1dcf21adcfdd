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
    use rcron_shared::metrics::{counter, gauge};
    use std::sync::atomic::Ordering;
    let stats = &state.alert_stats;
    let mut out = String::new();
    state.api_latency.render(
        &mut out,
        "rcron_master_api_request_seconds",
        "Time to answer HTTP requests.",
    );
    counter(
        &mut out,
        "rcron_alerts_sent_total",
        "Alert deliveries accepted by a sink.",
        stats.sent.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "rcron_alerts_failed_total",
        "Alert delivery attempts that failed (and were retried).",
        stats.failed.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "rcron_alerts_suppressed_total",
        "Warnings dropped by storm control.",
        stats.suppressed.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "rcron_leader_changes_total",
        "Times this master gained or lost leadership.",
        state.leader.changes(),
    );
    gauge(
        &mut out,
        "rcron_is_leader",
        "1 while this master is the leader.",
        f64::from(u8::from(state.leader.is_leader())),
    );
    let (etcd_up, jobs) = match state.store.count().await {
        Ok(n) => (1.0, n as f64),
        Err(_) => (0.0, f64::NAN),
    };
    gauge(
        &mut out,
        "rcron_etcd_up",
        "1 when etcd answered this scrape.",
        etcd_up,
    );
    gauge(&mut out, "rcron_jobs", "Jobs stored in etcd.", jobs);
    // From the job cache while it is in step: a scrape does not read
    // every job from etcd.
    let jobs = if state.jobs.has_own_writes(&state.store).await {
        Ok(state.jobs.all().into_iter().map(|c| c.job).collect())
    } else {
        state.store.list().await.map(|jobs| {
            jobs.into_iter()
                .map(std::sync::Arc::new)
                .collect::<Vec<_>>()
        })
    };
    let unschedulable = match (jobs, state.workers.list().await) {
        (Ok(jobs), Ok(workers)) => jobs
            .iter()
            .filter(|j| crate::placement::is_unschedulable(j, &workers))
            .count() as f64,
        _ => f64::NAN,
    };
    gauge(
        &mut out,
        "rcron_jobs_unschedulable",
        "Enabled jobs no live worker may run (no worker carries their target's labels).",
        unschedulable,
    );
    Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
