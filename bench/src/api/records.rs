//! What the benchmark loads, as functions of a number: job `i`'s name and
//! expression, run record `i`, and a log page's key (start time, run id,
//! attempt) and query, so that every page read can be checked against
//! what was loaded.

use mongodb::bson::{Document, doc};
use rcron_shared::{LogRecord, RunStatus};
use serde_json::Value;

use super::{HOT_JOB, LOG_JOBS, LOG_PAGE};

/// Job `i`'s expression, one of `exprs` (at most 8,640): second 0,
/// minute and hour from `i % exprs`, the 1st of January to June. Distinct
/// schedules as a real cluster has them (each parsed expression costs ~5
/// KiB in every cache that holds it), none due while the benchmark runs
/// (so the leader writes no verdict into the run log being measured).
pub(super) fn job_expr(i: usize, exprs: usize) -> String {
    let k = i % exprs.clamp(1, 8640);
    format!(
        "0 {} {} 1 {} * *",
        k % 60,
        (k / 60) % 24,
        1 + (k / 1440) % 6
    )
}

/// A record's place in page order: start time, run id, attempt
/// (compared descending).
pub(super) type Key = (i64, String, u32);

/// The run records the benchmark loads, as a function of their number:
/// start times in steps of 1 s shared by 4 records (ties broken by run
/// id), every 8th record the second attempt of the one before (same run
/// id and start: ties broken by attempt), runs numbered a multiple of 10
/// (an eighth of the records) on [`HOT_JOB`], the rest spread over
/// [`LOG_JOBS`] jobs.
#[derive(Clone, Copy)]
pub(super) struct Records {
    /// Start time of record 0 (ms).
    pub(super) base: i64,
}

impl Records {
    pub(super) fn owner(i: usize) -> usize {
        if i % 8 == 7 { i - 1 } else { i }
    }

    pub(super) fn is_hot(i: usize) -> bool {
        Self::owner(i).is_multiple_of(10)
    }

    pub(super) fn job(i: usize) -> String {
        let owner = Self::owner(i);
        if Self::is_hot(i) {
            HOT_JOB.to_string()
        } else {
            format!("api-log-{}", owner % LOG_JOBS)
        }
    }

    pub(super) fn start(&self, i: usize) -> i64 {
        self.base + (i / 4) as i64 * 1000
    }

    pub(super) fn key(&self, i: usize) -> Key {
        (
            self.start(i),
            format!("bench-{}", Self::owner(i)),
            1 + u32::from(i % 8 == 7),
        )
    }

    pub(super) fn record(&self, i: usize) -> LogRecord {
        let (start, run_id, attempt) = self.key(i);
        let failed = Self::owner(i) % 50 == 3;
        LogRecord {
            job_name: Self::job(i),
            command: "/usr/local/bin/nightly-report --since yesterday".into(),
            err: if failed {
                "exit status 1".into()
            } else {
                String::new()
            },
            output: format!("report {i}: {}\n", "x".repeat(120)),
            plan_time: start - 5,
            schedule_time: start - 3,
            start_time: start,
            end_time: start + 40,
            run_id,
            worker: "bench-worker".into(),
            exit_code: Some(i32::from(failed)),
            status: if failed {
                RunStatus::Failed
            } else {
                RunStatus::Success
            },
            attempt,
            output_truncated: false,
            reason: None,
            trigger: Default::default(),
            triggered_by: None,
            params: None,
        }
    }

    /// The first `k` keys in page order among the first `n` records that
    /// `keep` keeps.
    pub(super) fn newest(&self, n: usize, k: usize, keep: impl Fn(usize) -> bool) -> Vec<Key> {
        // Records are loaded in start order and a start is shared by at
        // most 4: collecting k + 8 from the end covers every tie of the
        // k-th.
        let mut keys: Vec<Key> = (0..n)
            .rev()
            .filter(|&i| keep(i))
            .take(k + 8)
            .map(|i| self.key(i))
            .collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        keys.truncate(k);
        keys
    }
}

pub(super) fn encode(k: &Key) -> String {
    format!("{}.{}.{}", k.0, k.1, k.2)
}

/// A log query as the master sends it to the store.
#[derive(Clone)]
pub(super) struct StoreQuery {
    pub(super) job: Option<String>,
    pub(super) before: Option<Key>,
}

impl StoreQuery {
    /// The count's filter and the find's (mongo.rs, `query`).
    pub(super) fn filters(&self) -> (Document, Document) {
        let mut filter = Document::new();
        if let Some(job) = &self.job {
            filter.insert("jobName", job.as_str());
        }
        let count = filter.clone();
        if let Some((t, run_id, attempt)) = &self.before {
            filter.insert(
                "$or",
                vec![
                    doc! {"startTime": {"$lt": *t}},
                    doc! {"startTime": *t, "runId": {"$lt": run_id.as_str()}},
                    doc! {"startTime": *t, "runId": run_id.as_str(),
                    "attempt": {"$lt": i64::from(*attempt)}},
                ],
            );
        }
        (count, filter)
    }

    /// The find's filter with `startTime <= cursor` beside the `$or` (the
    /// same records): a bound on the indexes' first key that a planner
    /// can use without reading the `$or`. Not what the master sends; timed
    /// to see whether the store would do better with it.
    pub(super) fn bounded_filter(&self) -> Option<Document> {
        let (t, _, _) = self.before.as_ref()?;
        let (_, mut filter) = self.filters();
        filter.insert("startTime", doc! {"$lte": *t});
        Some(filter)
    }

    pub(super) fn path(&self) -> String {
        let mut p = format!("/api/v1/logs?limit={LOG_PAGE}");
        if let Some(job) = &self.job {
            p += &format!("&job={job}");
        }
        if let Some(k) = &self.before {
            p += &format!("&before={}", encode(k));
        }
        p
    }
}

pub(super) fn job_name(i: usize) -> String {
    format!("api-{i:06}")
}

/// The page key of a record as the API shows it.
pub(super) fn key_of(l: &Value) -> Key {
    (
        l["startTime"].as_i64().unwrap_or(-1),
        l["runId"].as_str().unwrap_or("").to_string(),
        l["attempt"].as_u64().unwrap_or(0) as u32,
    )
}
