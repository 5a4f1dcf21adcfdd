//! The worker's session with etcd: one lease, kept alive, that carries the
//! registration `/cron/workers/<id>` and every lock the worker holds.
//!
//! The lease is published (as [`SessionLease`]) only while the worker can
//! vouch for it: each keep-alive answer confirms it until the time the
//! request was sent plus its TTL (etcd cannot expire it earlier). When no
//! answer comes (etcd stalled or unreachable), the lease stays the same
//! and keep-alives go on, but shortly before the confirmed time runs out
//! the session publishes `None`: no new lock is taken and `lock_keeper`
//! stops the runs holding locks, before another worker could take them.
//! An answer within the TTL publishes the same lease again; only a lease
//! that etcd says is gone is replaced by a new one (and the locks re-taken
//! on it). A stall therefore costs no etcd writes, and a drain keeps the
//! session until its runs have ended.

use rcron_shared::backoff::Backoff;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
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

/// How long opening a keep-alive stream may take once the session is no
/// longer vouched for (a reconnection to a restarted etcd).
const RECONNECT_WAIT: Duration = Duration::from_secs(3);

/// Timings derived from the lease TTL.
#[derive(Debug, Clone, Copy)]
struct Timing {
    ttl: Duration,
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
            ttl,
            period: (ttl / 10).clamp(Duration::from_millis(250), Duration::from_secs(1)),
            margin: (ttl / 4).clamp(Duration::from_millis(750), Duration::from_millis(1500)),
        }
    }
}

/// Why keeping a lease ended.
enum Ended {
    /// The worker stops: revoke the lease.
    Cancelled,
    /// etcd says the lease is gone: start a new one.
    Gone,
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
        let asked = Instant::now();
        let granted = tokio::time::timeout(
            timing.period.max(Duration::from_secs(2)),
            client.clone().lease_grant(ttl_secs.max(1), None),
        )
        .await;
        let lease = match granted {
            Ok(Ok(resp)) => resp.id(),
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
        tracing::info!(worker = %info.id, lease, "etcd session started");
        lease_tx.send_replace(Some(lease));
        match keep(
            &client,
            lease,
            asked + timing.ttl,
            timing,
            &lease_tx,
            &token,
        )
        .await
        {
            Ended::Cancelled => {
                lease_tx.send_replace(None);
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    client.clone().lease_revoke(lease),
                )
                .await;
                tracing::info!(worker = %info.id, "unregistered");
            }
            Ended::Gone => {
                // Not published as `None`: the locks are re-taken on the
                // next lease as soon as it is granted.
                tracing::warn!(worker = %info.id, lease, "etcd session lost (lease gone); starting a new one");
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

type KeepAlive = (LeaseKeeper, LeaseKeepAliveStream);

async fn next_answer(
    stream: &mut Option<KeepAlive>,
) -> Result<Option<etcd_client::LeaseKeepAliveResponse>, etcd_client::Error> {
    match stream {
        Some((_, answers)) => answers.message().await,
        None => std::future::pending().await,
    }
}

fn lease_not_found(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::LeaseKeepAliveError(m) if m == "lease not found")
}

/// Keeps `lease` alive until `token` is cancelled or etcd says it is gone.
/// `confirmed_until` is when etcd may expire it without another answer.
async fn keep(
    client: &Client,
    lease: i64,
    mut confirmed_until: Instant,
    timing: Timing,
    lease_tx: &watch::Sender<Option<i64>>,
    token: &CancellationToken,
) -> Ended {
    let mut stream: Option<KeepAlive> = None;
    // Send times of the keep-alives not answered yet, oldest first.
    let mut sent: VecDeque<Instant> = VecDeque::new();
    let mut vouching = true;
    let mut next_ping = Instant::now();
    loop {
        let fence_at = confirmed_until
            .checked_sub(timing.margin)
            .unwrap_or(confirmed_until);
        tokio::select! {
            biased;
            () = token.cancelled() => return Ended::Cancelled,
            answer = next_answer(&mut stream) => match answer {
                Ok(Some(resp)) if resp.ttl() > 0 => {
                    let at = sent.pop_front().unwrap_or_else(|| Instant::now() - timing.period);
                    confirmed_until = at + Duration::from_secs(resp.ttl() as u64);
                    vouch_again(&mut vouching, lease_tx, lease);
                }
                Ok(Some(_)) => return Ended::Gone,
                Ok(None) | Err(_) => {
                    stream = None;
                    sent.clear();
                }
            },
            () = tokio::time::sleep_until(fence_at), if vouching => {
                vouching = false;
                lease_tx.send_replace(None);
                tracing::warn!(lease, "no keep-alive answer from etcd; the lease cannot be confirmed before it could expire: no new runs, and runs holding locks are stopped");
            }
            () = tokio::time::sleep_until(next_ping) => {
                next_ping = Instant::now() + timing.period;
                match &mut stream {
                    Some((keeper, _)) => {
                        sent.push_back(Instant::now());
                        if keeper.keep_alive().await.is_err() {
                            stream = None;
                            sent.clear();
                        }
                    }
                    None => {
                        // Opening the stream sends the first keep-alive and reads its answer.
                        let asked = Instant::now();
                        // While vouching, an answer after the fence is of no use;
                        // once fenced, a reconnection to a restarted etcd may
                        // take a while and must be given the time.
                        let wait = if vouching {
                            timing.period.min(fence_at.saturating_duration_since(asked)).max(Duration::from_millis(50))
                        } else {
                            RECONNECT_WAIT
                        };
                        match tokio::time::timeout(wait, client.clone().lease_keep_alive(lease)).await {
                            Ok(Ok(pair)) => {
                                stream = Some(pair);
                                confirmed_until = confirmed_until.max(asked + timing.ttl);
                                vouch_again(&mut vouching, lease_tx, lease);
                            }
                            Ok(Err(e)) if lease_not_found(&e) => return Ended::Gone,
                            Ok(Err(e)) => tracing::debug!(lease, error = %e, "cannot open the keep-alive stream; retrying"),
                            Err(_) => {}
                        }
                    }
                }
            }
        }
    }
}

/// An answer proved the lease alive: publish it again if it was withdrawn.
fn vouch_again(vouching: &mut bool, lease_tx: &watch::Sender<Option<i64>>, lease: i64) {
    if !*vouching {
        *vouching = true;
        lease_tx.send_replace(Some(lease));
        tracing::info!(lease, "etcd session confirmed again");
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
