//! The worker's session with etcd: one lease, kept alive, that carries the
//! registration `/cron/workers/<id>` and every lock the worker holds.
//!
//! The lease is published (as [`SessionLease`]) only while the worker can
//! vouch for it: [`lease::keep_alive`] renews it and reports until when
//! each answer confirms it (the time the request was sent plus its TTL:
//! etcd cannot expire it earlier). When no answer comes (etcd stalled or
//! unreachable), the lease stays the same and keep-alives go on, but
//! shortly before the confirmed time runs out the session publishes
//! `None`: no new lock is taken and `lock_keeper` stops the runs holding
//! locks, before another worker could take them. An answer that confirms
//! it for longer than that margin publishes the same lease again; only a
//! lease that etcd says is gone is replaced by a new one (and the locks
//! re-taken on it). A stall therefore costs no etcd writes, and a drain
//! keeps the session until its runs have ended.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, PutOptions};
use rcron_shared::backoff::Backoff;
use rcron_shared::lease::{self, Lease, LeaseEnd};
use rcron_shared::{Keys, WorkerInfo};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::active::ActiveRuns;

/// The lease id of the live session, or `None` while there is none the
/// worker can vouch for.
pub type SessionLease = watch::Receiver<Option<i64>>;

/// Least time between two writes of the registration: a busy worker's
/// runs start and end many times a second.
const REGISTRATION_EVERY: Duration = Duration::from_millis(500);

/// Timings derived from the lease TTL.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Between keep-alives: a tenth of the TTL (in 250 ms – 1 s), so a
    /// stall of most of the TTL is survived. Lease renewals are not raft
    /// proposals: they cost etcd no writes.
    period: Duration,
    /// How long before the confirmed time runs out the session stops
    /// vouching: time for `lock_keeper` to stop the runs (SIGTERM, then
    /// SIGKILL after half a second) before etcd could expire the lease.
    margin: Duration,
}

impl Timing {
    fn new(ttl_secs: i64) -> Self {
        let ttl = Duration::from_secs(ttl_secs.max(1) as u64);
        Self {
            period: (ttl / 10).clamp(Duration::from_millis(250), Duration::from_secs(1)),
            margin: (ttl / 4).clamp(Duration::from_millis(750), Duration::from_millis(1500)),
        }
    }

    /// When the session must stop vouching if nothing confirms the lease
    /// beyond `confirmed_until`.
    fn fence(&self, confirmed_until: Instant) -> Instant {
        // An instant too early to subtract from is in the past anyway.
        confirmed_until
            .checked_sub(self.margin)
            .unwrap_or_else(Instant::now)
    }
}

/// Runs the session until `token` is cancelled, then revokes the lease
/// (removing the registration at once rather than after the TTL).
pub async fn run_session(
    client: Client,
    keys: Keys,
    info: WorkerInfo,
    ttl_secs: i64,
    active: Arc<ActiveRuns>,
    lease_tx: watch::Sender<Option<i64>>,
    token: CancellationToken,
) {
    let timing = Timing::new(ttl_secs);
    let registration = tokio::spawn(keep_registration(
        client.clone(),
        keys.worker(&info.id),
        info.clone(),
        active,
        lease_tx.subscribe(),
        timing,
        token.clone(),
    ));
    let mut backoff = Backoff::etcd();
    while !token.is_cancelled() {
        let granted = tokio::time::timeout(
            timing.period.max(Duration::from_secs(2)),
            lease::grant(&client, ttl_secs.max(1)),
        )
        .await;
        let (lease, confirmed_until) = match granted {
            Ok(Ok(granted)) => granted,
            Ok(Err(e)) => {
                retry_grant(&lease_tx, &e.to_string(), &mut backoff, &token).await;
                continue;
            }
            Err(_) => {
                retry_grant(&lease_tx, "no answer", &mut backoff, &token).await;
                continue;
            }
        };
        backoff.reset();
        tracing::info!(worker = %info.id, lease = lease.id, "etcd session started");
        lease_tx.send_replace(Some(lease.id));
        match keep(&client, lease, confirmed_until, timing, &lease_tx, &token).await {
            LeaseEnd::Cancelled => {
                lease_tx.send_replace(None);
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.clone().lease_revoke(lease.id),
                )
                .await;
                tracing::info!(worker = %info.id, "unregistered");
            }
            LeaseEnd::Gone => {
                // Not published as `None`: the locks are re-taken on the
                // next lease as soon as it is granted.
                tracing::warn!(worker = %info.id, lease = lease.id, "etcd session lost (lease gone); starting a new one");
            }
        }
    }
    let _ = registration.await;
}

async fn retry_grant(
    lease_tx: &watch::Sender<Option<i64>>,
    error: &str,
    backoff: &mut Backoff,
    token: &CancellationToken,
) {
    // Without a lease nothing can be vouched for.
    lease_tx.send_replace(None);
    tracing::warn!(error, "cannot start etcd session; retrying");
    backoff.wait_or_cancel(token).await;
}

/// Keeps `lease` alive (with [`lease::keep_alive`]) until `token` is
/// cancelled or etcd says it is gone, vouching for it on `lease_tx` in the
/// meantime. `confirmed_until` is what the grant proved.
async fn keep(
    client: &Client,
    lease: Lease,
    confirmed_until: Instant,
    timing: Timing,
    lease_tx: &watch::Sender<Option<i64>>,
    token: &CancellationToken,
) -> LeaseEnd {
    let (confirmed_tx, confirmed) = watch::channel(confirmed_until);
    let keeping = lease::keep_alive(
        client.clone(),
        lease,
        timing.period,
        confirmed_tx,
        token.clone(),
    );
    tokio::pin!(keeping);
    tokio::select! {
        biased;
        end = &mut keeping => end,
        // `confirmed` closes only as the keeper returns.
        () = vouch(confirmed, timing, lease_tx, lease.id) => keeping.await,
    }
}

/// Withdraws `lease` from `lease_tx` a margin before the instant
/// `confirmed` holds, and publishes it again when a confirmation leaves
/// more than the margin. The lease is published when this starts. Returns
/// when `confirmed` is closed.
async fn vouch(
    mut confirmed: watch::Receiver<Instant>,
    timing: Timing,
    lease_tx: &watch::Sender<Option<i64>>,
    lease: i64,
) {
    let mut vouching = true;
    loop {
        let fence_at = timing.fence(*confirmed.borrow_and_update());
        tokio::select! {
            changed = confirmed.changed() => {
                if changed.is_err() {
                    return;
                }
                // An answer that came too late to leave room before the
                // fence confirms nothing worth vouching for.
                if !vouching && Instant::now() < timing.fence(*confirmed.borrow()) {
                    vouching = true;
                    lease_tx.send_replace(Some(lease));
                    tracing::info!(lease, "etcd session confirmed again");
                }
            }
            () = tokio::time::sleep_until(fence_at), if vouching => {
                vouching = false;
                lease_tx.send_replace(None);
                tracing::warn!(lease, "no keep-alive answer from etcd; the lease cannot be confirmed before it could expire: no new runs, and runs holding locks are stopped");
            }
        }
    }
}

/// Writes the registration whenever the runs or the draining mark change
/// (at most every [`REGISTRATION_EVERY`]) and whenever the lease changes.
async fn keep_registration(
    client: Client,
    key: String,
    mut info: WorkerInfo,
    active: Arc<ActiveRuns>,
    mut lease_rx: watch::Receiver<Option<i64>>,
    timing: Timing,
    token: CancellationToken,
) {
    let mut versions = active.subscribe();
    let mut written: Option<(i64, u64)> = None;
    loop {
        let lease = *lease_rx.borrow_and_update();
        let version = *versions.borrow_and_update();
        if let Some(lease) = lease
            && written != Some((lease, version))
        {
            let snapshot = active.snapshot();
            info.running = snapshot.job_names();
            info.runs = snapshot.runs;
            info.draining = snapshot.draining;
            info.clock_offset_ms = snapshot.clock.offset_ms;
            info.clock_skewed = snapshot.clock.skewed;
            let value = serde_json::to_string(&info).unwrap_or_default();
            let mut kv = client.clone();
            let put = kv.put(
                key.clone(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            );
            let pause = match tokio::time::timeout(timing.period.max(Duration::from_secs(1)), put)
                .await
            {
                Ok(Ok(_)) => {
                    if written.is_none_or(|(l, _)| l != lease) {
                        tracing::info!(worker = %info.id, lease, "registered");
                    }
                    written = Some((lease, version));
                    REGISTRATION_EVERY
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot write the worker registration; retrying");
                    timing.period
                }
                Err(_) => timing.period,
            };
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            continue;
        }
        tokio::select! {
            () = token.cancelled() => return,
            changed = lease_rx.changed() => if changed.is_err() { return },
            changed = versions.changed() => if changed.is_err() { return },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_follow_the_ttl_within_bounds() {
        let production = Timing::new(10);
        assert_eq!(production.period, Duration::from_secs(1));
        assert_eq!(production.margin, Duration::from_millis(1500));
        let short = Timing::new(2);
        assert_eq!(short.period, Duration::from_millis(250));
        assert_eq!(short.margin, Duration::from_millis(750));
    }

    /// Vouches in a task; returns the lease channel and the confirmation sender.
    fn vouching(
        timing: Timing,
        confirmed_for: Duration,
    ) -> (
        watch::Receiver<Option<i64>>,
        watch::Sender<Instant>,
        tokio::task::JoinHandle<()>,
    ) {
        let (lease_tx, lease_rx) = watch::channel(Some(7));
        let (confirmed_tx, confirmed) = watch::channel(Instant::now() + confirmed_for);
        let task = tokio::spawn(async move { vouch(confirmed, timing, &lease_tx, 7).await });
        (lease_rx, confirmed_tx, task)
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_is_withdrawn_a_margin_before_it_could_expire_and_vouched_for_again() {
        let timing = Timing::new(10);
        let (lease, confirmed, task) = vouching(timing, Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(8400)).await;
        assert_eq!(*lease.borrow(), Some(7), "vouched for until the fence");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            *lease.borrow(),
            None,
            "withdrawn 1.5 s before it could expire"
        );
        // An answer to a request sent 1 s ago confirms it 9 s more.
        confirmed.send_replace(Instant::now() + Duration::from_secs(9));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(*lease.borrow(), Some(7), "vouched for again");
        drop(confirmed);
        task.await.expect("vouch ends when the keeper does");
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirmation_that_leaves_less_than_the_margin_is_not_vouched_for() {
        let timing = Timing::new(10);
        let (lease, confirmed, task) = vouching(timing, Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(*lease.borrow(), None, "confirmed for less than the margin");
        confirmed.send_replace(Instant::now() + Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(*lease.borrow(), None, "an answer sent too long ago");
        drop(confirmed);
        task.await.expect("vouch ends when the keeper does");
    }
}
