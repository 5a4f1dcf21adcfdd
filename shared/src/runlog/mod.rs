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
    /// Only records of runs: no verdicts (`skipped`, `missed`: ticks that
    /// ran no command), as the original's log held.
    pub runs_only: bool,
    /// Records to skip (newest first).
    pub skip: u64,
    /// Records to return, 1 to [`MAX_PAGE`].
    pub limit: u64,
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
        Ok(())
    }

    /// Whether `record` matches the filter (not the page).
    pub fn matches(&self, record: &LogRecord) -> bool {
        self.job.as_deref().is_none_or(|j| record.job_name == j)
            && self.status.is_none_or(|s| record.status == s)
            && !(self.runs_only && record.status.is_verdict())
    }
}

/// A page of run records.
#[derive(Debug, Clone, Default)]
pub struct LogPage {
    /// Records, newest first (by start time).
    pub records: Vec<LogRecord>,
    /// How many match the filter in all.
    pub total: u64,
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

    /// Whether the store answers.
    async fn ping(&self) -> Result<(), RunLogError>;
}

/// A store that is read and written (the master reads it and writes the
/// leader's verdicts).
pub trait RunLogStore: RunLogReader + RunLogWriter {}

impl<T: RunLogReader + RunLogWriter> RunLogStore for T {}
