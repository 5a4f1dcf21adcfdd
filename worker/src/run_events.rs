//! How launched runs report back to the scheduler: a run tells when its
//! command starts (the cluster lock is held) and when it ends.
//!
//! A vector behind a mutex, swapped out whole by the scheduler, instead of
//! a channel: when 100k runs end together, reporting is a push each (no
//! queue blocks allocated and freed, one wake-up for the lot), and the
//! scheduler takes them in bursts. Its length is bounded by the running
//! table: a run reports at most twice.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// A launched run's number in the scheduler's running table (reused once
/// the run has finished).
pub type RunId = u32;

/// What a launched run tells the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEvent {
    /// The command runs here (the tick was not taken by another worker).
    Started(RunId),
    /// The run ended, or was not started here.
    Finished(RunId),
}

#[derive(Debug, Default)]
struct Queue {
    events: Mutex<Vec<RunEvent>>,
    /// Signalled when the queue stops being empty.
    ready: Notify,
}

/// The runs' end: cheap to clone into each run's task.
#[derive(Debug, Clone)]
pub struct RunEvents(Arc<Queue>);

impl RunEvents {
    /// Reports that run `id`'s command runs on this worker.
    pub fn started(&self, id: RunId) {
        self.push(RunEvent::Started(id));
    }

    /// Reports the end of run `id` (or that it never started here); once.
    pub fn finished(&self, id: RunId) {
        self.push(RunEvent::Finished(id));
    }

    fn push(&self, event: RunEvent) {
        let first = {
            // The lock only guards a push or a swap: nothing can panic
            // while it is held, so a poisoned lock still holds a sound vector.
            let mut events = self.0.events.lock().unwrap_or_else(PoisonError::into_inner);
            events.push(event);
            events.len() == 1
        };
        if first {
            // A permit is kept when the scheduler is not waiting yet.
            self.0.ready.notify_one();
        }
    }
}

/// The scheduler's end.
#[derive(Debug)]
pub struct RunInbox {
    queue: Arc<Queue>,
    /// Events taken off the queue and not handled yet, from `next` on.
    taken: Vec<RunEvent>,
    next: usize,
}

/// A connected pair.
pub fn channel() -> (RunEvents, RunInbox) {
    let queue = Arc::new(Queue::default());
    let inbox = RunInbox {
        queue: queue.clone(),
        taken: Vec::new(),
        next: 0,
    };
    (RunEvents(queue), inbox)
}

impl RunInbox {
    /// Completes once events are in hand. Cancel-safe: events are only
    /// taken off the queue in the poll that completes.
    pub async fn ready(&mut self) {
        loop {
            if self.next < self.taken.len() {
                return;
            }
            let notified = self.queue.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.taken.clear();
            self.next = 0;
            {
                let mut events = self
                    .queue
                    .events
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                // The two vectors trade places, so neither is reallocated
                // once both have grown to a burst's size.
                std::mem::swap(&mut *events, &mut self.taken);
            }
            if !self.taken.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Up to `max` events in hand, oldest first.
    pub fn burst(&mut self, max: usize) -> impl Iterator<Item = RunEvent> + '_ {
        let end = self.taken.len().min(self.next.saturating_add(max));
        let start = self.next;
        self.next = end;
        self.taken[start..end].iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn events_arrive_in_order_in_bursts_and_wake_a_waiting_inbox() {
        let (events, mut inbox) = channel();
        let waiter = tokio::spawn(async move {
            inbox.ready().await;
            inbox
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "nothing reported yet");
        events.started(1);
        for id in 2..=5 {
            events.clone().finished(id);
        }
        let mut inbox = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the first event")
            .expect("waiter task");
        // Whatever was pushed before the wake-up was taken, in order.
        let mut seen: Vec<RunEvent> = inbox.burst(2).collect();
        assert_eq!(
            seen,
            [RunEvent::Started(1), RunEvent::Finished(2)],
            "a burst stops at its size"
        );
        while seen.len() < 5 {
            tokio::time::timeout(Duration::from_secs(5), inbox.ready())
                .await
                .expect("the rest is in hand or queued");
            seen.extend(inbox.burst(2));
        }
        assert_eq!(
            seen,
            [
                RunEvent::Started(1),
                RunEvent::Finished(2),
                RunEvent::Finished(3),
                RunEvent::Finished(4),
                RunEvent::Finished(5),
            ]
        );
        let idle = tokio::time::timeout(Duration::from_millis(50), inbox.ready()).await;
        assert!(idle.is_err(), "no events, no wake-up");
    }
}
