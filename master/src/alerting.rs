//! The leader's alert loop (ARCHITECTURE §7): deliver every warning under
//! `/cron/warn/` to every sink, then delete it.
//!
//! On taking over it first reads every existing warning (the backlog a dead
//! leader left), then watches from the next revision; on a watch error it
//! reads again. Each warning is handled by its own task: every sink is
//! retried with backoff independently (a dead SMTP server does not hold back
//! webhooks), and only when all have accepted it is the key deleted — in a
//! transaction on its mod revision, retried even after leadership ends (an
//! etcd failover can end it between delivery and delete; the master then
//! skips the warning if it leads again). A master whose leadership ends
//! waits up to 5 s for those deletions before it gives up its lease, so
//! the next leader does not find them. Nothing reported is lost across
//! leader changes; a duplicate can only come from a crash between delivery
//! and delete, or etcd unreachable past that wait and the lease's TTL, and
//! carries the same idempotency key (the run id).
//!
//! Storm control: at most one alert per job per window; the warnings in
//! between are deleted undelivered and counted, and the next alert says how
//! many were suppressed.

use rcron_shared::backoff::Backoff;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, EventType, KeyValue, Txn, TxnOp, WatchOptions};
use rcron_alerts::{Alert, AlertSink};
use rcron_shared::{JobName, Keys, Warning};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::election::Leadership;
use crate::store::JobStore;
use rcron_shared::listing::{Read, list_prefix};

/// Warnings delivered at the same time, at most.
const MAX_IN_FLIGHT: usize = 64;
/// Longest wait between two tries of one sink.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Counters for the cluster status and metrics.
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Deliveries accepted by a sink.
    pub sent: AtomicU64,
    /// Delivery attempts that failed (each is retried).
    pub failed: AtomicU64,
    /// Warnings dropped by storm control.
    pub suppressed: AtomicU64,
}

/// Everything the alert loop needs.
pub struct Alerting {
    /// Request client (with a timeout).
    pub client: Client,
    /// Client for the watch (no request timeout).
    pub watch_client: Client,
    /// Key layout.
    pub keys: Keys,
    /// Jobs, for their `alertEmails`.
    pub jobs: JobStore,
    /// Where alerts go.
    pub sinks: Vec<Arc<dyn AlertSink>>,
    /// Storm-control window (zero = off).
    pub window: Duration,
    /// Base URL of the web admin.
    pub public_url: Option<String>,
    /// Counters.
    pub stats: Arc<AlertStats>,
    /// This master's id, written into every alert.
    pub master_id: String,
    /// Delivered warnings whose key is still being deleted. The deletion
    /// goes on after leadership ends (see [`Alerting::forget_delivered`]),
    /// and a master that leads again skips these instead of sending them
    /// twice.
    pub undeleted: Arc<std::sync::Mutex<HashSet<String>>>,
}

/// How long a delivered warning's deletion is retried (etcd unreachable).
const DELETE_DELIVERED_FOR: Duration = Duration::from_secs(120);
/// Longest wait between two tries of such a deletion: once etcd answers
/// again it lands within this.
const DELETE_RETRY_MAX: Duration = Duration::from_secs(1);
/// How long a master that stops leading waits for the deletions of the
/// warnings it delivered before it gives up its lease.
const HAND_OVER_WITHIN: Duration = Duration::from_secs(5);

/// Storm-control memory of one job.
struct JobWindow {
    last_sent: Instant,
    suppressed: u32,
}

struct Pending {
    key: String,
    mod_revision: i64,
    warning: Warning,
}

impl Alerting {
    /// Delivers warnings until leadership ends.
    pub async fn run(self: Arc<Self>, leadership: Leadership) {
        let token = leadership.token().clone();
        let mut windows: HashMap<JobName, JobWindow> = HashMap::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut tasks = JoinSet::new();
        let mut backoff = Backoff::etcd();

        'outer: while !token.is_cancelled() {
            // Backlog first, then changes from the next revision on.
            let (backlog, revision) = match self.list().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read pending warnings; retrying");
                    if !backoff.wait_or_cancel(&token).await {
                        break;
                    }
                    continue;
                }
            };
            if !backlog.is_empty() {
                tracing::info!(warnings = backlog.len(), "delivering pending warnings");
            }
            for p in backlog {
                self.dispatch(
                    p,
                    &leadership,
                    &mut windows,
                    &mut in_flight,
                    &slots,
                    &done_tx,
                    &mut tasks,
                )
                .await;
            }
            let mut stream = match self
                .watch_client
                .clone()
                .watch(
                    self.keys.warn_dir(),
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(revision + 1),
                    ),
                )
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch warnings; reading them again");
                    continue;
                }
            };
            backoff.reset();
            loop {
                tokio::select! {
                    () = token.cancelled() => break 'outer,
                    Some(key) = done_rx.recv() => { in_flight.remove(&key); }
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    msg = stream.message() => match msg {
                        Ok(Some(resp)) if !resp.canceled() => {
                            for ev in resp.events() {
                                if ev.event_type() != EventType::Put {
                                    continue;
                                }
                                if let Some(p) = ev.kv().and_then(|kv| self.pending(kv)) {
                                    self.dispatch(p, &leadership, &mut windows, &mut in_flight, &slots, &done_tx, &mut tasks).await;
                                }
                            }
                        }
                        Ok(_) => { tracing::warn!("warning watch ended; reading again"); break; }
                        Err(e) => { tracing::warn!(error = %e, "warning watch failed; reading again"); break; }
                    }
                }
            }
        }
        // Leadership is over: stop every delivery at once.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        self.hand_over().await;
    }

    /// Waits (at most [`HAND_OVER_WITHIN`]) until the warnings this
    /// master delivered are deleted. Its lease is revoked only after this
    /// returns, so the next leader, which can win only then, does not list
    /// and send them again (seen when an etcd leader change ended
    /// leadership between an alert and its deletion).
    async fn hand_over(&self) {
        let until = Instant::now() + HAND_OVER_WITHIN;
        loop {
            let pending = self.undeleted.lock().map(|set| set.len()).unwrap_or(0);
            if pending == 0 {
                return;
            }
            if Instant::now() >= until {
                tracing::warn!(
                    pending,
                    "leadership handed over with delivered warnings not yet deleted; the next leader may send them again"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn list(&self) -> Result<(Vec<Pending>, i64), etcd_client::Error> {
        let listing = list_prefix(&self.client, &self.keys.warn_dir(), Read::Values).await?;
        let revision = listing.revision;
        Ok((
            listing
                .kvs
                .iter()
                .filter_map(|kv| self.pending(kv))
                .collect(),
            revision,
        ))
    }

    fn pending(&self, kv: &KeyValue) -> Option<Pending> {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let (job, run_id) = self.keys.parse_warn(kv.key())?;
        let warning = match serde_json::from_slice::<Warning>(kv.value()) {
            Ok(w) => w,
            Err(e) => {
                // Still worth telling someone: build what the key says.
                tracing::warn!(key = %key, error = %e, "unreadable warning; alerting with what its key says");
                Warning {
                    job_name: job,
                    run_id,
                    status: rcron_shared::RunStatus::Failed,
                    command: String::new(),
                    exit_code: None,
                    err: format!("unreadable warning: {e}"),
                    output_tail: String::new(),
                    plan_time: 0,
                    start_time: 0,
                    end_time: 0,
                    worker: String::new(),
                    attempt: 0,
                    kind: rcron_shared::WarningKind::Run,
                }
            }
        };
        Some(Pending {
            key,
            mod_revision: kv.mod_revision(),
            warning,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        self: &Arc<Self>,
        p: Pending,
        leadership: &Leadership,
        windows: &mut HashMap<JobName, JobWindow>,
        in_flight: &mut HashSet<String>,
        slots: &Arc<Semaphore>,
        done: &mpsc::UnboundedSender<String>,
        tasks: &mut JoinSet<()>,
    ) {
        if self.is_undeleted(&p.key) {
            return; // delivered already; its deletion is under way
        }
        if !in_flight.insert(p.key.clone()) {
            return; // already being delivered
        }
        let now = Instant::now();
        let mut suppressed = 0;
        if !self.window.is_zero() {
            match windows.get_mut(&p.warning.job_name) {
                Some(w) if now.duration_since(w.last_sent) < self.window => {
                    w.suppressed += 1;
                    self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(job = %p.warning.job_name, run_id = %p.warning.run_id, "alert suppressed (storm control)");
                    let this = self.clone();
                    let leadership = leadership.clone();
                    let done = done.clone();
                    tasks.spawn(async move {
                        this.delete(&p, &leadership).await;
                        let _ = done.send(p.key);
                    });
                    return;
                }
                Some(w) => {
                    suppressed = std::mem::take(&mut w.suppressed);
                    w.last_sent = now;
                }
                None => {
                    windows.insert(
                        p.warning.job_name.clone(),
                        JobWindow {
                            last_sent: now,
                            suppressed: 0,
                        },
                    );
                }
            }
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let this = self.clone();
        let leadership = leadership.clone();
        let done = done.clone();
        tasks.spawn(async move {
            this.deliver(&p, suppressed, &leadership).await;
            drop(slot);
            let _ = done.send(p.key);
        });
    }

    fn is_undeleted(&self, key: &str) -> bool {
        self.undeleted
            .lock()
            .map(|set| set.contains(key))
            .unwrap_or(false)
    }

    /// Delivers to every sink (each retried on its own), then deletes.
    async fn deliver(self: &Arc<Self>, p: &Pending, suppressed: u32, leadership: &Leadership) {
        let job_emails = match self.jobs.get(&p.warning.job_name).await {
            Ok(Some(job)) => job.alert_emails,
            _ => Vec::new(),
        };
        let alert = Alert {
            warning: p.warning.clone(),
            suppressed,
            public_url: self.public_url.clone(),
            job_emails,
            sent_by: self.master_id.clone(),
        };
        let all = self
            .sinks
            .iter()
            .map(|sink| self.deliver_to(sink.as_ref(), &alert, leadership));
        let delivered = futures::future::join_all(all).await;
        if delivered.iter().all(|ok| *ok) {
            if let Ok(mut set) = self.undeleted.lock() {
                set.insert(p.key.clone());
            }
            // Not tied to this leadership: etcd failing over can end it
            // right after the alert went out, and the next leader (this
            // master again, or another) would send it a second time.
            let this = self.clone();
            let (key, mod_revision) = (p.key.clone(), p.mod_revision);
            tokio::spawn(async move { this.forget_delivered(key, mod_revision).await });
        }
    }

    /// Deletes a delivered warning unless it changed since, retrying for
    /// [`DELETE_DELIVERED_FOR`] whoever leads meanwhile; past that the key
    /// stays and is delivered again (twice rather than never).
    async fn forget_delivered(&self, key: String, mod_revision: i64) {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                mod_revision,
            )])
            .and_then([TxnOp::delete(key.clone(), None)]);
        let give_up = Instant::now() + DELETE_DELIVERED_FOR;
        let mut backoff = Backoff::new(Duration::from_millis(100), DELETE_RETRY_MAX);
        loop {
            match self.client.clone().txn(txn.clone()).await {
                Ok(_) => break,
                Err(e) if Instant::now() < give_up => {
                    tracing::warn!(key = %key, error = %e, "cannot delete delivered warning; retrying");
                    backoff.wait().await;
                }
                Err(e) => {
                    tracing::error!(key = %key, error = %e, "delivered warning not deleted; it will be delivered again");
                    break;
                }
            }
        }
        if let Ok(mut set) = self.undeleted.lock() {
            set.remove(&key);
        }
    }

    /// Tries one sink until it accepts the alert; false if leadership ended first.
    async fn deliver_to(
        &self,
        sink: &dyn AlertSink,
        alert: &Alert,
        leadership: &Leadership,
    ) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(500), MAX_BACKOFF);
        loop {
            if !leadership.is_valid() {
                return false;
            }
            match sink.send(alert).await {
                Ok(()) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(sink = sink.name(), job = %alert.warning.job_name, run_id = %alert.warning.run_id, "alert delivered");
                    return true;
                }
                Err(e) if !e.is_retryable() => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(sink = sink.name(), job = %alert.warning.job_name, error = %e, "alert cannot be delivered by this sink; giving up on it");
                    return true;
                }
                Err(e) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(sink = sink.name(), job = %alert.warning.job_name, run_id = %alert.warning.run_id,
                        error = %e, retry_in_ms = backoff.current().as_millis() as u64, "alert delivery failed; retrying");
                    if !backoff.wait_or_cancel(leadership.token()).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Deletes the warning if it is unchanged and this master still leads.
    async fn delete(&self, p: &Pending, leadership: &Leadership) {
        let txn = Txn::new()
            .when([
                Compare::mod_revision(p.key.clone(), CompareOp::Equal, p.mod_revision),
                leadership.still_leads(),
            ])
            .and_then([TxnOp::delete(p.key.clone(), None)]);
        let mut backoff = Backoff::etcd();
        while leadership.is_valid() {
            match self.client.clone().txn(txn.clone()).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(key = %p.key, error = %e, "cannot delete delivered warning; retrying");
                    backoff.wait().await;
                }
            }
        }
    }
}
