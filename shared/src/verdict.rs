//! A verdict for every planned tick (ARCHITECTURE §4, "Verdicts").
//!
//! `/cron/fired/<job>` only ever moves forward, and whoever moves it (a
//! worker starting a run, a worker giving a tick up, the leader settling
//! ticks nobody took) moves it in one compare-and-swap and learns the value
//! it replaced. The ticks of the schedule between the two values were
//! neither run nor settled by anyone, and can no longer be: the mover
//! records each of them as `missed`. So every planned tick ends as exactly
//! one record, whoever gets there.

use chrono::{DateTime, Utc};

use crate::{Job, LogRecord, RunStatus, Schedule};

/// A plan time as stored in `/cron/fired/<job>`: fixed-width decimals, so
/// etcd's byte comparison of values orders them numerically; -1 (no tick
/// yet) is `-`, which sorts before every real one.
pub fn encode_plan(plan_ms: i64) -> String {
    if plan_ms < 0 {
        "-".to_string()
    } else {
        format!("{plan_ms:020}")
    }
}

/// The value a mover writes: the plan, then `:` and who moved it (a run
/// id, or `settled`). The suffix never changes the order between two plan
/// times (they differ within the fixed-width digits), and lets a worker
/// whose request's answer was lost tell whether its own request moved it.
pub fn encode_fired(plan_ms: i64, by: &str) -> String {
    format!("{}:{by}", encode_plan(plan_ms))
}

/// The plan time of a fired marker (with or without its suffix); None for
/// `-` (no tick yet).
pub fn decode_plan(value: &[u8]) -> Option<i64> {
    let value = std::str::from_utf8(value).ok()?;
    let plan = value.split_once(':').map_or(value, |(plan, _)| plan);
    plan.parse::<i64>().ok().filter(|p| *p >= 0)
}

/// The suffix of a fired marker moved without a run (a verdict).
pub const SETTLED: &str = "settled";

/// Most ticks recorded one by one for a single gap; the rest of a longer
/// gap (a job firing every second through a day-long outage) is told by
/// one record saying how many more there were.
pub const MAX_GAP_RECORDS: usize = 1000;

/// Planned ticks strictly after `after_ms` and strictly before `before_ms`
/// (at most [`MAX_GAP_RECORDS`]), and how many more there were.
pub fn ticks_between(schedule: &Schedule, after_ms: i64, before_ms: i64) -> (Vec<i64>, u64) {
    let mut ticks = Vec::new();
    let mut more = 0u64;
    let Some(mut cursor) = DateTime::<Utc>::from_timestamp_millis(after_ms) else {
        return (ticks, more);
    };
    while let Some(next) = schedule.next_after(cursor) {
        let ms = next.timestamp_millis();
        if ms >= before_ms {
            break;
        }
        if ticks.len() < MAX_GAP_RECORDS {
            ticks.push(ms);
        } else {
            more += 1;
            // Counting a long tail tick by tick would be slow: past a
            // million, say "at least".
            if more >= 1_000_000 {
                break;
            }
        }
        cursor = next;
    }
    (ticks, more)
}

/// The record of a tick that ran no command.
pub fn record(
    job: &Job,
    plan_ms: i64,
    status: RunStatus,
    reason: String,
    by: &str,
    now_ms: i64,
) -> LogRecord {
    let mut record = record_of(
        job.name.as_str(),
        &job.command,
        plan_ms,
        status,
        reason,
        by,
        now_ms,
    );
    // A job on every worker has a tick per worker, each with its verdict.
    if crate::placement::mode(job.target.as_ref()) == crate::TargetMode::All {
        record.run_id = verdict_run_id(job.name.as_str(), plan_ms, status, by);
    }
    record
}

/// The run id of verdict `status` on tick `plan_ms` of `job_name` (of
/// worker `scope`'s tick for a job on every worker, else ""): the same
/// whoever computes it and however often, so the run log's `_id` stores
/// one record when a verdict is recorded twice — by a worker that died
/// after sending it and before noting it sent, which records it again at
/// its next start. (A UUIDv8 of a SHA-256 of those fields.)
pub fn verdict_run_id(job_name: &str, plan_ms: i64, status: RunStatus, scope: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for part in [
        b"rcron-verdict".as_slice(),
        job_name.as_bytes(),
        &plan_ms.to_be_bytes(),
        status.as_str().as_bytes(),
        scope.as_bytes(),
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// [`record`] for a job known by name and command only.
pub fn record_of(
    job_name: &str,
    command: &str,
    plan_ms: i64,
    status: RunStatus,
    reason: String,
    by: &str,
    now_ms: i64,
) -> LogRecord {
    LogRecord {
        job_name: job_name.to_string(),
        command: command.to_string(),
        err: reason.clone(),
        output: String::new(),
        plan_time: plan_ms,
        schedule_time: now_ms,
        start_time: now_ms,
        end_time: now_ms,
        run_id: verdict_run_id(job_name, plan_ms, status, ""),
        worker: by.to_string(),
        exit_code: None,
        status,
        attempt: 1,
        output_truncated: false,
        reason: Some(reason),
        trigger: Default::default(),
        triggered_by: None,
        params: None,
    }
}

/// Records for the ticks of `job` in the gap `(previous_ms, before_ms)`
/// left by a move of its fired marker; `previous_ms` None = the job had
/// never fired (nothing before is owed). Ticks before the job's
/// `updatedAt` are not owed either: they belonged to an earlier version
/// (another schedule, or a pause).
pub fn gap_records(
    job: &Job,
    schedule: &Schedule,
    previous_ms: Option<i64>,
    before_ms: i64,
    by: &str,
    now_ms: i64,
) -> Vec<LogRecord> {
    let Some(previous) = previous_ms else {
        return Vec::new();
    };
    let from = previous.max(job.updated_at.unwrap_or(i64::MIN));
    let (ticks, more) = ticks_between(schedule, from, before_ms);
    let reason = "not started: no worker took the tick in time".to_string();
    let mut records: Vec<LogRecord> = ticks
        .iter()
        .map(|t| record(job, *t, RunStatus::Missed, reason.clone(), by, now_ms))
        .collect();
    if more > 0
        && let Some(last) = records.last_mut()
    {
        last.reason = Some(format!(
            "{reason}; and {more} later ticks before this one's successor"
        ));
        last.err = last.reason.clone().unwrap_or_default();
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_second() -> (Job, Schedule) {
        let job = Job::from_json(br#"{"name":"j","command":"true","cronExpr":"* * * * * * *"}"#)
            .expect("job");
        let schedule = job.schedule(chrono_tz::UTC).expect("schedule");
        (job, schedule)
    }

    #[test]
    fn the_ticks_between_two_moves_of_the_marker_are_missed() {
        let (job, schedule) = every_second();
        let t0 = 1_700_000_000_000;
        let recs = gap_records(&job, &schedule, Some(t0), t0 + 4000, "w", t0 + 4000);
        let plans: Vec<i64> = recs.iter().map(|r| r.plan_time).collect();
        assert_eq!(plans, vec![t0 + 1000, t0 + 2000, t0 + 3000]);
        assert!(
            recs.iter()
                .all(|r| r.status == RunStatus::Missed && r.reason.is_some())
        );
        assert!(gap_records(&job, &schedule, None, t0, "w", t0).is_empty());
        assert!(gap_records(&job, &schedule, Some(t0), t0 + 1000, "w", t0).is_empty());
        let changed = job.stamped(t0 + 2500);
        let recs = gap_records(&changed, &schedule, Some(t0), t0 + 4000, "w", t0 + 4000);
        assert_eq!(
            recs.iter().map(|r| r.plan_time).collect::<Vec<_>>(),
            vec![t0 + 3000]
        );
    }

    #[test]
    fn a_verdict_recorded_twice_has_one_id_and_each_tick_its_own() {
        let (job, _) = every_second();
        let t0 = 1_700_000_000_000;
        let missed = |plan, by: &str| record(&job, plan, RunStatus::Missed, "r".into(), by, t0);
        // Again later, by another node, with another reason: the same id.
        let again = record(
            &job,
            t0,
            RunStatus::Missed,
            "other".into(),
            "leader",
            t0 + 9000,
        );
        assert_eq!(missed(t0, "w1").document_id(), again.document_id());
        assert_ne!(missed(t0, "w1").run_id, missed(t0 + 1000, "w1").run_id);
        let skipped = record(&job, t0, RunStatus::Skipped, "r".into(), "w1", t0);
        assert_ne!(
            missed(t0, "w1").run_id,
            skipped.run_id,
            "two verdicts stay two records"
        );
        let other = Job::from_json(br#"{"name":"k","command":"true","cronExpr":"* * * * * * *"}"#)
            .expect("job");
        assert_ne!(
            missed(t0, "w1").run_id,
            record(&other, t0, RunStatus::Missed, "r".into(), "w1", t0).run_id
        );
        assert!(crate::keys::is_run_id(&missed(t0, "w1").run_id));
        // A job on every worker: each worker's tick has its own verdict.
        let all = Job::from_json(
            br#"{"name":"j","command":"true","cronExpr":"* * * * * * *","target":{"mode":"all"}}"#,
        )
        .expect("job");
        let on = |by: &str| record(&all, t0, RunStatus::Skipped, "r".into(), by, t0).run_id;
        assert_ne!(on("w1"), on("w2"));
        assert_eq!(on("w1"), on("w1"));
    }

    #[test]
    fn a_long_gap_is_capped_and_says_how_many_more() {
        let (job, schedule) = every_second();
        let t0 = 1_700_000_000_000;
        let recs = gap_records(&job, &schedule, Some(t0), t0 + 3_600_000, "w", t0);
        assert_eq!(recs.len(), MAX_GAP_RECORDS);
        let last = recs.last().and_then(|r| r.reason.clone()).expect("reason");
        assert!(last.contains("2599 later ticks"), "{last}");
    }
}
