//! `rcron-bench`: how fast and how lean rcron is, side by side with a peer.
//!
//! 1. Firing lag: for each job count N, a fresh child process loads N jobs
//!    that fire every second into the worker's real scheduler with a
//!    launcher that only records when each run would be spawned ([`lag`]).
//! 2. The peer: APScheduler (PyPI) with the same load in the same run
//!    (`bench/peer_apscheduler.py`, with `--peer-python`).
//! 3. With `--cluster` (real etcd and MongoDB-wire server, from
//!    `RCRON_TEST_ETCD`/`RCRON_TEST_MONGO`, as `deploy/test-env.sh` sets):
//!    the raw etcd transaction rate and the end-to-end run rate of two
//!    workers ([`cluster`]).
//! 4. With `--api` (same services): latency of job saves, job pages and
//!    log pages with concurrent clients against a real master started as
//!    its own process, the store's own time for the same log queries, and
//!    the master's memory with every job cached ([`api`]).
//! 5. With `--placement` (same services): etcd transactions and proposals
//!    per run, runs per worker and start lag at 2, 8 and 32 in-process
//!    workers, with ranking off (before) and on (after) ([`placement`]).
//! 6. With `--requests` (same services): run-now latency, chain hop
//!    latency and etcd work per request and per chained run at 1, 3 and 5
//!    in-process workers ([`requests`]).
//!
//! 7. With `--live` (same services), alone: how soon a printed line
//!    reaches a reader of the master's output stream ([`live`]).
//!
//! It prints the figures and writes a Markdown report. Figures are
//! measured, never asserted: machines are noisy.

mod api;
mod cluster;
mod console;
mod lag;
mod live;
mod placement;
mod procfs;
mod requests;

use std::io::Write;
use std::process::Command;

use chrono::Utc;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "rcron-bench",
    about = "Firing lag, memory and end-to-end rate of rcron, beside APScheduler"
)]
struct Args {
    /// Job counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    jobs: Vec<usize>,
    /// Seconds of firing measured per job count (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "target/bench-report.md")]
    report: std::path::PathBuf,
    /// A Python with APScheduler installed: measure the peer too.
    #[arg(long, env = "RCRON_BENCH_PYTHON")]
    peer_python: Option<std::path::PathBuf>,
    /// Largest job count given to the peer (it falls far behind sooner).
    #[arg(long, default_value_t = 100_000)]
    peer_max_jobs: usize,
    /// Skip the firing-lag rows (to re-measure only the cluster or the API).
    #[arg(long)]
    no_lag: bool,
    /// Also measure etcd's limit and the end-to-end run rate.
    #[arg(long)]
    cluster: bool,
    /// Job counts of the end-to-end steps (each until ticks are missed).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50,100,200,400,600,800,1000"
    )]
    e2e_jobs: Vec<usize>,
    /// Also measure the HTTP API (job save, job list, log query).
    #[arg(long)]
    api: bool,
    /// Jobs saved through the API and then paged by the API benchmark.
    #[arg(long, default_value_t = 100_000)]
    api_jobs: usize,
    /// Run records loaded for the API benchmark's log queries.
    #[arg(long, default_value_t = 1_000_000)]
    api_logs: usize,
    /// Distinct cron expressions among the API benchmark's jobs (at most
    /// 8,640; each parsed one costs ~5 KiB of the master's memory per cache).
    #[arg(long, default_value_t = 8640)]
    api_exprs: usize,
    /// Concurrent HTTP clients of the API benchmark.
    #[arg(long, default_value_t = 8)]
    api_clients: usize,
    /// The `rcron-master` binary the API benchmark starts (default: the
    /// one beside this binary; `cargo build --release -p rcron-master`).
    #[arg(long)]
    api_master: Option<std::path::PathBuf>,
    /// Log pages followed by `nextCursor` before the deep page is timed.
    #[arg(long, default_value_t = 250)]
    api_deep_pages: usize,
    /// Seconds a walk through log pages (following `nextCursor`) may take;
    /// the deep page is where it stopped.
    #[arg(long, default_value_t = 600)]
    api_walk_budget_secs: u64,
    /// Seconds the run-record load may take; the log pages are then read
    /// at the count reached.
    #[arg(long, default_value_t = 2400)]
    api_load_budget_secs: u64,
    /// Also measure placement: etcd work per run and runs per worker, with
    /// ranking off (`rank_delay_ms = 0`, before) and on (the default).
    #[arg(long)]
    placement: bool,
    /// Worker counts of the placement benchmark (all in this process).
    #[arg(long, value_delimiter = ',', default_value = "2,8,32")]
    placement_workers: Vec<usize>,
    /// Jobs running `true` every second in the placement benchmark.
    #[arg(long, default_value_t = 100)]
    placement_jobs: usize,
    /// Seconds measured per placement row (after 5 s of settling).
    #[arg(long, default_value_t = 20)]
    placement_seconds: u64,
    /// Also measure run requests and chains: run-now latency, chain hop
    /// latency, etcd work per request and per chained run.
    #[arg(long)]
    requests: bool,
    /// Worker counts of the run-request benchmark (all in this process).
    #[arg(long, value_delimiter = ',', default_value = "1,3,5")]
    requests_workers: Vec<usize>,
    /// Run-now requests per concurrency mode (`allow`, `forbid`), one job each.
    #[arg(long, default_value_t = 200)]
    requests_count: usize,
    /// Run-now requests put per second.
    #[arg(long, default_value_t = 20.0)]
    requests_rate: f64,
    /// Chains requested, one after the other.
    #[arg(long, default_value_t = 20)]
    requests_chains: usize,
    /// Jobs per chain (`chain-0 → chain-1 → …`, `onSuccess`).
    #[arg(long, default_value_t = 10)]
    requests_chain_jobs: usize,
    /// Only measure the operator console (dashboard, job stats) at
    /// 100,000 run records; report beside `--report` (`bench-console.md`).
    #[arg(long)]
    console: bool,
    /// Internal: measure one job count in this process and print one line.
    #[arg(long, hide = true)]
    single: Option<usize>,
    /// Only measure live output latency (print -> the master's SSE) with 1
    /// and 8 streams; report in target/bench-live-report.md.
    #[arg(long)]
    live: bool,
}

type Row = Vec<String>;

fn run_line(mut command: Command, what: &str) -> anyhow::Result<Row> {
    let out = command.output()?;
    if !out.status.success() {
        anyhow::bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let row: Row = line.split('\t').map(str::to_string).collect();
    anyhow::ensure!(row.len() == 9, "{what}: unexpected output {line:?}");
    Ok(row)
}

fn print_row(who: &str, f: &[String]) {
    println!(
        "{:>12} {:>7} {:>9} {:>6} {:>9} {:>9} {:>9} {:>6} {:>8} {:>8}",
        who, f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
    );
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Runs per second this machine's cores allow at `ms_per_run` CPU each.
fn cpu_ceiling(ms_per_run: f64) -> f64 {
    cores() as f64 * 1000.0 / ms_per_run
}

/// An HTTP client for etcd's `/metrics`.
fn metrics_client() -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a TLS provider of its own; etcd's metrics
    // are plain HTTP, but the builder wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?)
}

/// `writes` per `unit` as `total (request + claim + end + release +
/// registration + other)`.
fn writes_per(w: &requests::Writes, unit: u64) -> String {
    let per = |x: u64| x as f64 / unit.max(1) as f64;
    format!(
        "{:.2} ({:.2}+{:.2}+{:.2}+{:.2}+{:.2}+{:.2})",
        per(w.total()),
        per(w.requests),
        per(w.claims),
        per(w.ends),
        per(w.releases),
        per(w.registrations),
        per(w.other)
    )
}

/// The API section of the report.
fn write_api(report: &mut impl Write, f: &api::ApiFigures, clients: usize) -> anyhow::Result<()> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    writeln!(
        report,
        "\n## HTTP API, {clients} concurrent clients against one master (its own process)\n"
    )?;
    writeln!(
        report,
        "{} jobs ({} distinct expressions) saved through the API; {} of {} run records loaded ({:.0}/s, {:.0} s; {} on the hot job).\n",
        f.jobs,
        f.exprs,
        f.logs_loaded,
        f.logs_wanted,
        f.log_inserts_per_sec,
        f.log_load_secs,
        f.hot_records
    )?;
    writeln!(
        report,
        "| request | requests | errors (503) | p50 ms | p99 ms | max ms | req/s | CPU ms/req master / etcd / store |\n|---|---:|---:|---:|---:|---:|---:|---|"
    )?;
    for r in &f.rows {
        writeln!(
            report,
            "| {} | {} | {} ({}) | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} / {:.2} / {:.2} |",
            r.what,
            r.requests,
            r.errors,
            r.unavailable,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.per_sec,
            r.cpu_ms[0],
            r.cpu_ms[1],
            r.cpu_ms[2]
        )?;
    }
    for r in f.rows.iter().filter(|r| r.first_error.is_some()) {
        writeln!(
            report,
            "\nFirst failure of {}: `{}`",
            r.what,
            r.first_error.as_deref().unwrap_or_default()
        )?;
    }
    writeln!(
        report,
        "\nThe same log queries sent to the store by its own driver client (waiting as long as the store takes; the master's gives up after 3 s and answers 503), with {clients} clients and with one; p50 ms (failed requests); the store is let finish what earlier rows left it before each row:\n"
    )?;
    writeln!(
        report,
        "| query | rcron, {clients} clients | store, {clients} clients: find + count | rcron, 1 client | store, 1 client: find + count | find alone | count alone | rcron's share, 1 client (p50 difference) | master CPU ms/request, 1 client | find with `startTime ≤ cursor` added |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    let cell = |r: &api::ApiRow| {
        if r.errors > 0 {
            format!("{:.0} ({} of {} failed)", r.p50_ms, r.errors, r.requests)
        } else {
            format!("{:.1}", r.p50_ms)
        }
    };
    let opt = |r: &Option<api::ApiRow>| r.as_ref().map_or("—".into(), cell);
    for c in &f.store {
        writeln!(
            report,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {} |",
            c.what,
            cell(&c.api),
            cell(&c.store),
            cell(&c.api_alone),
            cell(&c.store_alone),
            opt(&c.find_alone),
            opt(&c.count_alone),
            c.api_alone.p50_ms - c.store_alone.p50_ms,
            c.api_alone.cpu_ms[0],
            opt(&c.bounded_alone)
        )?;
    }
    let m = &f.memory;
    writeln!(
        report,
        "\nMaster RSS (`/proc/<pid>/status` of the `rcron-master` process, MiB): {:.0} with no job; {:.0} after {} jobs were saved through it ({} audit records stored {:.1} s after the last save, {:.0} then); {:.0} after its cached pages; {:.0} (peak {:.0}) after its `consistent=true` pages. Restarted with the jobs in etcd: {}. A master started on an empty prefix, the jobs then copied in straight through etcd (its cache filled by its watch in {:.1} s): {:.0} before, {:.0} (peak {:.0}) with every job cached, {:.0} (peak {:.0}) after the log pages.",
        mib(m.empty_kib),
        mib(m.saved_kib),
        f.jobs,
        m.audit_stored,
        m.audit_drain_secs,
        mib(m.audited_kib),
        mib(m.paged_kib),
        mib(m.consistent_kib),
        mib(m.consistent_peak_kib),
        match m.listed_secs {
            Some(secs) => format!(
                "every job listed {secs:.2} s after spawn, {:.0} (peak {:.0})",
                mib(m.listed_kib),
                mib(m.listed_peak_kib)
            ),
            None => "it never listed them (see the wrong answers below)".into(),
        },
        m.watch_fill_secs,
        mib(m.watch_empty_kib),
        mib(m.watched_kib),
        mib(m.watched_peak_kib),
        mib(m.end_kib),
        mib(m.end_peak_kib)
    )?;
    writeln!(
        report,
        "\nIdle with every job loaded (no request, {} s): the master used {:.1}% of a core, etcd {:.1}%, the store {:.1}% (taken off the log rows' CPU per request).",
        f.idle_secs, m.idle_cpu[0], m.idle_cpu[1], m.idle_cpu[2]
    )?;
    writeln!(report, "\nWalks (one client, every page checked):\n")?;
    for w in &f.walks {
        writeln!(
            report,
            "- {}: {} pages in {:.1} s ({:.1} ms a page)",
            w.what,
            w.pages,
            w.secs,
            w.secs * 1000.0 / w.pages.max(1) as f64
        )?;
    }
    if f.findings.is_empty() {
        writeln!(
            report,
            "\nEvery page checked was right (order, ties, filters, totals, cursors, no output)."
        )?;
    } else {
        writeln!(report, "\nWrong answers:\n")?;
        for finding in &f.findings {
            writeln!(report, "- {finding}")?;
        }
    }
    Ok(())
}

fn ms(f: &str) -> f64 {
    f.parse().unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.live {
        return live::run(std::path::Path::new("target/bench-live-report.md"));
    }
    if args.console {
        return console::main(&args.report.with_file_name("bench-console.md"));
    }
    if let Some(n) = args.single {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        println!("{}", rt.block_on(lag::measure(n, args.seconds)));
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let peer_script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peer_apscheduler.py");
    println!(
        "jobs firing every second, {} s measured each (lag = plan time -> spawn)",
        args.seconds
    );
    println!(
        "{:>12} {:>7} {:>9} {:>6} {:>9} {:>9} {:>9} {:>6} {:>8} {:>8}",
        "scheduler",
        "jobs",
        "ticks",
        "missed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "cpu %",
        "RSS MiB",
        "peak MiB"
    );
    let mut rows: Vec<(String, Row)> = Vec::new();
    let lag_jobs = if args.no_lag { &[][..] } else { &args.jobs[..] };
    for &n in lag_jobs {
        let mut own = Command::new(&exe);
        own.args([
            "--single",
            &n.to_string(),
            "--seconds",
            &args.seconds.to_string(),
        ]);
        let row = run_line(own, &format!("measuring rcron with {n} jobs"))?;
        print_row("rcron", &row);
        rows.push(("rcron".into(), row));
        if let Some(python) = &args.peer_python
            && n <= args.peer_max_jobs
        {
            let mut peer = Command::new(python);
            peer.arg(&peer_script)
                .args([n.to_string(), args.seconds.to_string()]);
            let row = run_line(peer, &format!("measuring APScheduler with {n} jobs"))?;
            print_row("APScheduler", &row);
            rows.push(("APScheduler".into(), row));
        }
    }

    let mut limit = None;
    let mut steps = Vec::new();
    let mut api_figures = None;
    let services = if args.cluster || args.api || args.placement || args.requests {
        let need = |var: &str| {
            std::env::var(var).map_err(|_| {
                anyhow::anyhow!(
                    "--cluster, --api, --placement and --requests need RCRON_TEST_ETCD and RCRON_TEST_MONGO: run under deploy/test-env.sh (or use deploy/bench.sh)"
                )
            })
        };
        let pid = |var: &str| std::env::var(var).ok().and_then(|p| p.parse().ok());
        Some(cluster::Services {
            etcd: need("RCRON_TEST_ETCD")?,
            mongo: need("RCRON_TEST_MONGO")?,
            etcd_pid: pid("RCRON_TEST_ETCD_PID"),
            mongo_pid: pid("RCRON_TEST_MONGO_PID"),
        })
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(services) = services.as_ref().filter(|_| args.cluster) {
        println!(
            "{:>6} {:>8} {:>8} {:>10} {:>7} {:>8} {:>11} {:>13} {:>16} {:>16}",
            "jobs",
            "planned",
            "ran",
            "duplicates",
            "missed",
            "runs/s",
            "records/s",
            "etcd writes/run",
            "start lag p50/99",
            "run ms p50/99"
        );
        for &n in &args.e2e_jobs {
            let step = rt.block_on(cluster::end_to_end(services, n, args.seconds))?;
            println!(
                "{:>6} {:>8} {:>8} {:>10} {:>7} {:>8.0} {:>11.0} {:>13.2} {:>16} {:>16}",
                step.jobs,
                step.planned,
                step.ran,
                step.duplicates,
                step.missed,
                step.runs_per_sec,
                step.records_per_sec,
                step.etcd_writes_per_run,
                format!("{}/{}", step.start_lag_ms.0, step.start_lag_ms.1),
                format!("{}/{}", step.duration_ms.0, step.duration_ms.1)
            );
            let c = step.cpu_per_run;
            println!(
                "{:>6} CPU ms per run: workers {:.2}, commands {:.2}, etcd {:.2}, log store {:.2}; total {:.2} -> {} cores allow {:.0} runs/s",
                "",
                c.workers,
                c.commands,
                c.etcd,
                c.log_store,
                c.total(),
                cores(),
                cpu_ceiling(c.total())
            );
            let saturated = step.missed * 100 > step.planned;
            steps.push(step);
            if saturated {
                break;
            }
        }
    }
    if let Some(services) = services.as_ref().filter(|_| args.api) {
        let opts = api::ApiOptions {
            jobs: args.api_jobs,
            exprs: args.api_exprs,
            logs: args.api_logs,
            clients: args.api_clients,
            secs: args.seconds,
            master_bin: args
                .api_master
                .clone()
                .unwrap_or_else(api::default_master_bin),
            deep_pages: args.api_deep_pages,
            walk_budget: std::time::Duration::from_secs(args.api_walk_budget_secs),
            load_budget: std::time::Duration::from_secs(args.api_load_budget_secs),
            log_dir: args
                .report
                .parent()
                .map_or_else(|| ".".into(), std::path::Path::to_path_buf),
        };
        let f = rt.block_on(api::api(services, &opts))?;
        println!(
            "run records bulk-loaded: {} of {} in {:.0} s, {:.0}/s",
            f.logs_loaded, f.logs_wanted, f.log_load_secs, f.log_inserts_per_sec
        );
        for r in &f.rows {
            println!("{}", api::describe(r));
        }
        for finding in &f.findings {
            println!("WRONG: {finding}");
        }
        api_figures = Some(f);
    }
    let mut placement_rows = Vec::new();
    if let Some(services) = services.as_ref().filter(|_| args.placement) {
        let http = metrics_client()?;
        println!(
            "placement: {} jobs running `true` every second, {} s measured per row",
            args.placement_jobs, args.placement_seconds
        );
        println!(
            "{:>7} {:>6} {:>7} {:>7} {:>10} {:>6} {:>7} {:>9} {:>19} {:>9} {:>16} {:>13}",
            "workers",
            "rank",
            "planned",
            "ran",
            "duplicates",
            "missed",
            "txn/run",
            "prop/run",
            "runs/worker min/mean/max",
            "max/mean",
            "start lag p50/99",
            "CPU ms/run e/w"
        );
        for &n in &args.placement_workers {
            for rank_delay_ms in [0, rcron_worker::WorkerConfig::default().rank_delay_ms] {
                let r = rt.block_on(placement::measure(
                    services,
                    &http,
                    n,
                    rank_delay_ms,
                    args.placement_jobs,
                    args.placement_seconds,
                ))?;
                let (min, mean, max) = r.runs_per_worker;
                println!(
                    "{:>7} {:>6} {:>7} {:>7} {:>10} {:>6} {:>7.2} {:>9.2} {:>19} {:>9.2} {:>16} {:>13}",
                    r.workers,
                    r.rank_delay_ms,
                    r.planned,
                    r.ran,
                    r.duplicates,
                    r.missed,
                    r.txn_per_run,
                    r.proposals_per_run,
                    format!("{min}/{mean:.1}/{max}"),
                    r.busiest_over_mean(),
                    format!("{}/{}", r.start_lag_ms.0, r.start_lag_ms.1),
                    format!("{:.2}/{:.2}", r.etcd_cpu_ms, r.workers_cpu_ms)
                );
                placement_rows.push(r);
            }
        }
    }
    let mut request_rows = Vec::new();
    let mut chain_rows = Vec::new();
    if let Some(services) = services.as_ref().filter(|_| args.requests) {
        let http = metrics_client()?;
        let load = requests::Load {
            requests: args.requests_count,
            rate: args.requests_rate,
            chains: args.requests_chains,
            chain_jobs: args.requests_chain_jobs,
        };
        println!(
            "run requests: {} run-now requests per mode at {}/s, {} chains of {} jobs, paused jobs running `true`",
            load.requests, load.rate, load.chains, load.chain_jobs
        );
        println!(
            "{:>7} {:>7} {:>6} {:>5} {:>5} {:>5} {:>18} {:>8} {:>9} {:>12} {:>30}",
            "workers",
            "mode",
            "asked",
            "ran",
            "dup",
            "lost",
            "latency p50/99/max",
            "txn/req",
            "prop/req",
            "no-write/req",
            "writes/req req+claim+end+rel+reg+other"
        );
        for &n in &args.requests_workers {
            let (rows, chain) = rt.block_on(requests::measure(services, &http, n, load))?;
            for r in &rows {
                let per = |x: f64| x / r.requested.max(1) as f64;
                let (l50, l99, lmax) = r.latency_ms;
                println!(
                    "{:>7} {:>7} {:>6} {:>5} {:>5} {:>5} {:>18} {:>8.2} {:>9.2} {:>12.2} {:>30}",
                    r.workers,
                    r.concurrency,
                    r.requested,
                    r.ran,
                    r.duplicates,
                    r.lost,
                    format!("{l50}/{l99}/{lmax}"),
                    per(r.etcd.txns),
                    per(r.etcd.proposals),
                    per(r.etcd.idle_proposals()),
                    writes_per(&r.etcd.writes, r.requested)
                );
                if r.not_success + r.left > 0 {
                    println!(
                        "        {} runs not `success`, {} requests left in etcd",
                        r.not_success, r.left
                    );
                }
            }
            let (h50, h99, hmax) = chain.hop_ms;
            let per = |x: f64| x / chain.runs().max(1) as f64;
            println!(
                "{:>7} {:>7} chains {}/{} complete, {} duplicates, {} stalled, {} not `success`; hop ms {h50}/{h99}/{hmax} over {} hops; chain ms p50 {} max {}; per run: txn {:.2}, proposals {:.2} (no write {:.2}), writes {}",
                chain.workers,
                "chain",
                chain.complete,
                chain.chains,
                chain.duplicates,
                chain.stalled,
                chain.not_success,
                chain.hops,
                chain.chain_ms.0,
                chain.chain_ms.1,
                per(chain.etcd.txns),
                per(chain.etcd.proposals),
                per(chain.etcd.idle_proposals()),
                writes_per(&chain.etcd.writes, chain.runs())
            );
            request_rows.extend(rows);
            chain_rows.push(chain);
        }
    }
    // Last: its tens of thousands of writes leave garbage revisions that
    // slow etcd down for whatever runs after it (measured: two workers
    // missed a quarter of 200 runs/s after it, none before it).
    if let Some(services) = services.as_ref().filter(|_| args.cluster) {
        let l = rt.block_on(cluster::etcd_limit(services, 5, 64))?;
        println!(
            "etcd write txn/s with rcron's client: {:.0} sequential, {:.0} with {} in flight",
            l.sequential, l.concurrent, l.in_flight
        );
        limit = Some(l);
    }

    if let Some(dir) = args.report.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut report = std::fs::File::create(&args.report)?;
    writeln!(report, "# rcron-bench\n")?;
    // The placement section says its own window.
    let measured = if rows.is_empty() && !args.cluster && !args.api {
        String::new()
    } else {
        format!("; {} s measured per row", args.seconds)
    };
    writeln!(
        report,
        "Run {} on {} cores{measured}.\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    )?;
    if !rows.is_empty() {
        writeln!(
            report,
            "## Firing lag (planned time to spawn), N jobs every second\n"
        )?;
        writeln!(
            report,
            "| scheduler | jobs | ticks | missed | p50 lag ms | p99 lag ms | max lag ms | CPU % | RSS MiB | peak RSS MiB |"
        )?;
        writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for (who, r) in &rows {
            writeln!(report, "| {who} | {} |", r.join(" | "))?;
        }
    }
    let ratios: Vec<String> = rows
        .iter()
        .filter(|(who, _)| who == "APScheduler")
        .filter_map(|(_, peer)| {
            let own = rows
                .iter()
                .find(|(who, r)| who == "rcron" && r[0] == peer[0])?;
            Some(format!(
                "{} jobs: p99 {:.1}x lower, p50 {:.1}x lower",
                peer[0],
                ms(&peer[4]) / ms(&own.1[4]),
                ms(&peer[3]) / ms(&own.1[3])
            ))
        })
        .collect();
    if !ratios.is_empty() {
        writeln!(
            report,
            "\nrcron against APScheduler: {}.",
            ratios.join("; ")
        )?;
        println!("rcron against APScheduler: {}", ratios.join("; "));
    }
    if let Some(l) = &limit {
        writeln!(report, "\n## etcd write transactions with rcron's client\n")?;
        writeln!(report, "| mode | txn/s |\n|---|---:|")?;
        writeln!(report, "| sequential | {:.0} |", l.sequential)?;
        writeln!(
            report,
            "| {} in flight | {:.0} |",
            l.in_flight, l.concurrent
        )?;
        writeln!(
            report,
            "\n## End to end: two workers, jobs running `true` every second\n"
        )?;
        writeln!(
            report,
            "| jobs | planned | ran | duplicates | missed | runs/s | records/s | etcd writes/run | runs/s ÷ (txn/s ÷ writes/run) | start lag ms p50/p99 | run ms p50/p99 |"
        )?;
        writeln!(
            report,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        for s in &steps {
            let bound = l.concurrent / s.etcd_writes_per_run.max(1.0);
            writeln!(
                report,
                "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {}/{} | {}/{} |",
                s.jobs,
                s.planned,
                s.ran,
                s.duplicates,
                s.missed,
                s.runs_per_sec,
                s.records_per_sec,
                s.etcd_writes_per_run,
                s.runs_per_sec / bound,
                s.start_lag_ms.0,
                s.start_lag_ms.1,
                s.duration_ms.0,
                s.duration_ms.1
            )?;
        }
        writeln!(
            report,
            "\nCPU time per run during each step (ms; workers = this process, commands = its reaped `sh -c true` children, servers by pid) and the run rate that total allows on {} cores:\n",
            cores()
        )?;
        writeln!(
            report,
            "| jobs | workers | commands | etcd | log store | total | runs/s the cores allow |\n|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        for s in &steps {
            let c = s.cpu_per_run;
            writeln!(
                report,
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
                s.jobs,
                c.workers,
                c.commands,
                c.etcd,
                c.log_store,
                c.total(),
                cpu_ceiling(c.total())
            )?;
        }
    }
    if let Some(f) = &api_figures {
        write_api(&mut report, f, args.api_clients)?;
    }
    if !placement_rows.is_empty() {
        writeln!(
            report,
            "\n## Placement: etcd work per run and runs per worker\n"
        )?;
        writeln!(
            report,
            "{} jobs running `true` every second (`concurrency: forbid`), {} s measured per row, workers in this process; etcd's counters (`{}`, `{}`) over the window ÷ ticks that ran; before = `rank_delay_ms = 0` (every worker tries every tick), after = the default.\n",
            args.placement_jobs,
            args.placement_seconds,
            placement::TXN_TOTAL,
            placement::PROPOSALS
        )?;
        writeln!(
            report,
            "| workers | mode | planned | ran | duplicates | missed | etcd txn/run | proposals/run | runs per worker min / mean / max | busiest ÷ mean | start lag ms p50/p99 | etcd CPU ms/run | workers CPU ms/run |"
        )?;
        writeln!(
            report,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        for r in &placement_rows {
            let (min, mean, max) = r.runs_per_worker;
            writeln!(
                report,
                "| {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {} / {:.1} / {} | {:.2} | {}/{} | {:.2} | {:.2} |",
                r.workers,
                r.mode(),
                r.planned,
                r.ran,
                r.duplicates,
                r.missed,
                r.txn_per_run,
                r.proposals_per_run,
                min,
                mean,
                max,
                r.busiest_over_mean(),
                r.start_lag_ms.0,
                r.start_lag_ms.1,
                r.etcd_cpu_ms,
                r.workers_cpu_ms
            )?;
        }
    }
    if !request_rows.is_empty() {
        writeln!(report, "\n## Run requests and chains\n")?;
        writeln!(
            report,
            "Paused jobs running `true`, workers in this process (ranking on, default settings). Run-now: {} requests per mode, one job each, put straight into etcd at {}/s; latency = the request's `requestedAt` → its run's `startTime`. etcd's counters (`{}`, `{}`) and its writes (revisions, from its history) over each phase ÷ requests; writes = request (the benchmark's put) + claim + end + lock release + registration + other; proposals without a write = transactions whose compare failed (claims another worker won). etcd counts in `{}` only transactions of more than one compare or operation, and then once per side.\n",
            args.requests_count,
            args.requests_rate,
            placement::TXN_TOTAL,
            placement::PROPOSALS,
            placement::TXN_TOTAL
        )?;
        writeln!(
            report,
            "| workers | concurrency | requests | ran | duplicates | lost | not success | latency ms p50/p99/max | runs per worker min/max | etcd txn/request | proposals/request | proposals without a write/request | writes/request |"
        )?;
        writeln!(
            report,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        )?;
        for r in &request_rows {
            let per = |x: f64| x / r.requested.max(1) as f64;
            let (l50, l99, lmax) = r.latency_ms;
            writeln!(
                report,
                "| {} | {} | {} | {} | {} | {} | {} | {l50}/{l99}/{lmax} | {}/{} | {:.2} | {:.2} | {:.2} | {} |",
                r.workers,
                r.concurrency,
                r.requested,
                r.ran,
                r.duplicates,
                r.lost,
                r.not_success,
                r.runs_per_worker.0,
                r.runs_per_worker.1,
                per(r.etcd.txns),
                per(r.etcd.proposals),
                per(r.etcd.idle_proposals()),
                writes_per(&r.etcd.writes, r.requested)
            )?;
        }
        writeln!(
            report,
            "\nChains: {} chains of {} jobs (`chain-0 → … → chain-{}`, `onSuccess`, `forbid`), each requested once the previous one ended; hop = the parent's `endTime` → the chained run's `startTime`; chain = the first request's `requestedAt` → the last run's `endTime`; etcd per run of the chains.\n",
            args.requests_chains,
            args.requests_chain_jobs,
            args.requests_chain_jobs.saturating_sub(1)
        )?;
        writeln!(
            report,
            "| workers | chains complete | duplicates | stalled | not success | hops | hop ms p50/p99/max | chain ms p50/max | etcd txn/run | proposals/run | proposals without a write/run | writes/run |"
        )?;
        writeln!(
            report,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        )?;
        for c in &chain_rows {
            let per = |x: f64| x / c.runs().max(1) as f64;
            let (h50, h99, hmax) = c.hop_ms;
            writeln!(
                report,
                "| {} | {}/{} | {} | {} | {} | {} | {h50}/{h99}/{hmax} | {}/{} | {:.2} | {:.2} | {:.2} | {} |",
                c.workers,
                c.complete,
                c.chains,
                c.duplicates,
                c.stalled,
                c.not_success,
                c.hops,
                c.chain_ms.0,
                c.chain_ms.1,
                per(c.etcd.txns),
                per(c.etcd.proposals),
                per(c.etcd.idle_proposals()),
                writes_per(&c.etcd.writes, c.runs())
            )?;
        }
    }
    println!("report written to {}", args.report.display());
    Ok(())
}
