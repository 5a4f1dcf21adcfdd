//! Warnings for the leader master: every failed or timed-out run is put at
//! `/cron/warn/<name>/<runId>`. A warning handed over is in the
//! [`Outbox`] first, open until etcd has it. While etcd is unreachable
//! warnings wait in memory (retried with backoff); past a bound the oldest
//! wait in the outbox only and are read back once the queue has drained;
//! at shutdown what is left stays there for the next start. None is
//! dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use rcron_shared::backoff::Backoff;
use rcron_shared::{Keys, Warning};
use tokio::sync::mpsc;

use crate::outbox::{Backlog, Outbox, Seq};

/// Warnings kept in memory; past that the oldest wait in the outbox only.
const MAX_QUEUED: usize = 10_000;
/// How long the last attempt at shutdown may take before leaving the rest
/// to the next start.
const FINAL_ATTEMPT: Duration = Duration::from_secs(3);

/// A warning on its way, and where it is open in the outbox (None: it
/// could not be written there, so it must not leave memory).
type Pending = (Option<Seq>, Warning);

/// The sending side, cloned into every run.
#[derive(Clone)]
pub struct WarnSender {
    tx: mpsc::Sender<Pending>,
    outbox: Arc<Outbox>,
}

impl WarnSender {
    /// Notes the warning in the outbox and queues it for delivery to etcd.
    pub async fn send(&self, warning: Warning) {
        let seq = self.outbox.warning(&warning);
        if let Err(e) = self.tx.send((seq, warning)).await {
            tracing::error!(run_id = %e.0.1.run_id, "warning reporter stopped; warning left in the outbox");
        }
    }
}

/// Starts the reporter; it ends after every sender is dropped. It starts
/// with what the outbox holds open already (recovered at its opening).
pub fn spawn(
    client: Client,
    keys: Keys,
    outbox: Arc<Outbox>,
) -> (WarnSender, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(1024);
    let reporter = Reporter {
        client,
        keys,
        queue: VecDeque::new(),
        backlog: Some(Backlog::everything(&outbox)),
        outbox: outbox.clone(),
    };
    (WarnSender { tx, outbox }, tokio::spawn(reporter.run(rx)))
}

struct Reporter {
    client: Client,
    keys: Keys,
    queue: VecDeque<Pending>,
    /// Warnings let go from memory (or left by an earlier life), to read
    /// back from the outbox once the queue has drained.
    backlog: Option<Backlog>,
    outbox: Arc<Outbox>,
}

impl Reporter {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            self.read_back();
            // Send what is queued; on failure wait (still accepting new ones).
            while let Some((_, w)) = self.queue.front() {
                match put(&self.client, &self.keys, w).await {
                    Ok(()) => {
                        self.outbox.warned(w);
                        self.queue.pop_front();
                        backoff.reset();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, queued = self.queue.len(), "cannot put warning; retrying");
                        break;
                    }
                }
                if self.queue.is_empty() {
                    self.read_back();
                }
            }
            self.let_go_overflow();
            let wait = if self.queue.is_empty() {
                Duration::from_secs(3600)
            } else {
                backoff.next_delay()
            };
            tokio::select! {
                w = rx.recv() => match w {
                    Some(w) => self.queue.push_back(w),
                    None => break,
                },
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.shutdown().await;
    }

    /// Lets the oldest warnings go from memory when the queue is over its
    /// bound: they stay open in the outbox, from where
    /// [`Self::read_back`] takes them again.
    fn let_go_overflow(&mut self) {
        if self.queue.len() <= MAX_QUEUED {
            return;
        }
        let n = self.queue.len() - MAX_QUEUED / 2;
        let mut kept = Vec::new();
        let mut let_go = 0;
        while let_go < n
            && let Some((seq, warning)) = self.queue.pop_front()
        {
            match seq {
                Some(seq) => {
                    self.backlog = Some(Backlog::with(self.backlog, seq));
                    let_go += 1;
                }
                // Not in the outbox (its disk failed): memory is all it has.
                None => kept.push((seq, warning)),
            }
        }
        for pending in kept.into_iter().rev() {
            self.queue.push_front(pending);
        }
        // They are on disk only now.
        self.outbox.sync();
        tracing::warn!(
            warnings = let_go,
            "warning queue full; the oldest wait in the outbox on disk"
        );
    }

    /// Once the queue has drained, reads the next warnings of the backlog
    /// back from the outbox.
    fn read_back(&mut self) {
        if !self.queue.is_empty() {
            return;
        }
        let Some(backlog) = self.backlog else {
            return;
        };
        let warnings = self
            .outbox
            .open_warnings(backlog.after, backlog.upto, MAX_QUEUED / 2);
        self.backlog = backlog.rest(warnings.last().map(|(seq, _)| *seq));
        if warnings.is_empty() {
            return;
        }
        tracing::info!(
            warnings = warnings.len(),
            "sending warnings that waited in the outbox"
        );
        self.queue
            .extend(warnings.into_iter().map(|(seq, w)| (Some(seq), w)));
    }

    /// A last attempt for at most [`FINAL_ATTEMPT`]; what is left stays
    /// open in the outbox.
    async fn shutdown(mut self) {
        let deadline = tokio::time::Instant::now() + FINAL_ATTEMPT;
        self.read_back();
        while let Some((_, w)) = self.queue.front() {
            if tokio::time::Instant::now() >= deadline
                || put(&self.client, &self.keys, w).await.is_err()
            {
                break;
            }
            self.outbox.warned(w);
            self.queue.pop_front();
            self.read_back();
        }
        if !self.queue.is_empty() || self.backlog.is_some() {
            tracing::warn!(
                queued = self.queue.len(),
                "etcd unreachable at shutdown; warnings left in the outbox, sent by the next start"
            );
        }
    }
}

async fn put(client: &Client, keys: &Keys, w: &Warning) -> Result<(), etcd_client::Error> {
    let value = serde_json::to_string(w).unwrap_or_default();
    client
        .clone()
        .put(keys.warn(&w.job_name, &w.run_id), value, None)
        .await?;
    Ok(())
}
