//! Connecting to etcd, and telling an outage apart from a refusal.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tonic::Code;

use crate::Error;
use crate::config::EtcdConfig;

/// A client for the configured endpoints. The connection is made lazily:
/// this succeeds while etcd is down, and requests fail (then recover) on
/// their own, so a process can start before etcd does.
pub async fn connect(cfg: &EtcdConfig) -> Result<Client, Error> {
    Ok(Client::connect(endpoints(cfg), Some(options(cfg, true)?)).await?)
}

/// Like [`connect`] but with no per-request timeout, for calls that block
/// by design (an election campaign, a long watch).
pub async fn connect_blocking(cfg: &EtcdConfig) -> Result<Client, Error> {
    Ok(Client::connect(endpoints(cfg), Some(options(cfg, false)?)).await?)
}

/// Endpoints as URLs: `https://` when TLS is on (a bare `host:port` gets
/// the scheme the configuration implies).
fn endpoints(cfg: &EtcdConfig) -> Vec<String> {
    let scheme = if cfg.uses_tls() {
        "https://"
    } else {
        "http://"
    };
    cfg.endpoints
        .iter()
        .map(|e| {
            if e.contains("://") {
                e.clone()
            } else {
                format!("{scheme}{e}")
            }
        })
        .collect()
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
}

fn options(cfg: &EtcdConfig, request_timeout: bool) -> Result<ConnectOptions, Error> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(cfg.connect_timeout_secs.max(1)))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
        .with_keep_alive_while_idle(true);
    if request_timeout {
        opts = opts.with_timeout(Duration::from_secs(cfg.request_timeout_secs.max(1)));
    }
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        opts = opts.with_user(user.clone(), password.clone());
    }
    if cfg.uses_tls() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &cfg.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read_pem(ca)?));
        }
        if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
            tls = tls.identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
        }
        opts = opts.with_tls(tls);
    }
    Ok(opts)
}

/// Whether `err` means etcd could not be reached (retry later, answer 503)
/// rather than that it refused the request.
pub fn is_unavailable(err: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match err {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Unknown
                | Code::Aborted
        ),
        _ => false,
    }
}
