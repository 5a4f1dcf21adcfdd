//! The worker's session with etcd: one lease, kept alive, that carries the
//! registration `/cron/workers/<id>` and every lock the worker holds. When
//! the lease is lost (etcd unreachable past its TTL) the worker grants a
//! new one and registers again; meanwhile it takes no locks.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use etcd_client::{Client, PutOptions};
use rcron_shared::{Keys, WorkerInfo};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The lease id of the live session, or `None` while there is none.
pub type SessionLease = watch::Receiver<Option<i64>>;

/// Runs the session until `token` is cancelled, then revokes the lease
/// (removing the registration at once rather than after the TTL).
pub async fn run_session(
    client: Client,
    keys: Keys,
    mut info: WorkerInfo,
    ttl_secs: i64,
    mut running: watch::Receiver<Vec<String>>,
    lease_tx: watch::Sender<Option<i64>>,
    token: CancellationToken,
) {
    let key = keys.worker(&info.id);
    let mut backoff = Duration::from_millis(200);
    while !token.is_cancelled() {
        let lease = match client.clone().lease_grant(ttl_secs, None).await {
            Ok(resp) => resp.id(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start etcd session; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = token.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        info.running = running.borrow_and_update().clone();
        if let Err(e) = put_info(&client, &key, &info, lease).await {
            tracing::warn!(error = %e, "cannot register worker; retrying");
            continue;
        }
        tracing::info!(worker = %info.id, lease, "registered");
        let _ = lease_tx.send(Some(lease));
        let ended = keep_alive(
            &client,
            &key,
            &mut info,
            lease,
            ttl_secs,
            &mut running,
            &token,
        )
        .await;
        let _ = lease_tx.send(None);
        if let Err(e) = ended {
            tracing::warn!(error = %e, "etcd session lost; registering again");
        } else {
            let _ = client.clone().lease_revoke(lease).await;
            tracing::info!(worker = %info.id, "unregistered");
        }
    }
}

async fn put_info(
    client: &Client,
    key: &str,
    info: &WorkerInfo,
    lease: i64,
) -> Result<(), etcd_client::Error> {
    let value = serde_json::to_string(info).unwrap_or_default();
    client
        .clone()
        .put(key, value, Some(PutOptions::new().with_lease(lease)))
        .await?;
    Ok(())
}

/// Keeps `lease` alive and the registration current. Returns `Ok` when
/// `token` is cancelled, `Err` when the lease is lost.
async fn keep_alive(
    client: &Client,
    key: &str,
    info: &mut WorkerInfo,
    lease: i64,
    ttl_secs: i64,
    running: &mut watch::Receiver<Vec<String>>,
    token: &CancellationToken,
) -> Result<(), etcd_client::Error> {
    let (mut keeper, mut stream) = client.clone().lease_keep_alive(lease).await?;
    let period = Duration::from_millis((ttl_secs as u64 * 1000 / 3).max(500));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            _ = tick.tick() => {
                keeper.keep_alive().await?;
                match tokio::time::timeout(period, stream.message()).await {
                    Ok(Ok(Some(resp))) if resp.ttl() > 0 => {}
                    Ok(Ok(_)) => return Err(etcd_client::Error::LeaseKeepAliveError("lease expired".into())),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(etcd_client::Error::LeaseKeepAliveError("no keep-alive answer".into())),
                }
            }
            changed = running.changed() => {
                if changed.is_err() {
                    // The scheduler is gone: the worker is stopping.
                    return Ok(());
                }
                info.running = running.borrow_and_update().clone();
                put_info(client, key, info, lease).await?;
            }
        }
    }
}

/// The address other machines reach this worker at: the local address of a
/// (never used) UDP socket aimed at the first etcd endpoint.
pub fn local_ip(etcd_endpoint: &str) -> IpAddr {
    let host_port = etcd_endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect(host_port).map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}
