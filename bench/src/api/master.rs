//! The benchmark's master: the `rcron-master` binary started as a child
//! process on the benchmark's etcd prefix and database, its log in a file
//! of its own, its memory read from `/proc/<pid>/status`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::ApiOptions;
use crate::cluster::Services;
use crate::procfs::status_kib;

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The benchmark's master, a child process killed when dropped.
pub(super) struct Master {
    pub(super) child: tokio::process::Child,
    pub(super) pid: u32,
    pub(super) log: PathBuf,
    pub(super) started: Instant,
}

impl Master {
    pub(super) async fn start(
        opts: &ApiOptions,
        s: &Services,
        prefix: &str,
        db: &str,
        port: u16,
        n: usize,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            opts.master_bin.is_file(),
            "no master binary at {} (build it: cargo build --release -p rcron-master, or pass --api-master)",
            opts.master_bin.display()
        );
        std::fs::create_dir_all(&opts.log_dir)?;
        let log = opts.log_dir.join(format!("bench-master-{n}.log"));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let started = Instant::now();
        let child = tokio::process::Command::new(&opts.master_bin)
            .env("RCRON_LISTEN", format!("127.0.0.1:{port}"))
            .env("RCRON_ETCD_ENDPOINTS", &s.etcd)
            .env("RCRON_ETCD_PREFIX", prefix)
            .env("RCRON_MONGO_URI", &s.mongo)
            .env("RCRON_MONGO_DB", db)
            .env("RCRON_MASTER_ID", "bench-master")
            .env("RCRON_LOG_FORMAT", "json")
            .env_remove("RCRON_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("the master exited at once; see {}", log.display()))?;
        Ok(Self {
            child,
            pid,
            log,
            started,
        })
    }

    /// Waits (at most `within`) until the master has logged its job cache
    /// listed and the API answers: the time since spawn, None when it did
    /// not list in time.
    pub(super) async fn listed(
        &mut self,
        http: &reqwest::Client,
        base: &str,
        within: Duration,
    ) -> anyhow::Result<Option<Duration>> {
        let mut listed = None;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "the benchmark's master exited ({status}); see {}",
                    self.log.display()
                );
            }
            if listed.is_none()
                && std::fs::read_to_string(&self.log)
                    .is_ok_and(|l| l.contains("\"job cache listed\""))
            {
                listed = Some(self.started.elapsed());
            }
            if let Some(at) = listed
                && let Ok(r) = http.get(format!("{base}/healthz")).send().await
                && r.status().is_success()
            {
                return Ok(Some(at));
            }
            if self.started.elapsed() > within {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last warning or error line of its log (the JSON as written).
    pub(super) fn last_warning(&self) -> Option<String> {
        let log = std::fs::read_to_string(&self.log).ok()?;
        log.lines()
            .rev()
            .find(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
            .map(|l| l.chars().take(600).collect())
    }

    /// VmRSS and VmHWM (KiB).
    pub(super) fn memory(&self) -> (u64, u64) {
        let pid = self.pid.to_string();
        (status_kib(&pid, "VmRSS:"), status_kib(&pid, "VmHWM:"))
    }

    /// SIGTERM, as a service manager stops it (it gives up leadership, so
    /// the next master leads at once); SIGKILL if it is still there 10 s on.
    pub(super) async fn stop(mut self) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}
