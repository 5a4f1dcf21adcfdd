//! `/api/v1/logs`, `/api/v1/jobs/{name}/logs` and `/api/v1/workers`: what
//! ran, how it ended, and who runs things.

use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};
use rcron_shared::{JobName, LogRecord, RunStatus, WorkerInfo};

use crate::Error;
use crate::api::{ApiError, ApiTags, AppState};
use rcron_shared::runlog::LogQuery;

/// REST operations on run logs and workers.
pub struct LogsApi {
    state: Arc<AppState>,
}

impl LogsApi {
    /// Operations over the shared state.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum StatusDto {
    /// Exit code 0.
    Success,
    /// Non-zero exit, signal, or could not start.
    Failed,
    /// Killed after `timeoutSecs`.
    Timeout,
    /// Killed on request, at worker shutdown, or because its worker lost
    /// the job's lock (`reason` says which).
    Killed,
    /// Its worker died during the run; the outcome is unknown and `endTime`
    /// is the last time the worker was seen alive (or when the leftover
    /// process group was killed by the next start).
    Interrupted,
    /// The tick ran no command on purpose: the previous run of a `forbid`
    /// job was still going (`reason`).
    Skipped,
    /// The tick should have run and did not: late, no free slot, no live
    /// worker, or nobody took it in time (`reason`).
    Missed,
}

impl From<StatusDto> for RunStatus {
    fn from(s: StatusDto) -> Self {
        match s {
            StatusDto::Success => Self::Success,
            StatusDto::Failed => Self::Failed,
            StatusDto::Timeout => Self::Timeout,
            StatusDto::Killed => Self::Killed,
            StatusDto::Interrupted => Self::Interrupted,
            StatusDto::Skipped => Self::Skipped,
            StatusDto::Missed => Self::Missed,
        }
    }
}

impl From<RunStatus> for StatusDto {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Success => Self::Success,
            RunStatus::Failed => Self::Failed,
            RunStatus::Timeout => Self::Timeout,
            RunStatus::Killed => Self::Killed,
            RunStatus::Interrupted => Self::Interrupted,
            RunStatus::Skipped => Self::Skipped,
            RunStatus::Missed => Self::Missed,
        }
    }
}

/// One run. Times are milliseconds since the Unix epoch, as in the
/// original system's log documents.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct LogEntry {
    /// The job's name.
    pub job_name: String,
    /// The command as run.
    pub command: String,
    /// Why the run did not succeed; empty on success.
    pub err: String,
    /// Captured stdout and stderr (head and tail when truncated).
    pub output: String,
    /// The tick the run belongs to.
    pub plan_time: i64,
    /// When the scheduler fired it.
    pub schedule_time: i64,
    /// When the process started.
    pub start_time: i64,
    /// When it ended.
    pub end_time: i64,
    /// Unique id of the run.
    pub run_id: String,
    /// Id of the worker that ran it.
    pub worker: String,
    /// Exit code, when the process exited normally.
    #[oai(skip_serializing_if_is_none)]
    pub exit_code: Option<i32>,
    /// How it ended.
    pub status: StatusDto,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
    /// Whether part of the output was dropped.
    pub output_truncated: bool,
    /// Why the run ended as it did, when the status alone does not say
    /// (`lock lost`, `worker shutdown`, `killed on request`, `worker died`).
    #[oai(skip_serializing_if_is_none)]
    pub reason: Option<String>,
    /// What started it: `schedule`, `manual` (run now) or `chain`.
    pub trigger: rcron_shared::Trigger,
    /// For a chained run: the run whose end requested it.
    #[oai(skip_serializing_if_is_none)]
    pub triggered_by: Option<rcron_shared::TriggeredBy>,
    /// What its run-now request set for it (`env`).
    #[oai(skip_serializing_if_is_none)]
    pub params: Option<rcron_shared::RunParams>,
}

impl From<LogRecord> for LogEntry {
    fn from(r: LogRecord) -> Self {
        Self {
            job_name: r.job_name,
            command: r.command,
            err: r.err,
            output: r.output,
            plan_time: r.plan_time,
            schedule_time: r.schedule_time,
            start_time: r.start_time,
            end_time: r.end_time,
            run_id: r.run_id,
            worker: r.worker,
            exit_code: r.exit_code,
            status: r.status.into(),
            attempt: r.attempt,
            output_truncated: r.output_truncated,
            reason: r.reason,
            trigger: r.trigger,
            triggered_by: r.triggered_by,
            params: r.params,
        }
    }
}

/// A page of runs, newest first.
#[derive(Debug, Object)]
pub struct LogPageDto {
    /// The runs on this page.
    pub logs: Vec<LogEntry>,
    /// How many runs match the filter in all.
    pub total: u64,
    /// Runs skipped before this page.
    pub skip: u64,
    /// Most runs on a page.
    pub limit: u64,
}

/// A registered worker.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct WorkerView {
    /// Unique worker id.
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// Address.
    pub ip: String,
    /// Process id.
    pub pid: u32,
    /// rcron version.
    pub version: String,
    /// Start time (ms since the epoch).
    pub start_time: i64,
    /// Most runs at once.
    pub capacity: u32,
    /// Jobs running now.
    pub running: Vec<String>,
    /// The runs executing now, with their ids (kill one with
    /// `POST /runs/{runId}/kill`).
    pub runs: Vec<RunningView>,
    /// The worker is shutting down: it starts nothing new and waits for
    /// its runs (holding their locks) before it leaves.
    pub draining: bool,
    /// The zone it fires jobs without `timezone` in (empty: an older worker).
    pub timezone: String,
    /// Its labels (`RCRON_WORKER_LABELS`): jobs whose `target.labels` it
    /// carries all of may run here.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its clock minus the leader master's beacon (ms); absent until measured.
    #[oai(skip_serializing_if_is_none)]
    pub clock_offset_ms: Option<i64>,
    /// The offset is beyond its `max_clock_skew_ms`: it fires nothing.
    pub clock_skewed: bool,
}

/// A run executing on a worker.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct RunningView {
    /// The job.
    pub job: String,
    /// The run's id.
    pub run_id: String,
    /// The tick (ms).
    pub plan_time: i64,
    /// When its command started (ms).
    pub start_time: i64,
}

impl From<WorkerInfo> for WorkerView {
    fn from(w: WorkerInfo) -> Self {
        Self {
            id: w.id,
            hostname: w.hostname,
            ip: w.ip,
            pid: w.pid,
            version: w.version,
            start_time: w.start_time,
            capacity: w.capacity,
            running: w.running,
            runs: w
                .runs
                .into_iter()
                .map(|r| RunningView {
                    job: r.job,
                    run_id: r.run_id,
                    plan_time: r.plan_time,
                    start_time: r.start_time,
                })
                .collect(),
            draining: w.draining,
            timezone: w.timezone,
            labels: w.labels,
            clock_offset_ms: w.clock_offset_ms,
            clock_skewed: w.clock_skewed,
        }
    }
}

/// Every live worker.
#[derive(Debug, Object)]
pub struct WorkerList {
    /// Workers sorted by id; one disappears when its lease expires.
    pub workers: Vec<WorkerView>,
}

impl LogsApi {
    async fn page(
        &self,
        job: Option<String>,
        status: Option<StatusDto>,
        skip: u64,
        limit: u64,
    ) -> Result<Json<LogPageDto>, ApiError> {
        let page = self
            .state
            .logs
            .query(&LogQuery {
                job,
                status: status.map(RunStatus::from),
                runs_only: false,
                skip,
                limit,
            })
            .await?;
        Ok(Json(LogPageDto {
            logs: page.records.into_iter().map(LogEntry::from).collect(),
            total: page.total,
            skip,
            limit,
        }))
    }
}

fn default_limit() -> u64 {
    20
}

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Logs")]
impl LogsApi {
    /// List runs of every job
    ///
    /// Newest first; filter by job and status; 503 while MongoDB is unreachable.
    #[oai(path = "/logs", method = "get", operation_id = "listLogs")]
    async fn list(
        &self,
        /// Only this job's runs (an exact name).
        job: Query<Option<String>>,
        /// Only runs that ended this way.
        status: Query<Option<StatusDto>>,
        /// Runs to skip.
        #[oai(default)]
        skip: Query<u64>,
        /// Runs per page (1–1000).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u64>,
    ) -> Result<Json<LogPageDto>, ApiError> {
        // A filter, not a reference: a name no job has simply matches nothing.
        self.page(job.0, status.0, skip.0, limit.0).await
    }

    /// List runs of a job
    ///
    /// Newest first; the job need not exist any more.
    #[oai(
        path = "/jobs/:name/logs",
        method = "get",
        operation_id = "listJobLogs"
    )]
    async fn job_logs(
        &self,
        name: Path<String>,
        /// Only runs that ended this way.
        status: Query<Option<StatusDto>>,
        /// Runs to skip.
        #[oai(default)]
        skip: Query<u64>,
        /// Runs per page (1–1000).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u64>,
    ) -> Result<Json<LogPageDto>, ApiError> {
        let name = JobName::new(name.0).map_err(Error::from)?;
        self.page(Some(name.to_string()), status.0, skip.0, limit.0)
            .await
    }

    /// List workers
    ///
    /// Every worker whose registration lease is alive.
    #[oai(
        path = "/workers",
        method = "get",
        operation_id = "listWorkers",
        tag = "ApiTags::Workers"
    )]
    async fn workers(&self) -> Result<Json<WorkerList>, ApiError> {
        let workers = self.state.workers.list().await?;
        Ok(Json(WorkerList {
            workers: workers.into_iter().map(WorkerView::from).collect(),
        }))
    }
}
