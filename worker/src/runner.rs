//! The real [`Launcher`]: for each tick, take a run slot (at most
//! `max_concurrency` runs at once; a tick that finds none waits, see
//! [`slots`](crate::slots)), take the cluster lock, run the command with
//! retries, send each attempt's record to the log sink and a warning for a
//! final failure, release the lock.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rcron_shared::backoff::Backoff;
use rcron_shared::live::RunEnd;
use rcron_shared::placement::{self, TargetMode};
use rcron_shared::verdict;
use rcron_shared::{Concurrency, JobName, LogRecord, RunOrigin, RunRef, RunStatus};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::active::ActiveRuns;
use crate::chain::Chains;
use crate::clock::Clock;
use crate::executor::{self, ExecSettings, Outcome, StopReason, Stops};
use crate::live::{LiveRun, LiveRuns};
use crate::lock::{LockOutcome, Locker, LostRequest, Settle};
use crate::log_sink::LogSender;
use crate::metrics::WorkerMetrics;
use crate::outbox::{Finish, Outbox, Take, TakenRequest, TakenVerdict};
use crate::placement::Placement;
use crate::records::{self, TickTimes};
use crate::register::SessionLease;
use crate::run_setup::{RunSetup, RunVars, trigger_of};
use crate::run_stop::RunStop;
use crate::scheduler::{Launcher, Run, RunEvents, Tick};
use crate::slots::{Admit, Slots};
use crate::warn::WarnSender;

/// Longest wait between retries when the job sets no `retryBackoffMaxSecs`.
const DEFAULT_RETRY_BACKOFF_MAX_SECS: u64 = 3600;

/// The wait before retry number `attempt` (1 = after the first attempt):
/// `retryBackoffSecs` doubled per retry, capped by `retryBackoffMaxSecs`
/// (never below the first delay), then spread by ±20 % (`jitter` in
/// [0, 1]) so that jobs failing together do not retry together.
pub fn retry_delay(job: &rcron_shared::Job, attempt: u32, jitter: f64) -> Duration {
    let base = job.retry_backoff_secs as f64;
    if base == 0.0 {
        return Duration::ZERO;
    }
    let cap = match job.retry_backoff_max_secs {
        0 => DEFAULT_RETRY_BACKOFF_MAX_SECS,
        n => n,
    } as f64;
    let doubled = base * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
    let delay = doubled.min(cap.max(base));
    Duration::from_secs_f64(delay * (0.8 + 0.4 * jitter.clamp(0.0, 1.0)))
}

/// Seconds a replacing tick waits beyond the kill grace for the replaced
/// run to end and release the lock.
const REPLACE_EXTRA_WAIT_SECS: u64 = 2;

/// What every run needs.
pub struct RunContext {
    /// Worker id, written into records.
    pub worker_id: String,
    /// Takes the per-run cluster lock.
    pub locker: Locker,
    /// The session lease locks hang off.
    pub lease: SessionLease,
    /// How to run commands.
    pub exec: ExecSettings,
    /// Run records.
    pub logs: LogSender,
    /// Warnings for the leader master.
    pub warns: WarnSender,
    /// Keeps runs, records and warnings on disk until they are delivered.
    pub outbox: Arc<Outbox>,
    /// The worker's clock.
    pub clock: Arc<dyn Clock>,
    /// Cancelled when the drain time at shutdown is over: runs still going are killed.
    pub stop_runs: CancellationToken,
    /// The runs executing here (registration, kill by run id).
    pub active: Arc<ActiveRuns>,
    /// How long a tick may wait for a free slot after its planned time.
    pub misfire_grace: Duration,
    /// Where work that outlives a run's slot goes (the check for a lock
    /// left by a lost answer); waited for at shutdown.
    pub background: TaskTracker,
    /// Counters.
    pub metrics: Arc<WorkerMetrics>,
    /// Which worker tries a tick first.
    pub placement: Placement,
    /// Whether the clock allows firing.
    pub clock_guard: Arc<crate::clock_guard::ClockGuard>,
    /// Zone of jobs that name none.
    pub timezone: chrono_tz::Tz,
    /// Parsed schedules, for verdicts on ticks skipped over.
    pub schedules: Mutex<rcron_shared::ScheduleCache>,
    /// Deletes the requests runs were claimed from and requests chained jobs.
    pub chains: Chains,
    /// The output of runs executing here, for live readers.
    pub live: Arc<LiveRuns>,
}

/// A tick waiting for a slot, with where it reports.
struct Pending {
    run: Run,
    events: RunEvents,
}

/// Spawns runs on a task tracker, bounded by the run slots.
pub struct Runner {
    ctx: Arc<RunContext>,
    slots: Arc<Mutex<Slots<Pending>>>,
    tracker: TaskTracker,
    /// Cancelled when the worker drains: ticks waiting for their rank give up.
    draining: CancellationToken,
}

impl Runner {
    /// A runner with `max_concurrency` slots, spawning on `tracker`.
    pub fn new(ctx: RunContext, max_concurrency: u32, tracker: TaskTracker) -> Self {
        Self {
            ctx: Arc::new(ctx),
            slots: Arc::new(Mutex::new(Slots::new(max_concurrency.max(1) as usize))),
            tracker,
            draining: CancellationToken::new(),
        }
    }
}

/// The slot table's lock guards a heap operation; nothing in it panics
/// half-way, so a poisoned lock still holds a sound table.
fn lock(slots: &Mutex<Slots<Pending>>) -> std::sync::MutexGuard<'_, Slots<Pending>> {
    slots.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Launcher for Runner {
    fn launch(&mut self, run: Run, events: &RunEvents) {
        if !self.ctx.clock_guard.may_fire() {
            // Left to workers whose clocks agree with the cluster's.
            self.ctx.metrics.clock_holds.fetch_add(1, Ordering::Relaxed);
            events.finished(run.id);
            return;
        }
        let job = &run.tick.job;
        if run.tick.request.is_some()
            && job.concurrency.exclusive()
            && placement::mode(job.target.as_ref()) == TargetMode::One
            && self.ctx.placement.view.busy(&job.name)
        {
            // A run of the job holds its lock: the request waits (tried
            // again later) without an etcd transaction.
            events.finished(run.id);
            return;
        }
        let pending = Pending {
            run,
            events: events.clone(),
        };
        let full = lock(&self.slots).is_full();
        let wait = self.ctx.placement.wait(&pending.run.tick, full);
        if wait.is_zero() {
            admit(&self.ctx, &self.slots, &self.tracker, pending);
            return;
        }
        // Not first for this tick: cover for the workers before this one
        // only if, after their head start, the tick is still untaken.
        self.ctx
            .metrics
            .placement_waits
            .fetch_add(1, Ordering::Relaxed);
        let (ctx, slots, tracker) = (self.ctx.clone(), self.slots.clone(), self.tracker.clone());
        let draining = self.draining.clone();
        let deadline = tokio::time::Instant::now() + wait;
        self.tracker.spawn(async move {
            let tick = &pending.run.tick;
            let plan_ms = tick.plan_time.timestamp_millis();
            let taken = tokio::select! {
                // A run request is claimed in its own key, which the
                // mirror does not follow: the transaction decides.
                taken = ctx.placement.view.taken_before(&tick.job, plan_ms, deadline),
                    if tick.request.is_none() => taken,
                taken = claimed_before(tick.request.as_ref(), deadline),
                    if tick.request.is_some() => taken,
                () = draining.cancelled() => {
                    pending.events.finished(pending.run.id);
                    return;
                }
            };
            if taken {
                ctx.metrics.placement_taken.fetch_add(1, Ordering::Relaxed);
                pending.events.finished(pending.run.id);
                return;
            }
            admit(&ctx, &slots, &tracker, pending);
        });
    }

    fn kill_run(&mut self, run_id: &str) -> bool {
        self.ctx.active.kill(run_id)
    }

    fn replace_run(&mut self, run_id: &str) -> bool {
        self.ctx
            .active
            .stop(run_id, crate::run_stop::RunStopReason::Replaced)
    }

    fn settle(&mut self, tick: Tick, status: RunStatus, reason: &'static str) {
        if !self.ctx.clock_guard.may_fire() {
            return;
        }
        let ctx = self.ctx.clone();
        self.tracker
            .spawn(async move { ctx.verdict(&tick, status, reason).await });
    }

    fn drain(&mut self) {
        // Ticks still waiting for a slot or their rank are left to other workers.
        self.draining.cancel();
        let waiting = lock(&self.slots).take_waiting();
        for p in waiting {
            p.events.finished(p.run.id);
        }
    }
}

impl Runner {
    /// Finishes, in the background, what runs of a dead worker left
    /// undone in etcd.
    pub fn resume_finishes(&self, finishes: Vec<Finish>) {
        self.ctx.resume_finishes(finishes);
    }

    /// Resolves, in the background, lock requests a dead worker left open.
    pub fn resolve_takes(&self, takes: Vec<Take>) {
        if takes.is_empty() {
            return;
        }
        let ctx = self.ctx.clone();
        self.tracker
            .spawn(async move { ctx.resolve_takes(takes).await });
    }
}

/// Waits until `deadline` unless run request `requested` is claimed (or
/// gone) first; true when it was.
async fn claimed_before(
    requested: Option<&crate::run_requests::Requested>,
    deadline: tokio::time::Instant,
) -> bool {
    let Some(r) = requested else { return false };
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => r.gone.is_cancelled(),
        () = r.gone.cancelled() => true,
    }
}

/// Gives `pending` a run slot, or queues it for one.
fn admit(
    ctx: &Arc<RunContext>,
    slots: &Arc<Mutex<Slots<Pending>>>,
    tracker: &TaskTracker,
    pending: Pending,
) {
    let name = pending.run.tick.job.name.clone();
    let plan_ms = pending.run.tick.plan_time.timestamp_millis();
    let (admitted, expired) = {
        let mut slots = lock(slots);
        let admitted = slots.admit(&name, plan_ms, pending);
        let oldest = ctx.clock.now() - ctx.misfire_grace;
        (admitted, slots.expire(oldest.timestamp_millis()))
    };
    if !expired.is_empty() {
        let ctx = ctx.clone();
        tracker.spawn(async move { ctx.give_up(expired).await });
    }
    match admitted {
        Admit::Start(first) => {
            let (ctx, slots) = (ctx.clone(), slots.clone());
            tracker.spawn(async move { ctx.serve(first, &slots).await });
        }
        Admit::Queued => {
            ctx.metrics.slot_waits.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(job = %name, plan_ms, "every run slot taken; the tick waits for one");
        }
    }
}

impl RunContext {
    /// Runs `first`, then, in the same slot, every waiting tick handed over
    /// when a run ends, until none waits.
    async fn serve(self: Arc<Self>, first: Pending, slots: &Mutex<Slots<Pending>>) {
        let mut next = Some(first);
        while let Some(p) = next.take() {
            self.run_tick(&p.run, &p.events).await;
            p.events.finished(p.run.id);
            let expired = {
                let mut slots = lock(slots);
                let oldest = self.clock.now() - self.misfire_grace;
                let expired = slots.expire(oldest.timestamp_millis());
                next = slots.release();
                expired
            };
            if !expired.is_empty() {
                self.give_up(expired).await;
            }
        }
    }

    /// Ticks that waited past the misfire grace: given up here, and counted
    /// missed if no worker started them (settled in etcd, so once).
    async fn give_up(self: &Arc<Self>, expired: Vec<(JobName, i64, Pending)>) {
        for (job, plan_ms, p) in expired {
            p.events.finished(p.run.id);
            self.metrics.no_slot.fetch_add(1, Ordering::Relaxed);
            if p.run.tick.request.is_some() {
                continue; // a run request waits, for this worker or another
            }
            if self.placement.view.fired(&job, plan_ms) {
                tracing::debug!(job = %job, plan_ms, "tick given up here for lack of a slot; another worker started it");
                continue;
            }
            self.verdict(
                &p.run.tick,
                RunStatus::Missed,
                "no free slot: every run slot stayed taken past the misfire grace",
            )
            .await;
        }
    }

    /// Settles `tick`, which will not run here, as `status` for `reason`:
    /// if this worker is the one that moves the job's fired tick to it, it
    /// records the verdict, and `missed` for every tick the move skipped
    /// over (ARCHITECTURE §4, "Verdicts"); otherwise a worker started it or
    /// settled it first.
    async fn verdict(self: &Arc<Self>, tick: &Tick, status: RunStatus, reason: &'static str) {
        let job = &tick.job;
        let plan_ms = tick.plan_time.timestamp_millis();
        let tag = format!("{}-{}", verdict::SETTLED, uuid::Uuid::now_v7().simple());
        let from_revision = self.locker.revision();
        // In the outbox first, like a lock request: if this worker dies
        // before recording the verdict, its next start finds out whether
        // the settlement moved the marker, and records it then.
        self.outbox.take(Take {
            run_id: tag.clone(),
            job: (**job).clone(),
            plan_ms,
            fired_key: self.locker.fired_key(job),
            from_revision,
            verdict: Some(TakenVerdict {
                status,
                reason: reason.to_string(),
            }),
            request: None,
        });
        match self.locker.settle(job, plan_ms, &tag).await {
            Ok(Settle::Settled { previous }) => {
                self.settled(tick, previous, status, reason).await;
                self.outbox.took(&tag);
            }
            Ok(Settle::Taken) => {
                tracing::debug!(job = %job.name, plan_ms, "tick not run here; another worker started or settled it");
                self.outbox.took(&tag);
            }
            Err(e) => {
                // The request may still be applied (etcd stalled): once
                // etcd answers, the same settlement is sent again (same
                // tag), and the marker's history tells which one moved it.
                tracing::warn!(job = %job.name, plan_ms, error = %e, reason, "cannot settle a tick that will not run here (etcd unreachable); checking again later");
                let (ctx, tick, stop) = (Arc::clone(self), tick.clone(), self.stop_runs.clone());
                self.background.spawn(async move {
                    let plan_ms = tick.plan_time.timestamp_millis();
                    let found = ctx
                        .locker
                        .resolve_lost(&tick.job, plan_ms, &tag, from_revision, &tag, &stop)
                        .await;
                    tracing::info!(job = %tick.job.name, plan_ms, outcome = ?found, "settlement whose answer was lost resolved");
                    if let Some(
                        LostRequest::Moved { previous } | LostRequest::Fenced { previous },
                    ) = found
                    {
                        ctx.settled(&tick, previous, status, reason).await;
                    }
                    if found.is_some() {
                        ctx.outbox.took(&tag);
                    }
                });
            }
        }
    }

    /// Records the verdict on `tick`, which this worker settled, and the
    /// ticks its move of the marker skipped over (from `previous`).
    async fn settled(&self, tick: &Tick, previous: Option<i64>, status: RunStatus, reason: &str) {
        let schedule = self.schedule_of(tick, previous);
        let plan_ms = tick.plan_time.timestamp_millis();
        self.record_settled(&tick.job, plan_ms, previous, schedule, status, reason)
            .await;
    }

    /// [`Self::settled`] for a job and tick, with the job's schedule when
    /// ticks may lie between `previous` and the tick.
    async fn record_settled(
        &self,
        job: &rcron_shared::Job,
        plan_ms: i64,
        previous: Option<i64>,
        schedule: Option<Arc<rcron_shared::Schedule>>,
        status: RunStatus,
        reason: &str,
    ) {
        let now = self.clock.now().timestamp_millis();
        let mut records = match schedule {
            Some(schedule) => {
                verdict::gap_records(job, &schedule, previous, plan_ms, &self.worker_id, now)
            }
            None => Vec::new(),
        };
        records.push(verdict::record(
            job,
            plan_ms,
            status,
            reason.to_string(),
            &self.worker_id,
            now,
        ));
        tracing::info!(job = %job.name, plan_ms, ?previous, status = status.as_str(), reason, "tick settled without a run");
        self.record_verdicts(job, records).await;
    }

    /// A lock request whose answer never came may still have been applied:
    /// its lock (if `forbid`) is given back, and the tick, which nobody
    /// else can run now, is recorded missed (with any it skipped over)
    /// whether the request took it or the tick was settled in its stead.
    async fn after_lost_answer(&self, tick: &Tick, run_id: &str, from_revision: i64) {
        let plan_ms = tick.plan_time.timestamp_millis();
        let exclusive = tick.job.concurrency.exclusive();
        if let Some(requested) = &tick.request {
            // A run request moves no marker: its lock is given back, and
            // the request itself, for any worker to run.
            if exclusive {
                self.locker.abandon(&tick.job, run_id, plan_ms).await;
            }
            if let Some(key) = self.claimed_key(tick, &requested.request) {
                self.hand_back(&key, run_id).await;
            }
            self.outbox.took(run_id);
            return;
        }
        let fence = format!("{}-{}", verdict::SETTLED, uuid::Uuid::now_v7().simple());
        let resolved = self
            .locker
            .resolve_lost(
                &tick.job,
                plan_ms,
                run_id,
                from_revision,
                &fence,
                &self.stop_runs,
            )
            .await;
        tracing::info!(job = %tick.job.name, plan_ms, run_id, outcome = ?resolved, "lock request whose answer was lost resolved");
        // A request that did not move the marker took no lock either (one
        // transaction); one that did, or may have, left it on the session.
        // A job on every worker is not fenced (its marker is this worker's
        // own): its lock is looked for as before.
        let every_worker = placement::mode(tick.job.target.as_ref()) == TargetMode::All;
        if exclusive && (every_worker || matches!(resolved, Some(LostRequest::Moved { .. }) | None))
        {
            self.locker.abandon(&tick.job, run_id, plan_ms).await;
        }
        self.record_lost(
            &tick.job,
            plan_ms,
            resolved,
            "etcd did not answer the request that took the tick",
        )
        .await;
        if resolved.is_some() {
            self.outbox.took(run_id);
        }
    }

    /// Records what [`crate::lock::Locker::resolve_lost`] found about a
    /// lock request that never led to a run: its tick missed either way,
    /// if the request took it or if it was settled in its stead.
    async fn record_lost(
        &self,
        job: &rcron_shared::Job,
        plan_ms: i64,
        resolved: Option<LostRequest>,
        took_because: &str,
    ) {
        match resolved {
            Some(LostRequest::Moved { previous }) => {
                let reason = format!("not started: {took_because}");
                self.untaken_after_all(job, plan_ms, previous, &reason)
                    .await;
            }
            Some(LostRequest::Fenced { previous }) => {
                self.untaken_after_all(
                    job,
                    plan_ms,
                    previous,
                    "not started: etcd did not answer the lock request in time",
                )
                .await;
            }
            Some(LostRequest::Elsewhere) | None => {}
        }
    }

    /// Records tick `plan_ms` of `job`, taken by a request that never led
    /// to a run, as missed, with the ticks its move skipped over.
    async fn untaken_after_all(
        &self,
        job: &rcron_shared::Job,
        plan_ms: i64,
        previous: Option<i64>,
        reason: &str,
    ) {
        tracing::warn!(job = %job.name, plan_ms, ?previous, reason, "a tick taken without a run is recorded missed");
        let schedule = self.schedule_for(job, plan_ms, previous);
        self.record_settled(job, plan_ms, previous, schedule, RunStatus::Missed, reason)
            .await;
    }

    /// Lock requests and settlements a dead worker sent without noting
    /// their outcome: a request that took its tick left it without a run,
    /// recorded missed; a settlement that moved the marker is recorded
    /// with its verdict.
    async fn resolve_takes(&self, takes: Vec<Take>) {
        for take in takes {
            if let Some(request) = &take.request {
                // A claim whose run never started: the request goes back.
                if self.hand_back(&request.key, &take.run_id).await {
                    self.outbox.took(&take.run_id);
                }
                continue;
            }
            if let Some(v) = &take.verdict {
                // A settlement is sent again under its own tag (ARCHITECTURE §4).
                let resolved = self
                    .locker
                    .resolve_lost(
                        &take.job,
                        take.plan_ms,
                        &take.run_id,
                        take.from_revision,
                        &take.run_id,
                        &self.stop_runs,
                    )
                    .await;
                let Some(resolved) = resolved else { continue };
                if let LostRequest::Moved { previous } | LostRequest::Fenced { previous } = resolved
                {
                    let schedule = self.schedule_for(&take.job, take.plan_ms, previous);
                    self.record_settled(
                        &take.job,
                        take.plan_ms,
                        previous,
                        schedule,
                        v.status,
                        &v.reason,
                    )
                    .await;
                }
                self.outbox.took(&take.run_id);
                continue;
            }
            let fence = format!("{}-{}", verdict::SETTLED, uuid::Uuid::now_v7().simple());
            let resolved = self
                .locker
                .resolve_lost(
                    &take.job,
                    take.plan_ms,
                    &take.run_id,
                    take.from_revision,
                    &fence,
                    &self.stop_runs,
                )
                .await;
            // etcd cannot tell now: the next start tries again.
            if resolved.is_none() {
                continue;
            }
            self.record_lost(
                &take.job,
                take.plan_ms,
                resolved,
                "the worker died after taking the tick",
            )
            .await;
            self.outbox.took(&take.run_id);
        }
    }

    /// `concurrency: replace`: stops the run holding the job's lock, waits
    /// until it is gone (its lock released) and takes the tick; None when
    /// it does not stop in time, or another worker took the tick.
    async fn replace(
        &self,
        job: &rcron_shared::Job,
        plan_ms: i64,
        run_id: &str,
        lease: i64,
        stop: &RunStop,
    ) -> Option<Box<crate::lock::LockGuard>> {
        if let Err(e) = self.locker.replace_holder(job).await {
            tracing::warn!(job = %job.name, error = %e, "cannot ask the running run to stop for its replacement");
            return None;
        }
        // The old run gets its kill grace, and its worker a moment to
        // release the lock.
        let deadline = tokio::time::Instant::now()
            + self.exec.kill_grace
            + Duration::from_secs(REPLACE_EXTRA_WAIT_SECS);
        while self.placement.view.free_before(&job.name, deadline).await {
            match self.locker.acquire(job, plan_ms, run_id, lease, stop).await {
                Ok(LockOutcome::Acquired(guard)) => return Some(guard),
                Ok(LockOutcome::Busy) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => return None,
            }
        }
        None
    }

    /// The schedule of `tick`'s job, when ticks may lie between `previous`
    /// and it: plan times are whole seconds, so a gap of a second or less
    /// holds none (the common case costs no lookup).
    fn schedule_of(
        &self,
        tick: &Tick,
        previous: Option<i64>,
    ) -> Option<Arc<rcron_shared::Schedule>> {
        let plan_ms = tick.plan_time.timestamp_millis();
        match &tick.schedule {
            Some(schedule) if previous.is_some_and(|p| plan_ms - p > 1000) => {
                Some(schedule.clone())
            }
            _ => self.schedule_for(&tick.job, plan_ms, previous),
        }
    }

    /// [`Self::schedule_of`] from the job alone.
    fn schedule_for(
        &self,
        job: &rcron_shared::Job,
        plan_ms: i64,
        previous: Option<i64>,
    ) -> Option<Arc<rcron_shared::Schedule>> {
        let previous = previous?;
        if plan_ms - previous <= 1000 {
            return None;
        }
        let tz = job.zone(self.timezone);
        self.schedules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .parse(&job.cron_expr, tz)
            .ok()
    }

    /// Logs verdict records (and, for `missed` ones when the job says so, a
    /// warning for the lot: one alert per settlement, not per tick).
    async fn record_verdicts(&self, job: &rcron_shared::Job, records: Vec<LogRecord>) {
        let missed = records
            .iter()
            .filter(|r| r.status == RunStatus::Missed)
            .count();
        self.metrics
            .ticks_missed
            .fetch_add(missed as u64, Ordering::Relaxed);
        let warning = records::missed_warning(job, &records, &self.worker_id);
        // In the outbox like run records: a worker killed now still
        // delivers them.
        for record in records {
            self.logs.send(record).await;
        }
        if let Some(w) = warning {
            self.warns.send(w).await;
        }
    }

    async fn run_tick(self: &Arc<Self>, run: &Run, events: &RunEvents) {
        let job = &run.tick.job;
        let plan_ms = run.tick.plan_time.timestamp_millis();
        let run_id = uuid::Uuid::now_v7().to_string();
        let Some(lease) = *self.lease.borrow() else {
            tracing::warn!(job = %job.name, plan_ms, "no etcd session; tick not started here");
            self.metrics.lock_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let stop = RunStop::new();
        let from_revision = self.locker.revision();
        let claimed = match &run.tick.request {
            // Claimed elsewhere while this tick waited for a slot.
            Some(requested) if requested.gone.is_cancelled() => Ok(LockOutcome::AlreadyFired),
            Some(requested) => {
                // Journaled first, and open until the run's end is: a
                // worker that dies before the run starts hands the request
                // back at its next start; one that dies during it deletes it.
                let key = self.claimed_key(&run.tick, &requested.request);
                if let Some(key) = &key {
                    self.outbox.take(Take {
                        run_id: run_id.clone(),
                        job: (**job).clone(),
                        plan_ms,
                        fired_key: String::new(),
                        from_revision,
                        verdict: None,
                        request: Some(TakenRequest {
                            key: key.clone(),
                            request: (*requested.request).clone(),
                        }),
                    });
                }
                let outcome = self
                    .locker
                    .claim_request(
                        job,
                        &requested.request,
                        requested.revision,
                        &run_id,
                        plan_ms,
                        lease,
                        &stop,
                    )
                    .await;
                if key.is_some() && !matches!(outcome, Ok(LockOutcome::Acquired(_)) | Err(_)) {
                    self.outbox.took(&run_id);
                }
                outcome
            }
            // Known started elsewhere (a tick that waited for a slot here,
            // say): no transaction needed to learn it.
            None if placement::mode(job.target.as_ref()) == TargetMode::One
                && self.placement.view.fired(&job.name, plan_ms) =>
            {
                Ok(LockOutcome::AlreadyFired)
            }
            None => {
                // Journaled first: if this worker dies before the run
                // starts, its next start finds out whether the request
                // took the tick (and records it missed).
                self.outbox.take(Take {
                    run_id: run_id.clone(),
                    job: (**job).clone(),
                    plan_ms,
                    fired_key: self.locker.fired_key(job),
                    from_revision,
                    verdict: None,
                    request: None,
                });
                let outcome = self
                    .locker
                    .acquire(job, plan_ms, &run_id, lease, &stop)
                    .await;
                if !matches!(outcome, Ok(LockOutcome::Acquired(_)) | Err(_)) {
                    self.outbox.took(&run_id);
                }
                outcome
            }
        };
        let guard = match claimed {
            Ok(LockOutcome::Acquired(guard)) => guard,
            Ok(LockOutcome::AlreadyFired) => {
                self.metrics.lock_conflicts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(job = %job.name, plan_ms, "tick already started by another worker");
                return;
            }
            Ok(LockOutcome::Busy)
                if run.tick.request.is_none() && job.concurrency == Concurrency::Replace =>
            {
                match self.replace(job, plan_ms, &run_id, lease, &stop).await {
                    Some(guard) => guard,
                    None => {
                        self.verdict(
                            &run.tick,
                            RunStatus::Skipped,
                            "replace: the previous run did not stop in time",
                        )
                        .await;
                        return;
                    }
                }
            }
            Ok(LockOutcome::Busy) => {
                self.metrics.lock_conflicts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(job = %job.name, plan_ms, "previous run still going (concurrency: forbid); tick skipped");
                if run.tick.request.is_none() {
                    self.verdict(
                        &run.tick,
                        RunStatus::Skipped,
                        "overlap: the previous run was still going",
                    )
                    .await;
                }
                return;
            }
            Err(e) => {
                self.metrics.lock_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(job = %job.name, plan_ms, error = %e, "cannot take the lock; tick not started here");
                // Not awaited: no process runs, so the slot and the
                // job's next ticks need not wait (a ghost lock only
                // makes them find the job busy until it is gone).
                let (ctx, tick, stop) =
                    (Arc::clone(self), run.tick.clone(), self.stop_runs.clone());
                self.background.spawn(async move {
                    tokio::select! {
                        () = ctx.after_lost_answer(&tick, &run_id, from_revision) => {}
                        // Shutting down: the lease goes soon, and the lock with
                        // it; the request in the outbox is resolved at next start.
                        () = stop.cancelled() => {}
                    }
                });
                return;
            }
        };
        events.started(run.id);
        self.metrics.ticks_fired.fetch_add(1, Ordering::Relaxed);
        let one_per_tick = placement::mode(job.target.as_ref()) == TargetMode::One;
        if let (Some(previous), true) = (guard.previous_fired, one_per_tick)
            && let Some(schedule) = self.schedule_of(&run.tick, Some(previous))
        {
            let now = self.clock.now().timestamp_millis();
            let gap = verdict::gap_records(
                job,
                &schedule,
                Some(previous),
                plan_ms,
                &self.worker_id,
                now,
            );
            if !gap.is_empty() {
                tracing::info!(job = %job.name, plan_ms, previous, missed = gap.len(), "ticks nobody took before this run recorded missed");
                self.record_verdicts(job, gap).await;
            }
        }
        self.active.insert(
            RunRef {
                job: job.name.to_string(),
                run_id: run_id.clone(),
                plan_time: plan_ms,
                start_time: self.clock.now().timestamp_millis(),
            },
            stop.clone(),
        );
        let live = self.live.start(&run_id, job.name.as_str());
        let span = tracing::info_span!("run", job = %job.name, run_id = %run_id);
        let end = self
            .attempts(run, &run_id, &stop, &live)
            .instrument(span)
            .await;
        if let Some(end) = end {
            self.live.end(&run_id, end);
        }
        guard.release().await;
        self.active.remove(&run_id);
    }

    /// Runs the attempts of `run`; returns how the last one ended.
    async fn attempts(
        self: &Arc<Self>,
        run: &Run,
        run_id: &str,
        stop: &RunStop,
        live: &LiveRun,
    ) -> Option<RunEnd> {
        let job = &run.tick.job;
        let timeout = (job.timeout_secs > 0).then(|| Duration::from_secs(job.timeout_secs));
        let total = job.retries + 1;
        let stops = Stops {
            job_kill: &run.kill,
            run: stop,
            shutdown: &self.stop_runs,
        };
        for attempt in 1..=total {
            let on_spawn = |pgid: u32, start: chrono::DateTime<chrono::Utc>| {
                let record = self.record(run, run_id, attempt, &Outcome::started(start));
                self.outbox.started(&job.name, &record, pgid);
                if attempt == 1 && run.tick.request.is_none() {
                    // The run's own entry now stands for the tick. (A
                    // claimed request's stays open until the run's end.)
                    self.outbox.took(run_id);
                }
            };
            let setup = self.setup(run, run_id, attempt);
            if attempt > 1 {
                live.attempt(attempt);
            }
            let outcome = executor::execute(
                &self.exec,
                self.clock.as_ref(),
                &job.command,
                &setup,
                timeout,
                stops,
                &on_spawn,
                Some(live),
            )
            .await;
            tracing::info!(job = %job.name, run_id, attempt, status = outcome.status.as_str(),
                exit_code = ?outcome.exit_code, "run ended");
            self.metrics.run_ended(outcome.status);
            let lock_lost = outcome.stopped == Some(StopReason::LockLost);
            if lock_lost {
                self.metrics.locks_lost.fetch_add(1, Ordering::Relaxed);
            }
            let retryable = matches!(outcome.status, RunStatus::Failed | RunStatus::Timeout);
            let record = self.record(run, run_id, attempt, &outcome);
            let end = RunEnd::of_record(&record);
            // Sent first: the record (in the outbox once sent) stands for
            // the tick when the command could not start; if it started,
            // the request was closed already.
            let warning = (retryable || lock_lost).then(|| records::warning(&job.name, &record));
            let last = !retryable || lock_lost || attempt == total;
            if last {
                // Before the record: a worker that dies now still starts
                // the chain at its next start.
                self.end_run(run, run_id, outcome.status);
            }
            self.logs.send(record).await;
            if attempt == 1 && run.tick.request.is_none() {
                self.outbox.took(run_id);
            }
            // A lost lock is reported at once (the job may run elsewhere
            // now); a failure after its last retry.
            if !lock_lost {
                if !retryable {
                    return Some(end);
                }
                if attempt < total {
                    let jitter =
                        f64::from(uuid::Uuid::new_v4().as_u128() as u32) / f64::from(u32::MAX);
                    let backoff = retry_delay(job, attempt, jitter);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => continue,
                        () = run.kill.killed() => {}
                        _ = stop.stopped() => {}
                        () = self.stop_runs.cancelled() => {}
                    }
                }
            }
            if !last {
                // Cut short between attempts: this one is the last.
                self.end_run(run, run_id, outcome.status);
            }
            // The final failure, one cut short by a kill, or a lost lock.
            if let Some(warning) = warning {
                self.warns.send(warning).await;
            }
            return Some(end);
        }
        None
    }

    /// The key of the request `tick` claims: None for a job on every
    /// matching worker (nobody claims those).
    fn claimed_key(&self, tick: &Tick, request: &rcron_shared::RunRequest) -> Option<String> {
        (placement::mode(tick.job.target.as_ref()) == TargetMode::One)
            .then(|| self.chains.request_key(request))
            .flatten()
    }

    /// Run `run_id` of `run` ended as `status` after its last attempt:
    /// notes in the outbox, then does in the background, what its end does
    /// in etcd (its request deleted, its chained jobs requested).
    fn end_run(self: &Arc<Self>, run: &Run, run_id: &str, status: RunStatus) {
        let job = &run.tick.job;
        let chain = match status {
            RunStatus::Success => job.on_success.clone(),
            RunStatus::Failed | RunStatus::Timeout | RunStatus::Killed => job.on_failure.clone(),
            _ => Vec::new(),
        };
        let request = run
            .tick
            .request
            .as_ref()
            .and_then(|r| self.claimed_key(&run.tick, &r.request));
        if chain.is_empty() && request.is_none() {
            return;
        }
        let finish = Finish {
            run_id: run_id.to_string(),
            job: job.name.clone(),
            request,
            chain,
            depth: run.tick.request.as_ref().map_or(0, |r| r.request.depth),
        };
        self.outbox.finish(finish.clone());
        if finish.request.is_some() {
            // The claim's entry is closed: the run's end stands for it.
            self.outbox.took(run_id);
        }
        let ctx = Arc::clone(self);
        self.background
            .spawn(async move { ctx.finish_in_etcd(finish).await });
    }

    /// Applies `finish` in etcd, retrying until etcd answers or the worker
    /// stops (the outbox then keeps it for the next start).
    async fn finish_in_etcd(&self, finish: Finish) {
        let mut backoff = Backoff::etcd();
        loop {
            let now_ms = self.clock.now().timestamp_millis();
            match self.chains.finish(&finish, now_ms).await {
                Ok(found) => {
                    if !finish.chain.is_empty() {
                        tracing::info!(job = %finish.job, run_id = %finish.run_id,
                            chain = ?finish.chain, missing = ?found.missing, "chained jobs requested");
                    }
                    if let Some(w) = records::chain_broken(&finish, &found, &self.worker_id, now_ms)
                    {
                        self.warns.send(w).await;
                    }
                    self.outbox.finished_in_etcd(&finish.run_id);
                    return;
                }
                Err(e) => {
                    tracing::warn!(job = %finish.job, run_id = %finish.run_id, error = %e,
                        "cannot finish a run in etcd (request, chain); retrying");
                    if !backoff.wait_or_cancel(&self.stop_runs).await {
                        return;
                    }
                }
            }
        }
    }

    /// Ends of runs a dead worker left undone in etcd.
    pub(crate) fn resume_finishes(self: &Arc<Self>, finishes: Vec<Finish>) {
        for finish in finishes {
            let ctx = Arc::clone(self);
            self.background
                .spawn(async move { ctx.finish_in_etcd(finish).await });
        }
    }

    /// Hands back request `key` claimed for run `run_id` (which never
    /// started), retrying until etcd answers; false if the worker stopped
    /// first.
    async fn hand_back(&self, key: &str, run_id: &str) -> bool {
        let mut backoff = Backoff::etcd();
        loop {
            match self.chains.hand_back(key, run_id).await {
                Ok(()) => {
                    tracing::info!(
                        key,
                        run_id,
                        "claimed run request handed back (its run did not start)"
                    );
                    return true;
                }
                Err(e) => {
                    tracing::warn!(key, run_id, error = %e, "cannot hand back a claimed run request; retrying");
                    if !backoff.wait_or_cancel(&self.stop_runs).await {
                        return false;
                    }
                }
            }
        }
    }

    /// What attempt `attempt` of `run` starts with: the job's variables,
    /// then the run's own, then the run variables (ARCHITECTURE §4, "Run
    /// environment"). The one place a run's setup is put together.
    fn setup(&self, run: &Run, run_id: &str, attempt: u32) -> RunSetup {
        let job = &run.tick.job;
        let vars = RunVars {
            job: job.name.as_str(),
            run_id,
            plan_ms: run.tick.plan_time.timestamp_millis(),
            attempt,
            worker: &self.worker_id,
            trigger: trigger_of(&run.tick),
        };
        // What a run-now request set for this run only.
        let extra = run
            .tick
            .request
            .as_ref()
            .map(|r| r.request.params.env.clone())
            .unwrap_or_default();
        RunSetup::new(job, &extra, &vars)
    }

    fn record(&self, run: &Run, run_id: &str, attempt: u32, o: &Outcome) -> LogRecord {
        let tick = TickTimes {
            plan_ms: run.tick.plan_time.timestamp_millis(),
            schedule_ms: run.tick.schedule_time.timestamp_millis(),
        };
        let origin = run
            .tick
            .request
            .as_ref()
            .map(|r| RunOrigin::of(&r.request))
            .unwrap_or_default();
        records::attempt(
            &run.tick.job,
            tick,
            run_id,
            &self.worker_id,
            attempt,
            o,
            &origin,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(backoff: u64, max: u64) -> rcron_shared::Job {
        rcron_shared::Job::from_json(
            format!(
                r#"{{"name":"r","command":"false","cronExpr":"@daily","retries":5,"retryBackoffSecs":{backoff},"retryBackoffMaxSecs":{max}}}"#
            )
            .as_bytes(),
        )
        .expect("job")
    }

    #[test]
    fn retries_double_up_to_the_cap_with_jitter() {
        let j = job(10, 60);
        let mid: Vec<u64> = (1..=5).map(|a| retry_delay(&j, a, 0.5).as_secs()).collect();
        assert_eq!(mid, vec![10, 20, 40, 60, 60]);
        assert_eq!(retry_delay(&j, 1, 0.0), Duration::from_secs(8));
        assert_eq!(retry_delay(&j, 1, 1.0), Duration::from_secs(12));
        assert_eq!(retry_delay(&job(0, 0), 3, 0.5), Duration::ZERO);
        // No cap given: one hour; a cap below the first delay keeps the first.
        assert_eq!(
            retry_delay(&job(1000, 0), 4, 0.5),
            Duration::from_secs(3600)
        );
        assert_eq!(retry_delay(&job(30, 5), 2, 0.5), Duration::from_secs(30));
    }
}
