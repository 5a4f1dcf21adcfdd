//! Taking over what a worker left on disk when it stopped without
//! delivering everything: its own earlier life's outbox, dead workers'
//! outboxes in the same spill directory, and the files of earlier versions
//! (per-entry journal files, spill files).
//!
//! At start a worker takes every outbox whose lock it can take. Finished
//! records and warnings are appended to its own outbox anew (both are
//! idempotent downstream: record `_id`, warning key), from where the log
//! sink and the warn sender send them. A lock request left without an
//! outcome is handed back to the runner to resolve. A run that was still
//! going is logged as `interrupted` with a warning, so it is never silently
//! lost: when its process group is still alive it is killed and `endTime`
//! is that moment; otherwise `endTime` is the last time the dead worker
//! was seen alive — the file's modification time, which a live worker
//! touches every [`HEARTBEAT`](super::HEARTBEAT). A line torn by a crash
//! mid-append is skipped. Only then are the files taken over removed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcron_shared::{LogRecord, Warning};
use serde::de::DeserializeOwned;

use super::{FILE, Finish, Line, Outbox, Started, Take, attempt_key, lock_dir};
use crate::{Error, executor, records};

/// Outbox files taken over at start, until their entries are appended anew.
const RECOVERING: &str = "recovering-";

/// What a start recovered from outboxes left behind. Its records and
/// warnings are open in the new outbox already.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Lock requests whose outcome the dead worker never noted.
    pub takes: Vec<Take>,
    /// Ends of runs whose work in etcd (request, chain) is not done.
    pub finishes: Vec<Finish>,
    /// Records to write to the run log.
    pub records: Vec<LogRecord>,
    /// Warnings to put in etcd.
    pub warnings: Vec<Warning>,
    /// Runs that were still going when their worker died.
    pub interrupted: usize,
    /// Of those, the ones whose process group was still alive and was killed.
    pub killed_groups: usize,
}

/// What a file found in an outbox directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Found {
    /// An outbox file: one [`Line`] per line.
    Outbox,
    /// A spill file of an earlier version: one record per line.
    SpilledRecords,
    /// A spill file of an earlier version: one warning per line.
    SpilledWarnings,
    /// A journal entry file of an earlier version: a [`Started`] run.
    LegacyRun,
    /// A journal entry file of an earlier version: a record.
    LegacyRecord,
    /// A journal entry file of an earlier version: a warning.
    LegacyWarning,
    /// A file a crash left half-written (a compaction's, a spill's).
    Leftover,
}

impl Found {
    fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        let found = if name == FILE || (name.starts_with(RECOVERING) && name.ends_with(".jsonl")) {
            Self::Outbox
        } else if name.starts_with(SPILLED_RECORDS) && name.ends_with(".jsonl") {
            Self::SpilledRecords
        } else if name.starts_with(SPILLED_WARNINGS) && name.ends_with(".jsonl") {
            Self::SpilledWarnings
        } else if name.ends_with(".run.json") {
            Self::LegacyRun
        } else if name.ends_with(".log.json") {
            Self::LegacyRecord
        } else if name.ends_with(".warn.json") {
            Self::LegacyWarning
        } else if name.ends_with(".tmp") {
            Self::Leftover
        } else {
            return None;
        };
        Some(found)
    }
}

/// Name prefixes of the spill files of earlier versions
/// (`<kind>-<worker>-<stamp>-<n>.jsonl` in the spill directory).
const SPILLED_RECORDS: &str = "logs-";
const SPILLED_WARNINGS: &str = "warnings-";

/// The open entries of the files taken over, as replayed from them.
#[derive(Default)]
struct Open {
    takes: BTreeMap<String, Take>,
    finishes: BTreeMap<String, Finish>,
    runs: BTreeMap<String, Started>,
    logs: BTreeMap<String, LogRecord>,
    warns: BTreeMap<String, Warning>,
}

/// The name an earlier life's outbox file is set aside under; names sort
/// by time (UUIDv7).
pub(super) fn set_aside_name() -> String {
    format!("{RECOVERING}{}.jsonl", uuid::Uuid::now_v7().simple())
}

/// Takes over, into `outbox`, what was left in `spill_dir`: spill files
/// of earlier versions, this worker's earlier lives, and every dead
/// worker's outbox under `root`.
pub(super) async fn recover(
    outbox: &Outbox,
    spill_dir: &Path,
    root: &Path,
    kill_grace: Duration,
    now_ms: i64,
) -> Result<Recovered, Error> {
    claim_spill_files(spill_dir, &outbox.dir);
    let mut recovered = Recovered::default();
    recover_dir(outbox, &outbox.dir, kill_grace, now_ms, &mut recovered).await;
    for entry in std::fs::read_dir(root)?.flatten() {
        let other = entry.path();
        if other == outbox.dir || !other.is_dir() {
            continue;
        }
        // A live worker holds its lock: leave its outbox alone.
        let Ok(Some(lock)) = lock_dir(&other) else {
            continue;
        };
        recover_dir(outbox, &other, kill_grace, now_ms, &mut recovered).await;
        let _ = std::fs::remove_file(other.join("lock"));
        drop(lock);
        if let Err(e) = std::fs::remove_dir(&other) {
            tracing::warn!(dir = %other.display(), error = %e, "cannot remove a recovered outbox");
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
    Ok(recovered)
}

/// Moves the spill files of earlier versions from `spill_dir` into `dir`
/// (this worker's outbox directory), where they are recovered like its
/// own. A rename is atomic: of two workers starting on one spill directory
/// only one sends a file.
fn claim_spill_files(spill_dir: &Path, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(spill_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let prefix = match Found::of(&path) {
            Some(Found::SpilledRecords) => SPILLED_RECORDS,
            Some(Found::SpilledWarnings) => SPILLED_WARNINGS,
            _ => continue,
        };
        let target = dir.join(format!("{prefix}{}.jsonl", uuid::Uuid::now_v7().simple()));
        if let Err(e) = std::fs::rename(&path, &target) {
            tracing::warn!(file = %path.display(), error = %e, "cannot take over a spill file");
        }
    }
}

/// Takes over the files of `dir` (another worker's outbox, or this one's
/// with files set aside from its earlier life): their open entries are
/// appended to `outbox`, then the files are removed.
async fn recover_dir(
    outbox: &Outbox,
    dir: &Path,
    kill_grace: Duration,
    now_ms: i64,
    out: &mut Recovered,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let current = outbox.dir.join(FILE);
    let mut files: Vec<(Found, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| *p != current)
        .filter_map(|p| Found::of(&p).map(|found| (found, p)))
        .collect();
    // Outbox files oldest first: files set aside by earlier lives (their
    // names sort by time), then a dead worker's current file.
    files.sort_by_key(|(found, path)| (*found, path.ends_with(FILE), path.clone()));
    let mut open = Open::default();
    // The last time the worker that wrote them was seen alive.
    let mut last_alive_ms = i64::MIN;
    for (found, file) in &files {
        match found {
            Found::Outbox => {
                replay(file, &mut open);
                if let Some(ms) = modified_ms(file) {
                    last_alive_ms = last_alive_ms.max(ms);
                }
            }
            Found::SpilledRecords => {
                for record in read_lines::<LogRecord>(file) {
                    open.logs.insert(attempt_key(&record), record);
                }
            }
            Found::SpilledWarnings => {
                for warning in read_lines::<Warning>(file) {
                    open.warns.insert(warning.run_id.clone(), warning);
                }
            }
            Found::LegacyRecord => {
                if let Some(record) = read_file::<LogRecord>(file) {
                    open.logs.insert(attempt_key(&record), record);
                }
            }
            Found::LegacyWarning => {
                if let Some(warning) = read_file::<Warning>(file) {
                    open.warns.insert(warning.run_id.clone(), warning);
                }
            }
            // After every record: a run whose record is there had ended.
            Found::LegacyRun | Found::Leftover => {}
        }
    }
    for (found, file) in &files {
        if *found == Found::LegacyRun
            && let Some(started) = read_file::<Started>(file)
        {
            let key = attempt_key(&started.record);
            if !open.logs.contains_key(&key) {
                open.runs.insert(key, started);
            }
        }
    }
    carry_over(outbox, open, kill_grace, last_alive_ms.min(now_ms), out).await;
    // Everything open is in `outbox` now. A legacy run file goes before
    // its record's file: a crash in between must not leave a run that
    // looks interrupted.
    files.sort_by_key(|(found, _)| *found != Found::LegacyRun);
    for (_, file) in files {
        if let Err(e) = std::fs::remove_file(&file) {
            tracing::warn!(file = %file.display(), error = %e, "cannot remove a recovered outbox file");
        }
    }
}

/// Appends `open` to `outbox`: records, warnings, lock requests not
/// resolved by a run, and each run left going as `interrupted` (its
/// leftover group ended; `last_alive_ms` is when its worker was last seen).
async fn carry_over(
    outbox: &Outbox,
    mut open: Open,
    kill_grace: Duration,
    last_alive_ms: i64,
    out: &mut Recovered,
) {
    for (key, take) in std::mem::take(&mut open.takes) {
        // Resolved by the run it started (interrupted or logged below).
        let prefix = format!("{key}-");
        let resolved = open
            .runs
            .keys()
            .chain(open.logs.keys())
            .any(|k| k.starts_with(&prefix));
        match (resolved, take.request) {
            (false, request) => {
                let take = Take { request, ..take };
                outbox.take(take.clone());
                out.takes.push(take);
            }
            // The run of a claimed request started: it is logged (or
            // interrupted) below, and its request is done with. An
            // interrupted run starts no chain: its outcome is unknown.
            (true, Some(request)) => {
                open.finishes.entry(key.clone()).or_insert(Finish {
                    run_id: key,
                    job: request.request.job,
                    request: Some(request.key),
                    chain: Vec::new(),
                    depth: request.request.depth,
                });
            }
            (true, None) => {}
        }
    }
    for finish in std::mem::take(&mut open.finishes).into_values() {
        outbox.finish(finish.clone());
        out.finishes.push(finish);
    }
    for record in open.logs.into_values() {
        outbox.finished(&record);
        out.records.push(record);
    }
    for warning in open.warns.into_values() {
        outbox.warning(&warning);
        out.warnings.push(warning);
    }
    for started in open.runs.into_values() {
        out.interrupted += 1;
        let killed =
            executor::end_leftover_group(started.pgid, started.proc_start, kill_grace).await;
        if killed {
            out.killed_groups += 1;
        }
        let end_ms = if killed {
            chrono::Utc::now().timestamp_millis()
        } else {
            last_alive_ms
        };
        let record = records::interrupted(started.record, killed, end_ms);
        let warning = records::warning(&started.job, &record);
        outbox.finished(&record);
        outbox.warning(&warning);
        out.records.push(record);
        out.warnings.push(warning);
    }
}

/// Applies the lines of outbox file `file` to `open`, skipping lines it
/// cannot read.
fn replay(file: &Path, open: &mut Open) {
    let reader = match File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "cannot read an outbox file");
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
                open.takes.insert(key, *take);
            }
            Ok(Line::Took { key }) => {
                open.takes.remove(&key);
            }
            Ok(Line::Finish { key, finish }) => {
                open.finishes.insert(key, finish);
            }
            Ok(Line::Finished { key }) => {
                open.finishes.remove(&key);
            }
            Err(e) => {
                tracing::error!(file = %file.display(), line = n + 1, error = %e, "unreadable outbox line skipped");
            }
        }
    }
}

/// The items of a file with one JSON document per line (a spill file);
/// lines that do not decode (a torn write) are reported and skipped.
fn read_lines<T: DeserializeOwned>(path: &Path) -> Vec<T> {
    let reader = match File::open(path) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot read a spill file");
            return Vec::new();
        }
    };
    let mut items = Vec::new();
    for (n, line) in reader.split(b'\n').enumerate() {
        let parsed = line.map_err(|e| e.to_string()).and_then(|bytes| {
            if bytes.trim_ascii().is_empty() {
                return Ok(None);
            }
            serde_json::from_slice::<T>(&bytes)
                .map(Some)
                .map_err(|e| e.to_string())
        });
        match parsed {
            Ok(item) => items.extend(item),
            Err(e) => {
                tracing::error!(file = %path.display(), line = n + 1, error = %e, "unreadable spilled item skipped");
            }
        }
    }
    items
}

/// The document of a legacy entry file; None (reported) when unreadable.
fn read_file<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let parsed = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
    parsed
        .map_err(|e| tracing::error!(file = %path.display(), error = %e, "unreadable outbox file skipped"))
        .ok()
}

/// The file's modification time (ms since the epoch).
fn modified_ms(path: &Path) -> Option<i64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}
