//! What the web admin's operator console reads over and over, kept for a
//! moment per master (ARCHITECTURE §6, "Operator console"): the dashboard,
//! computed at most once per [`DASHBOARD_EVERY`] however many tabs poll it
//! ([`Memo`]), and each job's last run ([`LastRuns`]), read for the job
//! list, the job page and the dashboard's failing jobs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rcron_shared::LogRecord;
use rcron_shared::runlog::{RunLogError, RunLogReader};

/// How long a computed dashboard is served before the next is computed.
pub const DASHBOARD_EVERY: Duration = Duration::from_secs(2);
/// How long a job's last run is taken as read.
pub const LAST_RUN_FOR: Duration = Duration::from_secs(2);
/// Reads of last runs in flight at once, per request.
const LAST_RUN_READS: usize = 8;
/// Past this many remembered jobs, expired ones are forgotten.
const LAST_RUN_ENTRIES: usize = 20_000;

/// A value computed at most once per `every`: callers that come while it
/// is being computed wait for that computation and share its result.
pub struct Memo<T> {
    // tokio's clock, so that tests can move it.
    slot: tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<T>)>>,
    every: Duration,
}

impl<T> Memo<T> {
    /// An empty memo whose values are fresh for `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            slot: tokio::sync::Mutex::new(None),
            every,
        }
    }

    /// The value computed less than `every` ago, or the one `compute`
    /// makes now.
    pub async fn get<F, Fut>(&self, compute: F) -> Arc<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        // Held across the computation on purpose: that is what makes
        // concurrent callers share it. (A caller that goes away while
        // computing releases it; the next one computes.)
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = &*slot
            && at.elapsed() < self.every
        {
            return value.clone();
        }
        let value = Arc::new(compute().await);
        *slot = Some((tokio::time::Instant::now(), value.clone()));
        value
    }
}

/// Each job's newest run (verdicts aside), as last read from the run log.
pub struct LastRuns {
    seen: std::sync::Mutex<HashMap<String, (Instant, Option<LogRecord>)>>,
    fresh_for: Duration,
}

impl Default for LastRuns {
    fn default() -> Self {
        Self {
            seen: Default::default(),
            fresh_for: LAST_RUN_FOR,
        }
    }
}

impl LastRuns {
    /// The last run of each of `jobs` (None: it never ran), each read
    /// with one indexed newest-first find unless read moments ago, at most
    /// [`LAST_RUN_READS`] at a time.
    pub async fn of(
        &self,
        logs: &dyn RunLogReader,
        jobs: &[String],
    ) -> Result<HashMap<String, Option<LogRecord>>, RunLogError> {
        let mut found = HashMap::with_capacity(jobs.len());
        let mut missing = Vec::new();
        {
            let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            for job in jobs {
                match seen.get(job) {
                    Some((at, run)) if at.elapsed() < self.fresh_for => {
                        found.insert(job.clone(), run.clone());
                    }
                    _ => missing.push(job.clone()),
                }
            }
        }
        let read: Vec<(String, Result<Vec<LogRecord>, RunLogError>)> =
            futures::stream::iter(missing)
                .map(|job| async move {
                    let runs = logs.latest_runs(&job, 1).await;
                    (job, runs)
                })
                .buffer_unordered(LAST_RUN_READS)
                .collect()
                .await;
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() > LAST_RUN_ENTRIES {
            seen.retain(|_, (at, _)| at.elapsed() < self.fresh_for);
        }
        for (job, runs) in read {
            let run = runs?.into_iter().next();
            seen.insert(job.clone(), (now, run.clone()));
            found.insert(job, run);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_computation_per_interval() {
        let memo = Arc::new(Memo::new(Duration::from_secs(2)));
        let computed = Arc::new(AtomicUsize::new(0));
        let compute = |computed: Arc<AtomicUsize>| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            computed.fetch_add(1, Ordering::SeqCst)
        };
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (memo, computed) = (memo.clone(), computed.clone());
                tokio::spawn(async move { *memo.get(|| compute(computed)).await })
            })
            .collect();
        for c in callers {
            assert_eq!(c.await.expect("caller"), 0, "all share the first value");
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(*memo.get(|| compute(computed.clone())).await, 1);
    }
}
