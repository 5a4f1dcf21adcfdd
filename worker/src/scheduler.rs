//! The scheduler: one task that owns the plan (every job's next tick) and
//! the table of running runs. It selects over job and kill events, run
//! completions, and a sleep until the earliest due tick; nothing else
//! touches its state, so there are no shared maps (the one lock is the
//! queue runs report through, held for a push or a swap).
//!
//! Due ticks are kept in a binary heap of `(time, slot, generation)`;
//! changing or removing a job bumps its slot's generation, which turns its
//! old heap entries stale instead of searching the heap for them.
//! The ticks of the next due instant are taken off the heap ahead of it
//! (a "batch", prepared twice as long before as the previous one took
//! to prepare), so at the instant itself only the launches remain: with 100k
//! jobs due together, the heap work no longer delays the last of them.
//! Starting a tick is delegated to a [`Launcher`]: the real one takes the
//! cluster lock and runs the command (`runner`), the benchmark one only
//! records the firing lag.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rcron_shared::{
    Concurrency, Job, JobName, Misfire, RunStatus, Schedule, TargetMode, placement,
};

/// Most ticks looked at per job when catching up: a job firing every
/// second with a day-long deadline still only costs this much.
const CATCH_UP_STEPS: usize = 100_000;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::kill_switch::KillSwitch;
use crate::metrics::WorkerMetrics;
use crate::name_index::NameIndex;
use crate::run_events::{self, RunInbox};
pub use crate::run_events::{RunEvent, RunEvents, RunId};
use crate::run_requests::{Requested, RunRequests};
use crate::run_table::RunTable;
use crate::watcher::SchedulerEvent;

/// How long before a due tick the scheduler stops sleeping and spins
/// (at most once per distinct due instant, so at most ~0.2% of a core).
const SPIN_BEFORE_DUE: Duration = Duration::from_millis(2);

/// Run events handled per turn of the scheduler loop after the first.
const RUN_EVENT_BURST: usize = 1024;

/// The most a batch is prepared ahead of its instant.
const MAX_PREPARE_LEAD: Duration = Duration::from_millis(250);

/// One tick to start.
#[derive(Debug, Clone)]
pub struct Tick {
    /// The job, as it was when the tick fired.
    pub job: Arc<Job>,
    /// The instant the expression named.
    pub plan_time: DateTime<Utc>,
    /// The instant the scheduler fired it.
    pub schedule_time: DateTime<Utc>,
    /// For a run request (run-now, chained): the request, which the
    /// worker that runs it claims instead of advancing the fired tick.
    pub request: Option<Requested>,
    /// The job's schedule (None for a run-now request of a paused job):
    /// tells which ticks a move of the fired marker skipped over.
    pub schedule: Option<Arc<Schedule>>,
}

/// A run handed to a [`Launcher`].
pub struct Run {
    /// Local id in the running table, for [`RunEvents`].
    pub id: RunId,
    /// What to run.
    pub tick: Tick,
    /// Flipped when the job is killed through `/cron/killer/<name>`.
    pub kill: KillSwitch,
}

/// Starts runs; must not block (spawn what takes time).
pub trait Launcher: Send + 'static {
    /// Starts `run`. Through `events` it reports [`RunEvents::started`] once
    /// the command really starts (the cluster lock is held) and
    /// [`RunEvents::finished`] exactly once at the end; a launcher that
    /// spawns a task clones `events` into it.
    fn launch(&mut self, run: Run, events: &RunEvents);

    /// Kills the run with this id if it executes here.
    fn kill_run(&mut self, _run_id: &str) -> bool {
        false
    }

    /// Kills the run with this id if it executes here, because a newer
    /// tick of its `concurrency: replace` job takes its place.
    fn replace_run(&mut self, run_id: &str) -> bool {
        self.kill_run(run_id)
    }

    /// The worker drains: runs launched but not started yet (waiting for
    /// a slot) are dropped, each reporting [`RunEvents::finished`].
    fn drain(&mut self) {}

    /// `tick` will not run here for `reason` (`skipped`: the job's previous
    /// run is still in flight here; `missed`: found too late): settle it
    /// in the cluster unless another worker started it, and record the
    /// verdict once.
    fn settle(&mut self, _tick: Tick, _status: rcron_shared::RunStatus, _reason: &'static str) {}
}

/// Counters of what the scheduler did.
#[derive(Debug, Default, Clone, Copy)]
pub struct SchedulerStats {
    /// Ticks handed to the launcher.
    pub fired: u64,
    /// Ticks skipped because the worker was too late to fire them.
    pub missed: u64,
    /// Ticks of `forbid` jobs not launched because a run of the job was
    /// still in flight on this worker.
    pub overlap_skipped: u64,
}

struct Slot {
    job: Arc<Job>,
    /// Shared by every job with the same expression and zone (a parsed
    /// expression is ~5 KiB, most of it croner's year table). `None` once
    /// the job is removed (the slot waits for reuse).
    schedule: Option<Arc<Schedule>>,
    generation: u32,
    /// Shared by the job's runs (a kill ends every run of the job), and
    /// replaced once cancelled so later runs do not start killed; one
    /// token per job instead of one allocation per tick.
    kill: KillSwitch,
    /// Runs of this job launched here and not finished: a `forbid` job
    /// never gets a second one from this worker.
    in_flight: u32,
    /// The job's `concurrency: forbid`, kept beside `in_flight` so the
    /// check at launch does not read the job (out of cache in a big batch).
    /// (`replace` jobs launch: their run replaces the one in flight.)
    forbid: bool,
    /// How late a tick may still start ([`Scheduler::deadline`]), kept
    /// here for the same reason.
    late_after: chrono::Duration,
    /// Bumped when the slot is given to another job, so a run of the
    /// slot's former job does not count against the new one.
    incarnation: u32,
}

/// A tick of the next batch, with what its run needs already in hand.
struct Prepared {
    slot: u32,
    /// A job changed or removed since it was prepared has another
    /// generation, and its tick is dropped at launch.
    generation: u32,
    /// The run's references to its job and kill switch, and the running
    /// table's: cloned while preparing, because a clone writes a reference
    /// count in the job's memory, which by the instant of a 100k-job batch
    /// is out of the core's cache (two misses per launch otherwise).
    run: (Arc<Job>, KillSwitch),
    table: (Arc<Job>, KillSwitch),
}

/// The ticks of the next due instant, taken off the heap ahead of it.
#[derive(Default)]
struct Batch {
    /// The instant (ms) every tick in it is due.
    at: Option<i64>,
    ticks: Vec<Prepared>,
    /// How long before its instant the next batch is prepared.
    lead: Duration,
    /// The tick the scheduler last spun for (a clock that stands still
    /// makes a spin give up; the next wait then sleeps to the tick).
    spun_for: Option<i64>,
}

/// Reads a slot's job name, for the [`NameIndex`].
fn name_of<'a>(slots: &'a [Slot]) -> impl Fn(u32) -> &'a JobName + 'a {
    move |slot| &slots[slot as usize].job.name
}

/// Parsed expressions, shared between jobs.
type ScheduleKey = (String, Tz);

/// The scheduler's state; run it with [`Scheduler::run`].
pub struct Scheduler<L: Launcher> {
    launcher: L,
    clock: Arc<dyn Clock>,
    default_tz: Tz,
    misfire_grace: chrono::Duration,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    by_name: NameIndex,
    /// Disabled jobs: never fired, but they can be run on request.
    paused: HashMap<JobName, Arc<Job>>,
    schedules: HashMap<ScheduleKey, Arc<Schedule>>,
    heap: BinaryHeap<Reverse<(i64, u32, u32)>>,
    batch: Batch,
    /// Launched runs (only those whose command started count as running).
    running: RunTable,
    stats: SchedulerStats,
    metrics: Arc<WorkerMetrics>,
    /// Where launched runs report, and where the scheduler reads it.
    run_events: RunEvents,
    inbox: RunInbox,
    /// Run requests waiting for this worker or another.
    requests: RunRequests,
    /// When this scheduler started (ms): requests of `target.mode: all`
    /// jobs made before are left to the workers that saw them made.
    started_ms: i64,
}

impl<L: Launcher> Scheduler<L> {
    /// A scheduler with no jobs yet.
    pub fn new(
        launcher: L,
        clock: Arc<dyn Clock>,
        default_tz: Tz,
        misfire_grace: Duration,
        metrics: Arc<WorkerMetrics>,
    ) -> Self {
        let (run_events, inbox) = run_events::channel();
        let started_ms = clock.now().timestamp_millis();
        Self {
            run_events,
            inbox,
            launcher,
            clock,
            default_tz,
            misfire_grace: chrono::Duration::from_std(misfire_grace)
                .unwrap_or(chrono::Duration::seconds(5)),
            slots: Vec::new(),
            free_slots: Vec::new(),
            by_name: NameIndex::default(),
            paused: HashMap::new(),
            schedules: HashMap::new(),
            heap: BinaryHeap::new(),
            batch: Batch {
                lead: SPIN_BEFORE_DUE,
                ..Batch::default()
            },
            running: RunTable::default(),
            stats: SchedulerStats::default(),
            metrics,
            requests: RunRequests::default(),
            started_ms,
        }
    }

    /// Fires ticks and applies events until `token` is cancelled or the
    /// event senders are gone, then drains: fires nothing more, but keeps
    /// taking kills and run reports until every launched run has finished.
    /// Returns the launcher and the counters.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<SchedulerEvent>,
        token: CancellationToken,
    ) -> (L, SchedulerStats) {
        // Moved out so the select below can borrow `self` in its handlers.
        let mut inbox = std::mem::replace(&mut self.inbox, run_events::channel().1);
        let mut events_open = true;
        loop {
            let wake = self.wake_at();
            tokio::select! {
                biased;
                () = token.cancelled() => break,
                () = sleep_until(wake) => self.on_wake(),
                () = inbox.ready() => {
                    // A burst in one go: 100k runs ending together are not
                    // 100k turns of this loop, nor one turn that delays a tick.
                    for event in inbox.burst(RUN_EVENT_BURST) {
                        self.run_event(event);
                    }
                }
                event = events.recv() => match event {
                    Some(event) => self.apply(event),
                    None => {
                        events_open = false;
                        break;
                    }
                },
            }
        }
        self.launcher.drain();
        // Drain: only kills and run reports, until the last run is gone.
        while !self.running.is_empty() {
            tokio::select! {
                () = inbox.ready() => {
                    for event in inbox.burst(RUN_EVENT_BURST) {
                        self.run_event(event);
                    }
                }
                event = events.recv(), if events_open => match event {
                    Some(SchedulerEvent::Kill(name)) => self.kill(&name),
                    Some(SchedulerEvent::KillRun(run_id)) => self.kill_run(&run_id),
                    Some(SchedulerEvent::ReplaceRun(run_id)) => self.replace_run(&run_id),
                    Some(_) => {} // no new runs while draining
                    None => events_open = false,
                },
            }
        }
        (self.launcher, self.stats)
    }

    /// When to wake next: to prepare the next batch, or to spin the last
    /// stretch before a prepared one.
    fn wake_at(&mut self) -> Option<tokio::time::Instant> {
        let requests = self.requests.next_due();
        let ticks = self.tick_wake_at();
        match (ticks, requests) {
            (Some(t), Some(r)) => Some(t.min(r)),
            (t, r) => t.or(r),
        }
    }

    fn tick_wake_at(&mut self) -> Option<tokio::time::Instant> {
        let (due, lead) = match self.batch.at {
            Some(at) => (at, SPIN_BEFORE_DUE),
            None => (self.next_due()?.timestamp_millis(), self.batch.lead),
        };
        let lead = if self.batch.spun_for == Some(due) {
            Duration::ZERO
        } else {
            lead
        };
        let wait = (due - self.clock.now().timestamp_millis()).max(0) as u64;
        Some(tokio::time::Instant::now() + Duration::from_millis(wait).saturating_sub(lead))
    }

    fn on_wake(&mut self) {
        if self
            .requests
            .next_due()
            .is_some_and(|at| at <= tokio::time::Instant::now())
        {
            self.offer_requests();
        }
        let now_ms = self.clock.now().timestamp_millis();
        if self.batch.at.is_none()
            && let Some(due) = self.next_due().map(|d| d.timestamp_millis())
            && due > now_ms
        {
            self.prepare(due);
            let left = Duration::from_millis((due - now_ms) as u64);
            if left > SPIN_BEFORE_DUE {
                return; // back to the loop: events keep flowing until then
            }
        }
        if let Some(at) = self.batch.at {
            self.spin_until(at);
            if self.clock.now().timestamp_millis() < at {
                return; // the clock stands still (tests): sleep to the tick
            }
            self.launch_batch();
        }
        self.fire_due();
    }

    /// Takes the ticks due at `due` off the heap and queues their next ones.
    fn prepare(&mut self, due: i64) {
        let started = std::time::Instant::now();
        let mut memo = HashMap::new();
        let mut ticks = std::mem::take(&mut self.batch.ticks);
        while let Some(Reverse((ms, slot, generation))) = self.heap.peek().copied() {
            if ms != due {
                break;
            }
            self.heap.pop();
            let s = &self.slots[slot as usize];
            if s.schedule.is_none() || s.generation != generation {
                continue;
            }
            ticks.push(Prepared {
                slot,
                generation,
                run: (s.job.clone(), s.kill.clone()),
                table: (s.job.clone(), s.kill.clone()),
            });
            if let Some(plan_time) = DateTime::from_timestamp_millis(ms) {
                self.push_next_memo(slot, plan_time, &mut memo);
            }
        }
        self.batch.ticks = ticks;
        self.batch.at = Some(due);
        // Twice the last preparation, so the next one is done in time.
        self.batch.lead = (SPIN_BEFORE_DUE + 2 * started.elapsed()).min(MAX_PREPARE_LEAD);
    }

    /// tokio's timer rounds a sleep up to the next millisecond and wakes
    /// up to a millisecond after it; the last stretch before a tick is
    /// spun instead, so a tick fires within microseconds of its instant.
    /// Bounded, so a clock that stands still (tests) cannot hang it.
    fn spin_until(&mut self, due_ms: i64) {
        self.batch.spun_for = Some(due_ms);
        let give_up = std::time::Instant::now() + 2 * SPIN_BEFORE_DUE;
        while self.clock.now().timestamp_millis() < due_ms && std::time::Instant::now() < give_up {
            std::hint::spin_loop();
        }
    }

    /// Starts the prepared ticks (their instant has come).
    fn launch_batch(&mut self) {
        let Some(at) = self.batch.at.take() else {
            return;
        };
        let Some(plan_time) = DateTime::from_timestamp_millis(at) else {
            return;
        };
        let now = self.clock.now();
        let mut ticks = std::mem::take(&mut self.batch.ticks);
        let mut fired = 0;
        for p in ticks.drain(..) {
            let s = &self.slots[p.slot as usize];
            if s.schedule.is_none() || s.generation != p.generation {
                continue;
            }
            if plan_time < now - s.late_after {
                self.too_late(p.slot, plan_time, now);
                continue;
            }
            if s.forbid && s.in_flight > 0 {
                self.overlap_skipped(p.slot, plan_time, now);
                continue;
            }
            let (job, mut kill) = p.run;
            let (table_job, mut table_kill) = p.table;
            // A kill since preparing replaced the job's switch.
            if !kill.same_as(&s.kill) {
                kill = s.kill.clone();
                table_kill = s.kill.clone();
            }
            let tick = Tick {
                job,
                plan_time,
                schedule_time: now,
                request: None,
                // Not cloned for every tick of a big batch: the runner
                // looks it up when it needs it.
                schedule: None,
            };
            let owner = self.count_in_flight(p.slot);
            let id = self
                .running
                .insert(table_job, table_kill, Some(owner), None);
            self.launcher
                .launch(Run { id, tick, kill }, &self.run_events);
            fired += 1;
        }
        self.count_fired(now - plan_time, fired);
        self.batch.ticks = ticks; // keeps its capacity for the next batch
    }

    fn next_due(&mut self) -> Option<DateTime<Utc>> {
        // Drop stale entries so the sleep targets a real tick.
        while let Some(Reverse((ms, slot, generation))) = self.heap.peek().copied() {
            let s = &self.slots[slot as usize];
            if s.schedule.is_some() && s.generation == generation {
                return DateTime::from_timestamp_millis(ms);
            }
            self.heap.pop();
        }
        None
    }

    /// Applies one watcher event to the plan.
    fn apply(&mut self, event: SchedulerEvent) {
        match event {
            SchedulerEvent::Snapshot(jobs) => {
                let keep: std::collections::HashSet<JobName> =
                    jobs.iter().map(|j| j.name.clone()).collect();
                let gone: Vec<JobName> = self
                    .by_name
                    .slots()
                    .map(|slot| &self.slots[slot as usize].job.name)
                    .filter(|n| !keep.contains(*n))
                    .cloned()
                    .collect();
                for name in gone {
                    self.remove(&name);
                }
                for job in jobs {
                    self.upsert(job);
                }
                // A snapshot follows a start or a broken watch (an etcd
                // outage, say): `runOnce` jobs catch up on what they missed.
                self.catch_up();
            }
            SchedulerEvent::Upsert(job) => self.upsert(*job),
            SchedulerEvent::Remove(name) => {
                self.remove(&name);
                self.paused.remove(&name);
            }
            SchedulerEvent::Kill(name) => {
                self.kill(&name);
            }
            SchedulerEvent::KillRun(run_id) => self.kill_run(&run_id),
            SchedulerEvent::ReplaceRun(run_id) => self.replace_run(&run_id),
            SchedulerEvent::Requests(listed) => {
                self.requests
                    .replace_all(listed, tokio::time::Instant::now());
                self.offer_requests();
            }
            SchedulerEvent::Request(request, revision) => {
                self.requests
                    .put(request, revision, tokio::time::Instant::now());
                self.offer_requests();
            }
            SchedulerEvent::RequestGone(job, id) => self.requests.gone(&job, &id),
        }
        self.metrics
            .jobs
            .store(self.by_name.len() as u64, Ordering::Relaxed);
    }

    fn kill_run(&mut self, run_id: &str) {
        let found = self.launcher.kill_run(run_id);
        tracing::info!(run_id, found, "kill of one run requested");
    }

    fn replace_run(&mut self, run_id: &str) {
        let found = self.launcher.replace_run(run_id);
        tracing::info!(
            run_id,
            found,
            "run replaced by a newer tick (concurrency: replace)"
        );
    }

    fn kill(&mut self, name: &JobName) {
        let mut killed = 0;
        for run in self.running.iter() {
            if run.job.name == *name {
                run.kill.kill();
                killed += 1;
            }
        }
        if let Some(slot) = self.by_name.get(name, name_of(&self.slots)) {
            self.slots[slot as usize].kill = KillSwitch::new();
        }
        tracing::info!(job = %name, runs = killed, "kill requested");
    }

    /// Starts a tick for each run request due for a try here, for a
    /// scheduled or a paused job. One this worker cannot start now (its
    /// job is not this worker's, or a run of it is in flight here) waits.
    fn offer_requests(&mut self) {
        let now = tokio::time::Instant::now();
        let now_wall = self.clock.now();
        for requested in self.requests.due(now, now_wall.timestamp_millis()) {
            let request = requested.request.clone();
            let known = match self.by_name.get(&request.job, name_of(&self.slots)) {
                Some(slot) => {
                    let s = &self.slots[slot as usize];
                    let busy = s.job.concurrency.exclusive() && s.in_flight > 0;
                    Some((
                        s.job.clone(),
                        s.kill.clone(),
                        Some(slot),
                        s.schedule.clone(),
                        busy,
                    ))
                }
                None => self
                    .paused
                    .get(&request.job)
                    .map(|job| (job.clone(), KillSwitch::new(), None, None, false)),
            };
            let Some((job, kill, slot, schedule, busy)) = known else {
                self.requests.later(&request.job, &request.id, now);
                continue;
            };
            if busy {
                self.requests.later(&request.job, &request.id, now);
                continue;
            }
            // Each matching worker runs a request of a job on every worker
            // once; one that started after it was made leaves it to those
            // that saw it made.
            if placement::mode(job.target.as_ref()) == TargetMode::All
                && (request.requested_at < self.started_ms
                    || !self.requests.first_run_here(&request.id))
            {
                self.requests.gone(&request.job, &request.id);
                continue;
            }
            let tick = Tick {
                job,
                plan_time: now_wall,
                schedule_time: now_wall,
                request: Some(requested),
                schedule,
            };
            self.count_fired(chrono::Duration::zero(), 1);
            let key = Box::new((request.job.clone(), request.id.clone()));
            self.start_with(tick, kill, slot, Some(key));
        }
        self.metrics
            .run_requests
            .store(self.requests.len() as u64, Ordering::Relaxed);
    }

    fn upsert(&mut self, job: Job) {
        if job.disabled {
            self.remove(&job.name);
            self.paused.insert(job.name.clone(), Arc::new(job));
            return;
        }
        self.paused.remove(&job.name);
        if let Some(slot) = self.by_name.get(&job.name, name_of(&self.slots))
            && *self.slots[slot as usize].job == job
        {
            return; // unchanged (a re-list after a watch error): keep its next tick
        }
        let key: ScheduleKey = (job.cron_expr.clone(), job.zone(self.default_tz));
        let schedule = match self.schedules.get(&key) {
            Some(s) => s.clone(),
            None => match job.schedule(self.default_tz) {
                Ok(s) => {
                    let s = Arc::new(s);
                    self.schedules.insert(key, s.clone());
                    s
                }
                Err(e) => {
                    tracing::warn!(job = %job.name, error = %e, "cannot schedule job");
                    self.remove(&job.name);
                    return;
                }
            },
        };
        let name = job.name.clone();
        let late_after = self.deadline(&job);
        let slot = match self.by_name.get(&name, name_of(&self.slots)) {
            Some(slot) => {
                let s = &mut self.slots[slot as usize];
                s.forbid = job.concurrency == Concurrency::Forbid;
                s.late_after = late_after;
                let old_job = std::mem::replace(&mut s.job, Arc::new(job));
                let old = s.schedule.replace(schedule);
                s.generation = s.generation.wrapping_add(1);
                if let Some(old) = old {
                    self.release_schedule(&old_job, old);
                }
                slot
            }
            None => {
                let entry = Slot {
                    forbid: job.concurrency == Concurrency::Forbid,
                    late_after,
                    job: Arc::new(job),
                    schedule: Some(schedule),
                    generation: 0,
                    kill: KillSwitch::new(),
                    in_flight: 0,
                    incarnation: 0,
                };
                let slot = match self.free_slots.pop() {
                    Some(free) => {
                        let old = &self.slots[free as usize];
                        let (generation, incarnation) = (
                            old.generation.wrapping_add(1),
                            old.incarnation.wrapping_add(1),
                        );
                        self.slots[free as usize] = Slot {
                            generation,
                            incarnation,
                            ..entry
                        };
                        free
                    }
                    None => {
                        self.slots.push(entry);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.by_name.insert(slot, name_of(&self.slots));
                slot
            }
        };
        let now = self.clock.now();
        self.push_next(slot, now);
        tracing::debug!(job = %name, "scheduled");
    }

    fn remove(&mut self, name: &JobName) {
        if let Some(slot) = self.by_name.remove(name, name_of(&self.slots)) {
            let s = &mut self.slots[slot as usize];
            s.generation = s.generation.wrapping_add(1);
            let old = s.schedule.take();
            let job = s.job.clone();
            self.free_slots.push(slot);
            if let Some(old) = old {
                self.release_schedule(&job, old);
            }
            tracing::debug!(job = %name, "unscheduled");
        }
    }

    /// Forgets a shared schedule once no job uses it: the map and `old`
    /// are then its only two references.
    fn release_schedule(&mut self, job: &Job, old: Arc<Schedule>) {
        if Arc::strong_count(&old) == 2 {
            self.schedules
                .remove(&(job.cron_expr.clone(), job.zone(self.default_tz)));
        }
    }

    fn push_next(&mut self, slot: u32, after: DateTime<Utc>) {
        let s = &self.slots[slot as usize];
        let Some(schedule) = &s.schedule else { return };
        if let Some(next) = schedule.next_after(after) {
            self.heap
                .push(Reverse((next.timestamp_millis(), slot, s.generation)));
        }
    }

    /// Like [`Self::push_next`], remembering the answer per schedule and
    /// instant: the many jobs that share an expression and fire together
    /// compute their next tick once per batch.
    fn push_next_memo(
        &mut self,
        slot: u32,
        after: DateTime<Utc>,
        memo: &mut HashMap<(usize, i64), Option<i64>>,
    ) {
        let s = &self.slots[slot as usize];
        let Some(schedule) = &s.schedule else { return };
        let key = (Arc::as_ptr(schedule) as usize, after.timestamp_millis());
        let next = *memo
            .entry(key)
            .or_insert_with(|| schedule.next_after(after).map(|t| t.timestamp_millis()));
        if let Some(next) = next {
            self.heap.push(Reverse((next, slot, s.generation)));
        }
    }

    fn fire_due(&mut self) {
        let now = self.clock.now();
        let now_ms = now.timestamp_millis();
        let mut memo = HashMap::new();
        while let Some(Reverse((ms, slot, generation))) = self.heap.peek().copied() {
            if ms > now_ms {
                break;
            }
            self.heap.pop();
            let s = &self.slots[slot as usize];
            if s.schedule.is_none() || s.generation != generation {
                continue;
            }
            let Some(plan_time) = DateTime::from_timestamp_millis(ms) else {
                continue;
            };
            let oldest_allowed = now - s.late_after;
            let superseded = s.job.misfire == Misfire::RunOnce
                && s.schedule
                    .as_ref()
                    .and_then(|sch| sch.next_after(plan_time))
                    .is_some_and(|next| next <= now);
            if plan_time < oldest_allowed {
                self.too_late(slot, plan_time, now);
            } else if superseded {
                // `runOnce` runs only the latest late tick; the run of that
                // one records the ones before it as missed.
            } else if s.forbid && s.in_flight > 0 {
                self.overlap_skipped(slot, plan_time, now);
            } else {
                let tick = self.tick_of(slot, plan_time, now);
                let kill = s.kill.clone();
                self.count_fired(now - plan_time, 1);
                self.start(tick, kill, Some(slot));
            }
            // Catch up without replaying a long stall tick by tick.
            self.push_next_memo(slot, plan_time.max(oldest_allowed), &mut memo);
        }
    }

    /// For each `misfire: runOnce` job with a `startingDeadlineSecs`, fires
    /// its latest tick within that deadline now (late). If a worker already
    /// ran it, the lock transaction says so and nothing runs; if not, it
    /// runs once in the cluster, and the ones before it are recorded
    /// missed by that run.
    fn catch_up(&mut self) {
        let now = self.clock.now();
        let slots: Vec<u32> = self.by_name.slots().collect();
        for slot in slots {
            let s = &self.slots[slot as usize];
            if s.job.misfire != Misfire::RunOnce || s.job.starting_deadline_secs == 0 {
                continue;
            }
            let Some(schedule) = s.schedule.clone() else {
                continue;
            };
            // Not before this version of the job was saved.
            let saved = s
                .job
                .updated_at
                .and_then(DateTime::from_timestamp_millis)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let mut cursor =
                (now - chrono::Duration::seconds(s.job.starting_deadline_secs as i64)).max(saved);
            let mut latest = None;
            for _ in 0..CATCH_UP_STEPS {
                match schedule.next_after(cursor) {
                    Some(t) if t <= now => {
                        latest = Some(t);
                        cursor = t;
                    }
                    _ => break,
                }
            }
            let Some(plan_time) = latest else { continue };
            if s.forbid && s.in_flight > 0 {
                continue;
            }
            tracing::info!(job = %s.job.name, plan_time = %plan_time, "catching up on the latest tick within the starting deadline (misfire: runOnce)");
            let tick = self.tick_of(slot, plan_time, now);
            let kill = self.slots[slot as usize].kill.clone();
            self.count_fired(now - plan_time, 1);
            self.start(tick, kill, Some(slot));
        }
    }

    /// How late a tick of `job` may still start: `startingDeadlineSecs`
    /// for `misfire: runOnce` jobs that set it, else `misfire_grace_secs`.
    fn deadline(&self, job: &Job) -> chrono::Duration {
        if job.misfire == Misfire::RunOnce && job.starting_deadline_secs > 0 {
            chrono::Duration::seconds(job.starting_deadline_secs as i64)
        } else {
            self.misfire_grace
        }
    }

    fn tick_of(&self, slot: u32, plan_time: DateTime<Utc>, now: DateTime<Utc>) -> Tick {
        let s = &self.slots[slot as usize];
        Tick {
            job: s.job.clone(),
            plan_time,
            schedule_time: now,
            request: None,
            schedule: s.schedule.clone(),
        }
    }

    /// A tick found later than its deadline: not run, settled as missed.
    fn too_late(&mut self, slot: u32, plan_time: DateTime<Utc>, now: DateTime<Utc>) {
        self.stats.missed += 1;
        self.metrics.ticks_missed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(job = %self.slots[slot as usize].job.name, plan_time = %plan_time, "tick missed: the worker was too late to fire it");
        let tick = self.tick_of(slot, plan_time, now);
        self.launcher.settle(
            tick,
            RunStatus::Missed,
            "late: found after its starting deadline",
        );
    }

    /// A `forbid` job's tick found the job's previous run still in flight
    /// here: not launched (the lock would refuse it anyway, at an etcd
    /// transaction's cost, and a worker whose session was replaced must
    /// never start a second run of a job it still runs).
    fn overlap_skipped(&mut self, slot: u32, plan_time: DateTime<Utc>, now: DateTime<Utc>) {
        self.stats.overlap_skipped += 1;
        self.metrics
            .ticks_overlap_skipped
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(job = %self.slots[slot as usize].job.name, plan_time = %plan_time,
            "previous run still going here (concurrency: forbid); tick skipped");
        let tick = self.tick_of(slot, plan_time, now);
        self.launcher.settle(
            tick,
            RunStatus::Skipped,
            "overlap: the previous run was still going",
        );
    }

    /// Counts `n` ticks handed to the launcher `lag` after their instant
    /// (`ticks_fired_total` counts those that start, in the runner).
    fn count_fired(&mut self, lag: chrono::Duration, n: u64) {
        self.stats.fired += n;
        self.metrics
            .fire_lag
            .observe_n(lag.to_std().unwrap_or(Duration::ZERO), n);
    }

    /// Hands a tick to the launcher (the caller counts it); `slot` is the
    /// job's, when it is scheduled here.
    fn start(&mut self, tick: Tick, kill: KillSwitch, slot: Option<u32>) {
        self.start_with(tick, kill, slot, None);
    }

    /// [`Self::start`] for a tick that tries run request `request`.
    fn start_with(
        &mut self,
        tick: Tick,
        kill: KillSwitch,
        slot: Option<u32>,
        request: Option<Box<(JobName, String)>>,
    ) {
        let owner = slot.map(|slot| self.count_in_flight(slot));
        let id = self
            .running
            .insert(tick.job.clone(), kill.clone(), owner, request);
        self.launcher
            .launch(Run { id, tick, kill }, &self.run_events);
    }

    /// One more run of the job in `slot` is in flight; returns its owner tag.
    fn count_in_flight(&mut self, slot: u32) -> (u32, u32) {
        let s = &mut self.slots[slot as usize];
        s.in_flight += 1;
        (slot, s.incarnation)
    }

    fn run_event(&mut self, event: RunEvent) {
        // Whether the set of runs really executing here changed.
        let changed = match event {
            RunEvent::Started(id) => self.running.mark_started(id),
            RunEvent::Finished(id) => match self.running.remove(id) {
                Some(entry) => {
                    if let Some((slot, incarnation)) = entry.owner
                        && let Some(s) = self.slots.get_mut(slot as usize)
                        && s.incarnation == incarnation
                    {
                        s.in_flight = s.in_flight.saturating_sub(1);
                    }
                    if let Some(request) = &entry.request {
                        let (job, id) = request.as_ref();
                        self.requests.tried(job, id, tokio::time::Instant::now());
                    }
                    entry.started
                }
                None => false,
            },
        };
        if changed {
            self.metrics
                .running
                .store(self.running.started() as u64, Ordering::Relaxed);
        }
    }
}

async fn sleep_until(wake: Option<tokio::time::Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that follows tokio's (paused) time, starting at a fixed instant.
    struct PausedClock {
        start_wall: DateTime<Utc>,
        start: tokio::time::Instant,
    }

    impl Clock for PausedClock {
        fn now(&self) -> DateTime<Utc> {
            self.start_wall + chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default()
        }
    }

    /// A launched tick: job, command, plan time, fire time, born killed.
    type Fired = (String, String, DateTime<Utc>, DateTime<Utc>, bool);

    /// Records every launched tick and reports it done at once, except
    /// runs of `hold` commands, which stay running.
    struct Recorder(mpsc::UnboundedSender<Fired>);

    impl Launcher for Recorder {
        fn launch(&mut self, run: Run, events: &RunEvents) {
            let _ = self.0.send((
                run.tick.job.name.to_string(),
                run.tick.job.command.clone(),
                run.tick.plan_time,
                run.tick.schedule_time,
                run.kill.is_killed(),
            ));
            if run.tick.job.command != "hold" {
                events.finished(run.id);
            }
        }
    }

    fn job(json: &str) -> Job {
        Job::from_json(json.as_bytes()).expect("valid job")
    }

    struct Setup {
        events: mpsc::Sender<SchedulerEvent>,
        fired: mpsc::UnboundedReceiver<Fired>,
        token: CancellationToken,
        start: DateTime<Utc>,
    }

    type Spawned<L> = (
        mpsc::Sender<SchedulerEvent>,
        CancellationToken,
        tokio::task::JoinHandle<(L, SchedulerStats)>,
        DateTime<Utc>,
    );

    /// A scheduler on paused time with `launcher`, running: its event
    /// sender, its stop token, its task and the wall time it starts at.
    fn spawn_scheduler<L: Launcher>(launcher: L) -> Spawned<L> {
        // 2030-01-01T00:00:00.300Z: 300 ms before no tick, so due times are whole seconds.
        let start = DateTime::from_timestamp_millis(1_893_456_000_300).expect("time");
        let clock = Arc::new(PausedClock {
            start_wall: start,
            start: tokio::time::Instant::now(),
        });
        let scheduler = Scheduler::new(
            launcher,
            clock,
            Tz::UTC,
            Duration::from_secs(5),
            Arc::new(WorkerMetrics::default()),
        );
        let (events, rx) = mpsc::channel(16);
        let token = CancellationToken::new();
        let task = tokio::spawn(scheduler.run(rx, token.clone()));
        (events, token, task, start)
    }

    fn setup() -> Setup {
        let (fired_tx, fired) = mpsc::unbounded_channel();
        let (events, token, _, start) = spawn_scheduler(Recorder(fired_tx));
        Setup {
            events,
            fired,
            token,
            start,
        }
    }

    fn drain_all(rx: &mut mpsc::UnboundedReceiver<Fired>) -> Vec<Fired> {
        let mut out = Vec::new();
        while let Ok(f) = rx.try_recv() {
            out.push(f);
        }
        out
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Fired>) -> Vec<(String, i64, i64)> {
        let mut out = Vec::new();
        while let Ok((name, _, plan, fired, _)) = rx.try_recv() {
            out.push((
                name,
                plan.timestamp_millis(),
                (fired - plan).num_milliseconds(),
            ));
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn fires_every_due_tick_on_time() {
        let mut s = setup();
        let j = job(r#"{"name":"every2","command":"true","cronExpr":"*/2 * * * * * *"}"#);
        s.events
            .send(SchedulerEvent::Snapshot(vec![j]))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(6_000)).await;
        let fired = drain(&mut s.fired);
        let base = s.start.timestamp_millis() - 300;
        let plans: Vec<i64> = fired.iter().map(|f| f.1 - base).collect();
        assert_eq!(plans, vec![2_000, 4_000, 6_000]);
        assert!(
            fired.iter().all(|f| f.2 == 0),
            "fired exactly at the planned instant: {fired:?}"
        );
        s.token.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn saving_reschedules_at_once_and_deleting_or_disabling_stops() {
        let mut s = setup();
        s.events
            .send(SchedulerEvent::Snapshot(vec![job(
                r#"{"name":"a","command":"x","cronExpr":"0 0 * * *"}"#,
            )]))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(
            drain(&mut s.fired).is_empty(),
            "a daily job does not fire within a second"
        );
        s.events
            .send(SchedulerEvent::Upsert(Box::new(job(
                r#"{"name":"a","command":"x","cronExpr":"* * * * * * *"}"#,
            ))))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        assert_eq!(
            drain(&mut s.fired).len(),
            2,
            "the new expression applies at once"
        );
        s.events
            .send(SchedulerEvent::Upsert(Box::new(job(
                r#"{"name":"a","command":"x","cronExpr":"* * * * * * *","disabled":true}"#,
            ))))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        assert!(drain(&mut s.fired).is_empty(), "disabled jobs never fire");
        s.events
            .send(SchedulerEvent::Upsert(Box::new(job(
                r#"{"name":"a","command":"x","cronExpr":"* * * * * * *"}"#,
            ))))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(drain(&mut s.fired).len(), 1, "resumed");
        s.events
            .send(SchedulerEvent::Remove(JobName::new("a").expect("name")))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        assert!(drain(&mut s.fired).is_empty(), "deleted jobs never fire");
        s.token.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_keeps_unchanged_jobs_and_drops_missing_ones() {
        let mut s = setup();
        let a = job(r#"{"name":"a","command":"x","cronExpr":"* * * * * * *"}"#);
        let b = job(r#"{"name":"b","command":"x","cronExpr":"* * * * * * *"}"#);
        s.events
            .send(SchedulerEvent::Snapshot(vec![a.clone(), b]))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(drain(&mut s.fired).len(), 2);
        // A re-list after a watch error: `b` was deleted meanwhile, `a` is unchanged.
        s.events
            .send(SchedulerEvent::Snapshot(vec![a.clone()]))
            .await
            .expect("send");
        s.events
            .send(SchedulerEvent::Snapshot(vec![a]))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        let fired = drain(&mut s.fired);
        assert_eq!(
            fired.iter().filter(|f| f.0 == "a").count(),
            3,
            "no tick doubled: {fired:?}"
        );
        assert!(
            fired.iter().all(|f| f.0 == "a"),
            "deleted job gone: {fired:?}"
        );
        s.token.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn many_jobs_fire_in_the_same_instant() {
        let mut s = setup();
        let jobs: Vec<Job> = (0..1000)
            .map(|i| {
                job(&format!(
                    r#"{{"name":"j{i}","command":"x","cronExpr":"* * * * * * *"}}"#
                ))
            })
            .collect();
        s.events
            .send(SchedulerEvent::Snapshot(jobs))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        let fired = drain(&mut s.fired);
        assert_eq!(fired.len(), 3000);
        s.token.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn changes_between_preparing_a_batch_and_its_instant_apply() {
        let mut s = setup();
        let every = |name: &str, command: &str| {
            job(&format!(
                r#"{{"name":"{name}","command":"{command}","cronExpr":"* * * * * * *"}}"#
            ))
        };
        s.events
            .send(SchedulerEvent::Snapshot(vec![
                every("gone", "x"),
                every("changed", "old"),
                // `allow`: a run of it still holds when the next tick comes.
                job(r#"{"name":"killed","command":"hold","cronExpr":"* * * * * * *","concurrency":"allow"}"#),
            ]))
            .await
            .expect("send");
        // The first instant is 700 ms away; its batch is prepared a few
        // milliseconds before it. 1 ms before it, remove and change jobs.
        tokio::time::sleep(Duration::from_millis(699)).await;
        for event in [
            SchedulerEvent::Remove(JobName::new("gone").expect("name")),
            SchedulerEvent::Upsert(Box::new(every("changed", "new"))),
        ] {
            s.events.send(event).await.expect("send");
        }
        // 1 ms before the second instant, kill the job whose first run
        // still runs: the prepared tick must not inherit the killed switch.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        s.events
            .send(SchedulerEvent::Kill(JobName::new("killed").expect("name")))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let fired = drain_all(&mut s.fired);
        let base = s.start.timestamp_millis() - 300;
        let seen: Vec<(String, String, i64, bool)> = fired
            .into_iter()
            .map(|f| (f.0, f.1, f.2.timestamp_millis() - base, f.4))
            .collect();
        let mut expected = Vec::new();
        for plan in [1_000, 2_000] {
            expected.push(("changed".to_string(), "new".to_string(), plan, false));
            expected.push(("killed".to_string(), "hold".to_string(), plan, false));
        }
        let mut sorted = seen.clone();
        sorted.sort_by_key(|f| (f.2, f.0.clone()));
        assert_eq!(
            sorted, expected,
            "the removed job never fired, the changed one fired once per tick with its new command, \
             and a kill before the instant did not kill the next run"
        );
        s.token.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_forbid_job_still_in_flight_here_gets_no_second_run() {
        let mut s = setup();
        s.events
            .send(SchedulerEvent::Snapshot(vec![
                job(r#"{"name":"forbid","command":"hold","cronExpr":"* * * * * * *"}"#),
                job(
                    r#"{"name":"allow","command":"hold","cronExpr":"* * * * * * *","concurrency":"allow"}"#,
                ),
            ]))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        let fired = drain(&mut s.fired);
        let count = |name: &str| fired.iter().filter(|f| f.0 == name).count();
        assert_eq!(count("forbid"), 1, "one run in flight at most: {fired:?}");
        assert_eq!(count("allow"), 3, "allow overlaps: {fired:?}");
        s.token.cancel();
    }

    /// Holds every run (the test finishes it); counts kills by run id.
    struct Holder {
        fired: mpsc::UnboundedSender<(RunId, RunEvents)>,
        kills: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Launcher for Holder {
        fn launch(&mut self, run: Run, events: &RunEvents) {
            events.started(run.id);
            let _ = self.fired.send((run.id, events.clone()));
        }

        fn kill_run(&mut self, _run_id: &str) -> bool {
            self.kills.fetch_add(1, Ordering::Relaxed);
            true
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drains_fires_nothing_more_and_still_takes_kills() {
        let (fired_tx, mut fired) = mpsc::unbounded_channel();
        let kills = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (events, token, task, _) = spawn_scheduler(Holder {
            fired: fired_tx,
            kills: kills.clone(),
        });
        events
            .send(SchedulerEvent::Snapshot(vec![job(
                r#"{"name":"a","command":"x","cronExpr":"* * * * * * *","concurrency":"allow"}"#,
            )]))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let (first, run_events) = fired.try_recv().expect("one run");
        token.cancel();
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        assert!(fired.try_recv().is_err(), "no tick fires while draining");
        assert!(!task.is_finished(), "the drain waits for the running run");
        events
            .send(SchedulerEvent::KillRun("r-1".into()))
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            kills.load(Ordering::Relaxed),
            1,
            "kills reach draining runs"
        );
        run_events.finished(first);
        let (_, stats) = tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the drain ends with the last run")
            .expect("join");
        assert_eq!(stats.fired, 1);
    }
}
