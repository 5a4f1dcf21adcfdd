//! The crash journal: what a run has not yet handed to MongoDB or etcd,
//! kept on local disk so a worker that dies (SIGKILL, OOM, panic) loses
//! nothing a restart cannot recover.
//!
//! Each worker process owns `journal/<worker>/` under the spill directory
//! and holds an exclusive `flock` on its `lock` file while it lives; the
//! kernel drops the lock when the process dies, however it dies. What it
//! keeps is appended, one JSON line per change, to `journal.jsonl`:
//!
//! - `run`: an attempt's command started (with its process group id and the
//!   leader's start time, to recognise it later);
//! - `log`: the attempt's final record (which ends its `run`), until
//!   `logged` says MongoDB stored it (or it went to a synced spill file);
//! - `warn`: a warning, until `warned` says etcd stored it (or it spilled).
//!
//! One append (one `write`) per change, instead of a file per entry: at
//! hundreds of runs a second, creating, renaming and deleting two files per
//! run cost the worker more CPU than everything else it does per run
//! (measured: 1.1 ms of 1.7 ms on ext4). The file is rewritten with only the
//! entries still open once it passes [`COMPACT_AT`] bytes.
//!
//! At start a worker recovers every journal whose lock it can take (its
//! own from an earlier life, and those of dead workers sharing the spill
//! directory): finished records and warnings are sent again (both are
//! idempotent: record `_id`, warning key) and journaled anew, and a run
//! that was still going is logged as `interrupted` with a warning, so it
//! is never silently lost. Its outcome is unknown (its output went to the
//! dead worker), so the record says only what is known: when its process
//! group is still alive it is killed and `endTime` is that moment;
//! otherwise `endTime` is the last time the dead worker was seen alive —
//! the journal file's modification time, which a live worker touches every
//! [`HEARTBEAT`]. A line torn by a crash mid-append is skipped.
//!
//! Appends are not fsynced: the journal survives a process crash, not a
//! power cut (which also ends the commands it would recover).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rcron_shared::{JobName, LogRecord, RunStatus, Warning};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The journal file of a worker's current life.
const FILE: &str = "journal.jsonl";
/// Journals taken over at start, until their entries are journaled anew.
const RECOVERING: &str = "recovering-";
/// The entry files of the journal before it was one appended file (a
/// worker upgraded after a crash still recovers them).
const LEGACY: [&str; 3] = [".run.json", ".log.json", ".warn.json"];
/// Size past which the journal is rewritten with only its open entries.
pub const COMPACT_AT: u64 = 4 << 20;
/// How often a live worker marks its journal as seen alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Bytes of output carried in a warning.
pub(crate) const WARNING_OUTPUT_TAIL: usize = 2048;

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
}

/// What a start recovered from journals left behind.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Lock requests whose outcome the dead worker never journaled.
    pub takes: Vec<Take>,
    /// Records to write to MongoDB.
    pub records: Vec<LogRecord>,
    /// Warnings to put in etcd.
    pub warnings: Vec<Warning>,
    /// Runs that were still going when their worker died.
    pub interrupted: usize,
    /// Of those, the ones whose process group was still alive and was killed.
    pub killed_groups: usize,
}

/// One change to the journal: a line of `journal.jsonl`.
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
    Take { key: String, take: Take },
    /// Its outcome is known (the run started, or the tick was not taken).
    Took { key: String },
}

/// The open entries of a journal file, as replayed from its lines.
#[derive(Default)]
struct Open {
    takes: BTreeMap<String, Take>,
    runs: BTreeMap<String, Started>,
    logs: BTreeMap<String, LogRecord>,
    warns: BTreeMap<String, Warning>,
}

/// The file being appended to and what in it is still open.
struct Segment {
    file: File,
    written: u64,
    /// Open entries by kind and key, as the bytes of the line that opened
    /// them: what a compaction writes back.
    open: HashMap<(u8, String), Vec<u8>>,
    open_bytes: u64,
}

/// This worker's journal.
pub struct Journal {
    dir: PathBuf,
    segment: Mutex<Segment>,
    /// Held for the life of the process; released by the kernel at death.
    _lock: Flock<File>,
}

impl Journal {
    /// Opens (and locks) this worker's journal under `spill_dir` and
    /// recovers every journal left by a dead worker, including an earlier
    /// life of this one. A leftover process group gets SIGTERM, then
    /// SIGKILL after `kill_grace`.
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
                "journal {} is locked by another running worker with the same id",
                dir.display()
            ))
        })?;
        // An earlier life's file is set aside and read like a dead worker's:
        // this life starts a file of its own.
        let path = dir.join(FILE);
        if path.exists() {
            std::fs::rename(
                &path,
                dir.join(format!(
                    "{RECOVERING}{}.jsonl",
                    uuid::Uuid::now_v7().simple()
                )),
            )?;
        }
        let file = File::options().create(true).append(true).open(&path)?;
        let journal = Self {
            dir,
            segment: Mutex::new(Segment {
                file,
                written: 0,
                open: HashMap::new(),
                open_bytes: 0,
            }),
            _lock: lock,
        };
        let mut recovered = Recovered::default();
        journal
            .recover_dir(&journal.dir, kill_grace, now_ms, &mut recovered)
            .await;
        for entry in std::fs::read_dir(&root)?.flatten() {
            let other = entry.path();
            if other == journal.dir || !other.is_dir() {
                continue;
            }
            // A live worker holds its lock: leave its journal alone.
            let Ok(Some(lock)) = lock_dir(&other) else {
                continue;
            };
            journal
                .recover_dir(&other, kill_grace, now_ms, &mut recovered)
                .await;
            let _ = std::fs::remove_file(other.join("lock"));
            drop(lock);
            if let Err(e) = std::fs::remove_dir(&other) {
                tracing::warn!(dir = %other.display(), error = %e, "cannot remove a recovered journal");
            }
        }
        if !recovered.records.is_empty() || !recovered.warnings.is_empty() {
            tracing::warn!(
                records = recovered.records.len(),
                warnings = recovered.warnings.len(),
                interrupted = recovered.interrupted,
                killed_groups = recovered.killed_groups,
                "recovered run records and warnings left by a worker that stopped without flushing"
            );
        }
        Ok((journal, recovered))
    }

    /// Notes a lock request about to be sent; open until [`Journal::took`].
    pub fn take(&self, take: Take) {
        self.append(&Line::Take {
            key: take.run_id.clone(),
            take,
        });
    }

    /// The lock request of `run_id` has a known outcome.
    pub fn took(&self, run_id: &str) {
        self.append(&Line::Took {
            key: run_id.to_string(),
        });
    }

    /// Notes that an attempt's command started as process group `pgid`.
    pub fn started(&self, job: &JobName, record: &LogRecord, pgid: u32) {
        let started = Started {
            job: job.clone(),
            record: record.clone(),
            pgid,
            proc_start: process_start_ticks(pgid),
        };
        self.append(&Line::Run {
            key: attempt_key(record),
            started,
        });
    }

    /// Notes an attempt's final record; it stays until [`Journal::logged`].
    pub fn finished(&self, record: &LogRecord) {
        self.append(&Line::Log {
            key: attempt_key(record),
            record: record.clone(),
        });
    }

    /// The record is stored in MongoDB or in a synced spill file.
    pub fn logged(&self, record: &LogRecord) {
        self.append(&Line::Logged {
            key: attempt_key(record),
        });
    }

    /// Notes a warning; it stays until [`Journal::warned`].
    pub fn warning(&self, warning: &Warning) {
        self.append(&Line::Warn {
            key: warning.run_id.clone(),
            warning: warning.clone(),
        });
    }

    /// The warning is stored in etcd or in a synced spill file.
    pub fn warned(&self, warning: &Warning) {
        self.append(&Line::Warned {
            key: warning.run_id.clone(),
        });
    }

    /// Marks the journal as seen alive now (its file's modification time).
    pub fn heartbeat(&self) {
        let segment = self.segment.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = segment.file.set_modified(std::time::SystemTime::now()) {
            tracing::debug!(error = %e, "cannot mark the run journal alive");
        }
    }

    /// Removes the journal when nothing is left open in it (clean shutdown).
    pub fn close(self) {
        let segment = self
            .segment
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let left = segment.open.len();
        drop(segment);
        if left == 0 {
            let _ = std::fs::remove_file(self.dir.join(FILE));
            let _ = std::fs::remove_file(self.dir.join("lock"));
            let _ = std::fs::remove_dir(&self.dir);
            // The shared root goes too once no worker uses it.
            if let Some(root) = self.dir.parent() {
                let _ = std::fs::remove_dir(root);
            }
        } else {
            tracing::warn!(dir = %self.dir.display(), entries = left, "journal kept for the next start");
        }
    }

    fn append(&self, line: &Line) {
        let mut bytes = match serde_json::to_vec(line) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a run journal entry");
                return;
            }
        };
        bytes.push(b'\n');
        // Held for one append (and, rarely, a compaction): runs ending at
        // the same time queue here for microseconds.
        let mut segment = self.segment.lock().unwrap_or_else(PoisonError::into_inner);
        // One write: a process killed mid-append leaves no half line
        // behind (a torn one, from a full disk, is skipped on recovery).
        if let Err(e) = segment.file.write_all(&bytes) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot append to the run journal");
            // A partly written line (a full disk) is cut, so the next
            // append starts a line of its own instead of ending this one.
            let written = segment.written;
            let _ = segment.file.set_len(written);
            return;
        }
        segment.written += bytes.len() as u64;
        segment.track(line, bytes);
        if segment.written > COMPACT_AT
            && segment.open_bytes < segment.written / 2
            && let Err(e) = segment.compact(&self.dir)
        {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot compact the run journal");
        }
    }

    /// Takes over the journal files of `dir` (another worker's, or set
    /// aside from this one's earlier life): their open entries are
    /// journaled here, then the files are removed.
    async fn recover_dir(
        &self,
        dir: &Path,
        kill_grace: Duration,
        now_ms: i64,
        out: &mut Recovered,
    ) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "jsonl" || x == "tmp") || is_legacy(p).is_some()
            })
            .filter(|p| *p != self.dir.join(FILE))
            .collect();
        // Oldest first: files set aside by earlier lives (their names sort
        // by time), then a dead worker's current file.
        files.sort_by_key(|f| (f.ends_with(FILE), f.clone()));
        let mut open = Open::default();
        // The last time the worker that wrote them was seen alive.
        let mut last_alive_ms = i64::MIN;
        for file in &files {
            if file.extension().is_some_and(|x| x == "jsonl") {
                replay(file, &mut open);
                if let Some(ms) = modified_ms(file) {
                    last_alive_ms = last_alive_ms.max(ms);
                }
            }
        }
        replay_legacy(&files, &mut open);
        for (key, take) in std::mem::take(&mut open.takes) {
            // Resolved by the run it started (interrupted or logged below).
            let prefix = format!("{key}-");
            let resolved = open
                .runs
                .keys()
                .chain(open.logs.keys())
                .any(|k| k.starts_with(&prefix));
            if !resolved {
                self.append(&Line::Take {
                    key,
                    take: take.clone(),
                });
                out.takes.push(take);
            }
        }
        for (key, record) in open.logs {
            self.append(&Line::Log {
                key,
                record: record.clone(),
            });
            out.records.push(record);
        }
        for (key, warning) in open.warns {
            self.append(&Line::Warn {
                key,
                warning: warning.clone(),
            });
            out.warnings.push(warning);
        }
        for started in open.runs.into_values() {
            out.interrupted += 1;
            let killed = end_group(&started, kill_grace).await;
            if killed {
                out.killed_groups += 1;
            }
            let end_ms = if killed {
                chrono::Utc::now().timestamp_millis()
            } else {
                last_alive_ms.min(now_ms)
            };
            let (record, warning) = interrupted(started.job, started.record, killed, end_ms);
            self.finished(&record);
            self.warning(&warning);
            out.records.push(record);
            out.warnings.push(warning);
        }
        // Everything open is journaled here now.
        // A legacy run file goes before its record's file: a crash in
        // between must not leave a run that looks interrupted.
        files.sort_by_key(|f| is_legacy(f) != Some(0));
        for file in files {
            if let Err(e) = std::fs::remove_file(&file) {
                tracing::warn!(file = %file.display(), error = %e, "cannot remove a recovered journal file");
            }
        }
    }
}

impl Segment {
    const RUN: u8 = 0;
    const LOG: u8 = 1;
    const WARN: u8 = 2;
    const TAKE: u8 = 3;

    /// Keeps `line`'s bytes while what it opened is open.
    fn track(&mut self, line: &Line, bytes: Vec<u8>) {
        match line {
            Line::Run { key, .. } => self.opened(Self::RUN, key, bytes),
            Line::Log { key, .. } => {
                self.closed(Self::RUN, key);
                self.opened(Self::LOG, key, bytes);
            }
            Line::Logged { key } => self.closed(Self::LOG, key),
            Line::Warn { key, .. } => self.opened(Self::WARN, key, bytes),
            Line::Warned { key } => self.closed(Self::WARN, key),
            Line::Take { key, .. } => self.opened(Self::TAKE, key, bytes),
            Line::Took { key } => self.closed(Self::TAKE, key),
        }
    }

    fn opened(&mut self, kind: u8, key: &str, bytes: Vec<u8>) {
        self.open_bytes += bytes.len() as u64;
        if let Some(old) = self.open.insert((kind, key.to_string()), bytes) {
            self.open_bytes -= old.len() as u64;
        }
    }

    fn closed(&mut self, kind: u8, key: &str) {
        if let Some(old) = self.open.remove(&(kind, key.to_string())) {
            self.open_bytes -= old.len() as u64;
        }
    }

    /// Rewrites the file with only the open entries. A crash before the
    /// rename leaves the old file whole (and a `.tmp`, removed at recovery).
    fn compact(&mut self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{FILE}.tmp"));
        let mut file = File::create(&tmp)?;
        let mut out = std::io::BufWriter::new(&mut file);
        for bytes in self.open.values() {
            out.write_all(bytes)?;
        }
        out.flush()?;
        drop(out);
        std::fs::rename(&tmp, dir.join(FILE))?;
        // The handle follows the rename and sits at the end: no reopen that
        // could fail and leave appends going to the unlinked old file.
        self.file = file;
        self.written = self.open_bytes;
        Ok(())
    }
}

/// Which legacy entry file `path` is: its index in [`LEGACY`].
fn is_legacy(path: &Path) -> Option<usize> {
    let name = path.file_name()?.to_str()?;
    LEGACY.iter().position(|suffix| name.ends_with(suffix))
}

/// Adds the open entries of legacy entry files to `open`: records and
/// warnings, and runs without a record.
fn replay_legacy(files: &[PathBuf], open: &mut Open) {
    fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
        let parsed = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
        parsed
            .map_err(|e| tracing::error!(file = %path.display(), error = %e, "unreadable journal file skipped"))
            .ok()
    }
    let legacy: Vec<(usize, &PathBuf)> = files
        .iter()
        .filter_map(|f| is_legacy(f).map(|kind| (kind, f)))
        .collect();
    // Keyed as this journal keys them, so `logged` closes them.
    for (kind, file) in &legacy {
        match kind {
            1 => {
                if let Some(record) = read::<LogRecord>(file) {
                    open.logs.insert(attempt_key(&record), record);
                }
            }
            2 => {
                if let Some(warning) = read::<Warning>(file) {
                    open.warns.insert(warning.run_id.clone(), warning);
                }
            }
            _ => {}
        }
    }
    for (kind, file) in &legacy {
        if *kind == 0
            && let Some(started) = read::<Started>(file)
        {
            let key = attempt_key(&started.record);
            // A run whose final record is there too had ended.
            if !open.logs.contains_key(&key) {
                open.runs.insert(key, started);
            }
        }
    }
}

/// Applies the lines of `file` to `open`, skipping lines it cannot read.
fn replay(file: &Path, open: &mut Open) {
    let reader = match File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "cannot read a journal file");
            return;
        }
    };
    for (n, line) in reader.split(b'\n').enumerate() {
        let parsed = line
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<Line>(&bytes).map_err(|e| e.to_string()));
        match parsed {
            Ok(Line::Run { key, started }) => {
                open.runs.insert(key, started);
            }
            Ok(Line::Log { key, record }) => {
                open.runs.remove(&key);
                open.logs.insert(key, record);
            }
            Ok(Line::Logged { key }) => {
                open.logs.remove(&key);
            }
            Ok(Line::Warn { key, warning }) => {
                open.warns.insert(key, warning);
            }
            Ok(Line::Warned { key }) => {
                open.warns.remove(&key);
            }
            Ok(Line::Take { key, take }) => {
                open.takes.insert(key, take);
            }
            Ok(Line::Took { key }) => {
                open.takes.remove(&key);
            }
            Err(e) => {
                tracing::error!(file = %file.display(), line = n + 1, error = %e, "unreadable journal line skipped");
            }
        }
    }
}

/// The file's modification time (ms since the epoch).
fn modified_ms(path: &Path) -> Option<i64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// The record and warning of a run whose worker died while it ran;
/// `end_ms` is when its group was killed, or when its worker was last
/// seen alive.
fn interrupted(
    job: JobName,
    mut record: LogRecord,
    killed: bool,
    end_ms: i64,
) -> (LogRecord, Warning) {
    record.status = RunStatus::Interrupted;
    record.exit_code = None;
    record.end_time = end_ms.max(record.start_time);
    record.err = if killed {
        format!(
            "interrupted: worker {} stopped during the run; the command was still running and was killed when the journal was recovered (its output went to the stopped worker)",
            record.worker
        )
    } else {
        format!(
            "interrupted: worker {} stopped during the run; the command's outcome and output are unknown (it had ended when the journal was recovered); endTime is when the worker was last seen alive",
            record.worker
        )
    };
    record.reason = Some(if killed {
        "worker died; killed at recovery".to_string()
    } else {
        "worker died".to_string()
    });
    let warning = Warning {
        job_name: job,
        run_id: record.run_id.clone(),
        status: record.status,
        command: record.command.clone(),
        exit_code: None,
        err: record.err.clone(),
        output_tail: String::new(),
        plan_time: record.plan_time,
        start_time: record.start_time,
        end_time: record.end_time,
        worker: record.worker.clone(),
        attempt: record.attempt,
        kind: rcron_shared::WarningKind::Run,
    };
    (record, warning)
}

/// Ends what is left of a journaled process group. True when something
/// was still running.
async fn end_group(started: &Started, grace: Duration) -> bool {
    let Ok(raw) = i32::try_from(started.pgid) else {
        return false;
    };
    if raw <= 1 {
        return false;
    }
    // A live process with the leader's pid but another start time is a
    // recycled pid: not ours. (While any member of the old group lives, the
    // kernel does not hand its id to a new process.)
    if let (Some(then), Some(now)) = (started.proc_start, process_start_ticks(started.pgid))
        && then != now
    {
        return false;
    }
    let pgid = Pid::from_raw(raw);
    if killpg(pgid, None).is_err() {
        return false;
    }
    let _ = killpg(pgid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if killpg(pgid, None).is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    true
}

/// Field 22 of `/proc/<pid>/stat`: when the process started.
fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

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
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    fn record(run_id: &str, attempt: u32) -> LogRecord {
        LogRecord {
            job_name: "j".into(),
            command: "true".into(),
            err: String::new(),
            output: String::new(),
            plan_time: 1_000,
            schedule_time: 1_001,
            start_time: 1_002,
            end_time: 1_003,
            run_id: run_id.into(),
            worker: "w1".into(),
            exit_code: Some(0),
            status: RunStatus::Success,
            attempt,
            output_truncated: false,
            reason: None,
        }
    }

    fn temp() -> PathBuf {
        std::env::temp_dir().join(format!("rcron-journal-{}", uuid::Uuid::now_v7().simple()))
    }

    const GRACE: Duration = Duration::from_millis(200);

    /// A journaled run whose process group is long gone.
    fn gone_run(record: &LogRecord) -> Started {
        Started {
            job: JobName::new("j").expect("name"),
            record: record.clone(),
            pgid: u32::MAX - 1,
            proc_start: None,
        }
    }

    #[tokio::test]
    async fn a_live_journal_is_left_alone_and_a_dead_one_is_recovered_once() {
        let dir = temp();
        let (first, none) = Journal::open(&dir, "w1", GRACE, 5_000).await.expect("open");
        assert!(none.records.is_empty());
        let (delivered, pending) = (record("r1", 1), record("r2", 1));
        first.finished(&delivered);
        first.logged(&delivered);
        first.finished(&pending);

        let (second, recovered) = Journal::open(&dir, "w2", GRACE, 5_000).await.expect("open");
        assert!(recovered.records.is_empty(), "w1 is alive (holds its lock)");
        drop(first); // the process "dies": its lock goes
        let (third, recovered) = Journal::open(&dir, "w3", GRACE, 5_000).await.expect("open");
        assert_eq!(recovered.records, vec![pending.clone()]);
        assert!(
            !dir.join("journal/w1").exists(),
            "the dead journal is removed"
        );
        // Still in w3's journal until stored: a crash now loses nothing either.
        drop(third);
        let (fourth, again) = Journal::open(&dir, "w4", GRACE, 5_000).await.expect("open");
        assert_eq!(again.records, vec![pending.clone()]);
        fourth.logged(&pending);
        fourth.close();
        second.close();
        assert!(!dir.exists() || std::fs::read_dir(&dir).expect("dir").count() == 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_lock_request_left_without_outcome_is_handed_back_unless_its_run_started() {
        let dir = temp();
        let (journal, _) = Journal::open(&dir, "w1", GRACE, 5_000).await.expect("open");
        let job = JobName::new("j").expect("name");
        let spec =
            rcron_shared::Job::from_json(br#"{"name":"j","command":"true","cronExpr":"@daily"}"#)
                .expect("job");
        let take = |run_id: &str| Take {
            run_id: run_id.to_string(),
            job: spec.clone(),
            plan_ms: 1_000,
            fired_key: "/cron/fired/j".to_string(),
            from_revision: 7,
        };
        // Died between sending the request and starting the run.
        journal.take(take("r1"));
        // Started its run: the run's entry stands for the tick.
        journal.take(take("r2"));
        journal.started(&job, &record("r2", 1), u32::MAX - 1);
        // Knew the outcome (the tick was not taken).
        journal.take(take("r3"));
        journal.took("r3");
        drop(journal);

        let (_journal, recovered) = Journal::open(&dir, "w2", GRACE, 9_000).await.expect("open");
        assert_eq!(recovered.takes, vec![take("r1")]);
        assert_eq!(recovered.interrupted, 1, "r2 is reported as its run");
    }

    #[tokio::test]
    async fn a_run_left_going_is_reported_as_interrupted_ended_when_last_seen_or_killed() {
        let dir = temp();
        let (journal, _) = Journal::open(&dir, "w1", GRACE, 5_000).await.expect("open");
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let job = JobName::new("j").expect("name");
        journal.started(&job, &record("r1", 2), child.id());
        // A run whose process is gone already: outcome unknown.
        journal.started(&job, &record("r2", 1), u32::MAX - 1);
        journal.heartbeat();
        // The worker was last seen alive 5 s after the epoch (a fixed
        // heartbeat time the test can check), then died.
        let last_seen = std::time::UNIX_EPOCH + Duration::from_millis(5_000);
        File::options()
            .append(true)
            .open(dir.join("journal/w1").join(FILE))
            .and_then(|f| f.set_modified(last_seen))
            .expect("set the heartbeat time");
        drop(journal);

        let (_journal, recovered) = Journal::open(&dir, "w2", GRACE, 9_000).await.expect("open");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "the leftover command was killed");
        assert_eq!(recovered.interrupted, 2);
        assert_eq!(recovered.killed_groups, 1);
        let killed = recovered
            .records
            .iter()
            .find(|r| r.run_id == "r1")
            .expect("r1");
        assert_eq!(killed.status, RunStatus::Interrupted);
        assert_eq!(killed.attempt, 2);
        assert!(
            killed.end_time > 1_700_000_000_000,
            "a group killed at recovery ends when it was killed: {}",
            killed.end_time
        );
        assert!(killed.err.contains("was killed"), "{}", killed.err);
        let unknown = recovered
            .records
            .iter()
            .find(|r| r.run_id == "r2")
            .expect("r2");
        assert!(unknown.err.contains("unknown"), "{}", unknown.err);
        assert_eq!(unknown.status, RunStatus::Interrupted);
        assert_eq!(
            unknown.end_time, 5_000,
            "a group gone by recovery ends when its worker was last seen alive, not at the restart"
        );
        assert_eq!(recovered.warnings.len(), 2);
        assert!(recovered.warnings.iter().all(|w| w.status.warns()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_grown_journal_is_compacted_to_its_open_entries_and_still_recovers() {
        let dir = temp();
        let (journal, _) = Journal::open(&dir, "w1", GRACE, 5_000).await.expect("open");
        let pending = record("pending", 1);
        journal.finished(&pending);
        let mut big = record("big", 1);
        big.output = "x".repeat(64 * 1024);
        let mut peak = 0;
        for i in 0..200 {
            big.run_id = format!("big-{i}");
            journal.finished(&big);
            journal.logged(&big);
            let size = std::fs::metadata(dir.join("journal/w1").join(FILE))
                .expect("journal file")
                .len();
            peak = peak.max(size);
        }
        assert!(
            peak <= COMPACT_AT + 2 * 70 * 1024,
            "compacted as it grew: peak {peak} bytes"
        );
        drop(journal);
        let (_other, recovered) = Journal::open(&dir, "w2", GRACE, 5_000).await.expect("open");
        assert_eq!(recovered.records, vec![pending]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_torn_line_is_skipped_and_the_rest_recovered() {
        let dir = temp();
        let (journal, _) = Journal::open(&dir, "w1", GRACE, 5_000).await.expect("open");
        let (a, b) = (record("a", 1), record("b", 1));
        journal.finished(&a);
        drop(journal);
        // A crash mid-append (say, a full disk) left half a line.
        let path = dir.join("journal/w1").join(FILE);
        let mut file = File::options().append(true).open(&path).expect("journal");
        file.write_all(br#"{"log":{"key":"b-1","record":{"jobNa"#)
            .expect("torn line");
        file.write_all(b"\n").expect("newline");
        drop(file);
        // The same worker starts again, and b's record is journaled after.
        let (journal, recovered) = Journal::open(&dir, "w1", GRACE, 5_000).await.expect("open");
        assert_eq!(recovered.records, vec![a.clone()]);
        journal.finished(&b);
        drop(journal);
        let (_journal, recovered) = Journal::open(&dir, "w1", GRACE, 5_000).await.expect("open");
        assert_eq!(recovered.records, vec![a, b]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn entry_files_of_the_former_journal_are_recovered_too() {
        let dir = temp();
        let old = dir.join("journal/w1");
        std::fs::create_dir_all(&old).expect("dir");
        let (ended, pending) = (record("ended", 1), record("pending", 1));
        let put =
            |name: &str, bytes: Vec<u8>| std::fs::write(old.join(name), bytes).expect("write");
        put(
            "ended-1.run.json",
            serde_json::to_vec(&gone_run(&ended)).expect("json"),
        );
        put(
            "ended-1.log.json",
            serde_json::to_vec(&ended).expect("json"),
        );
        put(
            "pending-1.run.json",
            serde_json::to_vec(&gone_run(&pending)).expect("json"),
        );
        let (journal, recovered) = Journal::open(&dir, "w2", GRACE, 9_000).await.expect("open");
        assert_eq!(recovered.interrupted, 1, "only the run without a record");
        let ids: Vec<&str> = recovered
            .records
            .iter()
            .map(|r| r.run_id.as_str())
            .collect();
        assert_eq!(ids, ["ended", "pending"]);
        assert!(
            !old.exists(),
            "the former journal is taken over and removed"
        );
        // Taken over into the new journal: recovered again after a crash.
        drop(journal);
        let (journal, again) = Journal::open(&dir, "w3", GRACE, 9_000).await.expect("open");
        assert_eq!(again.records.len(), 2);
        assert_eq!(again.warnings.len(), 1);
        for record in &again.records {
            journal.logged(record);
        }
        for warning in &again.warnings {
            journal.warned(warning);
        }
        journal.close();
        assert!(
            !dir.join("journal").exists(),
            "every entry closed: journal removed"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_dead_workers_set_aside_file_is_replayed_before_its_current_one() {
        // w1 died while recovering its earlier life: the set-aside file
        // still says the run was going, the current one has its record.
        let dir = temp();
        let old = dir.join("journal/w1");
        std::fs::create_dir_all(&old).expect("dir");
        let r = record("r", 1);
        let line = |l: &Line| {
            let mut bytes = serde_json::to_vec(l).expect("json");
            bytes.push(b'\n');
            bytes
        };
        let run = Line::Run {
            key: attempt_key(&r),
            started: gone_run(&r),
        };
        let log = Line::Log {
            key: attempt_key(&r),
            record: r.clone(),
        };
        std::fs::write(old.join(format!("{RECOVERING}0198.jsonl")), line(&run)).expect("write");
        std::fs::write(old.join(FILE), line(&log)).expect("write");
        let (_journal, recovered) = Journal::open(&dir, "w2", GRACE, 9_000).await.expect("open");
        assert_eq!(recovered.interrupted, 0, "the run had ended");
        assert_eq!(recovered.records, vec![r]);
        assert!(recovered.warnings.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
