//! The run requests this worker knows of (ARCHITECTURE §4, "Run
//! requests"): what the watch says exists, which ones are being tried here,
//! and when to try again one that found its job busy or every slot taken.
//! Pure bookkeeping: the scheduler offers what is due as ticks.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rcron_shared::{JobName, RunRequest};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a request that could not start here waits before it is tried
/// again (the lock is watched, so a busy job costs no etcd request until
/// its lock is gone).
pub const RETRY_AFTER: Duration = Duration::from_millis(500);

/// A request offered to the scheduler, with its key's mod revision (which
/// a claim compares).
#[derive(Debug, Clone)]
pub struct Requested {
    /// The request, unclaimed.
    pub request: Arc<RunRequest>,
    /// Mod revision of its key when it was seen.
    pub revision: i64,
    /// Cancelled once this version is no longer claimable (claimed, changed
    /// or gone): a tick waiting for its rank or a slot gives up without a
    /// transaction.
    pub gone: CancellationToken,
}

struct Pending {
    requested: Requested,
    /// Launched here and not finished yet.
    trying: bool,
    not_before: Instant,
}

type Key = (JobName, String);

/// Known requests, unclaimed, by job and id.
#[derive(Default)]
pub struct RunRequests {
    pending: BTreeMap<Key, Pending>,
    /// Requests of `target.mode: all` jobs this worker has run (each runs
    /// them once; nobody claims them).
    ran_here: HashSet<String>,
}

impl RunRequests {
    /// Replaces the set with `listed` (after a start or a broken watch);
    /// a request still being tried here stays so.
    pub fn replace_all(&mut self, listed: Vec<(RunRequest, i64)>, now: Instant) {
        let mut old = std::mem::take(&mut self.pending);
        for (request, revision) in listed {
            let key = (request.job.clone(), request.id.clone());
            let trying = match old.remove(&key) {
                Some(p) if p.requested.revision == revision => {
                    self.pending.insert(key, p);
                    continue;
                }
                Some(p) => {
                    p.requested.gone.cancel();
                    p.trying
                }
                None => false,
            };
            self.insert(request, revision, now, trying);
        }
        for p in old.into_values() {
            p.requested.gone.cancel();
        }
    }

    /// A request was put: a claimed one is another worker's (or this
    /// worker's own run, tracked as a run now), an unclaimed one waits.
    pub fn put(&mut self, request: RunRequest, revision: i64, now: Instant) {
        let key = (request.job.clone(), request.id.clone());
        let trying = self.pending.get(&key).is_some_and(|p| p.trying);
        self.insert(request, revision, now, trying);
    }

    fn insert(&mut self, request: RunRequest, revision: i64, now: Instant, trying: bool) {
        let key = (request.job.clone(), request.id.clone());
        if let Some(old) = self.pending.get(&key)
            && old.requested.revision == revision
        {
            return; // the same version, listed again
        }
        if let Some(old) = self.pending.remove(&key) {
            old.requested.gone.cancel();
        }
        if request.claimed.is_some() {
            return;
        }
        self.pending.insert(
            key,
            Pending {
                requested: Requested {
                    request: Arc::new(request),
                    revision,
                    gone: CancellationToken::new(),
                },
                trying,
                not_before: now,
            },
        );
    }

    /// The request is gone (run, or expired).
    pub fn gone(&mut self, job: &JobName, id: &str) {
        if let Some(old) = self.pending.remove(&(job.clone(), id.to_string())) {
            old.requested.gone.cancel();
        }
    }

    /// Requests due for a try at `now` (ms since the epoch: `now_ms`),
    /// marked as being tried. Those past their deadline are dropped: the
    /// leader master records them.
    pub fn due(&mut self, now: Instant, now_ms: i64) -> Vec<Requested> {
        self.pending
            .retain(|_, p| p.trying || p.requested.request.deadline > now_ms);
        self.pending
            .values_mut()
            .filter(|p| !p.trying && p.not_before <= now)
            .map(|p| {
                p.trying = true;
                p.requested.clone()
            })
            .collect()
    }

    /// A try of the request ended (its run, or a claim that did not take):
    /// if it is still there, it is tried again after [`RETRY_AFTER`].
    pub fn tried(&mut self, job: &JobName, id: &str, now: Instant) {
        if let Some(p) = self.pending.get_mut(&(job.clone(), id.to_string())) {
            p.trying = false;
            p.not_before = now + RETRY_AFTER;
        }
    }

    /// The request cannot be tried here now (its job is busy here, or not
    /// this worker's): tried again after [`RETRY_AFTER`].
    pub fn later(&mut self, job: &JobName, id: &str, now: Instant) {
        self.tried(job, id, now);
    }

    /// Whether this worker ran request `id` of a `target.mode: all` job;
    /// notes that it does now.
    pub fn first_run_here(&mut self, id: &str) -> bool {
        self.ran_here.insert(id.to_string())
    }

    /// When the next request not being tried becomes due.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending
            .values()
            .filter(|p| !p.trying)
            .map(|p| p.not_before)
            .min()
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcron_shared::RunParams;

    fn request(job: &str, deadline_secs: u64) -> RunRequest {
        let job = JobName::new(job).expect("valid");
        RunRequest::manual(job, RunParams::default(), 0, deadline_secs)
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_request_is_tried_again_later_and_once_at_a_time() {
        let mut r = RunRequests::default();
        let now = Instant::now();
        let a = request("a", 60);
        r.put(a.clone(), 5, now);
        let due = r.due(now, 1_000);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].revision, 5);
        assert!(r.due(now, 1_000).is_empty(), "being tried");
        r.tried(&a.job, &a.id, now);
        assert!(r.due(now, 1_000).is_empty(), "not before the retry delay");
        assert_eq!(r.next_due(), Some(now + RETRY_AFTER));
        assert_eq!(r.due(now + RETRY_AFTER, 1_000).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn claimed_gone_and_expired_requests_leave() {
        let mut r = RunRequests::default();
        let now = Instant::now();
        let a = request("a", 60);
        let b = request("b", 1);
        let c = request("c", 60);
        r.put(a.clone(), 1, now);
        r.put(b.clone(), 2, now);
        r.put(c.clone(), 3, now);
        let tried = r.due(now, 0);
        r.put(a.claimed_by("w2", "run", 10), 4, now);
        r.gone(&c.job, &c.id);
        let gone = |job: &str| {
            tried
                .iter()
                .find(|t| t.request.job.as_str() == job)
                .is_some_and(|t| t.gone.is_cancelled())
        };
        assert!(gone("a") && gone("c"), "ticks trying them give up");
        assert!(!gone("b"));
        r.tried(&b.job, &b.id, now);
        assert!(
            r.due(now + RETRY_AFTER, 2_000).is_empty(),
            "a claimed, b expired, c gone"
        );
        assert!(r.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_relist_keeps_what_is_being_tried() {
        let mut r = RunRequests::default();
        let now = Instant::now();
        let a = request("a", 60);
        r.put(a.clone(), 1, now);
        assert_eq!(r.due(now, 0).len(), 1);
        r.replace_all(vec![(a.clone(), 1), (request("b", 60), 2)], now);
        let due = r.due(now, 0);
        assert_eq!(due.len(), 1, "a is still being tried");
        assert_eq!(due[0].request.job.as_str(), "b");
    }
}
