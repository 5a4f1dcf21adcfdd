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
    /// Address of the worker's HTTP listener: `/metrics`, `/healthz`,
    /// `/readyz` and the live output of its runs (read by masters); empty
    /// = off. Masters on other hosts need a reachable address here
    /// (`0.0.0.0:8071`) and a `cluster_secret_file`. Formerly
    /// `metrics_listen`, still accepted.
    #[serde(alias = "metrics_listen")]
    pub http_listen: String,
    /// `host:port` masters reach the HTTP listener at, published in the
    /// registration; empty = the listener's address, or for a wildcard
    /// one (`0.0.0.0`, `::`) this host's address towards etcd, with its port.
    pub advertise_addr: String,
    /// File holding the secret masters and workers share (at least 16
    /// bytes): masters sign each live output request with it. Without it
    /// the worker serves live output only on a loopback listener.
    pub cluster_secret_file: Option<PathBuf>,
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
            http_listen: "127.0.0.1:8071".to_string(),
            advertise_addr: String::new(),
            cluster_secret_file: None,
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

    /// Where masters reach the HTTP listener (`host:port`), if it is on:
    /// `advertise_addr`, else the listener's address, with `local_ip` in
    /// place of a wildcard one.
    pub fn http_addr(&self, local_ip: std::net::IpAddr) -> Option<String> {
        let listen: std::net::SocketAddr = self.http_listen.parse().ok()?;
        if !self.advertise_addr.is_empty() {
            return Some(self.advertise_addr.clone());
        }
        let ip = if listen.ip().is_unspecified() {
            local_ip
        } else {
            listen.ip()
        };
        Some(std::net::SocketAddr::new(ip, listen.port()).to_string())
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
    /// Address of the HTTP listener: /metrics, /healthz, /readyz and
    /// live output (empty = off).
    #[arg(long, env = "RCRON_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// The former name of --http-listen.
    #[arg(long, env = "RCRON_METRICS_LISTEN", hide = true)]
    pub metrics_listen: Option<String>,
    /// host:port masters reach the HTTP listener at (default: derived from
    /// --http-listen).
    #[arg(long, env = "RCRON_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// File holding the cluster secret shared with the masters (live output).
    #[arg(long, env = "RCRON_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
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
        config::set(&mut cfg.http_listen, self.metrics_listen);
        config::set(&mut cfg.http_listen, self.http_listen);
        if !cfg.http_listen.is_empty() && cfg.http_listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(Error::Config(format!(
                "http_listen {:?} is not an address like 127.0.0.1:8071",
                cfg.http_listen
            )));
        }
        config::set(&mut cfg.advertise_addr, self.advertise_addr);
        if !cfg.advertise_addr.is_empty() && !is_host_port(&cfg.advertise_addr) {
            return Err(Error::Config(format!(
                "advertise_addr {:?} is not host:port (like 10.0.0.5:8071)",
                cfg.advertise_addr
            )));
        }
        if self.cluster_secret_file.is_some() {
            cfg.cluster_secret_file = self.cluster_secret_file;
        }
        // Read once here so a missing or short secret stops the start.
        rcron_shared::run_token::ClusterSecret::load(cfg.cluster_secret_file.as_deref())?;
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

/// `host:port` with a host and a numeric port.
fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok()
    })
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
    fn the_http_listener_keeps_its_old_name_and_advertises_a_reachable_address() {
        let old_name = WorkerArgs::try_parse_from(["rcron-worker", "--metrics-listen", ""])
            .expect("parses")
            .load()
            .expect("loads");
        assert_eq!(old_name.http_listen, "", "the former flag still works");
        let path = std::env::temp_dir().join(format!("rcron-w-{}.toml", uuid::Uuid::now_v7()));
        std::fs::write(&path, "metrics_listen = \"0.0.0.0:9100\"\n").expect("write");
        let cfg: WorkerConfig = config::load_toml(Some(&path)).expect("the former key parses");
        let _ = std::fs::remove_file(&path);
        assert_eq!(cfg.http_listen, "0.0.0.0:9100");
        let here: std::net::IpAddr = "10.1.2.3".parse().expect("ip");
        assert_eq!(cfg.http_addr(here).as_deref(), Some("10.1.2.3:9100"));
        assert_eq!(
            WorkerConfig::default().http_addr(here).as_deref(),
            Some("127.0.0.1:8071")
        );
        let advertised = WorkerConfig {
            advertise_addr: "w1.example:9100".into(),
            ..cfg
        };
        assert_eq!(
            advertised.http_addr(here).as_deref(),
            Some("w1.example:9100")
        );
        let off = WorkerConfig {
            http_listen: String::new(),
            ..advertised
        };
        assert_eq!(off.http_addr(here), None, "no listener, nothing to publish");
        let bad = WorkerArgs::try_parse_from(["rcron-worker", "--advertise-addr", "http://x"])
            .expect("parses");
        assert!(bad.load().is_err());
        let missing =
            WorkerArgs::try_parse_from(["rcron-worker", "--cluster-secret-file", "/nonexistent"])
                .expect("parses");
        assert!(
            missing.load().is_err(),
            "a secret that cannot be read stops the start"
        );
    }

    #[test]
    fn default_id_is_hostname_dash_pid() {
        let id = WorkerConfig::default().worker_id();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
    }
}
