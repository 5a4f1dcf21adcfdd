//! `/api/v1/dashboard`: what an operator looks at first (ARCHITECTURE §6,
//! "Operator console"): runs and failures per minute and per quarter
//! hour, what runs now, what fires next, which jobs fail, workers' load
//! and the cluster's health.
//!
//! Computed at most once per 2 s per master ([`crate::console::Memo`]):
//! any number of open tabs cost the run log one set of queries per 2 s —
//! six `$bucket` aggregations over the time index, and two reads for the
//! failing jobs (see [`failing`]). On nx-27017 every operation costs a
//! sweep of its TTL index (~0.1 s at 100,000 records), so the count of
//! operations, not their size, sets the time. The rest comes from etcd
//! (registry, election, warnings) and the job cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use rcron_shared::WorkerInfo;
use rcron_shared::runlog::{RunLogError, Span, Tally};

use crate::api::cluster::{self, AlertCounters};
use crate::api::stats::LastRun;
use crate::api::{ApiTags, AppState};
use crate::job_cache::Cached;

/// Next fire times shown, at most.
pub const MAX_NEXT: usize = 100;
/// How far ahead `next` looks.
pub const NEXT_WITHIN: chrono::Duration = chrono::Duration::minutes(15);
/// Failing jobs shown, at most.
pub const MAX_FAILING: usize = 50;
/// Failures of the last 24 h read for `failing`, newest first, at most.
pub const FAILURE_SCAN: u64 = 5_000;
const MINUTE_MS: i64 = 60_000;
const QUARTER_MS: i64 = 900_000;
const DAY_MS: i64 = 86_400_000;

/// REST operation of the dashboard.
pub struct DashboardApi {
    state: Arc<AppState>,
}

impl DashboardApi {
    /// Operations over the shared state.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// Records started in one bucket of time.
#[derive(Debug, Clone, Object)]
pub struct Bucket {
    /// Its first millisecond.
    pub t: i64,
    /// Runs started (a command ran).
    pub runs: u64,
    /// Of those, runs that failed, timed out, were killed or interrupted.
    pub failed: u64,
    /// Ticks missed.
    pub missed: u64,
}

/// Equal buckets of time, oldest first; the last one is under way.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Series {
    /// Width of each bucket (s).
    pub bucket_secs: u32,
    /// The buckets (empty when MongoDB could not be read: see `errors`).
    pub buckets: Vec<Bucket>,
}

/// A run executing now.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct RunningRun {
    /// Its job.
    pub job: String,
    /// Its id (live output, kill).
    pub run_id: String,
    /// The worker running it.
    pub worker: String,
    /// That worker's host name.
    pub hostname: String,
    /// Its tick (ms).
    pub plan_time: i64,
    /// When its command started (ms).
    pub start_time: i64,
    /// How long it has been running (ms), when the dashboard was computed.
    pub elapsed_ms: i64,
}

/// The next time a job fires.
#[derive(Debug, Clone, Object)]
pub struct NextRun {
    /// The job.
    pub job: String,
    /// When (ms).
    pub time: i64,
}

/// A job whose last run did not succeed.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct FailingJob {
    /// The job.
    pub job: String,
    /// Its last run.
    pub last_run: LastRun,
    /// Its failed runs in the last 24 hours.
    pub failures_today: u64,
}

/// Ticks missed.
#[derive(Debug, Clone, Object)]
pub struct MissedCounts {
    /// In the last hour (the `hour` series).
    pub hour: u64,
    /// In the last day (the `day` series).
    pub day: u64,
}

/// A worker's load.
#[derive(Debug, Clone, Object)]
pub struct WorkerLoad {
    /// Its id.
    pub id: String,
    /// Its host name.
    pub hostname: String,
    /// Runs executing on it.
    pub running: u32,
    /// Most runs at once.
    pub capacity: u32,
    /// It starts nothing new (shutting down).
    pub draining: bool,
}

/// The cluster's health, in brief.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct DashboardHealth {
    /// The leading master's id; absent when none leads (or etcd is down).
    #[oai(skip_serializing_if_is_none)]
    pub leader: Option<String>,
    /// etcd answers.
    pub etcd: bool,
    /// MongoDB answers.
    pub mongo: bool,
    /// Warnings waiting for delivery.
    pub pending_alerts: u64,
    /// Alert sinks and this master's counters.
    pub alerts: AlertCounters,
}

/// What the operator console's front page shows.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Dashboard {
    /// When it was computed (ms); the same answer is served for 2 s.
    pub generated_at: i64,
    /// The cluster's zone (for labelling times).
    pub zone: String,
    /// Leader, etcd, MongoDB, alerts.
    pub health: DashboardHealth,
    /// The last hour by minute (60 buckets).
    pub hour: Series,
    /// The last day by quarter hour (96 buckets).
    pub day: Series,
    /// Runs executing now, longest-running first.
    pub running: Vec<RunningRun>,
    /// Each enabled job's next fire within 15 minutes, soonest first (at
    /// most 100).
    pub next: Vec<NextRun>,
    /// Jobs whose last run did not succeed, among those with a failure in
    /// the last 24 hours; latest first, at most 50.
    pub failing: Vec<FailingJob>,
    /// Missed ticks.
    pub missed: MissedCounts,
    /// Live workers.
    pub workers: Vec<WorkerLoad>,
    /// What could not be read (the rest is shown): etcd or MongoDB down.
    pub errors: Vec<String>,
    /// How long computing it took (ms).
    pub compute_ms: u64,
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Cluster")]
impl DashboardApi {
    /// Dashboard
    ///
    /// Runs and failures per minute over the last hour and per quarter
    /// hour over the last day, runs executing now, next fires, failing
    /// jobs, missed ticks, workers' load and the cluster's health. Always
    /// 200: what could not be read (etcd or MongoDB down) is empty and
    /// named in `errors`. Computed at most once per 2 s per master; every
    /// caller in between gets the same answer.
    #[oai(path = "/dashboard", method = "get", operation_id = "dashboard")]
    async fn dashboard(&self) -> Json<Dashboard> {
        let state = &self.state;
        let dashboard = state.dashboard.get(|| compute(state)).await;
        Json((*dashboard).clone())
    }
}

/// The dashboard as of now.
pub async fn compute(state: &AppState) -> Dashboard {
    let started = Instant::now();
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let mut errors = Vec::new();
    let (etcd, logs) = tokio::join!(from_etcd(state), from_log(state, now_ms));
    let (workers, masters, pending, etcd_ok, jobs) = etcd;
    let workers = workers.unwrap_or_else(|e| {
        errors.push(format!("workers: {e}"));
        Vec::new()
    });
    let leader = match masters {
        Ok(m) => m.into_iter().find(|m| m.leader).map(|m| m.id),
        Err(e) => {
            errors.push(format!("leader: {e}"));
            None
        }
    };
    let pending_alerts = pending.unwrap_or_else(|e| {
        errors.push(format!("pending alerts: {e}"));
        0
    });
    let next = match jobs {
        Ok(jobs) => next_fires(&jobs, now),
        Err(e) => {
            errors.push(format!("jobs: {e}"));
            Vec::new()
        }
    };
    let (mongo, hour, day, failing) = logs;
    if let Err(e) = &mongo {
        errors.push(e.to_string());
    }
    let as_series =
        |bucket_ms: i64, read: Result<Vec<Bucket>, RunLogError>, errors: &mut Vec<_>| Series {
            bucket_secs: (bucket_ms / 1000) as u32,
            buckets: read.unwrap_or_else(|e| {
                if mongo.is_ok() {
                    errors.push(e.to_string());
                }
                Vec::new()
            }),
        };
    let hour = as_series(MINUTE_MS, hour, &mut errors);
    let day = as_series(QUARTER_MS, day, &mut errors);
    let failing = failing.unwrap_or_else(|e| {
        if mongo.is_ok() {
            errors.push(e.to_string());
        }
        Vec::new()
    });
    let missed = MissedCounts {
        hour: hour.buckets.iter().map(|b| b.missed).sum(),
        day: day.buckets.iter().map(|b| b.missed).sum(),
    };
    Dashboard {
        generated_at: now_ms,
        zone: state.timezone.name().to_string(),
        health: DashboardHealth {
            leader,
            etcd: etcd_ok,
            mongo: mongo.is_ok(),
            pending_alerts,
            alerts: cluster::alert_counters(state),
        },
        hour,
        day,
        running: running(&workers, now_ms),
        next,
        failing,
        missed,
        workers: workers
            .iter()
            .map(|w| WorkerLoad {
                id: w.id.clone(),
                hostname: w.hostname.clone(),
                running: w.runs.len().max(w.running.len()) as u32,
                capacity: w.capacity,
                draining: w.draining,
            })
            .collect(),
        errors,
        compute_ms: started.elapsed().as_millis() as u64,
    }
}

type EtcdPart = (
    Result<Vec<WorkerInfo>, crate::Error>,
    Result<Vec<cluster::MasterView>, crate::Error>,
    Result<u64, crate::Error>,
    bool,
    Result<Vec<Cached>, crate::Error>,
);

async fn from_etcd(state: &AppState) -> EtcdPart {
    let jobs = async {
        // The cache once it has applied this master's own writes (a job
        // just saved here is among the next runs), else etcd.
        if state.jobs.has_own_writes(&state.store).await {
            Ok::<Vec<Cached>, crate::Error>(state.jobs.all())
        } else {
            let listed = state.store.list().await?;
            Ok(state.jobs.index(listed).into_values().collect())
        }
    };
    let (workers, masters, pending, ping, jobs) = tokio::join!(
        state.workers.list(),
        cluster::masters(state),
        cluster::pending_count(state),
        state.store.ping(),
        jobs,
    );
    (workers, masters, pending, ping.is_ok(), jobs)
}

type LogPart = (
    Result<(), RunLogError>,
    Result<Vec<Bucket>, RunLogError>,
    Result<Vec<Bucket>, RunLogError>,
    Result<Vec<FailingJob>, RunLogError>,
);

async fn from_log(state: &AppState, now_ms: i64) -> LogPart {
    // The current bucket is the last one: series end where it ends.
    let hour = bounds(now_ms, MINUTE_MS, 60);
    let day = bounds(now_ms, QUARTER_MS, 96);
    let (ping, hour, day, failing) = tokio::join!(
        state.logs.ping(),
        series(state, &hour),
        series(state, &day),
        failing(state, now_ms),
    );
    (ping, hour, day, failing)
}

/// `n + 1` boundaries of `n` buckets of `width` ms, the last bucket
/// holding `now`.
fn bounds(now: i64, width: i64, n: i64) -> Vec<i64> {
    let end = now.div_euclid(width) * width + width;
    (0..=n).map(|i| end - (n - i) * width).collect()
}

async fn series(state: &AppState, bounds: &[i64]) -> Result<Vec<Bucket>, RunLogError> {
    let logs = &*state.logs;
    let (runs, failed, missed) = tokio::try_join!(
        logs.histogram(None, Tally::Runs, bounds),
        logs.histogram(None, Tally::Failed, bounds),
        logs.histogram(None, Tally::Missed, bounds),
    )?;
    Ok((0..runs.len())
        .map(|i| Bucket {
            t: bounds[i],
            runs: runs[i],
            failed: failed[i],
            missed: missed[i],
        })
        .collect())
}

/// Jobs whose last run failed. Such a job failed in the last 24 h and
/// its newest failure there is newer than its newest success: its last run
/// is that failure (a run either succeeds or fails). Two reads, whatever
/// the number of jobs: the newest failures of the last 24 h (at most
/// [`FAILURE_SCAN`]; counts per job come from them, or from a count per
/// shown job when the scan is full) and each job's newest success.
async fn failing(state: &AppState, now_ms: i64) -> Result<Vec<FailingJob>, RunLogError> {
    let logs = &*state.logs;
    let day = Span {
        from: now_ms - DAY_MS,
        to: i64::MAX,
    };
    let (failures, successes) = tokio::try_join!(
        logs.recent(Tally::Failed, day, FAILURE_SCAN),
        logs.newest_by_job(Tally::Succeeded, day),
    )?;
    let full = failures.len() as u64 >= FAILURE_SCAN;
    let mut by_job: HashMap<&str, (&rcron_shared::LogRecord, u64)> = HashMap::new();
    for f in &failures {
        // Newest first: the first of a job is its newest failure.
        by_job.entry(f.job_name.as_str()).or_insert((f, 0)).1 += 1;
    }
    let mut failing: Vec<FailingJob> = by_job
        .into_iter()
        .filter(|(job, (last, _))| successes.get(*job).is_none_or(|s| *s < last.start_time))
        .map(|(job, (last, n))| FailingJob {
            job: job.to_string(),
            last_run: LastRun::from(last),
            failures_today: n,
        })
        .collect();
    failing.sort_by(|a, b| (b.last_run.start_time, &a.job).cmp(&(a.last_run.start_time, &b.job)));
    failing.truncate(MAX_FAILING);
    if full {
        for f in &mut failing {
            f.failures_today = logs.count_in(Some(&f.job), Tally::Failed, day).await?;
        }
    }
    Ok(failing)
}

fn running(workers: &[WorkerInfo], now_ms: i64) -> Vec<RunningRun> {
    let mut running: Vec<RunningRun> = workers
        .iter()
        .flat_map(|w| {
            w.runs.iter().map(|r| RunningRun {
                job: r.job.clone(),
                run_id: r.run_id.clone(),
                worker: w.id.clone(),
                hostname: w.hostname.clone(),
                plan_time: r.plan_time,
                start_time: r.start_time,
                elapsed_ms: (now_ms - r.start_time).max(0),
            })
        })
        .collect();
    running.sort_by(|a, b| (a.start_time, &a.job).cmp(&(b.start_time, &b.job)));
    running
}

/// Each enabled job's next fire within [`NEXT_WITHIN`], soonest first.
fn next_fires(jobs: &[Cached], now: DateTime<Utc>) -> Vec<NextRun> {
    let horizon = now + NEXT_WITHIN;
    // Jobs sharing a schedule share its next fire time.
    let mut by_schedule = HashMap::new();
    let mut next: Vec<NextRun> = jobs
        .iter()
        .filter_map(|c| {
            let schedule = c.schedule.as_ref()?;
            if c.job.disabled {
                return None;
            }
            let at = *by_schedule
                .entry(Arc::as_ptr(schedule) as usize)
                .or_insert_with(|| c.next_fire(now));
            let at = at.filter(|t| *t <= horizon)?;
            Some(NextRun {
                job: c.job.name.to_string(),
                time: at.timestamp_millis(),
            })
        })
        .collect();
    next.sort_by(|a, b| (a.time, &a.job).cmp(&(b.time, &b.job)));
    next.truncate(MAX_NEXT);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_end_with_the_one_under_way() {
        let b = bounds(125_000, MINUTE_MS, 3);
        assert_eq!(b, vec![0, 60_000, 120_000, 180_000]);
    }
}
