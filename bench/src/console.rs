//! The operator console benchmark (`--console`): a real master (in this
//! process) on a real etcd and MongoDB-wire server (`RCRON_TEST_ETCD`,
//! `RCRON_TEST_MONGO`, as `deploy/test-env.sh` sets), 100 jobs, 100,000
//! run records over the last 30 days bulk-loaded straight into MongoDB.
//!
//! Measured, with 1 and with 8 clients:
//! - `GET /api/v1/dashboard` as served (the 2 s cache: most answers are
//!   cache hits, some wait for the computation);
//! - the dashboard computed afresh every time (the cache bypassed: the
//!   master's own computation called in a loop, no HTTP);
//! - `GET /api/v1/jobs/{name}/stats` (30 days) over every job;
//! - the store's own time for the same reads: each run-log read of one
//!   stats request and of one dashboard, timed one after the other
//!   straight on the store.
//!
//! Prints the figures and writes them to a Markdown report.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rcron_master::MasterConfig;
use rcron_shared::config::MongoConfig;
use rcron_shared::runlog::mongo::MongoRunLog;
use rcron_shared::runlog::{self, RunLogReader, RunLogWriter, Span, Tally};
use rcron_shared::{LogRecord, RunStatus};
use tokio_util::sync::CancellationToken;

/// Jobs the records are spread over.
const JOBS: usize = 100;
/// Run records loaded.
const RECORDS: usize = 100_000;
/// Days the records cover.
const DAYS: i64 = 30;
/// Seconds each HTTP row is measured.
const SECS: u64 = 10;
/// Fresh dashboard computations per row.
const FRESH: usize = 40;

struct Row {
    what: String,
    clients: usize,
    n: usize,
    errors: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn row(what: &str, clients: usize, mut lat: Vec<Duration>, errors: usize) -> Row {
    lat.sort_unstable();
    let at = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    Row {
        what: what.to_string(),
        clients,
        n: lat.len(),
        errors,
        p50: at(0.5),
        p99: at(0.99),
        max: lat.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
    }
}

/// A deterministic spread of outcomes and durations.
fn record(i: usize, now: i64) -> LogRecord {
    let span = DAYS * 86_400_000;
    let start = now - span + (i as i64 * span) / RECORDS as i64;
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    let status = match h % 100 {
        0..=7 => RunStatus::Failed,
        8..=9 => RunStatus::Timeout,
        10..=12 => RunStatus::Missed,
        13 => RunStatus::Skipped,
        _ => RunStatus::Success,
    };
    let ms = if status.is_verdict() {
        0
    } else {
        (h % 5_000) as i64 + 5
    };
    LogRecord {
        job_name: format!("console-{:03}", i % JOBS),
        command: "echo hello".into(),
        err: String::new(),
        output: "hello\n".into(),
        plan_time: start,
        schedule_time: start,
        start_time: start,
        end_time: start + ms,
        run_id: format!("console-{i}"),
        worker: format!("w{}", i % 4),
        exit_code: Some(0),
        status,
        attempt: 1,
        output_truncated: false,
        reason: None,
        trigger: Default::default(),
        triggered_by: None,
        params: None,
    }
}

/// `clients` loops of GET `path(c, i)` for [`SECS`].
async fn hammer(
    http: &reqwest::Client,
    base: &str,
    clients: usize,
    path: fn(usize, usize) -> String,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let until = Instant::now() + Duration::from_secs(SECS);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, base) = (http.clone(), base.to_string());
            tokio::spawn(async move {
                let (mut lat, mut errors, mut i) = (Vec::new(), 0, 0);
                while Instant::now() < until {
                    let t = Instant::now();
                    let ok = match http.get(format!("{base}{}", path(c, i))).send().await {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if ok {
                        lat.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                    i += 1;
                }
                (lat, errors)
            })
        })
        .collect();
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    Ok((lat, errors))
}

/// The dashboard computed afresh `FRESH` times over `clients` loops.
async fn fresh(
    state: &Arc<rcron_master::api::AppState>,
    clients: usize,
) -> anyhow::Result<Vec<Duration>> {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let state = state.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for _ in 0..FRESH / clients {
                    let t = Instant::now();
                    let d = rcron_master::api::dashboard::compute(&state).await;
                    if d.errors.is_empty() {
                        lat.push(t.elapsed());
                    }
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    Ok(lat)
}

/// The store's time for one stats request's reads and one dashboard's,
/// each read after the other (ms).
async fn store_times(log: &MongoRunLog, now: i64) -> anyhow::Result<(f64, f64)> {
    let timed = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let job = "console-007";
    let day_ms = 86_400_000;
    let start = now.div_euclid(day_ms) * day_ms - (DAYS - 1) * day_ms;
    let days: Vec<i64> = (0..=DAYS).map(|i| start + i * day_ms).collect();
    let t = Instant::now();
    for tally in [
        Tally::Runs,
        Tally::Succeeded,
        Tally::Failed,
        Tally::Skipped,
        Tally::Missed,
    ] {
        log.histogram(Some(job), tally, &days).await?;
    }
    log.latest_runs(job, 100).await?;
    let span = Span {
        from: days[0],
        to: days[DAYS as usize],
    };
    log.run_times(job, span, 10_000).await?;
    let stats = timed(t);

    let minute: Vec<i64> = (0..=60).map(|i| now - 3_600_000 + i * 60_000).collect();
    let quarter: Vec<i64> = (0..=96).map(|i| now - day_ms + i * 900_000).collect();
    let t = Instant::now();
    for bounds in [&minute, &quarter] {
        for tally in [Tally::Runs, Tally::Failed, Tally::Missed] {
            log.histogram(None, tally, bounds).await?;
        }
    }
    let day = Span {
        from: now - day_ms,
        to: i64::MAX,
    };
    log.recent(Tally::Failed, day, 5_000).await?;
    log.newest_by_job(Tally::Succeeded, day).await?;
    Ok((stats, timed(t)))
}

/// Runs the console benchmark and writes `report`.
pub(crate) fn main(report: &std::path::Path) -> anyhow::Result<()> {
    let need = |var: &str| {
        std::env::var(var)
            .map_err(|_| anyhow::anyhow!("--console needs {var}: run under deploy/test-env.sh"))
    };
    let (etcd, mongo) = (need("RCRON_TEST_ETCD")?, need("RCRON_TEST_MONGO")?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let prefix = format!("/rcron-bench-{}/", uuid::Uuid::now_v7().simple());
        let db = format!("rcron_bench_{}", uuid::Uuid::now_v7().simple());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cfg = MasterConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            master_id: "bench-console".into(),
            ..MasterConfig::default()
        };
        cfg.etcd.endpoints = vec![etcd.clone()];
        cfg.etcd.prefix = prefix.clone();
        cfg.mongo.uri = mongo.clone();
        cfg.mongo.db = db.clone();
        let token = CancellationToken::new();
        let master = tokio::spawn(rcron_master::run(cfg.clone(), token.child_token()));
        // A second state on the same stores, to compute dashboards afresh.
        let state = rcron_master::state(&cfg).await?;
        let base = format!("http://127.0.0.1:{port}");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().pool_max_idle_per_host(8).build()?;
        let ready = Instant::now();
        while !http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            anyhow::ensure!(ready.elapsed() < Duration::from_secs(30), "master not healthy");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for j in 0..JOBS {
            let body = format!(
                r#"{{"name":"console-{j:03}","command":"true","cronExpr":"{} * * * *","disabled":{}}}"#,
                j % 60,
                j % 10 == 9
            );
            let resp = http
                .put(format!("{base}/api/v1/jobs/console-{j:03}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            anyhow::ensure!(resp.status().is_success(), "job save: {}", resp.status());
        }
        let now = Utc::now().timestamp_millis();
        let mut etcd_client = etcd_client::Client::connect([etcd.as_str()], None).await?;
        for w in 0..4 {
            let info = serde_json_worker(w, now);
            etcd_client
                .put(format!("{prefix}workers/w{w}"), info, None)
                .await?;
        }
        let database = runlog::mongo::database(
            &MongoConfig {
                uri: mongo.clone(),
                db: db.clone(),
            },
            "rcron-bench",
        )
        .await?;
        let log = MongoRunLog::new(&database, Duration::from_secs(40 * 86_400));
        let loading = Instant::now();
        for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(10_000) {
            let batch: Vec<LogRecord> = chunk.iter().map(|i| record(*i, now)).collect();
            log.write(&batch).await?;
        }
        let load_secs = loading.elapsed().as_secs_f64();
        println!("console: {RECORDS} run records over {JOBS} jobs loaded in {load_secs:.1} s");

        let mut rows = Vec::new();
        for clients in [1, 8] {
            let (lat, errors) =
                hammer(&http, &base, clients, |_, _| "/api/v1/dashboard".into()).await?;
            rows.push(row("GET /dashboard (2 s cache)", clients, lat, errors));
            println!("console: dashboard with {clients} client(s) measured");
            let lat = fresh(&state, clients).await?;
            let errors = FRESH / clients * clients - lat.len();
            rows.push(row("dashboard computed afresh (no cache, no HTTP)", clients, lat, errors));
            println!("console: fresh dashboards with {clients} client(s) measured");
            let (lat, errors) = hammer(&http, &base, clients, |c, i| {
                format!("/api/v1/jobs/console-{:03}/stats", (c * 37 + i * 13) % JOBS)
            })
            .await?;
            rows.push(row("GET /jobs/{name}/stats (30 days)", clients, lat, errors));
        }
        let mut store = Vec::new();
        for _ in 0..10 {
            store.push(store_times(&log, Utc::now().timestamp_millis()).await?);
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let store_stats = median(store.iter().map(|s| s.0).collect());
        let store_dashboard = median(store.iter().map(|s| s.1).collect());

        println!(
            "{:<48} {:>7} {:>8} {:>6} {:>8} {:>8} {:>8}",
            "console request", "clients", "requests", "errors", "p50 ms", "p99 ms", "max ms"
        );
        for r in &rows {
            println!(
                "{:<48} {:>7} {:>8} {:>6} {:>8.1} {:>8.1} {:>8.1}",
                r.what, r.clients, r.n, r.errors, r.p50, r.p99, r.max
            );
        }
        println!(
            "store's own time, reads one after the other (median of 10): one stats request {store_stats:.1} ms, one dashboard {store_dashboard:.1} ms"
        );

        if let Some(dir) = report.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::File::create(report)?;
        writeln!(f, "# rcron-bench --console\n")?;
        writeln!(
            f,
            "{RECORDS} run records over {JOBS} jobs and {DAYS} days (loaded in {load_secs:.1} s), 4 workers registered; store `{mongo}`; {SECS} s per HTTP row, {FRESH} fresh computations per row.\n"
        )?;
        writeln!(f, "| request | clients | requests | errors | p50 ms | p99 ms | max ms |")?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|")?;
        for r in &rows {
            writeln!(
                f,
                "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} |",
                r.what, r.clients, r.n, r.errors, r.p50, r.p99, r.max
            )?;
        }
        writeln!(
            f,
            "\nThe store's own time for the same reads, one after the other (median of 10): one stats request {store_stats:.1} ms, one dashboard {store_dashboard:.1} ms.\n"
        )?;
        println!("report written to {}", report.display());

        token.cancel();
        master.await??;
        let _ = database.drop().await;
        let _ = etcd_client
            .delete(prefix.as_str(), Some(etcd_client::DeleteOptions::new().with_prefix()))
            .await;
        Ok(())
    })
}

/// A worker's registry record with one run under way.
fn serde_json_worker(w: usize, now: i64) -> String {
    format!(
        r#"{{"id":"w{w}","hostname":"bench-{w}","ip":"127.0.0.{w}","pid":{w},"version":"bench","startTime":{now},"capacity":8,"running":["console-00{w}"],"runs":[{{"job":"console-00{w}","runId":"bench-run-{w}","planTime":{now},"startTime":{now}}}]}}"#
    )
}
