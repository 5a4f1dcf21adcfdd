//! Run records to MongoDB `cron.log`, in batches, without ever losing one.
//!
//! Runs hand records to a bounded channel and never wait on MongoDB. The
//! sink task buffers them and inserts a batch when it is full or every
//! flush interval. While MongoDB is unreachable it retries with backoff;
//! past `log_buffer_records` the oldest records go to a spill file, which
//! is sent once MongoDB is back — also by the next worker start, if this
//! one stops first. Each document's `_id` is `<runId>-<attempt>`, so a
//! batch resent after a partial failure cannot create duplicates.
//!
//! The task ends when every sender is dropped (all runs finished), after a
//! last flush; what still cannot be written is spilled.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use mongodb::bson::{self, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use rcron_shared::LogRecord;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::journal::Journal;
use crate::metrics::WorkerMetrics;
use crate::spill::Spill;
use rcron_shared::backoff::Backoff;

/// Duplicate key: the record is already stored.
const DUPLICATE_KEY: i32 = 11000;
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
    /// How long MongoDB keeps a record (TTL on `expireAt`).
    pub retention: Duration,
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

/// The log collection and its indexes.
pub async fn ensure_indexes(coll: &Collection<Document>) -> mongodb::error::Result<()> {
    coll.create_index(
        IndexModel::builder()
            .keys(doc! {"jobName": 1, "startTime": -1})
            .build(),
    )
    .await?;
    // The log list of every job, newest first (the admin's front page).
    coll.create_index(IndexModel::builder().keys(doc! {"startTime": -1}).build())
        .await?;
    coll.create_index(
        IndexModel::builder()
            .keys(doc! {"expireAt": 1})
            .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
            .build(),
    )
    .await?;
    Ok(())
}

/// Starts the sink task; returns its sender and handle.
pub fn spawn(
    coll: Collection<Document>,
    settings: SinkSettings,
    spill: Spill,
    journal: std::sync::Arc<Journal>,
    metrics: std::sync::Arc<WorkerMetrics>,
) -> (LogSender, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(settings.batch_size.max(1) * 4);
    let sink = Sink {
        coll,
        settings,
        spill,
        buffer: VecDeque::new(),
        backoff: Backoff::new(Duration::from_millis(200), MAX_BACKOFF),
        failing: false,
        retry_at: Instant::now(),
        indexes_ready: false,
        pending_files: Vec::new(),
        loaded_file: None,
        journal,
        metrics,
    };
    (LogSender { tx }, tokio::spawn(sink.run(rx)))
}

struct Sink {
    coll: Collection<Document>,
    settings: SinkSettings,
    spill: Spill,
    buffer: VecDeque<LogRecord>,
    backoff: Backoff,
    /// The last write failed: retrying at `retry_at`.
    failing: bool,
    retry_at: Instant,
    indexes_ready: bool,
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
        if !self.indexes_ready {
            match ensure_indexes(&self.coll).await {
                Ok(()) => self.indexes_ready = true,
                Err(e) => return self.failed(&e),
            }
        }
        while !self.buffer.is_empty() {
            let n = self.buffer.len().min(self.settings.batch_size);
            let docs: Vec<Document> = self
                .buffer
                .iter()
                .take(n)
                .filter_map(|r| self.document(r))
                .collect();
            match self.coll.insert_many(docs).ordered(false).await {
                Ok(_) => {}
                Err(e) if only_duplicates(&e) => {}
                Err(e) => return self.failed(&e),
            }
            for record in self.buffer.drain(..n) {
                self.journal.logged(&record);
            }
        }
        if self.failing {
            tracing::info!("MongoDB is back; buffered run records written");
        }
        self.failing = false;
        self.backoff.reset();
        if let Some(file) = self.loaded_file.take()
            && let Err(e) = std::fs::remove_file(&file)
        {
            tracing::warn!(file = %file.display(), error = %e, "cannot remove sent spill file");
        }
    }

    fn failed(&mut self, e: &mongodb::error::Error) {
        let wait = self.backoff.next_delay();
        self.failing = true;
        self.retry_at = Instant::now() + wait;
        tracing::warn!(error = %e, buffered = self.buffer.len(), retry_in_ms = wait.as_millis() as u64,
            "cannot write run records to MongoDB; will retry");
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

    fn document(&self, record: &LogRecord) -> Option<Document> {
        let mut doc = match bson::to_document(record) {
            Ok(doc) => doc,
            Err(e) => {
                tracing::error!(run_id = %record.run_id, error = %e, "cannot encode run record");
                return None;
            }
        };
        doc.insert("_id", record.document_id());
        let expire = record
            .end_time
            .saturating_add(self.settings.retention.as_millis() as i64);
        doc.insert("expireAt", bson::DateTime::from_millis(expire));
        Some(doc)
    }
}

fn only_duplicates(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::InsertMany(ime) => {
            ime.write_concern_error.is_none()
                && ime
                    .write_errors
                    .as_ref()
                    .is_some_and(|errs| errs.iter().all(|w| w.code == DUPLICATE_KEY))
        }
        _ => false,
    }
}
