//! The worker's notion of "now", injectable so tests can run a worker whose
//! clock lags or leads the others.

use chrono::{DateTime, Utc};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time as this worker believes it to be.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock, optionally shifted by a fixed offset.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock {
    offset: chrono::Duration,
}

impl SystemClock {
    /// The system clock shifted by `offset_ms` milliseconds.
    pub fn with_offset_ms(offset_ms: i64) -> Self {
        Self {
            offset: chrono::Duration::milliseconds(offset_ms),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}
