//! `/api/v1/jobs/{name}/stats`: how a job behaved day by day, and its
//! last runs (ARCHITECTURE §6, "Operator console").
//!
//! Counts per day are `$bucket` aggregations over the job's index range
//! (one per outcome, run together). Duration percentiles need the
//! durations themselves (`$percentile` is MongoDB 7 only, and nx-27017
//! has none): the job's run times over the window are read newest first,
//! start and end only, up to [`SCAN_CAP`]; the percentiles of days that
//! scan did not reach in full come from the newest [`DAY_SAMPLE`] runs of
//! each such day. So a stats request reads at most
//! `SCAN_CAP + days × DAY_SAMPLE` small documents, however often the job
//! runs, and `durationSamples` says how many runs each day's percentiles
//! are of.

use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use futures::StreamExt;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use rcron_shared::runlog::{RunLogError, RunLogReader, RunTime, Span, Tally};
use rcron_shared::{JobName, LogRecord};

use crate::Error;
use crate::api::logs::StatusDto;
use crate::api::{ApiError, ApiTags, AppState};

/// Most run times one stats request reads in its first scan.
pub const SCAN_CAP: u64 = 10_000;
/// Run times read per day the first scan did not cover.
pub const DAY_SAMPLE: u64 = 1_000;
/// Runs in `lastRuns`.
pub const LAST_RUNS: u64 = 100;
/// Most days a stats request covers.
pub const MAX_DAYS: u32 = 30;

/// REST operations on job statistics.
pub struct StatsApi {
    state: Arc<AppState>,
}

impl StatsApi {
    /// Operations over the shared state.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// A finished run, in brief. Times are ms since the epoch.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct LastRun {
    /// The run's id (`GET /runs/{runId}` has its output).
    pub run_id: String,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
    /// When its command started.
    pub start_time: i64,
    /// When it ended.
    pub end_time: i64,
    /// `endTime - startTime`.
    pub duration_ms: i64,
    /// How it ended.
    pub status: StatusDto,
}

impl From<&LogRecord> for LastRun {
    fn from(r: &LogRecord) -> Self {
        Self {
            run_id: r.run_id.clone(),
            attempt: r.attempt,
            start_time: r.start_time,
            end_time: r.end_time,
            duration_ms: RunTime::of(r).duration_ms,
            status: r.status.into(),
        }
    }
}

/// One day of a job.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct DayStats {
    /// The day (`YYYY-MM-DD`) in the job's zone.
    pub day: String,
    /// Its first millisecond.
    pub start: i64,
    /// Runs started that day (a command ran; `skipped` and `missed` ticks
    /// are not runs).
    pub runs: u64,
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Runs that failed, timed out, were killed or interrupted.
    pub failed: u64,
    /// Ticks skipped on purpose (the previous run still going).
    pub skipped: u64,
    /// Ticks missed.
    pub missed: u64,
    /// `succeeded / runs`; absent without runs.
    #[oai(skip_serializing_if_is_none)]
    pub success_rate: Option<f64>,
    /// Median duration of the day's runs (ms); absent without runs.
    #[oai(skip_serializing_if_is_none)]
    pub p50_ms: Option<i64>,
    /// 95th percentile of their durations (ms); absent without runs.
    #[oai(skip_serializing_if_is_none)]
    pub p95_ms: Option<i64>,
    /// How many runs the percentiles are of: all of the day's, or its
    /// newest ones (at least 1,000) when it had more than a stats request
    /// reads.
    pub duration_samples: u64,
}

/// How a job behaved.
#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct JobStats {
    /// The job (it need not exist any more).
    pub name: String,
    /// The zone its days are in: its `timezone`, else the cluster's.
    pub zone: String,
    /// How many days `daily` covers.
    pub days: u32,
    /// Its newest runs (at most 100, verdicts aside), newest first.
    pub last_runs: Vec<LastRun>,
    /// One entry per day, oldest first, today last (so far).
    pub daily: Vec<DayStats>,
}

fn default_days() -> u32 {
    MAX_DAYS
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Jobs")]
impl StatsApi {
    /// Statistics of a job
    ///
    /// Its last 100 runs, and per day over the last `days` days (in its
    /// zone, today included): runs, successes, failures, skipped and
    /// missed ticks, success rate, and duration p50/p95. Days without runs
    /// are listed with zeros. Works for a deleted job's records (an
    /// unknown name has no runs); 503 while MongoDB is unreachable.
    #[oai(path = "/jobs/:name/stats", method = "get", operation_id = "jobStats")]
    async fn stats(
        &self,
        name: Path<String>,
        /// Days to cover, 1–30.
        #[oai(
            default = "default_days",
            validator(minimum(value = "1"), maximum(value = "30"))
        )]
        days: Query<u32>,
    ) -> Result<Json<JobStats>, ApiError> {
        let name = JobName::new(name.0).map_err(Error::from)?;
        let zone = self.zone_of(&name).await;
        let stats = job_stats(&*self.state.logs, name.as_str(), zone, days.0, Utc::now()).await?;
        Ok(Json(stats))
    }
}

impl StatsApi {
    /// The job's zone; the cluster's for a job that is gone (or when etcd
    /// cannot say).
    async fn zone_of(&self, name: &JobName) -> Tz {
        let cluster = self.state.timezone;
        // A job saved through this master a moment ago is read with its
        // zone, not the cluster's.
        let job = self
            .state
            .jobs
            .job(name, &self.state.store)
            .await
            .ok()
            .flatten();
        job.map_or(cluster, |j| j.zone(cluster))
    }
}

/// The first instant of `date` in `zone` (later than midnight on days a
/// clock change skips midnight).
pub fn start_of_day(zone: Tz, date: NaiveDate) -> DateTime<Tz> {
    let midnight = date.and_time(NaiveTime::MIN);
    (0..=24)
        .find_map(|h| {
            zone.from_local_datetime(&(midnight + chrono::Duration::minutes(30 * h)))
                .earliest()
        })
        // Every zone has a valid local time within 12 hours of midnight.
        .unwrap_or_else(|| zone.from_utc_datetime(&midnight))
}

/// The statistics of `job` over the `days` days up to `now` in `zone`.
pub async fn job_stats(
    logs: &dyn RunLogReader,
    job: &str,
    zone: Tz,
    days: u32,
    now: DateTime<Utc>,
) -> Result<JobStats, RunLogError> {
    let days = days.clamp(1, MAX_DAYS);
    let today = now.with_timezone(&zone).date_naive();
    let first = today - Days::new(u64::from(days - 1));
    let dates: Vec<NaiveDate> = (0..=u64::from(days))
        .map(|i| first + Days::new(i))
        .collect();
    let bounds: Vec<i64> = dates
        .iter()
        .map(|d| start_of_day(zone, *d).timestamp_millis())
        .collect();
    let window = Span {
        from: bounds[0],
        to: bounds[days as usize],
    };
    let count = |tally| logs.histogram(Some(job), tally, &bounds);
    let (runs, succeeded, failed, skipped, missed, last, times) = tokio::try_join!(
        count(Tally::Runs),
        count(Tally::Succeeded),
        count(Tally::Failed),
        count(Tally::Skipped),
        count(Tally::Missed),
        logs.latest_runs(job, LAST_RUNS),
        logs.run_times(job, window, SCAN_CAP),
    )?;
    let mut per_day: Vec<Vec<i64>> = vec![Vec::new(); days as usize];
    // Days the scan reached in full: every run after its oldest one.
    let covered_from = if times.len() as u64 >= SCAN_CAP {
        times.last().map_or(window.to, |t| t.start_time + 1)
    } else {
        window.from
    };
    for t in &times {
        let i = bounds.partition_point(|b| *b <= t.start_time);
        if (1..=days as usize).contains(&i) {
            per_day[i - 1].push(t.duration_ms);
        }
    }
    // A day the scan reached in part is sampled again unless it already
    // has as many as a sample would.
    let partial: Vec<usize> = (0..days as usize)
        .filter(|i| bounds[*i] < covered_from)
        .filter(|i| (per_day[*i].len() as u64) < runs[*i].min(DAY_SAMPLE))
        .collect();
    let bounds_ref = &bounds;
    let sampled: Vec<(usize, Result<Vec<RunTime>, RunLogError>)> = futures::stream::iter(partial)
        .map(|i| async move {
            let bounds = bounds_ref;
            let span = Span {
                from: bounds[i],
                to: bounds[i + 1],
            };
            (i, logs.run_times(job, span, DAY_SAMPLE).await)
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for (i, times) in sampled {
        per_day[i] = times?.iter().map(|t| t.duration_ms).collect();
    }
    let daily = (0..days as usize)
        .map(|i| {
            let durations = &mut per_day[i];
            durations.sort_unstable();
            DayStats {
                day: dates[i].format("%Y-%m-%d").to_string(),
                start: bounds[i],
                runs: runs[i],
                succeeded: succeeded[i],
                failed: failed[i],
                skipped: skipped[i],
                missed: missed[i],
                success_rate: (runs[i] > 0).then(|| succeeded[i] as f64 / runs[i] as f64),
                p50_ms: percentile(durations, 0.50),
                p95_ms: percentile(durations, 0.95),
                duration_samples: durations.len() as u64,
            }
        })
        .collect();
    Ok(JobStats {
        name: job.to_string(),
        zone: zone.name().to_string(),
        days,
        last_runs: last.iter().map(LastRun::from).collect(),
        daily,
    })
}

/// The `q` quantile of `sorted` by nearest rank; None when empty.
pub fn percentile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcron_shared::RunStatus;
    use rcron_shared::runlog::RunLogWriter;
    use rcron_shared::runlog::memory::MemoryRunLog;

    #[test]
    fn percentiles_by_nearest_rank() {
        let d: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&d, 0.5), Some(50));
        assert_eq!(percentile(&d, 0.95), Some(95));
        assert_eq!(percentile(&[7], 0.95), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn a_day_starts_at_its_first_valid_local_time() {
        // Santiago skipped 2022-09-11 00:00–01:00.
        let zone: Tz = "America/Santiago".parse().expect("zone");
        let date = NaiveDate::from_ymd_opt(2022, 9, 11).expect("date");
        let start = start_of_day(zone, date);
        assert_eq!(start.format("%H:%M").to_string(), "01:00");
        let utc = start_of_day(chrono_tz::UTC, date);
        assert_eq!(utc.timestamp_millis() % 86_400_000, 0);
    }

    fn record(run: &str, start: i64, ms: i64, status: RunStatus) -> LogRecord {
        let mut r =
            rcron_shared::verdict::record_of("j", "true", start, status, String::new(), "w", start);
        r.run_id = run.to_string();
        r.start_time = start;
        r.end_time = start + ms;
        r
    }

    #[tokio::test]
    async fn days_the_first_scan_misses_are_sampled_per_day() {
        let log = MemoryRunLog::new();
        let now = Utc
            .with_ymd_and_hms(2026, 3, 10, 12, 0, 0)
            .single()
            .expect("now");
        let today = now.timestamp_millis() - 12 * 3_600_000;
        let day = 86_400_000;
        // Today fills the first scan; yesterday is read by its own sample.
        let mut records: Vec<LogRecord> = (0..SCAN_CAP as i64)
            .map(|i| record(&format!("t{i}"), today + i, 10, RunStatus::Success))
            .collect();
        records.push(record("y1", today - day, 300, RunStatus::Failed));
        records.push(record("y2", today - day + 5, 100, RunStatus::Success));
        records.push(record("v", today - day + 9, 0, RunStatus::Missed));
        log.write(&records).await.expect("write");
        let stats = job_stats(&log, "j", chrono_tz::UTC, 2, now)
            .await
            .expect("stats");
        let y = &stats.daily[0];
        assert_eq!((y.runs, y.succeeded, y.failed, y.missed), (2, 1, 1, 1));
        assert_eq!(
            (y.p50_ms, y.p95_ms, y.duration_samples),
            (Some(100), Some(300), 2)
        );
        assert_eq!(y.success_rate, Some(0.5));
        let t = &stats.daily[1];
        assert_eq!(
            (t.runs, t.duration_samples, t.p50_ms),
            (SCAN_CAP, SCAN_CAP, Some(10))
        );
        assert_eq!(stats.last_runs.len(), LAST_RUNS as usize);
        assert_eq!(stats.last_runs[0].start_time, today + SCAN_CAP as i64 - 1);
    }
}
