//! Configuration pieces both binaries share, and how a configuration is
//! layered: built-in defaults, then the TOML file (`--config` /
//! `RCRON_CONFIG`), then `RCRON_*` environment variables, then CLI flags.
//! clap reads a flag and its variable together (the flag wins), so each
//! binary only applies the `Option`s it got on top of the file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::keys::{DEFAULT_PREFIX, Keys};

/// How to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// Endpoints, `host:port` or `http://host:port`.
    pub endpoints: Vec<String>,
    /// Prefix of every rcron key.
    pub prefix: String,
    /// Seconds to wait for a connection to an endpoint.
    pub connect_timeout_secs: u64,
    /// Seconds before one request gives up (the API then answers 503).
    pub request_timeout_secs: u64,
    /// User name, when etcd authentication is on.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// CA certificate (PEM) that signed etcd's server certificates. With it
    /// (or with `https://` endpoints) rcron talks TLS to etcd.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), when etcd requires client certificates.
    pub cert_file: Option<PathBuf>,
    /// Key (PEM) of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["127.0.0.1:2379".to_string()],
            prefix: DEFAULT_PREFIX.to_string(),
            connect_timeout_secs: 3,
            request_timeout_secs: 3,
            username: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

impl EtcdConfig {
    /// Whether the connection to etcd is encrypted.
    pub fn uses_tls(&self) -> bool {
        self.ca_file.is_some() || self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    /// The key layout under the configured prefix.
    pub fn keys(&self) -> Result<Keys, Error> {
        Keys::new(&self.prefix)
    }
}

/// How to reach MongoDB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoConfig {
    /// Connection string.
    pub uri: String,
    /// Database holding the `log` collection.
    pub db: String,
}

impl Default for MongoConfig {
    fn default() -> Self {
        Self {
            uri: "mongodb://127.0.0.1:27017".to_string(),
            db: "cron".to_string(),
        }
    }
}

/// Format of the process's own log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags (and variables) for the etcd connection.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated.
    #[arg(
        long = "etcd-endpoints",
        env = "RCRON_ETCD_ENDPOINTS",
        value_delimiter = ','
    )]
    pub endpoints: Option<Vec<String>>,
    /// Prefix of every rcron key.
    #[arg(long = "etcd-prefix", env = "RCRON_ETCD_PREFIX")]
    pub prefix: Option<String>,
    /// etcd user name.
    #[arg(long = "etcd-username", env = "RCRON_ETCD_USERNAME")]
    pub username: Option<String>,
    /// etcd password.
    #[arg(
        long = "etcd-password",
        env = "RCRON_ETCD_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// File holding the etcd password.
    #[arg(long = "etcd-password-file", env = "RCRON_ETCD_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// CA certificate (PEM) of etcd's server certificates; turns TLS on.
    #[arg(long = "etcd-ca-file", env = "RCRON_ETCD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd.
    #[arg(long = "etcd-cert-file", env = "RCRON_ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Key (PEM) of the etcd client certificate.
    #[arg(long = "etcd-key-file", env = "RCRON_ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

impl EtcdArgs {
    /// Puts every given flag or variable over `cfg`.
    pub fn apply(self, cfg: &mut EtcdConfig) -> Result<(), Error> {
        if let Some(endpoints) = self.endpoints {
            cfg.endpoints = endpoints
                .into_iter()
                .filter(|e| !e.trim().is_empty())
                .collect();
        }
        set(&mut cfg.prefix, self.prefix);
        if self.username.is_some() {
            cfg.username = self.username;
        }
        if let Some(p) = secret(self.password, self.password_file)? {
            cfg.password = Some(p);
        }
        if self.ca_file.is_some() {
            cfg.ca_file = self.ca_file;
        }
        if self.cert_file.is_some() {
            cfg.cert_file = self.cert_file;
        }
        if self.key_file.is_some() {
            cfg.key_file = self.key_file;
        }
        if cfg.cert_file.is_some() != cfg.key_file.is_some() {
            return Err(Error::Config(
                "etcd cert_file and key_file go together".into(),
            ));
        }
        if cfg.endpoints.is_empty() {
            return Err(Error::Config("etcd endpoints must not be empty".into()));
        }
        cfg.keys()?;
        Ok(())
    }
}

/// Flags (and variables) for the MongoDB connection.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MongoArgs {
    /// MongoDB connection string.
    #[arg(long = "mongo-uri", env = "RCRON_MONGO_URI", hide_env_values = true)]
    pub uri: Option<String>,
    /// File holding the MongoDB connection string.
    #[arg(long = "mongo-uri-file", env = "RCRON_MONGO_URI_FILE")]
    pub uri_file: Option<PathBuf>,
    /// Database name.
    #[arg(long = "mongo-db", env = "RCRON_MONGO_DB")]
    pub db: Option<String>,
}

impl MongoArgs {
    /// Puts every given flag or variable over `cfg`.
    pub fn apply(self, cfg: &mut MongoConfig) -> Result<(), Error> {
        if let Some(uri) = secret(self.uri, self.uri_file)? {
            cfg.uri = uri;
        }
        set(&mut cfg.db, self.db);
        Ok(())
    }
}

/// Reads the TOML file at `path`, or the defaults when there is none.
/// Unknown keys are errors, so a typo does not silently fall back.
pub fn load_toml<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, Error> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// Replaces `slot` when `value` was given.
pub fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// A secret given directly or as a file (`*_FILE`); the file wins, and its
/// trailing newline is dropped.
pub fn secret(direct: Option<String>, file: Option<PathBuf>) -> Result<Option<String>, Error> {
    match file {
        Some(path) => std::fs::read_to_string(&path)
            .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_string()))
            .map_err(|e| Error::Config(format!("cannot read secret file {}: {e}", path.display()))),
        None => Ok(direct),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        etcd: EtcdConfig,
        mongo: MongoConfig,
    }

    fn write(content: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("rcron-cfg-{}.toml", uuid::Uuid::now_v7()));
        std::fs::write(&path, content).expect("write temp config");
        path
    }

    #[test]
    fn defaults_without_a_file() {
        let s: Sample = load_toml(None).expect("defaults");
        assert_eq!(s.etcd.endpoints, vec!["127.0.0.1:2379"]);
        assert_eq!(s.etcd.prefix, "/cron/");
        assert_eq!(s.mongo.uri, "mongodb://127.0.0.1:27017");
        assert_eq!(s.mongo.db, "cron");
    }

    #[test]
    fn file_values_and_then_overrides() {
        let path = write(
            "[etcd]\nendpoints = [\"10.0.0.1:2379\"]\nprefix = \"/x/\"\n[mongo]\ndb = \"other\"\n",
        );
        let mut s: Sample = load_toml(Some(&path)).expect("parses");
        assert_eq!(s.etcd.endpoints, vec!["10.0.0.1:2379"]);
        assert_eq!(s.mongo.db, "other");
        let secret_path = write("s3cret\n");
        EtcdArgs {
            endpoints: Some(vec!["a:1".into(), "b:2".into()]),
            password_file: Some(secret_path.clone()),
            ..Default::default()
        }
        .apply(&mut s.etcd)
        .expect("applies");
        assert_eq!(s.etcd.endpoints, vec!["a:1", "b:2"]);
        assert_eq!(s.etcd.prefix, "/x/");
        assert_eq!(s.etcd.password.as_deref(), Some("s3cret"));
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(secret_path);
    }

    #[test]
    fn unknown_keys_fail_loudly() {
        let path = write("[etcd]\nendpoint = [\"typo\"]\n");
        let err = load_toml::<Sample>(Some(&path))
            .expect_err("typo")
            .to_string();
        assert!(err.contains("unknown field `endpoint`"), "{err}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn bad_prefix_and_missing_files_are_errors() {
        let mut cfg = EtcdConfig::default();
        let err = EtcdArgs {
            prefix: Some("nope".into()),
            ..Default::default()
        }
        .apply(&mut cfg);
        assert!(err.is_err());
        assert!(load_toml::<Sample>(Some(Path::new("/nonexistent/rcron.toml"))).is_err());
        assert!(secret(None, Some(PathBuf::from("/nonexistent/secret"))).is_err());
    }
}
