//! rcron-worker: fires scheduled jobs and runs each tick once in the cluster.
//!
//! Data flows one way through single-purpose modules:
//!
//! - [`watcher`] lists and watches `/cron/jobs/` and `/cron/killer/` and
//!   sends [`watcher::SchedulerEvent`]s to
//! - [`scheduler`], one task owning the plan and the running table (with
//!   [`name_index`], [`run_table`], [`run_events`], [`kill_switch`]), which fires due ticks
//!   into a [`scheduler::Launcher`]; the real one is
//! - [`runner`], which per tick takes a slot, takes the cluster [`lock`],
//!   runs the command with [`executor`] (process group, timeout, kill,
//!   capped output), and sends the record to [`log_sink`] (MongoDB, batched,
//!   buffered, spilled) and failures to [`warn`] (`/cron/warn/`).
//! - [`register`] keeps the worker's etcd session lease alive and its
//!   registration at `/cron/workers/<id>` current; locks hang off that lease.
//! - [`spill`] holds undelivered records and warnings on disk across restarts.
//! - [`journal`] keeps each run, record and warning on disk until it is
//!   delivered, so a worker killed mid-run loses nothing a restart cannot
//!   recover (and ends the run it left behind).
//! - [`metrics`] counts what all of them do and serves `/metrics`.
//!
//! [`run`] wires them and shuts them down in order: stop firing, let runs
//! finish for `drain_secs` (then kill them), flush logs and warnings, and
//! revoke the session.

pub mod clock;
pub mod config;
mod error;
pub mod executor;
pub mod journal;
pub mod kill_switch;
pub mod lock;
pub mod log_sink;
pub mod metrics;
pub mod name_index;
pub mod register;
pub mod run_events;
pub mod run_table;
pub mod runner;
pub mod scheduler;
pub mod spill;
pub mod warn;
pub mod watcher;

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::Document;
use mongodb::options::ClientOptions;
use rcron_shared::WorkerInfo;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{WorkerArgs, WorkerConfig};
pub use error::Error;

use crate::clock::{Clock, SystemClock};
use crate::executor::ExecSettings;
use crate::journal::Journal;
use crate::lock::Locker;
use crate::log_sink::SinkSettings;
use crate::metrics::WorkerMetrics;
use crate::runner::{RunContext, Runner};
use crate::scheduler::Scheduler;
use crate::spill::Spill;

/// How long a MongoDB request waits for a reachable server before failing
/// (and being retried by the sink), instead of the driver's 30 s.
const MONGO_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs a worker until `shutdown` is cancelled, with the system clock
/// (shifted by `clock_offset_ms`).
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let clock = Arc::new(SystemClock::with_offset_ms(config.clock_offset_ms));
    run_with_clock(config, clock, shutdown).await
}

/// A MongoDB collection handle for the run log; connecting is lazy.
pub async fn log_collection(
    mongo: &rcron_shared::config::MongoConfig,
) -> Result<mongodb::Collection<Document>, Error> {
    let mut options = ClientOptions::parse(&mongo.uri).await?;
    options.server_selection_timeout = Some(MONGO_SELECTION_TIMEOUT);
    options.connect_timeout = Some(MONGO_SELECTION_TIMEOUT);
    options.app_name = Some("rcron-worker".to_string());
    let client = mongodb::Client::with_options(options)?;
    Ok(client.database(&mongo.db).collection("log"))
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

    let (journal, recovered) = Journal::open(
        &spill_dir,
        &worker_id,
        Duration::from_secs(config.kill_grace_secs),
        clock.now().timestamp_millis(),
    )
    .await?;
    let journal = Arc::new(journal);
    let metrics = Arc::new(WorkerMetrics::default());
    let (logs, log_task) = log_sink::spawn(
        log_collection(&config.mongo).await?,
        SinkSettings {
            batch_size: config.log_batch_size.max(1),
            flush_interval: Duration::from_millis(config.log_flush_interval_ms.max(10)),
            buffer_records: config.log_buffer_records.max(1),
            retention: Duration::from_secs(u64::from(config.log_retention_days) * 86_400),
        },
        Spill::new(&spill_dir, "logs", &worker_id),
        journal.clone(),
        metrics.clone(),
    );
    let (warns, warn_task) = warn::spawn(
        client.clone(),
        keys.clone(),
        Spill::new(&spill_dir, "warnings", &worker_id),
        journal.clone(),
    );
    for record in recovered.records {
        logs.send(record).await;
    }
    for warning in recovered.warnings {
        warns.send(warning).await;
    }

    let (lease_tx, lease_rx) = watch::channel(None);
    // Like the session, the metrics server stays up until the very end.
    let metrics_token = CancellationToken::new();
    let metrics_server = match config.metrics_listen.parse::<std::net::SocketAddr>() {
        Ok(addr) => Some(tokio::spawn(metrics::serve(
            addr,
            metrics.clone(),
            spill_dir.clone(),
            lease_rx.clone(),
            metrics_token.clone(),
        ))),
        Err(_) => None,
    };
    let (running_tx, running_rx) = watch::channel(Vec::new());
    let info = WorkerInfo {
        id: worker_id.clone(),
        hostname: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        ip: register::local_ip(
            config
                .etcd
                .endpoints
                .first()
                .map(String::as_str)
                .unwrap_or("127.0.0.1:2379"),
        )
        .to_string(),
        pid: std::process::id(),
        version: rcron_shared::VERSION.to_string(),
        start_time: chrono::Utc::now().timestamp_millis(),
        capacity: config.max_concurrency,
        running: Vec::new(),
    };
    // Not a child of `shutdown`: the session (and the locks on its lease)
    // must outlive the runs that drain after shutdown is requested.
    let session_token = CancellationToken::new();
    let session = tokio::spawn(register::run_session(
        stream_client.clone(),
        keys.clone(),
        info,
        config.lease_ttl_secs,
        running_rx,
        lease_tx,
        session_token.clone(),
    ));

    let (events_tx, events_rx) = mpsc::channel(1024);
    let watch_token = shutdown.child_token();
    let job_watch = tokio::spawn(watcher::watch_jobs(
        stream_client.clone(),
        keys.clone(),
        events_tx.clone(),
        watch_token.clone(),
    ));
    let kill_watch = tokio::spawn(watcher::watch_kills(
        stream_client.clone(),
        keys.clone(),
        events_tx.clone(),
        watch_token.clone(),
    ));
    let run_watch = tokio::spawn(watcher::watch_run_requests(
        stream_client,
        keys.clone(),
        events_tx,
        watch_token.clone(),
    ));

    let tracker = TaskTracker::new();
    let stop_runs = CancellationToken::new();
    let runner = Runner::new(
        RunContext {
            worker_id: worker_id.clone(),
            locker: Locker::new(client, keys, worker_id.clone()),
            lease: lease_rx,
            exec: ExecSettings {
                shell: config.shell.clone(),
                max_output_bytes: config.max_output_bytes,
                kill_grace: Duration::from_secs(config.kill_grace_secs),
            },
            logs,
            warns,
            journal: journal.clone(),
            clock: clock.clone(),
            stop_runs: stop_runs.clone(),
            metrics: metrics.clone(),
        },
        config.max_concurrency,
        tracker.clone(),
    );
    let scheduler = Scheduler::new(
        runner,
        clock,
        config.timezone,
        Duration::from_secs(config.misfire_grace_secs),
        running_tx,
        metrics,
    );
    let (runner, stats) = scheduler.run(events_rx, shutdown.clone()).await;
    drop(runner);
    watch_token.cancel();
    let _ = tokio::join!(job_watch, kill_watch, run_watch);

    tracker.close();
    if !tracker.is_empty() {
        tracing::info!(
            runs = tracker.len(),
            drain_secs = config.drain_secs,
            "waiting for running jobs"
        );
        if tokio::time::timeout(Duration::from_secs(config.drain_secs), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                runs = tracker.len(),
                "drain time over; killing running jobs"
            );
            stop_runs.cancel();
            tracker.wait().await;
        }
    }
    // Every run (and with it every sender) is gone: the sinks flush and end.
    let _ = tokio::join!(log_task, warn_task);
    if let Ok(journal) = Arc::try_unwrap(journal) {
        journal.close();
    }
    session_token.cancel();
    let _ = session.await;
    metrics_token.cancel();
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    tracing::info!(
        fired = stats.fired,
        missed = stats.missed,
        "rcron worker stopped"
    );
    Ok(())
}
