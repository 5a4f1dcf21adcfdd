//! The API benchmark (issue 19, "API at 100k jobs and 1M run records"): a
//! real master, run as its own process ([`master`]: the `rcron-master`
//! binary built beside this one) so that its memory is its own, on a real
//! etcd and MongoDB-wire server, hit by concurrent HTTP clients
//! ([`clients`]).
//!
//! 1. Jobs are saved through the API (`PUT /api/v1/jobs/{name}`, each
//!    client its share), every page is walked once and checked ([`check`]),
//!    then pages are timed: the first, later ones by `cursor`, a search
//!    (`q`), one job, and the first page read from etcd
//!    (`consistent=true`); then the master's idle CPU.
//! 2. The master is restarted with the jobs in etcd: does it list them, in
//!    how long, in how much memory.
//! 3. A third master starts on an empty prefix and the jobs are copied in
//!    straight through etcd: its memory with every job brought into its
//!    cache by its watch. It serves the rest.
//! 4. Run records ([`records`]: what record `i` is, so every page can be
//!    checked) are bulk-loaded straight into MongoDB (`insert_many` of
//!    10,000, within a time budget); pages are walked and checked, then
//!    timed, with every client and with one: the newest of every job, of
//!    one job, of the hot job (an eighth of the records), a deep page
//!    (where following `nextCursor` got to), a page halfway down, one run.
//! 5. Each log query also goes to the store through its own driver client
//!    ([`store`]: the find and the count the master sends), for the store's
//!    own time beside rcron's.

mod check;
mod clients;
mod master;
mod records;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::Document;
use rcron_shared::LogRecord;
use rcron_shared::config::MongoConfig;
use rcron_shared::runlog::{self, RunLogWriter, mongo::MongoRunLog};

use crate::cluster::{self, Services};
use check::{check_page, walk_jobs, walk_logs};
use clients::{Ctx, Outcomes, Pids, expect_ok, pick, row};
use master::{Master, free_port};
use records::{Key, Records, StoreQuery, job_expr, job_name};
use store::{QueryOf, RunOf, Store};

/// What to load and how to measure.
pub(crate) struct ApiOptions {
    /// Jobs saved through the API.
    pub(crate) jobs: usize,
    /// Distinct cron expressions among them.
    pub(crate) exprs: usize,
    /// Run records to load (fewer if the load budget runs out).
    pub(crate) logs: usize,
    /// Concurrent HTTP (and driver) clients.
    pub(crate) clients: usize,
    /// Seconds each kind of request is repeated.
    pub(crate) secs: u64,
    /// The `rcron-master` binary.
    pub(crate) master_bin: PathBuf,
    /// Pages followed by `nextCursor` before the deep page.
    pub(crate) deep_pages: usize,
    /// A walk through log pages stops after this, deep or not.
    pub(crate) walk_budget: Duration,
    /// Loading stops when this is spent; pages are then read at the count
    /// reached.
    pub(crate) load_budget: Duration,
    /// Where the master's own log goes (one file per start).
    pub(crate) log_dir: PathBuf,
}

/// Latency figures of one kind of request.
#[derive(Clone)]
pub(crate) struct ApiRow {
    pub(crate) what: String,
    pub(crate) requests: usize,
    /// Requests that failed (any non-2xx answer or transport error).
    pub(crate) errors: usize,
    /// Of which 503 (the master found the store or etcd unavailable).
    pub(crate) unavailable: usize,
    /// The first failure, as the client saw it.
    pub(crate) first_error: Option<String>,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) per_sec: f64,
    /// CPU ms per successful request of the master, etcd and the log
    /// store (NaN when not measured).
    pub(crate) cpu_ms: [f64; 3],
}

/// One log query through the API beside the same query sent to the store.
pub(crate) struct StoreCompare {
    pub(crate) what: String,
    /// Through rcron, every client at once (the row of the main table).
    pub(crate) api: ApiRow,
    /// The store's find + count, as many clients at once (for a run: its
    /// one find).
    pub(crate) store: ApiRow,
    /// Through rcron, one client.
    pub(crate) api_alone: ApiRow,
    /// The store, one client: find + count at once, then each alone.
    pub(crate) store_alone: ApiRow,
    pub(crate) find_alone: Option<ApiRow>,
    pub(crate) count_alone: Option<ApiRow>,
    /// The find with `startTime <= cursor` added (pages after the first).
    pub(crate) bounded_alone: Option<ApiRow>,
}

/// The master's memory (KiB, from `/proc/<pid>/status`).
#[derive(Default)]
pub(crate) struct Memory {
    /// Healthy, no job.
    pub(crate) empty_kib: u64,
    /// After the jobs were saved through it.
    pub(crate) saved_kib: u64,
    /// Audit records in MongoDB once the wait for them ended, the wait,
    /// and the memory then.
    pub(crate) audit_stored: u64,
    pub(crate) audit_drain_secs: f64,
    pub(crate) audited_kib: u64,
    /// After its cached pages were read (8 clients).
    pub(crate) paged_kib: u64,
    /// After its `consistent=true` pages (every job read from etcd, per
    /// request).
    pub(crate) consistent_kib: u64,
    pub(crate) consistent_peak_kib: u64,
    /// Restarted: once it had listed every job at start.
    pub(crate) listed_kib: u64,
    pub(crate) listed_peak_kib: u64,
    /// Restarted: spawn to "job cache listed"; None when it never did.
    pub(crate) listed_secs: Option<f64>,
    /// A third master on an empty prefix: before the jobs were copied in.
    pub(crate) watch_empty_kib: u64,
    /// … and once its watch had brought every job into its cache.
    pub(crate) watched_kib: u64,
    pub(crate) watched_peak_kib: u64,
    /// Copy start to every job in its cache.
    pub(crate) watch_fill_secs: f64,
    /// The third master after the log phase.
    pub(crate) end_kib: u64,
    pub(crate) end_peak_kib: u64,
    /// CPU % of a core of the master, etcd and the store with every job
    /// loaded and no request (the leader's own loops).
    pub(crate) idle_cpu: [f64; 3],
}

/// A sequential walk through pages (one client), checked as it goes.
pub(crate) struct Walk {
    pub(crate) what: String,
    pub(crate) pages: usize,
    pub(crate) secs: f64,
}

/// What the API benchmark measured.
pub(crate) struct ApiFigures {
    pub(crate) jobs: usize,
    pub(crate) exprs: usize,
    /// Seconds of the idle measurement.
    pub(crate) idle_secs: u64,
    /// Job rows (saves and pages) and log rows, through the API.
    pub(crate) rows: Vec<ApiRow>,
    /// The log queries beside the store's own time.
    pub(crate) store: Vec<StoreCompare>,
    pub(crate) memory: Memory,
    pub(crate) walks: Vec<Walk>,
    /// Records asked for and loaded (fewer when the budget ran out).
    pub(crate) logs_wanted: usize,
    pub(crate) logs_loaded: usize,
    pub(crate) hot_records: usize,
    /// Run records bulk-inserted per second (the log store's write rate).
    pub(crate) log_inserts_per_sec: f64,
    pub(crate) log_load_secs: f64,
    /// Wrong answers: the request and what came back.
    pub(crate) findings: Vec<String>,
}

/// Jobs the bulk-loaded run records are spread over, besides the hot one.
const LOG_JOBS: usize = 997;

/// The job with an eighth of the records.
const HOT_JOB: &str = "api-log-hot";

/// Records per `insert_many`.
const INSERT_BATCH: usize = 10_000;

/// Records per log page (the API's default).
const LOG_PAGE: usize = 20;

/// Jobs per job page (the API's default).
const JOB_PAGE: usize = 100;

/// Every this many jobs one runs `backup-db` (what the search finds).
const SEARCH_EVERY: usize = 100;

/// One line for the console.
pub(crate) fn describe(r: &ApiRow) -> String {
    let mut line = format!(
        "{}: {} requests, {} errors ({} 503), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {:.1}/s",
        r.what, r.requests, r.errors, r.unavailable, r.p50_ms, r.p99_ms, r.max_ms, r.per_sec
    );
    if r.cpu_ms.iter().any(|c| !c.is_nan()) {
        line += &format!(
            "; CPU ms/request master {:.2}, etcd {:.2}, store {:.2}",
            r.cpu_ms[0], r.cpu_ms[1], r.cpu_ms[2]
        );
    }
    if let Some(e) = &r.first_error {
        line += &format!("; first error: {e}");
    }
    line
}

/// A live worker in the registry (carrying no label, so every job has one
/// to run on): without it the leader would report every job
/// unschedulable after its grace, 100,000 alerts written during the run.
async fn register_worker(s: &Services, prefix: &str) -> anyhow::Result<()> {
    let keys = rcron_shared::Keys::new(prefix)?;
    let info = rcron_shared::WorkerInfo {
        id: "bench-worker".into(),
        hostname: "bench".into(),
        ip: "127.0.0.1".into(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        start_time: chrono::Utc::now().timestamp_millis(),
        capacity: 64,
        running: Vec::new(),
        runs: Vec::new(),
        draining: false,
        timezone: "UTC".into(),
        labels: Default::default(),
        clock_offset_ms: Some(0),
        clock_skewed: false,
        misfire_grace_secs: 5,
        http_addr: None,
    };
    cluster::connect(&s.etcd)
        .await?
        .put(keys.worker(&info.id), serde_json::to_string(&info)?, None)
        .await?;
    Ok(())
}

/// Copies every job under `from` to `to`, straight through etcd: pages of
/// 1,000 keys read (one read of every job does not fit in a gRPC answer
/// past ~16k jobs), written in transactions of 128 puts (etcd's most).
async fn copy_jobs(etcd: &str, from: &str, to: &str) -> anyhow::Result<()> {
    let (src, dst) = (
        rcron_shared::Keys::new(from)?.jobs_dir(),
        rcron_shared::Keys::new(to)?.jobs_dir(),
    );
    let mut client = cluster::connect(etcd).await?;
    let mut end = src.clone().into_bytes();
    // The key after every key with the prefix (the prefix ends in `/`).
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let mut next = src.clone().into_bytes();
    loop {
        let resp = client
            .get(
                next.clone(),
                Some(
                    etcd_client::GetOptions::new()
                        .with_range(end.clone())
                        .with_limit(1000),
                ),
            )
            .await?;
        let kvs = resp.kvs();
        for chunk in kvs.chunks(128) {
            let ops: Vec<etcd_client::TxnOp> = chunk
                .iter()
                .map(|kv| {
                    let name = &kv.key()[src.len()..];
                    let mut key = dst.clone().into_bytes();
                    key.extend_from_slice(name);
                    etcd_client::TxnOp::put(key, kv.value().to_vec(), None)
                })
                .collect();
            client.txn(etcd_client::Txn::new().and_then(ops)).await?;
        }
        match kvs.last() {
            Some(kv) if resp.more() => {
                next = kv.key().to_vec();
                next.push(0);
            }
            _ => return Ok(()),
        }
    }
}

/// CPU % of a core used by the master, etcd and the store over `secs`
/// with no request.
async fn idle_cpu(pids: &Pids, secs: u64) -> [f64; 3] {
    let before = pids.cpu();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = pids.cpu();
    let wall = t.elapsed().as_secs_f64();
    [0, 1, 2].map(|k| (after[k] - before[k]) * 100.0 / wall)
}

/// Saves `opts.jobs` jobs, reads pages of them, loads `opts.logs` run
/// records and reads pages of them, each with `opts.clients` concurrent
/// clients (`opts.secs` per kind of request), beside the store's own time.
pub(crate) async fn api(s: &Services, opts: &ApiOptions) -> anyhow::Result<ApiFigures> {
    let prefix = format!("/rcron-bench-{}/", uuid::Uuid::now_v7().simple());
    let db = format!("rcron_bench_{}", uuid::Uuid::now_v7().simple());
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    // reqwest is built without a TLS provider of its own (one for the
    // whole workspace); plain HTTP here, but the builder wants one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.clients)
        // Long: a page the store takes minutes over is a figure, not a
        // client-side failure.
        .timeout(Duration::from_secs(900))
        .build()?;
    register_worker(s, &prefix).await?;
    let mut master = Master::start(opts, s, &prefix, &db, port, 1).await?;
    let start_within = Duration::from_secs(60);
    anyhow::ensure!(
        master.listed(&http, &base, start_within).await?.is_some(),
        "the benchmark's master did not start in {} s; see {}",
        start_within.as_secs(),
        master.log.display()
    );
    let mut f = ApiFigures {
        jobs: opts.jobs,
        exprs: opts.exprs.clamp(1, 8640).min(opts.jobs.max(1)),
        idle_secs: opts.secs,
        rows: Vec::new(),
        store: Vec::new(),
        memory: Memory {
            empty_kib: master.memory().0,
            ..Memory::default()
        },
        walks: Vec::new(),
        logs_wanted: opts.logs,
        logs_loaded: 0,
        hot_records: 0,
        log_inserts_per_sec: f64::NAN,
        log_load_secs: f64::NAN,
        findings: Vec::new(),
    };
    let mut ctx = Ctx {
        http: http.clone(),
        base: base.clone(),
        clients: opts.clients,
        secs: opts.secs,
        pids: Pids {
            master: master.pid,
            etcd: s.etcd_pid,
            store: s.mongo_pid,
        },
        idle: [0.0; 3],
        min_each: 1,
    };
    let database = runlog::mongo::database(
        &MongoConfig {
            uri: s.mongo.clone(),
            db: db.clone(),
        },
        "rcron-bench",
    )
    .await?;
    job_phase(&ctx, opts, &master, &database, &mut f).await?;
    ctx.idle = f.memory.idle_cpu.map(|pct| pct / 100.0);
    master.stop().await?;

    // A restart with every job in etcd: it lists them at once.
    let mut master = Master::start(opts, s, &prefix, &db, port, 2).await?;
    let listed = master.listed(&http, &base, start_within).await?;
    let m = &mut f.memory;
    m.listed_secs = listed.map(|d| d.as_secs_f64());
    if listed.is_some() {
        (m.listed_kib, m.listed_peak_kib) = master.memory();
    } else {
        let answer = match http
            .get(format!("{base}/api/v1/jobs?limit={JOB_PAGE}"))
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                format!("{status} {}", body.chars().take(400).collect::<String>())
            }
            Err(e) => format!("{e}"),
        };
        f.findings.push(format!(
            "a master restarted with {} jobs in etcd did not list them in {} s; its last warning: {}; GET /api/v1/jobs?limit={JOB_PAGE} answered {answer}",
            opts.jobs,
            start_within.as_secs(),
            master.last_warning().unwrap_or_default()
        ));
    }
    master.stop().await?;

    // A master with an empty cache, then every job copied into its prefix
    // straight through etcd: the cache filled by its watch.
    let watched = format!("/rcron-bench-{}/", uuid::Uuid::now_v7().simple());
    register_worker(s, &watched).await?;
    let mut master = Master::start(opts, s, &watched, &db, port, 3).await?;
    anyhow::ensure!(
        master.listed(&http, &base, start_within).await?.is_some(),
        "the benchmark's third master did not start; see {}",
        master.log.display()
    );
    ctx.pids.master = master.pid;
    let m = &mut f.memory;
    m.watch_empty_kib = master.memory().0;
    let started = Instant::now();
    copy_jobs(&s.etcd, &prefix, &watched).await?;
    loop {
        let page = ctx.json("/api/v1/jobs?limit=1").await;
        if page.is_ok_and(|p| p["total"].as_u64() == Some(opts.jobs as u64)) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the third master's cache did not reach {} jobs in 300 s",
            opts.jobs
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    m.watch_fill_secs = started.elapsed().as_secs_f64();
    // Two rounds of the leader's loops (every 2 s) after the burst.
    tokio::time::sleep(Duration::from_secs(5)).await;
    (m.watched_kib, m.watched_peak_kib) = master.memory();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "master RSS: {:.0} MiB empty; {:.0} after {} saves, {:.0} after cached pages, {:.0} (peak {:.0}) after consistent pages; restarted: {}; filled by its watch: {:.0} MiB empty, {:.0} (peak {:.0}) with every job, {:.1} s",
        mib(m.empty_kib),
        mib(m.saved_kib),
        opts.jobs,
        mib(m.paged_kib),
        mib(m.consistent_kib),
        mib(m.consistent_peak_kib),
        match m.listed_secs {
            Some(secs) => format!(
                "listed in {secs:.2} s, {:.0} MiB (peak {:.0})",
                mib(m.listed_kib),
                mib(m.listed_peak_kib)
            ),
            None => "never listed its jobs".into(),
        },
        mib(m.watch_empty_kib),
        mib(m.watched_kib),
        mib(m.watched_peak_kib),
        m.watch_fill_secs,
    );

    // `--api-logs 0`: the job side only.
    if opts.logs > 0 {
        log_phase(&ctx, opts, &database, &s.mongo, &mut f).await?;
    }
    let m = &mut f.memory;
    (m.end_kib, m.end_peak_kib) = master.memory();

    master.stop().await?;
    let _ = database.drop().await;
    cluster::delete_prefix(&s.etcd, &prefix).await?;
    cluster::delete_prefix(&s.etcd, &watched).await?;
    Ok(f)
}

/// Saves the jobs, walks their pages, times job reads; the master's
/// memory along the way and its idle CPU.
async fn job_phase(
    ctx: &Ctx,
    opts: &ApiOptions,
    master: &Master,
    database: &Database,
    f: &mut ApiFigures,
) -> anyhow::Result<()> {
    let jobs = opts.jobs;
    println!(
        "saving {jobs} jobs through the API, {} clients",
        opts.clients
    );
    let started = Instant::now();
    let cpu_before = ctx.pids.cpu();
    // Every client saves its share once.
    let exprs = opts.exprs;
    let tasks: Vec<_> = (0..opts.clients)
        .map(|c| {
            let (http, base, clients) = (ctx.http.clone(), ctx.base.clone(), opts.clients);
            tokio::spawn(async move {
                let mut outcomes = Outcomes::default();
                for i in (c..jobs).step_by(clients) {
                    let name = job_name(i);
                    let command = if i % SEARCH_EVERY == 0 {
                        format!("backup-db --part {i}")
                    } else {
                        format!("echo {i}")
                    };
                    let body = serde_json::json!({
                        "name": name,
                        "command": command,
                        "cronExpr": job_expr(i, exprs),
                        "disabled": i % 10 == 9,
                    })
                    .to_string();
                    let t = Instant::now();
                    let result = async {
                        let resp = http
                            .put(format!("{base}/api/v1/jobs/{name}"))
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await?;
                        expect_ok(resp).await.map(drop)
                    }
                    .await;
                    outcomes.add(t.elapsed(), result);
                }
                outcomes
            })
        })
        .collect();
    let mut saves = Outcomes::default();
    for t in tasks {
        saves.merge(t.await?);
    }
    let mut save_row = row("job save (PUT)", saves, started.elapsed());
    let cpu_after = ctx.pids.cpu();
    let ok = (save_row.requests - save_row.errors).max(1) as f64;
    for k in 0..3 {
        save_row.cpu_ms[k] = (cpu_after[k] - cpu_before[k]) * 1000.0 / ok;
    }
    println!("  {}", describe(&save_row));
    f.rows.push(save_row);
    f.memory.saved_kib = master.memory().0;
    // The master queues one audit record per save and stores them one at a
    // time: how far behind that queue is, and the memory once it is empty.
    let audit = database.collection::<Document>("audit");
    let started = Instant::now();
    let mut stored = 0;
    while started.elapsed() < Duration::from_secs(600) {
        stored = audit.estimated_document_count().await.unwrap_or(0);
        if stored >= jobs as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f.memory.audit_stored = stored;
    f.memory.audit_drain_secs = started.elapsed().as_secs_f64();
    f.memory.audited_kib = master.memory().0;
    println!(
        "  audit records stored: {stored} of {jobs}, {:.1} s after the last save; master RSS {:.0} MiB right after the saves, {:.0} MiB then",
        f.memory.audit_drain_secs,
        f.memory.saved_kib as f64 / 1024.0,
        f.memory.audited_kib as f64 / 1024.0
    );

    let (cursors, walk) = walk_jobs(ctx, jobs, &mut f.findings).await?;
    println!("  walked {} job pages in {:.1} s", walk.pages, walk.secs);
    f.walks.push(walk);
    let searched = jobs.div_ceil(SEARCH_EVERY);
    let found = ctx.json("/api/v1/jobs?q=BACKUP&limit=100").await?;
    if found["total"].as_u64() != Some(searched as u64) {
        f.findings.push(format!(
            "GET /api/v1/jobs?q=BACKUP&limit=100: total {} (expected {searched})",
            found["total"]
        ));
    }

    f.rows.push(
        ctx.get_row(
            &format!("job list, first page (limit={JOB_PAGE}, {jobs} jobs)"),
            |_, _| format!("/api/v1/jobs?limit={JOB_PAGE}"),
        )
        .await?,
    );
    let cursors = Arc::new(cursors);
    f.rows.push(
        ctx.get_row(
            &format!("job list, a later page (cursor, limit={JOB_PAGE})"),
            move |c, i| {
                format!(
                    "/api/v1/jobs?limit={JOB_PAGE}&cursor={}",
                    cursors[pick(c, i, cursors.len())]
                )
            },
        )
        .await?,
    );
    f.rows.push(
        ctx.get_row(
            &format!("job search, q=backup ({searched} of {jobs} match)"),
            |_, _| format!("/api/v1/jobs?q=backup&limit={JOB_PAGE}"),
        )
        .await?,
    );
    f.rows.push(
        ctx.get_row("job get", move |c, i| {
            format!("/api/v1/jobs/{}", job_name(pick(c, i, jobs)))
        })
        .await?,
    );
    f.memory.paged_kib = master.memory().0;
    f.rows.push(
        ctx.get_row(
            &format!("job list, first page, consistent=true (etcd, {jobs} jobs)"),
            |_, _| format!("/api/v1/jobs?limit={JOB_PAGE}&consistent=true"),
        )
        .await?,
    );
    (f.memory.consistent_kib, f.memory.consistent_peak_kib) = master.memory();
    let idle = idle_cpu(&ctx.pids, opts.secs).await;
    println!(
        "  idle {} s with {jobs} jobs: master {:.1}%, etcd {:.1}%, store {:.1}% of a core",
        opts.secs, idle[0], idle[1], idle[2]
    );
    f.memory.idle_cpu = idle;
    Ok(())
}

/// Loads the run records, walks and checks pages, times log reads beside
/// the store's own time for the same queries.
async fn log_phase(
    ctx: &Ctx,
    opts: &ApiOptions,
    database: &Database,
    store_uri: &str,
    f: &mut ApiFigures,
) -> anyhow::Result<()> {
    // A year's retention and start times ending an hour ago: nothing
    // expires during the run.
    let run_log = MongoRunLog::new(database, Duration::from_secs(366 * 86_400));
    let now_ms = chrono::Utc::now().timestamp_millis();
    let records = Records {
        base: now_ms - 3_600_000 - (opts.logs / 4) as i64 * 1000,
    };
    println!(
        "loading {} run records (insert_many of {INSERT_BATCH}, budget {} s)",
        opts.logs,
        opts.load_budget.as_secs()
    );
    let started = Instant::now();
    let mut logs = 0;
    while logs < opts.logs && started.elapsed() < opts.load_budget {
        let end = (logs + INSERT_BATCH).min(opts.logs);
        let batch: Vec<LogRecord> = (logs..end).map(|i| records.record(i)).collect();
        run_log.write(&batch).await?;
        logs = end;
        if logs % 100_000 == 0 {
            println!(
                "  {logs} records, {:.0}/s so far",
                logs as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    f.log_load_secs = started.elapsed().as_secs_f64();
    f.log_inserts_per_sec = logs as f64 / f.log_load_secs;
    f.logs_loaded = logs;
    println!(
        "  loaded {logs} records in {:.0} s ({:.0}/s)",
        f.log_load_secs, f.log_inserts_per_sec
    );
    let hot_records = (0..logs).filter(|&i| Records::is_hot(i)).count();
    f.hot_records = hot_records;

    // Walks, checked against what was loaded; the deep cursors are where
    // they end.
    let deep = opts.deep_pages;
    let every = StoreQuery {
        job: None,
        before: None,
    };
    let hot = StoreQuery {
        job: Some(HOT_JOB.into()),
        before: None,
    };
    let expected = records.newest(logs, (deep + 1) * LOG_PAGE, |_| true);
    let (deep_every, walk) = walk_logs(
        ctx,
        &every,
        deep,
        opts.walk_budget,
        &expected,
        logs,
        &mut f.findings,
    )
    .await?;
    println!("  walked {} in {:.1} s", walk.what, walk.secs);
    let every_pages = walk.pages;
    f.walks.push(walk);
    let expected = records.newest(logs, (deep + 1) * LOG_PAGE, Records::is_hot);
    let (deep_hot, walk) = walk_logs(
        ctx,
        &hot,
        deep,
        opts.walk_budget,
        &expected,
        hot_records,
        &mut f.findings,
    )
    .await?;
    println!("  walked {} in {:.1} s", walk.what, walk.secs);
    let hot_pages = walk.pages;
    f.walks.push(walk);
    // One job of the many: its first pages.
    let one = Records::job(57);
    let keep = |i: usize| Records::job(i) == one;
    let n_one = (0..logs).filter(|&i| keep(i)).count();
    let expected = records.newest(logs, 3 * LOG_PAGE, keep);
    let one_query = StoreQuery {
        job: Some(one.clone()),
        before: None,
    };
    let (_, walk) = walk_logs(
        ctx,
        &one_query,
        3,
        opts.walk_budget,
        &expected,
        n_one,
        &mut f.findings,
    )
    .await?;
    f.walks.push(walk);
    // Halfway down every job's log: a cursor made from the loaded records
    // (no walk gets there on this store), its page checked.
    let half = logs / 2;
    let half_key = records.key(half);
    let below = |i: usize| records.key(i) < half_key;
    let expected: Vec<Key> = records.newest(((half / 4) + 1) * 4, LOG_PAGE, below);
    check_page(
        ctx,
        &StoreQuery {
            job: None,
            before: Some(half_key.clone()),
        },
        &expected,
        &mut f.findings,
    )
    .await?;
    // A run with two attempts (records 6 and 7) and one with one.
    if logs > 8 {
        for (run, attempts) in [("bench-6", 2), ("bench-8", 1)] {
            let path = format!("/api/v1/runs/{run}");
            let got = ctx.json(&path).await?;
            let a = got["attempts"].as_array().cloned().unwrap_or_default();
            let with_output = a
                .iter()
                .all(|x| x["output"].as_str().is_some_and(|o| !o.is_empty()));
            if a.len() != attempts || !with_output {
                f.findings.push(format!(
                    "GET {path}: {} attempts (expected {attempts}), output on each: {with_output}",
                    a.len()
                ));
            }
        }
    }

    // The store's own client waits as long as the store takes (the
    // master's gives up after 3 s: its answer is then a 503).
    let mut options = mongodb::options::ClientOptions::parse(store_uri).await?;
    options.server_selection_timeout = Some(Duration::from_secs(900));
    options.connect_timeout = Some(Duration::from_secs(900));
    options.app_name = Some("rcron-bench-store".into());
    let own = mongodb::Client::with_options(options)?.database(database.name());
    let store = Store {
        coll: own.collection(runlog::mongo::COLLECTION),
        db: own,
        clients: opts.clients,
        secs: opts.secs,
        min_each: 1,
        pid: ctx.pids.store,
    };
    let (ctx1, store1) = (ctx.alone(), store.alone());
    let lp = LOG_PAGE;
    let cases: Vec<(String, QueryOf)> = vec![
        (
            format!("log page, every job, newest (limit={lp}, {logs} records)"),
            Arc::new(|_, _| StoreQuery {
                job: None,
                before: None,
            }),
        ),
        (
            format!(
                "log page, one job of {LOG_JOBS}, newest (~{} records each)",
                (logs - hot_records) / LOG_JOBS
            ),
            Arc::new(|c, i| StoreQuery {
                job: Some(format!("api-log-{}", 1 + pick(c, i, LOG_JOBS - 1))),
                before: None,
            }),
        ),
        (
            format!("log page, hot job, newest ({hot_records} records)"),
            Arc::new(|_, _| StoreQuery {
                job: Some(HOT_JOB.into()),
                before: None,
            }),
        ),
        (
            format!(
                "log page, every job, deep (before= after following {every_pages} pages: {} records in)",
                every_pages * lp
            ),
            Arc::new(move |_, _| StoreQuery {
                job: None,
                before: deep_every.clone(),
            }),
        ),
        (
            format!(
                "log page, hot job, deep (before= after following {hot_pages} pages: {} records in)",
                hot_pages * lp
            ),
            Arc::new(move |_, _| StoreQuery {
                job: Some(HOT_JOB.into()),
                before: deep_hot.clone(),
            }),
        ),
        (
            format!("log page, every job, halfway (before= record {half} of {logs})"),
            Arc::new(move |_, _| StoreQuery {
                job: None,
                before: Some(half_key.clone()),
            }),
        ),
    ];
    for (what, query) in cases {
        let q = query.clone();
        let api = ctx.get_row(&what, move |c, i| q(c, i).path()).await?;
        let store_all = store.both(&what, query.clone()).await?;
        let q = query.clone();
        let api_alone = ctx1
            .get_row(&format!("{what}, one client"), move |c, i| q(c, i).path())
            .await?;
        let store_alone = store1.both(&what, query.clone()).await?;
        let find_alone = store1.find_alone(&what, query.clone()).await?;
        let count_alone = store1.count_alone(&what, query.clone()).await?;
        let bounded_alone = store1.bounded_alone(&what, query).await?;
        f.rows.push(api.clone());
        f.store.push(StoreCompare {
            what,
            api,
            store: store_all,
            api_alone,
            store_alone,
            find_alone: Some(find_alone),
            count_alone: Some(count_alone),
            bounded_alone,
        });
    }
    let runs = logs.max(8) / 8;
    // Alternately a run with two attempts (8k + 6) and one with one.
    let run_of: RunOf = Arc::new(move |c, i| {
        format!(
            "bench-{}",
            pick(c, i, runs) * 8 + if i % 2 == 0 { 6 } else { 3 }
        )
    });
    let what = "one run (GET /api/v1/runs/{runId}, 1 or 2 attempts, with output)".to_string();
    let r = run_of.clone();
    let api = ctx
        .get_row(&what, move |c, i| format!("/api/v1/runs/{}", r(c, i)))
        .await?;
    let store_all = store.run_alone(&what, run_of.clone()).await?;
    let r = run_of.clone();
    let api_alone = ctx1
        .get_row(&format!("{what}, one client"), move |c, i| {
            format!("/api/v1/runs/{}", r(c, i))
        })
        .await?;
    let store_alone = store1.run_alone(&what, run_of).await?;
    f.rows.push(api.clone());
    f.store.push(StoreCompare {
        what,
        api,
        store: store_all,
        api_alone,
        store_alone,
        find_alone: None,
        count_alone: None,
        bounded_alone: None,
    });
    Ok(())
}

/// Where the master binary is by default: beside this one.
pub(crate) fn default_master_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("rcron-master")))
        .unwrap_or_else(|| Path::new("rcron-master").to_path_buf())
}
