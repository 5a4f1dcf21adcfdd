//! `/api/v1/logs`, `/api/v1/jobs/{name}/logs` and `/api/v1/workers`: what
//! ran, how it ended, and who runs things.

use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};
use rcron_shared::{JobName, LogRecord, RunStatus, WorkerInfo};

use crate::Error;
use crate::api::{ApiError, ApiTags, AppState};
use rcron_shared::runlog::{LogCursor, LogQuery};

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
    /// Captured stdout and stderr (head and tail when truncated); absent
    /// from a page of the list unless it asked for `output=true`.
    #[oai(skip_serializing_if_is_none)]
    pub output: Option<String>,
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
            output: Some(r.output),
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
#[oai(rename_all = "camelCase")]
pub struct LogPageDto {
    /// The runs on this page (without `output` unless `output=true`:
    /// `GET /runs/{runId}` has it).
    pub logs: Vec<LogEntry>,
    /// How many runs match the filter in all, counted up to 10,000.
    pub total: u64,
    /// There are more than `total` (10,000) matching runs: show "10,000+".
    pub total_capped: bool,
    /// Pass as `before` for the next (older) page; absent on the last.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
    /// Runs skipped before this page.
    pub skip: u64,
    /// Most runs on a page.
    pub limit: u64,
}

/// Every attempt of one run.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct RunDto {
    /// The run's id.
    pub run_id: String,
    /// Its job.
    pub job_name: String,
    /// Its attempts, first first, with their output.
    pub attempts: Vec<LogEntry>,
}

/// Which page of runs to read.
struct PageParams {
    job: Option<String>,
    status: Option<StatusDto>,
    worker: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    skip: u64,
    before: Option<String>,
    limit: u64,
    output: bool,
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
    async fn page(&self, p: PageParams) -> Result<Json<LogPageDto>, ApiError> {
        let before = p
            .before
            .as_deref()
            .map(LogCursor::parse)
            .transpose()
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        if let (Some(from), Some(to)) = (p.from, p.to)
            && from > to
        {
            return Err(Error::BadRequest(format!(
                "`from` ({from}) must not be after `to` ({to})"
            ))
            .into());
        }
        let page = self
            .state
            .logs
            .query(&LogQuery {
                job: p.job,
                status: p.status.map(RunStatus::from),
                worker: p.worker,
                from: p.from,
                to: p.to,
                runs_only: false,
                skip: p.skip,
                before,
                limit: p.limit,
                with_output: p.output,
            })
            .await?;
        let without_output = !p.output;
        Ok(Json(LogPageDto {
            logs: page
                .records
                .into_iter()
                .map(LogEntry::from)
                .map(|mut e| {
                    if without_output {
                        // Not read: absent, not "printed nothing".
                        e.output = None;
                    }
                    e
                })
                .collect(),
            total: page.total,
            total_capped: page.total_capped,
            next_cursor: page.next.as_ref().map(LogCursor::encode),
            skip: p.skip,
            limit: p.limit,
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
    /// Newest first; filter by job, status, worker and start time
    /// (`from` ≤ startTime < `to`; 400 when `from` is after `to`); 503
    /// while MongoDB is unreachable.
    #[oai(path = "/logs", method = "get", operation_id = "listLogs")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        /// Only this job's runs (an exact name).
        job: Query<Option<String>>,
        /// Only runs that ended this way.
        status: Query<Option<StatusDto>>,
        /// Only runs of this worker (its exact id).
        #[oai(validator(max_length = 256))]
        worker: Query<Option<String>>,
        /// Only runs that started at or after this time (ms since the epoch).
        from: Query<Option<i64>>,
        /// Only runs that started before this time (ms since the epoch).
        to: Query<Option<i64>>,
        /// The previous page's `nextCursor`: the page after it.
        #[oai(validator(max_length = 128))]
        before: Query<Option<String>>,
        /// Runs to skip (slow deep in a big log: follow `nextCursor`).
        #[oai(default)]
        skip: Query<u64>,
        /// Runs per page (1–1000).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u64>,
        /// Include each run's output (else `GET /runs/{runId}` has it).
        #[oai(default)]
        output: Query<bool>,
    ) -> Result<Json<LogPageDto>, ApiError> {
        // A filter, not a reference: a name no job has simply matches nothing.
        self.page(PageParams {
            job: job.0,
            status: status.0,
            worker: worker.0,
            from: from.0,
            to: to.0,
            skip: skip.0,
            before: before.0,
            limit: limit.0,
            output: output.0,
        })
        .await
    }

    /// List runs of a job
    ///
    /// Newest first; filter by status, worker and start time as
    /// `GET /logs`; the job need not exist any more.
    #[oai(
        path = "/jobs/:name/logs",
        method = "get",
        operation_id = "listJobLogs"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn job_logs(
        &self,
        name: Path<String>,
        /// Only runs that ended this way.
        status: Query<Option<StatusDto>>,
        /// Only runs of this worker (its exact id).
        #[oai(validator(max_length = 256))]
        worker: Query<Option<String>>,
        /// Only runs that started at or after this time (ms since the epoch).
        from: Query<Option<i64>>,
        /// Only runs that started before this time (ms since the epoch).
        to: Query<Option<i64>>,
        /// The previous page's `nextCursor`: the page after it.
        #[oai(validator(max_length = 128))]
        before: Query<Option<String>>,
        /// Runs to skip (slow deep in a big log: follow `nextCursor`).
        #[oai(default)]
        skip: Query<u64>,
        /// Runs per page (1–1000).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u64>,
        /// Include each run's output (else `GET /runs/{runId}` has it).
        #[oai(default)]
        output: Query<bool>,
    ) -> Result<Json<LogPageDto>, ApiError> {
        let name = JobName::new(name.0).map_err(Error::from)?;
        self.page(PageParams {
            job: Some(name.to_string()),
            status: status.0,
            worker: worker.0,
            from: from.0,
            to: to.0,
            skip: skip.0,
            before: before.0,
            limit: limit.0,
            output: output.0,
        })
        .await
    }

    /// Get one run
    ///
    /// Every attempt of the run, with its output; 404 when the run log has
    /// none (a run still going has no record until its first attempt ends).
    #[oai(path = "/runs/:run_id", method = "get", operation_id = "getRun")]
    async fn run(&self, run_id: Path<String>) -> Result<Json<RunDto>, ApiError> {
        if !rcron_shared::keys::is_run_id(&run_id.0) {
            return Err(Error::BadRequest(format!(
                "`runId` is letters, digits and `-` (at most 64), got {:?}",
                run_id.0
            ))
            .into());
        }
        let attempts = self.state.logs.run(&run_id.0).await?;
        let Some(first) = attempts.first() else {
            return Err(Error::NoRecord(run_id.0).into());
        };
        Ok(Json(RunDto {
            run_id: run_id.0.clone(),
            job_name: first.job_name.clone(),
            attempts: attempts.into_iter().map(LogEntry::from).collect(),
        }))
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
