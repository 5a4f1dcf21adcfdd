//! Warnings for the leader master: every failed or timed-out run is put at
//! `/cron/warn/<name>/<runId>`. While etcd is unreachable they wait in
//! memory (retried with backoff) and, past a bound or at shutdown, in a
//! spill file that the next start sends. None is dropped.

use rcron_shared::backoff::Backoff;
use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::Client;
use rcron_shared::{Keys, Warning};
use tokio::sync::mpsc;

use crate::journal::Journal;
use crate::spill::Spill;

/// Warnings kept in memory before spilling.
const MAX_QUEUED: usize = 10_000;
/// How long the last attempt at shutdown may take before spilling.
const FINAL_ATTEMPT: Duration = Duration::from_secs(3);

/// The sending side, cloned into every run.
#[derive(Clone)]
pub struct WarnSender {
    tx: mpsc::Sender<Warning>,
}

impl WarnSender {
    /// Queues a warning for delivery to etcd.
    pub async fn send(&self, warning: Warning) {
        if let Err(e) = self.tx.send(warning).await {
            tracing::error!(run_id = %e.0.run_id, "warning reporter stopped; warning not sent");
        }
    }
}

/// Starts the reporter; it ends after every sender is dropped.
pub fn spawn(
    client: Client,
    keys: Keys,
    spill: Spill,
    journal: std::sync::Arc<Journal>,
) -> (WarnSender, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(1024);
    (
        WarnSender { tx },
        tokio::spawn(run(client, keys, spill, journal, rx)),
    )
}

async fn run(
    client: Client,
    keys: Keys,
    spill: Spill,
    journal: std::sync::Arc<Journal>,
    mut rx: mpsc::Receiver<Warning>,
) {
    let mut queue: VecDeque<Warning> = VecDeque::new();
    for file in spill.claim() {
        match Spill::read::<Warning>(&file) {
            Ok(items) => {
                tracing::info!(warnings = items.len(), "resending spilled warnings");
                queue.extend(items);
                let _ = std::fs::remove_file(&file);
            }
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "cannot read spilled warnings")
            }
        }
    }
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        // Send what is queued; on failure wait (still accepting new ones).
        while let Some(w) = queue.front() {
            match put(&client, &keys, w).await {
                Ok(()) => {
                    journal.warned(w);
                    queue.pop_front();
                    backoff.reset();
                }
                Err(e) => {
                    tracing::warn!(error = %e, queued = queue.len(), "cannot put warning; retrying");
                    break;
                }
            }
        }
        if queue.len() > MAX_QUEUED {
            let n = queue.len() - MAX_QUEUED / 2;
            let oldest: Vec<Warning> = queue.drain(..n).collect();
            match spill.write(&oldest) {
                Ok(_) => oldest.iter().for_each(|w| journal.warned(w)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot spill warnings; keeping them in memory");
                    for w in oldest.into_iter().rev() {
                        queue.push_front(w);
                    }
                }
            }
        }
        let wait = if queue.is_empty() {
            Duration::from_secs(3600)
        } else {
            backoff.next_delay()
        };
        tokio::select! {
            w = rx.recv() => match w {
                Some(w) => queue.push_back(w),
                None => break,
            },
            () = tokio::time::sleep(wait) => {}
        }
    }
    let deadline = tokio::time::Instant::now() + FINAL_ATTEMPT;
    while let Some(w) = queue.front() {
        if tokio::time::Instant::now() >= deadline || put(&client, &keys, w).await.is_err() {
            break;
        }
        journal.warned(w);
        queue.pop_front();
    }
    if !queue.is_empty() {
        let left: Vec<Warning> = queue.into_iter().collect();
        match spill.write(&left) {
            Ok(path) => {
                tracing::warn!(warnings = left.len(), file = %path.display(), "etcd unreachable at shutdown; warnings spilled");
                left.iter().for_each(|w| journal.warned(w));
            }
            Err(e) => {
                tracing::error!(error = %e, warnings = left.len(), "cannot spill warnings at shutdown")
            }
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
