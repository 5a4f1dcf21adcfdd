//! The API benchmark: a real master (in this process) on a real etcd and
//! MongoDB-wire server, hit by concurrent HTTP clients. Job saves fill etcd
//! with `jobs` jobs, then the job list is read whole; run records are
//! bulk-loaded straight into MongoDB, then pages of them are queried.

use std::time::{Duration, Instant};

use rcron_master::MasterConfig;
use rcron_shared::config::MongoConfig;
use rcron_shared::runlog::{self, RunLogWriter, mongo::MongoRunLog};
use rcron_shared::{LogRecord, RunStatus};
use tokio_util::sync::CancellationToken;

use crate::cluster::{self, Services};

/// Latency figures of one kind of request.
pub(crate) struct ApiRow {
    pub(crate) what: String,
    pub(crate) clients: usize,
    pub(crate) requests: usize,
    /// Requests that failed (any non-2xx answer or transport error).
    pub(crate) errors: usize,
    /// The first failure, as the client saw it.
    pub(crate) first_error: Option<String>,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) per_sec: f64,
}

/// What the API benchmark measured.
pub(crate) struct ApiFigures {
    pub(crate) rows: Vec<ApiRow>,
    /// Run records bulk-inserted per second (the log store's write rate).
    pub(crate) log_inserts_per_sec: f64,
}

/// Jobs the bulk-loaded run records are spread over.
const LOG_JOBS: usize = 1000;
/// Records per `insert_many`.
const INSERT_BATCH: usize = 10_000;

/// Latencies of the requests that succeeded and the failures.
#[derive(Default)]
struct Outcomes {
    ok: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

impl Outcomes {
    fn add(&mut self, took: Duration, result: anyhow::Result<()>) {
        match result {
            Ok(()) => self.ok.push(took),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }

    fn merge(&mut self, other: Outcomes) {
        self.ok.extend(other.ok);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

fn row(what: &str, clients: usize, outcomes: Outcomes, wall: Duration) -> ApiRow {
    let mut lat = outcomes.ok;
    lat.sort_unstable();
    let at = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    ApiRow {
        what: what.to_string(),
        clients,
        requests: lat.len() + outcomes.errors,
        errors: outcomes.errors,
        first_error: outcomes.first_error,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: lat.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
        per_sec: lat.len() as f64 / wall.as_secs_f64(),
    }
}

/// Runs `clients` loops of `request(client, i)` until `secs` have passed
/// (every client makes at least one request); returns what happened.
async fn hammer<F, Fut>(
    clients: usize,
    secs: u64,
    request: F,
) -> anyhow::Result<(Outcomes, Duration)>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut outcomes = Outcomes::default();
                let mut i = 0;
                loop {
                    let t = Instant::now();
                    let result = request(c, i).await;
                    outcomes.add(t.elapsed(), result);
                    i += 1;
                    if Instant::now() >= until {
                        return outcomes;
                    }
                }
            })
        })
        .collect();
    let mut all = Outcomes::default();
    for t in tasks {
        all.merge(t.await?);
    }
    Ok((all, started.elapsed()))
}

/// `clients` clients GETting `path(client, i)` for `secs` seconds: one row.
async fn get_row(
    http: &reqwest::Client,
    base: &str,
    clients: usize,
    secs: u64,
    what: &str,
    path: fn(usize, usize) -> String,
) -> anyhow::Result<ApiRow> {
    let (http, base, what_owned) = (http.clone(), base.to_string(), what.to_string());
    let request = move |c: usize, i: usize| {
        let (http, url, what) = (
            http.clone(),
            format!("{base}{}", path(c, i)),
            what_owned.clone(),
        );
        async move {
            let resp = http.get(url).send().await?;
            expect_ok(resp, &what).await
        }
    };
    let (outcomes, wall) = hammer(clients, secs, request).await?;
    Ok(row(what, clients, outcomes, wall))
}

async fn expect_ok(resp: reqwest::Response, what: &str) -> anyhow::Result<()> {
    let status = resp.status();
    let body = resp.bytes().await?;
    anyhow::ensure!(
        status.is_success(),
        "{what}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A run record as a worker stores it.
fn log_record(i: usize) -> LogRecord {
    let plan = 1_700_000_000_000 + i as i64 * 1000;
    LogRecord {
        job_name: format!("api-log-{}", i % LOG_JOBS),
        command: "echo hello".into(),
        err: String::new(),
        output: "hello\n".into(),
        plan_time: plan,
        schedule_time: plan + 1,
        start_time: plan + 2,
        end_time: plan + 12,
        run_id: format!("bench-{i}"),
        worker: "bench".into(),
        exit_code: Some(0),
        status: RunStatus::Success,
        attempt: 1,
        output_truncated: false,
        reason: None,
        trigger: Default::default(),
        triggered_by: None,
        params: None,
    }
}

/// Saves `jobs` jobs, lists them, loads `logs` run records and queries
/// them, each with `clients` concurrent clients (`secs` per query kind).
pub(crate) async fn api(
    s: &Services,
    jobs: usize,
    logs: usize,
    clients: usize,
    secs: u64,
) -> anyhow::Result<ApiFigures> {
    let prefix = format!("/rcron-bench-{}/", uuid::Uuid::now_v7().simple());
    let db = format!("rcron_bench_{}", uuid::Uuid::now_v7().simple());
    let port = free_port()?;
    let mut cfg = MasterConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        master_id: "bench-master".into(),
        ..MasterConfig::default()
    };
    cfg.etcd.endpoints = vec![s.etcd.clone()];
    cfg.etcd.prefix = prefix.clone();
    cfg.mongo.uri = s.mongo.clone();
    cfg.mongo.db = db.clone();
    let token = CancellationToken::new();
    let master = tokio::spawn(rcron_master::run(cfg, token.child_token()));
    let base = format!("http://127.0.0.1:{port}");
    // reqwest is built without a TLS provider of its own (one for the
    // whole workspace); plain HTTP here, but the builder wants one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let ready = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(30),
            "the benchmark's master did not become healthy in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut rows = Vec::new();
    // Saves: every client saves its share of the jobs once.
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                let mut outcomes = Outcomes::default();
                for i in (c..jobs).step_by(clients) {
                    let body = format!(
                        r#"{{"name":"api-{i}","command":"echo {i}","cronExpr":"*/5 * * * * * *"}}"#
                    );
                    let t = Instant::now();
                    let result = async {
                        let resp = http
                            .put(format!("{base}/api/v1/jobs/api-{i}"))
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await?;
                        expect_ok(resp, "job save").await
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
    rows.push(row("job save", clients, saves, started.elapsed()));

    rows.push(
        get_row(
            &http,
            &base,
            clients,
            secs,
            &format!("job list ({jobs} jobs)"),
            |_, _| "/api/v1/jobs".to_string(),
        )
        .await?,
    );

    let database = runlog::mongo::database(
        &MongoConfig {
            uri: s.mongo.clone(),
            db: db.clone(),
        },
        "rcron-bench",
    )
    .await?;
    let run_log = MongoRunLog::new(&database, Duration::from_secs(86_400));
    let started = Instant::now();
    let mut i = 0;
    while i < logs {
        let end = (i + INSERT_BATCH).min(logs);
        let batch: Vec<LogRecord> = (i..end).map(log_record).collect();
        run_log.write(&batch).await?;
        i = end;
    }
    let log_inserts_per_sec = logs as f64 / started.elapsed().as_secs_f64();

    rows.push(
        get_row(
            &http,
            &base,
            clients,
            secs,
            &format!("log page of one job ({logs} records)"),
            |c, i| {
                let job = (c * 7919 + i * 104_729) % LOG_JOBS;
                format!("/api/v1/jobs/api-log-{job}/logs?limit=20")
            },
        )
        .await?,
    );
    rows.push(
        get_row(
            &http,
            &base,
            clients,
            secs,
            &format!("log page of every job ({logs} records)"),
            |_, _| "/api/v1/logs?limit=20".to_string(),
        )
        .await?,
    );

    token.cancel();
    master.await??;
    let _ = database.drop().await;
    cluster::delete_prefix(&s.etcd, &prefix).await?;
    Ok(ApiFigures {
        rows,
        log_inserts_per_sec,
    })
}
