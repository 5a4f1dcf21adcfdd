//! rcron-shared: everything the master and the workers agree on.
//!
//! - [`name`]: [`JobName`], validated once when built.
//! - [`job`]: the job document of `/cron/jobs/<name>`, decoded and checked
//!   in one step ([`Job::from_json`]); `job_shape` explains documents of
//!   the wrong shape field by field; [`job_env`]: a job's `env`, `workdir`
//!   and `user` (what its runs start with) and their rules.
//! - [`cron`]: cron expressions with the original's meaning, per-zone
//!   ([`Schedule`]).
//! - [`placement`]: worker labels, job targets, and the ranking of
//!   workers for a tick.
//! - [`keys`]: the etcd key layout, the only place that knows key strings.
//! - [`records`]: the run log document, warnings and worker records.
//! - [`chain`]: the graph of `onSuccess`/`onFailure` and its cycles.
//! - [`request`]: run requests (run-now, chains) and what started a run.
//! - [`backoff`]: the doubling wait between retries, shared by every loop.
//! - [`runlog`]: the run log seam (writer, reader) and its MongoDB and
//!   in-memory stores.
//! - [`config`]: shared config sections and the file → env → flag layering.
//! - [`etcd`]: connecting, and classifying outages.
//! - [`listing`]: reading a whole prefix in pages at one revision.
//! - [`watch`]: list-then-watch of an etcd prefix, for every mirror of etcd.
//! - [`lease`]: keeping an etcd lease alive and publishing until when it
//!   certainly lives (the worker's session, the masters' election).
//! - [`live`]: live output of running runs on the wire (worker frames,
//!   the master's Server-Sent Events); [`run_token`]: the signed grant a
//!   master shows a worker to read one run's output.
//! - [`metrics`]: Prometheus text for counters and histograms.
//! - [`telemetry`]: tracing setup.
//! - `openapi` (feature `openapi`, used by the master): how the job's
//!   string types appear in the REST schema; [`Job`] and its parts derive
//!   theirs where they are defined.
//!
//! The master writes jobs and reads records; workers read jobs, write
//! records. Neither depends on the other, only on this crate.

pub mod backoff;
pub mod chain;
pub mod config;
pub mod cron;
mod error;
pub mod etcd;
pub mod job;
pub mod job_env;
mod job_shape;
pub mod keys;
pub mod lease;
pub mod listing;
pub mod live;
pub mod metrics;
pub mod name;
#[cfg(feature = "openapi")]
mod openapi;
pub mod placement;
pub mod records;
pub mod request;
pub mod run_token;
pub mod runlog;
pub mod secret;
pub mod telemetry;
pub mod verdict;
pub mod watch;

pub use cron::{Schedule, ScheduleCache, Timezone};
pub use error::Error;
pub use job::{Concurrency, Job, Misfire};
pub use job_env::{Env, EnvValue, RunAs};
pub use keys::Keys;
pub use name::JobName;
pub use placement::{Labels, Target, TargetMode};
pub use records::{LogRecord, RunRef, RunStatus, Warning, WarningKind, WorkerInfo};
pub use request::{RunOrigin, RunParams, RunRequest, Trigger, TriggeredBy};

/// The version every binary reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch, the unit of every time in the
/// original's log documents.
pub fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}
