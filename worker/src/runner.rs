//! The real [`Launcher`]: for each tick, take a slot (at most
//! `max_concurrency` runs at once), take the cluster lock, run the command
//! with retries, send each attempt's record to the log sink and a warning
//! for a final failure, release the lock.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rcron_shared::{LogRecord, RunStatus, Warning};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::clock::Clock;
use crate::executor::{self, ExecSettings, Outcome};
use crate::journal::{Journal, WARNING_OUTPUT_TAIL};
use crate::lock::{LockOutcome, Locker};
use crate::log_sink::LogSender;
use crate::metrics::WorkerMetrics;
use crate::register::SessionLease;
use crate::scheduler::{Launcher, Run, RunEvents};
use crate::warn::WarnSender;

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
    pub journal: Arc<Journal>,
    /// The worker's clock.
    pub clock: Arc<dyn Clock>,
    /// Cancelled when the drain time at shutdown is over: runs still going are killed.
    pub stop_runs: CancellationToken,
    /// Counters.
    pub metrics: Arc<WorkerMetrics>,
}

/// Spawns runs on a task tracker, bounded by a semaphore.
pub struct Runner {
    ctx: Arc<RunContext>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
}

impl Runner {
    /// A runner with `max_concurrency` slots, spawning on `tracker`.
    pub fn new(ctx: RunContext, max_concurrency: u32, tracker: TaskTracker) -> Self {
        Self {
            ctx: Arc::new(ctx),
            slots: Arc::new(Semaphore::new(max_concurrency as usize)),
            tracker,
        }
    }
}

impl Launcher for Runner {
    fn launch(&mut self, run: Run, events: &RunEvents) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            // Leave the tick to a worker with a free slot rather than queue it.
            tracing::warn!(job = %run.tick.job.name, "no free run slot; tick left to other workers");
            self.ctx
                .metrics
                .no_slot
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            events.finished(run.id);
            return;
        };
        let ctx = self.ctx.clone();
        let events = events.clone();
        self.tracker.spawn(async move {
            ctx.run_tick(&run, &events).await;
            drop(slot);
            events.finished(run.id);
        });
    }
}

impl RunContext {
    async fn run_tick(&self, run: &Run, events: &RunEvents) {
        let job = &run.tick.job;
        let plan_ms = run.tick.plan_time.timestamp_millis();
        let run_id = uuid::Uuid::now_v7().to_string();
        let Some(lease) = *self.lease.borrow() else {
            tracing::warn!(job = %job.name, plan_ms, "no etcd session; tick not started here");
            self.metrics.lock_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let claimed = match run.tick.manual {
            Some(revision) => {
                self.locker
                    .acquire_request(job, revision, &run_id, lease)
                    .await
            }
            None => self.locker.acquire(job, plan_ms, &run_id, lease).await,
        };
        let guard = match claimed {
            Ok(LockOutcome::Acquired(guard)) => guard,
            Ok(LockOutcome::AlreadyFired) => {
                self.metrics.lock_conflicts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(job = %job.name, plan_ms, "tick already started by another worker");
                return;
            }
            Ok(LockOutcome::Busy) => {
                self.metrics.lock_conflicts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(job = %job.name, plan_ms, "previous run still going (concurrency: forbid); tick skipped");
                return;
            }
            Err(e) => {
                self.metrics.lock_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(job = %job.name, plan_ms, error = %e, "cannot take the lock; tick not started here");
                return;
            }
        };
        events.started(run.id);
        let span = tracing::info_span!("run", job = %job.name, run_id = %run_id);
        self.attempts(run, &run_id).instrument(span).await;
        guard.release().await;
    }

    async fn attempts(&self, run: &Run, run_id: &str) {
        let job = &run.tick.job;
        let timeout = (job.timeout_secs > 0).then(|| Duration::from_secs(job.timeout_secs));
        let total = job.retries + 1;
        for attempt in 1..=total {
            let on_spawn = |pgid: u32, start: chrono::DateTime<chrono::Utc>| {
                let record = self.record(run, run_id, attempt, &Outcome::started(start));
                self.journal.started(&job.name, &record, pgid);
            };
            let outcome = executor::execute(
                &self.exec,
                self.clock.as_ref(),
                &job.command,
                timeout,
                &run.kill,
                &self.stop_runs,
                &on_spawn,
            )
            .await;
            tracing::info!(job = %job.name, run_id, attempt, status = outcome.status.as_str(),
                exit_code = ?outcome.exit_code, "run ended");
            self.metrics.run_ended(outcome.status);
            let retryable = matches!(outcome.status, RunStatus::Failed | RunStatus::Timeout);
            let record = self.record(run, run_id, attempt, &outcome);
            self.journal.finished(&record);
            self.logs.send(record).await;
            if !retryable {
                return;
            }
            let last = attempt == total;
            if !last {
                let backoff = Duration::from_secs(job.retry_backoff_secs);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => continue,
                    () = run.kill.killed() => {}
                    () = self.stop_runs.cancelled() => {}
                }
            }
            // The final failure (or one cut short by a kill) is reported.
            let warning = self.warning(run, run_id, attempt, &outcome);
            self.journal.warning(&warning);
            self.warns.send(warning).await;
            return;
        }
    }

    fn record(&self, run: &Run, run_id: &str, attempt: u32, o: &Outcome) -> LogRecord {
        let job = &run.tick.job;
        LogRecord {
            job_name: job.name.to_string(),
            command: job.command.clone(),
            err: o.err.clone(),
            output: o.output.clone(),
            plan_time: run.tick.plan_time.timestamp_millis(),
            schedule_time: run.tick.schedule_time.timestamp_millis(),
            start_time: o.start.timestamp_millis(),
            end_time: o.end.timestamp_millis(),
            run_id: run_id.to_string(),
            worker: self.worker_id.clone(),
            exit_code: o.exit_code,
            status: o.status,
            attempt,
            output_truncated: o.truncated,
        }
    }

    fn warning(&self, run: &Run, run_id: &str, attempt: u32, o: &Outcome) -> Warning {
        let job = &run.tick.job;
        let tail_start = o.output.len().saturating_sub(WARNING_OUTPUT_TAIL);
        let tail_start = (tail_start..o.output.len())
            .find(|&i| o.output.is_char_boundary(i))
            .unwrap_or(o.output.len());
        Warning {
            job_name: job.name.clone(),
            run_id: run_id.to_string(),
            status: o.status,
            command: job.command.clone(),
            exit_code: o.exit_code,
            err: o.err.clone(),
            output_tail: o.output[tail_start..].to_string(),
            plan_time: run.tick.plan_time.timestamp_millis(),
            start_time: o.start.timestamp_millis(),
            end_time: o.end.timestamp_millis(),
            worker: self.worker_id.clone(),
            attempt,
        }
    }
}
