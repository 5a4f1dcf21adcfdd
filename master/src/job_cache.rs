//! Every job, kept in memory by each master (ARCHITECTURE §6, "Job
//! cache"): listed at a revision, then watched from the next one; listed
//! again after a compaction or any watch error. Reads of the REST API are
//! served from it, with each job's parsed schedule at hand, so a page of
//! 100,000 jobs costs a map walk, not a read and parse of every job.
//!
//! The cache answers only while its watch is alive: etcd must answer a
//! progress request on the watch stream within 1.5 s (asked every 0.5 s).
//! Before the first list, and from a silence or an error until the next
//! list succeeds, readers go to etcd (and get its outage as a 503). A write made through this
//! master is visible in its next read: [`JobCache::caught_up`] waits until
//! the cache has applied the write's revision.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use etcd_client::{Client, EventType};
use rcron_shared::backoff::Backoff;
use rcron_shared::watch::list_then_watch;
use rcron_shared::{Job, JobName, Keys, Schedule, ScheduleCache};

use crate::Error;
use crate::store::JobStore;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the cache asks etcd to confirm its watch is current.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// A watch etcd has not answered for this long is out of step.
const STALE_AFTER: Duration = Duration::from_millis(1500);

/// How long the leader's loops wait for the cache to reach the revision
/// they read at (a progress answer comes every [`PROGRESS_EVERY`]) before
/// they read every job from etcd instead.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(2);

/// How long an API read waits for the cache to apply this master's own
/// writes before it reads etcd instead.
const OWN_WRITES_WITHIN: Duration = Duration::from_secs(1);

/// A job as cached: the job and its parsed schedule (None when it does not
/// parse, which a stored job written by hand may not).
#[derive(Clone)]
pub struct Cached {
    /// The job.
    pub job: Arc<Job>,
    /// Its schedule, shared by every job with the same expression and zone.
    pub schedule: Option<Arc<Schedule>>,
}

impl Cached {
    /// Its next fire time after `now`; None when paused or never again.
    pub fn next_fire(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.job.disabled {
            return None;
        }
        self.schedule.as_ref().and_then(|s| s.next_after(now))
    }
}

/// Which jobs a page holds.
#[derive(Debug, Default, Clone)]
pub struct JobQuery {
    /// Jobs whose name or command contains this (case-insensitive).
    pub q: Option<String>,
    /// Only enabled (true) or paused (false) jobs.
    pub enabled: Option<bool>,
    /// Only jobs whose target asks for this label (`key`, `value`).
    pub label: Option<(String, String)>,
    /// Only jobs that start this one: it is in their `onSuccess` or
    /// `onFailure` (what a job's page shows as "started by").
    pub chains_to: Option<JobName>,
    /// Jobs named after this one (the previous page's `nextCursor`).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// One page of jobs.
pub struct JobPage {
    /// The jobs, by name.
    pub jobs: Vec<Cached>,
    /// How many jobs match the filters (all pages).
    pub total: u64,
    /// The cursor of the next page; None on the last.
    pub next: Option<String>,
}

struct State {
    jobs: BTreeMap<JobName, Cached>,
    schedules: ScheduleCache,
}

/// The master's in-memory copy of `/cron/jobs/`.
pub struct JobCache {
    state: RwLock<State>,
    /// The etcd revision the cache reflects; 0 while it is not in step.
    revision: watch::Sender<i64>,
    timezone: Tz,
}

impl JobCache {
    /// An empty cache (not in step until [`JobCache::run`] lists the jobs);
    /// jobs without a `timezone` are scheduled in `timezone`.
    pub fn new(timezone: Tz) -> Arc<Self> {
        Arc::new(Self {
            state: RwLock::new(State {
                jobs: BTreeMap::new(),
                schedules: ScheduleCache::default(),
            }),
            revision: watch::Sender::new(0),
            timezone,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Held for map operations that do not panic half-way.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The revision the cache is in step with; None when it is not.
    pub fn revision(&self) -> Option<i64> {
        let r = *self.revision.borrow();
        (r > 0).then_some(r)
    }

    /// Waits (at most `within`) until the cache is in step and has applied
    /// `revision`; false when it has not.
    pub async fn caught_up(&self, revision: i64, within: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        tokio::time::timeout(within, rx.wait_for(|r| *r > 0 && *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits (at most 1 s) until the cache is in step and has applied every
    /// job write made through `store` (this master's API): a job saved here
    /// is then seen by the next read of the cache. False: read etcd.
    pub async fn has_own_writes(&self, store: &JobStore) -> bool {
        self.caught_up(store.written(), OWN_WRITES_WITHIN).await
    }

    /// The named job as this master last wrote it or later: from the cache
    /// once it has this master's own writes, else from etcd.
    pub async fn job(&self, name: &JobName, store: &JobStore) -> Result<Option<Arc<Job>>, Error> {
        if self.has_own_writes(store).await {
            return Ok(self.get(name).map(|c| c.job));
        }
        Ok(store.get(name).await?.map(Arc::new))
    }

    /// Every job as of etcd revision `revision` or later (0: any revision
    /// the cache is in step with): from the cache once it has applied it,
    /// else read from etcd. The leader's loops (settlement, placement, run
    /// requests) look at every job every 2 s; at 100,000 jobs a read from
    /// etcd is 26 MB each time, which kept etcd busy on a whole core.
    pub async fn jobs_at(&self, revision: i64, store: &JobStore) -> Result<Vec<Arc<Job>>, Error> {
        if self.caught_up(revision, CATCH_UP_WITHIN).await {
            return Ok(self.read().jobs.values().map(|c| c.job.clone()).collect());
        }
        Ok(store.list().await?.into_iter().map(Arc::new).collect())
    }

    /// The named job; None when it does not exist.
    pub fn get(&self, name: &JobName) -> Option<Cached> {
        self.read().jobs.get(name).cloned()
    }

    /// Every job, by name.
    pub fn all(&self) -> Vec<Cached> {
        self.read().jobs.values().cloned().collect()
    }

    /// How many jobs there are.
    pub fn len(&self) -> usize {
        self.read().jobs.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The page `query` asks for.
    pub fn page(&self, query: &JobQuery) -> JobPage {
        page_of(&self.read().jobs, query)
    }

    /// `jobs` (read from etcd, for a consistent read) as the cache holds
    /// them, so that [`page_of`] pages them alike.
    pub fn index(&self, jobs: Vec<Job>) -> BTreeMap<JobName, Cached> {
        let mut schedules = ScheduleCache::default();
        jobs.into_iter()
            .map(|job| {
                let schedule = schedules
                    .parse(&job.cron_expr, job.zone(self.timezone))
                    .ok();
                (
                    job.name.clone(),
                    Cached {
                        job: Arc::new(job),
                        schedule,
                    },
                )
            })
            .collect()
    }

    /// Keeps the cache in step with etcd until `token` is cancelled.
    pub async fn run(self: Arc<Self>, client: Client, keys: Keys, token: CancellationToken) {
        let mut backoff = Backoff::etcd();
        while !token.is_cancelled() {
            match self
                .sync_and_watch(&client, &keys, &token, &mut backoff)
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    // Out of step: readers go to etcd until the next list.
                    self.revision.send_replace(0);
                    tracing::warn!(error = %e, retry_in_ms = backoff.current().as_millis() as u64,
                        "job cache watch interrupted; listing again");
                    if !backoff.wait_or_cancel(&token).await {
                        return;
                    }
                }
            }
        }
    }

    async fn sync_and_watch(
        &self,
        client: &Client,
        keys: &Keys,
        token: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), etcd_client::Error> {
        let (listed, watch) = list_then_watch(client, &keys.jobs_dir()).await?;
        // etcd answers a progress request on the stream at once: a stream
        // silent for STALE_AFTER (etcd gone, a partition) is given up.
        let mut watch = watch.confirmed(PROGRESS_EVERY, STALE_AFTER);
        let revision = listed.revision;
        {
            let mut state = self.write();
            let State { jobs, schedules } = &mut *state;
            jobs.clear();
            for kv in &listed.kvs {
                if let Some((name, cached)) = self.decode(keys, kv.key(), kv.value(), schedules) {
                    jobs.insert(name, cached);
                }
            }
        }
        self.revision.send_replace(revision.max(1));
        backoff.reset();
        tracing::info!(jobs = self.len(), revision, "job cache listed");
        while let Some(resp) = watch.next(token).await? {
            let mut newest = None;
            {
                let mut state = self.write();
                let State { jobs, schedules } = &mut *state;
                for event in resp.events() {
                    let Some(kv) = event.kv() else { continue };
                    newest = Some(kv.mod_revision());
                    let Some(name) = keys.parse_job(kv.key()) else {
                        continue;
                    };
                    match event.event_type() {
                        EventType::Put => {
                            match self.decode(keys, kv.key(), kv.value(), schedules) {
                                Some((name, cached)) => {
                                    jobs.insert(name, cached);
                                }
                                None => {
                                    jobs.remove(&name);
                                }
                            }
                        }
                        EventType::Delete => {
                            jobs.remove(&name);
                        }
                    }
                }
            }
            // Only events move the applied revision: etcd before 3.4.25
            // and 3.5.8 could send a progress notification ahead of events
            // still to come (etcd issue 15220), so a progress answer proves
            // the stream alive, not the copy current. A write through this
            // master is in its range, so its own event moves it.
            if let Some(r) = newest {
                self.revision.send_if_modified(|cur| {
                    let moved = r > *cur;
                    *cur = (*cur).max(r);
                    moved
                });
            }
        }
        Ok(())
    }

    fn decode(
        &self,
        keys: &Keys,
        key: &[u8],
        value: &[u8],
        schedules: &mut ScheduleCache,
    ) -> Option<(JobName, Cached)> {
        let name = keys.parse_job(key)?;
        match Job::from_stored_cached(value, schedules) {
            Ok(job) if job.name == name => {
                let schedule = schedules
                    .parse(&job.cron_expr, job.zone(self.timezone))
                    .ok();
                Some((
                    name,
                    Cached {
                        job: Arc::new(job),
                        schedule,
                    },
                ))
            }
            Ok(_) | Err(_) => {
                tracing::warn!(key = %String::from_utf8_lossy(key), "stored job is not valid; not listed");
                None
            }
        }
    }
}

/// The page of `jobs` that `query` asks for.
pub fn page_of(jobs: &BTreeMap<JobName, Cached>, query: &JobQuery) -> JobPage {
    let needle = query.q.as_deref().map(str::to_lowercase);
    let matches = |c: &Cached| -> bool {
        let job = &c.job;
        if query.enabled.is_some_and(|e| e == job.disabled) {
            return false;
        }
        if let Some((k, v)) = &query.label
            && job
                .target
                .as_ref()
                .is_none_or(|t| t.labels.get(k) != Some(v))
        {
            return false;
        }
        if let Some(target) = &query.chains_to
            && !job.on_success.contains(target)
            && !job.on_failure.contains(target)
        {
            return false;
        }
        match &needle {
            Some(n) => contains_folded(job.name.as_str(), n) || contains_folded(&job.command, n),
            None => true,
        }
    };
    let filtered = query.q.is_some()
        || query.enabled.is_some()
        || query.label.is_some()
        || query.chains_to.is_some();
    let from = match &query.after {
        Some(after) => std::ops::Bound::Excluded(after.as_str()),
        None => std::ops::Bound::Unbounded,
    };
    let mut page = Vec::with_capacity(query.limit.min(1024));
    let mut next = None;
    for c in jobs
        .range::<str, _>((from, std::ops::Bound::Unbounded))
        .map(|(_, c)| c)
        .filter(|c| matches(c))
    {
        if page.len() == query.limit {
            next = page.last().map(|c: &Cached| c.job.name.to_string());
            break;
        }
        page.push(c.clone());
    }
    // Unfiltered, the total is the map's size; filtered, one more pass.
    let total = if filtered {
        jobs.values().filter(|c| matches(c)).count() as u64
    } else {
        jobs.len() as u64
    };
    JobPage {
        jobs: page,
        total,
        next,
    }
}

/// Whether `haystack` contains `needle_lower` (already lowercased),
/// ignoring case, without allocating for ASCII text.
fn contains_folded(haystack: &str, needle_lower: &str) -> bool {
    if haystack.is_ascii() && needle_lower.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle_lower.as_bytes());
        return n.is_empty()
            || h.windows(n.len())
                .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b));
    }
    haystack.to_lowercase().contains(needle_lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_with(names: &[(&str, &str, bool)]) -> Arc<JobCache> {
        cache_of(names.iter().map(|(name, command, disabled)| {
            serde_json::json!({"name": name, "command": command,
                "cronExpr": "@daily", "disabled": disabled})
        }))
    }

    /// A cache holding these job documents.
    fn cache_of(docs: impl IntoIterator<Item = serde_json::Value>) -> Arc<JobCache> {
        let cache = JobCache::new(chrono_tz::UTC);
        {
            let mut state = cache.write();
            for doc in docs {
                let job = Job::from_json(doc.to_string().as_bytes()).expect("job");
                state.jobs.insert(
                    job.name.clone(),
                    Cached {
                        job: Arc::new(job),
                        schedule: None,
                    },
                );
            }
        }
        cache
    }

    fn names(page: &JobPage) -> Vec<&str> {
        page.jobs.iter().map(|c| c.job.name.as_str()).collect()
    }

    #[test]
    fn pages_follow_the_cursor_and_filters_count_every_match() {
        let cache = cache_with(&[
            ("a", "backup db", false),
            ("b", "echo", true),
            ("c", "BACKUP files", false),
            ("d", "echo", false),
        ]);
        let first = cache.page(&JobQuery {
            limit: 2,
            ..JobQuery::default()
        });
        assert_eq!(names(&first), ["a", "b"]);
        assert_eq!(first.total, 4);
        assert_eq!(first.next.as_deref(), Some("b"));
        let second = cache.page(&JobQuery {
            limit: 2,
            after: first.next,
            ..JobQuery::default()
        });
        assert_eq!(names(&second), ["c", "d"]);
        assert_eq!(second.next, None);

        let backups = cache.page(&JobQuery {
            limit: 1,
            q: Some("Backup".into()),
            ..JobQuery::default()
        });
        assert_eq!(names(&backups), ["a"]);
        assert_eq!(backups.total, 2, "every match is counted");
        assert_eq!(backups.next.as_deref(), Some("a"));
        let paused = cache.page(&JobQuery {
            limit: 10,
            enabled: Some(false),
            ..JobQuery::default()
        });
        assert_eq!(names(&paused), ["b"]);
    }

    #[test]
    fn chains_to_finds_the_jobs_that_start_a_job_on_success_or_failure() {
        let job = |name: &str, on_success: &[&str], on_failure: &[&str]| {
            serde_json::json!({"name": name, "command": "true", "cronExpr": "@daily",
                "onSuccess": on_success, "onFailure": on_failure})
        };
        let cache = cache_of([
            job("backup", &["report"], &[]),
            job("cleanup", &[], &["report"]),
            job("import", &["reporting"], &["backup"]),
            job("nightly", &["backup", "report"], &["page"]),
            job("report", &[], &[]),
        ]);
        let starts = |name: &str, limit: usize, after: Option<&str>| {
            cache.page(&JobQuery {
                chains_to: Some(JobName::new(name).expect("name")),
                limit,
                after: after.map(str::to_string),
                ..JobQuery::default()
            })
        };
        let report = starts("report", 10, None);
        // A whole name, not a part of one (`reporting` does not start it).
        assert_eq!(names(&report), ["backup", "cleanup", "nightly"]);
        assert_eq!(report.total, 3);
        assert_eq!(report.next, None);
        // Paged like any filter: every match counted on each page.
        let first = starts("report", 2, None);
        assert_eq!(names(&first), ["backup", "cleanup"]);
        assert_eq!(first.total, 3);
        let second = starts("report", 2, first.next.as_deref());
        assert_eq!(names(&second), ["nightly"]);
        assert_eq!(names(&starts("backup", 10, None)), ["import", "nightly"]);
        let none = starts("nightly", 10, None);
        assert!(none.jobs.is_empty());
        assert_eq!(none.total, 0);
        // With another filter, both must hold.
        let with_q = cache.page(&JobQuery {
            chains_to: Some(JobName::new("report").expect("name")),
            q: Some("NIGHT".into()),
            limit: 10,
            ..JobQuery::default()
        });
        assert_eq!(names(&with_q), ["nightly"]);
        assert_eq!(with_q.total, 1);
    }
}
