//! Run records to the run log (`rcron_shared::runlog`), in batches,
//! without ever losing one.
//!
//! Runs hand records to a bounded channel and never wait on MongoDB. The
//! sink task buffers them and inserts a batch when it is full or every
//! flush interval. While MongoDB is unreachable it retries with backoff;
//! past `log_buffer_records` the oldest records go to a spill file, which
//! is sent once MongoDB is back — also by the next worker start, if this
//! one stops first. The log stores each record once however often it is
//! sent, so a batch resent after a partial failure creates no duplicate.
//!
//! The task ends when every sender is dropped (all runs finished), after a
//! last flush; what still cannot be written is spilled.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use rcron_shared::LogRecord;
use rcron_shared::runlog::{RunLogError, RunLogWriter};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::journal::Journal;
use crate::metrics::WorkerMetrics;
use crate::spill::Spill;
use rcron_shared::backoff::Backoff;

/// Longest wait between retries while MongoDB is down.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long the final flush at shutdown may take before spilling.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Records per insert.
    pub batch_size: usize,
    /// Flush a partial batch after this long.
    pub flush_interval: Duration,
    /// Records kept in memory before spilling.
    pub buffer_records: usize,
}

/// The sending side, cloned into every run.
#[derive(Clone)]
pub struct LogSender {
    tx: mpsc::Sender<LogRecord>,
}

impl LogSender {
    /// Queues a record; waits only if the sink's channel is full, which it
    /// empties into its buffer without touching MongoDB.
    pub async fn send(&self, record: LogRecord) {
        if let Err(e) = self.tx.send(record).await {
            // Only after the sink ended, which happens after every run ended.
            tracing::error!(run_id = %e.0.run_id, "log sink stopped; record not written");
        }
    }
}

/// Starts the sink task; returns its sender and handle.
pub fn spawn(
    store: Arc<dyn RunLogWriter>,
    settings: SinkSettings,
    spill: Spill,
    journal: std::sync::Arc<Journal>,
    metrics: std::sync::Arc<WorkerMetrics>,
) -> (LogSender, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(settings.batch_size.max(1) * 4);
    let sink = Sink {
        store,
        settings,
        spill,
        buffer: VecDeque::new(),
        backoff: Backoff::new(Duration::from_millis(200), MAX_BACKOFF),
        failing: false,
        retry_at: Instant::now(),
        pending_files: Vec::new(),
        loaded_file: None,
        journal,
        metrics,
    };
    (LogSender { tx }, tokio::spawn(sink.run(rx)))
}

struct Sink {
    store: Arc<dyn RunLogWriter>,
    settings: SinkSettings,
    spill: Spill,
    buffer: VecDeque<LogRecord>,
    backoff: Backoff,
    /// The last write failed: retrying at `retry_at`.
    failing: bool,
    retry_at: Instant,
    /// Spill files waiting to be sent.
    pending_files: Vec<PathBuf>,
    /// The spill file whose records are in `buffer`; deleted once sent.
    loaded_file: Option<PathBuf>,
    /// Forgets each record once it is stored or spilled.
    journal: std::sync::Arc<Journal>,
    metrics: std::sync::Arc<WorkerMetrics>,
}

impl Sink {
    async fn run(mut self, mut rx: mpsc::Receiver<LogRecord>) {
        self.pending_files = self.spill.claim();
        if !self.pending_files.is_empty() {
            tracing::info!(
                files = self.pending_files.len(),
                "resending spilled run records"
            );
        }
        let mut tick = tokio::time::interval(self.settings.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                record = rx.recv() => match record {
                    Some(record) => {
                        self.buffer.push_back(record);
                        if self.buffer.len() >= self.settings.batch_size {
                            self.flush().await;
                        }
                        self.spill_overflow();
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    self.flush().await;
                    self.load_next_spill_file();
                }
            }
            self.metrics.log_buffered.store(
                self.buffer.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        self.shutdown().await;
    }

    /// Writes the buffer in batches, unless a retry is not due yet.
    async fn flush(&mut self) {
        if self.buffer.is_empty() || Instant::now() < self.retry_at {
            return;
        }
        while !self.buffer.is_empty() {
            let n = self.buffer.len().min(self.settings.batch_size);
            let batch = &self.buffer.make_contiguous()[..n];
            if let Err(e) = self.store.write(batch).await {
                return self.failed(&e);
            }
            for record in self.buffer.drain(..n) {
                self.journal.logged(&record);
            }
        }
        if self.failing {
            tracing::info!("the run log is back; buffered run records written");
        }
        self.failing = false;
        self.backoff.reset();
        if let Some(file) = self.loaded_file.take()
            && let Err(e) = std::fs::remove_file(&file)
        {
            tracing::warn!(file = %file.display(), error = %e, "cannot remove sent spill file");
        }
    }

    fn failed(&mut self, e: &RunLogError) {
        let wait = self.backoff.next_delay();
        self.failing = true;
        self.retry_at = Instant::now() + wait;
        tracing::warn!(error = %e, buffered = self.buffer.len(), retry_in_ms = wait.as_millis() as u64,
            "cannot write run records to the run log; will retry");
    }

    /// Moves the oldest records to a spill file when the buffer is over its size.
    fn spill_overflow(&mut self) {
        if self.buffer.len() <= self.settings.buffer_records {
            return;
        }
        let n = self.buffer.len() - self.settings.buffer_records / 2;
        let oldest: Vec<LogRecord> = self.buffer.drain(..n).collect();
        match self.spill.write(&oldest) {
            Ok(path) => {
                tracing::warn!(records = n, file = %path.display(), "log buffer full; spilled to disk");
                for record in &oldest {
                    self.journal.logged(record);
                }
            }
            Err(e) => {
                // The disk failed too: keep them in memory rather than drop them.
                tracing::error!(error = %e, "cannot spill run records; keeping them in memory");
                for r in oldest.into_iter().rev() {
                    self.buffer.push_front(r);
                }
            }
        }
    }

    /// When all is written, loads the next spill file into the buffer.
    fn load_next_spill_file(&mut self) {
        if !self.buffer.is_empty() || self.loaded_file.is_some() || self.failing {
            return;
        }
        let Some(file) = self.pending_files.pop() else {
            return;
        };
        match Spill::read::<LogRecord>(&file) {
            Ok(records) => {
                tracing::info!(records = records.len(), file = %file.display(), "resending spilled records");
                self.buffer.extend(records);
                self.loaded_file = Some(file);
            }
            Err(e) => tracing::error!(file = %file.display(), error = %e, "cannot read spill file"),
        }
    }

    async fn shutdown(mut self) {
        let deadline = Instant::now() + FINAL_FLUSH;
        while !self.buffer.is_empty() && Instant::now() < deadline {
            self.flush().await;
            if !self.buffer.is_empty() {
                tokio::time::sleep_until(self.retry_at.min(deadline)).await;
            }
        }
        if !self.buffer.is_empty() {
            let records: Vec<LogRecord> = self.buffer.drain(..).collect();
            match self.spill.write(&records) {
                Ok(path) => {
                    tracing::warn!(records = records.len(), file = %path.display(),
                    "MongoDB unreachable at shutdown; records spilled, sent at next start");
                    for record in &records {
                        self.journal.logged(record);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, records = records.len(), "cannot spill run records at shutdown")
                }
            }
        }
        // A file loaded into the buffer was either written (and removed by
        // `flush`) or spilled again just above; the remaining pending files
        // stay on disk for the next start.
        if let Some(file) = self.loaded_file.take() {
            let _ = std::fs::remove_file(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rcron_shared::RunStatus;
    use rcron_shared::runlog::memory::MemoryRunLog;

    use super::*;

    struct Running {
        sender: LogSender,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(
        store: &Arc<MemoryRunLog>,
        dir: &Path,
        batch: usize,
        every: Duration,
    ) -> Running {
        let (journal, _) = Journal::open(dir, "w", Duration::from_millis(100), 0)
            .await
            .expect("journal");
        let (sender, task) = spawn(
            store.clone(),
            SinkSettings {
                batch_size: batch,
                flush_interval: every,
                buffer_records: 1000,
            },
            Spill::new(dir, "logs", "w"),
            Arc::new(journal),
            Arc::new(WorkerMetrics::default()),
        );
        Running { sender, task }
    }

    fn record(i: usize) -> LogRecord {
        let mut r = rcron_shared::verdict::record_of(
            "j",
            "true",
            i as i64 * 1000,
            RunStatus::Success,
            String::new(),
            "w",
            i as i64,
        );
        r.run_id = format!("run-{i}");
        r
    }

    fn temp_dir() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("rcron-sink-{}", uuid::Uuid::now_v7().simple()))
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn full_batches_go_out_at_once_in_the_configured_size() {
        let dir = temp_dir();
        let store = Arc::new(MemoryRunLog::new());
        // No timed flush: only full batches are written.
        let sink = start(&store, &dir, 10, Duration::from_secs(3600)).await;
        for i in 0..30 {
            sink.sender.send(record(i)).await;
        }
        until("30 records", || store.records().len() == 30).await;
        assert_eq!(store.writes(), 3, "three batches of ten");
        drop(sink.sender);
        sink.task.await.expect("sink ends");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn records_sent_while_the_log_is_down_arrive_once_when_it_is_back() {
        let dir = temp_dir();
        let store = Arc::new(MemoryRunLog::new());
        store.set_down(true);
        let sink = start(&store, &dir, 10, Duration::from_millis(10)).await;
        for i in 0..25 {
            sink.sender.send(record(i)).await;
        }
        until("a failed write", || store.failed_writes() > 0).await;
        assert!(store.records().is_empty());
        store.set_down(false);
        until("25 records", || store.records().len() == 25).await;
        drop(sink.sender);
        sink.task.await.expect("sink ends");
        let ids: std::collections::BTreeSet<String> =
            store.records().iter().map(|r| r.run_id.clone()).collect();
        assert_eq!(ids.len(), 25, "each record once");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn records_left_at_a_stop_during_an_outage_are_written_by_the_next_start() {
        let dir = temp_dir();
        let store = Arc::new(MemoryRunLog::new());
        store.set_down(true);
        let sink = start(&store, &dir, 10, Duration::from_millis(10)).await;
        for i in 0..5 {
            sink.sender.send(record(i)).await;
        }
        drop(sink.sender);
        // Gives up after its final flush time and keeps them on disk.
        sink.task.await.expect("sink ends");
        assert!(store.records().is_empty());
        store.set_down(false);
        let next = start(&store, &dir, 10, Duration::from_millis(10)).await;
        until("the 5 records of the last life", || {
            store.records().len() == 5
        })
        .await;
        drop(next.sender);
        next.task.await.expect("sink ends");
        let _ = std::fs::remove_dir_all(dir);
    }
}
