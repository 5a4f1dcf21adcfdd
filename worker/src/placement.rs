//! Which worker tries a tick first (ARCHITECTURE §4, "Placement").
//!
//! Every worker mirrors three etcd directories through watches (reads, no
//! raft writes): the live workers (`/cron/workers/`, with labels and
//! whether every slot is taken), the last tick started per job
//! (`/cron/fired/`) and the held `forbid` locks (`/cron/lock/`). For a tick
//! of a `target.mode: one` job, the matching live workers are ranked the
//! same way everywhere ([`rcron_shared::placement::rank`]); the first tries
//! at once, the worker at rank *r* only `r × rank_delay` later and only if
//! its mirror does not show the tick taken (or the job busy) by then. The
//! run-once transaction stays the only guard: two workers that disagree
//! about the ranking just both try, and one loses.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use etcd_client::{Client, EventType, KeyValue};
use rcron_shared::placement::{self, Candidate, Labels, TargetMode};
use rcron_shared::watch::list_then_watch;
use rcron_shared::{Job, JobName, Keys, WorkerInfo};
use tokio_util::sync::CancellationToken;

use crate::scheduler::Tick;
use crate::watcher::retry;

/// Ranks past this one all wait the same: when that many workers failed
/// to take a tick, the rest should not wait longer still.
const MAX_RANK_STEPS: u32 = 8;

/// A live worker as another worker sees it.
#[derive(Debug, Clone)]
struct Peer {
    labels: Labels,
    full: bool,
    draining: bool,
}

#[derive(Debug, Default)]
struct Mirror {
    peers: BTreeMap<String, Peer>,
    /// Last tick started (or settled) per job; -1 = none yet.
    fired: HashMap<JobName, i64>,
    /// Jobs whose `forbid` lock is held by some run.
    busy: HashSet<JobName>,
}

/// What this worker knows of the others, kept by [`watch`].
#[derive(Debug)]
pub struct ClusterView {
    mirror: Mutex<Mirror>,
    /// Bumped whenever a tick is marked fired or a lock changes, so that
    /// ticks waiting their rank give up as soon as they are taken (and
    /// free their job for its next tick here).
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for ClusterView {
    fn default() -> Self {
        Self {
            mirror: Mutex::default(),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl ClusterView {
    fn mirror(&self) -> std::sync::MutexGuard<'_, Mirror> {
        // Held for one map operation; nothing in it panics half-way.
        self.mirror.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether tick `plan_ms` of `job` was started (or settled) somewhere,
    /// or, for `forbid`, another run of the job holds its lock.
    pub fn taken(&self, job: &Job, plan_ms: i64) -> bool {
        let m = self.mirror();
        m.fired.get(&job.name).is_some_and(|f| *f >= plan_ms)
            || (job.concurrency.exclusive() && m.busy.contains(&job.name))
    }

    /// Waits until `deadline` unless tick `plan_ms` of `job` is seen taken
    /// first ([`Self::taken`]); true when it was.
    pub async fn taken_before(
        &self,
        job: &Job,
        plan_ms: i64,
        deadline: tokio::time::Instant,
    ) -> bool {
        let mut changes = self.changed.subscribe();
        loop {
            if self.taken(job, plan_ms) {
                return true;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return self.taken(job, plan_ms),
                changed = changes.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(deadline).await;
                        return self.taken(job, plan_ms);
                    }
                }
            }
        }
    }

    /// Waits until no run holds `job`'s lock, as far as the mirror knows,
    /// or `deadline`; true when it is free.
    pub async fn free_before(&self, job: &JobName, deadline: tokio::time::Instant) -> bool {
        let mut changes = self.changed.subscribe();
        loop {
            if !self.mirror().busy.contains(job) {
                return true;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return !self.mirror().busy.contains(job),
                changed = changes.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                }
            }
        }
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Whether a run holds `job`'s lock, as far as the mirror knows.
    pub fn busy(&self, job: &JobName) -> bool {
        self.mirror().busy.contains(job)
    }

    /// Whether tick `plan_ms` of `job` is known to have been started (or
    /// settled) somewhere.
    pub fn fired(&self, job: &JobName, plan_ms: i64) -> bool {
        self.mirror().fired.get(job).is_some_and(|f| *f >= plan_ms)
    }

    /// How many live workers carry every label of `job`'s target (this
    /// worker's mirror of the registry).
    pub fn matching(&self, job: &Job) -> usize {
        let target = job.target.as_ref();
        self.mirror()
            .peers
            .values()
            .filter(|p| !p.draining && placement::matches(target, &p.labels))
            .count()
    }

    fn set_peer(&self, id: String, info: Option<WorkerInfo>) {
        let mut m = self.mirror();
        match info {
            Some(w) => {
                let running = w.runs.len().max(w.running.len());
                let peer = Peer {
                    full: w.capacity > 0 && running >= w.capacity as usize,
                    // A worker whose clock is off fires nothing: not a candidate.
                    draining: w.draining || w.clock_skewed,
                    labels: w.labels,
                };
                m.peers.insert(id, peer);
            }
            None => {
                m.peers.remove(&id);
            }
        }
    }

    fn set_fired(&self, job: JobName, value: &[u8]) {
        let plan = rcron_shared::verdict::decode_plan(value).unwrap_or(-1);
        self.mirror().fired.insert(job, plan);
        self.bump();
    }
}

/// This worker's part in placement.
#[derive(Debug)]
pub struct Placement {
    /// This worker's id.
    pub me: String,
    /// The wait per rank; zero = every worker tries at once (no ranking).
    pub rank_delay: Duration,
    /// The mirror.
    pub view: std::sync::Arc<ClusterView>,
}

impl Placement {
    /// How long this worker waits before trying `tick`: zero when it is
    /// first, when the job runs on every matching worker, or when ranking
    /// is off. `full_here`: every slot of this worker is taken.
    pub fn wait(&self, tick: &Tick, full_here: bool) -> Duration {
        let job = &tick.job;
        if self.rank_delay.is_zero() || placement::mode(job.target.as_ref()) == TargetMode::All {
            return Duration::ZERO;
        }
        // A run request has no planned tick of its own: its key's revision
        // seeds the ranking instead.
        let seed = tick
            .request
            .as_ref()
            .map_or_else(|| tick.plan_time.timestamp_millis(), |r| r.revision);
        let target = job.target.as_ref();
        let rank = {
            let m = self.view.mirror();
            let mut candidates: Vec<Candidate<'_>> = m
                .peers
                .iter()
                .filter(|(id, p)| {
                    **id != self.me && !p.draining && placement::matches(target, &p.labels)
                })
                .map(|(id, p)| Candidate { id, full: p.full })
                .collect();
            candidates.push(Candidate {
                id: &self.me,
                full: full_here,
            });
            placement::rank(job.name.as_str(), seed, &self.me, &candidates)
        };
        self.rank_delay * (rank as u32).min(MAX_RANK_STEPS)
    }
}

/// Keeps `view` in step with etcd until `token` is cancelled: one
/// list-then-watch per directory, listed again after any watch error.
pub async fn watch(
    client: Client,
    keys: Keys,
    view: std::sync::Arc<ClusterView>,
    token: CancellationToken,
) {
    let workers = mirror_dir(&client, keys.workers_dir(), &token, |change| match change {
        Change::Reset(kvs) => {
            view.mirror().peers.clear();
            for kv in kvs {
                put_peer(&view, &keys, kv);
            }
        }
        Change::Put(kv) => put_peer(&view, &keys, kv),
        Change::Delete(key) => {
            if let Some(id) = worker_id(&keys, key) {
                view.set_peer(id, None);
            }
        }
    });
    let fired = mirror_dir(&client, keys.fired_dir(), &token, |change| match change {
        Change::Reset(kvs) => {
            view.mirror().fired.clear();
            for kv in kvs {
                if let Some(job) = keys.parse_fired(kv.key()) {
                    view.set_fired(job, kv.value());
                }
            }
        }
        Change::Put(kv) => {
            if let Some(job) = keys.parse_fired(kv.key()) {
                view.set_fired(job, kv.value());
            }
        }
        Change::Delete(key) => {
            if let Some(job) = keys.parse_fired(key) {
                view.mirror().fired.remove(&job);
            }
        }
    });
    let locks = mirror_dir(&client, keys.lock_dir(), &token, |change| {
        match change {
            Change::Reset(kvs) => {
                let busy = kvs
                    .iter()
                    .filter_map(|kv| keys.parse_lock(kv.key()))
                    .collect();
                view.mirror().busy = busy;
            }
            Change::Put(kv) => {
                if let Some(job) = keys.parse_lock(kv.key()) {
                    view.mirror().busy.insert(job);
                }
            }
            Change::Delete(key) => {
                if let Some(job) = keys.parse_lock(key) {
                    view.mirror().busy.remove(&job);
                }
            }
        }
        view.bump();
    });
    tokio::join!(workers, fired, locks);
}

fn worker_id(keys: &Keys, key: &[u8]) -> Option<String> {
    let dir = keys.workers_dir();
    let id = std::str::from_utf8(key).ok()?.strip_prefix(dir.as_str())?;
    (!id.is_empty()).then(|| id.to_string())
}

fn put_peer(view: &ClusterView, keys: &Keys, kv: &KeyValue) {
    let Some(id) = worker_id(keys, kv.key()) else {
        return;
    };
    match serde_json::from_slice::<WorkerInfo>(kv.value()) {
        Ok(info) => view.set_peer(id, Some(info)),
        // Unreadable: not ranked, like a worker that is not there.
        Err(_) => view.set_peer(id, None),
    }
}

/// One change of a mirrored directory.
pub(crate) enum Change<'a> {
    /// Everything under it now (after a (re)start of the watch).
    Reset(&'a [KeyValue]),
    Put(&'a KeyValue),
    Delete(&'a [u8]),
}

pub(crate) async fn mirror_dir(
    client: &Client,
    dir: String,
    token: &CancellationToken,
    apply: impl Fn(Change<'_>),
) {
    let what = format!("mirror of {dir}");
    retry(&what, token, || mirror_once(client, &dir, token, &apply)).await;
}

async fn mirror_once(
    client: &Client,
    dir: &str,
    token: &CancellationToken,
    apply: &impl Fn(Change<'_>),
) -> Result<(), etcd_client::Error> {
    let (listed, mut watch) = list_then_watch(client, dir).await?;
    apply(Change::Reset(&listed.kvs));
    while let Some(resp) = watch.next(token).await? {
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => apply(Change::Put(kv)),
                EventType::Delete => apply(Change::Delete(kv.key())),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn job(json: &str) -> Job {
        Job::from_json(json.as_bytes()).expect("job")
    }

    fn info(id: &str, labels: &str, runs: usize, capacity: u32) -> WorkerInfo {
        serde_json::from_value(serde_json::json!({
            "id": id, "hostname": "h", "ip": "127.0.0.1", "pid": 1, "version": "x",
            "startTime": 0, "capacity": capacity,
            "running": vec!["j"; runs],
            "labels": placement::parse_labels(labels).expect("labels"),
        }))
        .expect("worker info")
    }

    fn tick(job: Job, plan_ms: i64) -> Tick {
        let t = Utc.timestamp_millis_opt(plan_ms).single().expect("time");
        Tick {
            job: job.into(),
            plan_time: t,
            schedule_time: t,
            request: None,
            schedule: None,
        }
    }

    fn placement(me: &str, view: &std::sync::Arc<ClusterView>) -> Placement {
        Placement {
            me: me.to_string(),
            rank_delay: Duration::from_millis(100),
            view: view.clone(),
        }
    }

    #[test]
    fn exactly_one_matching_worker_goes_first_and_the_others_wait_their_rank() {
        let view = std::sync::Arc::new(ClusterView::default());
        for (id, labels) in [
            ("a", "role=db"),
            ("b", "role=db"),
            ("c", "role=web"),
            ("d", "role=db"),
        ] {
            view.set_peer(id.to_string(), Some(info(id, labels, 0, 4)));
        }
        let j = job(
            r#"{"name":"backup","command":"true","cronExpr":"* * * * * * *","target":{"labels":{"role":"db"}}}"#,
        );
        for plan in (0..20).map(|s| 1_700_000_000_000 + s * 1000) {
            let mut waits: Vec<u128> = ["a", "b", "d"]
                .iter()
                .map(|me| {
                    placement(me, &view)
                        .wait(&tick(j.clone(), plan), false)
                        .as_millis()
                })
                .collect();
            waits.sort_unstable();
            assert_eq!(waits, vec![0, 100, 200], "at {plan}");
        }
    }

    #[test]
    fn full_or_draining_peers_do_not_go_first_and_all_mode_never_waits() {
        let view = std::sync::Arc::new(ClusterView::default());
        view.set_peer("a".into(), Some(info("a", "", 4, 4)));
        let mut gone = info("c", "", 0, 4);
        gone.draining = true;
        view.set_peer("c".into(), Some(gone));
        let j = job(r#"{"name":"j","command":"true","cronExpr":"* * * * * * *"}"#);
        for plan in 0..30 {
            assert_eq!(
                placement("b", &view).wait(&tick(j.clone(), plan * 1000), false),
                Duration::ZERO
            );
        }
        let all = job(
            r#"{"name":"j","command":"true","cronExpr":"* * * * * * *","target":{"mode":"all"}}"#,
        );
        view.set_peer("a".into(), Some(info("a", "", 0, 4)));
        for plan in 0..30 {
            assert_eq!(
                placement("b", &view).wait(&tick(all.clone(), plan * 1000), false),
                Duration::ZERO
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_tick_gives_up_as_soon_as_it_is_taken() {
        let view = std::sync::Arc::new(ClusterView::default());
        let j = job(r#"{"name":"j","command":"true","cronExpr":"* * * * * * *"}"#);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let waiting = {
            let (view, j) = (view.clone(), j.clone());
            tokio::spawn(async move {
                let taken = view.taken_before(&j, 5000, deadline).await;
                (taken, tokio::time::Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        view.set_fired(j.name.clone(), b"00000000000000005000");
        let (taken, at) = waiting.await.expect("joined");
        assert!(taken);
        assert!(at < deadline, "woke when taken, not at the deadline");
        let untaken = view
            .taken_before(
                &j,
                6000,
                tokio::time::Instant::now() + Duration::from_millis(10),
            )
            .await;
        assert!(!untaken);
    }

    #[test]
    fn the_mirror_tells_taken_ticks_and_busy_jobs() {
        let view = ClusterView::default();
        let j = job(r#"{"name":"j","command":"true","cronExpr":"* * * * * * *"}"#);
        assert!(!view.taken(&j, 5000));
        view.set_fired(j.name.clone(), b"00000000000000005000");
        assert!(view.taken(&j, 5000) && !view.taken(&j, 6000));
        view.mirror().busy.insert(j.name.clone());
        assert!(view.taken(&j, 6000));
        let allow = job(
            r#"{"name":"j","command":"true","cronExpr":"* * * * * * *","concurrency":"allow"}"#,
        );
        assert!(!view.taken(&allow, 6000));
    }
}
