//! The one error type of `rcron-worker`.

/// Everything that can stop a worker from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// A shared contract was broken (bad key prefix, bad config file, …).
    #[error(transparent)]
    Shared(#[from] rcron_shared::Error),
    /// etcd refused a request or could not be reached.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// The run log refused a request or could not be reached.
    #[error(transparent)]
    RunLog(#[from] rcron_shared::runlog::RunLogError),
    /// A local file (the outbox) could not be read or written.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
