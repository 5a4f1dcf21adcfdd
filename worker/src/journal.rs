//! The crash journal: what a run has not yet handed to MongoDB or etcd,
//! kept on local disk so a worker that dies (SIGKILL, OOM, panic) loses
//! nothing a restart cannot recover.
//!
//! Each worker process owns `journal/<worker>/` under the spill directory
//! and holds an exclusive `flock` on its `lock` file while it lives; the
//! kernel drops the lock when the process dies, however it dies. Per run
//! attempt it keeps:
//!
//! - `<runId>-<attempt>.run.json` while the command runs (with its process
//!   group id and the leader's start time, to recognise it later);
//! - `<runId>-<attempt>.log.json`, the final record, until MongoDB stored it
//!   (or it went to a synced spill file);
//! - `<runId>.warn.json`, the warning, until etcd stored it (or it spilled).
//!
//! At start a worker recovers every journal whose lock it can take (its
//! own from an earlier life, and those of dead workers sharing the spill
//! directory): finished records and warnings are sent again (both are
//! idempotent: record `_id`, warning key), and a run that was still going
//! is ended — its leftover process group killed — and logged as `failed`
//! with a warning, so it is never silently lost.
//!
//! Files are written without fsync: the journal survives a process crash,
//! not a power cut (which also ends the commands it would recover).

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rcron_shared::{JobName, LogRecord, RunStatus, Warning};
use serde::{Deserialize, Serialize};

use crate::Error;

const RUN: &str = ".run.json";
const LOG: &str = ".log.json";
const WARN: &str = ".warn.json";
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

/// What a start recovered from journals left behind.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Records to write to MongoDB.
    pub records: Vec<LogRecord>,
    /// Warnings to put in etcd.
    pub warnings: Vec<Warning>,
    /// Runs that were still going when their worker died.
    pub interrupted: usize,
    /// Of those, the ones whose process group was still alive and was killed.
    pub killed_groups: usize,
}

/// This worker's journal.
pub struct Journal {
    dir: PathBuf,
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
        let journal = Self { dir, _lock: lock };
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

    /// Notes that an attempt's command started as process group `pgid`.
    pub fn started(&self, job: &JobName, record: &LogRecord, pgid: u32) {
        let entry = Started {
            job: job.clone(),
            record: record.clone(),
            pgid,
            proc_start: process_start_ticks(pgid),
        };
        self.write(&attempt_file(record, RUN), &entry);
    }

    /// Notes an attempt's final record; it stays until [`Journal::logged`].
    pub fn finished(&self, record: &LogRecord) {
        self.write(&attempt_file(record, LOG), record);
        remove(&self.dir.join(attempt_file(record, RUN)));
    }

    /// The record is stored in MongoDB or in a synced spill file.
    pub fn logged(&self, record: &LogRecord) {
        remove(&self.dir.join(attempt_file(record, LOG)));
    }

    /// Notes a warning; it stays until [`Journal::warned`].
    pub fn warning(&self, warning: &Warning) {
        self.write(&format!("{}{WARN}", safe_name(&warning.run_id)), warning);
    }

    /// The warning is stored in etcd or in a synced spill file.
    pub fn warned(&self, warning: &Warning) {
        remove(
            &self
                .dir
                .join(format!("{}{WARN}", safe_name(&warning.run_id))),
        );
    }

    /// Removes the journal when nothing is left in it (clean shutdown).
    pub fn close(self) {
        let left = std::fs::read_dir(&self.dir)
            .map(|d| d.flatten().filter(|e| e.file_name() != "lock").count())
            .unwrap_or(0);
        if left == 0 {
            let _ = std::fs::remove_file(self.dir.join("lock"));
            let _ = std::fs::remove_dir(&self.dir);
            // The shared root goes too once no worker uses it.
            if let Some(root) = self.dir.parent() {
                let _ = std::fs::remove_dir(root);
            }
        } else {
            tracing::warn!(dir = %self.dir.display(), files = left, "journal kept for the next start");
        }
    }

    fn write<T: Serialize>(&self, name: &str, value: &T) {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let result = serde_json::to_vec(value)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            tracing::error!(file = %path.display(), error = %e, "cannot write the run journal");
        }
    }

    /// Takes over the files of `dir` (moving them into this journal when
    /// `dir` is another worker's) and collects what they hold.
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
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let logged: HashSet<String> = names
            .iter()
            .filter_map(|n| n.strip_suffix(LOG).map(str::to_string))
            .collect();
        for name in names {
            let path = dir.join(&name);
            if name.ends_with(".tmp") {
                remove(&path);
            } else if name.ends_with(LOG) {
                if let Some(record) = read::<LogRecord>(&path) {
                    self.adopt(&path, &name);
                    out.records.push(record);
                }
            } else if name.ends_with(WARN) {
                if let Some(warning) = read::<Warning>(&path) {
                    self.adopt(&path, &name);
                    out.warnings.push(warning);
                }
            } else if let Some(stem) = name.strip_suffix(RUN) {
                let started = read::<Started>(&path);
                remove(&path);
                // Crashed between writing the final record and removing this.
                if logged.contains(stem) {
                    continue;
                }
                let Some(started) = started else { continue };
                out.interrupted += 1;
                let killed = end_group(&started, kill_grace).await;
                if killed {
                    out.killed_groups += 1;
                }
                let (record, warning) = interrupted(started.job, started.record, killed, now_ms);
                self.finished(&record);
                self.warning(&warning);
                out.records.push(record);
                out.warnings.push(warning);
            }
        }
    }

    fn adopt(&self, path: &Path, name: &str) {
        let target = self.dir.join(name);
        if path != target
            && let Err(e) = std::fs::rename(path, &target)
        {
            tracing::warn!(file = %path.display(), error = %e, "cannot move a recovered journal file");
        }
    }
}

/// The record and warning of a run whose worker died while it ran.
fn interrupted(
    job: JobName,
    mut record: LogRecord,
    killed: bool,
    now_ms: i64,
) -> (LogRecord, Warning) {
    record.status = RunStatus::Failed;
    record.exit_code = None;
    record.end_time = now_ms.max(record.start_time);
    record.err = if killed {
        format!(
            "interrupted: worker {} stopped during the run; the command was still running and was killed when the journal was recovered",
            record.worker
        )
    } else {
        format!(
            "interrupted: worker {} stopped during the run; the command's outcome is unknown (it had ended when the journal was recovered)",
            record.worker
        )
    };
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

fn attempt_file(record: &LogRecord, suffix: &str) -> String {
    format!("{}-{}{suffix}", safe_name(&record.run_id), record.attempt)
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

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let parsed = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
    match parsed {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "unreadable journal file; left in place");
            None
        }
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), error = %e, "cannot remove a journal file");
    }
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
        }
    }

    fn temp() -> PathBuf {
        std::env::temp_dir().join(format!("rcron-journal-{}", uuid::Uuid::now_v7().simple()))
    }

    const GRACE: Duration = Duration::from_millis(200);

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
    async fn a_run_left_going_is_killed_and_reported_as_failed() {
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
        assert_eq!(killed.status, RunStatus::Failed);
        assert_eq!((killed.end_time, killed.attempt), (9_000, 2));
        assert!(killed.err.contains("was killed"), "{}", killed.err);
        let unknown = recovered
            .records
            .iter()
            .find(|r| r.run_id == "r2")
            .expect("r2");
        assert!(unknown.err.contains("unknown"), "{}", unknown.err);
        assert_eq!(recovered.warnings.len(), 2);
        assert!(recovered.warnings.iter().all(|w| w.status.warns()));
        let _ = std::fs::remove_dir_all(dir);
    }
}
