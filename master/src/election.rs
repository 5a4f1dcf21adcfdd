//! Leader election among masters (ARCHITECTURE §7) with etcd's election API.
//!
//! Each master holds a lease and campaigns on `/cron/master`. The winner
//! runs the leader-only work (the alert loop) under a token that is
//! cancelled the moment leadership may be lost:
//!
//! - the keep-alive stream fails, or no keep-alive has been confirmed for
//!   `ttl - margin` (etcd could expire the lease at `ttl`, so the old leader
//!   stops *before* a new one can win — two masters never alert at once);
//! - the leader key is no longer ours (checked by its create revision, not
//!   by a local timer alone: etcd resets lease TTLs on its own leader
//!   changes, and a lease can be revoked by an operator).
//!
//! Leader-only work also asks [`Leadership::is_valid`] right before every
//! delivery, which covers a process that was paused (SIGSTOP, VM freeze)
//! and wakes up after its lease expired.

use rcron_shared::backoff::Backoff;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, LeaderKey, ProclaimOptions, ResignOptions};
use rcron_shared::Keys;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
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
    last_ok: watch::Receiver<Instant>,
    safe_for: Duration,
    token: CancellationToken,
    key: LeaderKey,
}

impl Leadership {
    /// True while no other master can have won: the last confirmed
    /// keep-alive is recent enough and leadership was not given up.
    pub fn is_valid(&self) -> bool {
        !self.token.is_cancelled() && self.last_ok.borrow().elapsed() < self.safe_for
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
    let ttl = Duration::from_secs(settings.ttl_secs as u64);
    // Stop leading a safe margin before etcd could expire the lease.
    let safe_for = ttl.saturating_sub((ttl / 5).max(Duration::from_millis(500)));
    let mut backoff = Backoff::etcd();
    while !shutdown.is_cancelled() {
        let lease = match client.clone().lease_grant(settings.ttl_secs, None).await {
            Ok(l) => l.id(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot get an election lease; retrying");
                if !backoff.wait_or_cancel(&shutdown).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        let (last_ok_tx, last_ok) = watch::channel(Instant::now());
        let keepalive_token = shutdown.child_token();
        let keepalive = tokio::spawn(keep_alive(
            client.clone(),
            lease,
            ttl,
            last_ok_tx,
            keepalive_token.clone(),
        ));

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
            last_ok: last_ok.clone(),
            safe_for,
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
            last_ok,
            safe_for,
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

/// Cancels `token` when the lease may be lost or the key is not ours.
/// Returns once `token` is cancelled (by itself or by shutdown).
async fn watch_leadership(
    client: Client,
    key: LeaderKey,
    last_ok: watch::Receiver<Instant>,
    safe_for: Duration,
    token: CancellationToken,
) {
    let period = (safe_for / 4).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        if last_ok.borrow().elapsed() >= safe_for {
            tracing::warn!("no keep-alive confirmed in time; giving up leadership");
            token.cancel();
            return;
        }
        let check = tokio::time::timeout(period, client.clone().get(key.key(), None)).await;
        if let Ok(Ok(resp)) = check {
            let ours = resp
                .kvs()
                .first()
                .is_some_and(|kv| kv.create_revision() == key.rev());
            if !ours {
                tracing::warn!("election key is no longer ours; giving up leadership");
                token.cancel();
                return;
            }
        }
        // An unanswered check is left to the keep-alive deadline above.
    }
}

/// Keeps `lease` alive, publishing when each keep-alive *request* that got
/// an answer was sent (the lease lives `ttl` from then at least). Cancels
/// `token` when the lease is gone.
async fn keep_alive(
    client: Client,
    lease: i64,
    ttl: Duration,
    last_ok: watch::Sender<Instant>,
    token: CancellationToken,
) {
    let result: Result<(), etcd_client::Error> = async {
        let (mut keeper, mut stream) = client.clone().lease_keep_alive(lease).await?;
        let period = (ttl / 4).max(Duration::from_millis(200));
        loop {
            let sent = Instant::now();
            keeper.keep_alive().await?;
            let answer = tokio::select! {
                () = token.cancelled() => return Ok(()),
                a = tokio::time::timeout(period, stream.message()) => a,
            };
            match answer {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                    let _ = last_ok.send(sent);
                }
                Ok(Ok(_)) => {
                    return Err(etcd_client::Error::LeaseKeepAliveError(
                        "lease expired".into(),
                    ));
                }
                Ok(Err(e)) => return Err(e),
                // A late answer could not be told apart from the next one:
                // treat the lease as lost rather than overestimate it.
                Err(_) => {
                    return Err(etcd_client::Error::LeaseKeepAliveError(
                        "no keep-alive answer in time".into(),
                    ));
                }
            }
            tokio::select! {
                () = token.cancelled() => return Ok(()),
                () = tokio::time::sleep(period.saturating_sub(sent.elapsed())) => {}
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "election lease lost");
    }
    token.cancel();
}
