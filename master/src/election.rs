//! Leader election among masters (ARCHITECTURE §7) with etcd's election API.
//!
//! Each master holds a lease and campaigns on `/cron/master`. The winner
//! runs the leader-only work (the alert loop) under a token that is
//! cancelled the moment leadership may be lost:
//!
//! - etcd says the lease is gone, or the instant until which the lease is
//!   confirmed ([`rcron_shared::lease::keep_alive`]: the send time of the
//!   last answered keep-alive plus its TTL) is less than a margin away
//!   (etcd could expire the lease then, so the old leader stops *before* a
//!   new one can win — two masters never alert at once). A broken
//!   keep-alive stream is opened again meanwhile: leadership survives an
//!   etcd hiccup shorter than the TTL minus the margin;
//! - the leader key is no longer ours (checked by its create revision, not
//!   by a local timer alone: etcd resets lease TTLs on its own leader
//!   changes, and a lease can be revoked by an operator).
//!
//! Leader-only work also asks [`Leadership::is_valid`] right before every
//! delivery, which covers a process that was paused (SIGSTOP, VM freeze)
//! and wakes up after its lease expired.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Client, LeaderKey, ProclaimOptions, ResignOptions};
use rcron_shared::Keys;
use rcron_shared::backoff::Backoff;
use rcron_shared::lease::{self, LeaseEnd};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a master announces on its election key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MasterInfo {
    /// Unique master id.
    pub id: String,
    /// URL it serves at.
    pub url: String,
    /// When it started (ms).
    pub start_time: i64,
    /// When it became leader (ms), once it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_since: Option<i64>,
    /// The zone it shows jobs without `timezone` in (IANA name).
    #[serde(default)]
    pub timezone: String,
}

/// This master's view of its own leadership, shared with the API.
#[derive(Debug, Default)]
pub struct LeaderState {
    leader: AtomicBool,
    since_ms: AtomicI64,
    changes: AtomicU64,
}

impl LeaderState {
    /// Whether this master leads now.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// How many times this master became or stopped being leader.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Since when it leads (ms), if it does.
    pub fn since_ms(&self) -> Option<i64> {
        self.is_leader()
            .then(|| self.since_ms.load(Ordering::Relaxed))
    }

    fn set(&self, leader: bool) {
        if leader {
            self.since_ms
                .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        }
        if self.leader.swap(leader, Ordering::SeqCst) != leader {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Lets leader-only work check, right before acting, that the lease is
/// certainly still alive.
#[derive(Clone)]
pub struct Leadership {
    confirmed: watch::Receiver<Instant>,
    margin: Duration,
    token: CancellationToken,
    key: LeaderKey,
}

impl Leadership {
    /// True while no other master can have won: the lease is confirmed for
    /// longer than the margin and leadership was not given up.
    pub fn is_valid(&self) -> bool {
        !self.token.is_cancelled()
            && Instant::now() < deadline(*self.confirmed.borrow(), self.margin)
    }

    /// Cancelled when leadership is (or may be) lost.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The election key this master holds (for ownership checks in transactions).
    pub fn key(&self) -> &LeaderKey {
        &self.key
    }

    /// The transaction condition "this master still leads": its election
    /// key is still the one it created.
    pub fn still_leads(&self) -> etcd_client::Compare {
        etcd_client::Compare::create_revision(
            self.key.key().to_vec(),
            etcd_client::CompareOp::Equal,
            self.key.rev(),
        )
    }
}

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct ElectionSettings {
    /// Lease TTL in seconds.
    pub ttl_secs: i64,
    /// What this master announces.
    pub info: MasterInfo,
}

/// Campaigns, leads, and campaigns again, until `shutdown`. While leading
/// it runs `lead(leadership)` and waits for it to return after the token
/// is cancelled.
pub async fn run<F, Fut>(
    client: Client,
    keys: Keys,
    settings: ElectionSettings,
    state: Arc<LeaderState>,
    shutdown: CancellationToken,
    lead: F,
) where
    F: Fn(Leadership) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let name = keys.master_election();
    let timing = Timing::new(settings.ttl_secs);
    let mut backoff = Backoff::etcd();
    while !shutdown.is_cancelled() {
        let (lease, confirmed_until) = match lease::grant(&client, settings.ttl_secs).await {
            Ok(granted) => granted,
            Err(e) => {
                tracing::warn!(error = %e, "cannot get an election lease; retrying");
                if !backoff.wait_or_cancel(&shutdown).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        let (confirmed_tx, confirmed) = watch::channel(confirmed_until);
        let keepalive_token = shutdown.child_token();
        let keepalive = tokio::spawn(keep_alive(
            client.clone(),
            lease,
            timing.period,
            confirmed_tx,
            keepalive_token.clone(),
        ));
        let lease = lease.id;

        let value = serde_json::to_string(&settings.info).unwrap_or_default();
        let campaign = async { client.clone().campaign(name.clone(), value, lease).await };
        let won = tokio::select! {
            r = campaign => r,
            () = keepalive_token.cancelled() => Err(etcd_client::Error::LeaseKeepAliveError("lease lost while campaigning".into())),
            () = shutdown.cancelled() => Err(etcd_client::Error::ElectError("shutting down".into())),
        };
        let key = match won.map(|mut r| r.take_leader()) {
            Ok(Some(key)) => key,
            Ok(None) | Err(_) if shutdown.is_cancelled() => {
                keepalive_token.cancel();
                let _ = keepalive.await;
                let _ = client.clone().lease_revoke(lease).await;
                return;
            }
            other => {
                if let Err(e) = other {
                    tracing::warn!(error = %e, "campaign failed; campaigning again");
                }
                keepalive_token.cancel();
                let _ = keepalive.await;
                let _ = client.clone().lease_revoke(lease).await;
                backoff.wait().await;
                continue;
            }
        };

        let leader_token = keepalive_token.child_token();
        let leadership = Leadership {
            confirmed: confirmed.clone(),
            margin: timing.margin,
            token: leader_token.clone(),
            key: key.clone(),
        };
        state.set(true);
        tracing::info!(master = %settings.info.id, "became leader");
        let mut info = settings.info.clone();
        info.leader_since = Some(chrono::Utc::now().timestamp_millis());
        let proclaim = ProclaimOptions::new().with_leader(key.clone());
        if let Err(e) = client
            .clone()
            .proclaim(
                serde_json::to_string(&info).unwrap_or_default(),
                Some(proclaim),
            )
            .await
        {
            tracing::warn!(error = %e, "cannot announce leadership time");
        }

        let watchdog = watch_leadership(
            client.clone(),
            key.clone(),
            confirmed,
            timing,
            leader_token.clone(),
        );
        tokio::join!(lead(leadership), watchdog);
        state.set(false);
        tracing::info!(master = %settings.info.id, "no longer leader");

        keepalive_token.cancel();
        let _ = keepalive.await;
        if shutdown.is_cancelled() {
            let _ = client
                .clone()
                .resign(Some(ResignOptions::new().with_leader(key)))
                .await;
        }
        let _ = client.clone().lease_revoke(lease).await;
    }
}

/// Timings derived from the election TTL.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Between keep-alives.
    period: Duration,
    /// How long before the lease could expire unconfirmed leadership ends:
    /// time for leader-only work to stop before another master can win.
    margin: Duration,
}

impl Timing {
    fn new(ttl_secs: i64) -> Self {
        let ttl = Duration::from_secs(ttl_secs.max(1) as u64);
        let margin = (ttl / 5).max(Duration::from_millis(500));
        Self {
            period: (ttl / 4).max(Duration::from_millis(200)),
            margin: margin.min(ttl),
        }
    }
}

/// When leadership must end if nothing confirms the lease beyond
/// `confirmed_until`.
fn deadline(confirmed_until: Instant, margin: Duration) -> Instant {
    // An instant too early to subtract from is in the past anyway.
    confirmed_until
        .checked_sub(margin)
        .unwrap_or_else(Instant::now)
}

/// Cancels `token` when the lease may be lost or the key is not ours.
/// Returns once `token` is cancelled (by itself or by shutdown).
async fn watch_leadership(
    client: Client,
    key: LeaderKey,
    confirmed: watch::Receiver<Instant>,
    timing: Timing,
    token: CancellationToken,
) {
    let why = tokio::select! {
        () = token.cancelled() => return,
        () = lease_deadline(confirmed, timing.margin) => "the election lease is not confirmed in time",
        () = key_lost(&client, &key, timing.period) => "the election key is no longer ours",
    };
    tracing::warn!(reason = why, "giving up leadership");
    token.cancel();
}

/// Returns once the lease is confirmed for less than `margin`.
async fn lease_deadline(mut confirmed: watch::Receiver<Instant>, margin: Duration) {
    loop {
        let at = deadline(*confirmed.borrow_and_update(), margin);
        tokio::select! {
            () = tokio::time::sleep_until(at) => return,
            changed = confirmed.changed() => {
                if changed.is_err() {
                    // The keeper ended (the lease is gone, or shutdown):
                    // nothing will confirm the lease any more.
                    let last = deadline(*confirmed.borrow(), margin);
                    tokio::time::sleep_until(last).await;
                    return;
                }
            }
        }
    }
}

/// Returns once etcd shows the election key with another create revision
/// (or none). A check etcd does not answer proves nothing either way: the
/// lease deadline covers that.
async fn key_lost(client: &Client, key: &LeaderKey, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let check = tokio::time::timeout(period, client.clone().get(key.key(), None)).await;
        if let Ok(Ok(resp)) = check {
            let ours = resp
                .kvs()
                .first()
                .is_some_and(|kv| kv.create_revision() == key.rev());
            if !ours {
                return;
            }
        }
    }
}

/// Keeps the election lease alive; cancels `token` when etcd says it is
/// gone, so a campaign or leadership on it ends at once.
async fn keep_alive(
    client: Client,
    lease: lease::Lease,
    period: Duration,
    confirmed: watch::Sender<Instant>,
    token: CancellationToken,
) {
    match lease::keep_alive(client, lease, period, confirmed, token.clone()).await {
        LeaseEnd::Gone => {
            tracing::warn!(
                lease = lease.id,
                "election lease lost (etcd says it is gone)"
            );
            token.cancel();
        }
        LeaseEnd::Cancelled => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_ends_a_margin_before_the_lease_could_expire() {
        let timing = Timing::new(5);
        assert_eq!(timing.period, Duration::from_millis(1250));
        assert_eq!(timing.margin, Duration::from_secs(1));
        let short = Timing::new(2);
        assert_eq!(short.period, Duration::from_millis(500));
        assert_eq!(short.margin, Duration::from_millis(500));
        let now = Instant::now();
        assert_eq!(
            deadline(now + Duration::from_secs(5), timing.margin),
            now + Duration::from_secs(4)
        );
    }

    // Real time (this crate's tests run without tokio's test clock): the
    // assertions are on what must never happen early.
    #[tokio::test]
    async fn the_deadline_moves_with_each_confirmation() {
        let start = Instant::now();
        let (tx, rx) = watch::channel(start + Duration::from_millis(1000));
        let waiting = tokio::spawn(lease_deadline(rx, Duration::from_millis(100)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send_replace(start + Duration::from_millis(1500));
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the deadline comes")
            .expect("join");
        assert!(
            start.elapsed() >= Duration::from_millis(1400),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_closed_keeper_leaves_the_last_deadline_standing() {
        let start = Instant::now();
        let (tx, rx) = watch::channel(start + Duration::from_millis(300));
        drop(tx);
        tokio::time::timeout(
            Duration::from_secs(10),
            lease_deadline(rx, Duration::from_millis(100)),
        )
        .await
        .expect("the deadline comes");
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
    }
}
