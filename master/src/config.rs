//! The master's configuration: TOML file, then `RCRON_*` variables, then
//! flags (ARCHITECTURE §8).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::collections::BTreeMap;

use chrono_tz::Tz;
use rcron_alerts::SmtpTls;
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
    /// Unique id of this master; empty = `hostname-pid`.
    pub master_id: String,
    /// URL other masters and users reach this one at; empty = `http://<listen>`.
    pub advertise_url: String,
    /// TTL (seconds) of the leader lease: a dead leader is replaced within it.
    pub election_ttl_secs: i64,
    /// Admin API token; with no token at all the API is open.
    pub api_token: Option<String>,
    /// Read-only API token.
    pub api_read_token: Option<String>,
    /// Named API keys with roles (TOML, SHA-256 of each secret); re-read on SIGHUP.
    pub api_keys_file: Option<PathBuf>,
    /// Allow an open API on a non-loopback address.
    pub insecure: bool,
    /// File holding the secret masters and workers share (at least 16
    /// bytes): it signs the master's requests for runs' live output.
    pub cluster_secret_file: Option<PathBuf>,
    /// Origins (`scheme://host[:port]`) besides the master's own whose web
    /// pages may change things (`RCRON_ALLOWED_ORIGINS`); the `public_url`'s
    /// origin is always allowed.
    pub allowed_origins: Vec<String>,
    /// Host names besides loopback ones that an open API (no token) answers
    /// (`RCRON_ALLOWED_HOSTS`).
    pub allowed_hosts: Vec<String>,
    /// etcd connection.
    pub etcd: EtcdConfig,
    /// MongoDB connection (run logs).
    pub mongo: MongoConfig,
    /// Where alerts go (the leader sends them).
    pub alerts: AlertsConfig,
}

/// Alert sinks and storm control.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Base URL of the web admin, for links in alerts.
    pub public_url: Option<String>,
    /// At most one alert per job per this many seconds; the next says how
    /// many were suppressed. 0 = no storm control.
    pub window_secs: u64,
    /// Recipients of every alert email (jobs add their `alertEmails`).
    pub emails: Vec<String>,
    /// Generic JSON webhooks.
    pub webhook_urls: Vec<String>,
    /// A Slack-compatible webhook (`{"text": ...}`).
    pub slack_webhook_url: Option<String>,
    /// Extra headers on every webhook request (for example authorization).
    pub webhook_headers: BTreeMap<String, String>,
    /// Seconds one webhook request may take.
    pub webhook_timeout_secs: u64,
    /// SMTP server for email alerts; no host = no email.
    pub smtp: SmtpConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            window_secs: 60,
            emails: Vec::new(),
            webhook_urls: Vec::new(),
            slack_webhook_url: None,
            webhook_headers: BTreeMap::new(),
            webhook_timeout_secs: 10,
            smtp: SmtpConfig::default(),
        }
    }
}

/// SMTP delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server host; empty = email alerts off.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    pub tls: SmtpTls,
    /// User name, when the server wants authentication.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// Sender address.
    pub from: String,
    /// Seconds one delivery may take.
    pub timeout_secs: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: None,
            password: None,
            from: "rcron@localhost".to_string(),
            timeout_secs: 15,
        }
    }
}

impl MasterConfig {
    /// The configured id, or `hostname-pid`.
    pub fn master_id(&self) -> String {
        if !self.master_id.is_empty() {
            return self.master_id.clone();
        }
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "master".to_string());
        format!("{host}-{}", std::process::id())
    }

    /// Refuses an open API (no admin token) on a non-loopback address
    /// unless `insecure` is set: the API runs shell commands.
    pub fn check_exposure(&self) -> Result<(), Error> {
        if self.api_token.is_none()
            && self.api_keys_file.is_none()
            && !self.listen.ip().is_loopback()
        {
            if !self.insecure {
                return Err(rcron_shared::Error::Config(format!(
                    "refusing to serve the API on {} without an admin token: it runs shell commands. \
                     Set RCRON_API_TOKEN (or RCRON_API_TOKEN_FILE), or pass --insecure",
                    self.listen
                ))
                .into());
            }
            tracing::warn!(listen = %self.listen, "serving an open API on a non-loopback address (--insecure)");
        }
        Ok(())
    }

    /// The configured advertised URL, or one built from `listen`.
    pub fn advertise_url(&self) -> String {
        if self.advertise_url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            self.advertise_url.clone()
        }
    }
}

impl Default for MasterConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8070)),
            max_body_bytes: 1024 * 1024,
            timezone: Tz::UTC,
            log_format: LogFormat::Text,
            master_id: String::new(),
            advertise_url: String::new(),
            election_ttl_secs: 5,
            api_token: None,
            api_keys_file: None,
            api_read_token: None,
            insecure: false,
            cluster_secret_file: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            etcd: EtcdConfig::default(),
            mongo: MongoConfig::default(),
            alerts: AlertsConfig::default(),
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
    /// Unique master id (default hostname-pid).
    #[arg(long, env = "RCRON_MASTER_ID")]
    pub master_id: Option<String>,
    /// URL this master is reached at (shown in cluster status).
    #[arg(long, env = "RCRON_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Admin API token (may do everything).
    #[arg(long, env = "RCRON_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// File holding the admin API token.
    #[arg(long, env = "RCRON_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Read-only API token.
    #[arg(long, env = "RCRON_API_READ_TOKEN", hide_env_values = true)]
    pub api_read_token: Option<String>,
    /// File holding the read-only API token.
    #[arg(long, env = "RCRON_API_READ_TOKEN_FILE")]
    pub api_read_token_file: Option<PathBuf>,
    /// Named API keys with roles (admin, operator, read): a TOML file of
    /// `[[key]] name, role, sha256`; re-read on SIGHUP.
    #[arg(long, env = "RCRON_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// File holding the cluster secret shared with the workers (live output).
    #[arg(long, env = "RCRON_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Serve an open API (no token) on a non-loopback address anyway.
    #[arg(long, env = "RCRON_INSECURE")]
    pub insecure: bool,
    /// Origins whose web pages may change things, comma-separated
    /// (`https://admin.example.com`); the master's own is always allowed.
    #[arg(long, env = "RCRON_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Host names an open API answers besides loopback ones, comma-separated.
    #[arg(long, env = "RCRON_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// Leader lease TTL in seconds.
    #[arg(long, env = "RCRON_ELECTION_TTL_SECS")]
    pub election_ttl_secs: Option<i64>,
    /// Base URL of the web admin, for links in alerts.
    #[arg(long, env = "RCRON_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Storm control window in seconds.
    #[arg(long, env = "RCRON_ALERT_WINDOW_SECS")]
    pub alert_window_secs: Option<u64>,
    /// Alert email recipients, comma-separated.
    #[arg(long, env = "RCRON_ALERT_EMAILS", value_delimiter = ',')]
    pub alert_emails: Option<Vec<String>>,
    /// Generic JSON webhook URLs, comma-separated.
    #[arg(long, env = "RCRON_ALERT_WEBHOOK_URLS", value_delimiter = ',')]
    pub alert_webhook_urls: Option<Vec<String>>,
    /// Slack-compatible webhook URL.
    #[arg(long, env = "RCRON_ALERT_SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub alert_slack_webhook_url: Option<String>,
    /// SMTP host (email alerts off when unset).
    #[arg(long, env = "RCRON_SMTP_HOST")]
    pub smtp_host: Option<String>,
    /// SMTP port.
    #[arg(long, env = "RCRON_SMTP_PORT")]
    pub smtp_port: Option<u16>,
    /// SMTP security: none, starttls or tls.
    #[arg(long, env = "RCRON_SMTP_TLS")]
    pub smtp_tls: Option<SmtpTls>,
    /// SMTP user name.
    #[arg(long, env = "RCRON_SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    /// SMTP password.
    #[arg(long, env = "RCRON_SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<String>,
    /// File holding the SMTP password.
    #[arg(long, env = "RCRON_SMTP_PASSWORD_FILE")]
    pub smtp_password_file: Option<PathBuf>,
    /// Sender address of alert emails.
    #[arg(long, env = "RCRON_SMTP_FROM")]
    pub smtp_from: Option<String>,
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
        config::set(&mut cfg.master_id, self.master_id);
        config::set(&mut cfg.advertise_url, self.advertise_url);
        config::set(&mut cfg.election_ttl_secs, self.election_ttl_secs);
        if let Some(t) = config::secret(self.api_token, self.api_token_file)? {
            cfg.api_token = Some(t);
        }
        if let Some(t) = config::secret(self.api_read_token, self.api_read_token_file)? {
            cfg.api_read_token = Some(t);
        }
        cfg.insecure |= self.insecure;
        if self.cluster_secret_file.is_some() {
            cfg.cluster_secret_file = self.cluster_secret_file;
        }
        // Read once here so a missing or short secret stops the start.
        rcron_shared::run_token::ClusterSecret::load(cfg.cluster_secret_file.as_deref())?;
        if self.api_keys_file.is_some() {
            cfg.api_keys_file = self.api_keys_file;
        }
        config::set(&mut cfg.allowed_origins, self.allowed_origins);
        config::set(&mut cfg.allowed_hosts, self.allowed_hosts);
        for token in [&cfg.api_token, &cfg.api_read_token].into_iter().flatten() {
            if token.len() < 16 {
                return Err(rcron_shared::Error::Config(
                    "API tokens must be at least 16 characters".into(),
                )
                .into());
            }
        }
        let a = &mut cfg.alerts;
        if self.public_url.is_some() {
            a.public_url = self.public_url;
        }
        config::set(&mut a.window_secs, self.alert_window_secs);
        config::set(&mut a.emails, self.alert_emails);
        config::set(&mut a.webhook_urls, self.alert_webhook_urls);
        if self.alert_slack_webhook_url.is_some() {
            a.slack_webhook_url = self.alert_slack_webhook_url;
        }
        config::set(&mut a.smtp.host, self.smtp_host);
        config::set(&mut a.smtp.port, self.smtp_port);
        config::set(&mut a.smtp.tls, self.smtp_tls);
        if self.smtp_username.is_some() {
            a.smtp.username = self.smtp_username;
        }
        if let Some(p) = config::secret(self.smtp_password, self.smtp_password_file)? {
            a.smtp.password = Some(p);
        }
        config::set(&mut a.smtp.from, self.smtp_from);
        self.etcd.apply(&mut cfg.etcd)?;
        self.mongo.apply(&mut cfg.mongo)?;
        if cfg.election_ttl_secs < 2 {
            return Err(
                rcron_shared::Error::Config("election_ttl_secs must be at least 2".into()).into(),
            );
        }
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
    fn the_documented_example_config_loads() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/master.example.toml");
        let cfg: MasterConfig = config::load_toml(Some(&path)).expect("example parses");
        assert_eq!(cfg.alerts.emails, vec!["ops@example.com"]);
        assert_eq!(cfg.alerts.smtp.tls, SmtpTls::Starttls);
        assert_eq!(cfg.election_ttl_secs, 5);
    }

    #[test]
    fn alert_settings_come_from_flags_and_secret_files() {
        let secret = std::env::temp_dir().join(format!("rcron-smtp-{}", std::process::id()));
        std::fs::write(&secret, "hunter2\n").expect("write secret");
        let cfg = MasterArgs::try_parse_from([
            "rcron-master",
            "--alert-webhook-urls",
            "http://a/1,http://b/2",
            "--smtp-host",
            "mail.example.com",
            "--smtp-tls",
            "tls",
            "--smtp-password-file",
            secret.to_str().expect("utf-8 path"),
        ])
        .expect("parses")
        .load()
        .expect("loads");
        assert_eq!(cfg.alerts.webhook_urls, vec!["http://a/1", "http://b/2"]);
        assert_eq!(cfg.alerts.smtp.tls, SmtpTls::Tls);
        assert_eq!(cfg.alerts.smtp.password.as_deref(), Some("hunter2"));
        let _ = std::fs::remove_file(secret);
    }

    #[test]
    fn bad_flag_values_are_rejected() {
        assert!(MasterArgs::try_parse_from(["rcron-master", "--timezone", "Mars/Base"]).is_err());
        assert!(MasterArgs::try_parse_from(["rcron-master", "--listen", "nope"]).is_err());
    }
}
