//! The outbox: everything the worker owes MongoDB and etcd, on local disk
//! until they have it, so that neither a worker that dies (SIGKILL, OOM,
//! panic) nor a long outage of either loses a run record or a warning.
//!
//! Each worker process owns `journal/<worker>/` under the spill directory
//! and holds an exclusive `flock` on its `lock` file while it lives; the
//! kernel drops the lock when the process dies, however it dies. What it
//! keeps is appended, one JSON line per change, to `journal.jsonl`:
//!
//! - `run`: an attempt's command started (with its process group id and the
//!   leader's start time, to recognise it later);
//! - `log`: the attempt's final record (which ends its `run`), until
//!   `logged` says the run log stored it;
//! - `warn`: a warning, until `warned` says etcd stored it;
//! - `take`: a lock request about to be sent, until `took` says its
//!   outcome is known.
//!
//! One append (one `write`) per change, instead of a file per entry: at
//! hundreds of runs a second, creating, renaming and deleting two files per
//! run cost the worker more CPU than everything else it does per run
//! (measured: 1.1 ms of 1.7 ms on ext4). Memory holds where each open
//! entry's line is, not its bytes, so a long MongoDB outage costs disk,
//! not memory: the log sink and the warn sender keep a bounded number in
//! memory and read the others back from here ([`Outbox::open_records`],
//! [`Outbox::open_warnings`]). Once the file passes [`COMPACT_AT`] bytes
//! and is mostly closed entries, it is rewritten with the open lines only.
//!
//! Taking over what a dead worker (or an earlier life) left is
//! [`recovery`]'s job. Appends are not fsynced, except when the sinks let
//! entries go from memory and at a close that leaves some open: the
//! outbox survives a process crash, not a power cut (which also ends the
//! commands it would recover).

pub mod recovery;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use rcron_shared::{JobName, LogRecord, Warning};
use serde::{Deserialize, Serialize};

pub use recovery::Recovered;

use crate::Error;

/// The outbox file of a worker's current life.
const FILE: &str = "journal.jsonl";
/// Size past which the file is rewritten with only its open entries.
pub const COMPACT_AT: u64 = 4 << 20;
/// How often a live worker marks its outbox as seen alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Where an entry stands among this life's appends: the log sink and the
/// warn sender note it for what they let go from memory, and read it back
/// from here later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(u64);

impl Seq {
    /// Before every entry.
    pub const START: Seq = Seq(0);

    /// The place just before this one.
    pub fn before(self) -> Seq {
        Seq(self.0.saturating_sub(1))
    }
}

/// Open entries of one kind that are not in a sender's memory: those
/// appended after `after` and up to `upto` (the outbox returns only those
/// still open when they are read back). The log sink and the warn sender
/// each keep one for what they let go from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Entries after this one…
    pub after: Seq,
    /// …up to this one.
    pub upto: Seq,
}

impl Backlog {
    /// Everything the outbox holds now (what recovery left open).
    pub fn everything(outbox: &Outbox) -> Self {
        Self {
            after: Seq::START,
            upto: outbox.last_seq(),
        }
    }

    /// `backlog` widened to cover entry `seq`, let go from memory.
    pub fn with(backlog: Option<Self>, seq: Seq) -> Self {
        match backlog {
            Some(b) => Self {
                after: b.after.min(seq.before()),
                upto: b.upto.max(seq),
            },
            None => Self {
                after: seq.before(),
                upto: seq,
            },
        }
    }

    /// What is left after reading back entries up to `last`; None when
    /// that read found nothing (the backlog is all sent).
    pub fn rest(self, last: Option<Seq>) -> Option<Self> {
        last.map(|after| Self { after, ..self })
    }
}

/// A run attempt that is going: its record so far and its process group.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Started {
    job: JobName,
    record: LogRecord,
    pgid: u32,
    /// The group leader's start time in clock ticks since boot
    /// (`/proc/<pid>/stat`), so a recycled pid is not mistaken for it.
    proc_start: Option<u64>,
}

/// A lock request about to be sent for a tick: if the worker dies before
/// the run starts (or the request is known to have failed), a later start
/// checks whether the request took the tick, and if so records it missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Take {
    /// The run id the request was sent for.
    pub run_id: String,
    /// The job, as it was.
    pub job: rcron_shared::Job,
    /// The tick (ms).
    pub plan_ms: i64,
    /// The fired marker the request moves.
    pub fired_key: String,
    /// The newest etcd revision seen before sending it: its history from
    /// there tells whether it took the tick.
    pub from_revision: i64,
    /// For a settlement (`run_id` is then its tag): the verdict it records
    /// if it moved the marker. None for a lock request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<TakenVerdict>,
    /// For a claim of a run request: the request. Open until the run's
    /// [`Finish`] is noted, so a worker that dies before its run started
    /// hands the request back at its next start, and one that dies during
    /// the run deletes it (the run is logged `interrupted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<TakenRequest>,
}

/// The run request a [`Take`] claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TakenRequest {
    /// `/cron/run/<job>/<id>`.
    pub key: String,
    /// The request as it was before the claim.
    pub request: rcron_shared::RunRequest,
}

/// What a run's end still has to do in etcd: delete the request it ran
/// for and request the runs it chains, once (ARCHITECTURE §4, "Chains").
/// Noted before its record is sent; open until etcd has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finish {
    /// The run.
    pub run_id: String,
    /// Its job.
    pub job: JobName,
    /// `/cron/run/<job>/<id>` it was claimed from, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The jobs its end starts (`onSuccess` or `onFailure`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<JobName>,
    /// How many chained runs led to this one.
    #[serde(default)]
    pub depth: u32,
}

/// The verdict a settlement in the outbox stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TakenVerdict {
    /// `skipped` or `missed`.
    pub status: rcron_shared::RunStatus,
    /// Why.
    pub reason: String,
}

/// One change to the outbox: a line of `journal.jsonl`. The encoding is
/// what earlier versions wrote too: an upgraded worker recovers their files.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Line {
    /// An attempt's command runs; `key` is `<runId>-<attempt>`.
    Run { key: String, started: Started },
    /// An attempt's final record, to be stored; ends the `Run` of its key.
    Log { key: String, record: LogRecord },
    /// The `Log` of `key` is stored.
    Logged { key: String },
    /// A warning, to be sent; `key` is the run id.
    Warn { key: String, warning: Warning },
    /// The `Warn` of `key` is stored.
    Warned { key: String },
    /// A lock request for a tick is being sent; `key` is the run id.
    Take { key: String, take: Box<Take> },
    /// Its outcome is known (the run started, or the tick was not taken).
    Took { key: String },
    /// A run ended; what its end does in etcd is pending. `key`: run id.
    Finish { key: String, finish: Finish },
    /// The `Finish` of `key` is done.
    Finished { key: String },
}

/// What an open entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Run,
    Log,
    Warn,
    Take,
    Finish,
}

/// Where an open entry's line is in the file.
#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: Kind,
    offset: u64,
    len: u64,
}

/// The file being appended to and where its open entries are.
struct Segment {
    file: File,
    written: u64,
    /// The open entry of each kind and key.
    keys: HashMap<(Kind, String), Seq>,
    /// Where each open entry's line is, in the order they were appended.
    entries: BTreeMap<Seq, Entry>,
    open_bytes: u64,
    last: Seq,
}

/// This worker's outbox.
pub struct Outbox {
    dir: PathBuf,
    segment: Mutex<Segment>,
    /// Held for the life of the process; released by the kernel at death.
    _lock: Flock<File>,
}

impl Outbox {
    /// Opens (and locks) this worker's outbox under `spill_dir` and takes
    /// over every outbox left by a dead worker, including an earlier life
    /// of this one (see [`recovery`]). A leftover process group gets
    /// SIGTERM, then SIGKILL after `kill_grace`.
    pub async fn open(
        spill_dir: &Path,
        worker_id: &str,
        kill_grace: Duration,
        now_ms: i64,
    ) -> Result<(Self, Recovered), Error> {
        let root = spill_dir.join("journal");
        let dir = root.join(safe_name(worker_id));
        std::fs::create_dir_all(&dir)?;
        let lock = lock_dir(&dir)?.ok_or_else(|| {
            Error::Config(format!(
                "outbox {} is locked by another running worker with the same id",
                dir.display()
            ))
        })?;
        // An earlier life's file is set aside and read like a dead worker's:
        // this life starts a file of its own.
        let path = dir.join(FILE);
        if path.exists() {
            std::fs::rename(&path, dir.join(recovery::set_aside_name()))?;
        }
        let file = File::options()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let outbox = Self {
            dir,
            segment: Mutex::new(Segment {
                file,
                written: 0,
                keys: HashMap::new(),
                entries: BTreeMap::new(),
                open_bytes: 0,
                last: Seq::START,
            }),
            _lock: lock,
        };
        let recovered = recovery::recover(&outbox, spill_dir, &root, kill_grace, now_ms).await?;
        Ok((outbox, recovered))
    }

    /// Notes a lock request about to be sent; open until [`Outbox::took`].
    pub fn take(&self, take: Take) {
        self.append(&Line::Take {
            key: take.run_id.clone(),
            take: Box::new(take),
        });
    }

    /// The lock request of `run_id` has a known outcome.
    pub fn took(&self, run_id: &str) {
        self.append(&Line::Took {
            key: run_id.to_string(),
        });
    }

    /// Notes what run `finish.run_id`'s end still has to do in etcd; open
    /// until [`Outbox::finished_in_etcd`].
    pub fn finish(&self, finish: Finish) {
        self.append(&Line::Finish {
            key: finish.run_id.clone(),
            finish,
        });
    }

    /// The [`Finish`] of `run_id` is done.
    pub fn finished_in_etcd(&self, run_id: &str) {
        self.append(&Line::Finished {
            key: run_id.to_string(),
        });
    }

    /// Notes that an attempt's command started as process group `pgid`.
    pub fn started(&self, job: &JobName, record: &LogRecord, pgid: u32) {
        let started = Started {
            job: job.clone(),
            record: record.clone(),
            pgid,
            proc_start: crate::executor::process_start_ticks(pgid),
        };
        self.append(&Line::Run {
            key: attempt_key(record),
            started,
        });
    }

    /// Notes an attempt's final record; it stays until [`Outbox::logged`].
    /// None when it could not be written (the disk failed).
    pub fn finished(&self, record: &LogRecord) -> Option<Seq> {
        self.append(&Line::Log {
            key: attempt_key(record),
            record: record.clone(),
        })
    }

    /// The record is stored in the run log.
    pub fn logged(&self, record: &LogRecord) {
        self.append(&Line::Logged {
            key: attempt_key(record),
        });
    }

    /// Notes a warning; it stays until [`Outbox::warned`]. None when it
    /// could not be written (the disk failed).
    pub fn warning(&self, warning: &Warning) -> Option<Seq> {
        self.append(&Line::Warn {
            key: warning.run_id.clone(),
            warning: warning.clone(),
        })
    }

    /// The warning is stored in etcd.
    pub fn warned(&self, warning: &Warning) {
        self.append(&Line::Warned {
            key: warning.run_id.clone(),
        });
    }

    /// The newest entry appended so far.
    pub fn last_seq(&self) -> Seq {
        self.lock().last
    }

    /// Up to `limit` records still open, appended after `after` and up to
    /// `upto`, oldest first, read back from the file.
    pub fn open_records(&self, after: Seq, upto: Seq, limit: usize) -> Vec<(Seq, LogRecord)> {
        self.read_open(Kind::Log, after, upto, limit, |line| match line {
            Line::Log { record, .. } => Some(record),
            _ => None,
        })
    }

    /// Up to `limit` warnings still open, appended after `after` and up to
    /// `upto`, oldest first, read back from the file.
    pub fn open_warnings(&self, after: Seq, upto: Seq, limit: usize) -> Vec<(Seq, Warning)> {
        self.read_open(Kind::Warn, after, upto, limit, |line| match line {
            Line::Warn { warning, .. } => Some(warning),
            _ => None,
        })
    }

    /// Flushes the file to disk: entries are about to exist nowhere else.
    pub fn sync(&self) {
        if let Err(e) = self.lock().file.sync_data() {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot sync the outbox");
        }
    }

    /// Marks the outbox as seen alive now (its file's modification time).
    pub fn heartbeat(&self) {
        if let Err(e) = self.lock().file.set_modified(std::time::SystemTime::now()) {
            tracing::debug!(error = %e, "cannot mark the outbox alive");
        }
    }

    /// Removes the outbox when nothing is left open in it (clean
    /// shutdown); otherwise keeps it, synced, for the next start.
    pub fn close(self) {
        let segment = self
            .segment
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let left = segment.entries.len();
        if left == 0 {
            drop(segment);
            let _ = std::fs::remove_file(self.dir.join(FILE));
            let _ = std::fs::remove_file(self.dir.join("lock"));
            let _ = std::fs::remove_dir(&self.dir);
            // The shared root goes too once no worker uses it.
            if let Some(root) = self.dir.parent() {
                let _ = std::fs::remove_dir(root);
            }
        } else {
            if let Err(e) = segment.file.sync_data() {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot sync the outbox");
            }
            tracing::warn!(dir = %self.dir.display(), entries = left, "outbox kept for the next start");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Segment> {
        // Nothing panics half-way through an append: a poisoned lock still
        // guards a sound segment.
        self.segment.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `line`; its place, or None when it could not be written.
    fn append(&self, line: &Line) -> Option<Seq> {
        let mut bytes = match serde_json::to_vec(line) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an outbox entry");
                return None;
            }
        };
        bytes.push(b'\n');
        // Held for one append (and, rarely, a compaction): runs ending at
        // the same time queue here for microseconds.
        let mut segment = self.lock();
        // One write: a process killed mid-append leaves no half line
        // behind (a torn one, from a full disk, is skipped on recovery).
        if let Err(e) = segment.file.write_all(&bytes) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot append to the outbox");
            // A partly written line (a full disk) is cut, so the next
            // append starts a line of its own instead of ending this one.
            let written = segment.written;
            let _ = segment.file.set_len(written);
            return None;
        }
        let (offset, len) = (segment.written, bytes.len() as u64);
        segment.written += len;
        segment.last = Seq(segment.last.0 + 1);
        let seq = segment.last;
        segment.track(line, seq, offset, len);
        if segment.written > COMPACT_AT
            && segment.open_bytes < segment.written / 2
            && let Err(e) = segment.compact(&self.dir)
        {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot compact the outbox");
        }
        Some(seq)
    }

    fn read_open<T>(
        &self,
        kind: Kind,
        after: Seq,
        upto: Seq,
        limit: usize,
        pick: impl Fn(Line) -> Option<T>,
    ) -> Vec<(Seq, T)> {
        if upto <= after {
            return Vec::new();
        }
        // Held while reading: a compaction would move the lines.
        let segment = self.lock();
        let mut out = Vec::new();
        let range = (Bound::Excluded(after), Bound::Included(upto));
        for (seq, entry) in segment.entries.range(range) {
            if out.len() >= limit {
                break;
            }
            if entry.kind != kind {
                continue;
            }
            let parsed = segment
                .read(entry)
                .and_then(|bytes| serde_json::from_slice::<Line>(&bytes).map_err(Into::into));
            match parsed.map(&pick) {
                Ok(Some(item)) => out.push((*seq, item)),
                Ok(None) => {
                    tracing::error!(dir = %self.dir.display(), "an outbox entry is not what its index says")
                }
                // Left open: the next start reads it from the file again.
                Err(e) => {
                    tracing::error!(dir = %self.dir.display(), error = %e, "cannot read an entry back from the outbox")
                }
            }
        }
        out
    }

    /// How many bytes the index of open entries holds (keys and places),
    /// to show that it does not grow with their size.
    #[cfg(test)]
    fn index_bytes(&self) -> usize {
        let segment = self.lock();
        let per_entry = std::mem::size_of::<(Kind, String, Seq)>() + std::mem::size_of::<Entry>();
        segment
            .keys
            .keys()
            .map(|(_, key)| key.len() + per_entry)
            .sum()
    }
}

impl Segment {
    /// Notes what `line`, appended as `seq` at `offset`, opens or closes.
    fn track(&mut self, line: &Line, seq: Seq, offset: u64, len: u64) {
        let opened = |kind| Entry { kind, offset, len };
        match line {
            Line::Run { key, .. } => self.opened(key, seq, opened(Kind::Run)),
            Line::Log { key, .. } => {
                self.closed(Kind::Run, key);
                self.opened(key, seq, opened(Kind::Log));
            }
            Line::Logged { key } => self.closed(Kind::Log, key),
            Line::Warn { key, .. } => self.opened(key, seq, opened(Kind::Warn)),
            Line::Warned { key } => self.closed(Kind::Warn, key),
            Line::Take { key, .. } => self.opened(key, seq, opened(Kind::Take)),
            Line::Took { key } => self.closed(Kind::Take, key),
            Line::Finish { key, .. } => self.opened(key, seq, opened(Kind::Finish)),
            Line::Finished { key } => self.closed(Kind::Finish, key),
        }
    }

    fn opened(&mut self, key: &str, seq: Seq, entry: Entry) {
        if let Some(old) = self.keys.insert((entry.kind, key.to_string()), seq)
            && let Some(old) = self.entries.remove(&old)
        {
            self.open_bytes -= old.len;
        }
        self.entries.insert(seq, entry);
        self.open_bytes += entry.len;
    }

    fn closed(&mut self, kind: Kind, key: &str) {
        if let Some(seq) = self.keys.remove(&(kind, key.to_string()))
            && let Some(old) = self.entries.remove(&seq)
        {
            self.open_bytes -= old.len;
        }
    }

    /// The line at `entry`.
    fn read(&self, entry: &Entry) -> std::io::Result<Vec<u8>> {
        let mut bytes = vec![0; entry.len as usize];
        self.file.read_exact_at(&mut bytes, entry.offset)?;
        Ok(bytes)
    }

    /// Rewrites the file with only the open lines, in their order. A crash
    /// before the rename leaves the old file whole (and a `.tmp`, removed
    /// at recovery); an error leaves everything as it was.
    fn compact(&mut self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{FILE}.tmp"));
        // Left by a compaction that failed: `create_new` needs it gone.
        let _ = std::fs::remove_file(&tmp);
        let file = File::options()
            .create_new(true)
            .append(true)
            .read(true)
            .open(&tmp)?;
        let mut out = std::io::BufWriter::new(&file);
        let mut offsets = Vec::with_capacity(self.entries.len());
        let mut written = 0;
        for entry in self.entries.values() {
            out.write_all(&self.read(entry)?)?;
            offsets.push(written);
            written += entry.len;
        }
        out.flush()?;
        drop(out);
        std::fs::rename(&tmp, dir.join(FILE))?;
        // The handle follows the rename and appends at its end: no reopen
        // that could fail and leave appends going to the unlinked old file.
        self.file = file;
        self.written = written;
        for (entry, offset) in self.entries.values_mut().zip(offsets) {
            entry.offset = offset;
        }
        Ok(())
    }
}

/// Takes the exclusive lock of outbox directory `dir`; None when a live
/// worker holds it.
fn lock_dir(dir: &Path) -> Result<Option<Flock<File>>, Error> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::Io(std::io::Error::from(e))),
    }
}

fn attempt_key(record: &LogRecord) -> String {
    // One attempt, one record: its id in the run log names it here too.
    record.document_id()
}

/// Ids end up in file names: keep them to safe characters.
fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
