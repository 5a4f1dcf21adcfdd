//! rcron-master: the HTTP API and alerting of an rcron cluster.
//!
//! - [`config`]: file → env → flag configuration.
//! - [`store`]: jobs and kill requests in etcd (the only writer of
//!   `/cron/jobs/` and `/cron/killer/`); [`job_cache`]: every job in
//!   memory, fed by a watch, for the API's reads.
//! - [`registry`]: the worker registry in etcd.
//! - [`live`]: runs' output as they print, relayed from their workers
//!   (found in the registry) for `/api/v1/…/output/stream`.
//! - [`console`]: what the web admin's dashboard and job list read over
//!   and over, computed at most once per moment per master.
//! - [`api`]: the legacy routes, the REST API with OpenAPI and Swagger UI,
//!   and health probes; handlers call [`store`], [`registry`] and the run
//!   log (`rcron_shared::runlog`) and map their errors to status codes in
//!   one place.
//! - [`election`]: every master campaigns on `/cron/master`; the leader runs
//! - [`alerting`]: backlog + watch of `/cron/warn/`, delivery to the sinks of
//!   `rcron-alerts`, deletion of delivered warnings;
//! - [`settle`]: ticks nobody took, recorded `missed`;
//! - [`requests`]: run requests nobody started by their deadline, recorded
//!   `skipped`, and old chain markers;
//! - [`placement`] and [`beacon`]: unschedulable jobs and the clock reference.
//!
//! [`run`] wires them: connect to etcd and MongoDB (lazily, so a master
//! starts while they are down and answers 503 until they are back), serve
//! the API and take part in the election until the shutdown token is
//! cancelled.

pub mod alerting;
pub mod api;
pub mod audit;
pub mod beacon;
pub mod config;
pub mod console;
pub mod election;
mod error;
pub mod job_cache;
pub mod live;
pub mod placement;
pub mod registry;
pub mod requests;
pub mod settle;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use poem::Server;
use poem::listener::TcpListener;
use rcron_alerts::{AlertSink, EmailSink, SmtpSettings, WebhookKind, WebhookSink};
use tokio_util::sync::CancellationToken;

pub use config::{MasterArgs, MasterConfig};
pub use error::Error;

use crate::alerting::{AlertStats, Alerting};
use crate::api::AppState;
use crate::election::{ElectionSettings, LeaderState, MasterInfo};
use crate::placement::PlacementWatch;
use crate::registry::WorkerRegistry;
use crate::requests::RequestSweeper;
use crate::settle::Settler;
use crate::store::JobStore;
use rcron_shared::runlog::{self, RunLogStore, mongo::MongoRunLog};

/// How long in-flight requests may finish after shutdown is requested.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(5);

/// Builds the shared state from a configuration.
pub async fn state(config: &MasterConfig) -> Result<Arc<AppState>, Error> {
    let keys = config.etcd.keys()?;
    let client = rcron_shared::etcd::connect(&config.etcd).await?;
    let db = runlog::mongo::database(&config.mongo, "rcron-master").await?;
    let logs: Arc<dyn RunLogStore> = Arc::new(MongoRunLog::new(&db, settle::VERDICT_RETENTION));
    let tokens = Arc::new(
        api::Tokens::new(
            config.api_token.clone(),
            config.api_read_token.clone(),
            config.api_keys_file.clone(),
        )
        .map_err(|e| Error::Invalid(rcron_shared::Error::Config(format!("API keys: {e}"))))?,
    );
    let (audit, audit_queue) = audit::channel();
    let audit_trail = db.collection(audit::COLLECTION);
    let audit_task = tokio::spawn(audit::write(audit_trail.clone(), audit_queue));
    let jobs = job_cache::JobCache::new(config.timezone);
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(jobs.clone().run(client.clone(), keys.clone(), stop.clone()));
    let secret =
        rcron_shared::run_token::ClusterSecret::load(config.cluster_secret_file.as_deref())?;
    let live = live::LiveOutput::new(secret).map_err(|e| {
        Error::Invalid(rcron_shared::Error::Config(format!(
            "cannot set up the HTTP client for workers: {e}"
        )))
    })?;
    Ok(Arc::new(AppState {
        live: Arc::new(live),
        jobs,
        stop,
        audit,
        audit_task: std::sync::Mutex::new(Some(audit_task)),
        store: JobStore::new(client.clone(), keys.clone()),
        workers: WorkerRegistry::new(client, keys),
        audit_trail,
        logs,
        timezone: config.timezone,
        max_body_bytes: config.max_body_bytes,
        master_id: config.master_id(),
        leader: Arc::new(LeaderState::default()),
        alert_stats: Arc::new(AlertStats::default()),
        alert_sinks: sink_names(config),
        dashboard: console::Memo::new(console::DASHBOARD_EVERY),
        last_runs: console::LastRuns::default(),
        api_latency: rcron_shared::metrics::Histogram::new(rcron_shared::metrics::LATENCY_BUCKETS),
        tokens: tokens.clone(),
        origin: Arc::new(
            api::OriginPolicy::new(
                !tokens.enabled(),
                &config.allowed_origins,
                &config.allowed_hosts,
                config.alerts.public_url.as_deref(),
            )
            .map_err(|e| Error::Invalid(rcron_shared::Error::Config(e)))?,
        ),
    }))
}

/// The kinds of alert sink the configuration names, as the cluster status
/// and the dashboard show them (each kind once).
pub fn sink_names(config: &MasterConfig) -> Vec<String> {
    let a = &config.alerts;
    [
        ("email", !a.smtp.host.is_empty()),
        ("slack", a.slack_webhook_url.is_some()),
        ("webhook", !a.webhook_urls.is_empty()),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| name.to_string())
    .collect()
}

/// The alert sinks the configuration names.
pub fn sinks(config: &MasterConfig) -> Result<Vec<Arc<dyn AlertSink>>, Error> {
    let a = &config.alerts;
    let sink_error = |e: rcron_alerts::Error| {
        Error::Invalid(rcron_shared::Error::Config(format!("alerts: {e}")))
    };
    let mut sinks: Vec<Arc<dyn AlertSink>> = Vec::new();
    if !a.smtp.host.is_empty() {
        let settings = SmtpSettings {
            host: a.smtp.host.clone(),
            port: a.smtp.port,
            tls: a.smtp.tls,
            credentials: a.smtp.username.clone().zip(a.smtp.password.clone()),
            from: a.smtp.from.clone(),
            to: a.emails.clone(),
            timeout: Duration::from_secs(a.smtp.timeout_secs.max(1)),
        };
        sinks.push(Arc::new(EmailSink::new(&settings).map_err(sink_error)?));
    }
    let headers: Vec<(String, String)> = a.webhook_headers.clone().into_iter().collect();
    let timeout = Duration::from_secs(a.webhook_timeout_secs.max(1));
    for url in &a.webhook_urls {
        sinks.push(Arc::new(
            WebhookSink::new(url, WebhookKind::Generic, &headers, timeout).map_err(sink_error)?,
        ));
    }
    if let Some(url) = &a.slack_webhook_url {
        sinks.push(Arc::new(
            WebhookSink::new(url, WebhookKind::Slack, &headers, timeout).map_err(sink_error)?,
        ));
    }
    Ok(sinks)
}

/// Serves the API on `config.listen` and takes part in the election until
/// `shutdown` is cancelled.
pub async fn run(config: MasterConfig, shutdown: CancellationToken) -> Result<(), Error> {
    config.check_exposure()?;
    let state = state(&config).await?;
    let sinks = sinks(&config)?;
    let keys = config.etcd.keys()?;
    let election_client = rcron_shared::etcd::connect_blocking(&config.etcd).await?;
    let alerting = Arc::new(Alerting {
        client: state.store.client(),
        watch_client: election_client.clone(),
        keys: keys.clone(),
        jobs: state.store.clone(),
        sinks,
        window: Duration::from_secs(config.alerts.window_secs),
        public_url: config.alerts.public_url.clone(),
        stats: state.alert_stats.clone(),
        master_id: state.master_id.clone(),
        undeleted: Default::default(),
    });
    let placement = Arc::new(PlacementWatch {
        client: state.store.client(),
        keys: keys.clone(),
        jobs: state.store.clone(),
        cache: state.jobs.clone(),
        workers: state.workers.clone(),
    });
    let sweeper = Arc::new(RequestSweeper {
        client: state.store.client(),
        keys: keys.clone(),
        jobs: state.store.clone(),
        cache: state.jobs.clone(),
        workers: state.workers.clone(),
        master_id: state.master_id.clone(),
    });
    let settler = Arc::new(Settler {
        client: state.store.client(),
        keys: keys.clone(),
        jobs: state.store.clone(),
        cache: state.jobs.clone(),
        workers: state.workers.clone(),
        logs: state.logs.clone(),
        timezone: config.timezone,
        master_id: state.master_id.clone(),
    });
    let settings = ElectionSettings {
        ttl_secs: config.election_ttl_secs,
        info: MasterInfo {
            id: state.master_id.clone(),
            url: config.advertise_url(),
            start_time: chrono::Utc::now().timestamp_millis(),
            leader_since: None,
            timezone: config.timezone.name().to_string(),
        },
    };
    if alerting.sinks.is_empty() {
        tracing::warn!(
            "no alert sink configured: warnings stay pending (GET /api/v1/alerts) until one is"
        );
    }
    let election = tokio::spawn(election::run(
        election_client,
        keys,
        settings,
        state.leader.clone(),
        shutdown.child_token(),
        move |leadership| {
            let (alerting, placement, settler, sweeper) = (
                alerting.clone(),
                placement.clone(),
                settler.clone(),
                sweeper.clone(),
            );
            let clock = beacon::run(
                settler.client.clone(),
                settler.keys.clone(),
                settler.master_id.clone(),
                leadership.clone(),
            );
            async move {
                let check = placement.run(leadership.clone());
                let settle = settler.run(leadership.clone());
                let requests = sweeper.run(leadership.clone());
                if alerting.sinks.is_empty() {
                    // Keep warnings for when sinks are configured.
                    tokio::join!(
                        leadership.token().cancelled(),
                        check,
                        settle,
                        clock,
                        requests
                    );
                } else {
                    tokio::join!(alerting.run(leadership), check, settle, clock, requests);
                }
            }
        },
    ));

    let reload = tokio::spawn(reload_keys_on_hangup(
        state.tokens.clone(),
        shutdown.child_token(),
    ));
    let audit_task = state
        .audit_task
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    tracing::info!(listen = %config.listen, etcd = ?config.etcd.endpoints, master = %state.master_id, "rcron master serving");
    let served = Server::new(TcpListener::bind(config.listen))
        .run_with_graceful_shutdown(
            api::routes(state),
            shutdown.clone().cancelled_owned(),
            Some(GRACEFUL_SHUTDOWN),
        )
        .await
        .map_err(Error::Listen);
    shutdown.cancel();
    let _ = tokio::join!(election, reload);
    // The server (and with it every audit handle) is gone: the writer
    // stores what is queued, for a few seconds if MongoDB is down.
    if let Some(task) = audit_task
        && tokio::time::timeout(audit::FLUSH_AT_STOP, task)
            .await
            .is_err()
    {
        tracing::error!(
            "master stopping while MongoDB is unreachable: queued audit records are lost"
        );
    }
    served
}

/// Reads the API keys file again on each SIGHUP; a file that does not load
/// keeps the keys in use.
async fn reload_keys_on_hangup(tokens: Arc<api::Tokens>, token: CancellationToken) {
    if tokens.keys_file.is_none() {
        return;
    }
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the API keys file is read only at start");
            return;
        }
    };
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            got = hangups.recv() => {
                if got.is_none() {
                    return;
                }
                match tokens.reload() {
                    Ok(n) => tracing::info!(keys = n, "API keys file read again"),
                    Err(e) => tracing::error!(error = %e, "API keys file not loaded; the keys in use stay"),
                }
            }
        }
    }
}
