//! rcron-master: the HTTP API and web admin of an rcron cluster.
//!
//! - [`config`]: file → env → flag configuration.
//! - [`store`]: jobs and kill requests in etcd (the only writer of
//!   `/cron/jobs/` and `/cron/killer/`).
//! - [`logs`]: run records from MongoDB and the worker registry.
//! - [`api`]: the legacy routes, the REST API with OpenAPI and Swagger UI,
//!   and health probes; handlers call [`store`] and map its errors to
//!   status codes in one place.
//!
//! [`run`] wires them: connect to etcd (lazily, so a master starts while
//! etcd is down and answers 503 until it is back), then serve until the
//! shutdown token is cancelled.

pub mod api;
pub mod config;
mod error;
pub mod logs;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use poem::Server;
use poem::listener::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{MasterArgs, MasterConfig};
pub use error::Error;

use crate::api::AppState;
use crate::logs::LogStore;
use crate::store::JobStore;

/// How long in-flight requests may finish after shutdown is requested.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(5);

/// Builds the shared state from a configuration.
pub async fn state(config: &MasterConfig) -> Result<Arc<AppState>, Error> {
    let keys = config.etcd.keys()?;
    let client = rcron_shared::etcd::connect(&config.etcd).await?;
    let logs = LogStore::connect(&config.mongo, client.clone(), keys.clone()).await?;
    Ok(Arc::new(AppState {
        store: JobStore::new(client, keys),
        logs,
        timezone: config.timezone,
        max_body_bytes: config.max_body_bytes,
    }))
}

/// Serves the API on `config.listen` until `shutdown` is cancelled.
pub async fn run(config: MasterConfig, shutdown: CancellationToken) -> Result<(), Error> {
    let state = state(&config).await?;
    tracing::info!(listen = %config.listen, etcd = ?config.etcd.endpoints, "rcron master serving");
    Server::new(TcpListener::bind(config.listen))
        .run_with_graceful_shutdown(
            api::routes(state),
            shutdown.cancelled_owned(),
            Some(GRACEFUL_SHUTDOWN),
        )
        .await
        .map_err(Error::Listen)
}
