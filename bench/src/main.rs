//! `rcron-bench`: how precisely and how leanly one worker fires ticks.
//!
//! For each job count N, a fresh child process loads N jobs that fire every
//! second into the worker's real scheduler, with a launcher that only
//! records the lag from a tick's planned time to the moment its run would
//! be spawned (no command runs, no etcd or MongoDB is involved: this
//! isolates the scheduler). It prints p50/p99/max lag and the process's
//! resident memory, and writes a Markdown report. Figures are measured,
//! never asserted: machines are noisy.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use rcron_shared::Job;
use rcron_worker::clock::SystemClock;
use rcron_worker::scheduler::{Launcher, Run, Scheduler};
use rcron_worker::watcher::SchedulerEvent;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "rcron-bench",
    about = "Firing lag and memory of the rcron worker's scheduler"
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
    /// Internal: measure one job count in this process and print one line.
    #[arg(long, hide = true)]
    single: Option<usize>,
}

/// Lags in microseconds, bucketed by 10 µs up to 10 s, so memory use does
/// not grow with the number of ticks measured.
struct Histogram {
    buckets: Vec<u32>,
    max_us: u64,
    count: u64,
}

const BUCKET_US: u64 = 10;
const BUCKETS: usize = 1_000_000;

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            max_us: 0,
            count: 0,
        }
    }

    fn record(&mut self, us: u64) {
        let i = ((us / BUCKET_US) as usize).min(BUCKETS - 1);
        self.buckets[i] += 1;
        self.max_us = self.max_us.max(us);
        self.count += 1;
    }

    fn percentile(&self, p: f64) -> u64 {
        let target = ((self.count as f64) * p).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= target.max(1) {
                return (i as u64 + 1) * BUCKET_US;
            }
        }
        self.max_us
    }
}

struct LagRecorder {
    histogram: Histogram,
    measure_from: chrono::DateTime<Utc>,
    measure_until: chrono::DateTime<Utc>,
}

impl Launcher for LagRecorder {
    fn launch(&mut self, run: Run) {
        let now = Utc::now();
        let plan = run.tick.plan_time;
        if plan >= self.measure_from && plan < self.measure_until {
            let lag = (now - plan).num_microseconds().unwrap_or(i64::MAX).max(0) as u64;
            self.histogram.record(lag);
        }
        run.finished();
    }
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn cpu_secs() -> f64 {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

async fn measure(n: usize, seconds: u64) -> String {
    let jobs: Vec<Job> = (0..n)
        .map(|i| {
            Job::from_json(
                format!(r#"{{"name":"bench-{i}","command":"true","cronExpr":"* * * * * * *"}}"#)
                    .as_bytes(),
            )
            .expect("valid benchmark job")
        })
        .collect();
    let start = Utc::now();
    let measure_from = start + chrono::Duration::seconds(2);
    let measure_until = measure_from + chrono::Duration::seconds(seconds as i64);
    let recorder = LagRecorder {
        histogram: Histogram::new(),
        measure_from,
        measure_until,
    };
    let (running_tx, _running_rx) = watch::channel(Vec::new());
    let scheduler = Scheduler::new(
        recorder,
        Arc::new(SystemClock::default()),
        chrono_tz::Tz::UTC,
        Duration::from_secs(5),
        running_tx,
        Arc::new(rcron_worker::metrics::WorkerMetrics::default()),
    );
    let (tx, rx) = mpsc::channel(4);
    let token = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(rx, token.clone()));
    let loaded = Instant::now();
    tx.send(SchedulerEvent::Snapshot(jobs))
        .await
        .expect("scheduler alive");
    let wait = (measure_from - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let cpu_before = cpu_secs();
    let wall_before = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = (cpu_secs() - cpu_before) / wall_before.elapsed().as_secs_f64() * 100.0;
    let rss = rss_kib("VmRSS:");
    let hwm = rss_kib("VmHWM:");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    token.cancel();
    let (recorder, stats) = task.await.expect("scheduler task");
    let h = &recorder.histogram;
    let _ = loaded;
    format!(
        "{n}\t{}\t{}\t{:.3}\t{:.3}\t{:.3}\t{cpu:.1}\t{}\t{}",
        h.count,
        stats.missed,
        h.percentile(0.50) as f64 / 1000.0,
        h.percentile(0.99) as f64 / 1000.0,
        h.max_us as f64 / 1000.0,
        rss / 1024,
        hwm / 1024,
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(n) = args.single {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        println!("{}", rt.block_on(measure(n, args.seconds)));
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    println!(
        "jobs firing every second, {} s measured each (lag = plan time -> spawn)",
        args.seconds
    );
    println!(
        "{:>7} {:>9} {:>6} {:>9} {:>9} {:>9} {:>6} {:>8} {:>8}",
        "jobs", "ticks", "missed", "p50 ms", "p99 ms", "max ms", "cpu %", "RSS MiB", "peak MiB"
    );
    for &n in &args.jobs {
        let out = Command::new(&exe)
            .args([
                "--single",
                &n.to_string(),
                "--seconds",
                &args.seconds.to_string(),
            ])
            .output()?;
        if !out.status.success() {
            anyhow::bail!(
                "measuring {n} jobs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let f: Vec<&str> = line.split('\t').collect();
        println!(
            "{:>7} {:>9} {:>6} {:>9} {:>9} {:>9} {:>6} {:>8} {:>8}",
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
        );
        rows.push(f.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    }
    if let Some(dir) = args.report.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut report = std::fs::File::create(&args.report)?;
    writeln!(report, "# rcron-bench: worker firing lag and memory\n")?;
    writeln!(
        report,
        "Run {} on {} cores; {} s measured per row; lag = planned time to spawn.\n",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        args.seconds
    )?;
    writeln!(
        report,
        "| jobs | ticks | missed | p50 lag ms | p99 lag ms | max lag ms | CPU % | RSS MiB | peak RSS MiB |"
    )?;
    writeln!(report, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for r in &rows {
        writeln!(report, "| {} |", r.join(" | "))?;
    }
    println!("report written to {}", args.report.display());
    Ok(())
}
