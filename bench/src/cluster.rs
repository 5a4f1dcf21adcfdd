//! The cluster benchmarks, against a real etcd and MongoDB-wire server:
//! the raw etcd write-transaction rate with rcron's own client, and the
//! end-to-end run rate of two workers raised step by step until ticks are
//! missed. [`Workers`] (in-process workers on a prefix and database of
//! their own) is shared with the placement and run-request benchmarks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use rcron_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

use crate::procfs::{Cpu, cpu_secs};

/// Where the services are.
pub(crate) struct Services {
    pub(crate) etcd: String,
    pub(crate) mongo: String,
    /// Their processes, when known, for CPU accounting.
    pub(crate) etcd_pid: Option<u32>,
    pub(crate) mongo_pid: Option<u32>,
}

/// CPU time (ms) spent per run during an end-to-end step, by who spent it.
#[derive(Default, Clone, Copy)]
pub(crate) struct CpuPerRun {
    /// The two workers (this process).
    pub(crate) workers: f64,
    /// The commands: every `sh -c true`, from fork to exit (this process's
    /// reaped children).
    pub(crate) commands: f64,
    pub(crate) etcd: f64,
    pub(crate) log_store: f64,
}

impl CpuPerRun {
    pub(crate) fn total(&self) -> f64 {
        self.workers + self.commands + self.etcd + self.log_store
    }
}

/// CPU seconds so far of the workers, their commands, etcd, the log store.
pub(crate) fn cpu_snapshot(s: &Services) -> [f64; 4] {
    let server = |pid: Option<u32>| pid.map_or(f64::NAN, |p| cpu_secs(&p.to_string(), Cpu::Own));
    [
        cpu_secs("self", Cpu::Own),
        cpu_secs("self", Cpu::Children),
        server(s.etcd_pid),
        server(s.mongo_pid),
    ]
}

/// Write transactions per second, one at a time and with `in_flight` at once.
pub(crate) struct EtcdLimit {
    pub(crate) sequential: f64,
    pub(crate) concurrent: f64,
    pub(crate) in_flight: usize,
}

/// One step of the end-to-end run.
pub(crate) struct Step {
    pub(crate) jobs: usize,
    pub(crate) planned: u64,
    pub(crate) ran: u64,
    pub(crate) duplicates: u64,
    pub(crate) missed: u64,
    pub(crate) runs_per_sec: f64,
    pub(crate) records_per_sec: f64,
    pub(crate) etcd_writes_per_run: f64,
    /// Planned time to process start, p50 and p99 (ms).
    pub(crate) start_lag_ms: (i64, i64),
    /// Process start to end, p50 and p99 (ms).
    pub(crate) duration_ms: (i64, i64),
    /// Where the machine's CPU went, per run.
    pub(crate) cpu_per_run: CpuPerRun,
}

pub(crate) fn p50_p99(mut v: Vec<i64>) -> (i64, i64) {
    v.sort_unstable();
    let at = |q: f64| {
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(-1)
    };
    (at(0.5), at(0.99))
}

pub(crate) async fn connect(endpoint: &str) -> anyhow::Result<Client> {
    Ok(Client::connect([endpoint], None).await?)
}

/// Removes what a benchmark wrote under `prefix`.
pub(crate) async fn delete_prefix(endpoint: &str, prefix: &str) -> anyhow::Result<()> {
    connect(endpoint)
        .await?
        .delete(
            prefix,
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await?;
    Ok(())
}

/// A client configured as the worker configures its own.
async fn rcron_client(endpoint: &str) -> anyhow::Result<Client> {
    let cfg = rcron_shared::config::EtcdConfig {
        endpoints: vec![endpoint.to_string()],
        ..Default::default()
    };
    Ok(rcron_shared::etcd::connect(&cfg).await?)
}

/// Drops etcd's history and reclaims its file, as production's hourly
/// compaction would: the phases before this one wrote and deleted tens of
/// thousands of keys, and an uncompacted store is measurably slower
/// (the first version of this benchmark measured that, the other way round).
pub(crate) async fn compact_and_defragment(mut client: Client) -> anyhow::Result<()> {
    let revision = client
        .get("/", None)
        .await?
        .header()
        .map_or(0, |h| h.revision());
    client
        .compact(
            revision,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await?;
    client.defragment().await?;
    Ok(())
}

/// The lock transaction's shape (compare on a key, put on success, read
/// on failure), on keys of its own, for `secs` seconds per mode.
pub(crate) async fn etcd_limit(
    s: &Services,
    secs: u64,
    in_flight: usize,
) -> anyhow::Result<EtcdLimit> {
    let client = rcron_client(&s.etcd).await?;
    compact_and_defragment(client.clone()).await?;
    let prefix = format!("/rcron-bench-{}/", uuid::Uuid::now_v7().simple());
    let run = |client: Client, worker: usize, until: Instant, count: Arc<AtomicU64>| {
        let prefix = prefix.clone();
        async move {
            let mut kv = client.kv_client();
            let mut i = 0u64;
            while Instant::now() < until {
                let key = format!("{prefix}{worker}-{i}");
                let txn = Txn::new()
                    .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.clone(), "x", None)])
                    .or_else([TxnOp::get(key, None)]);
                if kv.txn(txn).await.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }
    };
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    run(
        client.clone(),
        0,
        started + Duration::from_secs(secs),
        count.clone(),
    )
    .await;
    let sequential = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();

    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (1..=in_flight)
        .map(|w| tokio::spawn(run(client.clone(), w, until, count.clone())))
        .collect();
    for t in tasks {
        t.await?;
    }
    let concurrent = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    delete_prefix(&s.etcd, &prefix).await?;
    Ok(EtcdLimit {
        sequential,
        concurrent,
        in_flight,
    })
}

/// The sum of every sample of `name` on etcd's own `/metrics` (served on
/// its client URL), e.g. `etcd_mvcc_txn_total`.
pub(crate) async fn etcd_metric(
    http: &reqwest::Client,
    endpoint: &str,
    name: &str,
) -> anyhow::Result<f64> {
    let text = http
        .get(format!("http://{endpoint}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(name))
        .filter(|rest| rest.starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    anyhow::ensure!(!samples.is_empty(), "etcd exports no {name}");
    Ok(samples.iter().sum())
}

async fn revision(client: &mut Client) -> anyhow::Result<i64> {
    let resp = client
        .get("/", Some(GetOptions::new().with_count_only()))
        .await?;
    Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
}

/// In-process workers (`rcron_worker::run`) on a fresh etcd prefix and
/// MongoDB database of their own, so that no step sees another's keys or
/// records.
pub(crate) struct Workers {
    prefix: String,
    db: String,
    /// Their ids, `bench-1` … `bench-N`.
    pub(crate) ids: Vec<String>,
    spill: std::path::PathBuf,
    token: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<Result<(), rcron_worker::Error>>>,
}

impl Workers {
    /// Starts `count` workers, each with its own id and spill directory,
    /// no metrics listener, and `tune` applied to its config last.
    pub(crate) fn start(s: &Services, count: usize, tune: impl Fn(&mut WorkerConfig)) -> Self {
        let prefix = format!("/rcron-bench-{}/", uuid::Uuid::now_v7().simple());
        let db = format!("rcron_bench_{}", uuid::Uuid::now_v7().simple());
        let spill = std::path::PathBuf::from(
            std::env::var("RCRON_BENCH_SPILL")
                .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
        )
        .join(format!("rcron-bench-{}", uuid::Uuid::now_v7().simple()));
        let token = CancellationToken::new();
        let ids: Vec<String> = (1..=count).map(|w| format!("bench-{w}")).collect();
        let tasks = ids
            .iter()
            .enumerate()
            .map(|(w, id)| {
                let mut cfg = WorkerConfig {
                    worker_id: id.clone(),
                    max_concurrency: 4096,
                    spill_dir: spill.join(format!("w{}", w + 1)),
                    http_listen: String::new(),
                    log_batch_size: 500,
                    ..WorkerConfig::default()
                };
                cfg.etcd.endpoints = vec![s.etcd.clone()];
                cfg.etcd.prefix = prefix.clone();
                cfg.mongo.uri = s.mongo.clone();
                cfg.mongo.db = db.clone();
                tune(&mut cfg);
                tokio::spawn(rcron_worker::run(cfg, token.child_token()))
            })
            .collect();
        Self {
            prefix,
            db,
            ids,
            spill,
            token,
            tasks,
        }
    }

    /// The etcd prefix they work under, ending in `/`.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Saves `jobs` jobs named `<stem>-<i>` running `true` every second,
    /// with every other field at its default (`concurrency: forbid`).
    pub(crate) async fn put_jobs(
        &self,
        etcd: &mut Client,
        stem: &str,
        jobs: usize,
    ) -> anyhow::Result<()> {
        for i in 0..jobs {
            etcd.put(
                format!("{}jobs/{stem}-{i}", self.prefix),
                format!(r#"{{"name":"{stem}-{i}","command":"true","cronExpr":"* * * * * * *"}}"#),
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// Waits until every worker is registered under the prefix.
    pub(crate) async fn registered(
        &self,
        etcd: &mut Client,
        within: Duration,
    ) -> anyhow::Result<()> {
        let dir = format!("{}workers/", self.prefix);
        let deadline = Instant::now() + within;
        loop {
            let live = etcd
                .get(
                    dir.as_str(),
                    Some(GetOptions::new().with_prefix().with_count_only()),
                )
                .await?
                .count();
            if live as usize >= self.ids.len() {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{live} of {} workers registered after {within:?}",
                self.ids.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes the jobs, lets the workers go idle, stops them (their log
    /// sinks flush on the way out), and returns the run records with a
    /// plan time in `[from, to)`; then removes the prefix, the database
    /// and the spill directories.
    pub(crate) async fn stop(
        self,
        s: &Services,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Vec<Document>> {
        self.stop_matching(s, doc! {"planTime": {"$gte": from, "$lt": to}})
            .await
    }

    /// As [`Workers::stop`], returning the run records that match `filter`.
    pub(crate) async fn stop_matching(
        self,
        s: &Services,
        filter: Document,
    ) -> anyhow::Result<Vec<Document>> {
        delete_prefix(&s.etcd, &format!("{}jobs/", self.prefix)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.token.cancel();
        for w in self.tasks {
            w.await??;
        }
        let mongo = mongodb::Client::with_uri_str(&s.mongo).await?;
        let docs: Vec<Document> = mongo
            .database(&self.db)
            .collection::<Document>("log")
            .find(filter)
            .await?
            .try_collect()
            .await?;
        let _ = mongo.database(&self.db).drop().await;
        delete_prefix(&s.etcd, &self.prefix).await?;
        let _ = std::fs::remove_dir_all(&self.spill);
        Ok(docs)
    }
}

/// Sleeps until the next whole second and returns it (ms since the epoch).
pub(crate) async fn next_second() -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    let at = (now / 1000 + 1) * 1000;
    tokio::time::sleep(Duration::from_millis((at - now) as u64)).await;
    at
}

/// A millisecond field of a run record (stored as a 64- or 32-bit integer).
pub(crate) fn millis(d: &Document, field: &str) -> i64 {
    d.get_i64(field)
        .or_else(|_| d.get_i32(field).map(i64::from))
        .unwrap_or_default()
}

/// `jobs` jobs running `true` every second on two workers for `seconds`.
pub(crate) async fn end_to_end(s: &Services, jobs: usize, seconds: u64) -> anyhow::Result<Step> {
    let mut etcd = connect(&s.etcd).await?;
    let workers = Workers::start(s, 2, |_| {});
    workers.put_jobs(&mut etcd, "e2e", jobs).await?;
    // Let both workers load the jobs and settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let from = next_second().await;
    let rev_before = revision(&mut etcd).await?;
    let cpu_before = cpu_snapshot(s);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu_after = cpu_snapshot(s);
    let to = from + seconds as i64 * 1000;
    // Runs of the last measured second end a little later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rev_after = revision(&mut etcd).await?;
    let docs = workers.stop(s, from, to).await?;

    let mut per_tick: HashMap<(String, i64), u64> = HashMap::new();
    let (mut start_lags, mut durations) = (Vec::new(), Vec::new());
    for d in &docs {
        let job = d.get_str("jobName").unwrap_or_default().to_string();
        let plan = millis(d, "planTime");
        let (start, end) = (millis(d, "startTime"), millis(d, "endTime"));
        start_lags.push(start - plan);
        durations.push(end - start);
        *per_tick.entry((job, plan)).or_default() += 1;
    }
    let planned = jobs as u64 * seconds;
    let ran = per_tick.len() as u64;
    let duplicates = per_tick.values().map(|n| n - 1).sum();
    let runs = docs.len() as f64;
    // Runs started in the window: the CPU window is the same length,
    // shifted by the start lag, which is steady within a step.
    let ms_per_run = |i: usize| (cpu_after[i] - cpu_before[i]) * 1000.0 / ran.max(1) as f64;
    let cpu_per_run = CpuPerRun {
        workers: ms_per_run(0),
        commands: ms_per_run(1),
        etcd: ms_per_run(2),
        log_store: ms_per_run(3),
    };
    Ok(Step {
        jobs,
        planned,
        ran,
        duplicates,
        missed: planned.saturating_sub(ran),
        runs_per_sec: ran as f64 / seconds as f64,
        records_per_sec: runs / seconds as f64,
        etcd_writes_per_run: if ran > 0 {
            (rev_after - rev_before) as f64 / ran as f64
        } else {
            0.0
        },
        start_lag_ms: p50_p99(start_lags),
        duration_ms: p50_p99(durations),
        cpu_per_run,
    })
}
