//! The per-run cluster lock (ARCHITECTURE §4): one etcd transaction that both
//! advances the job's "last fired tick" and, for `concurrency: forbid`,
//! takes `/cron/lock/<name>`. A tick therefore starts at most once in the
//! whole cluster, even when a worker's clock lags and the previous run has
//! already released the lock (the original system ran such a tick twice).
//!
//! Locks hang off the worker's session lease (see `register`): if the
//! worker dies, the lease expires and its locks vanish with it. Every held
//! `forbid` lock is also listed in [`HeldLocks`], where `lock_keeper` moves
//! it to a new lease (or stops its run) when the session changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use rcron_shared::backoff::Backoff;
use rcron_shared::placement::{self, TargetMode};
use rcron_shared::verdict::{decode_plan, encode_fired, encode_plan};
use rcron_shared::{Job, JobName, Keys, RunRequest};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::run_stop::RunStop;

/// Tries of [`Locker::abandon`] (with backoff to 5 s: about half a minute).
const ABANDON_ATTEMPTS: u32 = 10;

/// The wait before [`Locker::abandon`] checks a second time.
const ABANDON_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// A `forbid` lock this worker holds, as the keeper sees it.
#[derive(Debug, Clone)]
pub struct Held {
    /// The job.
    pub job: JobName,
    /// `/cron/lock/<name>`.
    pub key: String,
    /// The value written: this run's holder record (tells "still ours").
    pub holder: String,
    /// The lease it is attached to.
    pub lease: i64,
    /// Mod revision of the last write of it by this worker.
    pub revision: i64,
    /// Stops the run that holds it.
    pub stop: RunStop,
}

/// Every `forbid` lock held now, by a local id.
#[derive(Debug, Default)]
pub struct HeldLocks {
    locks: Mutex<HashMap<u64, Held>>,
    next: AtomicU64,
}

impl HeldLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Held>> {
        // Held for one map operation; nothing in it panics half-way.
        self.locks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, held: Held) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.map().insert(id, held);
        id
    }

    fn remove(&self, id: u64) -> Option<Held> {
        self.map().remove(&id)
    }

    /// The locks not attached to `lease`.
    pub fn not_on(&self, lease: Option<i64>) -> Vec<(u64, Held)> {
        self.map()
            .iter()
            .filter(|(_, h)| Some(h.lease) != lease)
            .map(|(id, h)| (*id, h.clone()))
            .collect()
    }

    /// Records that lock `id` now hangs off `lease` at `revision`; false
    /// when it was released meanwhile (the caller then deletes what it wrote).
    pub fn rebound(&self, id: u64, lease: i64, revision: i64) -> bool {
        match self.map().get_mut(&id) {
            Some(h) => {
                h.lease = lease;
                h.revision = revision;
                true
            }
            None => false,
        }
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What settling a tick found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// This call settled it; `previous` is the fired tick it replaced
    /// (None: the job had never fired).
    Settled {
        /// The replaced fired tick (ms).
        previous: Option<i64>,
    },
    /// Another worker started or settled it (or a later tick) first.
    Taken,
}

/// The fired tick a successful transaction replaced: its first operation
/// reads the marker before the put.
fn previous_fired(resp: &etcd_client::TxnResponse) -> Option<i64> {
    match resp.op_responses().first() {
        Some(TxnOpResponse::Get(g)) => g.kvs().first().and_then(|kv| decode_plan(kv.value())),
        _ => None,
    }
}

/// What became of a request whose answer was lost ([`Locker::resolve_lost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostRequest {
    /// It moved the marker to its tick, replacing `previous`.
    Moved {
        /// The replaced fired tick (ms).
        previous: Option<i64>,
    },
    /// It did not, and now never will: the tick was settled in its stead,
    /// replacing `previous`.
    Fenced {
        /// The replaced fired tick (ms).
        previous: Option<i64>,
    },
    /// It did not: another worker started or settled the tick (or a later one).
    Elsewhere,
}

/// What the lock transaction found.
pub enum LockOutcome {
    /// This worker runs the tick; release the guard when done.
    Acquired(Box<LockGuard>),
    /// Another worker already started this tick (or a later one).
    AlreadyFired,
    /// `forbid` and another run of the job is still going.
    Busy,
}

/// Who holds a lock, stored as its value (for operators reading etcd).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Holder<'a> {
    worker: &'a str,
    run_id: &'a str,
    plan_time: i64,
}

/// Takes per-run locks.
#[derive(Clone)]
pub struct Locker {
    client: Client,
    keys: Keys,
    worker_id: String,
    held: Arc<HeldLocks>,
    revision: Arc<std::sync::atomic::AtomicI64>,
}

/// Longest read of a marker's history.
const HISTORY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a marker's history could not be read.
enum HistoryError {
    Compacted,
    Etcd(etcd_client::Error),
    /// The watch ended before it told for certain; read it again.
    Ended(String),
}

impl From<etcd_client::Error> for HistoryError {
    fn from(e: etcd_client::Error) -> Self {
        Self::Etcd(e)
    }
}

impl Locker {
    /// A locker for `worker_id` under `keys`, listing what it holds in `held`.
    pub fn new(client: Client, keys: Keys, worker_id: String, held: Arc<HeldLocks>) -> Self {
        Self {
            client,
            keys,
            worker_id,
            held,
            revision: Arc::default(),
        }
    }

    /// Gives up an attempt to take `job`'s lock whose answer never came
    /// (etcd stalled, the request timed out): the transaction may still
    /// have been applied, and such a lock, on this worker's live session,
    /// would block the job with no run holding it. Deletes it if it holds
    /// this attempt's value; retries while etcd is unreachable, for a while.
    pub async fn abandon(&self, job: &Job, run_id: &str, plan_ms: i64) {
        let key = self.tick_keys(job, 0).lock;
        let job = &job.name;
        let holder = self.holder(run_id, plan_ms);
        let mut backoff = Backoff::etcd();
        // The lost request may still sit in a buffer of etcd's and be
        // applied after the first check: a second check a little later.
        let mut checks_left = 2;
        for _ in 0..ABANDON_ATTEMPTS {
            let txn = Txn::new()
                .when([Compare::value(
                    key.clone(),
                    CompareOp::Equal,
                    holder.clone(),
                )])
                .and_then([TxnOp::delete(key.clone(), None)]);
            match self.client.clone().txn(txn).await {
                Ok(resp) => {
                    if resp.succeeded() {
                        tracing::warn!(job = %job, run_id, "a lock taken by a request whose answer was lost is released");
                        return;
                    }
                    checks_left -= 1;
                    if checks_left == 0 {
                        return;
                    }
                    tokio::time::sleep(ABANDON_RECHECK).await;
                }
                Err(e) => {
                    tracing::debug!(job = %job, error = %e, "cannot check for a lock left by a lost answer; retrying");
                    backoff.wait().await;
                }
            }
        }
        tracing::error!(job = %job, run_id, "cannot check for a lock left by a lost answer; if it was taken, it expires with this worker's session");
    }

    /// Settles tick `plan_ms` of `job` (it will not run: skipped or
    /// missed): advances the fired tick to it if no worker started it (or
    /// a later one). `Settled` (with the value it replaced) when this call
    /// settled it, so its verdict is recorded once in the cluster.
    /// `tag` goes into the marker (`<plan>:<tag>`): unique per attempt, it
    /// lets a caller whose answer was lost find its own move later.
    pub async fn settle(
        &self,
        job: &Job,
        plan_ms: i64,
        tag: &str,
    ) -> Result<Settle, etcd_client::Error> {
        if placement::mode(job.target.as_ref()) == TargetMode::All {
            // Verdicts cover one-per-tick jobs: a job on every worker logs
            // the ticks that ran on each (ARCHITECTURE §4, "Verdicts").
            return Ok(Settle::Taken);
        }
        let fired = self.keys.fired(&job.name);
        let plan = encode_plan(plan_ms);
        let resp = self
            .client
            .clone()
            .txn(
                Txn::new()
                    .when([Compare::value(fired.clone(), CompareOp::Less, plan.clone())])
                    .and_then([
                        TxnOp::get(fired.clone(), None),
                        TxnOp::put(fired.clone(), encode_fired(plan_ms, tag), None),
                    ])
                    .or_else([TxnOp::get(fired.clone(), None)]),
            )
            .await?;
        if resp.succeeded() {
            return Ok(Settle::Settled {
                previous: previous_fired(&resp),
            });
        }
        let exists = matches!(resp.op_responses().first(), Some(TxnOpResponse::Get(g)) if !g.kvs().is_empty());
        if exists {
            return Ok(Settle::Taken);
        }
        // The job never fired anywhere: the marker starts at this tick.
        let resp = self
            .client
            .clone()
            .txn(
                Txn::new()
                    .when([Compare::create_revision(fired.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(fired, encode_fired(plan_ms, tag), None)]),
            )
            .await?;
        Ok(if resp.succeeded() {
            Settle::Settled { previous: None }
        } else {
            Settle::Taken
        })
    }

    /// The newest etcd revision this locker has seen: a lock request sent
    /// now is applied, if at all, after it.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Relaxed)
    }

    fn saw(&self, resp: &etcd_client::TxnResponse) {
        if let Some(h) = resp.header() {
            self.revision.fetch_max(h.revision(), Ordering::Relaxed);
        }
    }

    /// The fired marker a lock request for `job` moves.
    pub fn fired_key(&self, job: &Job) -> String {
        self.tick_keys(job, 0).fired
    }

    /// What became of a request for tick `plan_ms` of `job` whose answer
    /// never came (etcd stalled, or its worker died), which would have
    /// written `mover` into the fired marker (a run id, or a settlement's
    /// tag), having seen etcd at `from_revision` before it was sent.
    ///
    /// The request may still sit in one of etcd's buffers: a look at the
    /// marker alone could miss a move applied just after it. So the tick is
    /// settled first under `fence_tag`, until etcd answers (the same
    /// compare-and-swap as the request's, "the marker is older than the
    /// tick"): once it is settled or taken, the lost request can never move
    /// the marker any more, and the marker's history up to now tells for
    /// certain whether it did, or the fence did (its own answer may have
    /// been lost too). None when that cannot be known (`stop` cancelled,
    /// etcd unreachable for long, or the history compacted away).
    pub async fn resolve_lost(
        &self,
        job: &Job,
        plan_ms: i64,
        mover: &str,
        from_revision: i64,
        fence_tag: &str,
        stop: &CancellationToken,
    ) -> Option<LostRequest> {
        let mut backoff = Backoff::etcd();
        let fenced = loop {
            match self.settle(job, plan_ms, fence_tag).await {
                Ok(settle) => break settle,
                Err(e) => {
                    tracing::debug!(job = %job.name, plan_ms, error = %e, "cannot settle the tick of a lost request yet; retrying");
                    if !backoff.wait_or_cancel(stop).await {
                        return None;
                    }
                }
            }
        };
        if let Settle::Settled { previous } = fenced {
            return Some(LostRequest::Fenced { previous });
        }
        let fired = self.fired_key(job);
        let movers = [
            encode_fired(plan_ms, mover),
            encode_fired(plan_ms, fence_tag),
        ];
        Some(
            match self.find_move(&fired, &movers, from_revision).await? {
                Some((0, previous)) => LostRequest::Moved { previous },
                Some((_, previous)) => LostRequest::Fenced { previous },
                None => LostRequest::Elsewhere,
            },
        )
    }

    /// Which of `values` (if any) the marker `fired` took in its history
    /// since `from_revision`, and the tick it replaced: `Some(Some((index,
    /// previous)))`, `Some(None)` when none. None when etcd cannot tell
    /// (unreachable for long, or that history compacted away). Only
    /// conclusive once those moves can no longer happen
    /// ([`Self::resolve_lost`]).
    async fn find_move(
        &self,
        fired: &str,
        values: &[String],
        from_revision: i64,
    ) -> Option<Option<(usize, Option<i64>)>> {
        let mut backoff = Backoff::etcd();
        for _ in 0..ABANDON_ATTEMPTS {
            let attempt = tokio::time::timeout(
                HISTORY_WAIT,
                self.search_history(fired, values, from_revision),
            )
            .await;
            match attempt {
                Ok(Ok(found)) => return Some(found),
                Ok(Err(HistoryError::Compacted)) => return None,
                Ok(Err(HistoryError::Etcd(e))) => {
                    tracing::debug!(key = fired, error = %e, "cannot read the fired marker's history yet; retrying");
                    backoff.wait().await;
                }
                Ok(Err(HistoryError::Ended(why))) => {
                    tracing::info!(
                        key = fired,
                        why,
                        "the fired marker's history was cut short; reading it again"
                    );
                    backoff.wait().await;
                }
                Err(_) => backoff.wait().await,
            }
        }
        None
    }

    async fn search_history(
        &self,
        fired: &str,
        values: &[String],
        from_revision: i64,
    ) -> Result<Option<(usize, Option<i64>)>, HistoryError> {
        let now = self.client.clone().get(fired, None).await?;
        // The marker's last change: the history to read ends there.
        let Some(last) = now.kvs().first().map(|kv| kv.mod_revision()) else {
            return Ok(None);
        };
        if last <= from_revision {
            return Ok(None);
        }
        let options = etcd_client::WatchOptions::new()
            .with_start_revision(from_revision + 1)
            .with_prev_key();
        let mut stream = self.client.clone().watch(fired, Some(options)).await?;
        while let Some(resp) = stream.message().await? {
            if resp.compact_revision() > 0 {
                return Err(HistoryError::Compacted);
            }
            if resp.canceled() {
                return Err(HistoryError::Ended(format!(
                    "watch cancelled: {}",
                    resp.cancel_reason()
                )));
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                if let Some(index) = values.iter().position(|v| kv.value() == v.as_bytes()) {
                    // Every move replaces a value (the marker is created
                    // before the first): a missing one is not "none".
                    let Some(prev) = event.prev_kv() else {
                        return Err(HistoryError::Ended(
                            "the move came without the value it replaced".into(),
                        ));
                    };
                    return Ok(Some((index, decode_plan(prev.value()))));
                }
                if kv.mod_revision() >= last {
                    return Ok(None);
                }
            }
        }
        // Only the event at `last` proves the moves absent.
        Err(HistoryError::Ended(
            "the history ended before the marker's last change".into(),
        ))
    }

    /// Asks the run holding `job`'s lock to stop because a newer tick
    /// replaces it (`/cron/killrun/<runId>` = `replaced`, put and deleted:
    /// workers act on the put). False when no run holds it.
    pub async fn replace_holder(&self, job: &Job) -> Result<bool, etcd_client::Error> {
        let lock = self.tick_keys(job, 0).lock;
        let resp = self.client.clone().get(lock, None).await?;
        let run_id = resp
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice::<serde_json::Value>(kv.value()).ok())
            .and_then(|v| v["runId"].as_str().map(str::to_string));
        let Some(key) = run_id.as_deref().and_then(|id| self.keys.killrun(id)) else {
            return Ok(false);
        };
        let mut client = self.client.clone();
        client
            .put(key.clone(), crate::watcher::REPLACED, None)
            .await?;
        client.delete(key, None).await?;
        Ok(true)
    }

    /// Claims run request `request` (its key at `revision`) for run
    /// `run_id`: marks it claimed by this worker and run and, for
    /// `forbid`/`replace`, takes the lock, in one transaction, so one
    /// worker runs it. The request stays (claimed) until the run's record
    /// is on its way ([`crate::chain`]). Leaves the fired tick alone.
    ///
    /// For a `target.mode: all` job nothing is claimed: each matching
    /// worker runs the request once (the scheduler sees to "once").
    #[allow(clippy::too_many_arguments)]
    pub async fn claim_request(
        &self,
        job: &Job,
        request: &RunRequest,
        revision: i64,
        run_id: &str,
        plan_ms: i64,
        lease: i64,
        stop: &RunStop,
    ) -> Result<LockOutcome, etcd_client::Error> {
        let Some(key) = self.keys.run_request(&job.name, &request.id) else {
            return Ok(LockOutcome::AlreadyFired);
        };
        let lock = self.tick_keys(job, lease).lock;
        let exclusive = job.concurrency.exclusive();
        let every_worker = placement::mode(job.target.as_ref()) == TargetMode::All;
        if every_worker && !exclusive {
            return Ok(LockOutcome::Acquired(Box::new(self.guard(job, None, None))));
        }
        let (mut when, mut then) = (Vec::new(), Vec::new());
        if !every_worker {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let claimed = request.claimed_by(&self.worker_id, run_id, now_ms);
            when.push(Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            ));
            then.push(TxnOp::put(key.clone(), claimed.to_json(), None));
        }
        let holder = self.holder(run_id, plan_ms);
        if exclusive {
            when.push(Compare::create_revision(lock.clone(), CompareOp::Equal, 0));
            then.push(TxnOp::put(
                lock.clone(),
                holder.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ));
        }
        let resp = self
            .client
            .clone()
            .txn(
                Txn::new()
                    .when(when)
                    .and_then(then)
                    .or_else([TxnOp::get(key, None)]),
            )
            .await?;
        if resp.succeeded() {
            let held = exclusive.then_some((lock, holder, lease, stop));
            return Ok(LockOutcome::Acquired(Box::new(self.guard(
                job,
                held,
                Some(&resp),
            ))));
        }
        if every_worker {
            return Ok(LockOutcome::Busy);
        }
        // Still there, unclaimed, as this worker saw it: the lock was held.
        let still_pending = matches!(resp.op_responses().first(), Some(TxnOpResponse::Get(g))
            if g.kvs().first().is_some_and(|kv| kv.mod_revision() == revision));
        Ok(if still_pending {
            LockOutcome::Busy
        } else {
            LockOutcome::AlreadyFired
        })
    }

    fn holder(&self, run_id: &str, plan_time: i64) -> String {
        serde_json::to_string(&Holder {
            worker: &self.worker_id,
            run_id,
            plan_time,
        })
        .unwrap_or_default()
    }

    /// The guard of a successful transaction; a `forbid` lock (key,
    /// holder, lease, the run's stop) is listed in [`HeldLocks`].
    fn guard(
        &self,
        job: &Job,
        held: Option<(String, String, i64, &RunStop)>,
        resp: Option<&etcd_client::TxnResponse>,
    ) -> LockGuard {
        let revision = resp
            .and_then(|r| r.header())
            .map(|h| h.revision())
            .unwrap_or_default();
        let held = held.map(|(key, holder, lease, stop)| {
            self.held.insert(Held {
                job: job.name.clone(),
                key,
                holder,
                lease,
                revision,
                stop: stop.clone(),
            })
        });
        LockGuard {
            client: self.client.clone(),
            held: held.map(|id| (self.held.clone(), id)),
            name: job.name.clone(),
            released: false,
            previous_fired: None,
        }
    }

    /// Tries to start tick `plan_ms` of `job` as run `run_id`, attaching a
    /// `forbid` lock to `lease`.
    pub async fn acquire(
        &self,
        job: &Job,
        plan_ms: i64,
        run_id: &str,
        lease: i64,
        stop: &RunStop,
    ) -> Result<LockOutcome, etcd_client::Error> {
        match self.try_acquire(job, plan_ms, run_id, lease, stop).await? {
            Attempt::Done(outcome) => Ok(outcome),
            Attempt::NoFiredKey => {
                // First run of this job anywhere (or, for `target.mode: all`,
                // on this session): create the marker, then retry once.
                let keys = self.tick_keys(job, lease);
                let init = Txn::new()
                    .when([Compare::create_revision(
                        keys.fired.clone(),
                        CompareOp::Equal,
                        0,
                    )])
                    .and_then([TxnOp::put(keys.fired, encode_plan(-1), keys.fired_options)]);
                self.client.clone().txn(init).await?;
                match self.try_acquire(job, plan_ms, run_id, lease, stop).await? {
                    Attempt::Done(outcome) => Ok(outcome),
                    // Deleted again in between (the job was deleted): nothing to run.
                    Attempt::NoFiredKey => Ok(LockOutcome::AlreadyFired),
                }
            }
        }
    }

    async fn try_acquire(
        &self,
        job: &Job,
        plan_ms: i64,
        run_id: &str,
        lease: i64,
        stop: &RunStop,
    ) -> Result<Attempt, etcd_client::Error> {
        let TickKeys {
            fired,
            lock,
            fired_options,
        } = self.tick_keys(job, lease);
        let plan = encode_plan(plan_ms);
        let forbid = job.concurrency.exclusive();

        let mut when = vec![Compare::value(fired.clone(), CompareOp::Less, plan.clone())];
        // Read first: the tick it replaces tells which ticks were skipped over.
        let mut then = vec![
            TxnOp::get(fired.clone(), None),
            TxnOp::put(fired.clone(), encode_fired(plan_ms, run_id), fired_options),
        ];
        let mut otherwise = vec![TxnOp::get(fired, None)];
        let holder = self.holder(run_id, plan_ms);
        if forbid {
            when.push(Compare::create_revision(lock.clone(), CompareOp::Equal, 0));
            then.push(TxnOp::put(
                lock.clone(),
                holder.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ));
            otherwise.push(TxnOp::get(lock.clone(), None));
        }
        let resp = self
            .client
            .clone()
            .txn(Txn::new().when(when).and_then(then).or_else(otherwise))
            .await?;
        self.saw(&resp);
        if resp.succeeded() {
            let held = forbid.then_some((lock, holder, lease, stop));
            let mut guard = self.guard(job, held, Some(&resp));
            guard.previous_fired = previous_fired(&resp);
            return Ok(Attempt::Done(LockOutcome::Acquired(Box::new(guard))));
        }
        let mut fired_value = None;
        if let Some(TxnOpResponse::Get(get)) = resp.op_responses().first() {
            fired_value = get.kvs().first().map(|kv| kv.value().to_vec());
        }
        Ok(match fired_value {
            None => Attempt::NoFiredKey,
            Some(v) if v.as_slice() >= encode_plan(plan_ms).as_bytes() => {
                Attempt::Done(LockOutcome::AlreadyFired)
            }
            Some(_) => Attempt::Done(LockOutcome::Busy),
        })
    }
}

enum Attempt {
    Done(LockOutcome),
    NoFiredKey,
}

/// Where a tick of a job is marked started and locked.
struct TickKeys {
    fired: String,
    lock: String,
    /// The fired marker's put options: a `target.mode: all` job's marker is
    /// this worker's own and goes with its session (ids change per process).
    fired_options: Option<PutOptions>,
}

impl Locker {
    fn tick_keys(&self, job: &Job, lease: i64) -> TickKeys {
        match placement::mode(job.target.as_ref()) {
            TargetMode::One => TickKeys {
                fired: self.keys.fired(&job.name),
                lock: self.keys.lock(&job.name),
                fired_options: None,
            },
            TargetMode::All => TickKeys {
                fired: self.keys.fired_on(&job.name, &self.worker_id),
                lock: self.keys.lock_on(&job.name, &self.worker_id),
                fired_options: Some(PutOptions::new().with_lease(lease)),
            },
        }
    }
}

/// A held lock. Call [`LockGuard::release`]; dropping it unreleased (a
/// panic) releases it from a background task instead.
pub struct LockGuard {
    client: Client,
    /// For `forbid` jobs, the lock's entry in [`HeldLocks`] (its key and
    /// current revision: the keeper may have moved it to a new lease);
    /// `allow` jobs hold no key.
    held: Option<(Arc<HeldLocks>, u64)>,
    name: JobName,
    released: bool,
    /// For a scheduled tick: the fired tick the lock transaction replaced
    /// (None: never fired, or a run-now request). The schedule's ticks in
    /// between were neither run nor settled: the run records them missed.
    pub previous_fired: Option<i64>,
}

impl LockGuard {
    /// Deletes the lock if it is still this run's. Retries while etcd is
    /// unreachable, because a lock left behind blocks the job until the
    /// worker's lease expires.
    pub async fn release(mut self) {
        self.released = true;
        let held = self.held.take().and_then(|(table, id)| table.remove(id));
        release(self.client.clone(), held, self.name.clone()).await;
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released
            && let Some((table, id)) = self.held.take()
        {
            let (client, held, name) = (self.client.clone(), table.remove(id), self.name.clone());
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(release(client, held, name));
            }
        }
    }
}

/// Deletes `key` if its last write is still `revision` (this worker's).
pub(crate) async fn delete_if_ours(
    client: &Client,
    key: &str,
    revision: i64,
) -> Result<(), etcd_client::Error> {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, revision)])
        .and_then([TxnOp::delete(key, None)]);
    client.clone().txn(txn).await.map(|_| ())
}

async fn release(client: Client, held: Option<Held>, name: JobName) {
    let Some(held) = held else { return };
    let mut backoff = Backoff::new(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(5),
    );
    for attempt in 1..=20 {
        match delete_if_ours(&client, &held.key, held.revision).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(job = %name, attempt, error = %e, "cannot release lock; retrying");
                backoff.wait().await;
            }
        }
    }
    tracing::error!(job = %name, "lock not released; it expires with this worker's lease");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_plan_times_order_like_numbers() {
        let mut values = vec![
            encode_plan(10_000),
            encode_plan(9),
            encode_plan(-1),
            encode_plan(1_700_000_000_000),
        ];
        values.sort();
        assert_eq!(
            values,
            vec![
                encode_plan(-1),
                encode_plan(9),
                encode_plan(10_000),
                encode_plan(1_700_000_000_000)
            ]
        );
    }
}
