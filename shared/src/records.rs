//! Records other programs read: the run log document (ARCHITECTURE §5), the
//! warning a worker leaves for the leader master (ARCHITECTURE §4, §7) and the
//! worker registration record (ARCHITECTURE §2).

use serde::{Deserialize, Serialize};

use crate::JobName;
use crate::request::{RunParams, Trigger, TriggeredBy};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Exit code 0.
    Success,
    /// Non-zero exit code, killed by a signal it did not ask for, or could not be spawned.
    Failed,
    /// Killed because it ran past the job's `timeoutSecs`.
    Timeout,
    /// Killed on request (`/cron/killer/<name>`, `/cron/killrun/<runId>`),
    /// at worker shutdown, or because its worker could no longer vouch for
    /// the job's lock (`reason: "lock lost"`).
    Killed,
    /// Its worker died during the run (SIGKILL, OOM, a crash) and the next
    /// start of a worker found it in the journal: the outcome is unknown,
    /// and `endTime` is the last time the worker was seen alive.
    Interrupted,
    /// The tick was not run on purpose: the previous run of a `forbid`
    /// job still held its lock (`reason` says why). No command ran.
    Skipped,
    /// The tick should have run and did not: found too late, no free slot,
    /// no live worker, or nobody took it before its deadline (`reason`).
    /// No command ran.
    Missed,
}

impl RunStatus {
    /// The lowercase wire name (`success`, `failed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::Killed => "killed",
            Self::Interrupted => "interrupted",
            Self::Skipped => "skipped",
            Self::Missed => "missed",
        }
    }

    /// Whether this outcome is reported as a warning for alerting
    /// (`missed` only when the job's `alertOnMissed` says so).
    pub fn warns(self) -> bool {
        matches!(self, Self::Failed | Self::Timeout | Self::Interrupted)
    }

    /// Whether this is a verdict on a tick that ran no command.
    pub fn is_verdict(self) -> bool {
        matches!(self, Self::Skipped | Self::Missed)
    }
}

/// One run, as stored in MongoDB `cron.log`. Field names and units
/// (milliseconds since the epoch) of the first eight are the original's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRecord {
    /// The job's name.
    pub job_name: String,
    /// The command as run.
    pub command: String,
    /// Why the run did not succeed; empty on success.
    pub err: String,
    /// Captured stdout and stderr, capped (see `output_truncated`).
    pub output: String,
    /// The tick this run belongs to (ms).
    pub plan_time: i64,
    /// When the scheduler fired the tick (ms).
    pub schedule_time: i64,
    /// When the process was started (ms).
    pub start_time: i64,
    /// When the process ended (ms).
    pub end_time: i64,
    /// Unique id of this run (also the warning key's last segment).
    pub run_id: String,
    /// Id of the worker that ran it.
    pub worker: String,
    /// Exit code, when the process exited normally.
    pub exit_code: Option<i32>,
    /// How the run ended.
    pub status: RunStatus,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
    /// Whether part of the output was dropped to respect the cap.
    pub output_truncated: bool,
    /// Why the run ended the way it did, when the status alone does not say
    /// (`lock lost`, `worker shutdown`, …); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What started it: `schedule` (also for records of earlier versions),
    /// `manual` or `chain`.
    #[serde(default)]
    pub trigger: Trigger,
    /// For a chained run: the run whose end requested it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<TriggeredBy>,
    /// What a run-now request set for this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<RunParams>,
}

impl LogRecord {
    /// Its MongoDB `_id`: `<runId>-<attempt>` (resending never duplicates).
    pub fn document_id(&self) -> String {
        format!("{}-{}", self.run_id, self.attempt)
    }
}

/// What a warning is about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WarningKind {
    /// A run ended badly (its `status` says how).
    #[default]
    Run,
    /// The job's `target` matches no live worker: its ticks run nowhere
    /// (put by the leader master; `err` names the selector).
    Unschedulable,
    /// A job reported unschedulable has a matching live worker again.
    Schedulable,
    /// A worker's clock is off beyond its `max_clock_skew_ms`: it fires
    /// nothing (`jobName` is the worker's id; put by the leader master).
    ClockSkew,
    /// That worker's clock is back within bounds.
    ClockOk,
    /// A run's end should have started a chained job that does not exist
    /// (or a chain too deep): `jobName` is the run's job, `err` says which.
    ChainBroken,
}

impl WarningKind {
    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Unschedulable => "unschedulable",
            Self::Schedulable => "schedulable",
            Self::ClockSkew => "clockSkew",
            Self::ClockOk => "clockOk",
            Self::ChainBroken => "chainBroken",
        }
    }
}

/// What went wrong, as put under `/cron/warn/<name>/<runId>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    /// The job's name.
    pub job_name: JobName,
    /// The run's id; the idempotency key of every alert about it.
    pub run_id: String,
    /// `failed` or `timeout`.
    pub status: RunStatus,
    /// The command as run.
    pub command: String,
    /// Exit code, when the process exited normally.
    pub exit_code: Option<i32>,
    /// Why the run did not succeed.
    pub err: String,
    /// The end of the captured output.
    pub output_tail: String,
    /// The tick (ms).
    pub plan_time: i64,
    /// Start of the run (ms).
    pub start_time: i64,
    /// End of the run (ms).
    pub end_time: i64,
    /// The worker that ran it.
    pub worker: String,
    /// Attempt number (1 = first run).
    pub attempt: u32,
    /// `run` (absent in warnings of earlier versions) or a placement
    /// change; for the latter, `runId` is the event's id, `status` is
    /// `failed` (unschedulable) or `success` (schedulable again) and the
    /// run fields are empty.
    #[serde(default, skip_serializing_if = "is_run")]
    pub kind: WarningKind,
}

fn is_run(kind: &WarningKind) -> bool {
    *kind == WarningKind::Run
}

/// A worker's registration at `/cron/workers/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerInfo {
    /// Unique worker id (default `hostname-pid`).
    pub id: String,
    /// Host name of the machine.
    pub hostname: String,
    /// The address other machines reach it at.
    pub ip: String,
    /// Process id.
    pub pid: u32,
    /// rcron version.
    pub version: String,
    /// When the worker started (ms).
    pub start_time: i64,
    /// Most runs it executes at once.
    pub capacity: u32,
    /// Names of the jobs running now.
    pub running: Vec<String>,
    /// The runs executing now, with their ids (for `POST /api/v1/runs/{id}/kill`).
    #[serde(default)]
    pub runs: Vec<RunRef>,
    /// The worker is shutting down: it fires no new tick and waits for its
    /// runs (holding their locks) before it unregisters.
    #[serde(default)]
    pub draining: bool,
    /// The zone this worker fires jobs without `timezone` in (IANA name);
    /// every process of a cluster must agree (`GET /api/v1/cluster` reports a mismatch).
    #[serde(default)]
    pub timezone: String,
    /// Labels (`RCRON_WORKER_LABELS`); jobs with a `target` run only on
    /// workers carrying every label it lists.
    #[serde(default)]
    pub labels: crate::Labels,
    /// Its clock's offset from the cluster's reference (the leader
    /// master's beacon), in ms; absent until measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
    /// The offset is beyond the worker's `max_clock_skew_ms`: it fires
    /// nothing until its clock is corrected.
    #[serde(default)]
    pub clock_skewed: bool,
    /// Its `misfire_grace_secs`: how late it may still start a tick (the
    /// leader settles untaken ticks only after every worker's grace).
    #[serde(default)]
    pub misfire_grace_secs: u64,
    /// `host:port` of its HTTP listener (`advertise_addr`), where masters
    /// read the live output of its runs; absent when the listener is off
    /// (and in records of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
}

/// A run executing on a worker, as listed in its registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRef {
    /// The job's name.
    pub job: String,
    /// The run's id (as in its log record).
    pub run_id: String,
    /// The tick (ms).
    pub plan_time: i64,
    /// When its command started (ms).
    pub start_time: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_record_uses_the_original_field_names() {
        let rec = LogRecord {
            job_name: "job1".into(),
            command: "echo hello".into(),
            err: String::new(),
            output: "hello\n".into(),
            plan_time: 1,
            schedule_time: 2,
            start_time: 3,
            end_time: 4,
            run_id: "r".into(),
            worker: "w".into(),
            exit_code: Some(0),
            status: RunStatus::Success,
            attempt: 1,
            output_truncated: false,
            reason: None,
            trigger: Default::default(),
            triggered_by: None,
            params: None,
        };
        let v = serde_json::to_value(&rec).expect("serialize");
        for field in [
            "jobName",
            "command",
            "err",
            "output",
            "planTime",
            "scheduleTime",
            "startTime",
            "endTime",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["status"], "success");
        assert_eq!(v["exitCode"], 0);
    }

    #[test]
    fn only_failures_and_timeouts_warn() {
        assert!(RunStatus::Failed.warns() && RunStatus::Timeout.warns());
        assert!(RunStatus::Interrupted.warns());
        assert!(!RunStatus::Success.warns() && !RunStatus::Killed.warns());
    }
}
