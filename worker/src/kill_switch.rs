//! A job's kill switch: flipped by the scheduler when `/cron/killer/<name>`
//! is put, awaited by the job's runs.
//!
//! The scheduler keeps one per job, so with 100k jobs its size is the
//! worker's size: a flag and a [`Notify`] behind one `Arc` (~64 bytes)
//! instead of a `CancellationToken`, whose tree node (parent, children,
//! handle count) is never used here and costs ~160 bytes per job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Shared by the runs it can stop; cloning it is one reference count.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    killed: AtomicBool,
    notify: Notify,
}

impl KillSwitch {
    /// A switch not flipped yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Flips the switch: every run waiting in [`Self::killed`] wakes, and
    /// later waits return at once.
    pub fn kill(&self) {
        self.0.killed.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    /// Whether [`Self::kill`] was called.
    pub fn is_killed(&self) -> bool {
        self.0.killed.load(Ordering::Acquire)
    }

    /// Completes once the switch is flipped.
    pub async fn killed(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a kill between the two
            // still wakes this wait (`notify_waiters` keeps no permit).
            notified.as_mut().enable();
            if self.is_killed() {
                return;
            }
            notified.await;
        }
    }

    /// Whether both are the same switch.
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_kill_wakes_every_waiting_run_and_later_ones() {
        let switch = KillSwitch::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let s = switch.clone();
                tokio::spawn(async move { s.killed().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!switch.is_killed());
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "nothing killed yet"
        );
        switch.kill();
        for w in waiters {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("woken by the kill")
                .expect("waiter task");
        }
        tokio::time::timeout(Duration::from_secs(1), switch.killed())
            .await
            .expect("a wait after the kill returns at once");
        assert!(!switch.same_as(&KillSwitch::new()));
        assert!(switch.same_as(&switch.clone()));
    }
}
