//! One run's stop switch, with the reason it was pulled: a kill of that
//! run by id (`/cron/killrun/<runId>`) or the loss of its job's lock
//! (`lock_keeper`). The first reason wins. A job-wide kill goes through the
//! job's [`KillSwitch`](crate::kill_switch::KillSwitch) and the end of the
//! drain time through the worker's shutdown token instead: both are shared
//! by many runs, this one by the run, its lock and the kill-by-id table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

/// Why a single run was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStopReason {
    /// Killed by run id on request.
    Killed,
    /// Its worker could not vouch for the job's `forbid` lock any more
    /// (session lease expiring unconfirmed, or the lock taken by another
    /// worker after the session was replaced).
    LockLost,
    /// A newer tick of a `concurrency: replace` job took its place.
    Replaced,
}

const NONE: u8 = 0;
const KILLED: u8 = 1;
const LOCK_LOST: u8 = 2;
const REPLACED: u8 = 3;

/// Cheap to clone; every clone stops the same run.
#[derive(Debug, Clone, Default)]
pub struct RunStop(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    reason: AtomicU8,
    notify: Notify,
}

impl RunStop {
    /// A switch not pulled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pulls the switch; a second pull keeps the first reason.
    pub fn stop(&self, reason: RunStopReason) {
        let code = match reason {
            RunStopReason::Killed => KILLED,
            RunStopReason::LockLost => LOCK_LOST,
            RunStopReason::Replaced => REPLACED,
        };
        let _ = self
            .0
            .reason
            .compare_exchange(NONE, code, Ordering::AcqRel, Ordering::Acquire);
        self.0.notify.notify_waiters();
    }

    /// The reason, once pulled.
    pub fn reason(&self) -> Option<RunStopReason> {
        match self.0.reason.load(Ordering::Acquire) {
            KILLED => Some(RunStopReason::Killed),
            LOCK_LOST => Some(RunStopReason::LockLost),
            REPLACED => Some(RunStopReason::Replaced),
            _ => None,
        }
    }

    /// Completes once the switch is pulled, with the reason.
    pub async fn stopped(&self) -> RunStopReason {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the reason is read: a stop in between still wakes us.
            notified.as_mut().enable();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_wakes_waiters() {
        let stop = RunStop::new();
        assert_eq!(stop.reason(), None);
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.stopped().await }
        });
        tokio::task::yield_now().await;
        stop.stop(RunStopReason::LockLost);
        stop.stop(RunStopReason::Killed);
        assert_eq!(waiter.await.expect("join"), RunStopReason::LockLost);
        assert_eq!(stop.stopped().await, RunStopReason::LockLost);
    }
}
