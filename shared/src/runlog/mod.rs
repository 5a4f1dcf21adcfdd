//! The run log: where every run record and verdict ends up (ARCHITECTURE
//! §3, "The run log"). Workers write through [`RunLogWriter`], the master
//! reads through [`RunLogReader`] (and writes its own verdicts). Today the
//! store is MongoDB (`cron.log`, [`mongo`]); [`memory`] stands in for it
//! in unit tests of the code around it (batching, retries).
//!
//! Writes are idempotent: a record is stored under its
//! [`LogRecord::document_id`], so sending it twice (after a lost answer, a
//! crash, a spill) stores it once.

pub mod memory;
pub mod mongo;

use crate::{LogRecord, RunStatus};

/// Most records one page may hold.
pub const MAX_PAGE: u64 = 1000;
/// Totals are counted up to this many; a page says when there are more
/// ("10,000+"), so that a count never walks a million index entries.
pub const COUNT_CAP: u64 = 10_000;

/// Why the run log could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RunLogError {
    /// The store cannot be reached now; the same request may succeed later.
    /// The message names the store ("MongoDB is unavailable: …").
    #[error("{0}")]
    Unavailable(String),
    /// The store refused the request; the message names the store.
    #[error("{0}")]
    Refused(String),
    /// The request itself is wrong (a page size out of range).
    #[error("{0}")]
    BadQuery(String),
}

/// Which records to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only this job's records.
    pub job: Option<String>,
    /// Only records with this status.
    pub status: Option<RunStatus>,
    /// Only records of this worker (its exact id).
    pub worker: Option<String>,
    /// Only records that started at or after this time (ms).
    pub from: Option<i64>,
    /// Only records that started before this time (ms).
    pub to: Option<i64>,
    /// Only records of runs: no verdicts (`skipped`, `missed`: ticks that
    /// ran no command), as the original's log held.
    pub runs_only: bool,
    /// Records to skip (newest first). Slow deep in a big log: pages
    /// after the first are read with `before` instead.
    pub skip: u64,
    /// Only records after this one (the previous page's last record) in
    /// page order: newest start first, then run id and attempt.
    pub before: Option<LogCursor>,
    /// Records to return, 1 to [`MAX_PAGE`].
    pub limit: u64,
    /// Whether records carry their output (a page of the list does not;
    /// [`RunLogReader::run`] does).
    pub with_output: bool,
}

/// Where a page ends: the start time, run id and attempt of its last
/// record (unique together; page order is newest start first, then run id
/// and attempt, both descending). Written `<startTime>.<runId>.<attempt>`
/// in URLs. Not `_id`: the embedded store cannot index it with other fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    /// Its start time (ms).
    pub start_time: i64,
    /// Its run id.
    pub run_id: String,
    /// Its attempt.
    pub attempt: u32,
}

impl LogCursor {
    /// The cursor just past `record`.
    pub fn after(record: &LogRecord) -> Self {
        Self {
            start_time: record.start_time,
            run_id: record.run_id.clone(),
            attempt: record.attempt,
        }
    }

    /// Reads `<startTime>.<runId>.<attempt>`.
    pub fn parse(text: &str) -> Result<Self, RunLogError> {
        let bad = || {
            RunLogError::BadQuery(format!(
                "`before` must be a page's `nextCursor` (<startTime>.<runId>.<attempt>), got {text:?}"
            ))
        };
        let mut parts = text.split('.');
        let (Some(t), Some(run_id), Some(a), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if run_id.len() > 64
            || !run_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad());
        }
        Ok(Self {
            start_time: t.parse().map_err(|_| bad())?,
            run_id: run_id.to_string(),
            attempt: a.parse().map_err(|_| bad())?,
        })
    }

    /// `<startTime>.<runId>.<attempt>`.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.start_time, self.run_id, self.attempt)
    }

    /// The sort key of `record` in page order (compared descending).
    pub fn key(record: &LogRecord) -> (i64, &str, u32) {
        (record.start_time, record.run_id.as_str(), record.attempt)
    }

    /// Whether `record` comes after this cursor in page order.
    pub fn precedes(&self, record: &LogRecord) -> bool {
        Self::key(record) < (self.start_time, self.run_id.as_str(), self.attempt)
    }
}

impl LogQuery {
    /// Refuses a page size the stores do not serve.
    pub fn check(&self) -> Result<(), RunLogError> {
        if self.limit == 0 || self.limit > MAX_PAGE {
            return Err(RunLogError::BadQuery(format!(
                "`limit` must be a whole number from 1 to {MAX_PAGE}, got {}",
                self.limit
            )));
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from > to
        {
            return Err(RunLogError::BadQuery(format!(
                "`from` ({from}) must not be after `to` ({to})"
            )));
        }
        Ok(())
    }

    /// Whether `record` matches the filter (not the page).
    pub fn matches(&self, record: &LogRecord) -> bool {
        self.job.as_deref().is_none_or(|j| record.job_name == j)
            && self.status.is_none_or(|s| record.status == s)
            && self.worker.as_deref().is_none_or(|w| record.worker == w)
            && self.from.is_none_or(|t| record.start_time >= t)
            && self.to.is_none_or(|t| record.start_time < t)
            && !(self.runs_only && record.status.is_verdict())
    }
}

/// Which records a count, histogram or scan takes in, by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// Records of runs: a command ran (every status but `skipped` and
    /// `missed`; the original's documents, which have none, too).
    Runs,
    /// Runs that succeeded.
    Succeeded,
    /// Runs that did not succeed: `failed`, `timeout`, `killed`,
    /// `interrupted`.
    Failed,
    /// Ticks skipped on purpose (no command ran).
    Skipped,
    /// Ticks missed (no command ran).
    Missed,
}

impl Tally {
    /// The statuses of a failed run.
    pub const FAILED: [RunStatus; 4] = [
        RunStatus::Failed,
        RunStatus::Timeout,
        RunStatus::Killed,
        RunStatus::Interrupted,
    ];

    /// Whether a record of `status` is counted.
    pub fn matches(self, status: RunStatus) -> bool {
        match self {
            Self::Runs => !status.is_verdict(),
            Self::Succeeded => status == RunStatus::Success,
            Self::Failed => Self::FAILED.contains(&status),
            Self::Skipped => status == RunStatus::Skipped,
            Self::Missed => status == RunStatus::Missed,
        }
    }
}

/// Start times from `from` (inclusive) to `to` (exclusive), in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First millisecond in.
    pub from: i64,
    /// First millisecond out.
    pub to: i64,
}

impl Span {
    /// Whether `t` is in.
    pub fn contains(self, t: i64) -> bool {
        self.from <= t && t < self.to
    }
}

/// Most buckets one histogram may have (a day of minutes).
pub const MAX_BUCKETS: usize = 1440;

/// Checks histogram boundaries: 2 to [`MAX_BUCKETS`] + 1, strictly rising.
pub fn check_boundaries(boundaries: &[i64]) -> Result<(), RunLogError> {
    if boundaries.len() < 2 || boundaries.len() > MAX_BUCKETS + 1 {
        return Err(RunLogError::BadQuery(format!(
            "a histogram has 1 to {MAX_BUCKETS} buckets, got {}",
            boundaries.len().saturating_sub(1)
        )));
    }
    if boundaries.windows(2).any(|w| w[0] >= w[1]) {
        return Err(RunLogError::BadQuery(
            "histogram boundaries must rise strictly".into(),
        ));
    }
    Ok(())
}

/// When a run started and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTime {
    /// Its start (ms).
    pub start_time: i64,
    /// `endTime - startTime`, never negative (ms).
    pub duration_ms: i64,
}

impl RunTime {
    /// The start and duration of `record`.
    pub fn of(record: &LogRecord) -> Self {
        Self {
            start_time: record.start_time,
            duration_ms: (record.end_time - record.start_time).max(0),
        }
    }
}

/// A page of run records.
#[derive(Debug, Clone, Default)]
pub struct LogPage {
    /// Records, newest first (by start time, then run id and attempt).
    pub records: Vec<LogRecord>,
    /// How many match the filter in all, counted up to [`COUNT_CAP`].
    pub total: u64,
    /// There are more than `total` ([`COUNT_CAP`]) matching records.
    pub total_capped: bool,
    /// Where the next page starts; None when this one is the last.
    pub next: Option<LogCursor>,
}

impl LogPage {
    /// The page of `records` (in page order, at most `limit` + 1 read to
    /// learn whether another page follows) with `total` counted up to
    /// [`COUNT_CAP`] + 1.
    pub fn of(mut records: Vec<LogRecord>, limit: u64, total: u64) -> Self {
        let more = records.len() as u64 > limit;
        records.truncate(limit as usize);
        let next = more.then(|| records.last().map(LogCursor::after)).flatten();
        Self {
            records,
            total: total.min(COUNT_CAP),
            total_capped: total > COUNT_CAP,
            next,
        }
    }
}

/// Stores run records.
#[async_trait::async_trait]
pub trait RunLogWriter: Send + Sync {
    /// Stores `records`; those already stored are left as they are. On an
    /// error none, some or all may be stored: send them all again.
    async fn write(&self, records: &[LogRecord]) -> Result<(), RunLogError>;
}

/// Reads run records.
#[async_trait::async_trait]
pub trait RunLogReader: Send + Sync {
    /// A page of records matching `query`, newest first.
    async fn query(&self, query: &LogQuery) -> Result<LogPage, RunLogError>;

    /// Every attempt of run `run_id`, with output, first attempt first.
    async fn run(&self, run_id: &str) -> Result<Vec<LogRecord>, RunLogError>;

    /// Whether the store answers.
    async fn ping(&self) -> Result<(), RunLogError>;

    /// The newest runs of `job` (no verdicts), newest first, at most
    /// `limit` (1 to [`MAX_PAGE`]), without output; nothing is counted.
    async fn latest_runs(&self, job: &str, limit: u64) -> Result<Vec<LogRecord>, RunLogError>;

    /// How many records of `tally` (of `job`, or of every job) started in
    /// each span `[boundaries[i], boundaries[i + 1])`: one count per span
    /// (see [`check_boundaries`]).
    async fn histogram(
        &self,
        job: Option<&str>,
        tally: Tally,
        boundaries: &[i64],
    ) -> Result<Vec<u64>, RunLogError>;

    /// How many records of `tally` (of `job`, or of every job) started in
    /// `span`, counted up to [`COUNT_CAP`].
    async fn count_in(
        &self,
        job: Option<&str>,
        tally: Tally,
        span: Span,
    ) -> Result<u64, RunLogError>;

    /// Start and duration of the runs of `job` started in `span`, newest
    /// first, at most `limit`.
    async fn run_times(
        &self,
        job: &str,
        span: Span,
        limit: u64,
    ) -> Result<Vec<RunTime>, RunLogError>;

    /// The records of `tally` (of every job) started in `span`, newest
    /// first, at most `limit` (1 to [`COUNT_CAP`]), without output.
    async fn recent(
        &self,
        tally: Tally,
        span: Span,
        limit: u64,
    ) -> Result<Vec<LogRecord>, RunLogError>;

    /// For each job with a record of `tally` started in `span`: the start
    /// of its newest one.
    async fn newest_by_job(
        &self,
        tally: Tally,
        span: Span,
    ) -> Result<std::collections::HashMap<String, i64>, RunLogError>;
}

/// A store that is read and written (the master reads it and writes the
/// leader's verdicts).
pub trait RunLogStore: RunLogReader + RunLogWriter {}

impl<T: RunLogReader + RunLogWriter> RunLogStore for T {}
