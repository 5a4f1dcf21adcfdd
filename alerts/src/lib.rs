//! rcron-alerts: how the leader master tells people that a run failed or
//! timed out.
//!
//! - [`message`]: an [`Alert`] (a warning plus storm-control and link
//!   context) rendered as a subject, a readable body, a Slack text and a
//!   generic JSON payload.
//! - [`email`]: SMTP delivery with lettre (plain, STARTTLS or TLS; auth).
//! - [`webhook`]: Slack-compatible and generic JSON webhooks with reqwest.
//!
//! The alert loop in the master owns retries and storm control; a sink
//! only tries once and says why it failed.

pub mod email;
pub mod message;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;

pub use email::{EmailSink, SmtpSettings, SmtpTls};
pub use message::Alert;
pub use webhook::{WebhookKind, WebhookSink};

/// Why one delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The message could not be built (bad address, …); retrying will not help.
    #[error("cannot build the message: {0}")]
    Message(String),
    /// The SMTP server could not be reached or refused the message.
    #[error("SMTP: {0}")]
    Smtp(String),
    /// The webhook could not be reached or answered with an error status.
    #[error("webhook: {0}")]
    Webhook(String),
}

impl Error {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Message(_))
    }
}

/// A boxed delivery future, so sinks of different kinds share one list.
pub type Delivery<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// A place alerts are delivered to.
pub trait AlertSink: Send + Sync {
    /// A short name for logs and metrics (`email`, `slack`, `webhook`).
    fn name(&self) -> &str;
    /// Delivers one alert, once.
    fn send<'a>(&'a self, alert: &'a Alert) -> Delivery<'a>;
}
