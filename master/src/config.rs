//! The master's configuration: TOML file, then `RCRON_*` variables, then
//! flags (DESIGN §8).

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono_tz::Tz;
use rcron_shared::config::{self, EtcdArgs, EtcdConfig, LogFormat, MongoArgs, MongoConfig};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Everything the master needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MasterConfig {
    /// Address the HTTP API and the web admin listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Zone for jobs that name none (IANA name).
    pub timezone: Tz,
    /// Format of the master's own log lines.
    pub log_format: LogFormat,
    /// etcd connection.
    pub etcd: EtcdConfig,
    /// MongoDB connection (run logs).
    pub mongo: MongoConfig,
}

impl Default for MasterConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8070)),
            max_body_bytes: 1024 * 1024,
            timezone: Tz::UTC,
            log_format: LogFormat::Text,
            etcd: EtcdConfig::default(),
            mongo: MongoConfig::default(),
        }
    }
}

/// `rcron-master` command line; every flag also reads an `RCRON_*` variable.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "rcron-master",
    version,
    about = "rcron master: HTTP API, web admin, alerting"
)]
pub struct MasterArgs {
    /// TOML configuration file.
    #[arg(long, env = "RCRON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "RCRON_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "RCRON_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Zone for jobs that name none.
    #[arg(long, env = "RCRON_TIMEZONE")]
    pub timezone: Option<Tz>,
    /// Log line format.
    #[arg(long, env = "RCRON_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    #[command(flatten)]
    pub mongo: MongoArgs,
}

impl MasterArgs {
    /// Loads the file named by `--config` and puts the flags over it.
    pub fn load(self) -> Result<MasterConfig, Error> {
        let mut cfg: MasterConfig = config::load_toml(self.config.as_deref())?;
        config::set(&mut cfg.listen, self.listen);
        config::set(&mut cfg.max_body_bytes, self.max_body_bytes);
        config::set(&mut cfg.timezone, self.timezone);
        config::set(&mut cfg.log_format, self.log_format);
        self.etcd.apply(&mut cfg.etcd)?;
        self.mongo.apply(&mut cfg.mongo)?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_override_defaults() {
        let args = MasterArgs::try_parse_from([
            "rcron-master",
            "--listen",
            "127.0.0.1:9999",
            "--etcd-endpoints",
            "a:1,b:2",
            "--timezone",
            "Europe/Berlin",
        ])
        .expect("parses");
        let cfg = args.load().expect("loads");
        assert_eq!(cfg.listen.port(), 9999);
        assert_eq!(cfg.etcd.endpoints, vec!["a:1", "b:2"]);
        assert_eq!(cfg.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(cfg.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn bad_flag_values_are_rejected() {
        assert!(MasterArgs::try_parse_from(["rcron-master", "--timezone", "Mars/Base"]).is_err());
        assert!(MasterArgs::try_parse_from(["rcron-master", "--listen", "nope"]).is_err());
    }
}
