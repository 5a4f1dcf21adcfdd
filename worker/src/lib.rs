//! rcron-worker: fires scheduled jobs and runs each tick once in the cluster.
//!
//! Data flows one way through single-purpose modules:
//!
//! - [`watcher`] lists and watches `/cron/jobs/` and run requests
//!   (`/cron/run/`), watches kills (`/cron/killer/`, `/cron/killrun/`), and sends
//!   [`watcher::SchedulerEvent`]s to
//! - [`scheduler`], one task owning the plan and the running table (with
//!   [`name_index`], [`run_table`], [`run_events`], [`kill_switch`]), which fires due ticks
//!   into a [`scheduler::Launcher`] (never a second run of a `forbid` job
//!   still in flight here), and offers waiting run requests ([`run_requests`])
//!   as ticks until one worker claims each; the real launcher is
//! - [`runner`], which per tick waits its turn ([`placement`]: the
//!   matching live workers are ranked alike everywhere, the first tries at
//!   once, the others only if it has not), takes a run slot ([`slots`]: a full worker
//!   queues ticks fairly), takes the cluster [`lock`], runs the command
//!   with [`executor`] (process group, timeout, kill, capped output,
//!   [`run_stop`]; variables, directory and user from [`run_setup`]),
//!   lists it in [`active`], and sends the record to
//!   [`log_sink`] (MongoDB, batched, buffered) and failures to [`warn`]
//!   (`/cron/warn/`); [`records`] builds what they carry; [`chain`] deletes
//!   the request a run was claimed from and requests the jobs it chains.
//! - [`register`] keeps the worker's etcd session lease alive (publishing
//!   it only while it can vouch for it) and its registration at
//!   `/cron/workers/<id>` current from [`active`]; locks hang off that
//!   lease, and [`lock_keeper`] moves them to a new lease or stops their
//!   runs when the session cannot keep them.
//! - [`outbox`] keeps each run, record and warning on disk until it is
//!   delivered, so neither an outage nor a worker killed mid-run loses
//!   what a restart cannot recover; [`outbox::recovery`] takes over what a
//!   dead worker left (and logs the run it left behind as `interrupted`).
//! - [`live`] keeps each running run's output (bounded) for readers as
//!   [`executor`] reads it; [`http`] serves it to masters
//!   (`/runs/{runId}/output`, signed grants) beside [`metrics`].
//! - [`metrics`] counts what all of them do (`/metrics` on [`http`]).
//!
//! [`run`] wires them and shuts them down in order: stop firing and mark
//! the registration draining, let runs finish for `drain_secs` (then kill
//! them) while keeping their locks, session and kill watches, flush logs
//! and warnings, and revoke the session once.

pub mod active;
pub mod chain;
pub mod clock;
pub mod clock_guard;
pub mod config;
mod error;
pub mod executor;
pub mod http;
pub mod kill_switch;
pub mod live;
pub mod lock;
pub mod lock_keeper;
pub mod log_sink;
pub mod metrics;
pub mod name_index;
pub mod outbox;
pub mod placement;
pub mod records;
pub mod register;
pub mod run_events;
pub mod run_requests;
pub mod run_setup;
pub mod run_stop;
pub mod run_table;
pub mod runner;
pub mod scheduler;
pub mod slots;
pub mod warn;
pub mod watcher;

use std::sync::Arc;
use std::time::Duration;

use rcron_shared::WorkerInfo;
use rcron_shared::runlog::{self, mongo::MongoRunLog};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{WorkerArgs, WorkerConfig};
pub use error::Error;

use crate::active::ActiveRuns;
use crate::clock::{Clock, SystemClock};
use crate::clock_guard::ClockGuard;
use crate::executor::ExecSettings;
use crate::live::LiveRuns;
use crate::lock::{HeldLocks, Locker};
use crate::log_sink::SinkSettings;
use crate::metrics::WorkerMetrics;
use crate::outbox::Outbox;
use crate::placement::{ClusterView, Placement};
use crate::runner::{RunContext, Runner};
use crate::scheduler::Scheduler;

/// Runs a worker until `shutdown` is cancelled, with the system clock
/// (shifted by `clock_offset_ms`).
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let clock = Arc::new(SystemClock::with_offset_ms(config.clock_offset_ms));
    run_with_clock(config, clock, shutdown).await
}

/// [`run`] with an injected clock.
pub async fn run_with_clock(
    config: WorkerConfig,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let worker_id = config.worker_id();
    let keys = config.etcd.keys()?;
    // Requests get a timeout; watches and keep-alive streams must not.
    let client = rcron_shared::etcd::connect(&config.etcd).await?;
    let stream_client = rcron_shared::etcd::connect_blocking(&config.etcd).await?;
    let spill_dir = config.spill_dir();
    tracing::info!(worker = %worker_id, etcd = ?config.etcd.endpoints, spill_dir = %spill_dir.display(), "rcron worker starting");

    let (outbox, recovered) = Outbox::open(
        &spill_dir,
        &worker_id,
        Duration::from_secs(config.kill_grace_secs),
        clock.now().timestamp_millis(),
    )
    .await?;
    let outbox = Arc::new(outbox);
    let metrics = Arc::new(WorkerMetrics::default());
    let run_log = MongoRunLog::new(
        &runlog::mongo::database(&config.mongo, "rcron-worker").await?,
        Duration::from_secs(u64::from(config.log_retention_days) * 86_400),
    );
    let (logs, log_task) = log_sink::spawn(
        Arc::new(run_log),
        SinkSettings {
            batch_size: config.log_batch_size.max(1),
            flush_interval: Duration::from_millis(config.log_flush_interval_ms.max(10)),
            buffer_records: config.log_buffer_records.max(1),
        },
        outbox.clone(),
        metrics.clone(),
    );
    // Both start by sending what recovery left open in the outbox.
    let (warns, warn_task) = warn::spawn(client.clone(), keys.clone(), outbox.clone());
    let takes = recovered.takes;
    let finishes = recovered.finishes;

    let (lease_tx, lease_rx) = watch::channel(None);
    let live = Arc::new(LiveRuns::new(config.max_output_bytes));
    let secret =
        rcron_shared::run_token::ClusterSecret::load(config.cluster_secret_file.as_deref())?;
    // Like the session, the HTTP listener stays up until the very end.
    let http_token = CancellationToken::new();
    let http_server = match config.http_listen.parse::<std::net::SocketAddr>() {
        Ok(addr) => Some(tokio::spawn(http::serve(
            addr,
            http::HttpState {
                metrics: metrics.clone(),
                spill_dir: spill_dir.clone(),
                lease: lease_rx.clone(),
                live: live.clone(),
                secret,
            },
            http_token.clone(),
        ))),
        Err(_) => None,
    };
    let active = Arc::new(ActiveRuns::default());
    // From here on, times are the cluster's: the guard corrects the clock
    // by its offset from the leader's beacon (and holds firing beyond
    // `max_clock_skew_ms`).
    let guard = Arc::new(ClockGuard::new(
        clock.clone(),
        config.max_clock_skew_ms,
        active.clone(),
        metrics.clone(),
    ));
    let clock: Arc<dyn Clock> = guard.clone();
    let local_ip = register::local_ip(
        config
            .etcd
            .endpoints
            .first()
            .map(String::as_str)
            .unwrap_or("127.0.0.1:2379"),
    );
    let info = WorkerInfo {
        id: worker_id.clone(),
        hostname: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        ip: local_ip.to_string(),
        http_addr: config.http_addr(local_ip),
        pid: std::process::id(),
        version: rcron_shared::VERSION.to_string(),
        start_time: chrono::Utc::now().timestamp_millis(),
        capacity: config.max_concurrency,
        running: Vec::new(),
        runs: Vec::new(),
        draining: false,
        timezone: config.timezone.name().to_string(),
        labels: config.labels.clone(),
        clock_offset_ms: None,
        clock_skewed: false,
        misfire_grace_secs: config.misfire_grace_secs,
    };
    // Not a child of `shutdown`: the session (and the locks on its lease)
    // must outlive the runs that drain after shutdown is requested.
    let session_token = CancellationToken::new();
    let session = tokio::spawn(register::run_session(
        stream_client.clone(),
        keys.clone(),
        info,
        config.lease_ttl_secs,
        active.clone(),
        lease_tx,
        session_token.clone(),
    ));
    let held = Arc::new(HeldLocks::default());
    let lock_keeper = tokio::spawn(lock_keeper::keep_locks(
        client.clone(),
        held.clone(),
        lease_rx.clone(),
        session_token.clone(),
    ));
    let heartbeat = tokio::spawn(outbox_heartbeat(outbox.clone(), session_token.clone()));

    // The watches outlive `shutdown` too: kills must reach runs that drain.
    let (events_tx, events_rx) = mpsc::channel(1024);
    let watch_token = CancellationToken::new();
    let view = Arc::new(ClusterView::default());
    let watches = [
        tokio::spawn(clock_guard::watch(
            stream_client.clone(),
            keys.clone(),
            guard.clone(),
            watch_token.clone(),
        )),
        tokio::spawn(placement::watch(
            stream_client.clone(),
            keys.clone(),
            view.clone(),
            watch_token.clone(),
        )),
        tokio::spawn(watcher::watch_jobs(
            stream_client.clone(),
            keys.clone(),
            config.labels.clone(),
            events_tx.clone(),
            watch_token.clone(),
        )),
        tokio::spawn(watcher::watch_kills(
            stream_client.clone(),
            keys.clone(),
            events_tx.clone(),
            watch_token.clone(),
        )),
        tokio::spawn(watcher::watch_run_kills(
            stream_client.clone(),
            keys.clone(),
            events_tx.clone(),
            watch_token.clone(),
        )),
        tokio::spawn(watcher::watch_run_requests(
            stream_client,
            keys.clone(),
            events_tx,
            watch_token.clone(),
        )),
    ];

    let tracker = TaskTracker::new();
    let stop_runs = CancellationToken::new();
    let runner = Runner::new(
        RunContext {
            worker_id: worker_id.clone(),
            chains: crate::chain::Chains::new(client.clone(), keys.clone()),
            locker: Locker::new(client, keys, worker_id.clone(), held),
            lease: lease_rx,
            exec: ExecSettings {
                shell: config.shell.clone(),
                max_output_bytes: config.max_output_bytes,
                kill_grace: Duration::from_secs(config.kill_grace_secs),
            },
            logs,
            warns,
            outbox: outbox.clone(),
            clock: clock.clone(),
            stop_runs: stop_runs.clone(),
            active: active.clone(),
            misfire_grace: Duration::from_secs(config.misfire_grace_secs),
            background: tracker.clone(),
            metrics: metrics.clone(),
            clock_guard: guard,
            timezone: config.timezone,
            schedules: Default::default(),
            live,
            placement: Placement {
                me: worker_id.clone(),
                rank_delay: Duration::from_millis(config.rank_delay_ms),
                view,
            },
        },
        config.max_concurrency,
        tracker.clone(),
    );
    runner.resolve_takes(takes);
    runner.resume_finishes(finishes);
    let scheduler = Scheduler::new(
        runner,
        clock,
        config.timezone,
        Duration::from_secs(config.misfire_grace_secs),
        metrics,
    );
    let drained = CancellationToken::new();
    let drain_timer = tokio::spawn(drain_deadline(
        shutdown.clone(),
        drained.clone(),
        active.clone(),
        Duration::from_secs(config.drain_secs),
        stop_runs,
    ));
    // Returns once shutdown was asked and every run has ended.
    let (runner, stats) = scheduler.run(events_rx, shutdown.clone()).await;
    drained.cancel();
    drop(runner);
    watch_token.cancel();
    for watch in watches {
        let _ = watch.await;
    }
    let _ = drain_timer.await;
    tracker.close();
    tracker.wait().await;
    // Every run (and with it every sender) is gone: the sinks flush and end.
    let _ = tokio::join!(log_task, warn_task);
    session_token.cancel();
    let _ = tokio::join!(heartbeat, lock_keeper);
    if let Ok(outbox) = Arc::try_unwrap(outbox) {
        outbox.close();
    }
    let _ = session.await;
    http_token.cancel();
    if let Some(server) = http_server {
        let _ = server.await;
    }
    tracing::info!(
        fired = stats.fired,
        missed = stats.missed,
        overlap_skipped = stats.overlap_skipped,
        "rcron worker stopped"
    );
    Ok(())
}

/// On shutdown: marks the worker draining (its registration says so), and
/// once `drain` has passed without every run ending, stops the rest.
async fn drain_deadline(
    shutdown: CancellationToken,
    drained: CancellationToken,
    active: Arc<ActiveRuns>,
    drain: Duration,
    stop_runs: CancellationToken,
) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = drained.cancelled() => return,
    }
    active.set_draining();
    if !active.is_empty() {
        tracing::info!(
            runs = active.len(),
            drain_secs = drain.as_secs(),
            "draining: no new runs; waiting for running ones (their locks and registration kept)"
        );
    }
    tokio::select! {
        () = tokio::time::sleep(drain) => {
            tracing::warn!(runs = active.len(), "drain time over; killing running jobs");
            stop_runs.cancel();
        }
        () = drained.cancelled() => {}
    }
}

/// Marks the outbox alive every second, so a later start knows until when
/// this worker saw its runs (the `endTime` of an interrupted run).
async fn outbox_heartbeat(outbox: Arc<Outbox>, token: CancellationToken) {
    let mut every = tokio::time::interval(outbox::HEARTBEAT);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = every.tick() => outbox.heartbeat(),
        }
    }
}
