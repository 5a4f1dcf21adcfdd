//! Runs one command: `<shell> -c <command>` in its own process group, with
//! stdout and stderr captured into a capped buffer, a timeout, and a kill
//! switch. On timeout or kill the whole group gets SIGTERM, then SIGKILL
//! after a grace period, so no grandchild outlives the run.
//!
//! The command starts with its [`RunSetup`] (variables, directory, user),
//! resolved just before: when that fails, nothing starts and the attempt
//! fails with the reason.
//!
//! Process groups are signalled here only: a run's own (timeout, kill,
//! stop) and, through [`end_leftover_group`], one a dead worker left
//! behind (found by the outbox's recovery).

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::kill_switch::KillSwitch;
use crate::live::LiveRun;
use crate::run_setup::{Account, RunSetup};
use crate::run_stop::{RunStop, RunStopReason};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rcron_shared::RunStatus;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// How to run commands.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// Shell binary; commands run as `<shell> -c <command>`.
    pub shell: String,
    /// Bytes of output kept (head and tail).
    pub max_output_bytes: usize,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

/// Why a run was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `/cron/killer/<name>` or `/cron/killrun/<runId>` was put.
    Killed,
    /// The worker is shutting down and the drain time is over.
    Shutdown,
    /// The worker could no longer vouch for the job's `forbid` lock.
    LockLost,
    /// A newer tick of a `concurrency: replace` job took its place.
    Replaced,
}

impl StopReason {
    /// The record's `reason` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Killed => "killed on request",
            Self::Replaced => "replaced",
            Self::Shutdown => "worker shutdown",
            Self::LockLost => "lock lost",
        }
    }
}

/// What can end a run from outside.
#[derive(Clone, Copy)]
pub struct Stops<'a> {
    /// The job's kill switch (a kill of the job kills all its runs).
    pub job_kill: &'a KillSwitch,
    /// This run's own switch (kill by run id, lock lost).
    pub run: &'a RunStop,
    /// Cancelled when the drain time at shutdown is over.
    pub shutdown: &'a CancellationToken,
}

/// What happened to one run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub status: RunStatus,
    /// Exit code when the process exited normally.
    pub exit_code: Option<i32>,
    /// Why it did not succeed; empty on success.
    pub err: String,
    /// Captured output (head and tail when truncated).
    pub output: String,
    /// Whether output was dropped.
    pub truncated: bool,
    /// When the process started (or the spawn was attempted).
    pub start: DateTime<Utc>,
    /// When it ended: the process exited and its output pipes closed
    /// (for a stopped run: when its process group was gone).
    pub end: DateTime<Utc>,
    /// Why it was stopped from outside, if it was.
    pub stopped: Option<StopReason>,
}

impl Outcome {
    /// What is known of a run that has just started.
    pub fn started(start: DateTime<Utc>) -> Self {
        Self {
            status: RunStatus::Failed,
            exit_code: None,
            err: String::new(),
            output: String::new(),
            truncated: false,
            start,
            end: start,
            stopped: None,
        }
    }

    /// An attempt that failed before its command started.
    fn not_started(start: DateTime<Utc>, end: DateTime<Utc>, err: String) -> Self {
        Self {
            err,
            end,
            ..Self::started(start)
        }
    }
}

/// Runs `command` with `setup` until it exits, `timeout` passes, or one of
/// `stops` fires. `on_spawn` gets the process group id and start time once
/// the process runs.
///
/// A stopped or timed-out run's group gets SIGTERM, then SIGKILL after the
/// grace; its output is read until the group is gone and its pipes close
/// (what a cleanup trap prints is kept), and its end is that moment.
///
/// Everything read is also appended to `live`, as it is read, for
/// readers of the run's live output.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    settings: &ExecSettings,
    clock: &dyn Clock,
    command: &str,
    setup: &RunSetup,
    timeout: Option<Duration>,
    stops: Stops<'_>,
    on_spawn: &(dyn Fn(u32, DateTime<Utc>) + Sync),
    live: Option<&LiveRun>,
) -> Outcome {
    let start = clock.now();
    // Files and the user database may be slow (a network mount, LDAP).
    let resolving = setup.clone();
    let resolved = match tokio::task::spawn_blocking(move || resolving.resolve()).await {
        Ok(Ok(resolved)) => resolved,
        Ok(Err(e)) => return Outcome::not_started(start, clock.now(), e.to_string()),
        Err(e) => {
            let err = format!("preparing the run failed: {e}");
            return Outcome::not_started(start, clock.now(), err);
        }
    };
    let mut cmd = Command::new(&settings.shell);
    cmd.arg("-c")
        .arg(command)
        .envs(resolved.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &resolved.workdir {
        cmd.current_dir(dir);
    }
    if let Some(account) = &resolved.account {
        become_user(&mut cmd, account);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let whom = resolved
                .account
                .map(|a| format!(" as user {}", a.name))
                .unwrap_or_default();
            let err = format!("cannot start {}{whom}: {e}", settings.shell);
            return Outcome::not_started(start, clock.now(), err);
        }
    };
    // The child leads its own group: its pid is the group id.
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    if let Some(id) = child.id() {
        on_spawn(id, start);
    }
    let mut capture = Capture::new(settings.max_output_bytes);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let end = {
        // Waits for the leader and reads both pipes to their end; it keeps
        // being polled after a stop, so nothing the group prints is lost.
        let run = async {
            let (status, (), ()) = tokio::join!(
                child.wait(),
                pump(stdout, &capture, live),
                pump(stderr, &capture, live)
            );
            status
        };
        tokio::pin!(run);
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let end = tokio::select! {
            status = &mut run => End::Exited(status),
            () = deadline => End::TimedOut,
            () = stops.job_kill.killed() => End::Stopped(StopReason::Killed),
            reason = stops.run.stopped() => End::Stopped(match reason {
                RunStopReason::Killed => StopReason::Killed,
                RunStopReason::LockLost => StopReason::LockLost,
                RunStopReason::Replaced => StopReason::Replaced,
            }),
            () = stops.shutdown.cancelled() => End::Stopped(StopReason::Shutdown),
        };
        match end {
            End::Exited(_) => {}
            // Another worker may take the lock any moment: no long grace.
            End::Stopped(StopReason::LockLost) => {
                end_group(pgid, settings.kill_grace.min(LOCK_LOST_GRACE), run).await;
            }
            _ => end_group(pgid, settings.kill_grace, run).await,
        }
        end
    };
    let ended = clock.now();

    let (status, exit_code, err, stopped) = match end {
        End::Exited(Ok(exit)) => {
            let (status, code, err) = exit_outcome(exit);
            (status, code, err, None)
        }
        End::Exited(Err(e)) => (
            RunStatus::Failed,
            None,
            format!("waiting for the process failed: {e}"),
            None,
        ),
        End::TimedOut => {
            let secs = timeout.map(|t| t.as_secs()).unwrap_or_default();
            (
                RunStatus::Timeout,
                None,
                format!("timed out after {secs} s; process group killed"),
                None,
            )
        }
        End::Stopped(reason) => {
            let why = match reason {
                StopReason::Killed => "killed on request",
                StopReason::Replaced => "killed: a newer tick replaced it (concurrency: replace)",
                StopReason::Shutdown => "killed: worker shut down before the run finished",
                StopReason::LockLost => {
                    "killed: the worker lost contact with etcd and could no longer hold the job's lock (concurrency: forbid)"
                }
            };
            (RunStatus::Killed, None, why.to_string(), Some(reason))
        }
    };
    // Still held only if a process that left the group kept a pipe open.
    drop(child);
    let (output, truncated) = capture.finish();
    Outcome {
        status,
        exit_code,
        err,
        output,
        truncated,
        start,
        end: ended,
        stopped,
    }
}

/// Makes the child `account` before it runs the command: its groups (as
/// `initgroups` would set them), its primary group, then its uid, in that
/// order (once the uid is dropped, the groups can no longer be changed).
// `Command::uid`/`gid` alone would leave the child without its user's
// supplementary groups (std clears them), and std runs `pre_exec` hooks
// after its own uid change, so the hook does all three.
#[allow(unsafe_code)]
fn become_user(cmd: &mut Command, account: &Account) {
    let (uid, gid, groups) = (account.uid, account.gid, account.groups.clone());
    // SAFETY: the hook runs in the forked child before exec, where only
    // async-signal-safe calls are sound. It makes three system calls on
    // data prepared before the fork (moved into the closure), and neither
    // allocates nor takes a lock; an error is returned as a raw errno.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            Ok(())
        });
    }
}

enum End {
    Exited(std::io::Result<std::process::ExitStatus>),
    TimedOut,
    Stopped(StopReason),
}

/// How long output is still read after the group got SIGKILL: only a
/// process that escaped the group (its own session) can hold a pipe open
/// that long.
const AFTER_KILL: Duration = Duration::from_secs(1);

/// The grace between SIGTERM and SIGKILL for a run whose lock is lost
/// (`register` stops vouching for the lease this long and more before etcd
/// could expire it).
const LOCK_LOST_GRACE: Duration = Duration::from_millis(500);

/// How often the group is checked while it ends.
const GROUP_POLL: Duration = Duration::from_millis(10);

/// SIGTERM to the whole group, then SIGKILL after `grace` if anything is
/// left, while `run` (the leader's wait and the output pumps) keeps going.
/// Returns once the leader was reaped, the pipes closed and the group is
/// empty (or, past SIGKILL, after [`AFTER_KILL`]). Signal errors are
/// expected (the group may be gone already) and ignored.
async fn end_group<F: std::future::Future>(
    pgid: Option<Pid>,
    grace: Duration,
    mut run: std::pin::Pin<&mut F>,
) {
    let Some(pgid) = pgid else { return };
    let _ = killpg(pgid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    let mut ran_out = false;
    loop {
        if !ran_out {
            tokio::select! {
                _ = run.as_mut() => ran_out = true,
                () = tokio::time::sleep(GROUP_POLL) => {}
            }
        } else {
            tokio::time::sleep(GROUP_POLL).await;
        }
        // Once the leader is reaped, signal 0 fails when no member is left.
        if ran_out && killpg(pgid, None).is_err() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    if !ran_out {
        let _ = tokio::time::timeout(AFTER_KILL, run).await;
    }
}

/// Ends what is left of process group `pgid`, started by a worker that
/// has since died (its leader started at `leader_start`, clock ticks since
/// boot, when known): SIGTERM, then SIGKILL after `grace`. True when
/// something of it was still running.
pub async fn end_leftover_group(pgid: u32, leader_start: Option<u64>, grace: Duration) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    if raw <= 1 {
        return false;
    }
    // A live process with the leader's pid but another start time is a
    // recycled pid: not ours. (While any member of the old group lives, the
    // kernel does not hand its id to a new process.)
    if let (Some(then), Some(now)) = (leader_start, process_start_ticks(pgid))
        && then != now
    {
        return false;
    }
    let pgid = Pid::from_raw(raw);
    if killpg(pgid, None).is_err() {
        return false;
    }
    // Not our child: there is no leader to reap nor output to read, only
    // the group to wait out.
    end_group(Some(pgid), grace, std::pin::pin!(std::future::ready(()))).await;
    true
}

/// When process `pid` started (clock ticks since boot; field 22 of
/// `/proc/<pid>/stat`), to tell a group's leader from a recycled pid.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn exit_outcome(exit: std::process::ExitStatus) -> (RunStatus, Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt;
    match (exit.code(), exit.signal()) {
        (Some(0), _) => (RunStatus::Success, Some(0), String::new()),
        (Some(code), _) => (RunStatus::Failed, Some(code), format!("exit code {code}")),
        (None, Some(sig)) => (
            RunStatus::Failed,
            None,
            format!("terminated by signal {sig}"),
        ),
        (None, None) => (
            RunStatus::Failed,
            None,
            "ended without an exit code".to_string(),
        ),
    }
}

async fn pump<R: AsyncRead + Unpin>(reader: Option<R>, capture: &Capture, live: Option<&LiveRun>) {
    let Some(mut reader) = reader else { return };
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                capture.push(&buf[..n]);
                if let Some(live) = live {
                    live.push(&buf[..n]);
                }
            }
        }
    }
}

/// Keeps the first and last `max/2` bytes of everything pushed.
struct Capture {
    inner: std::sync::Mutex<CaptureInner>,
}

struct CaptureInner {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    dropped: usize,
}

impl Capture {
    fn new(max: usize) -> Self {
        let head_cap = max / 2;
        Self {
            inner: std::sync::Mutex::new(CaptureInner {
                head: Vec::new(),
                tail: VecDeque::new(),
                head_cap,
                tail_cap: max - head_cap,
                dropped: 0,
            }),
        }
    }

    fn push(&self, mut bytes: &[u8]) {
        // Held only for a memcpy, never across an await.
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let room = c.head_cap.saturating_sub(c.head.len());
        let take = room.min(bytes.len());
        c.head.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        for &b in bytes {
            if c.tail.len() == c.tail_cap {
                if c.tail_cap == 0 {
                    c.dropped += 1;
                    continue;
                }
                c.tail.pop_front();
                c.dropped += 1;
            }
            c.tail.push_back(b);
        }
    }

    fn finish(&mut self) -> (String, bool) {
        let c = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        let mut out = String::from_utf8_lossy(&c.head).into_owned();
        if c.dropped > 0 {
            out.push_str(&format!("\n…[{} bytes truncated]…\n", c.dropped));
        }
        let tail: Vec<u8> = c.tail.iter().copied().collect();
        out.push_str(&String::from_utf8_lossy(&tail));
        (out, c.dropped > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn settings(max: usize) -> ExecSettings {
        ExecSettings {
            shell: "/bin/sh".into(),
            max_output_bytes: max,
            kill_grace: Duration::from_millis(500),
        }
    }

    async fn run(cmd: &str, timeout: Option<Duration>) -> Outcome {
        execute(
            &settings(1024),
            &SystemClock::default(),
            cmd,
            &RunSetup::default(),
            timeout,
            Stops {
                job_kill: &KillSwitch::new(),
                run: &RunStop::new(),
                shutdown: &CancellationToken::new(),
            },
            &|_, _| {},
            None,
        )
        .await
    }

    #[tokio::test]
    async fn success_captures_stdout_and_stderr() {
        let o = run("echo out; echo err >&2", None).await;
        assert_eq!(o.status, RunStatus::Success);
        assert_eq!(o.exit_code, Some(0));
        assert!(
            o.output.contains("out\n") && o.output.contains("err\n"),
            "{:?}",
            o.output
        );
        assert!(o.err.is_empty());
        assert!(o.end >= o.start);
    }

    #[tokio::test]
    async fn the_setup_gives_the_directory_and_variables_and_a_bad_one_starts_nothing() {
        let dir = std::env::temp_dir().join(format!("rcron-exec-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("dir");
        let setup = RunSetup {
            env: vec![
                ("A".into(), rcron_shared::EnvValue::Value("1".into())),
                ("A".into(), rcron_shared::EnvValue::Value("2".into())),
            ],
            workdir: Some(dir.clone()),
            user: None,
        };
        let stops = Stops {
            job_kill: &KillSwitch::new(),
            run: &RunStop::new(),
            shutdown: &CancellationToken::new(),
        };
        let clock = SystemClock::default();
        let o = execute(
            &settings(1024),
            &clock,
            "pwd; echo A=$A",
            &setup,
            None,
            stops,
            &|_, _| {},
            None,
        )
        .await;
        assert_eq!(o.status, RunStatus::Success, "{}", o.err);
        assert_eq!(o.output, format!("{}\nA=2\n", dir.display()));

        let marker = dir.join("started");
        let missing = RunSetup {
            workdir: Some(dir.join("gone")),
            ..setup
        };
        let spawned = std::sync::atomic::AtomicBool::new(false);
        let o = execute(
            &settings(1024),
            &clock,
            &format!("touch {}", marker.display()),
            &missing,
            None,
            stops,
            &|_, _| spawned.store(true, std::sync::atomic::Ordering::Relaxed),
            None,
        )
        .await;
        assert_eq!(o.status, RunStatus::Failed);
        assert_eq!(o.exit_code, None);
        assert_eq!(
            o.err,
            format!(
                "workdir {}: No such file or directory (os error 2)",
                dir.join("gone").display()
            )
        );
        assert!(!spawned.load(std::sync::atomic::Ordering::Relaxed) && !marker.exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn live_readers_get_the_output_while_the_command_runs() {
        let runs = crate::live::LiveRuns::new(1024);
        let live = runs.start("r1", "j");
        let reader = live.clone();
        let watching = tokio::spawn(async move {
            let mut changes = reader.subscribe();
            let mut at = 0;
            let mut seen = Vec::new();
            while !String::from_utf8_lossy(&seen).contains("first") {
                changes.changed().await.expect("the run is alive");
                while let crate::live::Piece::Bytes(b) = reader.read(&mut at) {
                    seen.extend(b);
                }
            }
            (
                std::time::Instant::now(),
                String::from_utf8_lossy(&seen).into_owned(),
            )
        });
        let o = execute(
            &settings(1024),
            &SystemClock::default(),
            "echo first; sleep 1; echo oops >&2; sleep 0.2; echo second",
            &RunSetup::default(),
            None,
            Stops {
                job_kill: &KillSwitch::new(),
                run: &RunStop::new(),
                shutdown: &CancellationToken::new(),
            },
            &|_, _| {},
            Some(&live),
        )
        .await;
        let ended = std::time::Instant::now();
        let (seen_at, seen) = watching.await.expect("reader");
        assert!(seen.starts_with("first\n"), "{seen:?}");
        assert!(
            ended.duration_since(seen_at) > Duration::from_millis(500),
            "the first line was read before the command ended"
        );
        assert_eq!(o.output, "first\noops\nsecond\n");
        let mut at = 0;
        let mut all = Vec::new();
        while let crate::live::Piece::Bytes(b) = live.read(&mut at) {
            all.extend(b);
        }
        assert_eq!(
            String::from_utf8_lossy(&all),
            o.output,
            "the same bytes, in the same order"
        );
    }

    #[tokio::test]
    async fn non_zero_exit_is_a_failure_with_the_code() {
        let o = run("echo nope; exit 3", None).await;
        assert_eq!(o.status, RunStatus::Failed);
        assert_eq!(o.exit_code, Some(3));
        assert_eq!(o.err, "exit code 3");
    }

    #[tokio::test]
    async fn missing_shell_is_a_failure_not_a_panic() {
        let mut s = settings(100);
        s.shell = "/nonexistent/shell".into();
        let o = execute(
            &s,
            &SystemClock::default(),
            "true",
            &RunSetup::default(),
            None,
            Stops {
                job_kill: &KillSwitch::new(),
                run: &RunStop::new(),
                shutdown: &CancellationToken::new(),
            },
            &|_, _| {},
            None,
        )
        .await;
        assert_eq!(o.status, RunStatus::Failed);
        assert!(o.err.contains("cannot start"), "{}", o.err);
    }

    #[tokio::test]
    async fn output_keeps_head_and_tail_and_marks_truncation() {
        let o = execute(
            &settings(20),
            &SystemClock::default(),
            "printf 'HEAD-----'; head -c 5000 /dev/zero | tr '\\0' x; printf -- '-----TAIL'",
            &RunSetup::default(),
            None,
            Stops {
                job_kill: &KillSwitch::new(),
                run: &RunStop::new(),
                shutdown: &CancellationToken::new(),
            },
            &|_, _| {},
            None,
        )
        .await;
        assert!(o.truncated);
        assert!(o.output.starts_with("HEAD-----"), "{:?}", o.output);
        assert!(o.output.ends_with("-----TAIL"), "{:?}", o.output);
        assert!(o.output.contains("bytes truncated"), "{:?}", o.output);
    }

    /// Running (a zombie waiting for a reaper is dead: in containers PID 1
    /// may never reap the orphans it inherits).
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                !stat
                    .rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let pidfile = std::env::temp_dir().join(format!("rcron-exec-{}", uuid::Uuid::now_v7()));
        let cmd = format!("sleep 300 & echo $! > {}; sleep 300", pidfile.display());
        let started = std::time::Instant::now();
        let o = run(&cmd, Some(Duration::from_millis(500))).await;
        assert_eq!(o.status, RunStatus::Timeout);
        assert!(o.err.contains("timed out"), "{}", o.err);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        // Reaped by init shortly after SIGKILL; give it a moment.
        for _ in 0..50 {
            if !alive(grandchild) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !alive(grandchild),
            "background sleep {grandchild} survived the timeout"
        );
        let _ = std::fs::remove_file(pidfile);
    }

    #[tokio::test]
    async fn term_ignoring_process_is_killed_after_the_grace() {
        let started = std::time::Instant::now();
        let o = run("trap '' TERM; sleep 300", Some(Duration::from_millis(200))).await;
        assert_eq!(o.status, RunStatus::Timeout);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn kill_switch_stops_the_run_as_killed() {
        let kill = KillSwitch::new();
        let k = kill.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            k.kill();
        });
        let o = execute(
            &settings(100),
            &SystemClock::default(),
            "sleep 300",
            &RunSetup::default(),
            None,
            Stops {
                job_kill: &kill,
                run: &RunStop::new(),
                shutdown: &CancellationToken::new(),
            },
            &|_, _| {},
            None,
        )
        .await;
        assert_eq!(o.status, RunStatus::Killed);
        assert_eq!(o.err, "killed on request");
    }

    #[tokio::test]
    async fn a_stopped_run_keeps_what_its_trap_prints_and_ends_when_its_group_is_gone() {
        let stop = RunStop::new();
        let s = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.stop(RunStopReason::LockLost);
        });
        let started = std::time::Instant::now();
        // The trap takes 200 ms to clean up, then prints and exits.
        let o = execute(
            &settings(1024),
            &SystemClock::default(),
            "trap 'sleep 0.2; echo cleaned up; exit 1' TERM; echo working; sleep 300 & wait",
            &RunSetup::default(),
            None,
            Stops {
                job_kill: &KillSwitch::new(),
                run: &stop,
                shutdown: &CancellationToken::new(),
            },
            &|_, _| {},
            None,
        )
        .await;
        let took = started.elapsed();
        assert_eq!(o.status, RunStatus::Killed);
        assert_eq!(o.stopped, Some(StopReason::LockLost));
        assert!(
            o.output.contains("working") && o.output.contains("cleaned up"),
            "output printed after SIGTERM is kept: {:?}",
            o.output
        );
        // The background sleep dies of the SIGTERM at once; the trap's 200 ms
        // are the end: not the 500 ms grace, not a second more.
        let run_ms = (o.end - o.start).num_milliseconds();
        assert!(
            (450..=1_500).contains(&run_ms),
            "end is when the group was gone: {run_ms} ms after the start"
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test]
    async fn a_leftover_group_is_ended_only_while_it_is_the_same_group() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let started = process_start_ticks(child.id());
        assert!(started.is_some(), "its start time is readable");
        // Another start time: a recycled pid, left alone.
        let other = started.map(|t| t + 1);
        assert!(!end_leftover_group(child.id(), other, Duration::from_millis(100)).await);
        assert!(alive(child.id() as i32));
        assert!(end_leftover_group(child.id(), started, Duration::from_millis(100)).await);
        assert!(!child.wait().expect("wait").success(), "killed");
        // Gone (and reaped) by now: nothing to end.
        assert!(!end_leftover_group(child.id(), None, Duration::from_millis(100)).await);
        assert!(!end_leftover_group(1, None, Duration::from_millis(100)).await);
    }
}
