//! Placement: what a run costs etcd, and how runs spread over the workers,
//! at several worker counts, with ranking off (`rank_delay_ms = 0`: every
//! worker tries every tick at once, as before placement) and on (the
//! default `rank_delay_ms`).
//!
//! Each row starts its own workers in this process ([`Workers`]: fresh
//! prefix and database), saves the jobs, lets the workers settle, and
//! measures one window: etcd's own counters (`/metrics`: transactions and
//! raft proposals, whoever caused them, registrations included), the run
//! log (runs, duplicates, misses, runs per worker, start lag) and CPU
//! time from `/proc`. The workers are stopped before the next row starts.

use std::collections::HashMap;
use std::time::Duration;

use crate::cluster::{
    Services, Workers, compact_and_defragment, connect, cpu_snapshot, etcd_metric, millis,
    next_second, p50_p99,
};

/// Time for every worker's watches to list the jobs and each other, and
/// for every job's first tick (which creates its fired marker) to pass.
const SETTLE: Duration = Duration::from_secs(5);

/// etcd's counter of transactions (those with more than one operation,
/// compares included, as etcd counts them).
pub(crate) const TXN_TOTAL: &str = "etcd_mvcc_txn_total";

/// etcd's count of raft proposals committed: every write, of any kind.
pub(crate) const PROPOSALS: &str = "etcd_server_proposals_committed_total";

/// One worker count in one mode.
pub(crate) struct Row {
    pub(crate) workers: usize,
    /// 0 = ranking off (before).
    pub(crate) rank_delay_ms: u64,
    pub(crate) planned: u64,
    /// Ticks that ran (distinct job and plan time).
    pub(crate) ran: u64,
    pub(crate) duplicates: u64,
    pub(crate) missed: u64,
    pub(crate) txn_per_run: f64,
    pub(crate) proposals_per_run: f64,
    /// Runs per worker: fewest, mean, most (workers that ran nothing count).
    pub(crate) runs_per_worker: (u64, f64, u64),
    /// Planned time to process start, p50 and p99 (ms).
    pub(crate) start_lag_ms: (i64, i64),
    /// CPU ms per run of etcd, and of this process (all the workers).
    pub(crate) etcd_cpu_ms: f64,
    pub(crate) workers_cpu_ms: f64,
}

impl Row {
    /// The busiest worker's runs over the mean.
    pub(crate) fn busiest_over_mean(&self) -> f64 {
        self.runs_per_worker.2 as f64 / self.runs_per_worker.1.max(f64::MIN_POSITIVE)
    }

    /// "before" or "after", as the report names the modes.
    pub(crate) fn mode(&self) -> String {
        if self.rank_delay_ms == 0 {
            "before (rank_delay_ms = 0)".to_string()
        } else {
            format!("after (rank_delay_ms = {})", self.rank_delay_ms)
        }
    }
}

/// `jobs` jobs running `true` every second on `count` workers with
/// `rank_delay_ms`, measured for `seconds`.
pub(crate) async fn measure(
    s: &Services,
    http: &reqwest::Client,
    count: usize,
    rank_delay_ms: u64,
    jobs: usize,
    seconds: u64,
) -> anyhow::Result<Row> {
    let mut etcd = connect(&s.etcd).await?;
    // Every row starts from the same compacted store, whatever ran before.
    compact_and_defragment(etcd.clone()).await?;
    let workers = Workers::start(s, count, |cfg| {
        cfg.rank_delay_ms = rank_delay_ms;
        // Well above the jobs due at once: no worker is ever full, so
        // neither mode is shaped by queueing for a slot.
        cfg.max_concurrency = 256;
    });
    // Ranking needs every peer in every mirror before the first tick.
    workers
        .registered(&mut etcd, Duration::from_secs(30))
        .await?;
    workers.put_jobs(&mut etcd, "placement", jobs).await?;
    tokio::time::sleep(SETTLE).await;

    let from = next_second().await;
    let before = (
        etcd_metric(http, &s.etcd, TXN_TOTAL).await?,
        etcd_metric(http, &s.etcd, PROPOSALS).await?,
        cpu_snapshot(s),
    );
    let to = from + seconds as i64 * 1000;
    // The same length as the plan-time window; work of the window's first
    // tick that falls before it is offset by the last tick's after it.
    let now = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis((to - now).max(0) as u64)).await;
    let after = (
        etcd_metric(http, &s.etcd, TXN_TOTAL).await?,
        etcd_metric(http, &s.etcd, PROPOSALS).await?,
        cpu_snapshot(s),
    );
    // Runs of the last ticks (ranked ones included) start a little later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ids = workers.ids.clone();
    let docs = workers.stop(s, from, to).await?;

    let mut per_tick: HashMap<(String, i64), u64> = HashMap::new();
    let mut per_worker: HashMap<String, u64> = ids.into_iter().map(|id| (id, 0)).collect();
    let mut start_lags = Vec::with_capacity(docs.len());
    for d in &docs {
        let job = d.get_str("jobName").unwrap_or_default().to_string();
        let plan = millis(d, "planTime");
        start_lags.push(millis(d, "startTime") - plan);
        *per_tick.entry((job, plan)).or_default() += 1;
        *per_worker
            .entry(d.get_str("worker").unwrap_or_default().to_string())
            .or_default() += 1;
    }
    let planned = jobs as u64 * seconds;
    let ran = per_tick.len() as u64;
    let per_run = |delta: f64| delta / ran.max(1) as f64;
    let min = per_worker.values().copied().min().unwrap_or_default();
    let max = per_worker.values().copied().max().unwrap_or_default();
    let mean = docs.len() as f64 / per_worker.len().max(1) as f64;
    Ok(Row {
        workers: count,
        rank_delay_ms,
        planned,
        ran,
        duplicates: per_tick.values().map(|n| n - 1).sum(),
        missed: planned.saturating_sub(ran),
        txn_per_run: per_run(after.0 - before.0),
        proposals_per_run: per_run(after.1 - before.1),
        runs_per_worker: (min, mean, max),
        start_lag_ms: p50_p99(start_lags),
        etcd_cpu_ms: per_run((after.2[2] - before.2[2]) * 1000.0),
        workers_cpu_ms: per_run((after.2[0] - before.2[0]) * 1000.0),
    })
}
