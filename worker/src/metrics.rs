//! What a worker counts, and the routes of its HTTP listener ([`http`])
//! that expose it: `/metrics` (Prometheus text), `/healthz`, `/readyz`
//! (etcd session live).
//!
//! [`http`]: crate::http

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use poem::http::StatusCode;
use poem::web::Data;
use poem::{IntoResponse, Response, handler};
use rcron_shared::RunStatus;
use rcron_shared::metrics::{Histogram, LATENCY_BUCKETS, counter, gauge, labelled_counter};

use crate::register::SessionLease;

/// Counters and gauges of one worker, shared by its subsystems.
#[derive(Debug)]
pub struct WorkerMetrics {
    /// Planned time → moment the run is handed to the runner.
    pub fire_lag: Histogram,
    /// Ticks whose command started on this worker.
    pub ticks_fired: AtomicU64,
    /// Ticks found too late to fire, or that waited for a free slot past
    /// `misfire_grace_secs` while no worker started them.
    pub ticks_missed: AtomicU64,
    /// Ticks of a `forbid` job not started because its previous run is
    /// still going on this worker.
    pub ticks_overlap_skipped: AtomicU64,
    /// Ticks that found every slot taken and waited for one.
    pub slot_waits: AtomicU64,
    /// Runs stopped because their `forbid` lock could not be kept.
    pub locks_lost: AtomicU64,
    /// Ticks another worker started first, or skipped because a `forbid`
    /// run was still going.
    pub lock_conflicts: AtomicU64,
    /// Waiting ticks given up on this worker after `misfire_grace_secs`
    /// without a free slot (another worker may have started them).
    pub no_slot: AtomicU64,
    /// Ticks not started because etcd could not be asked.
    pub lock_errors: AtomicU64,
    /// Ticks this worker was not first for, and waited its rank to try.
    pub placement_waits: AtomicU64,
    /// Of those, ticks found taken (or the job busy) after the wait:
    /// given up without an etcd transaction.
    pub placement_taken: AtomicU64,
    runs: [AtomicU64; 4],
    /// Runs executing now.
    pub running: AtomicU64,
    /// Run requests (run-now, chained) waiting to be claimed, as this
    /// worker sees them.
    pub run_requests: AtomicU64,
    /// Jobs in the plan.
    pub jobs: AtomicU64,
    /// Run records waiting in memory for MongoDB.
    pub log_buffered: AtomicU64,
    /// The clock's measured offset from the cluster's reference (ms);
    /// `i64::MIN` until measured.
    pub clock_offset_ms: AtomicI64,
    /// The offset is beyond `max_clock_skew_ms`: nothing fires.
    pub clock_skewed: AtomicBool,
    /// Ticks not fired because the clock is off (or not measured yet).
    pub clock_holds: AtomicU64,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self {
            fire_lag: Histogram::new(LATENCY_BUCKETS),
            ticks_fired: AtomicU64::new(0),
            ticks_missed: AtomicU64::new(0),
            ticks_overlap_skipped: AtomicU64::new(0),
            slot_waits: AtomicU64::new(0),
            locks_lost: AtomicU64::new(0),
            lock_conflicts: AtomicU64::new(0),
            no_slot: AtomicU64::new(0),
            lock_errors: AtomicU64::new(0),
            placement_waits: AtomicU64::new(0),
            placement_taken: AtomicU64::new(0),
            runs: Default::default(),
            running: AtomicU64::new(0),
            run_requests: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            log_buffered: AtomicU64::new(0),
            clock_offset_ms: AtomicI64::new(i64::MIN),
            clock_skewed: AtomicBool::new(false),
            clock_holds: AtomicU64::new(0),
        }
    }
}

const STATUSES: [RunStatus; 4] = [
    RunStatus::Success,
    RunStatus::Failed,
    RunStatus::Timeout,
    RunStatus::Killed,
];
// `interrupted` is only logged by a later start (outbox recovery): not a
// finished attempt of this process.

impl WorkerMetrics {
    /// Counts one finished attempt.
    pub fn run_ended(&self, status: RunStatus) {
        if let Some(i) = STATUSES.iter().position(|s| *s == status) {
            self.runs[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The text exposition; `spill_bytes` is measured by the caller.
    pub fn render(&self, spill_bytes: u64) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.fire_lag.render(
            &mut out,
            "rcron_worker_fire_lag_seconds",
            "Delay from a tick's planned time to its start.",
        );
        counter(
            &mut out,
            "rcron_worker_ticks_fired_total",
            "Ticks whose command started on this worker.",
            load(&self.ticks_fired),
        );
        counter(
            &mut out,
            "rcron_worker_ticks_missed_total",
            "Ticks no worker started: found too late, or waited for a slot past the misfire grace.",
            load(&self.ticks_missed),
        );
        counter(
            &mut out,
            "rcron_worker_ticks_overlap_skipped_total",
            "Ticks of forbid jobs not started because the previous run still runs here.",
            load(&self.ticks_overlap_skipped),
        );
        counter(
            &mut out,
            "rcron_worker_slot_waits_total",
            "Ticks that found every run slot taken and waited for one.",
            load(&self.slot_waits),
        );
        counter(
            &mut out,
            "rcron_worker_locks_lost_total",
            "Runs stopped because their forbid lock could not be kept.",
            load(&self.locks_lost),
        );
        counter(
            &mut out,
            "rcron_worker_lock_conflicts_total",
            "Ticks another worker started first, or a forbid run still held.",
            load(&self.lock_conflicts),
        );
        counter(
            &mut out,
            "rcron_worker_no_slot_total",
            "Waiting ticks given up here for lack of a free slot within the misfire grace.",
            load(&self.no_slot),
        );
        counter(
            &mut out,
            "rcron_worker_lock_errors_total",
            "Ticks not started because etcd could not be asked.",
            load(&self.lock_errors),
        );
        counter(
            &mut out,
            "rcron_worker_placement_waits_total",
            "Ticks this worker was not ranked first for, and waited its rank to try.",
            load(&self.placement_waits),
        );
        counter(
            &mut out,
            "rcron_worker_placement_taken_total",
            "Ticks found taken by a worker ranked before this one (or the job busy) after the wait.",
            load(&self.placement_taken),
        );
        let offset = self.clock_offset_ms.load(Ordering::Relaxed);
        gauge(
            &mut out,
            "rcron_worker_clock_offset_seconds",
            "This worker's clock minus the leader master's beacon (NaN until measured).",
            if offset == i64::MIN {
                f64::NAN
            } else {
                offset as f64 / 1000.0
            },
        );
        gauge(
            &mut out,
            "rcron_worker_clock_skewed",
            "1 while the clock offset exceeds max_clock_skew_ms (nothing fires).",
            f64::from(u8::from(self.clock_skewed.load(Ordering::Relaxed))),
        );
        counter(
            &mut out,
            "rcron_worker_clock_holds_total",
            "Ticks not fired because the clock was off or not yet measured.",
            load(&self.clock_holds),
        );
        let runs: Vec<(&str, u64)> = STATUSES
            .iter()
            .zip(&self.runs)
            .map(|(s, n)| (s.as_str(), load(n)))
            .collect();
        labelled_counter(
            &mut out,
            "rcron_worker_runs_total",
            "Finished run attempts by status.",
            "status",
            &runs,
        );
        gauge(
            &mut out,
            "rcron_worker_running_jobs",
            "Runs executing now.",
            load(&self.running) as f64,
        );
        gauge(
            &mut out,
            "rcron_worker_run_requests",
            "Run requests waiting to be claimed.",
            load(&self.run_requests) as f64,
        );
        gauge(
            &mut out,
            "rcron_worker_jobs",
            "Jobs scheduled on this worker.",
            load(&self.jobs) as f64,
        );
        gauge(
            &mut out,
            "rcron_worker_log_buffer_records",
            "Run records waiting in memory for MongoDB.",
            load(&self.log_buffered) as f64,
        );
        gauge(
            &mut out,
            "rcron_worker_spill_bytes",
            "Bytes of undelivered records and warnings on disk.",
            spill_bytes as f64,
        );
        out
    }
}

/// What the metrics routes read.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) metrics: Arc<WorkerMetrics>,
    pub(crate) spill_dir: PathBuf,
    pub(crate) lease: SessionLease,
}

fn dir_size(dir: &PathBuf) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[handler]
pub(crate) fn metrics_text(Data(s): Data<&Shared>) -> Response {
    Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(s.metrics.render(dir_size(&s.spill_dir)))
}

#[handler]
pub(crate) fn health() -> &'static str {
    "ok"
}

#[handler]
pub(crate) fn ready(Data(s): Data<&Shared>) -> Response {
    if s.metrics.clock_skewed.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the clock is off beyond max_clock_skew_ms",
        )
            .into_response();
    }
    if s.lease.borrow().is_some() {
        "ready".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no etcd session",
        )
            .into_response()
    }
}
