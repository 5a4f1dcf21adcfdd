//! The worker's configuration: TOML file, then `RCRON_*` variables, then
//! flags (ARCHITECTURE §8).

use std::path::PathBuf;

use chrono_tz::Tz;
use rcron_shared::config::{self, EtcdArgs, EtcdConfig, LogFormat, MongoArgs, MongoConfig};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Everything a worker needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Unique id in the cluster; empty = `hostname-pid`.
    pub worker_id: String,
    /// Most runs executing at once on this worker; a tick that finds no
    /// free slot is left to another worker.
    pub max_concurrency: u32,
    /// Shell that runs commands as `<shell> -c <command>`.
    pub shell: String,
    /// Bytes of stdout+stderr kept per run (head and tail; the middle is
    /// dropped and the record marked truncated).
    pub max_output_bytes: usize,
    /// Seconds between SIGTERM and SIGKILL when a run is timed out or killed.
    pub kill_grace_secs: u64,
    /// Seconds running jobs may finish after SIGTERM/SIGINT before they are killed.
    pub drain_secs: u64,
    /// A tick whose fire time is further in the past than this (the worker
    /// was stalled or suspended) is skipped and counted as missed.
    pub misfire_grace_secs: u64,
    /// Zone for jobs that name none (IANA name).
    pub timezone: Tz,
    /// Days run records are kept in MongoDB (TTL index on `expireAt`).
    pub log_retention_days: u32,
    /// Records written to MongoDB per batch.
    pub log_batch_size: usize,
    /// Milliseconds between flushes of a partial batch.
    pub log_flush_interval_ms: u64,
    /// Records kept in memory while MongoDB is unreachable; past that the
    /// oldest wait in the outbox (in `spill_dir`) only.
    pub log_buffer_records: usize,
    /// Where the outbox keeps records and warnings until they are
    /// delivered, across restarts. Empty = `$STATE_DIRECTORY`, else
    /// `~/.local/state/rcron`.
    pub spill_dir: PathBuf,
    /// TTL (seconds) of the worker's etcd session lease (registration and locks).
    pub lease_ttl_secs: i64,
    /// Address of the worker's `/metrics`, `/healthz` and `/readyz`; empty = off.
    pub metrics_listen: String,
    /// Shifts the worker's clock (milliseconds; tests of clock skew only).
    pub clock_offset_ms: i64,
    /// Format of the worker's own log lines.
    pub log_format: LogFormat,
    /// This worker's labels (`role = "db"`); a job with a `target` runs
    /// only on workers carrying every label it lists.
    pub labels: rcron_shared::Labels,
    /// Largest offset (ms) from the cluster's reference clock (the leader
    /// master's beacon) at which the worker still fires.
    pub max_clock_skew_ms: u64,
    /// Milliseconds the worker ranked *r* for a tick waits (times *r*,
    /// up to 8) before trying it when the workers before it have not;
    /// 0 = every worker tries every tick at once (no ranking).
    pub rank_delay_ms: u64,
    /// etcd connection.
    pub etcd: EtcdConfig,
    /// MongoDB connection (run logs).
    pub mongo: MongoConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: String::new(),
            max_concurrency: 64,
            shell: "/bin/sh".to_string(),
            max_output_bytes: 64 * 1024,
            kill_grace_secs: 3,
            drain_secs: 30,
            misfire_grace_secs: 5,
            timezone: Tz::UTC,
            log_retention_days: 30,
            log_batch_size: 100,
            log_flush_interval_ms: 200,
            log_buffer_records: 10_000,
            spill_dir: PathBuf::new(),
            lease_ttl_secs: 10,
            metrics_listen: "127.0.0.1:8071".to_string(),
            clock_offset_ms: 0,
            log_format: LogFormat::Text,
            labels: rcron_shared::Labels::new(),
            rank_delay_ms: 150,
            max_clock_skew_ms: 500,
            etcd: EtcdConfig::default(),
            mongo: MongoConfig::default(),
        }
    }
}

impl WorkerConfig {
    /// The configured id, or `hostname-pid`.
    pub fn worker_id(&self) -> String {
        if !self.worker_id.is_empty() {
            return self.worker_id.clone();
        }
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "worker".to_string());
        format!("{host}-{}", std::process::id())
    }

    /// The configured spill directory, or the default one.
    pub fn spill_dir(&self) -> PathBuf {
        if !self.spill_dir.as_os_str().is_empty() {
            return self.spill_dir.clone();
        }
        if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
            return PathBuf::from(dir);
        }
        match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".local/state/rcron"),
            None => PathBuf::from("/var/lib/rcron"),
        }
    }
}

/// `rcron-worker` command line; every flag also reads an `RCRON_*` variable.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "rcron-worker",
    version,
    about = "rcron worker: fires and runs scheduled jobs"
)]
pub struct WorkerArgs {
    /// TOML configuration file.
    #[arg(long, env = "RCRON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Unique worker id (default hostname-pid).
    #[arg(long, env = "RCRON_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Most runs at once.
    #[arg(long, env = "RCRON_MAX_CONCURRENCY")]
    pub max_concurrency: Option<u32>,
    /// Shell used to run commands.
    #[arg(long, env = "RCRON_SHELL")]
    pub shell: Option<String>,
    /// Bytes of output kept per run.
    #[arg(long, env = "RCRON_MAX_OUTPUT_BYTES")]
    pub max_output_bytes: Option<usize>,
    /// Seconds running jobs may finish at shutdown.
    #[arg(long, env = "RCRON_DRAIN_SECS")]
    pub drain_secs: Option<u64>,
    /// Zone for jobs that name none.
    #[arg(long, env = "RCRON_TIMEZONE")]
    pub timezone: Option<Tz>,
    /// Directory for undelivered records and warnings.
    #[arg(long, env = "RCRON_SPILL_DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Address of /metrics, /healthz and /readyz (empty = off).
    #[arg(long, env = "RCRON_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Milliseconds added to the clock (tests of clock skew).
    #[arg(
        long,
        env = "RCRON_CLOCK_OFFSET_MS",
        allow_hyphen_values = true,
        hide = true
    )]
    pub clock_offset_ms: Option<i64>,
    /// Log line format.
    #[arg(long, env = "RCRON_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Worker labels, `key=value,key=value` (e.g. `role=db,zone=eu-1`).
    #[arg(long, env = "RCRON_WORKER_LABELS")]
    pub labels: Option<String>,
    /// Largest clock offset from the leader's beacon at which this worker
    /// still fires (ms).
    #[arg(long, env = "RCRON_MAX_CLOCK_SKEW_MS")]
    pub max_clock_skew_ms: Option<u64>,
    /// Wait per rank before covering a tick for the workers ranked before
    /// this one (ms; 0 = no ranking).
    #[arg(long, env = "RCRON_RANK_DELAY_MS")]
    pub rank_delay_ms: Option<u64>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    #[command(flatten)]
    pub mongo: MongoArgs,
}

impl WorkerArgs {
    /// Loads the file named by `--config` and puts the flags over it.
    pub fn load(self) -> Result<WorkerConfig, Error> {
        let mut cfg: WorkerConfig = config::load_toml(self.config.as_deref())?;
        config::set(&mut cfg.worker_id, self.worker_id);
        config::set(&mut cfg.max_concurrency, self.max_concurrency);
        config::set(&mut cfg.shell, self.shell);
        config::set(&mut cfg.max_output_bytes, self.max_output_bytes);
        config::set(&mut cfg.drain_secs, self.drain_secs);
        config::set(&mut cfg.timezone, self.timezone);
        config::set(&mut cfg.spill_dir, self.spill_dir);
        config::set(&mut cfg.clock_offset_ms, self.clock_offset_ms);
        config::set(&mut cfg.metrics_listen, self.metrics_listen);
        if !cfg.metrics_listen.is_empty()
            && cfg.metrics_listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(Error::Config(format!(
                "metrics_listen {:?} is not an address like 127.0.0.1:8071",
                cfg.metrics_listen
            )));
        }
        config::set(&mut cfg.log_format, self.log_format);
        if let Some(labels) = self.labels {
            cfg.labels = rcron_shared::placement::parse_labels(&labels)
                .map_err(|e| Error::Config(format!("worker labels: {e}")))?;
        }
        let problems = rcron_shared::placement::label_problems(&cfg.labels);
        if !problems.is_empty() {
            return Err(Error::Config(format!(
                "worker labels: {}",
                problems.join("; ")
            )));
        }
        config::set(&mut cfg.rank_delay_ms, self.rank_delay_ms);
        config::set(&mut cfg.max_clock_skew_ms, self.max_clock_skew_ms);
        if cfg.rank_delay_ms > 10_000 {
            return Err(Error::Config("rank_delay_ms must be at most 10000".into()));
        }
        self.etcd.apply(&mut cfg.etcd)?;
        self.mongo.apply(&mut cfg.mongo)?;
        if cfg.max_concurrency == 0 {
            return Err(Error::Config("max_concurrency must be at least 1".into()));
        }
        if cfg.lease_ttl_secs < 2 {
            return Err(Error::Config("lease_ttl_secs must be at least 2".into()));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_override_defaults_and_zero_capacity_is_refused() {
        let cfg = WorkerArgs::try_parse_from([
            "rcron-worker",
            "--max-concurrency",
            "3",
            "--clock-offset-ms",
            "-500",
        ])
        .expect("parses")
        .load()
        .expect("loads");
        assert_eq!(cfg.max_concurrency, 3);
        assert_eq!(cfg.clock_offset_ms, -500);
        assert_eq!(cfg.shell, "/bin/sh");
        let zero =
            WorkerArgs::try_parse_from(["rcron-worker", "--max-concurrency", "0"]).expect("parses");
        assert!(zero.load().is_err());
    }

    #[test]
    fn labels_come_from_a_flag_and_bad_ones_are_refused() {
        let cfg = WorkerArgs::try_parse_from(["rcron-worker", "--labels", "role=db,zone=eu-1"])
            .expect("parses")
            .load()
            .expect("loads");
        assert_eq!(
            rcron_shared::placement::format_labels(&cfg.labels),
            "role=db,zone=eu-1"
        );
        assert_eq!(cfg.rank_delay_ms, 150);
        let bad = WorkerArgs::try_parse_from(["rcron-worker", "--labels", "role"]).expect("parses");
        let err = bad.load().expect_err("refused").to_string();
        assert!(err.contains("key=value"), "{err}");
    }

    #[test]
    fn the_documented_example_config_loads() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/worker.example.toml");
        let cfg: WorkerConfig = config::load_toml(Some(&path)).expect("example parses");
        assert_eq!(cfg.max_concurrency, WorkerConfig::default().max_concurrency);
        assert_eq!(cfg.lease_ttl_secs, 10);
    }

    #[test]
    fn default_id_is_hostname_dash_pid() {
        let id = WorkerConfig::default().worker_id();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
    }
}
