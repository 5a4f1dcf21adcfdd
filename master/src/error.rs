//! The one error type of `rcron-master`.

use rcron_shared::etcd::is_unavailable;

/// Everything that can go wrong in the master.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong: bad job, bad name, bad cron, bad field.
    #[error("{0}")]
    Invalid(#[from] rcron_shared::Error),
    /// A request that is wrong in a way the shared contracts do not cover.
    #[error("{0}")]
    BadRequest(String),
    /// The named job does not exist.
    #[error("job {0:?} not found")]
    NotFound(String),
    /// No live worker runs a run with this id.
    #[error("run {0:?} is not running on any live worker")]
    RunNotFound(String),
    /// The run log has no record of a run with this id.
    #[error("no record of run {0:?} in the run log")]
    NoRecord(String),
    /// The job already exists (create-only requests).
    #[error("job {0:?} already exists")]
    Conflict(String),
    /// etcd cannot be reached; the request may succeed later.
    #[error("etcd is unavailable: {0}")]
    EtcdUnavailable(etcd_client::Error),
    /// etcd refused the request.
    #[error("etcd: {0}")]
    Etcd(etcd_client::Error),
    /// A value stored in etcd is not what rcron writes.
    #[error("stored value at {key} is not valid: {reason}")]
    Corrupt {
        /// The etcd key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// MongoDB cannot be reached; the request may succeed later.
    #[error("MongoDB is unavailable: {0}")]
    MongoUnavailable(mongodb::error::Error),
    /// MongoDB refused the request.
    #[error("MongoDB: {0}")]
    Mongo(mongodb::error::Error),
    /// The run log cannot be reached; the request may succeed later.
    #[error("{0}")]
    RunLogUnavailable(String),
    /// The run log refused the request.
    #[error("{0}")]
    RunLog(String),
    /// The HTTP listener could not be opened.
    #[error("cannot listen: {0}")]
    Listen(#[source] std::io::Error),
}

impl From<etcd_client::Error> for Error {
    fn from(e: etcd_client::Error) -> Self {
        if is_unavailable(&e) {
            Self::EtcdUnavailable(e)
        } else {
            Self::Etcd(e)
        }
    }
}

impl From<mongodb::error::Error> for Error {
    fn from(e: mongodb::error::Error) -> Self {
        use mongodb::error::ErrorKind;
        match e.kind.as_ref() {
            ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. } => Self::MongoUnavailable(e),
            _ => Self::Mongo(e),
        }
    }
}

impl From<rcron_shared::runlog::RunLogError> for Error {
    fn from(e: rcron_shared::runlog::RunLogError) -> Self {
        use rcron_shared::runlog::RunLogError;
        match e {
            RunLogError::Unavailable(_) => Self::RunLogUnavailable(e.to_string()),
            RunLogError::Refused(_) => Self::RunLog(e.to_string()),
            RunLogError::BadQuery(m) => Self::BadRequest(m),
        }
    }
}

impl Error {
    /// Whether the same request could succeed once a dependency is back.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::EtcdUnavailable(_) | Self::MongoUnavailable(_) | Self::RunLogUnavailable(_) => {
                true
            }
            Self::Invalid(rcron_shared::Error::Etcd(e)) => is_unavailable(e),
            _ => false,
        }
    }
}
