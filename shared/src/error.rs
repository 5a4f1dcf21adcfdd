//! The one error type of `rcron-shared`.

/// Everything that can go wrong in the shared contracts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A job name breaks the naming rules.
    #[error("invalid job name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A job document is not JSON of the expected shape.
    #[error("invalid job JSON: {reason}")]
    InvalidJson {
        /// The decoder's message, with line and column.
        reason: String,
    },
    /// A job document decodes but breaks one or more rules.
    #[error("invalid job: {}", problems.join("; "))]
    InvalidJob {
        /// Every problem found, one sentence each.
        problems: Vec<String>,
    },
    /// A cron expression does not parse.
    #[error("invalid cron expression {expr:?}: {reason}")]
    InvalidCron {
        /// The rejected expression.
        expr: String,
        /// Why.
        reason: String,
    },
    /// A time zone name is not a known IANA zone.
    #[error("unknown time zone {name:?} (expected an IANA name such as Europe/Berlin or UTC)")]
    InvalidTimezone {
        /// The rejected name.
        name: String,
    },
    /// A configuration file, variable or flag is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// etcd refused a request or could not be reached.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
}
