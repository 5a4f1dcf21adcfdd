//! Run records to the run log (`rcron_shared::runlog`), in batches,
//! without ever losing one.
//!
//! A record handed to the sink is in the [`Outbox`] first, open until the
//! run log has it. Runs hand records to a bounded channel and never wait on
//! MongoDB. The sink task buffers them and inserts a batch when it is full
//! or every flush interval. While MongoDB is unreachable it retries with
//! backoff; past `log_buffer_records` it lets the oldest records go from
//! memory (they stay open in the outbox, synced to disk) and reads them
//! back from the outbox once its buffer has drained, so a long outage
//! costs disk, not memory. The log stores each record once however often
//! it is sent, so a batch resent after a partial failure creates no
//! duplicate.
//!
//! The task ends when every sender is dropped (all runs finished), after a
//! last flush; what still cannot be written stays open in the outbox,
//! which the next start recovers. It starts by reading back what the
//! outbox holds open already: what an earlier life (or a dead worker) left.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rcron_shared::LogRecord;
use rcron_shared::backoff::Backoff;
use rcron_shared::runlog::{RunLogError, RunLogWriter};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::metrics::WorkerMetrics;
use crate::outbox::{Backlog, Outbox, Seq};

/// Longest wait between retries while MongoDB is down.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long the final flush at shutdown may take before leaving the rest
/// to the next start.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Records per insert.
    pub batch_size: usize,
    /// Flush a partial batch after this long.
    pub flush_interval: Duration,
    /// Records kept in memory; past that the oldest wait in the outbox only.
    pub buffer_records: usize,
}

/// A record on its way, and where it is open in the outbox (None: it could
/// not be written there, so it must not leave memory).
type Pending = (Option<Seq>, LogRecord);

/// The sending side, cloned into every run.
#[derive(Clone)]
pub struct LogSender {
    tx: mpsc::Sender<Pending>,
    outbox: Arc<Outbox>,
}

impl LogSender {
    /// Notes the record in the outbox and queues it; waits only if the
    /// sink's channel is full, which it empties into its buffer without
    /// touching MongoDB.
    pub async fn send(&self, record: LogRecord) {
        let seq = self.outbox.finished(&record);
        if let Err(e) = self.tx.send((seq, record)).await {
            // Only after the sink ended, which happens after every run
            // ended; the outbox keeps it for the next start.
            tracing::error!(run_id = %e.0.1.run_id, "log sink stopped; record left in the outbox");
        }
    }
}

/// Starts the sink task; returns its sender and handle.
pub fn spawn(
    store: Arc<dyn RunLogWriter>,
    settings: SinkSettings,
    outbox: Arc<Outbox>,
    metrics: Arc<WorkerMetrics>,
) -> (LogSender, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(settings.batch_size.max(1) * 4);
    let sink = Sink {
        store,
        settings,
        buffer: Buffer::default(),
        // What the outbox holds open already (recovered at its opening).
        backlog: Some(Backlog::everything(&outbox)),
        backoff: Backoff::new(Duration::from_millis(200), MAX_BACKOFF),
        failing: false,
        retry_at: Instant::now(),
        outbox: outbox.clone(),
        metrics,
    };
    (LogSender { tx, outbox }, tokio::spawn(sink.run(rx)))
}

/// The records in memory, oldest first, each with its place in the
/// outbox. Two queues in step, so a batch is a slice of records as they
/// are (a record may carry 64 KiB of output: not copied per write).
#[derive(Default)]
struct Buffer {
    records: VecDeque<LogRecord>,
    seqs: VecDeque<Option<Seq>>,
}

impl Buffer {
    fn len(&self) -> usize {
        self.records.len()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn push_back(&mut self, (seq, record): Pending) {
        self.seqs.push_back(seq);
        self.records.push_back(record);
    }

    fn push_front(&mut self, (seq, record): Pending) {
        self.seqs.push_front(seq);
        self.records.push_front(record);
    }

    fn pop_front(&mut self) -> Option<Pending> {
        Some((self.seqs.pop_front()?, self.records.pop_front()?))
    }

    /// The oldest `n` records (at most all).
    fn oldest(&mut self, n: usize) -> &[LogRecord] {
        let n = n.min(self.records.len());
        &self.records.make_contiguous()[..n]
    }

    /// Removes the oldest `n` records (at most all).
    fn drain_oldest(&mut self, n: usize) -> impl Iterator<Item = LogRecord> + '_ {
        let n = n.min(self.records.len());
        self.seqs.drain(..n);
        self.records.drain(..n)
    }
}

impl Extend<Pending> for Buffer {
    fn extend<I: IntoIterator<Item = Pending>>(&mut self, items: I) {
        for item in items {
            self.push_back(item);
        }
    }
}

struct Sink {
    store: Arc<dyn RunLogWriter>,
    settings: SinkSettings,
    buffer: Buffer,
    /// Records let go from memory (or left by an earlier life), to read
    /// back from the outbox once the buffer has drained.
    backlog: Option<Backlog>,
    backoff: Backoff,
    /// The last write failed: retrying at `retry_at`.
    failing: bool,
    retry_at: Instant,
    /// Where every record waits until it is stored.
    outbox: Arc<Outbox>,
    metrics: Arc<WorkerMetrics>,
}

impl Sink {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
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
                        self.let_go_overflow();
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    self.flush().await;
                    self.read_back();
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
            if let Err(e) = self.store.write(self.buffer.oldest(n)).await {
                return self.failed(&e);
            }
            for record in self.buffer.drain_oldest(n) {
                self.outbox.logged(&record);
            }
        }
        if self.failing {
            tracing::info!("the run log is back; buffered run records written");
        }
        self.failing = false;
        self.backoff.reset();
    }

    fn failed(&mut self, e: &RunLogError) {
        let wait = self.backoff.next_delay();
        self.failing = true;
        self.retry_at = Instant::now() + wait;
        tracing::warn!(error = %e, buffered = self.buffer.len(), retry_in_ms = wait.as_millis() as u64,
            "cannot write run records to the run log; will retry");
    }

    /// Lets the oldest records go from memory when the buffer is over its
    /// size: they stay open in the outbox, from where [`Self::read_back`]
    /// takes them again.
    fn let_go_overflow(&mut self) {
        if self.buffer.len() <= self.settings.buffer_records {
            return;
        }
        let n = self.buffer.len() - self.settings.buffer_records / 2;
        let mut kept = Vec::new();
        let mut let_go = 0;
        while let_go < n
            && let Some((seq, record)) = self.buffer.pop_front()
        {
            match seq {
                Some(seq) => {
                    self.backlog = Some(Backlog::with(self.backlog, seq));
                    let_go += 1;
                }
                // Not in the outbox (its disk failed): memory is all it has.
                None => kept.push((seq, record)),
            }
        }
        for pending in kept.into_iter().rev() {
            self.buffer.push_front(pending);
        }
        // They are on disk only now.
        self.outbox.sync();
        tracing::warn!(
            records = let_go,
            "log buffer full; the oldest records wait in the outbox on disk"
        );
    }

    /// Once the buffer has drained (the run log is taking records again),
    /// reads the next records of the backlog back from the outbox.
    fn read_back(&mut self) {
        if !self.buffer.is_empty() || self.failing {
            return;
        }
        let Some(backlog) = self.backlog else {
            return;
        };
        let limit = (self.settings.buffer_records / 2).max(1);
        let records = self.outbox.open_records(backlog.after, backlog.upto, limit);
        self.backlog = backlog.rest(records.last().map(|(seq, _)| *seq));
        if records.is_empty() {
            return;
        }
        tracing::info!(
            records = records.len(),
            "sending run records that waited in the outbox"
        );
        self.buffer
            .extend(records.into_iter().map(|(seq, record)| (Some(seq), record)));
    }

    /// A last flush, of the buffer and the backlog, for at most
    /// [`FINAL_FLUSH`]; what is left stays open in the outbox.
    async fn shutdown(mut self) {
        let deadline = Instant::now() + FINAL_FLUSH;
        self.read_back();
        while !self.buffer.is_empty() && Instant::now() < deadline {
            self.flush().await;
            self.read_back();
            if !self.buffer.is_empty() && self.failing {
                tokio::time::sleep_until(self.retry_at.min(deadline)).await;
            }
        }
        if !self.buffer.is_empty() || self.backlog.is_some() {
            tracing::warn!(
                buffered = self.buffer.len(),
                "run log unreachable at shutdown; records left in the outbox, sent by the next start"
            );
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
        outbox: Arc<Outbox>,
    }

    async fn start(
        store: &Arc<MemoryRunLog>,
        dir: &Path,
        batch: usize,
        every: Duration,
    ) -> Running {
        start_with(store, dir, batch, every, 1000).await
    }

    async fn start_with(
        store: &Arc<MemoryRunLog>,
        dir: &Path,
        batch: usize,
        every: Duration,
        buffer_records: usize,
    ) -> Running {
        let (outbox, _) = Outbox::open(dir, "w", Duration::from_millis(100), 0)
            .await
            .expect("outbox");
        let outbox = Arc::new(outbox);
        let (sender, task) = spawn(
            store.clone(),
            SinkSettings {
                batch_size: batch,
                flush_interval: every,
                buffer_records,
            },
            outbox.clone(),
            Arc::new(WorkerMetrics::default()),
        );
        Running {
            sender,
            task,
            outbox,
        }
    }

    impl Running {
        /// Stops the sink and closes the outbox, as the worker does.
        async fn stop(self) {
            drop(self.sender);
            self.task.await.expect("sink ends");
            Arc::into_inner(self.outbox).expect("only owner").close();
        }
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
        sink.stop().await;
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
        sink.stop().await;
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
        // Gives up after its final flush time and keeps them on disk.
        sink.stop().await;
        assert!(store.records().is_empty());
        store.set_down(false);
        let next = start(&store, &dir, 10, Duration::from_millis(10)).await;
        until("the 5 records of the last life", || {
            store.records().len() == 5
        })
        .await;
        next.stop().await;
        assert!(
            !dir.join("journal").exists(),
            "all written: nothing left in the outbox"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn past_its_buffer_the_sink_keeps_records_in_the_outbox_not_memory_and_sends_each_once() {
        let dir = temp_dir();
        let store = Arc::new(MemoryRunLog::new());
        store.set_down(true);
        let sink = start_with(&store, &dir, 5, Duration::from_millis(10), 10).await;
        for i in 0..60 {
            sink.sender.send(record(i)).await;
        }
        until("a failed write", || store.failed_writes() > 0).await;
        // The sink has let most of them go from memory: they are open in
        // the outbox only.
        let open = sink
            .outbox
            .open_records(Seq::START, sink.outbox.last_seq(), usize::MAX);
        assert_eq!(open.len(), 60, "every record open in the outbox");
        store.set_down(false);
        until("60 records", || store.records().len() == 60).await;
        let ids: std::collections::BTreeSet<String> =
            store.records().iter().map(|r| r.run_id.clone()).collect();
        assert_eq!(ids.len(), 60, "each record once");
        sink.stop().await;
        assert!(!dir.join("journal").exists(), "nothing left open");
        let _ = std::fs::remove_dir_all(dir);
    }
}
