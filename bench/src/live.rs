//! `--live`: how soon a line a command prints reaches a reader of the
//! master's output stream (ARCHITECTURE §6, "Live output"), against a
//! real etcd and MongoDB-wire server (`RCRON_TEST_ETCD`,
//! `RCRON_TEST_MONGO`, as `deploy/test-env.sh` sets).
//!
//! A master and a worker run in this process, the worker with a cluster
//! secret (so every stream goes through the signed grant, as in
//! production). For 1 and then 8 concurrent streams, as many jobs each
//! print a line every 100 ms holding the time it was printed (`date
//! +%s%N`, taken just before the write); each run is started with a
//! run-now request and followed through `GET /api/v1/runs/{runId}/output/stream`
//! by its own client. Latency = the moment a line's SSE event is read
//! minus its printed time, on the same clock. Figures are printed and
//! written to a Markdown report; nothing is asserted.

use std::time::{Duration, Instant};

use rcron_shared::live::{LiveEvent, SseReader};
use tokio_util::sync::CancellationToken;

/// Lines each job prints (one per 100 ms).
const LINES: usize = 150;

/// Stream counts measured.
const STREAMS: [usize; 2] = [1, 8];

/// One row of the report.
pub(crate) struct Row {
    pub(crate) streams: usize,
    pub(crate) lines: usize,
    pub(crate) lost: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

fn need(var: &str) -> anyhow::Result<String> {
    std::env::var(var).map_err(|_| {
        anyhow::anyhow!("--live needs {var}: run under deploy/test-env.sh (or use deploy/bench.sh)")
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the live output benchmark and writes its report to `report`.
pub(crate) fn run(report: &std::path::Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = rt.block_on(measure())?;
    println!(
        "live output: a line every 100 ms per job, print -> SSE event read at the master's stream"
    );
    println!(
        "{:>8} {:>7} {:>5} {:>9} {:>9} {:>9}",
        "streams", "lines", "lost", "p50 ms", "p99 ms", "max ms"
    );
    for r in &rows {
        println!(
            "{:>8} {:>7} {:>5} {:>9.1} {:>9.1} {:>9.1}",
            r.streams, r.lines, r.lost, r.p50_ms, r.p99_ms, r.max_ms
        );
    }
    let mut md = String::from(
        "# rcron live output latency\n\n\
         A master and a worker in one process on real etcd and MongoDB-wire; the worker \
         verifies a signed grant per stream. Each job prints `date +%s%N` every 100 ms; \
         latency is the SSE event's arrival at the reader minus the printed time. \
         Target: < 500 ms.\n\n\
         | streams | lines | lost | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
            r.streams, r.lines, r.lost, r.p50_ms, r.p99_ms, r.max_ms
        ));
    }
    md.push_str(&format!(
        "\nMeasured {} on {} cores, {} build. `lines` counts the lines printed after \
         each stream opened (the few before arrive at once and are not timed); `lost` \
         counts lines never received.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism().map_or(1, usize::from),
        if cfg!(debug_assertions) {
            "a debug"
        } else {
            "a release"
        }
    ));
    if let Some(dir) = report.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(report, md)?;
    println!("report written to {}", report.display());
    Ok(())
}

async fn measure() -> anyhow::Result<Vec<Row>> {
    let etcd = need("RCRON_TEST_ETCD")?;
    let mongo = need("RCRON_TEST_MONGO")?;
    let id = uuid::Uuid::now_v7().simple().to_string();
    let dir = std::env::temp_dir().join(format!("rcron-bench-live-{id}"));
    std::fs::create_dir_all(&dir)?;
    let secret = dir.join("cluster-secret");
    std::fs::write(&secret, format!("bench-secret-{id}\n"))?;

    let master_port = free_port()?;
    let mut master = rcron_master::MasterConfig {
        listen: format!("127.0.0.1:{master_port}").parse()?,
        cluster_secret_file: Some(secret.clone()),
        ..Default::default()
    };
    master.etcd.endpoints = vec![etcd];
    master.etcd.prefix = format!("/rcron-bench-live-{id}/");
    master.mongo.uri = mongo;
    master.mongo.db = format!("rcron_bench_live_{id}");
    let worker = rcron_worker::WorkerConfig {
        worker_id: "bench-live".into(),
        http_listen: format!("127.0.0.1:{}", free_port()?),
        cluster_secret_file: Some(secret),
        spill_dir: dir.join("worker-state"),
        etcd: master.etcd.clone(),
        mongo: master.mongo.clone(),
        drain_secs: 1,
        ..Default::default()
    };
    let token = CancellationToken::new();
    let master_task = tokio::spawn(rcron_master::run(master, token.child_token()));
    let worker_task = tokio::spawn(rcron_worker::run(worker, token.child_token()));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = format!("http://127.0.0.1:{master_port}");
    let ready = Instant::now();
    loop {
        let up = http
            .get(format!("{base}/api/v1/workers"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success());
        if let Some(resp) = up {
            let doc: serde_json::Value = resp.json().await?;
            if doc["workers"].as_array().is_some_and(|w| !w.is_empty()) {
                break;
            }
        }
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(30),
            "master and worker did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut rows = Vec::new();
    for streams in STREAMS {
        rows.push(round(&http, &base, streams).await?);
    }
    token.cancel();
    let _ = tokio::join!(master_task, worker_task);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}

/// `streams` jobs at once, each followed by one reader.
async fn round(http: &reqwest::Client, base: &str, streams: usize) -> anyhow::Result<Row> {
    let command =
        format!("i=0; while [ $i -lt {LINES} ]; do date +%s%N; sleep 0.1; i=$((i+1)); done");
    let mut readers = Vec::new();
    for n in 0..streams {
        let name = format!("live-{streams}-{n}");
        let job = serde_json::json!({
            "name": name, "command": command, "cronExpr": "0 0 1 1 *",
            "concurrency": "allow",
        });
        let saved = http
            .put(format!("{base}/api/v1/jobs/{name}"))
            .json(&job)
            .send()
            .await?;
        anyhow::ensure!(
            saved.status().is_success(),
            "saving {name}: {}",
            saved.status()
        );
        let ran = http
            .post(format!("{base}/api/v1/jobs/{name}/run"))
            .json(&serde_json::json!({}))
            .send()
            .await?;
        anyhow::ensure!(
            ran.status().is_success(),
            "running {name}: {}",
            ran.status()
        );
        let (http, base) = (http.clone(), base.to_string());
        readers.push(tokio::spawn(
            async move { follow(&http, &base, &name).await },
        ));
    }
    let mut latencies = Vec::new();
    let mut lost = 0;
    for reader in readers {
        let (received, got) = reader.await??;
        lost += LINES.saturating_sub(received);
        latencies.extend(got);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(Row {
        streams,
        lines: latencies.len(),
        lost,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
    })
}

/// Follows the run of `job` once the registry lists it: how many lines
/// arrived, and the latency (ms) of each printed after the stream opened.
async fn follow(
    http: &reqwest::Client,
    base: &str,
    job: &str,
) -> anyhow::Result<(usize, Vec<f64>)> {
    let started = Instant::now();
    let run_id = loop {
        let doc: serde_json::Value = http
            .get(format!("{base}/api/v1/workers"))
            .send()
            .await?
            .json()
            .await?;
        let found = doc["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|w| w["runs"].as_array().cloned().unwrap_or_default())
            .find(|r| r["job"] == job)
            .and_then(|r| r["runId"].as_str().map(str::to_string));
        if let Some(id) = found {
            break id;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the run of {job} did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut resp = http
        .get(format!("{base}/api/v1/runs/{run_id}/output/stream"))
        .timeout(Duration::from_secs(LINES as u64))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "stream of {job}: {}",
        resp.status()
    );
    let mut reader = SseReader::default();
    let mut partial = String::new();
    let mut latencies = Vec::new();
    let mut received = 0;
    // Lines printed before the stream opened arrive at once: not counted.
    let opened_ns = now_ns();
    while let Some(chunk) = resp.chunk().await? {
        let read_ns = now_ns();
        for (name, data) in reader.feed(&chunk) {
            match LiveEvent::parse(&name, &data) {
                Some(LiveEvent::Output(text)) => {
                    partial.push_str(&text);
                    while let Some(cut) = partial.find('\n') {
                        let line: String = partial.drain(..=cut).collect();
                        let Ok(printed) = line.trim().parse::<i128>() else {
                            continue;
                        };
                        received += 1;
                        if printed >= opened_ns {
                            latencies.push((read_ns - printed) as f64 / 1e6);
                        }
                    }
                }
                Some(LiveEvent::End(_)) => return Ok((received, latencies)),
                Some(LiveEvent::Error { message }) => anyhow::bail!("stream of {job}: {message}"),
                _ => {}
            }
        }
    }
    Ok((received, latencies))
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}
