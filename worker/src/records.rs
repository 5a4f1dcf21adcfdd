//! What the worker says about a run: its log record and its warning, built
//! here only, so a run that ended here and one a later start finds
//! interrupted (see [`crate::outbox::recovery`]) read alike.

use rcron_shared::{Job, JobName, LogRecord, RunOrigin, RunStatus, Warning, WarningKind};

use crate::chain::Finished;
use crate::outbox::Finish;

use crate::executor::Outcome;

/// Bytes of output carried in a warning.
pub const WARNING_OUTPUT_TAIL: usize = 2048;

/// The tick an attempt ran for.
#[derive(Debug, Clone, Copy)]
pub struct TickTimes {
    /// The tick (ms).
    pub plan_ms: i64,
    /// When it was fired (ms).
    pub schedule_ms: i64,
}

/// The record of attempt `attempt` of run `run_id` of `job`, as `o` says
/// it went (or, with [`Outcome::started`], as far as it has gone).
pub fn attempt(
    job: &Job,
    tick: TickTimes,
    run_id: &str,
    worker: &str,
    attempt: u32,
    o: &Outcome,
    origin: &RunOrigin,
) -> LogRecord {
    LogRecord {
        job_name: job.name.to_string(),
        command: job.command.clone(),
        err: o.err.clone(),
        output: o.output.clone(),
        plan_time: tick.plan_ms,
        schedule_time: tick.schedule_ms,
        start_time: o.start.timestamp_millis(),
        end_time: o.end.timestamp_millis(),
        run_id: run_id.to_string(),
        worker: worker.to_string(),
        exit_code: o.exit_code,
        status: o.status,
        attempt,
        output_truncated: o.truncated,
        reason: o.stopped.map(|r| r.as_str().to_string()),
        trigger: origin.trigger,
        triggered_by: origin.triggered_by.clone(),
        params: origin.params.clone(),
    }
}

/// The warning about the attempt `record` logs: its fields and the last
/// [`WARNING_OUTPUT_TAIL`] bytes of its output.
pub fn warning(job: &JobName, record: &LogRecord) -> Warning {
    let output = &record.output;
    let tail_start = output.len().saturating_sub(WARNING_OUTPUT_TAIL);
    let tail_start = (tail_start..output.len())
        .find(|&i| output.is_char_boundary(i))
        .unwrap_or(output.len());
    Warning {
        job_name: job.clone(),
        run_id: record.run_id.clone(),
        status: record.status,
        command: record.command.clone(),
        exit_code: record.exit_code,
        err: record.err.clone(),
        output_tail: output[tail_start..].to_string(),
        plan_time: record.plan_time,
        start_time: record.start_time,
        end_time: record.end_time,
        worker: record.worker.clone(),
        attempt: record.attempt,
        kind: WarningKind::Run,
    }
}

/// One warning for verdict `records` of `job` that holds `missed` ones
/// (one alert per settlement, not per tick), unless the job opts out.
pub fn missed_warning(job: &Job, records: &[LogRecord], worker: &str) -> Option<Warning> {
    let missed = records
        .iter()
        .filter(|r| r.status == RunStatus::Missed)
        .count();
    let last = records
        .iter()
        .rev()
        .find(|r| r.status == RunStatus::Missed)
        .filter(|_| job.alert_on_missed)?;
    Some(Warning {
        job_name: job.name.clone(),
        run_id: last.run_id.clone(),
        status: RunStatus::Missed,
        command: job.command.clone(),
        exit_code: None,
        err: if missed > 1 {
            format!("{missed} ticks missed; the last: {}", last.err)
        } else {
            last.err.clone()
        },
        output_tail: String::new(),
        plan_time: last.plan_time,
        start_time: last.start_time,
        end_time: last.end_time,
        worker: worker.to_string(),
        attempt: 1,
        kind: WarningKind::Run,
    })
}

/// The warning that run `finish.run_id`'s end could not start every job
/// it chains (some do not exist, or the chain is too deep); None when it
/// started them all.
pub fn chain_broken(
    finish: &Finish,
    found: &Finished,
    worker: &str,
    now_ms: i64,
) -> Option<Warning> {
    let mut problems = Vec::new();
    if !found.missing.is_empty() {
        let names: Vec<&str> = found.missing.iter().map(|j| j.as_str()).collect();
        problems.push(format!("chained job(s) {} do not exist", names.join(", ")));
    }
    if found.too_deep {
        problems.push(format!(
            "the chain is {} runs deep already (at most {}): nothing more started",
            finish.depth,
            rcron_shared::request::MAX_CHAIN_DEPTH
        ));
    }
    if problems.is_empty() {
        return None;
    }
    Some(Warning {
        job_name: finish.job.clone(),
        // Not the run's own id: its failure has a warning of its own.
        run_id: format!("{}-chain", finish.run_id),
        status: RunStatus::Failed,
        command: String::new(),
        exit_code: None,
        err: problems.join("; "),
        output_tail: String::new(),
        plan_time: now_ms,
        start_time: now_ms,
        end_time: now_ms,
        worker: worker.to_string(),
        attempt: 1,
        kind: WarningKind::ChainBroken,
    })
}

/// The record of a run whose worker died while it ran, from the record
/// journaled when it started. Its outcome is unknown (its output went to
/// the dead worker), so it says only what is known: `killed` when its
/// process group was still alive and was killed at recovery; `end_ms` is
/// that moment, or else when its worker was last seen alive.
pub fn interrupted(mut record: LogRecord, killed: bool, end_ms: i64) -> LogRecord {
    record.status = RunStatus::Interrupted;
    record.exit_code = None;
    record.end_time = end_ms.max(record.start_time);
    record.err = if killed {
        format!(
            "interrupted: worker {} stopped during the run; the command was still running and was killed when the journal was recovered (its output went to the stopped worker)",
            record.worker
        )
    } else {
        format!(
            "interrupted: worker {} stopped during the run; the command's outcome and output are unknown (it had ended when the journal was recovered); endTime is when the worker was last seen alive",
            record.worker
        )
    };
    record.reason = Some(if killed {
        "worker died; killed at recovery".to_string()
    } else {
        "worker died".to_string()
    });
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(output: &str) -> LogRecord {
        let mut r = rcron_shared::verdict::record_of(
            "j",
            "false",
            1_000,
            RunStatus::Failed,
            "exit code 1".into(),
            "w1",
            2_000,
        );
        r.output = output.to_string();
        r.reason = None;
        r.exit_code = Some(1);
        r
    }

    #[test]
    fn a_warning_carries_the_records_fields_and_the_tail_of_its_output_on_a_char_boundary() {
        let job = JobName::new("j").expect("name");
        let long = format!("{}é{}", "a".repeat(10), "b".repeat(WARNING_OUTPUT_TAIL - 1));
        let w = warning(&job, &record(&long));
        assert_eq!(w.output_tail, "b".repeat(WARNING_OUTPUT_TAIL - 1));
        assert_eq!(w.exit_code, Some(1));
        assert_eq!(w.err, "exit code 1");
        assert_eq!((w.plan_time, w.attempt), (1_000, 1));
        assert_eq!(warning(&job, &record("short")).output_tail, "short");
    }

    #[test]
    fn an_interrupted_record_never_ends_before_it_started() {
        let r = interrupted(record(""), false, 0);
        assert_eq!(r.status, RunStatus::Interrupted);
        assert_eq!(r.end_time, r.start_time);
        assert_eq!(r.exit_code, None);
        assert_eq!(r.reason.as_deref(), Some("worker died"));
    }
}
