//! An in-memory run log for unit tests of the code around the store: it
//! keeps records by id like the real one, and can be made unreachable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::{
    COUNT_CAP, LogCursor, LogPage, LogQuery, MAX_PAGE, RunLogError, RunLogReader, RunLogWriter,
    RunTime, Span, Tally, check_boundaries,
};
use crate::LogRecord;

/// Records by id, in memory.
#[derive(Debug, Default)]
pub struct MemoryRunLog {
    records: Mutex<BTreeMap<String, LogRecord>>,
    down: AtomicBool,
    writes: AtomicUsize,
    failed_writes: AtomicUsize,
}

impl MemoryRunLog {
    /// An empty, reachable log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every request fail as unreachable (`true`) or work again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every stored record, by id.
    pub fn records(&self) -> Vec<LogRecord> {
        self.map().values().cloned().collect()
    }

    /// Successful write calls so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Write calls refused while down.
    pub fn failed_writes(&self) -> usize {
        self.failed_writes.load(Ordering::SeqCst)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LogRecord>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reachable(&self) -> Result<(), RunLogError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(RunLogError::Unavailable(
                "the in-memory run log is down".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl RunLogWriter for MemoryRunLog {
    async fn write(&self, records: &[LogRecord]) -> Result<(), RunLogError> {
        if let Err(e) = self.reachable() {
            self.failed_writes.fetch_add(1, Ordering::SeqCst);
            return Err(e);
        }
        let mut map = self.map();
        for r in records {
            map.entry(r.document_id()).or_insert_with(|| r.clone());
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait::async_trait]
impl RunLogReader for MemoryRunLog {
    async fn query(&self, query: &LogQuery) -> Result<LogPage, RunLogError> {
        query.check()?;
        self.reachable()?;
        let mut matching: Vec<LogRecord> = self
            .map()
            .values()
            .filter(|r| query.matches(r))
            .cloned()
            .collect();
        matching.sort_by(|a, b| LogCursor::key(b).cmp(&LogCursor::key(a)));
        let total = matching.len() as u64;
        let records = matching
            .into_iter()
            .filter(|r| query.before.as_ref().is_none_or(|c| c.precedes(r)))
            .skip(query.skip as usize)
            .take(query.limit as usize + 1)
            .map(|mut r| {
                if !query.with_output {
                    r.output.clear();
                }
                r
            })
            .collect();
        Ok(LogPage::of(records, query.limit, total))
    }

    async fn run(&self, run_id: &str) -> Result<Vec<LogRecord>, RunLogError> {
        self.reachable()?;
        let mut runs: Vec<LogRecord> = self
            .map()
            .values()
            .filter(|r| r.run_id == run_id)
            .cloned()
            .collect();
        runs.sort_by_key(|r| r.attempt);
        Ok(runs)
    }

    async fn ping(&self) -> Result<(), RunLogError> {
        self.reachable()
    }

    async fn latest_runs(&self, job: &str, limit: u64) -> Result<Vec<LogRecord>, RunLogError> {
        let page = self
            .query(&LogQuery {
                job: Some(job.to_string()),
                runs_only: true,
                limit: limit.clamp(1, MAX_PAGE),
                ..LogQuery::default()
            })
            .await?;
        Ok(page.records)
    }

    async fn histogram(
        &self,
        job: Option<&str>,
        tally: Tally,
        boundaries: &[i64],
    ) -> Result<Vec<u64>, RunLogError> {
        check_boundaries(boundaries)?;
        self.reachable()?;
        let mut counts = vec![0; boundaries.len() - 1];
        for r in self.map().values() {
            if job.is_some_and(|j| r.job_name != j) || !tally.matches(r.status) {
                continue;
            }
            // The bucket whose lower boundary is the last one at or before it.
            let i = boundaries.partition_point(|b| *b <= r.start_time);
            if i > 0 && i < boundaries.len() {
                counts[i - 1] += 1;
            }
        }
        Ok(counts)
    }

    async fn count_in(
        &self,
        job: Option<&str>,
        tally: Tally,
        span: Span,
    ) -> Result<u64, RunLogError> {
        self.reachable()?;
        let n = self
            .map()
            .values()
            .filter(|r| job.is_none_or(|j| r.job_name == j))
            .filter(|r| tally.matches(r.status) && span.contains(r.start_time))
            .count() as u64;
        Ok(n.min(COUNT_CAP))
    }

    async fn run_times(
        &self,
        job: &str,
        span: Span,
        limit: u64,
    ) -> Result<Vec<RunTime>, RunLogError> {
        self.reachable()?;
        let mut runs: Vec<LogRecord> = self
            .map()
            .values()
            .filter(|r| r.job_name == job && !r.status.is_verdict())
            .filter(|r| span.contains(r.start_time))
            .cloned()
            .collect();
        runs.sort_by(|a, b| LogCursor::key(b).cmp(&LogCursor::key(a)));
        Ok(runs.iter().take(limit as usize).map(RunTime::of).collect())
    }

    async fn recent(
        &self,
        tally: Tally,
        span: Span,
        limit: u64,
    ) -> Result<Vec<LogRecord>, RunLogError> {
        self.reachable()?;
        let mut found: Vec<LogRecord> = self
            .map()
            .values()
            .filter(|r| tally.matches(r.status) && span.contains(r.start_time))
            .cloned()
            .map(|mut r| {
                r.output.clear();
                r
            })
            .collect();
        found.sort_by(|a, b| LogCursor::key(b).cmp(&LogCursor::key(a)));
        found.truncate(limit.min(COUNT_CAP) as usize);
        Ok(found)
    }

    async fn newest_by_job(
        &self,
        tally: Tally,
        span: Span,
    ) -> Result<std::collections::HashMap<String, i64>, RunLogError> {
        self.reachable()?;
        let mut newest = std::collections::HashMap::new();
        for r in self.map().values() {
            if tally.matches(r.status) && span.contains(r.start_time) {
                let t = newest.entry(r.job_name.clone()).or_insert(r.start_time);
                *t = (*t).max(r.start_time);
            }
        }
        Ok(newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunStatus;

    fn record(run: &str, start: i64, status: RunStatus) -> LogRecord {
        let mut r =
            crate::verdict::record_of("j", "true", start, status, String::new(), "w", start);
        r.run_id = run.to_string();
        r
    }

    #[tokio::test]
    async fn stores_each_record_once_and_pages_newest_first() {
        let log = MemoryRunLog::new();
        let a = record("a", 1, RunStatus::Success);
        let b = record("b", 2, RunStatus::Failed);
        log.write(&[a.clone(), b]).await.expect("write");
        log.write(std::slice::from_ref(&a))
            .await
            .expect("write again");
        let page = log
            .query(&LogQuery {
                limit: 10,
                ..LogQuery::default()
            })
            .await
            .expect("query");
        assert_eq!(page.total, 2);
        let ids: Vec<&str> = page.records.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, vec!["b", "a"]);
    }

    #[tokio::test]
    async fn a_down_log_refuses_writes_as_unavailable() {
        let log = MemoryRunLog::new();
        log.set_down(true);
        let err = log.write(&[record("a", 1, RunStatus::Success)]).await;
        assert!(matches!(err, Err(RunLogError::Unavailable(_))));
        assert_eq!(log.failed_writes(), 1);
        assert!(log.records().is_empty());
    }
}
